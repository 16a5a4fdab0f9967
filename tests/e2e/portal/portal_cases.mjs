// The portal's cases (portal_test.mjs runs them in a process that trusts the CA and resolves
// *.localhost). First the serving rules (types, CSP, caching, 404, CORS) over plain fetch, then
// the seed's flow in Chromium, one step per subtest, each ending with a screenshot.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import { ADMIN_PASSWORD } from "../js/support/keyfoundryd.mjs";

const JS_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "js");
const { chromium } = createRequire(join(JS_DIR, "package.json"))("playwright-core");

const CHROMIUM = "/usr/bin/chromium";
const CERTUTIL = "/usr/bin/certutil";
const port = Number(process.env.KF_E2E_PORT);
const caPath = process.env.NODE_EXTRA_CA_CERTS;
const origin = `https://127.0.0.1:${port}`;
const vaultHost = (name) => `https://${name}.vault.localhost:${port}`;

const work = mkdtempSync(join(tmpdir(), "kf-portal-"));
const shots = process.env.KF_PORTAL_SCREENSHOTS || join(work, "screenshots");
let browser;
let page;
let shot = 0;

// The names the flow creates.
const RG = "rg-portal";
const VAULT = "kv-portal";
const KEY = "cmk";
const ACCOUNT = "ai-portal";
let principalId = "";

before(async () => {
  for (const [path, pkg] of [[CHROMIUM, "chromium"], [CERTUTIL, "libnss3-tools"]]) {
    assert.ok(existsSync(path), `${path} is missing: run scripts/install-deps.sh (Debian package ${pkg})`);
  }
  rmSync(shots, { recursive: true, force: true });
  mkdirSync(shots, { recursive: true });
  // Chromium on Linux reads trusted roots from the user's NSS database, $HOME/.pki/nssdb.
  const home = join(work, "home");
  const nssdb = join(home, ".pki", "nssdb");
  mkdirSync(nssdb, { recursive: true });
  execFileSync(CERTUTIL, ["-d", `sql:${nssdb}`, "-N", "--empty-password"]);
  execFileSync(CERTUTIL, ["-d", `sql:${nssdb}`, "-A", "-t", "C,,", "-n", "keyfoundry deployment CA", "-i", caPath]);
  browser = await chromium.launchPersistentContext(join(work, "profile"), {
    executablePath: CHROMIUM,
    headless: true,
    env: { ...process.env, HOME: home },
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
    viewport: { width: 1280, height: 900 },
  });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.setDefaultTimeout(20_000);
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") console.error(`console: ${m.text()}`);
  });
});

after(async () => {
  await browser?.close();
  console.error(`portal screenshots: ${shots}`);
  // Keep only the screenshots.
  if (process.env.KF_PORTAL_SCREENSHOTS) rmSync(work, { recursive: true, force: true });
  else for (const dir of ["home", "profile"]) rmSync(join(work, dir), { recursive: true, force: true });
});

async function screenshot(name) {
  shot += 1;
  await page.screenshot({ path: join(shots, `${String(shot).padStart(2, "0")}-${name}.png`), fullPage: true });
}

const main = () => page.locator("main");
// Opens a page of the portal and waits until it has rendered (app.js sets main's data-route).
const go = async (hash) => {
  await page.goto(`${origin}/${hash}`);
  await page.locator(`main[data-route="${hash}"]`).waitFor();
};

