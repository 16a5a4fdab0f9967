// AI accounts (Microsoft.CognitiveServices/accounts): the list, the creation wizard (Basics,
// Identity, Encryption, Review + create) and one account's blades: Overview, Identity,
// Encryption (current key, change key, rotate, generations with the key-usage report,
// reprocess with progress) and Files.
//
// Customer-managed keys need the account's system-assigned identity to hold get, wrapKey and
// unwrapKey on the key, and that identity only exists once the account does. So the wizard,
// like Azure's, creates the account with its identity first; when a key was chosen it then
// (optionally) grants the new identity those permissions on the vault, and only then enables
// the key. Each step is shown with its outcome, and a failed step leaves the account under
// service-managed keys, to finish on the Encryption blade.
import { API_VERSIONS, arm, armUrl, currentSession, openai, vault } from "../api.js";
import { busy, checkbox, clearError, field, formatBytes, formatTime, h, input, link, resourceGroupOf, section, select, showError, table, uid } from "../ui.js";
import { listGroups } from "./groups.js";
import { listKeysWithDetails, listVaults, vaultPath } from "./vaults.js";

const KINDS = ["AIServices", "OpenAI", "CognitiveServices", "SpeechServices", "ContentSafety"];
const NEEDED = ["get", "wrapKey", "unwrapKey"];

const accountPath = (rg, name) =>
  `~/resourceGroups/${encodeURIComponent(rg)}/providers/Microsoft.CognitiveServices/accounts/${encodeURIComponent(name)}`;
const refresh = () => dispatchEvent(new Event("kf:refresh"));

export async function accountsPage() {
  const accounts = (await arm("GET", "~/providers/Microsoft.CognitiveServices/accounts", undefined, API_VERSIONS.accounts)).value ?? [];
  const rows = accounts.map((a) => [
    link(`#/accounts/${encodeURIComponent(resourceGroupOf(a.id))}/${encodeURIComponent(a.name)}`, a.name),
    resourceGroupOf(a.id),
    a.kind,
    a.identity?.type ?? "None",
    a.properties?.encryption?.keySource === "Microsoft.KeyVault" ? "Customer-managed key" : "Service-managed key",
  ]);
  return [
    h("h1", {}, "AI accounts"),
    h("p", {}, link("#/accounts/new", "Create an AI account")),
    section("AI accounts", table(["Name", "Resource group", "Kind", "Identity", "Encryption"], rows)),
  ];
}

// --- the key picker -------------------------------------------------------------------------

// Why a vault cannot protect an account, or "" when it can. `principalId` is the account's
// identity (null before the account exists: its permissions cannot be checked yet).
function vaultProblems(v, accountGroup, principalId) {
  const problems = [];
  if (!v.properties.enablePurgeProtection) problems.push("the vault has no purge protection (customer-managed keys need soft delete and purge protection)");
  const group = resourceGroupOf(v.id);
  if (accountGroup && group.toLowerCase() !== accountGroup.toLowerCase()) {
    problems.push(`the vault is in resource group ${group}, the account in ${accountGroup} (they must be in the same one)`);
  }
  if (principalId && !v.properties.enableRbacAuthorization) {
    const policy = (v.properties.accessPolicies ?? []).find((p) => p.objectId === principalId && !p.applicationId);
    const granted = new Set((policy?.permissions?.keys ?? []).map((k) => k.toLowerCase()));
    const missing = granted.has("all") ? [] : NEEDED.filter((k) => !granted.has(k.toLowerCase()));
    if (missing.length) problems.push(`the account's identity lacks ${missing.join(", ")} on this vault (grant them under the vault's access policies)`);
  }
  return problems;
}

function keyProblems({ bundle, size }) {
  const problems = [];
  const kty = bundle.key.kty;
  if (!(kty === "RSA" || kty === "RSA-HSM") || size !== 2048) {
    problems.push(`it is ${kty}${size ? ` ${size}` : bundle.key.crv ? ` ${bundle.key.crv}` : ""}: only RSA or RSA-HSM 2048 keys can protect an account`);
  }
  const a = bundle.attributes;
  const now = Date.now() / 1000;
  if (a.enabled === false) problems.push("it is disabled");
  if (a.exp && a.exp < now) problems.push(`it expired at ${formatTime(a.exp)}`);
  if (a.nbf && a.nbf > now) problems.push(`it is not valid before ${formatTime(a.nbf)}`);
  const ops = bundle.key.key_ops;
  if (ops && !(ops.includes("wrapKey") && ops.includes("unwrapKey"))) problems.push("its key_ops lack wrapKey or unwrapKey");
  return problems;
}

