// The portal's entry point: sign-in, the header, and the hash router (#/vaults/rg/name, ...),
// which renders one page into <main> and moves focus there so keyboard and screen-reader
// users land on the new content.
import { currentSession, signIn, signOut } from "./api.js";
import { busy, field, h, input, showError } from "./ui.js";
import { groupsPage } from "./pages/groups.js";
import { vaultsPage, vaultPage } from "./pages/vaults.js";
import { accountsPage, accountWizard, accountPage } from "./pages/accounts.js";
import { auditPage } from "./pages/audit.js";

const main = document.getElementById("main");

function signInPage() {
  const user = input({ name: "username", autocomplete: "username", value: "admin" });
  const password = input({ type: "password", name: "password", autocomplete: "current-password" });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const ok = await busy(submit, () => signIn(user.value.trim(), password.value), password);
        if (ok) {
          location.hash = "#/vaults";
          render();
        }
      },
    },
    field("User name", user),
    field("Password", password, "The admin password is in DATA_DIR/admin-password on the server."),
    submit,
  );
  return [h("h1", {}, "Sign in to keyfoundry"), form];
}

function header(session) {
  document.getElementById("nav").hidden = !session;
  const who = document.getElementById("who");
  who.replaceChildren();
  if (!session) return;
  who.append(
    h("span", {}, `Signed in as ${session.user}`),
    h("button", {
      type: "button",
      class: "secondary",
      onclick: () => {
        signOut();
        location.hash = "#/";
        render();
      },
    }, "Sign out"),
  );
}

const routes = [
  [/^#\/groups$/, () => groupsPage()],
  [/^#\/vaults$/, () => vaultsPage()],
  [/^#\/vaults\/([^/]+)\/([^/]+)$/, (rg, name) => vaultPage(rg, name)],
  [/^#\/accounts$/, () => accountsPage()],
  [/^#\/accounts\/new$/, () => accountWizard()],
  [/^#\/accounts\/([^/]+)\/([^/]+)(?:\/([a-z]+))?$/, (rg, name, blade) => accountPage(rg, name, blade || "overview")],
  [/^#\/audit$/, () => auditPage()],
];

let rendering = 0;

async function render() {
  const ticket = ++rendering;
  const session = currentSession();
  header(session);
  let content;
  if (!session) {
    content = signInPage();
  } else {
    const hash = location.hash || "#/vaults";
    const route = routes.find(([pattern]) => pattern.test(hash));
    try {
      content = route
        ? await route[1](...route[0].exec(hash).slice(1).map((p) => (p === undefined ? p : decodeURIComponent(p))))
        : [h("h1", {}, "Not found"), h("p", {}, `The portal has no page ${hash}.`)];
    } catch (e) {
      const p = h("p", {}, "This page could not be loaded.");
      content = [h("h1", {}, "Error"), p];
      queueMicrotask(() => showError(p, e));
    }
  }
  if (ticket !== rendering) return; // a later navigation won
  main.replaceChildren(...[content].flat(Infinity));
  main.dataset.route = session ? location.hash || "#/vaults" : "#/sign-in";
  main.focus();
}

// Pages call this to re-render themselves after a change.
window.addEventListener("kf:refresh", render);
window.addEventListener("hashchange", render);
render();
