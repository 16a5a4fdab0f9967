// Key vaults: list and create (retention, purge protection), and one vault's page: its
// properties, access policies (add / remove) and keys (create RSA, versions, enable / disable,
// rotate) through the vault's own data-plane host.
import { API_VERSIONS, arm, currentSession, vault } from "../api.js";
import { busy, checkbox, controlFor, field, formatTime, h, input, link, resourceGroupOf, section, select, showError, table } from "../ui.js";
import { listGroups } from "./groups.js";

export const KEY_PERMISSIONS = [
  "get", "list", "create", "update", "import", "delete", "recover", "backup", "restore", "purge",
  "encrypt", "decrypt", "wrapKey", "unwrapKey", "sign", "verify", "rotate", "getrotationpolicy",
  "setrotationpolicy", "release",
];

export const vaultPath = (rg, name) =>
  `~/resourceGroups/${encodeURIComponent(rg)}/providers/Microsoft.KeyVault/vaults/${encodeURIComponent(name)}`;

export async function listVaults() {
  return (await arm("GET", "~/providers/Microsoft.KeyVault/vaults", undefined, API_VERSIONS.vaults)).value ?? [];
}

export async function getVault(rg, name) {
  return arm("GET", vaultPath(rg, name), undefined, API_VERSIONS.vaults);
}

// Every key of a vault with its current version's details (kty, size, enabled, expiry).
export async function listKeysWithDetails(vaultUri) {
  const items = [];
  let page = await vault(vaultUri, "GET", "keys?maxresults=25");
  items.push(...(page.value ?? []));
  while (page.nextLink) {
    const next = new URL(page.nextLink);
    page = await vault(vaultUri, "GET", next.pathname.slice(1) + next.search.replace(/[?&]api-version=[^&]*/, ""));
    items.push(...(page.value ?? []));
  }
  return Promise.all(
    items.map(async (item) => {
      const name = item.kid.split("/keys/")[1].split("/")[0];
      const bundle = await vault(vaultUri, "GET", `keys/${encodeURIComponent(name)}`);
      return { name, bundle, size: rsaSize(bundle.key) };
    }),
  );
}

// The modulus size in bits of an RSA JWK (n is unpadded base64url), or 0.
export function rsaSize(jwk) {
  if (!jwk?.n) return 0;
  const bytes = atob(jwk.n.replace(/-/g, "+").replace(/_/g, "/"));
  let i = 0;
  while (i < bytes.length && bytes.charCodeAt(i) === 0) i++;
  return (bytes.length - i) * 8;
}

export async function vaultsPage() {
  const [vaults, groups] = await Promise.all([listVaults(), listGroups()]);
  const name = input({ name: "vault-name", required: true, maxlength: 24 });
  const group = select(groups.map((g) => g.name), { name: "vault-group" });
  const retention = input({ type: "number", name: "retention", min: 7, max: 90, value: 90 });
  const purge = checkbox("Enable purge protection (cannot be turned off)");
  const grantMe = checkbox("Give me every key permission (access policy for the signed-in user)", { checked: true });
  const submit = h("button", { type: "submit" }, "Create key vault");
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const session = currentSession();
        const done = await busy(submit, async () => {
          if (!group.value) throw new Error("Create a resource group first.");
          const properties = {
            tenantId: session.tenant,
            sku: { family: "A", name: "standard" },
            enableSoftDelete: true,
            softDeleteRetentionInDays: Number(retention.value),
            accessPolicies: grantMe.box.checked
              ? [{ tenantId: session.tenant, objectId: session.oid, permissions: { keys: ["all"] } }]
              : [],
          };
          if (purge.box.checked) properties.enablePurgeProtection = true;
          return arm("PUT", vaultPath(group.value, name.value.trim()), { location: "local", properties }, API_VERSIONS.vaults);
        }, controlFor({ softDeleteRetentionInDays: retention, enablePurgeProtection: purge.box, "resource group": group, ResourceGroup: group }, name));
        if (done) location.hash = `#/vaults/${encodeURIComponent(group.value)}/${encodeURIComponent(done.name)}`;
      },
    },
    field("Vault name", name, "3-24 letters, digits and hyphens, starting with a letter."),
    field("Resource group", group),
    field("Soft-delete retention (days)", retention, "7 to 90; fixed once the vault exists."),
    purge.el,
    grantMe.el,
    submit,
  );
  const rows = vaults.map((v) => [
    link(`#/vaults/${encodeURIComponent(resourceGroupOf(v.id))}/${encodeURIComponent(v.name)}`, v.name),
    resourceGroupOf(v.id),
    v.properties.enablePurgeProtection ? "On" : "Off",
    String(v.properties.softDeleteRetentionInDays ?? 90),
  ]);
  return [
    h("h1", {}, "Key vaults"),
    section("Create a key vault", form),
    section("Key vaults", table(["Name", "Resource group", "Purge protection", "Retention (days)"], rows)),
  ];
}