// "Select vault and key": a vault list and, for the chosen vault, its keys, each usable one a
// radio button and each unusable one disabled with the reason. `onlyVaultUri` restricts the
// vault (a key change stays in the current vault). Returns {el, selection()}.
function keyPicker({ vaults, accountGroup, principalId, onlyVaultUri }) {
  const choices = onlyVaultUri ? vaults.filter((v) => v.properties.vaultUri === onlyVaultUri) : vaults;
  const vaultSelect = select(
    [{ value: "", label: "Choose a key vault" }, ...choices.map((v) => ({ value: v.properties.vaultUri, label: `${v.name} (${resourceGroupOf(v.id)})` }))],
    { name: "cmk-vault" },
  );
  const keysBox = h("div", { class: "keys-picker", "aria-live": "polite" });
  const version = input({ name: "cmk-key-version", placeholder: "latest" });
  let chosen = null;

  async function showKeys() {
    chosen = null;
    clearError(vaultSelect);
    keysBox.replaceChildren();
    const v = choices.find((c) => c.properties.vaultUri === vaultSelect.value);
    if (!v) return;
    const vaultIssues = vaultProblems(v, accountGroup, principalId);
    if (!principalId) {
      keysBox.append(h("p", { class: "hint" }, "The account's identity does not exist yet, so its permissions on the vault are checked when the key is enabled."));
    }
    if (vaultIssues.length) keysBox.append(h("p", { class: "warn" }, `No key of this vault can be chosen: ${vaultIssues.join("; ")}.`));
    let keys;
    try {
      keys = await listKeysWithDetails(v.properties.vaultUri);
    } catch (e) {
      showError(vaultSelect, e);
      return;
    }
    if (!keys.length) keysBox.append(h("p", {}, "This vault has no keys. Create one on the vault's page."));
    const name = uid("key");
    const list = h("ul", { role: "radiogroup", "aria-label": "Key" });
    for (const k of keys) {
      const issues = [...vaultIssues, ...keyProblems(k)];
      const radio = h("input", { type: "radio", name, id: uid("key"), value: k.name, disabled: issues.length > 0 });
      radio.addEventListener("change", () => {
        chosen = { vaultUri: v.properties.vaultUri, keyName: k.name, vaultName: v.name, vaultGroup: resourceGroupOf(v.id) };
      });
      const why = issues.length ? h("span", { class: "why", id: uid("why") }, `Cannot be chosen: ${issues.join("; ")}.`) : null;
      if (why) radio.setAttribute("aria-describedby", why.id);
      list.append(h("li", {}, radio, h("label", { for: radio.id }, `${k.name} (${k.bundle.key.kty}${k.size ? ` ${k.size}` : ""})`), why));
    }
    keysBox.append(list);
  }
  vaultSelect.addEventListener("change", showKeys);
  if (choices.length === 1 && onlyVaultUri) {
    vaultSelect.value = onlyVaultUri;
    queueMicrotask(showKeys);
  }
  const el = h("div", {},
    field("Key vault", vaultSelect, onlyVaultUri ? "A key change stays in the current vault." : "Vaults of this subscription."),
    keysBox,
    field("Key version", version, "Leave empty to follow the key's latest version: rotation then applies by itself."));
  return {
    el,
    vaultSelect,
    selection: () => (chosen ? { ...chosen, keyVersion: version.value.trim() } : null),
  };
}

function encryptionBody(sel) {
  return {
    keySource: "Microsoft.KeyVault",
    keyVaultProperties: { keyVaultUri: sel.vaultUri, keyName: sel.keyName, keyVersion: sel.keyVersion },
  };
}

async function grantIdentity(sel, principalId) {
  const session = currentSession();
  return arm("PUT", `${vaultPath(sel.vaultGroup, sel.vaultName)}/accessPolicies/add`, {
    properties: { accessPolicies: [{ tenantId: session.tenant, objectId: principalId, permissions: { keys: NEEDED } }] },
  }, API_VERSIONS.vaults);
}

// --- the creation wizard --------------------------------------------------------------------

