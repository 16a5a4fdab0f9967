#!/usr/bin/env bash
# The key vault's wrapkey and unwrapkey over HTTPS keep-alive, beside their peers, in one run:
#   - unwrapkey (RSA-OAEP-256, RSA-2048 software key) against `openssl speed -multi N rsa2048`
#     private-key operations per second (N = the cores): the physical limit of the work itself;
#   - wrapkey against nginx serving a small static file over HTTPS with keep-alive: the rate a
#     well-tuned HTTPS server reaches when the work per request is nothing.
# Targets (BRIEF §7): unwrap >= 90 % of OpenSSL's private-key ops/s; wrap >= 50 % of nginx.
#
# Usage: bench/keyvault_bench.sh [BUILD_DIR] [ROUNDS] [SECONDS] [CONNECTIONS]
# The load generator is wrk (2 threads, CONNECTIONS keep-alive connections) on the same machine
# as the server and the peers, so every figure pays for it alike. Rounds interleave the peers
# and ours (a shared VM's speed drifts); the table gives medians over rounds.
set -euo pipefail
build=${1:-build/release}
rounds=${2:-3}
seconds=${3:-8}
connections=${4:-32}
cores=$(nproc)
here=$(cd "$(dirname "$0")" && pwd)

work=$(mktemp -d)
cleanup() {
  [[ -n "${server_pid:-}" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [[ -f "$work/nginx.pid" ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# --- keyfoundryd with a vault, a key and a token
export KEYFOUNDRY_ADMIN_PASSWORD=bench-password-not-secret
export KEYFOUNDRY_THREADS=${KEYFOUNDRY_THREADS:-16}
"$build/src/server/keyfoundryd" serve --data-dir "$work/data" --listen 127.0.0.1:0 \
    2>"$work/server.log" >/dev/null &
server_pid=$!
for _ in $(seq 1 200); do [[ -s "$work/data/port" ]] && break; sleep 0.05; done
port=$(cat "$work/data/port")
ca="$work/data/tls/ca.pem"
tenant=$(cat "$work/data/tenant-id")
sub=$(cat "$work/data/subscription-id")
base="https://127.0.0.1:$port"
vhost="bench.vault.localhost:$port"
token() {
  curl -sS --cacert "$ca" "$base/$tenant/oauth2/v2.0/token" \
      -d "grant_type=password&username=admin&password=$KEYFOUNDRY_ADMIN_PASSWORD&scope=https://$1.localhost/.default" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
mgmt=$(token management)
vault_token=$(token vault)
oid=$(python3 -c 'import base64,json,sys; p=sys.argv[1].split(".")[1]; print(json.loads(base64.urlsafe_b64decode(p+"=="))["oid"])' "$mgmt")
arm() { curl -sS -f --cacert "$ca" -X PUT -H "Authorization: Bearer $mgmt" -H "Content-Type: application/json" "$base$1" -d "$2" >/dev/null; }
arm "/subscriptions/$sub/resourcegroups/bench?api-version=2021-04-01" '{"location":"local"}'
arm "/subscriptions/$sub/resourceGroups/bench/providers/Microsoft.KeyVault/vaults/bench?api-version=2023-07-01" \
    "{\"location\":\"local\",\"properties\":{\"tenantId\":\"$tenant\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"accessPolicies\":[{\"tenantId\":\"$tenant\",\"objectId\":\"$oid\",\"permissions\":{\"keys\":[\"all\"]}}]}}"
vault() {
  curl -sS -f --cacert "$ca" --resolve "bench.vault.localhost:$port:127.0.0.1" -X POST \
      -H "Authorization: Bearer $vault_token" -H "Content-Type: application/json" \
      "https://$vhost$1?api-version=7.5" -d "$2"
}
kid=$(vault /keys/k1/create '{"kty":"RSA","key_size":2048}' |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["key"]["kid"])')
version=${kid##*/}
cek=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
wrapped=$(vault "/keys/k1/$version/wrapkey" "{\"alg\":\"RSA-OAEP-256\",\"value\":\"$cek\"}" |
          python3 -c 'import json,sys; print(json.load(sys.stdin)["value"])')

lua() {  # lua FILE OP VALUE
  cat >"$1" <<LUA
wrk.method = "POST"
wrk.body = '{"alg":"RSA-OAEP-256","value":"$3"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $vault_token"
wrk.headers["Host"] = "$vhost"
LUA
}
lua "$work/unwrap.lua" unwrapkey "$wrapped"
lua "$work/wrap.lua" wrapkey "$cek"

# --- nginx: a 64-byte file over HTTPS with the same kind of certificate (ECDSA P-256)
mkdir -p "$work/www" "$work/nginx"
chmod 755 "$work" "$work/www"  # nginx's workers run as an unprivileged user
head -c 64 /dev/urandom | base64 >"$work/www/small.txt"
cp "$work/data/tls/server.pem" "$work/nginx/cert.pem"
cp "$work/data/tls/server-key.pem" "$work/nginx/key.pem"
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes $cores;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:0 ssl;
    ssl_certificate $work/nginx/cert.pem;
    ssl_certificate_key $work/nginx/key.pem;
    root $work/www;
  }
}
NGINX
nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i "s/127.0.0.1:0/127.0.0.1:$nginx_port/" "$work/nginx/nginx.conf"
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" 2>>"$work/nginx/error.log"

rate() {  # wrk output -> requests/s; fails on non-2xx responses
  awk '/Non-2xx/ {bad=1} /^Requests\/sec/ {r=$2} END {if (bad) print "ERR"; else print r}'
}
openssl_rsa() {
  openssl speed -mr -multi "$cores" -seconds "$seconds" rsa2048 2>/dev/null |
    awk -F: '/^\+F2:/ {v=$4} END {print v}'
}
run_wrk() {  # run_wrk URL [LUA]
  wrk -t2 -c"$connections" -d"${seconds}s" ${2:+-s "$2"} "$1" 2>&1 | rate
}

echo "## $(date -u +%Y-%m-%d), $cores cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo
echo "Command: \`bench/keyvault_bench.sh $build $rounds $seconds $connections\` (wrk -t2 -c$connections, ${seconds} s per run)"
echo
echo "| round | openssl rsa2048 private ops/s | unwrapkey req/s | ratio | nginx small file req/s | wrapkey req/s | ratio |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
declare -a unwrap_ratios wrap_ratios
for ((i = 1; i <= rounds; i++)); do
  o=$(openssl_rsa)
  u=$(run_wrk "https://127.0.0.1:$port/keys/k1/$version/unwrapkey?api-version=7.5" "$work/unwrap.lua")
  n=$(run_wrk "https://127.0.0.1:$nginx_port/small.txt")
  w=$(run_wrk "https://127.0.0.1:$port/keys/k1/$version/wrapkey?api-version=7.5" "$work/wrap.lua")
  ur=$(python3 -c "print(f'{100*float(\"$u\")/float(\"$o\"):.0f} %')" 2>/dev/null || echo "n/a")
  wr=$(python3 -c "print(f'{100*float(\"$w\")/float(\"$n\"):.0f} %')" 2>/dev/null || echo "n/a")
  unwrap_ratios+=("$ur")
  wrap_ratios+=("$wr")
  printf '| %d | %.0f | %s | %s | %s | %s | %s |\n' "$i" "$o" "$u" "$ur" "$n" "$w" "$wr"
done
echo
echo "Median ratios: unwrapkey $(printf '%s\n' "${unwrap_ratios[@]}" | sort -n | sed -n "$(((rounds + 1) / 2))p") of OpenSSL's private-key rate;" \
     "wrapkey $(printf '%s\n' "${wrap_ratios[@]}" | sort -n | sed -n "$(((rounds + 1) / 2))p") of nginx's request rate."
