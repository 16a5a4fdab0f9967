#!/usr/bin/python3
"""End-to-end: keyfoundryd's key vault driven by the official Azure SDK for Python
(azure-keyvault-keys, azure-identity, azure-core from Debian's python3-azure).

    /usr/bin/python3 tests/e2e/python/keyvault_sdk_test.py --keyfoundryd build/release/src/server/keyfoundryd [-v] [-k PATTERN]

(or KEYFOUNDRYD=... in the environment). The module starts its own keyfoundryd on a free port
with a fresh data directory, creates a service principal, a resource group and an
access-policy vault over ARM-shaped HTTPS, and then uses KeyClient and CryptographyClient the
way an Azure customer would: the only things given to the clients are the credential and the
CA (`connection_verify`, azure-core's transport setting for the CA bundle). Names under
.localhost are resolved to 127.0.0.1 in this process (resolve_localhost.py), not by an option.
On any failure the server's stderr is printed.
"""
import argparse
import atexit
import datetime
import hashlib
import json
import os
import re
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import resolve_localhost  # noqa: E402
from keyfoundry_server import Keyfoundryd, SetupError, jwt_claims  # noqa: E402

resolve_localhost.install()

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError  # noqa: E402
from azure.identity import ClientSecretCredential  # noqa: E402
from azure.keyvault.keys import KeyClient, KeyCurveName, KeyType  # noqa: E402
from azure.keyvault.keys import __version__ as KEYS_SDK_VERSION  # noqa: E402
from azure.keyvault.keys.crypto import (  # noqa: E402
    CryptographyClient, EncryptionAlgorithm, KeyWrapAlgorithm, SignatureAlgorithm)
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils  # noqa: E402

RESOURCE_GROUP = "e2e-python-rg"
VAULT = "e2e-python"


class _Env:
    """What setUpModule made; shared by every case (one server for the whole module)."""
    binary = os.environ.get("KEYFOUNDRYD", "")
    server = None          # Keyfoundryd
    admin_oid = None
    sp = None              # {"id", "appId", "secretText"}
    credential = None      # the credential the SDK clients get
    vault_url = None
    vault_arm = None       # the ARM PUT answer
    vault_error = None     # why the vault could not be set up (the vault cases fail with it)
    failed = False


ENV = _Env()


class RecordingCredential:
    """The azure.identity credential, with a record of what the SDK asked it for (scopes and
    tenant_id, which the SDK takes from the 401 challenge). Nothing else changes."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    def get_token(self, *scopes, **kwargs):
        self.calls.append((scopes, kwargs.get("tenant_id")))
        return self.inner.get_token(*scopes, **kwargs)


def _finish_server():
    """Stops keyfoundryd (SIGTERM), prints its stderr if a case failed or it exited badly,
    and removes its data directory."""
    if ENV.credential is not None:
        ENV.credential.close()
        ENV.credential = None
    if ENV.server is None:
        return 0
    code = ENV.server.stop()
    if ENV.failed or code != 0:
        sys.stderr.write(f"\n----- keyfoundryd stderr (exit code {code}) -----\n")
        sys.stderr.write(ENV.server.log())
        sys.stderr.write("----- end of keyfoundryd stderr -----\n")
    ENV.server.cleanup()
    ENV.server = None
    return code


def setUpModule():  # noqa: N802 (unittest's name)
    atexit.register(_finish_server)
    try:
        ENV.server = server = Keyfoundryd(ENV.binary)
    except SetupError:
        ENV.failed = True
        raise
    mgmt = server.admin_token("management")
    ENV.admin_oid = jwt_claims(mgmt)["oid"]
    ENV.sp = server.create_service_principal(mgmt, "e2e-python-sdk")
    # azure-identity as an application would use it against a non-public cloud: the authority
    # host is keyfoundryd, instance discovery (a call to login.microsoftonline.com) is off,
    # and the CA is the deployment's.
    ENV.credential = ClientSecretCredential(
        server.tenant, ENV.sp["appId"], ENV.sp["secretText"],
        authority=f"https://127.0.0.1:{server.port}", instance_discovery=False,
        connection_verify=server.ca_path)
    ENV.vault_url = server.vault_url(VAULT)
    try:
        server.create_resource_group(mgmt, RESOURCE_GROUP)
        ENV.vault_arm = server.create_vault(mgmt, RESOURCE_GROUP, VAULT,
                                            [ENV.admin_oid, ENV.sp["id"]])
    except SetupError as e:
        ENV.vault_error = str(e)


def tearDownModule():  # noqa: N802
    # Stop it now (a clean SIGTERM exit is part of the contract); main() prints the log on a
    # failure and removes the directory.
    if ENV.server is not None:
        ENV.server.stop()


def key_client(credential=None):
    return KeyClient(ENV.vault_url, credential or ENV.credential,
                     connection_verify=ENV.server.ca_path)


def crypto_client(key):
    """`key` is a KeyVaultKey or a key id."""
    return CryptographyClient(key, ENV.credential, connection_verify=ENV.server.ca_path)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def error_code(error: HttpResponseError):
    """The Azure envelope's error.code of an SDK exception."""
    try:
        return json.loads(error.response.text())["error"]["code"]
    except Exception:  # noqa: BLE001 (any body that is not the envelope)
        return None


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def b2i(b: bytes) -> int:
    return int.from_bytes(b, "big")


