// The portal's only door to keyfoundryd: the public HTTP API (docs/api.md), called with the
// signed-in user's bearer tokens. Tokens live in memory and in sessionStorage (gone when the
// tab closes); nothing else is stored.
//
// Three audiences, one token each: the control plane (ARM paths on this origin), the key vault
// data plane (each vault's own host, https://{vault}.vault.DOMAIN:PORT/, called cross-origin:
// keyfoundryd answers CORS for this origin) and the AI data plane (this origin, under
// /accounts/{account}/openai/).
//
// Every failure is an ApiError carrying the API's code and message, for the page to show next
// to the control that caused it.

export const API_VERSIONS = {
  subscriptions: "2022-12-01",
  groups: "2021-04-01",
  vaults: "2023-07-01",
  accounts: "2024-10-01",
  keys: "7.5",
  audit: "2024-01-01",
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `The server answered ${status}.`);
    this.status = status;
    this.code = code || `Http${status}`;
  }
}

const STORAGE_KEY = "keyfoundry.session";
let session = null; // {user, oid, subscription, domain, tokens: {management, vault, ai}}

try {
  session = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
} catch {
  session = null;
}

export function currentSession() {
  if (session && session.expiresAt < Date.now()) signOut();
  return session;
}

export function signOut() {
  session = null;
  sessionStorage.removeItem(STORAGE_KEY);
}

// The deployment's DNS domain, from Azure's cloud metadata document (no token needed).
async function discoverDomain() {
  const response = await fetch("/metadata/endpoints?api-version=2019-05-01");
  const body = await response.json();
  const vaultDns = body?.suffixes?.keyVaultDns ?? "";
  if (!vaultDns.startsWith("vault.")) throw new ApiError(response.status, "Metadata", "The server's metadata document names no key vault domain.");
  return vaultDns.slice("vault.".length);
}

async function requestToken(username, password, scope) {
  const response = await fetch("/common/oauth2/v2.0/token", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "password", username, password, scope }).toString(),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok || !body.access_token) {
    throw new ApiError(response.status, body.error, body.error_description || body.error);
  }
  return { token: body.access_token, expiresIn: Number(body.expires_in) };
}

function claims(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return JSON.parse(atob(part));
}

// Signs in with the password grant: one token per audience, then the first subscription.
export async function signIn(username, password) {
  if (!username || !password) throw new ApiError(400, "invalid_request", "Enter a user name and a password.");
  const domain = await discoverDomain();
  const [management, vault, ai] = await Promise.all([
    requestToken(username, password, `https://management.${domain}/.default`),
    requestToken(username, password, `https://vault.${domain}/.default`),
    requestToken(username, password, `https://cognitiveservices.${domain}/.default`),
  ]);
  const claim = claims(management.token);
  session = {
    user: claim.upn || claim.name || username,
    oid: claim.oid,
    tenant: claim.tid,
    domain,
    subscription: "",
    expiresAt: Date.now() + Math.min(management.expiresIn, vault.expiresIn, ai.expiresIn) * 1000,
    tokens: { management: management.token, vault: vault.token, ai: ai.token },
  };
  try {
    const subs = await arm("GET", "/subscriptions", undefined, API_VERSIONS.subscriptions);
    if (!subs.value?.length) throw new ApiError(403, "NoSubscription", "This user can see no subscription.");
    session.subscription = subs.value[0].subscriptionId;
  } catch (e) {
    session = null;
    throw e;
  }
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
  return session;
}

async function send(url, { method = "GET", token, json, body, headers = {} } = {}) {
  if (!session) throw new ApiError(401, "SignedOut", "Sign in first.");
  const init = { method, headers: { ...headers, Authorization: `Bearer ${token}` } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (e) {
    throw new ApiError(0, "NetworkError", `The request to ${new URL(url, location.href).host} failed: ${e.message}`);
  }
  return response;
}

async function parse(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  if (!response.ok) {
    const error = body?.error;
    if (error && typeof error === "object") throw new ApiError(response.status, error.code, error.message);
    throw new ApiError(response.status, typeof error === "string" ? error : "", body?.error_description || (typeof body === "string" ? body : ""));
  }
  return body;
}

function withApiVersion(path, apiVersion) {
  return path + (path.includes("?") ? "&" : "?") + `api-version=${apiVersion}`;
}

// The control plane. `path` starts at /subscriptions, or with "~" for the signed-in
// subscription ("~/resourceGroups" → /subscriptions/{s}/resourceGroups).
export async function arm(method, path, json, apiVersion, { withHeaders = false } = {}) {
  const full = path.startsWith("~") ? `/subscriptions/${session?.subscription}${path.slice(1)}` : path;
  const response = await send(withApiVersion(full, apiVersion), { method, token: session?.tokens.management, json });
  const body = await parse(response);
  return withHeaders ? { body, headers: response.headers } : body;
}

// The key vault data plane of the vault whose vaultUri is `vaultUri`.
export async function vault(vaultUri, method, path, json) {
  const url = new URL(withApiVersion(path, API_VERSIONS.keys), vaultUri);
  return parse(await send(url.href, { method, token: session?.tokens.vault, json }));
}

// The AI data plane of `account`, on this origin. `body` may be FormData (uploads).
export async function openai(account, method, path, { json, body, raw = false } = {}) {
  const response = await send(`/accounts/${encodeURIComponent(account)}/openai${path}`, {
    method,
    token: session?.tokens.ai,
    json,
    body,
  });
  if (raw) {
    if (!response.ok) await parse(response);
    return response;
  }
  return parse(response);
}

// The absolute path of a URL the API gave (Azure-AsyncOperation, nextLink) on this origin.
export async function armUrl(url) {
  const parsed = new URL(url, location.href);
  const response = await send(parsed.pathname + parsed.search, { token: session?.tokens.management });
  return parse(response);
}
