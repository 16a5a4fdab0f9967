"""Test-only: runs the real keyfoundryd on a free port with a fresh data directory, and calls
it over plain HTTPS (urllib) for the set-up steps an operator would do with ARM: tokens, a
service principal, a resource group and a key vault. No SDK code here: the SDKs are what the
tests exercise.
"""
import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ADMIN_PASSWORD = "correct-horse-battery-staple"
RESOURCE_GROUPS_API = "2021-04-01"
KEY_VAULT_ARM_API = "2023-07-01"


class SetupError(Exception):
    """A set-up step answered something other than what ARM would."""


def jwt_claims(token: str) -> dict:
    """The payload of a JWT, unverified (the test only reads claims such as oid)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Keyfoundryd:
    """keyfoundryd serve --data-dir TMP/data --listen 127.0.0.1:0, stderr to TMP/stderr.log."""

    def __init__(self, binary: str, start_timeout: float = 60.0):
        if not binary or not os.access(binary, os.X_OK):
            raise SetupError(f"keyfoundryd binary not found or not executable: {binary!r} "
                             "(pass it as --keyfoundryd PATH or in $KEYFOUNDRYD)")
        self.tmp = tempfile.mkdtemp(prefix="kf-e2e-py-")
        self.data_dir = os.path.join(self.tmp, "data")
        self.log_path = os.path.join(self.tmp, "stderr.log")
        env = dict(os.environ, KEYFOUNDRY_ADMIN_PASSWORD=ADMIN_PASSWORD)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary, "serve", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
        self.port = 0
        deadline = time.monotonic() + start_timeout
        port_file = os.path.join(self.data_dir, "port")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SetupError(f"keyfoundryd exited with {self.proc.returncode} before it "
                                 f"was ready:\n{self.log()}")
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                if text:
                    self.port = int(text)
                    break
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        if not self.port:
            self.stop()
            raise SetupError(f"keyfoundryd wrote no {port_file} in {start_timeout} s:\n{self.log()}")
        self.ca_path = os.path.join(self.data_dir, "tls", "ca.pem")
        self.tenant = self._read("tenant-id")
        self.subscription = self._read("subscription-id")
        self.base_url = f"https://127.0.0.1:{self.port}"
        self._ssl = ssl.create_default_context(cafile=self.ca_path)

    def _read(self, name: str) -> str:
        with open(os.path.join(self.data_dir, name)) as f:
            return f.read().strip()

    def vault_url(self, vault: str) -> str:
        return f"https://{vault}.vault.localhost:{self.port}"

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout: float = 20.0):
        """SIGTERM and wait (SIGKILL after `timeout`); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------ plain HTTPS

    def request(self, method: str, url: str, *, token: str = None, json_body=None,
                form: dict = None, timeout: float = 30.0):
        """One HTTPS request; `url` is absolute or a path on the base URL. Returns
        (status, headers, parsed JSON or text)."""
        if not url.startswith("https://"):
            url = self.base_url + url
        headers = {}
        data = None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=timeout) as resp:
                status, resp_headers, raw = resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            status, resp_headers, raw = e.code, e.headers, e.read()
        text = raw.decode(errors="replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = text
        return status, resp_headers, body

    def token(self, scope: str, **grant) -> str:
        status, _, body = self.request("POST", f"/{self.tenant}/oauth2/v2.0/token",
                                       form=dict(grant, scope=scope))
        if status != 200 or not isinstance(body, dict) or "access_token" not in body:
            raise SetupError(f"token endpoint answered {status}: {body}")
        return body["access_token"]

    def admin_token(self, resource: str = "management") -> str:
        return self.token(f"https://{resource}.localhost/.default", grant_type="password",
                          username="admin", password=ADMIN_PASSWORD)

    # ------------------------------------------------------------ ARM-shaped set-up

    def create_service_principal(self, mgmt_token: str, display_name: str) -> dict:
        """POST /v1.0/servicePrincipals → {"id", "appId", "secretText", ...}."""
        status, _, body = self.request("POST", "/v1.0/servicePrincipals", token=mgmt_token,
                                       json_body={"displayName": display_name})
        if status != 201:
            raise SetupError(f"POST /v1.0/servicePrincipals answered {status}: {body}")
        return body

    def create_resource_group(self, mgmt_token: str, rg: str) -> dict:
        path = (f"/subscriptions/{self.subscription}/resourceGroups/{rg}"
                f"?api-version={RESOURCE_GROUPS_API}")
        status, _, body = self.request("PUT", path, token=mgmt_token,
                                       json_body={"location": "local"})
        if status not in (200, 201):
            raise SetupError(f"PUT {path} answered {status}: {body}")
        return body

    def create_vault(self, mgmt_token: str, rg: str, vault: str, object_ids) -> dict:
        """PUT Microsoft.KeyVault/vaults with ARM's body: access-policy mode, soft delete on
        (7 days), purge protection left off so that purge works; keys/all for each object id.
        Waits until provisioningState is Succeeded when the PUT did not already say so."""
        path = (f"/subscriptions/{self.subscription}/resourceGroups/{rg}"
                f"/providers/Microsoft.KeyVault/vaults/{vault}?api-version={KEY_VAULT_ARM_API}")
        body = {
            "location": "local",
            "properties": {
                "tenantId": self.tenant,
                "sku": {"family": "A", "name": "premium"},
                "enableSoftDelete": True,
                "softDeleteRetentionInDays": 7,
                "accessPolicies": [
                    {"tenantId": self.tenant, "objectId": oid, "permissions": {"keys": ["all"]}}
                    for oid in object_ids
                ],
            },
        }
        status, _, answer = self.request("PUT", path, token=mgmt_token, json_body=body)
        if status not in (200, 201):
            raise SetupError(f"PUT {path} answered {status}: {answer}")
        deadline = time.monotonic() + 60
        while True:
            state = ((answer or {}).get("properties") or {}).get("provisioningState")
            if state in (None, "Succeeded"):
                return answer
            if state in ("Failed", "Canceled") or time.monotonic() > deadline:
                raise SetupError(f"vault {vault} provisioningState {state}: {answer}")
            time.sleep(0.5)
            status, _, answer = self.request("GET", path, token=mgmt_token)
            if status != 200:
                raise SetupError(f"GET {path} answered {status}: {answer}")