function policiesSection(rg, name, v) {
  const policies = v.properties.accessPolicies ?? [];
  const rows = policies.map((p) => {
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Remove the access policy of ${p.objectId}` }, "Remove");
    remove.addEventListener("click", async () => {
      const done = await busy(remove, () =>
        arm("PUT", `${vaultPath(rg, name)}/accessPolicies/remove`, {
          properties: { accessPolicies: [{ tenantId: p.tenantId, objectId: p.objectId, permissions: { keys: [] } }] },
        }, API_VERSIONS.vaults));
      if (done) dispatchEvent(new Event("kf:refresh"));
    });
    return [h("code", {}, p.objectId), (p.permissions?.keys ?? []).join(", "), remove];
  });
  const objectId = input({ name: "policy-object-id", placeholder: "00000000-0000-0000-0000-000000000000" });
  const boxes = KEY_PERMISSIONS.map((perm) => ({ perm, ...checkbox(perm, { name: "key-permission", value: perm }) }));
  const permissions = h("fieldset", {}, h("legend", {}, "Key permissions"), boxes.map((b) => b.el));
  const submit = h("button", { type: "submit" }, "Add access policy");
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const keys = boxes.filter((b) => b.box.checked).map((b) => b.perm);
        const done = await busy(submit, async () => {
          if (!keys.length) throw new Error("Choose at least one key permission.");
          return arm("PUT", `${vaultPath(rg, name)}/accessPolicies/add`, {
            properties: { accessPolicies: [{ tenantId: v.properties.tenantId, objectId: objectId.value.trim(), permissions: { keys } }] },
          }, API_VERSIONS.vaults);
        }, objectId);
        if (done) dispatchEvent(new Event("kf:refresh"));
      },
    },
    field("Object id (user, service principal or managed identity)", objectId, "An AI account's identity is shown on its Identity page."),
    permissions,
    submit,
  );
  return section(
    "Access policies",
    v.properties.enableRbacAuthorization ? h("p", { class: "warn" }, "This vault uses Azure RBAC: access policies are not used.") : null,
    table(["Object id", "Key permissions", "Action"], rows),
    form,
  );
}

async function keysSection(v) {
  const uri = v.properties.vaultUri;
  const container = h("div");
  let keys = [];
  try {
    keys = await listKeysWithDetails(uri);
  } catch (e) {
    const p = h("p", {}, "The keys could not be listed.");
    container.append(p);
    queueMicrotask(() => showError(p, e));
  }
  const rows = keys.map(({ name, bundle, size }) => {
    const enabled = bundle.attributes.enabled !== false;
    const toggle = h("button", { type: "button", class: "secondary", "aria-label": `${enabled ? "Disable" : "Enable"} key ${name}` }, enabled ? "Disable" : "Enable");
    toggle.addEventListener("click", async () => {
      const done = await busy(toggle, () => vault(uri, "PATCH", `keys/${encodeURIComponent(name)}`, { attributes: { enabled: !enabled } }));
      if (done) dispatchEvent(new Event("kf:refresh"));
    });
    const rotate = h("button", { type: "button", class: "secondary", "aria-label": `Rotate key ${name}` }, "Rotate");
    rotate.addEventListener("click", async () => {
      const done = await busy(rotate, () => vault(uri, "POST", `keys/${encodeURIComponent(name)}/rotate`, {}));
      if (done) dispatchEvent(new Event("kf:refresh"));
    });
    const versionsButton = h("button", { type: "button", class: "secondary", "aria-expanded": "false", "aria-label": `Versions of key ${name}` }, "Versions");
    const versions = h("div", { hidden: true });
    versionsButton.addEventListener("click", async () => {
      const open = versionsButton.getAttribute("aria-expanded") === "true";
      versionsButton.setAttribute("aria-expanded", String(!open));
      versions.hidden = open;
      if (open) return;
      await busy(versionsButton, async () => {
        const list = (await vault(uri, "GET", `keys/${encodeURIComponent(name)}/versions?maxresults=25`)).value ?? [];
        versions.replaceChildren(table(["Version", "Enabled", "Created"], list.map((k) => [
          h("code", {}, k.kid.split("/").pop()), k.attributes.enabled ? "Yes" : "No", formatTime(k.attributes.created)])));
      });
    });
    const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete key ${name}` }, "Delete");
    remove.addEventListener("click", async () => {
      const done = await busy(remove, () => vault(uri, "DELETE", `keys/${encodeURIComponent(name)}`));
      if (done) dispatchEvent(new Event("kf:refresh"));
    });
    const policyButton = h("button", { type: "button", class: "secondary", "aria-expanded": "false", "aria-label": `Rotation policy of key ${name}` }, "Rotation policy");
    const policy = h("div", { hidden: true });
    policyButton.addEventListener("click", async () => {
      const open = policyButton.getAttribute("aria-expanded") === "true";
      policyButton.setAttribute("aria-expanded", String(!open));
      policy.hidden = open;
      if (!open) await busy(policyButton, async () => policy.replaceChildren(await rotationPolicyForm(uri, name)));
    });
    return [
      name,
      `${bundle.key.kty}${size ? ` ${size}` : bundle.key.crv ? ` ${bundle.key.crv}` : ""}`,
      enabled ? "Enabled" : "Disabled",
      h("code", {}, bundle.key.kid.split("/").pop()),
      h("div", {}, toggle, rotate, versionsButton, policyButton, remove, versions, policy),
    ];
  });
  const keyName = input({ name: "key-name", required: true });
  const kty = select(["RSA", "RSA-HSM", "EC", "EC-HSM"], { name: "key-type" });
  const size = select(["2048", "3072", "4096"], { name: "key-size" });
  const submit = h("button", { type: "submit" }, "Create key");
  const form = h(
    "form",
    {
      onsubmit: async (event) => {
        event.preventDefault();
        const body = kty.value.startsWith("RSA") ? { kty: kty.value, key_size: Number(size.value) } : { kty: kty.value, crv: "P-256" };
        const done = await busy(submit, () => vault(uri, "POST", `keys/${encodeURIComponent(keyName.value.trim())}/create`, body), keyName);
        if (done) dispatchEvent(new Event("kf:refresh"));
      },
    },
    field("Key name", keyName),
    field("Key type", kty),
    field("RSA key size (bits)", size, "Customer-managed keys must be RSA or RSA-HSM 2048."),
    submit,
  );
  container.append(table(["Name", "Type", "State", "Current version", "Actions"], rows, "Keys"), form);
  return [section("Keys", container), await deletedKeysSection(v)];
}