// Tabs with the ARIA tabs pattern: arrow keys move between tabs, Tab moves into the panel.
function tabs(names, panels) {
  const ids = names.map(() => uid("tab"));
  const buttons = names.map((n, i) => h("button", { type: "button", role: "tab", id: ids[i], "aria-controls": `${ids[i]}-panel` }, n));
  const wrapped = panels.map((p, i) => h("div", { role: "tabpanel", id: `${ids[i]}-panel`, "aria-labelledby": ids[i] }, p));
  const choose = (i, focus) => {
    buttons.forEach((b, j) => {
      b.setAttribute("aria-selected", String(i === j));
      b.tabIndex = i === j ? 0 : -1;
      wrapped[j].hidden = i !== j;
    });
    if (focus) buttons[i].focus();
  };
  buttons.forEach((b, i) => {
    b.addEventListener("click", () => choose(i, true));
    b.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight") choose((i + 1) % buttons.length, true);
      else if (e.key === "ArrowLeft") choose((i + buttons.length - 1) % buttons.length, true);
      else return;
      e.preventDefault();
    });
  });
  choose(0, false);
  return { el: h("div", {}, h("div", { role: "tablist", "aria-label": "Steps" }, buttons), wrapped), choose };
}

export async function accountWizard() {
  const [groups, vaults] = await Promise.all([listGroups(), listVaults()]);
  const name = input({ name: "account-name", required: true, maxlength: 64 });
  const group = select(groups.map((g) => g.name), { name: "account-group" });
  const kind = select(KINDS, { name: "account-kind" });
  const identityOn = h("input", { type: "radio", name: "identity", id: uid("id"), value: "SystemAssigned", checked: true });
  const identityOff = h("input", { type: "radio", name: "identity", id: uid("id"), value: "None" });
  const identity = h("fieldset", {}, h("legend", {}, "System-assigned managed identity"),
    h("div", { class: "field check" }, identityOn, h("label", { for: identityOn.id }, "On")),
    h("div", { class: "field check" }, identityOff, h("label", { for: identityOff.id }, "Off")));
  const cmk = checkbox("Encrypt data using a customer-managed key");
  const grant = checkbox("Grant the new identity get, wrapKey and unwrapKey on the chosen vault (an access policy)", { checked: true });
  let picker = null;
  const pickerBox = h("div", { hidden: true });
  cmk.box.addEventListener("change", () => {
    pickerBox.hidden = !cmk.box.checked;
    if (cmk.box.checked && !picker) {
      picker = keyPicker({ vaults, accountGroup: group.value, principalId: null });
      pickerBox.append(h("h3", {}, "Select vault and key"), picker.el, grant.el);
    }
  });
  group.addEventListener("change", () => {
    if (picker) {
      picker = keyPicker({ vaults, accountGroup: group.value, principalId: null });
      pickerBox.replaceChildren(h("h3", {}, "Select vault and key"), picker.el, grant.el);
    }
  });
  const encryption = [
    h("p", {}, "Data is always encrypted at rest with AES-256. By default the service manages the key; with a customer-managed key, you hold it in your key vault and can rotate or revoke it."),
    cmk.el,
    h("p", { class: "hint" }, "A customer-managed key needs the account's identity, which is created with the account. The wizard creates the account first, then grants the identity access to the vault, then enables the key."),
    pickerBox,
  ];
  const steps = h("ol", { "aria-live": "polite" });
  const create = h("button", { type: "button" }, "Create");
  const review = [h("p", {}, "Check the other tabs, then create the account."), create, steps];
  const t = tabs(["Basics", "Identity", "Encryption", "Review + create"], [
    [field("Account name", name, "2-64 letters, digits and hyphens; also the account's subdomain."), field("Resource group", group), field("Kind", kind)],
    [identity, h("p", { class: "hint" }, "The identity lets the account use your key vault without secrets.")],
    encryption,
    review,
  ]);

  const step = (text) => {
    const li = h("li", {}, text);
    steps.append(li);
    return li;
  };
  create.addEventListener("click", async () => {
    steps.replaceChildren();
    const wantsIdentity = identityOn.checked;
    const sel = cmk.box.checked ? picker?.selection() : null;
    if (cmk.box.checked && !sel) {
      t.choose(2, true);
      showError(picker.vaultSelect, new Error("Choose a vault and one of its usable keys, or clear the customer-managed key option."));
      return;
    }
    if (cmk.box.checked && !wantsIdentity) {
      t.choose(1, true);
      showError(identity, new Error("A customer-managed key needs the system-assigned identity: turn it On."));
      return;
    }
    const account = await busy(create, () =>
      arm("PUT", accountPath(group.value, name.value.trim()), {
        kind: kind.value,
        sku: { name: "S0" },
        location: "local",
        identity: { type: wantsIdentity ? "SystemAssigned" : "None" },
        properties: {},
      }, API_VERSIONS.accounts), name);
    if (!account) {
      t.choose(0, true);
      return;
    }
    step(`Created account ${account.name}${account.identity?.principalId ? ` with identity ${account.identity.principalId}` : ""}.`);
    const target = `#/accounts/${encodeURIComponent(group.value)}/${encodeURIComponent(account.name)}`;
    if (sel) {
      if (grant.box.checked) {
        const li = step("Granting the identity get, wrapKey and unwrapKey on the vault…");
        const ok = await busy(create, () => grantIdentity(sel, account.identity.principalId), li);
        if (!ok) return void step(h("span", {}, "The account uses service-managed keys for now: ", link(`${target}/encryption`, "finish on its Encryption page")));
        li.textContent = "Granted the identity get, wrapKey and unwrapKey on the vault.";
      }
      const li = step(`Enabling the customer-managed key ${sel.keyName}…`);
      const ok = await busy(create, () => arm("PATCH", accountPath(group.value, account.name), { properties: { encryption: encryptionBody(sel) } }, API_VERSIONS.accounts), li);
      if (!ok) return void step(h("span", {}, "The account uses service-managed keys for now: ", link(`${target}/encryption`, "finish on its Encryption page")));
      li.textContent = `Enabled the customer-managed key ${sel.keyName}.`;
    }
    step(h("span", {}, "Done: ", link(target, `open ${account.name}`)));
  });
  return [h("p", { class: "breadcrumb" }, link("#/accounts", "AI accounts"), " / new"), h("h1", {}, "Create an AI account"), t.el];
}

