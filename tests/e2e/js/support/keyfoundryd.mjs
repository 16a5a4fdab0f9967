// Test-only: runs the real keyfoundryd on a free port with a fresh data directory, and calls it
// over plain HTTPS (fetch) for the set-up steps an operator would do with ARM: tokens, a
// service principal, a resource group and a key vault. No SDK code here: the SDK is what the
// tests exercise.
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export const ADMIN_PASSWORD = "correct-horse-battery-staple";
export const RESOURCE_GROUPS_API = "2021-04-01";
export const KEY_VAULT_ARM_API = "2023-07-01";
export const COGNITIVE_SERVICES_API = "2024-10-01";
export const KEYS_API = "7.5";

export class SetupError extends Error {}

// `keyfoundryd serve --data-dir TMP/data --listen 127.0.0.1:0`, stderr to TMP/stderr.log;
// resolves once DATA/port is written.
export async function startKeyfoundryd(binary, { startTimeoutMs = 60_000 } = {}) {
  const tmp = mkdtempSync(join(tmpdir(), "kf-e2e-js-"));
  const dataDir = join(tmp, "data");
  const logPath = join(tmp, "stderr.log");
  const logFd = openSync(logPath, "w");
  const child = spawn(binary, ["serve", "--data-dir", dataDir, "--listen", "127.0.0.1:0"], {
    stdio: ["ignore", "ignore", logFd],
    env: { ...process.env, KEYFOUNDRY_ADMIN_PASSWORD: ADMIN_PASSWORD },
  });
  closeSync(logFd);
  let exitCode = null;
  let spawnError = null;
  const exited = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exitCode = code ?? signal;
      resolve(exitCode);
    });
    child.on("error", (e) => {
      spawnError = e;
      exitCode = -1;
      resolve(exitCode);
    });
  });
  const log = () => {
    try {
      return readFileSync(logPath, "utf8");
    } catch {
      return "";
    }
  };
  const stop = async (timeoutMs = 20_000) => {
    if (exitCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      await exited;
      clearTimeout(timer);
    }
    return exitCode;
  };
  const cleanup = async () => {
    await stop();
    rmSync(tmp, { recursive: true, force: true });
  };

  const read = (name) => readFileSync(join(dataDir, name), "utf8").trim();
  const deadline = Date.now() + startTimeoutMs;
  let port = 0;
  while (Date.now() < deadline) {
    if (exitCode !== null) {
      await cleanup();
      throw new SetupError(
        `keyfoundryd (${binary}) exited with ${exitCode} before it was ready` +
          (spawnError ? `: ${spawnError.message}` : `:\n${log()}`),
      );
    }
    try {
      const text = read("port");
      if (text) {
        port = Number(text);
        break;
      }
    } catch {
      // not written yet
    }
    await sleep(50);
  }
  if (!port) {
    const text = log();
    await cleanup();
    throw new SetupError(`keyfoundryd wrote no ${dataDir}/port in ${startTimeoutMs} ms:\n${text}`);
  }
  return {
    port,
    dataDir,
    caPath: join(dataDir, "tls", "ca.pem"),
    tenant: read("tenant-id"),
    subscription: read("subscription-id"),
    log,
    stop,
    cleanup,
  };
}

// The payload of a JWT, unverified (the tests only read claims such as oid).
export function jwtClaims(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
}

// Plain-HTTPS calls to a running keyfoundryd. fetch trusts the deployment's CA through
// NODE_EXTRA_CA_CERTS, which the launcher sets for this process.
export class KeyfoundryApi {
  constructor({ port, tenant, subscription }) {
    this.port = port;
    this.tenant = tenant;
    this.subscription = subscription;
    this.baseUrl = `https://127.0.0.1:${port}`;
  }

  vaultUrl(vault) {
    return `https://${vault}.vault.localhost:${this.port}`;
  }