test("the portal is served with its types, a strict CSP and revalidation", async () => {
  const index = await fetch(`${origin}/`);
  assert.equal(index.status, 200);
  assert.equal(index.headers.get("content-type"), "text/html; charset=utf-8");
  const csp = index.headers.get("content-security-policy");
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self';/);
  assert.match(csp, new RegExp(`connect-src 'self' https://\\*\\.vault\\.localhost:${port};`));
  assert.equal(index.headers.get("cache-control"), "no-cache");
  assert.equal(index.headers.get("x-frame-options"), "DENY");
  assert.match(await index.text(), /<script type="module" src="\/portal\/js\/app.js">/);
  const etag = index.headers.get("etag");
  const again = await fetch(`${origin}/`, { headers: { "If-None-Match": etag } });
  assert.equal(again.status, 304);

  const js = await fetch(`${origin}/portal/js/app.js`);
  assert.equal(js.status, 200);
  assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8");
  const css = await fetch(`${origin}/portal/css/portal.css`);
  assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
  for (const missing of ["/portal/js/nothing.js", "/portal/", "/portal/../index.html", "/portal/js"]) {
    const response = await fetch(`${origin}${missing}`);
    assert.ok([400, 404].includes(response.status), `${missing}: ${response.status}`);
  }
  // A vault's or an account's host is an API, not the portal (the vault asks for a token).
  for (const host of [vaultHost("anyvault"), `https://anyaccount.openai.localhost:${port}`]) {
    const response = await fetch(`${host}/portal/js/app.js`);
    assert.ok([401, 404].includes(response.status), `${host}: ${response.status}`);
    assert.match(response.headers.get("content-type"), /^application\/json/);
  }
});