// --- one account ----------------------------------------------------------------------------

const BLADES = [
  ["overview", "Overview"],
  ["identity", "Identity"],
  ["encryption", "Encryption"],
  ["files", "Files"],
  ["finetuning", "Fine-tuning"],
  ["deployments", "Deployments"],
];

export async function accountPage(rg, name, blade) {
  const account = await arm("GET", accountPath(rg, name), undefined, API_VERSIONS.accounts);
  const base = `#/accounts/${encodeURIComponent(rg)}/${encodeURIComponent(name)}`;
  const nav = h("nav", { "aria-label": "Account" , class: "blades" },
    h("ul", { role: "list", class: "inline" }, BLADES.map(([id, text]) =>
      h("li", {}, h("a", { href: `${base}/${id}`, "aria-current": id === blade ? "page" : null }, text)))));
  const render = {
    overview,
    identity: identityBlade,
    encryption: encryptionBlade,
    files: filesBlade,
    finetuning: fineTuningBlade,
    deployments: deploymentsBlade,
  }[blade];
  const body = render ? await render(rg, account) : [h("p", {}, `No such page: ${blade}.`)];
  return [
    h("p", { class: "breadcrumb" }, link("#/accounts", "AI accounts"), ` / ${rg} / ${name}`),
    h("h1", {}, `AI account ${account.name}`),
    nav,
    ...body,
  ];
}

async function encryptionStatus(rg, account) {
  return arm("GET", `${accountPath(rg, account.name)}/encryptionStatus`, undefined, API_VERSIONS.accounts);
}

function statusLine(status) {
  const text = status.status === "KeyInaccessible"
    ? `KeyInaccessible${status.generations?.find((g) => g.reason)?.reason ? ` (${status.generations.find((g) => g.reason).reason})` : ""}`
    : status.status;
  return h("span", { class: `status-${status.status}`, "data-testid": "cmk-status" }, text);
}

async function overview(rg, account) {
  const status = await encryptionStatus(rg, account);
  const kv = account.properties?.encryption?.keyVaultProperties;
  return [section("Essentials", h("dl", {},
    h("dt", {}, "Kind"), h("dd", {}, account.kind),
    h("dt", {}, "Resource group"), h("dd", {}, rg),
    h("dt", {}, "Endpoint"), h("dd", {}, h("code", {}, account.properties?.endpoint ?? "")),
    h("dt", {}, "Identity"), h("dd", {}, account.identity?.principalId ? h("code", {}, account.identity.principalId) : "None"),
    h("dt", {}, "Encryption"), h("dd", {}, status.keySource === "Microsoft.KeyVault" ? `Customer-managed key ${kv?.keyName ?? ""} in ${kv?.keyVaultUri ?? ""}` : "Service-managed key"),
    h("dt", {}, "Key status"), h("dd", {}, statusLine(status)),
  ))];
}

