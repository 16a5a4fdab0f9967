// Small DOM helpers shared by the pages: element building, labelled fields, and errors shown
// next to the control that caused them. No framework: each page builds its DOM and re-renders
// itself after a change.

let nextId = 0;
export const uid = (prefix = "kf") => `${prefix}-${++nextId}`;

// h("button", {type: "button", onclick}, "Save"): attributes starting with "on" become event
// listeners; `null`/`false` attributes and children are skipped; strings become text nodes.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// A labelled control: <div class="field"><label for=id>text</label>control [hint]</div>.
export function field(text, control, hint) {
  if (!control.id) control.id = uid("field");
  const wrap = h("div", { class: "field" }, h("label", { for: control.id }, text), control);
  if (hint) {
    const hintEl = h("p", { class: "hint", id: uid("hint") }, hint);
    control.setAttribute("aria-describedby", hintEl.id);
    wrap.append(hintEl);
  }
  return wrap;
}

export function input(attrs = {}) {
  return h("input", { type: "text", ...attrs });
}

export function select(options, attrs = {}) {
  return h(
    "select",
    attrs,
    options.map((o) => (typeof o === "string" ? h("option", { value: o }, o) : h("option", { value: o.value, disabled: o.disabled }, o.label))),
  );
}

export function checkbox(text, attrs = {}) {
  const box = h("input", { type: "checkbox", id: uid("check"), ...attrs });
  return { box, el: h("div", { class: "field check" }, box, h("label", { for: box.id }, text)) };
}

// Shows `error` (an ApiError or any Error) right after `control`, announced to screen
// readers, and marks the control invalid; clearError removes it. One error per control.
export function showError(control, error) {
  clearError(control);
  const code = error.code ? `${error.code}: ` : "";
  const el = h("p", { class: "error", role: "alert", id: uid("error") }, code + error.message);
  control.setAttribute("aria-invalid", "true");
  control.dataset.errorId = el.id;
  control.setAttribute("aria-errormessage", el.id);
  control.insertAdjacentElement("afterend", el);
  return el;
}

export function clearError(control) {
  const id = control.dataset.errorId;
  if (id) document.getElementById(id)?.remove();
  control.removeAttribute("aria-invalid");
  control.removeAttribute("aria-errormessage");
  delete control.dataset.errorId;
}

// Runs `action` while `button` shows it is busy; an error is shown next to `errorAt`
// (default: the button), or next to the control errorAt(error) returns (see controlFor).
// Returns the action's result, or undefined when it failed.
export async function busy(button, action, errorAt = button) {
  const shown = document.querySelectorAll("[data-error-id]");
  if (typeof errorAt === "function") shown.forEach((c) => c.closest("form") === button.closest("form") && clearError(c));
  else clearError(errorAt);
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await action();
  } catch (e) {
    showError(typeof errorAt === "function" ? errorAt(e) : errorAt, e);
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

// The control an API error is about: the first of `controls` ({propertyName: control}) whose
// property the error's message names (ARM's messages name the field), else `fallback`.
export function controlFor(controls, fallback) {
  return (error) => {
    const message = String(error?.message ?? "");
    for (const [name, control] of Object.entries(controls)) {
      if (message.includes(name)) return control;
    }
    return fallback;
  };
}

export function table(headers, rows, caption) {
  return h(
    "table",
    {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.length ? rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c)))) : h("tr", {}, h("td", { colspan: headers.length }, "None yet."))),
  );
}

export function link(href, text) {
  return h("a", { href }, text);
}

// A page section with a heading.
export function section(title, ...children) {
  const id = uid("section");
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...children);
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function formatTime(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString().replace(".000Z", "Z") : "";
}

// The parts of an ARM resource id: /subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}.
export function resourceGroupOf(id) {
  const m = /\/resourceGroups\/([^/]+)/i.exec(id ?? "");
  return m ? decodeURIComponent(m[1]) : "";
}