# ------------------------------------------------------------------------ harness


class HarnessTest(unittest.TestCase):
    """What works before the keys API exists: server, CA, token, name resolution, challenge."""

    def test_azure_identity_token_for_vault_scope(self):
        scope = f"https://vault.localhost:{ENV.server.port}/.default"
        token = ENV.credential.get_token(scope, tenant_id=ENV.server.tenant)
        claims = jwt_claims(token.token)
        self.assertEqual(claims["tid"], ENV.server.tenant)
        self.assertEqual(claims["oid"], ENV.sp["id"])
        self.assertGreater(token.expires_on, datetime.datetime.now().timestamp() + 300)

    def test_vault_host_resolves_and_challenges(self):
        """Without a token the vault answers 401 with a challenge both SDKs parse: the
        authorization URI ends in the tenant, the resource matches the vault host's domain."""
        status, headers, body = ENV.server.request(
            "GET", f"{ENV.vault_url}/keys?api-version=7.4")
        self.assertEqual(status, 401, body)
        challenge = headers.get("WWW-Authenticate", "")
        self.assertRegex(challenge, r'^Bearer ')
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        self.assertEqual(params.get("authorization"),
                         f"https://127.0.0.1:{ENV.server.port}/{ENV.server.tenant}")
        self.assertEqual(params.get("resource"), f"https://vault.localhost:{ENV.server.port}")

    def test_sdk_challenge_flow_reaches_the_server(self):
        """KeyClient's first request is sent without a token, the 401 challenge is parsed and
        verified against the vault host, the credential is asked for the challenge's scope and
        tenant, and the retry with the token is answered by something other than 401."""
        recording = RecordingCredential(ENV.credential)
        with key_client(recording) as client, self.assertRaises(HttpResponseError) as caught:
            client.get_key(unique("no-such-key"))
        err = caught.exception
        print(f"\n  get_key of a missing key: {err.status_code} {error_code(err)}: "
              f"{str(err).splitlines()[0]}", file=sys.stderr)
        self.assertEqual(recording.calls,
                         [((f"https://vault.localhost:{ENV.server.port}/.default",),
                           ENV.server.tenant)])
        self.assertNotEqual(err.status_code, 401, str(err))
        self.assertIsInstance(err, ResourceNotFoundError)

    def test_vault_created_over_arm(self):
        if ENV.vault_error:
            self.fail(ENV.vault_error)
        props = ENV.vault_arm["properties"]
        self.assertEqual(ENV.vault_arm["name"], VAULT)
        self.assertEqual(ENV.vault_arm["type"], "Microsoft.KeyVault/vaults")
        self.assertEqual(props["vaultUri"].rstrip("/"), ENV.vault_url)
        self.assertTrue(props["enableSoftDelete"])


# ------------------------------------------------------------------------ keys API