async function identityBlade(rg, account) {
  const on = account.identity?.type === "SystemAssigned";
  const radioOn = h("input", { type: "radio", name: "identity-status", id: uid("st"), value: "On", checked: on });
  const radioOff = h("input", { type: "radio", name: "identity-status", id: uid("st"), value: "Off", checked: !on });
  const group = h("fieldset", {}, h("legend", {}, "Status"),
    h("div", { class: "field check" }, radioOff, h("label", { for: radioOff.id }, "Off")),
    h("div", { class: "field check" }, radioOn, h("label", { for: radioOn.id }, "On")));
  const save = h("button", { type: "button" }, "Save");
  const confirmBox = h("div", { class: "panel", role: "alertdialog", "aria-labelledby": "confirm-title", hidden: true });
  const apply = async (type) => {
    const done = await busy(save, () => arm("PATCH", accountPath(rg, account.name), { identity: { type } }, API_VERSIONS.accounts), group);
    if (done) refresh();
  };
  save.addEventListener("click", () => {
    const wantOn = radioOn.checked;
    if (wantOn === on) return showError(group, new Error("Nothing to save: choose the other status first."));
    if (wantOn) return apply("SystemAssigned");
    const yes = h("button", { type: "button", class: "danger" }, "Yes, turn it off");
    const no = h("button", { type: "button", class: "secondary" }, "Cancel");
    confirmBox.replaceChildren(
      h("p", { id: "confirm-title" }, "Turn off the system-assigned identity? It is deleted, with its access to key vaults; turning it on again creates a new identity that must be granted access again."),
      yes, no);
    confirmBox.hidden = false;
    no.addEventListener("click", () => { confirmBox.hidden = true; save.focus(); });
    yes.addEventListener("click", () => { confirmBox.hidden = true; apply("None"); });
    no.focus();
  });
  return [section("System-assigned managed identity",
    h("p", {}, "With the identity on, the account can use your key vault's keys without secrets. Grant it get, wrapKey and unwrapKey on the key's vault before enabling a customer-managed key."),
    group, save, confirmBox,
    on ? h("dl", {}, h("dt", {}, "Object (principal) id"), h("dd", {}, h("code", { "data-testid": "principal-id" }, account.identity.principalId)),
      h("dt", {}, "Tenant id"), h("dd", {}, h("code", {}, account.identity.tenantId ?? ""))) : null)];
}

// `retire(n, button)` deletes generation n (only offered for retirable ones).
function generationsTable(status, retire) {
  return table(["Generation", "Key", "State", "Objects", "Bytes", "Retirable"], (status.generations ?? []).map((g) => {
    let retirable = g.retirable ? "Yes" : "No";
    if (g.retirable && retire) {
      const button = h("button", { type: "button", class: "secondary", "aria-label": `Retire generation ${g.generation}` }, "Retire");
      button.addEventListener("click", () => retire(g.generation, button));
      retirable = h("div", {}, "Yes ", button);
    }
    return [
      `${g.generation}${g.active ? " (active)" : ""}`,
      g.keySource === "Microsoft.KeyVault" ? h("code", {}, g.kid ?? "") : "Service-managed",
      h("span", { class: `status-${g.state}` }, g.state, g.reason ? ` (${g.reason})` : "", g.message ? h("span", { class: "why" }, g.message) : null),
      String(g.objects ?? 0),
      formatBytes(g.bytes ?? 0),
      retirable,
    ];
  }), "Key generations and the key-usage report");
}