// A key's rotation policy: rotate N days after creation (ISO 8601 "P{N}D"), and the expiry
// given to new versions. An empty field removes that part.
async function rotationPolicyForm(uri, name) {
  const current = await vault(uri, "GET", `keys/${encodeURIComponent(name)}/rotationpolicy`);
  const rotateAction = (current.lifetimeActions ?? []).find((a) => a.action?.type?.toLowerCase() === "rotate");
  const days = /^P(\d+)D$/.exec(rotateAction?.trigger?.timeAfterCreate ?? "");
  const rotateAfter = input({ type: "number", min: 1, name: "rotate-after-days", value: days ? days[1] : "" });
  const expiry = input({ name: "expiry-time", placeholder: "P90D", value: current.attributes?.expiryTime ?? "" });
  const save = h("button", { type: "submit" }, "Save rotation policy");
  return h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      const body = { lifetimeActions: [], attributes: {} };
      if (rotateAfter.value) body.lifetimeActions.push({ trigger: { timeAfterCreate: `P${rotateAfter.value}D` }, action: { type: "Rotate" } });
      if (expiry.value.trim()) body.attributes.expiryTime = expiry.value.trim();
      const done = await busy(save, () => vault(uri, "PUT", `keys/${encodeURIComponent(name)}/rotationpolicy`, body), controlFor({ expiryTime: expiry }, rotateAfter));
      if (done) save.insertAdjacentElement("afterend", h("span", { class: "ok", role: "status" }, " Saved."));
    },
  }, field(`Rotate ${name} after (days)`, rotateAfter, "Empty: no automatic rotation."), field("Expiry of new versions (ISO 8601 duration)", expiry), save);
}