class VaultTestCase(unittest.TestCase):
    def setUp(self):
        if ENV.vault_error:
            self.fail(f"the vault could not be set up, so this case cannot run: {ENV.vault_error}")
        self.client = key_client()
        self.addCleanup(self.client.close)

    def crypto(self, key):
        """A CryptographyClient for a KeyVaultKey or a key id, closed after the case."""
        client = crypto_client(key)
        self.addCleanup(client.close)
        return client


class KeysTest(VaultTestCase):
    def test_create_rsa_2048_key(self):
        name = unique("rsa")
        key = self.client.create_rsa_key(name, size=2048)
        self.assertEqual(key.name, name)
        self.assertEqual(key.key_type, KeyType.rsa)
        self.assertEqual(len(key.key.n), 256)
        self.assertEqual(key.key.e, b"\x01\x00\x01")
        self.assertIsNone(key.key.d)  # no private material ever leaves the vault
        self.assertTrue(key.id.startswith(f"{ENV.vault_url}/keys/{name}/"), key.id)
        self.assertEqual(key.id, key.key.kid)
        self.assertTrue(key.properties.version)
        self.assertEqual(key.properties.vault_url, ENV.vault_url)
        self.assertTrue(key.properties.enabled)
        self.assertIsNotNone(key.properties.created_on)
        self.assertIsNotNone(key.properties.updated_on)
        self.assertTrue({"encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"}
                        <= set(key.key_operations), key.key_operations)

    def test_create_ec_p256_key(self):
        name = unique("ec")
        key = self.client.create_ec_key(name, curve=KeyCurveName.p_256)
        self.assertEqual(key.key_type, KeyType.ec)
        self.assertEqual(key.key.crv, KeyCurveName.p_256)
        self.assertEqual(len(key.key.x), 32)
        self.assertEqual(len(key.key.y), 32)
        self.assertIsNone(key.key.d)
        # the point is on the curve
        ec.EllipticCurvePublicNumbers(b2i(key.key.x), b2i(key.key.y), ec.SECP256R1()).public_key()

    def test_get_latest_and_by_version(self):
        name = unique("get")
        first = self.client.create_rsa_key(name, size=2048)
        second = self.client.create_rsa_key(name, size=2048)
        self.assertNotEqual(first.properties.version, second.properties.version)
        latest = self.client.get_key(name)
        self.assertEqual(latest.id, second.id)
        self.assertEqual(latest.key.n, second.key.n)
        old = self.client.get_key(name, version=first.properties.version)
        self.assertEqual(old.id, first.id)
        self.assertEqual(old.key.n, first.key.n)

    def test_list_keys_with_paging(self):
        prefix = unique("list")
        names = {f"{prefix}-{i}" for i in range(3)}
        for n in names:
            self.client.create_ec_key(n, curve=KeyCurveName.p_256)
        pages = list(self.client.list_properties_of_keys(max_page_size=2).by_page())
        seen = [p for page in pages for p in page]
        self.assertGreaterEqual(len(pages), 2, "3+ keys with maxresults=2 must come in 2+ pages")
        listed = {p.name for p in seen}
        self.assertTrue(names <= listed, f"{names} not all in {listed}")
        for p in seen:
            if p.name in names:
                self.assertTrue(p.enabled)
                self.assertEqual(p.vault_url, ENV.vault_url)

    def test_list_versions(self):
        name = unique("versions")
        versions = {self.client.create_rsa_key(name, size=2048).properties.version
                    for _ in range(3)}
        listed = list(self.client.list_properties_of_key_versions(name))
        self.assertEqual({p.version for p in listed}, versions)
        for p in listed:
            self.assertEqual(p.name, name)
            self.assertTrue(p.id.endswith(f"/keys/{name}/{p.version}"), p.id)

    def test_update_properties(self):
        name = unique("update")
        self.client.create_rsa_key(name, size=2048)
        disabled = self.client.update_key_properties(name, enabled=False)
        self.assertFalse(disabled.properties.enabled)
        self.assertFalse(self.client.get_key(name).properties.enabled)
        enabled = self.client.update_key_properties(name, enabled=True)
        self.assertTrue(enabled.properties.enabled)
        expires = (datetime.datetime.now(datetime.timezone.utc)
                   + datetime.timedelta(days=30)).replace(microsecond=0)
        updated = self.client.update_key_properties(name, tags={"env": "e2e", "team": "kf"},
                                                    expires_on=expires)
        self.assertEqual(updated.properties.tags, {"env": "e2e", "team": "kf"})
        self.assertEqual(updated.properties.expires_on, expires)
        got = self.client.get_key(name)
        self.assertEqual(got.properties.tags, {"env": "e2e", "team": "kf"})
        self.assertEqual(got.properties.expires_on, expires)
        self.assertTrue(got.properties.enabled)

    def test_delete_recover_delete_purge(self):
        name = unique("delete")
        created = self.client.create_rsa_key(name, size=2048)

        poller = self.client.begin_delete_key(name)
        poller.wait()
        deleted = poller.result()
        self.assertEqual(deleted.name, name)
        self.assertTrue(deleted.recovery_id, "a soft-delete vault returns recoveryId")
        self.assertIsNotNone(deleted.deleted_date)
        self.assertIsNotNone(deleted.scheduled_purge_date)
        with self.assertRaises(ResourceNotFoundError):
            self.client.get_key(name)

        got = self.client.get_deleted_key(name)
        self.assertEqual(got.name, name)
        self.assertEqual(got.key.n, created.key.n)
        self.assertIn(name, {d.name for d in self.client.list_deleted_keys()})

        self.client.begin_recover_deleted_key(name).wait()
        recovered = self.client.get_key(name)
        self.assertEqual(recovered.id, created.id)
        with self.assertRaises(ResourceNotFoundError):
            self.client.get_deleted_key(name)

        self.client.begin_delete_key(name).wait()
        self.client.purge_deleted_key(name)
        with self.assertRaises(ResourceNotFoundError):
            self.client.get_deleted_key(name)
        with self.assertRaises(ResourceNotFoundError):
            self.client.get_key(name)

    def test_rotate_key(self):
        name = unique("rotate")
        original = self.client.create_rsa_key(name, size=2048)
        rotated = self.client.rotate_key(name)
        self.assertEqual(rotated.name, name)
        self.assertNotEqual(rotated.properties.version, original.properties.version)
        self.assertNotEqual(rotated.key.n, original.key.n)
        self.assertEqual(self.client.get_key(name).id, rotated.id)

    def test_get_missing_key_is_not_found(self):
        with self.assertRaises(ResourceNotFoundError) as caught:
            self.client.get_key(unique("missing"))
        self.assertEqual(caught.exception.status_code, 404)
        self.assertEqual(error_code(caught.exception), "KeyNotFound")