async function encryptionBlade(rg, account) {
  const [status, vaults] = await Promise.all([encryptionStatus(rg, account), listVaults()]);
  const kv = account.properties?.encryption?.keyVaultProperties;
  const isCmk = status.keySource === "Microsoft.KeyVault";
  const principalId = account.identity?.principalId ?? null;
  const out = [];
  out.push(section("Encryption", h("dl", {},
    h("dt", {}, "Encryption type"), h("dd", {}, isCmk ? "Customer-managed key" : "Service-managed key"),
    isCmk ? [h("dt", {}, "Key vault"), h("dd", {}, h("code", {}, kv.keyVaultUri)), h("dt", {}, "Key"), h("dd", {}, kv.keyName),
      h("dt", {}, "Key version"), h("dd", {}, kv.keyVersion || "latest (follows rotation)")] : null,
    h("dt", {}, "Status"), h("dd", {}, statusLine(status)))));

  // Enable, or change within the same vault.
  if (!principalId) {
    out.push(h("p", { class: "warn" }, "Customer-managed keys need the account's system-assigned identity: turn it on on the Identity page."));
  } else {
    const picker = keyPicker({ vaults, accountGroup: rg, principalId, onlyVaultUri: isCmk ? kv.keyVaultUri : undefined });
    const save = h("button", { type: "button" }, isCmk ? "Change key" : "Enable customer-managed key");
    save.addEventListener("click", async () => {
      const sel = picker.selection();
      if (!sel) return showError(picker.vaultSelect, new Error("Choose a vault and one of its usable keys."));
      const done = await busy(save, () => arm("PATCH", accountPath(rg, account.name), { properties: { encryption: encryptionBody(sel) } }, API_VERSIONS.accounts));
      if (done) refresh();
    });
    out.push(section(isCmk ? "Change the key" : "Encrypt data using a customer-managed key",
      h("p", {}, "Select vault and key. Existing data stays under its key until reprocessed; new data uses the new key."),
      picker.el, save));
  }

  if (isCmk) {
    const rotate = h("button", { type: "button" }, `Rotate key ${kv.keyName}`);
    rotate.addEventListener("click", async () => {
      const bundle = await busy(rotate, () => vault(kv.keyVaultUri, "POST", `keys/${encodeURIComponent(kv.keyName)}/rotate`, {}));
      if (bundle) {
        rotated.textContent = `New version ${bundle.key.kid.split("/").pop()}: ${kv.keyVersion ? "set it as the key version above to use it." : "new data uses it from the next write."}`;
      }
    });
    const rotated = h("p", { "aria-live": "polite", "data-testid": "rotate-result" });
    out.push(section("Rotation", h("p", {}, "Rotating creates a new version of the key in its vault."), rotate, rotated));
  }

  const retire = async (generation, button) => {
    const done = await busy(button, () => arm("POST", `${accountPath(rg, account.name)}/encryption/generations/${generation}/retire`, {}, API_VERSIONS.accounts));
    if (done) refresh();
  };
  out.push(section("Key generations", h("p", {}, "Each generation is a key version the account has used; a retirable one protects nothing and can be deleted."),
    generationsTable(status, retire)));

  const mode = select([{ value: "rewrap", label: "Rewrap data keys (fast; content untouched)" }, { value: "reencrypt", label: "Re-encrypt content under new data keys" }], { name: "reprocess-mode" });
  const start = h("button", { type: "button" }, "Reprocess");
  const progress = h("progress", { max: 100, value: 0, hidden: true, "aria-label": "Reprocessing progress" });
  const progressText = h("p", { "aria-live": "polite", "data-testid": "reprocess-status" });
  start.addEventListener("click", async () => {
    progressText.textContent = "";
    const begun = await busy(start, () => arm("POST", `${accountPath(rg, account.name)}/encryption/reprocess`, { mode: mode.value }, API_VERSIONS.accounts, { withHeaders: true }));
    if (!begun) return;
    progress.hidden = false;
    const url = begun.headers.get("Azure-AsyncOperation");
    let op = begun.body;
    start.disabled = true;
    try {
      for (;;) {
        const p = op.properties ?? {};
        progress.value = op.percentComplete ?? 0;
        progressText.textContent = `${op.status}: ${p.moved ?? 0} of ${p.total ?? "?"} objects moved to generation ${p.targetGeneration ?? "?"}${p.failed ? `, ${p.failed} failed` : ""}.`;
        if (op.status === "Succeeded" || op.status === "Failed" || op.status === "Canceled") break;
        await new Promise((r) => setTimeout(r, 500));
        op = await armUrl(url);
      }
      if (op.status === "Failed") showError(start, { code: op.error?.code, message: op.error?.message ?? "Reprocessing failed." });
      else if (op.status === "Succeeded") {
        progress.value = 100;
        const fresh = await encryptionStatus(rg, account);
        generations.replaceChildren(generationsTable(fresh, retire));
      }
    } catch (e) {
      showError(start, e);
    } finally {
      start.disabled = false;
    }
  });
  const generations = h("div");
  out.push(section("Reprocess", h("p", {}, "Moves existing data to the active key generation, so older keys can be retired."),
    field("Mode", mode), start, progress, progressText, generations));
  return out;
}