async function deletedKeysSection(v) {
  const uri = v.properties.vaultUri;
  const status = h("p");
  let deleted = [];
  try {
    deleted = (await vault(uri, "GET", "deletedkeys?maxresults=25")).value ?? [];
  } catch (e) {
    queueMicrotask(() => showError(status, e));
  }
  const rows = deleted.map((k) => {
    const name = k.kid.split("/keys/")[1].split("/")[0];
    const recover = h("button", { type: "button", "aria-label": `Recover key ${name}` }, "Recover");
    recover.addEventListener("click", async () => {
      if (await busy(recover, () => vault(uri, "POST", `deletedkeys/${encodeURIComponent(name)}/recover`, {}))) dispatchEvent(new Event("kf:refresh"));
    });
    const purge = h("button", { type: "button", class: "danger", "aria-label": `Purge key ${name}` }, "Purge");
    purge.addEventListener("click", async () => {
      if ((await busy(purge, () => vault(uri, "DELETE", `deletedkeys/${encodeURIComponent(name)}`))) !== undefined) dispatchEvent(new Event("kf:refresh"));
    });
    return [name, formatTime(k.deletedDate), formatTime(k.scheduledPurgeDate), h("div", {}, recover, purge)];
  });
  return section("Deleted keys", status,
    v.properties.enablePurgeProtection ? h("p", { class: "hint" }, "Purge protection is on: deleted keys cannot be purged before their scheduled purge date.") : null,
    table(["Name", "Deleted", "Scheduled purge", "Actions"], rows, "Deleted keys"));
}

function networkingSection(rg, name, v) {
  const acls = v.properties.networkAcls ?? { defaultAction: "Allow", bypass: "AzureServices", ipRules: [] };
  const publicAccess = select(["Enabled", "Disabled"], { name: "public-network-access" });
  publicAccess.value = v.properties.publicNetworkAccess ?? "Enabled";
  const defaultAction = select([{ value: "Allow", label: "Allow: every address" }, { value: "Deny", label: "Deny: only the addresses below" }], { name: "default-action" });
  defaultAction.value = acls.defaultAction ?? "Allow";
  const bypass = checkbox("Allow trusted platform services (AI accounts' customer-managed keys) to bypass this firewall", { checked: (acls.bypass ?? "AzureServices") === "AzureServices" });
  const ipRules = h("textarea", { name: "ip-rules", rows: 3, cols: 40 }, (acls.ipRules ?? []).map((r) => r.value).join("\n"));
  const save = h("button", { type: "submit" }, "Save networking");
  const form = h("form", {
    onsubmit: async (event) => {
      event.preventDefault();
      const properties = {
        publicNetworkAccess: publicAccess.value,
        networkAcls: {
          defaultAction: defaultAction.value,
          bypass: bypass.box.checked ? "AzureServices" : "None",
          ipRules: ipRules.value.split(/\s+/).filter(Boolean).map((value) => ({ value })),
          virtualNetworkRules: acls.virtualNetworkRules ?? [],
        },
      };
      const done = await busy(save, () => arm("PATCH", vaultPath(rg, name), { properties }, API_VERSIONS.vaults),
        controlFor({ ipRules: ipRules, defaultAction: defaultAction, bypass: bypass.box, publicNetworkAccess: publicAccess }, save));
      if (done) dispatchEvent(new Event("kf:refresh"));
    },
  }, field("Public network access", publicAccess), field("Default action", defaultAction), bypass.el,
  field("Allowed addresses (one IPv4/IPv6 address or CIDR range per line)", ipRules), save);
  return section("Networking", h("p", { class: "hint" }, "Closing the firewall to the platform makes CMK-protected data of accounts using this vault inaccessible."), form);
}

export async function vaultPage(rg, name) {
  const v = await getVault(rg, name);
  const p = v.properties;
  return [
    h("p", { class: "breadcrumb" }, link("#/vaults", "Key vaults"), ` / ${rg} / `),
    h("h1", {}, `Key vault ${v.name}`),
    section(
      "Properties",
      h("dl", {},
        h("dt", {}, "Vault URI"), h("dd", {}, h("code", {}, p.vaultUri)),
        h("dt", {}, "Resource group"), h("dd", {}, rg),
        h("dt", {}, "Soft delete"), h("dd", {}, `On, ${p.softDeleteRetentionInDays ?? 90} days`),
        h("dt", {}, "Purge protection"), h("dd", {}, p.enablePurgeProtection ? "On" : "Off"),
        h("dt", {}, "Permission model"), h("dd", {}, p.enableRbacAuthorization ? "Azure RBAC" : "Access policies"),
        h("dt", {}, "Firewall"), h("dd", {}, p.networkAcls ? `${p.networkAcls.defaultAction}, bypass ${p.networkAcls.bypass}` : "Allow"),
      ),
    ),
    policiesSection(rg, name, v),
    networkingSection(rg, name, v),
    await keysSection(v),
  ];
}
