// The cases of keyvault_sdk_test.mjs, run in its test process (see there): keyfoundryd is up,
// NODE_EXTRA_CA_CERTS trusts its CA and *.localhost resolves to 127.0.0.1. Run it through
// keyvault_sdk_test.mjs, not directly.
import assert from "node:assert/strict";
import {
  createHash,
  constants as cryptoConstants,
  createPublicKey,
  publicEncrypt,
  randomBytes,
  randomUUID,
  verify as cryptoVerify,
} from "node:crypto";
import { describe, test } from "node:test";

import { CryptographyClient, KeyClient } from "@azure/keyvault-keys";

import { ServicePrincipalCredential } from "./support/credential.mjs";
import { KeyfoundryApi, jwtClaims, SetupError } from "./support/keyfoundryd.mjs";

const RESOURCE_GROUP = "e2e-js-rg";
const VAULT = "e2e-js";

const api = new KeyfoundryApi({
  port: Number(process.env.KF_E2E_PORT),
  tenant: process.env.KF_E2E_TENANT,
  subscription: process.env.KF_E2E_SUBSCRIPTION,
});
assert.ok(api.port && api.tenant && api.subscription, "run this through keyvault_sdk_test.mjs");

// ------------------------------------------------------------------------ set-up

const mgmt = await api.adminToken("management");
const adminOid = jwtClaims(mgmt).oid;
const sp = await api.createServicePrincipal(mgmt, "e2e-js-sdk");
const newCredential = () =>
  new ServicePrincipalCredential({
    authorityHost: api.baseUrl,
    tenantId: api.tenant,
    clientId: sp.appId,
    clientSecret: sp.secretText,
  });
const credential = newCredential();
const vaultUrl = api.vaultUrl(VAULT);
let vaultArm = null;
let vaultError = null;
try {
  await api.createResourceGroup(mgmt, RESOURCE_GROUP);
  vaultArm = await api.createVault(mgmt, RESOURCE_GROUP, VAULT, [adminOid, sp.id]);
} catch (e) {
  if (!(e instanceof SetupError)) throw e;
  vaultError = e.message;
}

// Default client options: the credential is the only thing given.
const keyClient = new KeyClient(vaultUrl, credential);
const cryptoClient = (keyOrId) => new CryptographyClient(keyOrId, credential);

const unique = (prefix) => `${prefix}-${randomUUID().slice(0, 10)}`;
const sha256 = (data) => createHash("sha256").update(data).digest();
const bytes = (u8) => Buffer.from(u8 ?? []);

// Fails the case when the vault set-up failed (one line: the stack would add nothing).
function requireVault() {
  if (!vaultError) return;
  const error = new Error(`the vault could not be set up, so this case cannot run: ${vaultError}`);
  error.stack = error.message;
  throw error;
}

// The RSA public key of a KeyVaultKey, as a node:crypto KeyObject.
function rsaPublicKey(key) {
  return createPublicKey({
    key: { kty: "RSA", n: bytes(key.key.n).toString("base64url"), e: bytes(key.key.e).toString("base64url") },
    format: "jwk",
  });
}

function ecPublicKey(key) {
  return createPublicKey({
    key: {
      kty: "EC",
      crv: key.key.crv,
      x: bytes(key.key.x).toString("base64url"),
      y: bytes(key.key.y).toString("base64url"),
    },
    format: "jwk",
  });
}

async function collect(iterable) {
  const out = [];
  for await (const item of iterable) out.push(item);
  return out;
}

// ------------------------------------------------------------------------ harness