class CryptographyTest(VaultTestCase):
    """Note: azure-keyvault-keys' CryptographyClient GETs the key first and then does the
    public-key operations (encrypt, wrap, verify) locally with the returned JWK; decrypt,
    unwrap and sign always go to the server. So these cases check the server's JWK and its
    private-key operations against each other."""

    def _rsa_key(self):
        return self.client.create_rsa_key(unique("crypto-rsa"), size=2048)

    def _wrap_unwrap(self, algorithm):
        key = self._rsa_key()
        client = self.crypto(key.id)
        secret = os.urandom(32)
        wrapped = client.wrap_key(algorithm, secret)
        self.assertEqual(wrapped.algorithm, algorithm)
        self.assertEqual(len(wrapped.encrypted_key), 256)
        unwrapped = client.unwrap_key(algorithm, wrapped.encrypted_key)
        self.assertEqual(unwrapped.key, secret)
        self.assertEqual(unwrapped.key_id, key.id)

    def test_wrap_unwrap_rsa_oaep(self):
        self._wrap_unwrap(KeyWrapAlgorithm.rsa_oaep)

    def test_wrap_unwrap_rsa_oaep_256(self):
        self._wrap_unwrap(KeyWrapAlgorithm.rsa_oaep_256)

    def test_encrypt_decrypt_rsa_oaep_256(self):
        key = self._rsa_key()
        client = self.crypto(key)
        plaintext = b"customer content key material \x00\x01\x02"
        encrypted = client.encrypt(EncryptionAlgorithm.rsa_oaep_256, plaintext)
        self.assertEqual(len(encrypted.ciphertext), 256)
        decrypted = client.decrypt(EncryptionAlgorithm.rsa_oaep_256, encrypted.ciphertext)
        self.assertEqual(decrypted.plaintext, plaintext)

    def _rsa_public(self, key):
        return rsa.RSAPublicNumbers(b2i(key.key.e), b2i(key.key.n)).public_key()

    def test_sign_verify_rs256(self):
        key = self._rsa_key()
        client = self.crypto(key.id)
        digest = sha256(b"message to sign with RS256")
        signed = client.sign(SignatureAlgorithm.rs256, digest)
        self.assertEqual(len(signed.signature), 256)
        self.assertTrue(client.verify(SignatureAlgorithm.rs256, digest, signed.signature).is_valid)
        # and independently of the SDK: PKCS#1 v1.5 over the digest
        self._rsa_public(key).verify(signed.signature, digest, padding.PKCS1v15(),
                                     utils.Prehashed(hashes.SHA256()))
        tampered = sha256(b"another message")
        self.assertFalse(client.verify(SignatureAlgorithm.rs256, tampered, signed.signature).is_valid)

    def test_sign_verify_ps256(self):
        key = self._rsa_key()
        client = self.crypto(key.id)
        digest = sha256(b"message to sign with PS256")
        signed = client.sign(SignatureAlgorithm.ps256, digest)
        self.assertTrue(client.verify(SignatureAlgorithm.ps256, digest, signed.signature).is_valid)
        # PSS with MGF1-SHA256; Key Vault's salt length is the digest length
        self._rsa_public(key).verify(
            signed.signature, digest,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
            utils.Prehashed(hashes.SHA256()))

    def test_sign_verify_es256(self):
        key = self.client.create_ec_key(unique("crypto-ec"), curve=KeyCurveName.p_256)
        client = self.crypto(key.id)
        digest = sha256(b"message to sign with ES256")
        signed = client.sign(SignatureAlgorithm.es256, digest)
        self.assertEqual(len(signed.signature), 64, "ES256 signatures are raw r||s (JWS)")
        self.assertTrue(client.verify(SignatureAlgorithm.es256, digest, signed.signature).is_valid)
        public = ec.EllipticCurvePublicNumbers(b2i(key.key.x), b2i(key.key.y),
                                               ec.SECP256R1()).public_key()
        der = utils.encode_dss_signature(b2i(signed.signature[:32]), b2i(signed.signature[32:]))
        public.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))

    def test_local_wrap_unwraps_on_server(self):
        """What a CMK consumer does: wrap a data key with the public key it got from the vault,
        without calling the vault; the vault's unwrapkey (RSA-OAEP-256) returns it."""
        key = self._rsa_key()
        secret = os.urandom(32)
        local = self._rsa_public(key).encrypt(
            secret, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                                 label=None))
        result = self.crypto(key.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, local)
        self.assertEqual(result.key, secret)

    def test_disabled_key_unwrap_is_forbidden(self):
        key = self._rsa_key()
        wrapped = self.crypto(key).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, os.urandom(32))
        self.client.update_key_properties(key.name, enabled=False)
        with self.assertRaises(HttpResponseError) as caught:
            self.crypto(key.id).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256,
                                             wrapped.encrypted_key)
        self.assertEqual(caught.exception.status_code, 403, str(caught.exception))


# ------------------------------------------------------------------------ main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keyfoundryd", default=os.environ.get("KEYFOUNDRYD", ""),
                        help="path of the keyfoundryd binary (default: $KEYFOUNDRYD)")
    args, rest = parser.parse_known_args(argv)
    ENV.binary = args.keyfoundryd
    print(f"azure-keyvault-keys {KEYS_SDK_VERSION}, keyfoundryd {ENV.binary}", file=sys.stderr)
    program = unittest.main(module=__name__, argv=[sys.argv[0], "-v"] + rest, exit=False)
    result = program.result
    ENV.failed = not result.wasSuccessful() or result.testsRun == 0
    code = _finish_server()
    if code != 0:
        print(f"keyfoundryd exited with {code} on SIGTERM (expected 0)", file=sys.stderr)
        return 1
    return 1 if ENV.failed else 0


if __name__ == "__main__":
    sys.exit(main())
