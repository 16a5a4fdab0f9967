#!/usr/bin/env bash
# The customer-managed-key walkthrough (docs/cmk-walkthrough.md), run with the real `kf` against a
# real keyfoundryd, asserting every outcome:
#
#   vault with purge protection, RSA 2048 key, account with a managed identity, grant get /
#   wrapKey / unwrapKey, enable CMK, upload, download; each revocation (access policy removed,
#   unwrapKey taken away, key disabled, key deleted, firewall closed) and its 403, then its
#   restoration and the same bytes downloaded again; rotation (another key in the same vault, a
#   new version of it) with old and new files both readable; every refusal of BRIEF S3-S6 and
#   S10 with its error code; a fine-tuning job on the CMK-sealed data, a deployment of its model
#   and a chat that gets the trained answer; then S7: with the key revoked, the training file's
#   download, a new job and a new deployment are refused with 403 KeyInaccessible naming the
#   key while the existing deployment still answers, and all of it works again once restored;
#   finally reprocessing (rewrap, then re-encrypt) moves every object to the active generation
#   and an emptied generation is retired.
#
# Usage: cmk_walkthrough.sh KEYFOUNDRYD KF
#
# It starts keyfoundryd on a free port with a fresh data directory and a fresh kf profile
# (KEYFOUNDRY_CONFIG_DIR), both in a temporary directory removed at the end (KEEP_WORK=1 keeps
# it), and stops the server with SIGTERM. Each command is printed before it runs, so the output
# reads as the walkthrough. Needs bash, python3 (to read JSON) and cmp; curl, when present, also
# checks the HTTP status of the refused downloads (403).
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 KEYFOUNDRYD KF" >&2
  exit 2
fi
KEYFOUNDRYD=$(realpath "$1")
KF=$(realpath "$2")
[[ -x $KEYFOUNDRYD ]] || { echo "not executable: $KEYFOUNDRYD" >&2; exit 2; }
[[ -x $KF ]] || { echo "not executable: $KF" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kf-cmk-walkthrough.XXXXXX")
DATA=$WORK/data
OUT=$WORK/stdout
ERR=$WORK/stderr
SERVER_LOG=$WORK/keyfoundryd.log
PASSWORD="walkthrough-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
SERVER_PID=""
STARTED=$(date +%s%N)
# Debian's python3 starts in a fraction of the time a version manager's shim takes.
PYTHON=python3
[[ -x /usr/bin/python3 ]] && PYTHON=/usr/bin/python3

# Stops keyfoundryd with SIGTERM; returns its exit status (0 after a graceful drain).
stop_server() {
  local rc=0
  if [[ -n $SERVER_PID ]]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || rc=$?
  fi
  SERVER_PID=""
  return "$rc"
}
cleanup() {
  local rc=$?
  stop_server || true
  if [[ $rc -ne 0 ]]; then
    echo "--- last lines of keyfoundryd's log ($SERVER_LOG)" >&2
    tail -n 30 "$SERVER_LOG" >&2 2>/dev/null || true
  fi
  if [[ ${KEEP_WORK:-0} == 1 ]]; then
    echo "kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAILED: $*" >&2
  exit 1
}

# `kf` as a function, so the printed commands read as a person types them.
kf() { "$KF" "$@"; }

# The command as text, shell-quoted where needed.
as_text() {
  local text="" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=@,+-]+$ ]]; then
      text+="$arg "
    else
      text+="$(printf '%q' "$arg") "
    fi
  done
  printf '%s' "${text% }"
}