async function filesBlade(rg, account) {
  const fileInput = h("input", { type: "file", name: "file" });
  const purpose = select(["fine-tune", "assistants", "batch"], { name: "purpose" });
  const upload = h("button", { type: "submit" }, "Upload");
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      const done = await busy(upload, async () => {
        if (!fileInput.files.length) throw new Error("Choose a file to upload.");
        const data = new FormData();
        data.append("purpose", purpose.value);
        data.append("file", fileInput.files[0]);
        return openai(account.name, "POST", "/files", { body: data });
      }, fileInput);
      if (done) refresh();
    },
  }, field("File", fileInput, "Training data is JSONL; it is encrypted as it is stored."), field("Purpose", purpose), upload);

  let files = [];
  const listStatus = h("p");
  try {
    files = (await openai(account.name, "GET", "/files")).data ?? [];
  } catch (e) {
    queueMicrotask(() => showError(listStatus, e));
  }
  const rows = files.map((f) => {
    const download = h("button", { type: "button", class: "secondary", "aria-label": `Download ${f.filename}` }, "Download");
    const result = h("span", { "aria-live": "polite" });
    download.addEventListener("click", async () => {
      result.textContent = "";
      const response = await busy(download, () => openai(account.name, "GET", `/files/${encodeURIComponent(f.id)}/content`, { raw: true }));
      if (!response) return;
      const blob = await response.blob();
      const a = h("a", { href: URL.createObjectURL(blob), download: f.filename });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
      result.textContent = `Downloaded ${formatBytes(blob.size)}.`;
    });
    return [f.filename, h("code", {}, f.id), f.purpose, formatBytes(f.bytes), formatTime(f.created_at), h("div", {}, download, result)];
  });
  return [
    section("Upload a file", form),
    section("Files", listStatus, table(["Name", "Id", "Purpose", "Size", "Created", "Download"], rows)),
  ];
}

async function listModels(account) {
  return (await openai(account.name, "GET", "/models")).data ?? [];
}

async function fineTuningBlade(rg, account) {
  const [jobsPage, files, models] = await Promise.all([
    openai(account.name, "GET", "/fine_tuning/jobs?limit=50"),
    openai(account.name, "GET", "/files?purpose=fine-tune").then((p) => p.data ?? []),
    listModels(account),
  ]);
  const base = models.filter((m) => !m.id.includes(".ft-"));
  const model = select(base.map((m) => m.id), { name: "ft-model" });
  const training = select(files.map((f) => ({ value: f.id, label: `${f.filename} (${f.id})` })), { name: "ft-training-file" });
  const suffix = input({ name: "ft-suffix", maxlength: 40 });
  const epochs = input({ type: "number", name: "ft-epochs", min: 1, max: 50, placeholder: "auto" });
  const submit = h("button", { type: "submit" }, "Create fine-tuning job");
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      const body = { model: model.value, training_file: training.value };
      if (suffix.value.trim()) body.suffix = suffix.value.trim();
      if (epochs.value) body.hyperparameters = { n_epochs: Number(epochs.value) };
      const done = await busy(submit, async () => {
        if (!training.value) throw new Error("Upload a training file (purpose fine-tune) on the Files page first.");
        return openai(account.name, "POST", "/fine_tuning/jobs", { json: body });
      }, training);
      if (done) refresh();
    },
  }, field("Base model", model), field("Training file", training, "JSONL, at least 10 examples, purpose fine-tune."),
  field("Suffix", suffix), field("Epochs", epochs, "Empty: chosen by the trainer."), submit);

  const rows = (jobsPage.data ?? []).map((j) => {
    const events = h("button", { type: "button", class: "secondary", "aria-expanded": "false", "aria-label": `Events of job ${j.id}` }, "Events");
    const list = h("div", { hidden: true });
    events.addEventListener("click", async () => {
      const open = events.getAttribute("aria-expanded") === "true";
      events.setAttribute("aria-expanded", String(!open));
      list.hidden = open;
      if (open) return;
      await busy(events, async () => {
        const page = await openai(account.name, "GET", `/fine_tuning/jobs/${encodeURIComponent(j.id)}/events?limit=50`);
        list.replaceChildren(table(["Time", "Level", "Message"], (page.data ?? []).map((e) => [formatTime(e.created_at), e.level, e.message])));
      });
    });
    const actions = [events, list];
    if (["validating_files", "queued", "running"].includes(j.status)) {
      const cancel = h("button", { type: "button", class: "danger", "aria-label": `Cancel job ${j.id}` }, "Cancel");
      cancel.addEventListener("click", async () => {
        if (await busy(cancel, () => openai(account.name, "POST", `/fine_tuning/jobs/${encodeURIComponent(j.id)}/cancel`))) refresh();
      });
      actions.unshift(cancel);
    }
    return [h("code", {}, j.id), j.model, h("span", { "data-testid": `job-status-${j.id}` }, j.status),
      j.fine_tuned_model ? h("code", {}, j.fine_tuned_model) : "", j.error?.message ? `${j.error.code}: ${j.error.message}` : "", h("div", {}, actions)];
  });
  const reload = h("button", { type: "button", class: "secondary", onclick: refresh }, "Refresh");
  return [
    section("Create a fine-tuning job", form),
    section("Fine-tuning jobs", reload, table(["Job", "Base model", "Status", "Fine-tuned model", "Error", "Actions"], rows)),
  ];
}