  // Returns { status, headers, body } with the body parsed as JSON when it is JSON.
  async request(method, url, { token, json, form } = {}) {
    const headers = {};
    let body;
    if (token) headers.Authorization = `Bearer ${token}`;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      headers["Content-Type"] = "application/x-www-form-urlencoded";
      body = new URLSearchParams(form).toString();
    }
    const response = await fetch(url.startsWith("https://") ? url : this.baseUrl + url, {
      method,
      headers,
      body,
    });
    const text = await response.text();
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, headers: response.headers, body: parsed };
  }

  async token(scope, grant, tenant = this.tenant) {
    const { status, body } = await this.request("POST", `/${tenant}/oauth2/v2.0/token`, {
      form: { ...grant, scope },
    });
    if (status !== 200 || !body?.access_token) {
      throw new SetupError(`token endpoint answered ${status}: ${JSON.stringify(body)}`);
    }
    return body;
  }

  async adminToken(resource = "management") {
    const body = await this.token(`https://${resource}.localhost/.default`, {
      grant_type: "password",
      username: "admin",
      password: ADMIN_PASSWORD,
    });
    return body.access_token;
  }

  // POST /v1.0/servicePrincipals → { id, appId, secretText, ... }
  async createServicePrincipal(mgmtToken, displayName) {
    const { status, body } = await this.request("POST", "/v1.0/servicePrincipals", {
      token: mgmtToken,
      json: { displayName },
    });
    if (status !== 201) {
      throw new SetupError(`POST /v1.0/servicePrincipals answered ${status}: ${JSON.stringify(body)}`);
    }
    return body;
  }

  async createResourceGroup(mgmtToken, rg) {
    const path =
      `/subscriptions/${this.subscription}/resourceGroups/${rg}` +
      `?api-version=${RESOURCE_GROUPS_API}`;
    const { status, body } = await this.request("PUT", path, {
      token: mgmtToken,
      json: { location: "local" },
    });
    if (status !== 200 && status !== 201) {
      throw new SetupError(`PUT ${path} answered ${status}: ${JSON.stringify(body)}`);
    }
    return body;
  }

  // PUT Microsoft.KeyVault/vaults with ARM's body: access-policy mode, soft delete on (7 days),
  // purge protection off unless asked (off, purge works); keys/all for each object id. Waits
  // until provisioningState is Succeeded when the PUT did not already say so.
  async createVault(mgmtToken, rg, vault, objectIds, { purgeProtection = false } = {}) {
    const path =
      `/subscriptions/${this.subscription}/resourceGroups/${rg}` +
      `/providers/Microsoft.KeyVault/vaults/${vault}?api-version=${KEY_VAULT_ARM_API}`;
    let { status, body } = await this.request("PUT", path, {
      token: mgmtToken,
      json: {
        location: "local",
        properties: {
          tenantId: this.tenant,
          sku: { family: "A", name: "premium" },
          enableSoftDelete: true,
          softDeleteRetentionInDays: 7,
          ...(purgeProtection ? { enablePurgeProtection: true } : {}),
          accessPolicies: objectIds.map((objectId) => ({
            tenantId: this.tenant,
            objectId,
            permissions: { keys: ["all"] },
          })),
        },
      },
    });
    if (status !== 200 && status !== 201) {
      throw new SetupError(`PUT ${path} answered ${status}: ${JSON.stringify(body)}`);
    }
    const deadline = Date.now() + 60_000;
    for (;;) {
      const state = body?.properties?.provisioningState;
      if (state === undefined || state === "Succeeded") return body;
      if (state === "Failed" || state === "Canceled" || Date.now() > deadline) {
        throw new SetupError(`vault ${vault} provisioningState ${state}: ${JSON.stringify(body)}`);
      }
      await sleep(500);
      ({ status, body } = await this.request("GET", path, { token: mgmtToken }));
      if (status !== 200) {
        throw new SetupError(`GET ${path} answered ${status}: ${JSON.stringify(body)}`);
      }
    }
  }

  // A call of the control plane that must answer one of `ok`; the parsed body.
  async arm(method, path, mgmtToken, json, { apiVersion = COGNITIVE_SERVICES_API, ok = [200, 201] } = {}) {
    const url = `/subscriptions/${this.subscription}${path}?api-version=${apiVersion}`;
    const { status, body } = await this.request(method, url, { token: mgmtToken, json });
    if (!ok.includes(status)) {
      throw new SetupError(`${method} ${url} answered ${status}: ${JSON.stringify(body)}`);
    }
    return body;
  }

  accountPath(rg, account) {
    return `/resourceGroups/${rg}/providers/Microsoft.CognitiveServices/accounts/${account}`;
  }

  // POST {vault}/keys/{name}/create: an RSA 2048 key; the key bundle.
  async createRsaKey(vaultToken, vault, name) {
    const url = `${this.vaultUrl(vault)}/keys/${name}/create?api-version=${KEYS_API}`;
    const { status, body } = await this.request("POST", url, {
      token: vaultToken,
      json: { kty: "RSA", key_size: 2048 },
    });
    if (status !== 200) throw new SetupError(`POST ${url} answered ${status}: ${JSON.stringify(body)}`);
    return body;
  }

  // An AIServices account with a system-assigned identity; the ARM resource.
  async createAccount(mgmtToken, rg, account) {
    return this.arm("PUT", this.accountPath(rg, account), mgmtToken, {
      kind: "AIServices",
      sku: { name: "S0" },
      location: "local",
      identity: { type: "SystemAssigned" },
    });
  }

  // Gives `objectId` get, wrapKey and unwrapKey on the vault's keys (an access policy).
  async grantKeyAccess(mgmtToken, rg, vault, objectId) {
    return this.arm(
      "PUT",
      `/resourceGroups/${rg}/providers/Microsoft.KeyVault/vaults/${vault}/accessPolicies/add`,
      mgmtToken,
      {
        properties: {
          accessPolicies: [
            { tenantId: this.tenant, objectId, permissions: { keys: ["get", "wrapKey", "unwrapKey"] } },
          ],
        },
      },
      { apiVersion: KEY_VAULT_ARM_API },
    );
  }

  async enableCmk(mgmtToken, rg, account, vault, keyName) {
    return this.arm("PATCH", this.accountPath(rg, account), mgmtToken, {
      properties: {
        encryption: {
          keySource: "Microsoft.KeyVault",
          keyVaultProperties: { keyVaultUri: `${this.vaultUrl(vault)}/`, keyName },
        },
      },
    });
  }

  async apiKey(mgmtToken, rg, account) {
    const body = await this.arm("POST", `${this.accountPath(rg, account)}/listKeys`, mgmtToken);
    return body.key1;
  }

  // PUT .../deployments/{name} of `model` ({name, version}); the ARM resource.
  async createDeployment(mgmtToken, rg, account, name, model) {
    return this.arm("PUT", `${this.accountPath(rg, account)}/deployments/${name}`, mgmtToken, {
      sku: { name: "Standard", capacity: 1 },
      properties: { model: { format: "OpenAI", ...model } },
    });
  }
}