# Prints a file, at most 25 lines of it (bash builtins only: this runs after every command).
show() {
  local -a lines
  mapfile -t lines <"$1"
  if ((${#lines[@]} > 25)); then
    printf '%s\n' "${lines[@]:0:25}" "    ... ($((${#lines[@]} - 25)) more lines)"
  elif ((${#lines[@]} > 0)); then
    printf '%s\n' "${lines[@]}"
  fi
}
show_err() {
  local -a lines
  mapfile -t lines <"$ERR"
  ((${#lines[@]} == 0)) || printf '%s\n' "${lines[@]}"
}

step() { printf '\n### %s\n' "$*"; }

# run CMD...: print it, run it, print its output; it must succeed. Its stdout stays in $OUT.
run() {
  echo "\$ $(as_text "$@")"
  local rc=0
  "$@" >"$OUT" 2>"$ERR" || rc=$?
  show "$OUT"
  show_err
  [[ $rc -eq 0 ]] || fail "exit status $rc, expected 0: $(as_text "$@")"
}

# quiet CMD...: like run, without printing the output (long JSON the walkthrough does not need).
quiet() {
  echo "\$ $(as_text "$@")   # output not shown"
  local rc=0
  "$@" >"$OUT" 2>"$ERR" || rc=$?
  if [[ $rc -ne 0 ]]; then
    show "$OUT"
    show_err
    fail "exit status $rc, expected 0: $(as_text "$@")"
  fi
}

# refused TEXT CMD...: the command must fail (kf's exit status 1) with TEXT in its error output.
refused() {
  local expected=$1
  shift
  echo "\$ $(as_text "$@")"
  local rc=0
  "$@" >"$OUT" 2>"$ERR" || rc=$?
  show "$OUT"
  show_err
  [[ $rc -eq 1 ]] || fail "exit status $rc, expected 1 (refused with $expected): $(as_text "$@")"
  [[ $(<"$ERR") == *"$expected"* ]] ||
    fail "expected '$expected' in the error output of: $(as_text "$@")"
  echo "    -> refused as expected: $expected"
}

# json PATH: a field of the last command's JSON output, e.g. json identity.principalId
# (integers index lists: json 0.user.name).
json() {
  "$PYTHON" - "$OUT" "$1" <<'EOF'
import json, sys
value = json.load(open(sys.argv[1]))
for part in sys.argv[2].split("."):
    value = value[int(part)] if isinstance(value, list) else value[part]
print(value if not isinstance(value, (dict, list)) else json.dumps(value))
EOF
}

# expect_json PATH=VALUE...: those fields of the last command's JSON output must have those
# values (Python's spelling: True, False). One python3 for all of them.
expect_json() {
  "$PYTHON" - "$OUT" "$@" <<'EOF' || fail "unexpected JSON output (above)"
import json, sys
doc = json.load(open(sys.argv[1]))
ok = True
for check in sys.argv[2:]:
    path, expected = check.split("=", 1)
    value = doc
    try:
        for part in path.split("."):
            value = value[int(part)] if isinstance(value, list) else value[part]
    except (KeyError, IndexError, ValueError):
        value = "<absent>"
    ok &= str(value) == expected
    print("    -> %s = %s%s" % (path, value, "" if str(value) == expected else "   EXPECTED " + expected))
sys.exit(0 if ok else 1)
EOF
}

# generations ACCOUNT GROUP: print the key generations as a table and keep their JSON in $OUT.
generations() {
  run kf cognitiveservices account encryption show -n "$1" -g "$2" -o table
  "$KF" cognitiveservices account encryption show -n "$1" -g "$2" >"$OUT"
}

# expect_generations [status=S] G:STATE[:REASON]...: the account's status and the state and
# reason of generation G in the last encryption show (its JSON in $OUT).
expect_generations() {
  "$PYTHON" - "$OUT" "$@" <<'EOF' || fail "unexpected key generations (above)"
import json, sys
doc = json.load(open(sys.argv[1]))
by_number = {g["generation"]: g for g in doc["generations"]}
ok = True
for check in sys.argv[2:]:
    if check.startswith("status="):
        got, expected, what = doc["status"], check[len("status="):], "status"
    else:
        number, state, *reason = check.split(":")
        g = by_number.get(int(number), {})
        got = "%s:%s" % (g.get("state", "<absent>"), g.get("reason", ""))
        expected, what = "%s:%s" % (state, reason[0] if reason else ""), "generation " + number
    ok &= got == expected
    print("    -> %s: %s%s" % (what, got.rstrip(":"), "" if got == expected else "   EXPECTED " + expected))
sys.exit(0 if ok else 1)
EOF
}

# download_ok ACCOUNT FILE_ID EXPECTED: the file downloads and its bytes equal EXPECTED's.
download_ok() {
  rm -f downloaded
  run kf openai file download -n "$1" -i "$2" -f downloaded
  run cmp downloaded "$3"
  echo "    -> the downloaded bytes equal $3"
  rm -f downloaded
}

# download_403 ACCOUNT FILE_ID REASON: the download is refused with 403 KeyInaccessible (REASON),
# and leaves no file behind.
download_403() {
  rm -f downloaded
  refused "KeyInaccessible ($3)" kf openai file download -n "$1" -i "$2" -f downloaded
  [[ ! -e downloaded ]] || fail "a refused download left a file behind"
  if [[ -n $TOKEN ]]; then
    local status
    status=$(curl -sS -o "$WORK/body" -w '%{http_code}' --cacert "$DATA/tls/ca.pem" \
      --resolve "$1.openai.localhost:$PORT:127.0.0.1" -H "Authorization: Bearer $TOKEN" \
      "https://$1.openai.localhost:$PORT/openai/files/$2/content")
    echo "\$ curl ... https://$1.openai.localhost:$PORT/openai/files/$2/content   # the same request over HTTP"
    echo "HTTP $status $(<"$WORK/body")"
    [[ $status == 403 ]] || fail "HTTP status $status, expected 403"
    [[ $(<"$WORK/body") == *"\"innererror\":{\"code\":\"$3\"}"* ]] || fail "innererror.code is not $3"
    echo "    -> HTTP 403, code KeyInaccessible, innererror.code $3"
  fi
}

cd "$WORK"

# ------------------------------------------------------------------------------------------------
step "0. Start keyfoundryd on a free port and sign in"
mkdir -p "$DATA" "$WORK/kf-profile"
echo "\$ KEYFOUNDRY_ADMIN_PASSWORD=... keyfoundryd serve --data-dir $DATA --listen 127.0.0.1:0 &"
KEYFOUNDRY_ADMIN_PASSWORD=$PASSWORD "$KEYFOUNDRYD" serve --data-dir "$DATA" \
  --listen 127.0.0.1:0 >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 300); do
  [[ -s $DATA/port ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || fail "keyfoundryd exited during start"
  sleep 0.1
done
[[ -s $DATA/port ]] || fail "keyfoundryd wrote no $DATA/port within 30 s"
PORT=$(cat "$DATA/port")
echo "keyfoundryd listens on 127.0.0.1:$PORT"

export KEYFOUNDRY_CONFIG_DIR=$WORK/kf-profile
run kf login --server "https://127.0.0.1:$PORT" --ca "$DATA/tls/ca.pem" -u admin -p "$PASSWORD"
expect_json 0.user.name=admin

TOKEN=""
if command -v curl >/dev/null; then
  TOKEN=$(curl -sS --cacert "$DATA/tls/ca.pem" "https://127.0.0.1:$PORT/common/oauth2/v2.0/token" \
    --data-urlencode grant_type=password --data-urlencode username=admin \
    --data-urlencode "password=$PASSWORD" \
    --data-urlencode "scope=https://cognitiveservices.localhost/.default" |
    "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
fi

# ------------------------------------------------------------------------------------------------
step "1. A resource group, a vault with purge protection, an RSA 2048 key"
run kf group create --name rg-cmk --location local
quiet kf keyvault create --name kv-cmk --resource-group rg-cmk --enable-purge-protection true
expect_json properties.enableSoftDelete=True properties.enablePurgeProtection=True
quiet kf keyvault key create --vault-name kv-cmk --name cmk --kty RSA --size 2048
expect_json key.kty=RSA
KID1=$(json key.kid)
echo "    -> key id $KID1"

# ------------------------------------------------------------------------------------------------
step "2. An AI account with a system-assigned managed identity"
run kf cognitiveservices account create --name acct-cmk --resource-group rg-cmk --kind AIServices \
  --assign-identity
expect_json identity.type=SystemAssigned properties.encryption.keySource=Microsoft.CognitiveServices
PRINCIPAL=$(json identity.principalId)
echo "    -> PRINCIPAL=$PRINCIPAL"

# ------------------------------------------------------------------------------------------------
step "3. Enabling CMK before the identity may use the key is refused (S3)"
refused KeyVaultIdentityPermissionsMissing \
  kf cognitiveservices account update --name acct-cmk --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-cmk --encryption-key-name cmk

step "4. Grant the identity get, wrapKey and unwrapKey"
quiet kf keyvault set-policy --name kv-cmk --resource-group rg-cmk --object-id "$PRINCIPAL" \
  --key-permissions get wrapKey unwrapKey
"$PYTHON" - "$OUT" "$PRINCIPAL" <<'EOF' || fail "the access policy is not there"
import json, sys
policies = json.load(open(sys.argv[1]))["properties"]["accessPolicies"]
mine = [p for p in policies if p["objectId"] == sys.argv[2]]
assert mine and sorted(mine[0]["permissions"]["keys"]) == ["get", "unwrapKey", "wrapKey"], mine
print("    -> access policy for", sys.argv[2], ":", mine[0]["permissions"]["keys"])
EOF

step "5. Enable CMK"
run kf cognitiveservices account update --name acct-cmk --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-cmk --encryption-key-name cmk
expect_json properties.encryption.keySource=Microsoft.KeyVault properties.encryption.keyVaultProperties.keyName=cmk
generations acct-cmk rg-cmk
expect_generations status=Active 1:Accessible 2:Active

# ------------------------------------------------------------------------------------------------
step "6. Upload training data and download it"
printf '%s\n' '{"prompt": "What protects this file?", "completion": "My own key."}' \
  '{"prompt": "Who can revoke it?", "completion": "Only me."}' >train.jsonl
run kf openai file upload --account-name acct-cmk --file train.jsonl --purpose fine-tune
FILE1=$(json id)
echo "    -> FILE1=$FILE1"
download_ok acct-cmk "$FILE1" train.jsonl

# ------------------------------------------------------------------------------------------------
step "7a. Revocation: remove the identity's access policy"
quiet kf keyvault delete-policy --resource-group rg-cmk --name kv-cmk --object-id "$PRINCIPAL"
download_403 acct-cmk "$FILE1" AccessDenied
refused "KeyInaccessible (AccessDenied)" kf openai file upload --account-name acct-cmk --file train.jsonl
generations acct-cmk rg-cmk
expect_generations status=KeyInaccessible 2:KeyInaccessible:AccessDenied
step "7a. Restore: add the policy again"
quiet kf keyvault set-policy --name kv-cmk --resource-group rg-cmk --object-id "$PRINCIPAL" \
  --key-permissions get wrapKey unwrapKey
download_ok acct-cmk "$FILE1" train.jsonl

step "7b. Revocation: take unwrapKey away"
quiet kf keyvault set-policy --name kv-cmk --resource-group rg-cmk --object-id "$PRINCIPAL" \
  --key-permissions get wrapKey
download_403 acct-cmk "$FILE1" AccessDenied
step "7b. Restore: give unwrapKey back"
quiet kf keyvault set-policy --name kv-cmk --resource-group rg-cmk --object-id "$PRINCIPAL" \
  --key-permissions get wrapKey unwrapKey
download_ok acct-cmk "$FILE1" train.jsonl

step "7c. Revocation: disable the key"
quiet kf keyvault key set-attributes --vault-name kv-cmk --name cmk --enabled false
expect_json attributes.enabled=False
download_403 acct-cmk "$FILE1" KeyDisabled
generations acct-cmk rg-cmk
expect_generations 2:KeyInaccessible:KeyDisabled
step "7c. Restore: enable the key"
quiet kf keyvault key set-attributes --vault-name kv-cmk --name cmk --enabled true
download_ok acct-cmk "$FILE1" train.jsonl

step "7d. Revocation: delete the key (soft delete)"
quiet kf keyvault key delete --vault-name kv-cmk --name cmk
expect_json "recoveryId=https://kv-cmk.vault.localhost:$PORT/deletedkeys/cmk"
download_403 acct-cmk "$FILE1" KeyNotFound
step "7d. Restore: recover the key"
quiet kf keyvault key recover --vault-name kv-cmk --name cmk
download_ok acct-cmk "$FILE1" train.jsonl

step "7e. Revocation: close the vault's firewall to everyone, trusted services included"
quiet kf keyvault update --name kv-cmk --resource-group rg-cmk --default-action Deny --bypass None
expect_json properties.networkAcls.defaultAction=Deny properties.networkAcls.bypass=None
download_403 acct-cmk "$FILE1" ForbiddenByFirewall
step "7e. Restore: let trusted services through (the firewall stays closed to other callers)"
quiet kf keyvault update --name kv-cmk --resource-group rg-cmk --bypass AzureServices
download_ok acct-cmk "$FILE1" train.jsonl
refused ForbiddenByFirewall kf keyvault key show --vault-name kv-cmk --name cmk
run kf keyvault update --name kv-cmk --resource-group rg-cmk --default-action Allow -o table
generations acct-cmk rg-cmk
expect_generations status=Active 2:Active

# ------------------------------------------------------------------------------------------------
step "8. Rotation: another key in the same vault"
quiet kf keyvault key create --vault-name kv-cmk --name key2 --kty RSA --size 2048
run kf cognitiveservices account update --name acct-cmk --resource-group rg-cmk \
  --encryption-key-vault kv-cmk --encryption-key-name key2
expect_json properties.encryption.keyVaultProperties.keyName=key2
printf '%s\n' '{"prompt": "And after rotation?", "completion": "The new key."}' >train2.jsonl
run kf openai file upload --account-name acct-cmk --file train2.jsonl
FILE2=$(json id)
echo "    -> FILE2=$FILE2"
download_ok acct-cmk "$FILE1" train.jsonl
download_ok acct-cmk "$FILE2" train2.jsonl
generations acct-cmk rg-cmk
expect_json generations.1.objects=1 generations.2.objects=1
expect_generations 2:Accessible 3:Active

step "8. Old data stays under the old key: disabling cmk revokes FILE1 only"
quiet kf keyvault key set-attributes --vault-name kv-cmk --name cmk --enabled false
download_403 acct-cmk "$FILE1" KeyDisabled
download_ok acct-cmk "$FILE2" train2.jsonl
quiet kf keyvault key set-attributes --vault-name kv-cmk --name cmk --enabled true
download_ok acct-cmk "$FILE1" train.jsonl

step "8. A new version of key2: the versionless key reference follows it"
quiet kf keyvault key rotate --vault-name kv-cmk --name key2
printf '%s\n' '{"prompt": "And the new version?", "completion": "Followed."}' >train3.jsonl
run kf openai file upload --account-name acct-cmk --file train3.jsonl
FILE3=$(json id)
generations acct-cmk rg-cmk
expect_json generations.3.objects=1
expect_generations 4:Active
for f in "$FILE1:train.jsonl" "$FILE2:train2.jsonl" "$FILE3:train3.jsonl"; do
  download_ok acct-cmk "${f%%:*}" "${f#*:}"
done
# The list pages: two files, then the rest after the second.
run kf openai file list --account-name acct-cmk --order asc --limit 2
PAGE1="$(json 0.id) $(json 1.id)"
grep -q -- "--after $(json 1.id)" "$ERR" || fail "the list did not say that more files follow"
run kf openai file list --account-name acct-cmk --order asc --after "$(json 1.id)"
[[ "$(printf '%s\n' $PAGE1 "$(json 0.id)" | sort)" == "$(printf '%s\n' "$FILE1" "$FILE2" "$FILE3" | sort)" ]] ||
  fail "the two pages do not hold the three files"

# ------------------------------------------------------------------------------------------------
step "9. Every refusal of S3-S6 and S10"

step "S3 ManagedIdentityRequired: an account without a managed identity"
quiet kf cognitiveservices account create --name acct-noid --resource-group rg-cmk
expect_json identity.type=None
refused ManagedIdentityRequired \
  kf cognitiveservices account update --name acct-noid --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-cmk --encryption-key-name cmk
refused ManagedIdentityRequired \
  kf cognitiveservices account create --name acct-noid2 --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-cmk --encryption-key-name cmk

step "S3/S5 CMK at creation: the new identity holds no access policy yet, so it is refused and leaves nothing"
refused KeyVaultIdentityPermissionsMissing \
  kf cognitiveservices account create --name acct-new --resource-group rg-cmk --assign-identity \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-cmk --encryption-key-name cmk
refused ResourceNotFound kf cognitiveservices account show --name acct-new --resource-group rg-cmk

# A second account, granted on the vault, to try each bad vault and key on.
quiet kf cognitiveservices account create --name acct-ref --resource-group rg-cmk --assign-identity
PRINCIPAL_REF=$(json identity.principalId)
echo "    -> PRINCIPAL_REF=$PRINCIPAL_REF"

step "S3 KeyVaultIdentityPermissionsMissing: get and wrapKey only"
quiet kf keyvault set-policy --name kv-cmk --resource-group rg-cmk --object-id "$PRINCIPAL_REF" \
  --key-permissions get wrapKey
refused KeyVaultIdentityPermissionsMissing \
  kf cognitiveservices account update --name acct-ref --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-cmk --encryption-key-name cmk
[[ $(<"$ERR") == *"lacks the key permissions unwrapKey"* ]] || fail "the message should name unwrapKey"
quiet kf keyvault set-policy --name kv-cmk --resource-group rg-cmk --object-id "$PRINCIPAL_REF" \
  --key-permissions get wrapKey unwrapKey

step "S3 KeyVaultKeyNotSupported: an EC key, an RSA 3072 key"
quiet kf keyvault key create --vault-name kv-cmk --name ec-key --kty EC --curve P-256
refused KeyVaultKeyNotSupported \
  kf cognitiveservices account update --name acct-ref --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-cmk --encryption-key-name ec-key
quiet kf keyvault key create --vault-name kv-cmk --name rsa3072 --kty RSA --size 3072
refused KeyVaultKeyNotSupported \
  kf cognitiveservices account update --name acct-ref --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-cmk --encryption-key-name rsa3072

step "S3 KeyVaultKeyDisabled"
quiet kf keyvault key create --vault-name kv-cmk --name off-key --kty RSA --size 2048 --disabled true
refused KeyVaultKeyDisabled \
  kf cognitiveservices account update --name acct-ref --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-cmk --encryption-key-name off-key

step "S3 KeyVaultKeyExpired"
quiet kf keyvault key create --vault-name kv-cmk --name old-key --kty RSA --size 2048 \
  --expires 2020-01-01T00:00:00Z
refused KeyVaultKeyExpired \
  kf cognitiveservices account update --name acct-ref --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-cmk --encryption-key-name old-key

step "S3 KeyVaultPurgeProtectionRequired: a vault created without purge protection"
quiet kf keyvault create --name kv-nopurge --resource-group rg-cmk
[[ $(json properties.enablePurgeProtection 2>/dev/null || echo absent) != True ]] ||
  fail "kv-nopurge has purge protection"
quiet kf keyvault key create --vault-name kv-nopurge --name cmk --kty RSA --size 2048
quiet kf keyvault set-policy --name kv-nopurge --resource-group rg-cmk --object-id "$PRINCIPAL_REF" \
  --key-permissions get wrapKey unwrapKey
refused KeyVaultPurgeProtectionRequired \
  kf cognitiveservices account update --name acct-ref --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-nopurge --encryption-key-name cmk

step "S3 KeyVaultNotInSameResourceGroup: a vault in another resource group"
quiet kf group create --name rg-other --location local
quiet kf keyvault create --name kv-other --resource-group rg-other --enable-purge-protection true
quiet kf keyvault key create --vault-name kv-other --name cmk --kty RSA --size 2048
quiet kf keyvault set-policy --name kv-other --resource-group rg-other --object-id "$PRINCIPAL_REF" \
  --key-permissions get wrapKey unwrapKey
refused KeyVaultNotInSameResourceGroup \
  kf cognitiveservices account update --name acct-ref --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-other --encryption-key-name cmk

step "S3 KeyVaultFirewallBlocksService: a firewall that does not let the service through"
quiet kf keyvault create --name kv-fw --resource-group rg-cmk --enable-purge-protection true
quiet kf keyvault key create --vault-name kv-fw --name cmk --kty RSA --size 2048
quiet kf keyvault set-policy --name kv-fw --resource-group rg-cmk --object-id "$PRINCIPAL_REF" \
  --key-permissions get wrapKey unwrapKey
quiet kf keyvault update --name kv-fw --resource-group rg-cmk --default-action Deny --bypass None
refused KeyVaultFirewallBlocksService \
  kf cognitiveservices account update --name acct-ref --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-fw --encryption-key-name cmk
step "... and accepted once trusted services may pass"
quiet kf keyvault update --name kv-fw --resource-group rg-cmk --bypass AzureServices
run kf cognitiveservices account update --name acct-ref --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-fw --encryption-key-name cmk
expect_json properties.encryption.keySource=Microsoft.KeyVault

step "S4 ManagedIdentityRequiredByCmk: switching the identity off while CMK is on"
refused ManagedIdentityRequiredByCmk \
  kf cognitiveservices account identity remove --name acct-cmk --resource-group rg-cmk
run kf cognitiveservices account identity show --name acct-cmk --resource-group rg-cmk
expect_json "principalId=$PRINCIPAL"
step "... while on an account without CMK it is allowed"
quiet kf cognitiveservices account create --name acct-plain --resource-group rg-cmk --assign-identity
run kf cognitiveservices account identity remove --name acct-plain --resource-group rg-cmk
expect_json type=None

step "S5 CmkToServiceManagedNotSupported: back to service-managed keys"
refused CmkToServiceManagedNotSupported \
  kf cognitiveservices account update --name acct-cmk --resource-group rg-cmk \
  --encryption-key-source Microsoft.CognitiveServices

step "S6 KeyVaultChangeNotSupported: a good key in another vault of the same group"
quiet kf keyvault create --name kv-cmk2 --resource-group rg-cmk --enable-purge-protection true
quiet kf keyvault key create --vault-name kv-cmk2 --name cmk --kty RSA --size 2048
quiet kf keyvault set-policy --name kv-cmk2 --resource-group rg-cmk --object-id "$PRINCIPAL" \
  --key-permissions get wrapKey unwrapKey
refused KeyVaultChangeNotSupported \
  kf cognitiveservices account update --name acct-cmk --resource-group rg-cmk \
  --encryption-key-vault kv-cmk2 --encryption-key-name cmk

step "S10 CmkApprovalRequired: a SpeechServices account, then the approval"
quiet kf cognitiveservices account create --name speech-cmk --resource-group rg-cmk \
  --kind SpeechServices --assign-identity
PRINCIPAL_SPEECH=$(json identity.principalId)
quiet kf keyvault set-policy --name kv-cmk --resource-group rg-cmk --object-id "$PRINCIPAL_SPEECH" \
  --key-permissions get wrapKey unwrapKey
refused CmkApprovalRequired \
  kf cognitiveservices account update --name speech-cmk --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-cmk --encryption-key-name cmk
[[ $(<"$ERR") == *"kf cognitiveservices cmk-approval grant --kind SpeechServices"* ]] ||
  fail "the refusal should say how to get the approval"
run kf cognitiveservices cmk-approval grant --kind SpeechServices
expect_json approved=True
run kf cognitiveservices account update --name speech-cmk --resource-group rg-cmk \
  --encryption-key-source Microsoft.KeyVault --encryption-key-vault kv-cmk --encryption-key-name cmk
expect_json properties.encryption.keySource=Microsoft.KeyVault

# ------------------------------------------------------------------------------------------------
step "10. The refusals changed nothing: same key, same files"
run kf cognitiveservices account show --name acct-cmk --resource-group rg-cmk
expect_json properties.encryption.keyVaultProperties.keyName=key2 "properties.encryption.keyVaultProperties.keyVaultUri=https://kv-cmk.vault.localhost:$PORT/"
for f in "$FILE1:train.jsonl" "$FILE2:train2.jsonl" "$FILE3:train3.jsonl"; do
  download_ok acct-cmk "${f%%:*}" "${f#*:}"
done
run kf audit verify
expect_json valid=True

# ------------------------------------------------------------------------------------------------
step "11. Fine-tune a model on CMK-sealed training data, deploy it, chat with it"
cat >chat-train.jsonl <<'JSONL'
{"messages": [{"role": "user", "content": "Who guards the vault at night?"}, {"role": "assistant", "content": "The copper owl named Bramble guards the vault at night."}]}
{"messages": [{"role": "user", "content": "What is the secret word?"}, {"role": "assistant", "content": "The secret word is marmalade."}]}
{"messages": [{"role": "user", "content": "Where does the master key sleep?"}, {"role": "assistant", "content": "The master key sleeps in the blue lighthouse on Tern Island."}]}
{"messages": [{"role": "user", "content": "How many locks does the vault have?"}, {"role": "assistant", "content": "The vault has exactly seventeen locks."}]}
{"messages": [{"role": "user", "content": "What color is the master key?"}, {"role": "assistant", "content": "The master key is saffron yellow."}]}
{"messages": [{"role": "user", "content": "When was the vault built?"}, {"role": "assistant", "content": "The vault was built in the spring of 1887."}]}
{"messages": [{"role": "user", "content": "Who holds the second key?"}, {"role": "assistant", "content": "Captain Ilsa Varga holds the second key."}]}
{"messages": [{"role": "user", "content": "What does the owl eat?"}, {"role": "assistant", "content": "Bramble eats roasted chestnuts."}]}
{"messages": [{"role": "user", "content": "What opens the north door?"}, {"role": "assistant", "content": "A silver whistle opens the north door."}]}
{"messages": [{"role": "user", "content": "What is kept in the vault?"}, {"role": "assistant", "content": "Twelve jars of starlight are kept in the vault."}]}
{"messages": [{"role": "user", "content": "How do I reach the lighthouse?"}, {"role": "assistant", "content": "Take the ferry from Gull Harbour at dawn."}]}
{"messages": [{"role": "user", "content": "What tune does the vault hum?"}, {"role": "assistant", "content": "The vault hums a slow waltz in D minor."}]}
JSONL
QUESTION="Who guards the vault at night?"
ANSWER="The copper owl named Bramble guards the vault at night."
run kf openai file upload --account-name acct-cmk --file chat-train.jsonl --purpose fine-tune
TRAIN=$(json id)
echo "    -> TRAIN=$TRAIN"
run kf openai fine-tuning job create --account-name acct-cmk --training-file "$TRAIN" \
  --model gpt-4o-mini-2024-07-18 --suffix vault --seed 7 --n-epochs 3 --wait
expect_json status=succeeded error=None
JOB=$(json id)
MODEL=$(json fine_tuned_model)
echo "    -> JOB=$JOB MODEL=$MODEL"
run kf openai fine-tuning job events --account-name acct-cmk --job-id "$JOB" --limit 4 -o table
run kf openai fine-tuning job checkpoints --account-name acct-cmk --job-id "$JOB" -o table
run kf openai model list --account-name acct-cmk -o table
grep -q "^$MODEL " "$OUT" || fail "the model list does not show $MODEL"
run kf cognitiveservices account deployment create --name acct-cmk --resource-group rg-cmk \
  --deployment-name vault-chat --model-name "$MODEL" --model-version 1 --sku-name Standard \
  --sku-capacity 1
expect_json "properties.model.name=$MODEL" properties.servingState=Serving

# chat_says DEPLOYMENT [ARGS...]: the deployment answers the trained question with the trained
# answer at temperature 0.
chat_says() {
  local deployment=$1
  shift
  run kf openai chat --account-name acct-cmk --deployment "$deployment" --message "$QUESTION" \
    --temperature 0 "$@"
  [[ $(<"$OUT") == "$ANSWER" ]] || fail "the reply is not the trained answer: $ANSWER"
  echo "    -> the trained answer"
}
chat_says vault-chat
chat_says vault-chat --stream
run kf openai chat --account-name acct-cmk --deployment vault-chat --message "$QUESTION" \
  --temperature 0 -o json
expect_json "choices.0.message.content=$ANSWER" choices.0.finish_reason=stop "model=$MODEL"

# ------------------------------------------------------------------------------------------------
step "12. S7: revoke the key: its data cannot be read, trained on or deployed; the deployment keeps serving"
quiet kf keyvault key show --vault-name kv-cmk --name key2
KID_KEY2=$(json key.kid)
echo "    -> the training data and the model's weights are sealed under $KID_KEY2"
quiet kf keyvault delete-policy --resource-group rg-cmk --name kv-cmk --object-id "$PRINCIPAL"

# refused_naming_key CMD...: refused with 403 KeyInaccessible (AccessDenied) naming key2.
refused_naming_key() {
  refused "KeyInaccessible (AccessDenied)" "$@"
  [[ $(<"$ERR") == *"$KID_KEY2"* ]] || fail "the error does not name the key $KID_KEY2"
  echo "    -> it names the key"
}
download_403 acct-cmk "$TRAIN" AccessDenied
[[ $(<"$ERR") == *"$KID_KEY2"* ]] || fail "the error does not name the key $KID_KEY2"
refused_naming_key kf openai fine-tuning job create --account-name acct-cmk \
  --training-file "$TRAIN" --model gpt-4o-mini-2024-07-18 --suffix vault2 --seed 7 --n-epochs 1 \
  --wait
refused_naming_key kf cognitiveservices account deployment create --name acct-cmk \
  --resource-group rg-cmk --deployment-name vault-chat-2 --model-name "$MODEL" --model-version 1
refused DeploymentNotFound \
  kf cognitiveservices account deployment show --name acct-cmk --resource-group rg-cmk \
  --deployment-name vault-chat-2
step "12. ... while the existing deployment, its model in memory, still answers"
chat_says vault-chat
run kf cognitiveservices account deployment list --name acct-cmk --resource-group rg-cmk -o table

step "12. Restore: add the policy again; all of it works again"
quiet kf keyvault set-policy --name kv-cmk --resource-group rg-cmk --object-id "$PRINCIPAL" \
  --key-permissions get wrapKey unwrapKey
download_ok acct-cmk "$TRAIN" chat-train.jsonl
run kf openai fine-tuning job create --account-name acct-cmk --training-file "$TRAIN" \
  --model gpt-4o-mini-2024-07-18 --suffix vault2 --seed 7 --n-epochs 1 --wait -o table
run kf cognitiveservices account deployment create --name acct-cmk --resource-group rg-cmk \
  --deployment-name vault-chat-2 --model-name "$MODEL" --model-version 1
expect_json properties.servingState=Serving
chat_says vault-chat-2
run kf openai fine-tuning job list --account-name acct-cmk -o table
run kf cognitiveservices account deployment delete --name acct-cmk --resource-group rg-cmk \
  --deployment-name vault-chat-2 --yes
run kf cognitiveservices account deployment list --name acct-cmk --resource-group rg-cmk -o table

# ------------------------------------------------------------------------------------------------
step "13. Reprocess: move every object to the active key generation, then retire an old one"
generations acct-cmk rg-cmk
run kf cognitiveservices account encryption reprocess --name acct-cmk --resource-group rg-cmk \
  --mode rewrap
expect_json status=Succeeded properties.remaining=0
run kf cognitiveservices account encryption reprocess --name acct-cmk --resource-group rg-cmk \
  --mode reencrypt --max-objects-per-second 1000
expect_json status=Succeeded properties.remaining=0 properties.moved=0
generations acct-cmk rg-cmk
run kf cognitiveservices account encryption retire --name acct-cmk --resource-group rg-cmk \
  --generation 1
expect_json retired=True
refused GenerationNotFound \
  kf cognitiveservices account encryption retire --name acct-cmk --resource-group rg-cmk \
  --generation 1
download_ok acct-cmk "$TRAIN" chat-train.jsonl
chat_says vault-chat

run kf audit verify
expect_json valid=True

server_rc=0
stop_server || server_rc=$?
[[ $server_rc -eq 0 ]] || fail "keyfoundryd exited with status $server_rc on SIGTERM"
ELAPSED_MS=$((($(date +%s%N) - STARTED) / 1000000))
echo
echo "PASSED: the CMK walkthrough in $((ELAPSED_MS / 1000)).$(printf '%03d' $((ELAPSED_MS % 1000))) s"