describe("harness", () => {
  test("client_credentials token for the vault scope", async () => {
    const token = await newCredential().getToken(`https://vault.localhost:${api.port}/.default`, {
      tenantId: api.tenant,
    });
    const claims = jwtClaims(token.token);
    assert.equal(claims.tid, api.tenant);
    assert.equal(claims.oid, sp.id);
    assert.ok(token.expiresOnTimestamp > Date.now() + 300_000);
  });

  test("the vault host resolves and answers 401 with the challenge", async () => {
    const { status, headers, body } = await api.request("GET", `${vaultUrl}/keys?api-version=7.4`);
    assert.equal(status, 401, JSON.stringify(body));
    const challenge = headers.get("www-authenticate") ?? "";
    assert.match(challenge, /^Bearer /);
    const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    assert.equal(params.authorization, `https://127.0.0.1:${api.port}/${api.tenant}`);
    assert.equal(params.resource, `https://vault.localhost:${api.port}`);
  });

  test("the SDK's challenge flow reaches the server with a token", async () => {
    // A fresh client and credential: the first request goes without a token, the challenge
    // is parsed and checked against the vault host, the credential is asked for the
    // challenge's scope and tenant, and the retry is answered by something other than 401.
    const recording = newCredential();
    const client = new KeyClient(vaultUrl, recording);
    const error = await client.getKey(unique("no-such-key")).then(
      () => assert.fail("getKey of a missing key succeeded"),
      (e) => e,
    );
    console.error(`  getKey of a missing key: ${error.statusCode} ${error.code}: ${error.message}`);
    assert.deepEqual(recording.calls, [
      { scopes: [`https://vault.localhost:${api.port}/.default`], tenantId: api.tenant },
    ]);
    assert.equal(error.name, "RestError", String(error));
    assert.notEqual(error.statusCode, 401, error.message);
    assert.equal(error.statusCode, 404, error.message);
  });

  test("the vault is created over ARM", () => {
    if (vaultError) assert.fail(vaultError);
    assert.equal(vaultArm.name, VAULT);
    assert.equal(vaultArm.type, "Microsoft.KeyVault/vaults");
    assert.equal(vaultArm.properties.vaultUri.replace(/\/$/, ""), vaultUrl);
    assert.equal(vaultArm.properties.enableSoftDelete, true);
  });
});

// ------------------------------------------------------------------------ keys API