async function deploymentsBlade(rg, account) {
  const path = `${accountPath(rg, account.name)}/deployments`;
  const [deployments, models] = await Promise.all([
    arm("GET", path, undefined, API_VERSIONS.accounts).then((p) => p.value ?? []),
    listModels(account),
  ]);
  const name = input({ name: "deployment-name", required: true });
  const model = select(models.map((m) => m.id), { name: "deployment-model" });
  const submit = h("button", { type: "submit" }, "Deploy");
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      const done = await busy(submit, () => arm("PUT", `${path}/${encodeURIComponent(name.value.trim())}`, {
        sku: { name: "Standard", capacity: 1 },
        properties: { model: { format: "OpenAI", name: model.value } },
      }, API_VERSIONS.accounts), name);
      if (done) refresh();
    },
  }, field("Deployment name", name), field("Model", model, "A base model, or a fine-tuned model of this account (its weights are decrypted with the account's key)."), submit);
  const rows = deployments.map((d) => {
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete deployment ${d.name}` }, "Delete");
    remove.addEventListener("click", async () => {
      if (await busy(remove, () => arm("DELETE", `${path}/${encodeURIComponent(d.name)}`, undefined, API_VERSIONS.accounts))) refresh();
    });
    const p = d.properties ?? {};
    return [d.name, `${p.model?.name ?? ""} ${p.model?.version ?? ""}`, p.servingState ?? p.provisioningState ?? "",
      p.servingError ? `${p.servingError.code}: ${p.servingError.message}` : "", remove];
  });

  // The chat playground: one deployment, a running conversation.
  const chatDeployment = select(deployments.map((d) => d.name), { name: "chat-deployment" });
  const prompt = h("textarea", { name: "chat-prompt", rows: 3, cols: 60 });
  const temperature = input({ type: "number", name: "chat-temperature", min: 0, max: 2, step: 0.1, value: 0 });
  const send = h("button", { type: "submit" }, "Send");
  const log = h("div", { class: "chat-log", role: "log", "aria-label": "Conversation", "aria-live": "polite" });
  const messages = [];
  const chat = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      const text = prompt.value.trim();
      const answer = await busy(send, async () => {
        if (!chatDeployment.value) throw new Error("Deploy a model first.");
        if (!text) throw new Error("Type a message.");
        return openai(account.name, "POST", `/deployments/${encodeURIComponent(chatDeployment.value)}/chat/completions`, {
          json: { messages: [...messages, { role: "user", content: text }], max_tokens: 100, temperature: Number(temperature.value) },
        });
      }, prompt);
      if (!answer) return;
      const reply = answer.choices?.[0]?.message?.content ?? "";
      messages.push({ role: "user", content: text }, { role: "assistant", content: reply });
      log.append(h("p", {}, h("strong", {}, "You: "), text), h("p", { "data-testid": "chat-reply" }, h("strong", {}, "Assistant: "), reply));
      prompt.value = "";
    },
  }, field("Deployment", chatDeployment), field("Message", prompt), field("Temperature", temperature, "0 gives the same answer every time."), send);
  return [
    section("Deploy a model", form),
    section("Deployments", table(["Name", "Model", "State", "Error", "Actions"], rows)),
    section("Chat playground", log, chat),
  ];
}