test("the vault hosts answer CORS for the portal's origins only", async () => {
  for (const allowed of [origin, `https://localhost:${port}`]) {
    const preflight = await fetch(`${vaultHost("anyvault")}/keys/k1/create?api-version=7.5`, {
      method: "OPTIONS",
      headers: { Origin: allowed, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type" },
    });
    assert.equal(preflight.status, 204, allowed);
    assert.equal(preflight.headers.get("access-control-allow-origin"), allowed);
    const challenge = await fetch(`${vaultHost("anyvault")}/keys?api-version=7.5`, { headers: { Origin: allowed } });
    assert.equal(challenge.status, 401);
    assert.equal(challenge.headers.get("access-control-allow-origin"), allowed);
    assert.match(challenge.headers.get("access-control-expose-headers"), /WWW-Authenticate/);
  }
  for (const other of ["https://evil.example", `https://127.0.0.1:${port + 1}`, `https://anyvault.vault.localhost:${port}`]) {
    const preflight = await fetch(`${vaultHost("anyvault")}/keys?api-version=7.5`, {
      method: "OPTIONS",
      headers: { Origin: other, "Access-Control-Request-Method": "GET" },
    });
    assert.notEqual(preflight.status, 204, other);
    assert.equal(preflight.headers.get("access-control-allow-origin"), null, other);
  }
});

test("sign in", async () => {
  await page.goto(`${origin}/`);
  await page.getByLabel("User name").fill("admin");
  await page.getByLabel("Password").fill("wrong password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "invalid_grant" }).waitFor();
  await screenshot("sign-in-refused");
  await page.getByLabel("Password").fill(ADMIN_PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("Signed in as").waitFor();
  await main().getByRole("heading", { name: "Key vaults", level: 1 }).waitFor();
  await screenshot("signed-in");
});

test("create a resource group", async () => {
  await go("#/groups");
  await page.getByLabel("Resource group name").fill("bad name!");
  await page.getByRole("button", { name: "Create resource group" }).click();
  await page.getByRole("alert").filter({ hasText: "InvalidResourceGroupName" }).waitFor();
  await page.getByLabel("Resource group name").fill(RG);
  await page.getByRole("button", { name: "Create resource group" }).click();
  await main().getByRole("cell", { name: RG, exact: true }).waitFor();
  await screenshot("resource-group");
});

test("create a vault with purge protection and an RSA 2048 key", async () => {
  await go("#/vaults");
  await page.getByLabel("Vault name").fill(VAULT);
  await page.getByLabel("Resource group").selectOption(RG);
  await page.getByLabel("Soft-delete retention (days)").fill("7");
  await page.getByLabel("Enable purge protection").check();
  await page.getByRole("button", { name: "Create key vault" }).click();
  await main().getByRole("heading", { name: `Key vault ${VAULT}` }).waitFor();
  await assertDd("Purge protection", "On");
  await page.getByLabel("Key name").fill(KEY);
  await page.getByLabel("Key type").selectOption("RSA");
  await page.getByLabel("RSA key size (bits)").selectOption("2048");
  await page.getByRole("button", { name: "Create key" }).click();
  await main().getByRole("cell", { name: KEY, exact: true }).waitFor();
  await main().getByRole("cell", { name: "RSA 2048" }).waitFor();
  await screenshot("vault-and-key");
});

async function assertDd(term, value) {
  const dd = main().locator(`dt:text-is("${term}") + dd`);
  await dd.filter({ hasText: value }).waitFor();
}

test("create an account with a system-assigned identity", async () => {
  await go("#/accounts/new");
  await page.getByLabel("Account name").fill(ACCOUNT);
  await page.getByLabel("Resource group").selectOption(RG);
  await page.getByLabel("Kind").selectOption("AIServices");
  await page.getByRole("tab", { name: "Identity" }).click();
  await page.getByLabel("On", { exact: true }).check();
  await page.getByRole("tab", { name: "Encryption" }).click();
  await page.getByLabel("Encrypt data using a customer-managed key").check();
  await page.getByLabel("Key vault").selectOption({ label: `${VAULT} (${RG})` });
  // Before the account exists its identity cannot hold permissions: the picker says so, and
  // the key itself is usable.
  await main().getByText("The account's identity does not exist yet").waitFor();
  await expectEnabled(page.getByLabel(new RegExp(`^${KEY} \\(RSA 2048\\)`)));
  await screenshot("wizard-encryption-tab");
  // This walk enables the key later, on the Encryption blade, as the seed's flow does.
  await page.getByLabel("Encrypt data using a customer-managed key").uncheck();
  await page.getByRole("tab", { name: "Review + create" }).click();
  await page.getByRole("button", { name: "Create", exact: true }).click();
  const created = main().getByText(`Created account ${ACCOUNT} with identity`);
  await created.waitFor();
  principalId = /identity ([0-9a-f-]{36})/.exec(await created.textContent())[1];
  await screenshot("account-created");
});

async function expectEnabled(locator) {
  await locator.waitFor();
  assert.equal(await locator.isDisabled(), false);
}

test("grant the identity get, wrapKey and unwrapKey on the vault", async () => {
  await go(`#/accounts/${RG}/${ACCOUNT}/identity`);
  assert.equal(await main().getByTestId("principal-id").textContent(), principalId);
  await screenshot("identity-blade");
  await grantAccess();
  await screenshot("access-policy-granted");
});

async function grantAccess() {
  await go(`#/vaults/${RG}/${VAULT}`);
  await page.getByLabel("Object id").fill(principalId);
  for (const perm of ["get", "wrapKey", "unwrapKey"]) await page.getByLabel(perm, { exact: true }).check();
  await page.getByRole("button", { name: "Add access policy" }).click();
  await main().getByRole("cell", { name: principalId, exact: true }).waitFor();
}

test("enable the customer-managed key on the Encryption blade", async () => {
  await go(`#/accounts/${RG}/${ACCOUNT}/encryption`);
  await page.getByLabel("Key vault").selectOption({ label: `${VAULT} (${RG})` });
  const key = page.getByLabel(new RegExp(`^${KEY} \\(RSA 2048\\)`));
  await expectEnabled(key);
  await key.check();
  await page.getByRole("button", { name: "Enable customer-managed key" }).click();
  await assertDd("Encryption type", "Customer-managed key");
  await page.getByTestId("cmk-status").filter({ hasText: "Active" }).waitFor();
  await screenshot("cmk-enabled");
});

async function upload(name, text) {
  await go(`#/accounts/${RG}/${ACCOUNT}/files`);
  await page.getByLabel("File", { exact: true }).setInputFiles({ name, mimeType: "application/jsonl", buffer: Buffer.from(text) });
  await page.getByRole("button", { name: "Upload" }).click();
  await main().getByRole("cell", { name, exact: true }).waitFor();
}

const TRAINING = `${JSON.stringify({ prompt: "What is keyfoundry?", completion: "A key vault with CMK." })}\n`;

test("the wizard's key picker explains unusable keys and creates an account with CMK in one go", async () => {
  await go(`#/vaults/${RG}/${VAULT}`);
  await page.getByLabel("Key name").fill("ec-key");
  await page.getByLabel("Key type").selectOption("EC");
  await page.getByRole("button", { name: "Create key" }).click();
  await main().getByRole("cell", { name: "ec-key", exact: true }).waitFor();

  await go("#/accounts/new");
  await page.getByLabel("Account name").fill("ai-wizard");
  await page.getByLabel("Resource group").selectOption(RG);
  await page.getByRole("tab", { name: "Encryption" }).click();
  await page.getByLabel("Encrypt data using a customer-managed key").check();
  await page.getByLabel("Key vault").selectOption({ label: `${VAULT} (${RG})` });
  const ec = page.getByLabel(/^ec-key \(EC\)/);
  await ec.waitFor();
  assert.equal(await ec.isDisabled(), true);
  await main().getByText("Cannot be chosen: it is EC P-256: only RSA or RSA-HSM 2048 keys can protect an account").waitFor();
  await page.getByLabel(new RegExp(`^${KEY} \\(RSA 2048\\)`)).check();
  await screenshot("wizard-key-picker");
  // Keyboard: the tabs follow the ARIA pattern (arrow keys move between them).
  await page.getByRole("tab", { name: "Encryption" }).focus();
  await page.keyboard.press("ArrowRight");
  assert.equal(await page.getByRole("tab", { name: "Review + create" }).getAttribute("aria-selected"), "true");
  await page.getByRole("button", { name: "Create", exact: true }).click();
  await main().getByText(`Enabled the customer-managed key ${KEY}.`).waitFor();
  await main().getByText("Granted the identity get, wrapKey and unwrapKey on the vault.").waitFor();
  await screenshot("wizard-created-with-cmk");
  await main().getByRole("link", { name: "open ai-wizard" }).click();
  await assertDd("Encryption", `Customer-managed key ${KEY}`);
  await page.getByTestId("cmk-status").filter({ hasText: "Active" }).waitFor();
});

test("the identity cannot be switched off while CMK is on (confirmation, then the API's refusal)", async () => {
  await go(`#/accounts/${RG}/${ACCOUNT}/identity`);
  await page.getByLabel("Off", { exact: true }).check();
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByRole("alertdialog").waitFor();
  await screenshot("identity-off-confirmation");
  await page.getByRole("button", { name: "Yes, turn it off" }).click();
  await page.getByRole("alert").filter({ hasText: "ManagedIdentityRequiredByCmk" }).waitFor();
  await screenshot("identity-off-refused");
});

test("upload a file and download it", async () => {
  await upload("train-1.jsonl", TRAINING);
  await page.getByRole("button", { name: "Download train-1.jsonl" }).click();
  await main().getByText(`Downloaded ${TRAINING.length} B.`).waitFor();
  await screenshot("file-uploaded");
});

// Ten questions with their answers, in OpenAI's chat format: the fine-tuned model answers them
// exactly at temperature 0.
const QA = Array.from({ length: 10 }, (_, i) => [`What is the code word number ${i}?`, `The code word ${i} is falcon${i}.`]);
const FINE_TUNE = QA.map(([q, a]) => JSON.stringify({ messages: [{ role: "user", content: q }, { role: "assistant", content: a }] })).join("\n") + "\n";
let fineTunedModel = "";

async function chat(deployment, question) {
  await go(`#/accounts/${RG}/${ACCOUNT}/deployments`);
  await page.getByLabel("Deployment", { exact: true }).selectOption(deployment);
  await page.getByLabel("Message").fill(question);
  await page.getByRole("button", { name: "Send" }).click();
  return page.getByTestId("chat-reply").last();
}

test("fine-tune on the Fine-tuning page, deploy the model, chat in the playground", async () => {
  await upload("train-ft.jsonl", FINE_TUNE);
  await go(`#/accounts/${RG}/${ACCOUNT}/finetuning`);
  const training = page.getByLabel("Training file");
  await training.selectOption(await training.locator("option", { hasText: "train-ft.jsonl" }).getAttribute("value"));
  await page.getByLabel("Suffix").fill("portal");
  await page.getByRole("button", { name: "Create fine-tuning job" }).click();
  const status = main().locator("[data-testid^=job-status-]").first();
  await status.waitFor();
  const deadline = Date.now() + 120_000;
  for (;;) {
    const text = await status.textContent();
    if (text === "succeeded") break;
    assert.ok(!["failed", "cancelled"].includes(text), `the job ended ${text}`);
    assert.ok(Date.now() < deadline, `the job is still ${text}`);
    await page.waitForTimeout(1000);
    await page.getByRole("button", { name: "Refresh" }).click();
    await main().locator("[data-testid^=job-status-]").first().waitFor();
  }
  fineTunedModel = (await main().getByRole("row").nth(1).getByRole("cell").nth(3).textContent()).trim();
  assert.match(fineTunedModel, /\.ft-[0-9a-f]+-portal$/);
  await screenshot("fine-tuned");

  await go(`#/accounts/${RG}/${ACCOUNT}/deployments`);
  await page.getByLabel("Deployment name").fill("tuned");
  await page.getByLabel("Model", { exact: true }).selectOption(fineTunedModel);
  await page.getByRole("button", { name: "Deploy" }).click();
  await main().getByRole("cell", { name: "Serving" }).waitFor();
  const reply = await chat("tuned", QA[3][0]);
  await reply.filter({ hasText: QA[3][1] }).waitFor();
  await screenshot("chat-playground");
});

test("rotate the key on the Encryption blade; new data uses the new version", async () => {
  await go(`#/accounts/${RG}/${ACCOUNT}/encryption`);
  await page.getByRole("button", { name: `Rotate key ${KEY}` }).click();
  await page.getByTestId("rotate-result").filter({ hasText: "New version" }).waitFor();
  await screenshot("key-rotated");
  await upload("train-2.jsonl", TRAINING);
  await go(`#/accounts/${RG}/${ACCOUNT}/encryption`);
  const generations = main().getByRole("table", { name: "Key generations and the key-usage report" });
  // Service-managed generation 1, then one per key version.
  await generations.getByRole("cell", { name: "3 (active)" }).waitFor();
  await screenshot("generations-after-rotation");
});

test("remove the access policy: KeyInaccessible, and the download fails", async () => {
  await go(`#/vaults/${RG}/${VAULT}`);
  await page.getByRole("button", { name: `Remove the access policy of ${principalId}` }).click();
  await main().getByRole("cell", { name: principalId, exact: true }).waitFor({ state: "detached" });
  await screenshot("access-policy-removed");
  await go(`#/accounts/${RG}/${ACCOUNT}/files`);
  await page.getByRole("button", { name: "Download train-1.jsonl" }).click();
  await page.getByRole("alert").filter({ hasText: "KeyInaccessible" }).waitFor();
  await screenshot("download-refused");
  await go(`#/accounts/${RG}/${ACCOUNT}/overview`);
  await page.getByTestId("cmk-status").filter({ hasText: "KeyInaccessible" }).waitFor();
  await screenshot("key-inaccessible");
  // A deployment already loaded keeps serving (S7).
  const reply = await chat("tuned", QA[5][0]);
  await reply.filter({ hasText: QA[5][1] }).waitFor();
  await screenshot("deployment-still-serving");
});

test("restore access, then reprocess onto the active generation", async () => {
  await grantAccess();
  await go(`#/accounts/${RG}/${ACCOUNT}/overview`);
  await page.getByTestId("cmk-status").filter({ hasText: "Active" }).waitFor();
  await go(`#/accounts/${RG}/${ACCOUNT}/files`);
  await page.getByRole("button", { name: "Download train-1.jsonl" }).click();
  await main().getByText(`Downloaded ${TRAINING.length} B.`).waitFor();
  await screenshot("access-restored");
  await go(`#/accounts/${RG}/${ACCOUNT}/encryption`);
  await page.getByLabel("Mode").selectOption("rewrap");
  await page.getByRole("button", { name: "Reprocess" }).click();
  await page.getByTestId("reprocess-status").filter({ hasText: "Succeeded" }).waitFor();
  assert.equal(await page.getByRole("progressbar", { name: "Reprocessing progress" }).getAttribute("value"), "100");
  await screenshot("reprocessed");
  // Every object is now under the active generation: the older CMK one protects nothing.
  const generations = main().getByRole("table", { name: "Key generations and the key-usage report" }).last();
  const row = generations.getByRole("row").filter({ has: page.locator("td:first-child", { hasText: /^2$/ }) });
  await row.getByRole("cell", { name: "Yes" }).waitFor();
  // ... so it can be retired.
  await row.getByRole("button", { name: "Retire generation 2" }).click();
  await page.getByRole("button", { name: "Retire generation 2" }).first().waitFor({ state: "detached" });
  await main().getByRole("table", { name: "Key generations and the key-usage report" }).waitFor();
  assert.equal(await main().locator("td:first-child", { hasText: /^2$/ }).count(), 0);
  await screenshot("generation-retired");
});

test("vault keys: rotation policy, delete, purge refused under purge protection, recover", async () => {
  await go(`#/vaults/${RG}/${VAULT}`);
  await page.getByRole("button", { name: `Rotation policy of key ${KEY}` }).click();
  await page.getByLabel(`Rotate ${KEY} after (days)`).fill("30");
  await page.getByRole("button", { name: "Save rotation policy" }).click();
  await page.getByRole("status").filter({ hasText: "Saved." }).waitFor();
  await screenshot("rotation-policy");
  await page.getByRole("button", { name: "Delete key ec-key" }).click();
  const deleted = main().getByRole("table", { name: "Deleted keys" });
  await deleted.getByRole("cell", { name: "ec-key", exact: true }).waitFor();
  await page.getByRole("button", { name: "Purge key ec-key" }).click();
  await page.getByRole("alert").filter({ hasText: /purge/i }).waitFor();
  await screenshot("purge-refused");
  await page.getByRole("button", { name: "Recover key ec-key" }).click();
  await main().getByRole("table", { name: "Keys", exact: true }).getByRole("cell", { name: "ec-key", exact: true }).waitFor();
  await main().getByRole("table", { name: "Deleted keys" }).getByRole("cell", { name: "None yet." }).waitFor();
  await screenshot("key-recovered");
});

test("the audit log shows the access-policy changes and an intact chain", async () => {
  await go("#/audit");
  await page.getByLabel("Operation").fill("VaultAccessPolicyWrite");
  await page.getByRole("button", { name: "Search" }).click();
  const events = main().getByRole("table", { name: "Events, newest first" });
  await events.getByRole("cell", { name: "VaultAccessPolicyWrite", exact: true }).first().waitFor();
  assert.equal(await events.getByRole("cell", { name: "KeyCreate", exact: true }).count(), 0);
  await page.getByRole("button", { name: "Verify the hash chain" }).click();
  await main().getByText(/The chain is intact/).waitFor();
  await screenshot("audit-log");
});

test("sign out", async () => {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem("keyfoundry.session")), null);
  await screenshot("signed-out");
});