describe("keys", () => {
  test("createRsaKey 2048", async () => {
    requireVault();
    const name = unique("rsa");
    const key = await keyClient.createRsaKey(name, { keySize: 2048 });
    assert.equal(key.name, name);
    assert.equal(key.keyType, "RSA");
    assert.equal(bytes(key.key.n).length, 256);
    assert.deepEqual(bytes(key.key.e), Buffer.from([1, 0, 1]));
    assert.equal(key.key.d, undefined, "no private material leaves the vault");
    assert.ok(key.id.startsWith(`${vaultUrl}/keys/${name}/`), key.id);
    assert.equal(key.key.kid, key.id);
    assert.ok(key.properties.version);
    assert.equal(key.properties.vaultUrl, vaultUrl);
    assert.equal(key.properties.enabled, true);
    assert.ok(key.properties.createdOn instanceof Date);
    assert.ok(key.properties.updatedOn instanceof Date);
    for (const op of ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]) {
      assert.ok(key.keyOperations.includes(op), `${op} not in ${key.keyOperations}`);
    }
  });

  test("createEcKey P-256", async () => {
    requireVault();
    const key = await keyClient.createEcKey(unique("ec"), { curve: "P-256" });
    assert.equal(key.keyType, "EC");
    assert.equal(key.key.crv, "P-256");
    assert.equal(bytes(key.key.x).length, 32);
    assert.equal(bytes(key.key.y).length, 32);
    assert.equal(key.key.d, undefined);
    ecPublicKey(key); // a valid point on P-256
  });

  test("getKey: latest and by version", async () => {
    requireVault();
    const name = unique("get");
    const first = await keyClient.createRsaKey(name, { keySize: 2048 });
    const second = await keyClient.createRsaKey(name, { keySize: 2048 });
    assert.notEqual(first.properties.version, second.properties.version);
    const latest = await keyClient.getKey(name);
    assert.equal(latest.id, second.id);
    assert.deepEqual(bytes(latest.key.n), bytes(second.key.n));
    const old = await keyClient.getKey(name, { version: first.properties.version });
    assert.equal(old.id, first.id);
    assert.deepEqual(bytes(old.key.n), bytes(first.key.n));
  });

  test("listPropertiesOfKeys with pages of 2", async () => {
    requireVault();
    const prefix = unique("list");
    const names = [0, 1, 2].map((i) => `${prefix}-${i}`);
    for (const name of names) await keyClient.createEcKey(name, { curve: "P-256" });
    const pages = await collect(keyClient.listPropertiesOfKeys().byPage({ maxPageSize: 2 }));
    assert.ok(pages.length >= 2, `3+ keys with maxresults=2 must come in 2+ pages, got ${pages.length}`);
    for (const page of pages) assert.ok(page.length <= 2, `a page of ${page.length} > maxresults 2`);
    const listed = pages.flat();
    for (const name of names) {
      const props = listed.find((p) => p.name === name);
      assert.ok(props, `${name} not listed`);
      assert.equal(props.enabled, true);
      assert.equal(props.vaultUrl, vaultUrl);
    }
    // and without paging options
    const all = await collect(keyClient.listPropertiesOfKeys());
    for (const name of names) assert.ok(all.some((p) => p.name === name));
  });

  test("listPropertiesOfKeyVersions", async () => {
    requireVault();
    const name = unique("versions");
    const versions = new Set();
    for (let i = 0; i < 3; i++) {
      versions.add((await keyClient.createRsaKey(name, { keySize: 2048 })).properties.version);
    }
    const listed = await collect(keyClient.listPropertiesOfKeyVersions(name));
    assert.deepEqual(new Set(listed.map((p) => p.version)), versions);
    for (const p of listed) {
      assert.equal(p.name, name);
      assert.ok(p.id.endsWith(`/keys/${name}/${p.version}`), p.id);
    }
  });

  test("updateKeyProperties: enabled, tags, expiresOn", async () => {
    requireVault();
    const name = unique("update");
    await keyClient.createRsaKey(name, { keySize: 2048 });
    const disabled = await keyClient.updateKeyProperties(name, { enabled: false });
    assert.equal(disabled.properties.enabled, false);
    assert.equal((await keyClient.getKey(name)).properties.enabled, false);
    const enabled = await keyClient.updateKeyProperties(name, { enabled: true });
    assert.equal(enabled.properties.enabled, true);
    const expiresOn = new Date(Math.floor(Date.now() / 1000) * 1000 + 30 * 24 * 3600 * 1000);
    const tags = { env: "e2e", team: "kf" };
    const updated = await keyClient.updateKeyProperties(name, { tags, expiresOn });
    assert.deepEqual(updated.properties.tags, tags);
    assert.equal(updated.properties.expiresOn?.getTime(), expiresOn.getTime());
    const got = await keyClient.getKey(name);
    assert.deepEqual(got.properties.tags, tags);
    assert.equal(got.properties.expiresOn?.getTime(), expiresOn.getTime());
    assert.equal(got.properties.enabled, true);
  });

  test("delete, recover, delete again, purge", async () => {
    requireVault();
    const name = unique("delete");
    const created = await keyClient.createRsaKey(name, { keySize: 2048 });

    const poller = await keyClient.beginDeleteKey(name);
    const deleted = await poller.pollUntilDone();
    assert.equal(deleted.name, name);
    assert.ok(deleted.properties.recoveryId, "a soft-delete vault returns recoveryId");
    assert.ok(deleted.properties.deletedOn instanceof Date);
    assert.ok(deleted.properties.scheduledPurgeDate instanceof Date);
    await assert.rejects(keyClient.getKey(name), { statusCode: 404 });

    const got = await keyClient.getDeletedKey(name);
    assert.equal(got.name, name);
    assert.deepEqual(bytes(got.key.n), bytes(created.key.n));
    const deletedNames = (await collect(keyClient.listDeletedKeys())).map((d) => d.name);
    assert.ok(deletedNames.includes(name), `${name} not in listDeletedKeys`);

    await (await keyClient.beginRecoverDeletedKey(name)).pollUntilDone();
    assert.equal((await keyClient.getKey(name)).id, created.id);
    await assert.rejects(keyClient.getDeletedKey(name), { statusCode: 404 });

    await (await keyClient.beginDeleteKey(name)).pollUntilDone();
    await keyClient.purgeDeletedKey(name);
    await assert.rejects(keyClient.getDeletedKey(name), { statusCode: 404 });
    await assert.rejects(keyClient.getKey(name), { statusCode: 404 });
  });

  test("rotateKey", async () => {
    requireVault();
    const name = unique("rotate");
    const original = await keyClient.createRsaKey(name, { keySize: 2048 });
    const rotated = await keyClient.rotateKey(name);
    assert.equal(rotated.name, name);
    assert.notEqual(rotated.properties.version, original.properties.version);
    assert.notDeepEqual(bytes(rotated.key.n), bytes(original.key.n));
    assert.equal((await keyClient.getKey(name)).id, rotated.id);
  });

  test("getKey of a missing key is 404 KeyNotFound", async () => {
    requireVault();
    await assert.rejects(keyClient.getKey(unique("missing")), (e) => {
      assert.equal(e.name, "RestError");
      assert.equal(e.statusCode, 404);
      assert.equal(e.code, "KeyNotFound");
      return true;
    });
  });
});

// ------------------------------------------------------------------------ cryptography

// @azure/keyvault-keys' CryptographyClient GETs the key first; it then does RSA-OAEP and
// RSA1_5 encrypt/wrap and verifyData locally, and sends everything else to the vault: here
// RSA-OAEP-256 wrap and encrypt, decrypt, unwrap, sign and verify all reach the server.
describe("cryptography", () => {
  const rsaKey = () => keyClient.createRsaKey(unique("crypto-rsa"), { keySize: 2048 });

  for (const algorithm of ["RSA-OAEP", "RSA-OAEP-256"]) {
    test(`wrapKey/unwrapKey ${algorithm}`, async () => {
      requireVault();
      const key = await rsaKey();
      const client = cryptoClient(key.id);
      const secret = randomBytes(32);
      const wrapped = await client.wrapKey(algorithm, secret);
      assert.equal(bytes(wrapped.result).length, 256);
      const unwrapped = await client.unwrapKey(algorithm, wrapped.result);
      assert.deepEqual(bytes(unwrapped.result), secret);
    });
  }

  test("encrypt/decrypt RSA-OAEP-256", async () => {
    requireVault();
    const key = await rsaKey();
    const client = cryptoClient(key);
    const plaintext = Buffer.from("customer content key material \x00\x01\x02");
    const encrypted = await client.encrypt({ algorithm: "RSA-OAEP-256", plaintext });
    assert.equal(bytes(encrypted.result).length, 256);
    const decrypted = await client.decrypt({ algorithm: "RSA-OAEP-256", ciphertext: encrypted.result });
    assert.deepEqual(bytes(decrypted.result), plaintext);
  });

  test("sign/verify RS256", async () => {
    requireVault();
    const key = await rsaKey();
    const client = cryptoClient(key.id);
    const digest = sha256("message to sign with RS256");
    const signed = await client.sign("RS256", digest);
    assert.equal(bytes(signed.result).length, 256);
    assert.equal((await client.verify("RS256", digest, signed.result)).result, true);
    assert.equal((await client.verify("RS256", sha256("another message"), signed.result)).result, false);
    // independently of the SDK: PKCS#1 v1.5 with SHA-256 over the message
    assert.ok(cryptoVerify("sha256", Buffer.from("message to sign with RS256"), rsaPublicKey(key),
      bytes(signed.result)));
  });

  test("sign/verify PS256", async () => {
    requireVault();
    const key = await rsaKey();
    const client = cryptoClient(key.id);
    const message = "message to sign with PS256";
    const signed = await client.sign("PS256", sha256(message));
    assert.equal((await client.verify("PS256", sha256(message), signed.result)).result, true);
    assert.ok(cryptoVerify("sha256", Buffer.from(message), {
      key: rsaPublicKey(key),
      padding: cryptoConstants.RSA_PKCS1_PSS_PADDING,
      saltLength: 32,
    }, bytes(signed.result)));
  });

  test("sign/verify ES256", async () => {
    requireVault();
    const key = await keyClient.createEcKey(unique("crypto-ec"), { curve: "P-256" });
    const client = cryptoClient(key.id);
    const message = "message to sign with ES256";
    const signed = await client.sign("ES256", sha256(message));
    assert.equal(bytes(signed.result).length, 64, "ES256 signatures are raw r||s (JWS)");
    assert.equal((await client.verify("ES256", sha256(message), signed.result)).result, true);
    assert.ok(cryptoVerify("sha256", Buffer.from(message),
      { key: ecPublicKey(key), dsaEncoding: "ieee-p1363" }, bytes(signed.result)));
  });

  test("a wrap made locally with the returned public key unwraps on the server", async () => {
    requireVault();
    const key = await rsaKey();
    const secret = randomBytes(32);
    const local = publicEncrypt({
      key: rsaPublicKey(key),
      padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING,
      oaepHash: "sha256",
    }, secret);
    const unwrapped = await cryptoClient(key.id).unwrapKey("RSA-OAEP-256", local);
    assert.deepEqual(bytes(unwrapped.result), secret);
  });

  test("unwrapKey with a disabled key is 403", async () => {
    requireVault();
    const key = await rsaKey();
    const wrapped = await cryptoClient(key).wrapKey("RSA-OAEP-256", randomBytes(32));
    await keyClient.updateKeyProperties(key.name, { enabled: false });
    await assert.rejects(cryptoClient(key.id).unwrapKey("RSA-OAEP-256", wrapped.result), (e) => {
      assert.equal(e.statusCode, 403, String(e));
      return true;
    });
  });
});
