#!/usr/bin/env bash
# The AI data plane with a customer-managed key (CMK), over HTTPS, against its peers and physical
# limits, in one run (BRIEF §7):
#   1. a 1 GiB file uploaded to and downloaded from /openai/files (sealed under the account's
#      CMK-wrapped key), beside nginx serving the same plaintext file over HTTPS (TLS 1.3,
#      AES-GCM), all with curl to /dev/null; targets: download >= 80 % of nginx, upload >= 60 %;
#   2. 4 KiB objects: uploads, downloads and a 50/50 mix with wrk (ops/s, p50, p99, server CPU),
#      beside the fsync latency of the disk under the data directory and the number of fsyncs
#      the server makes per upload (an upload is acknowledged only once durable: a small file
#      sealed inside its SQLite record, records group-committed with synchronous=FULL); target
#      >= 3,000 ops/s on 2 cores with p99 <= 10 ms;
#   3. the server's peak RSS (VmHWM) over a 4 GiB upload then download, on a freshly started
#      server; target <= 64 MiB;
#   4. unwrapkey calls (the vault's KeyUnwrap audit events) during step 2, per 10,000 objects and
#      per key-cache TTL; target <= 1 per TTL.
# It prints a result table; docs/benchmarks.md records a run by hand.
#
# Usage: bench/cmk_bench.sh [BUILD_DIR] [ROUNDS] [SMALL_SECONDS] [CONNECTIONS...]
#   defaults: build/release, 3 rounds of the 1 GiB transfers (medians), 10 s per wrk run,
#   connections 4 8 16 64 (12 runs: longer than two key-cache TTLs). KEYFOUNDRY_THREADS (default 16)
#   sets the server's threads; KEYFOUNDRY_KEY_CACHE_TTL_SECONDS (default 60) its key-cache TTL.
# curl and wrk run on the same machine as the server and nginx, so every figure pays for them
# alike; the CPU columns show the server's share and everyone else's (a neighbour's load shows
# there). Temporary files (1 GiB, 4 GiB sparse, the server's data) live in one mktemp directory
# (TMPDIR) and are removed on exit; the run needs about 10 GB free there and takes about 5
# minutes.
set -euo pipefail
build=${1:-build/release}
rounds=${2:-3}
small_seconds=${3:-10}
shift $(($# < 3 ? $# : 3))
connections=("$@")
[[ ${#connections[@]} -gt 0 ]] || connections=(4 8 16 64)
cores=$(nproc)
ttl=${KEYFOUNDRY_KEY_CACHE_TTL_SECONDS:-60}  # the server reads it too

work=$(mktemp -d)
cleanup() {
  [[ -n "${sampler:-}" ]] && kill "$sampler" 2>/dev/null
  [[ -n "${server_pid:-}" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [[ -f "$work/nginx.pid" ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "[$(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)] $*" >&2; }
load() { cut -d' ' -f1 /proc/loadavg; }
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
pct() { python3 -c "import sys; print(f'{100*float(sys.argv[1])/float(sys.argv[2]):.0f} %')" "$1" "$2"; }
jget() { python3 -c "import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1:]: v=v[int(k) if isinstance(v,list) else k]
print(v)" "$@"; }

# --- keyfoundryd
export KEYFOUNDRY_ADMIN_PASSWORD=bench-password-not-secret
export KEYFOUNDRY_THREADS=${KEYFOUNDRY_THREADS:-16}
data="$work/data"
# A copy of the binary: the step-3 restart runs the same one even if the build is redone meanwhile.
cp "$build/src/server/keyfoundryd" "$work/keyfoundryd"
binary_date=$(date -r "$build/src/server/keyfoundryd" '+%Y-%m-%d %H:%M')
head_commit=$(git -C "$(dirname "$0")" rev-parse --short HEAD 2>/dev/null || echo unknown)
start_server() {
  rm -f "$data/port"
  "$work/keyfoundryd" serve --data-dir "$data" --listen 127.0.0.1:0 \
      2>>"$work/server.log" >/dev/null &
  server_pid=$!
  for _ in $(seq 1 400); do [[ -s "$data/port" ]] && break; sleep 0.05; done
  port=$(cat "$data/port")
  log "keyfoundryd pid $server_pid on port $port"
}
stop_server() {
  kill "$server_pid" && wait "$server_pid" || true
  server_pid=
}
start_server
ca="$data/tls/ca.pem"
tenant=$(cat "$data/tenant-id")
sub=$(cat "$data/subscription-id")
base="https://127.0.0.1:$port"
token() {
  curl -sS -f --cacert "$ca" "$base/$tenant/oauth2/v2.0/token" \
      -d "grant_type=password&username=admin&password=$KEYFOUNDRY_ADMIN_PASSWORD&scope=https://$1.localhost/.default" |
    jget access_token
}
mgmt=$(token management)
vault_token=$(token vault)
oid=$(python3 -c 'import base64,json,sys; p=sys.argv[1].split(".")[1]; print(json.loads(base64.urlsafe_b64decode(p+"=="))["oid"])' "$mgmt")
arm() {  # arm METHOD PATH [BODY] -> the response body; fails on an HTTP error
  curl -sS -f --cacert "$ca" -X "$1" -H "Authorization: Bearer $mgmt" \
      -H "Content-Type: application/json" "$base$2?api-version=2024-10-01" ${3:+-d "$3"}
}
rg="/subscriptions/$sub/resourceGroups/bench"
arm PUT "$rg" '{"location":"local"}' >/dev/null
arm PUT "$rg/providers/Microsoft.KeyVault/vaults/benchvault" \
    "{\"location\":\"local\",\"properties\":{\"tenantId\":\"$tenant\",\"sku\":{\"family\":\"A\",\"name\":\"standard\"},\"enablePurgeProtection\":true,\"accessPolicies\":[{\"tenantId\":\"$tenant\",\"objectId\":\"$oid\",\"permissions\":{\"keys\":[\"all\"]}}]}}" >/dev/null
vault_url="https://benchvault.vault.localhost:$port"
curl -sS -f --cacert "$ca" --resolve "benchvault.vault.localhost:$port:127.0.0.1" -X POST \
    -H "Authorization: Bearer $vault_token" -H "Content-Type: application/json" \
    "$vault_url/keys/cmk/create?api-version=7.4" -d '{"kty":"RSA","key_size":2048}' >/dev/null
acct="$rg/providers/Microsoft.CognitiveServices/accounts/benchacct"
principal=$(arm PUT "$acct" '{"kind":"AIServices","sku":{"name":"S0"},"location":"local","identity":{"type":"SystemAssigned"}}' |
            jget identity principalId)
arm PUT "$rg/providers/Microsoft.KeyVault/vaults/benchvault/accessPolicies/add" \
    "{\"properties\":{\"accessPolicies\":[{\"tenantId\":\"$tenant\",\"objectId\":\"$principal\",\"permissions\":{\"keys\":[\"get\",\"wrapKey\",\"unwrapKey\"]}}]}}" >/dev/null
arm PATCH "$acct" "{\"properties\":{\"encryption\":{\"keySource\":\"Microsoft.KeyVault\",\"keyVaultProperties\":{\"keyVaultUri\":\"$vault_url/\",\"keyName\":\"cmk\"}}}}" >/dev/null
api_key=$(arm POST "$acct/listKeys" | jget key1)
host="benchacct.openai.localhost"
ours() {  # ours CURL_ARGS... against the account's data plane (PATH given as the last argument)
  local args=("$@") n=$(($# - 1))
  curl -sS --cacert "$ca" --resolve "$host:$port:127.0.0.1" -H "api-key: $api_key" \
      "${args[@]:0:n}" "https://$host:$port${args[n]}"
}
wait_ready() {
  for _ in $(seq 1 200); do
    # 404 (no such file) once serving, 503 while starting. Not a list: a list reads every record.
    [[ $(ours -o /dev/null -w '%{http_code}' /openai/files/file-none 2>/dev/null) == 404 ]] && return
    sleep 0.05
  done
  echo "keyfoundryd did not become ready" >&2
  exit 1
}
wait_ready
log "set up: vault, RSA-2048 key, account with CMK"

# --- nginx: the same plaintext over HTTPS, TLS 1.3 only, the server's own certificate
mkdir -p "$work/www" "$work/nginx"
chmod 755 "$work" "$work/www"  # nginx's workers run as an unprivileged user
cp "$data/tls/server.pem" "$work/nginx/cert.pem"
cp "$data/tls/server-key.pem" "$work/nginx/key.pem"
nginx_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes $cores;
pid $work/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$nginx_port ssl;
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384;  # keyfoundryd's
    ssl_prefer_server_ciphers on;
    ssl_certificate $work/nginx/cert.pem;
    ssl_certificate_key $work/nginx/key.pem;
    root $work/www;
  }
}
NGINX
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" 2>>"$work/nginx/error.log"
peer() {  # peer CURL_ARGS... PATH: nginx under the same host name (so the certificate verifies)
  local args=("$@") n=$(($# - 1))
  curl -sS --cacert "$ca" --resolve "$host:$nginx_port:127.0.0.1" \
      "${args[@]:0:n}" "https://$host:$nginx_port${args[n]}"
}
suite() {  # suite ours|peer PATH: the TLS version and suite negotiated
  "$1" -v -o /dev/null "$2" 2>&1 | sed -n 's/.*SSL connection using \(.*\)$/\1/p'
}
echo x >"$work/www/hello.txt"
chmod 644 "$work/www/hello.txt"
suite_ours=$(suite ours '/openai/files?limit=1')
suite_peer=$(suite peer /hello.txt)

# CPU accounting over a measurement, in ticks: the server; the bench's own processes (the
# server, nginx, and this script's reaped children: curl, wrk, dd); the machine's user + system
# time. "Others" is the machine's minus the bench's: neighbours and kernel threads (such as
# the file system's journal), where a shared machine's other load shows.
cpu_mark() {
  local pids own
  pids="$server_pid $(cat "$work/nginx.pid") $(pgrep -P "$(cat "$work/nginx.pid")" | tr '\n' ' ')"
  own=$(for p in $pids; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done |
        awk -v self="$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)" '{t += $1} END {print t + self}')
  echo "$(awk '{print $14 + $15}' "/proc/$server_pid/stat") $own $(awk '/^cpu / {print $2 + $3 + $4, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat)"
}
cpu_since() {  # cpu_since MARK SECONDS -> "server_%_of_a_core others_%_of_the_machine"
  local mark
  mark=$(cpu_mark)
  python3 - "$1" "$mark" "$2" "$(getconf CLK_TCK)" <<'PY'
import sys
a, b = [list(map(float, m.split())) for m in sys.argv[1:3]]
seconds, hz = float(sys.argv[3]), float(sys.argv[4])
d = [y - x for x, y in zip(a, b)]
print(f"{100 * d[0] / hz / seconds:.0f} {100 * max(d[2] - d[1], 0) / max(d[3], 1):.0f}")
PY
}

# --- 1. a 1 GiB file
log "generating 1 GiB of random data"
big="$work/www/big.bin"
head -c 1G /dev/urandom >"$big"
chmod 644 "$big"
big_size=$(stat -c %s "$big")
big_sha=$(sha256sum "$big" | cut -d' ' -f1)
# Each -w line: seconds bytes http_code. Rates in MB/s (10^6 bytes).
mbps() { python3 -c "import sys; print(f'{float(sys.argv[2])/float(sys.argv[1])/1e6:.0f}')" "$1" "$2"; }
declare -a nginx_r disk_r up_r down_r big_loads big_others
file_id=
for ((i = 1; i <= rounds; i++)); do
  sync
  big_loads+=("$(load)")
  mark=$(cpu_mark); round_start=$(date +%s%N)
  read -r t b c < <(peer -o /dev/null -w '%{time_total} %{size_download} %{http_code}\n' /big.bin)
  [[ $c == 200 && $b == "$big_size" ]] || { echo "nginx download failed: $c $b" >&2; exit 1; }
  nginx_r+=("$(mbps "$t" "$b")")
  # The durable-write limit an upload cannot beat: the same bytes copied and fsync'd by dd.
  t=$( { TIMEFORMAT=%R; time dd if="$big" of="$work/dd-copy" bs=1M conv=fsync status=none; } 2>&1 )
  rm -f "$work/dd-copy"
  disk_r+=("$(mbps "$t" "$big_size")")
  read -r t b c < <(ours -o "$work/upload.json" -w '%{time_total} %{size_upload} %{http_code}\n' \
                        -F purpose=fine-tune -F "file=@$big" /openai/files)
  [[ $c == 200 ]] || { echo "upload failed: $c $(cat "$work/upload.json")" >&2; exit 1; }
  up_r+=("$(mbps "$t" "$b")")
  [[ -n $file_id ]] && ours -o /dev/null -X DELETE "/openai/files/$file_id"
  file_id=$(jget id <"$work/upload.json")
  sync  # the upload's page cache written back before the download is timed
  read -r t b c < <(ours -o /dev/null -w '%{time_total} %{size_download} %{http_code}\n' \
                        "/openai/files/$file_id/content")
  [[ $c == 200 && $b == "$big_size" ]] || { echo "download failed: $c $b" >&2; exit 1; }
  down_r+=("$(mbps "$t" "$b")")
  read -r _ other < <(cpu_since "$mark" "$(python3 -c "print(($(date +%s%N) - $round_start) / 1e9)")")
  big_others+=("$other")
  log "1 GiB round $i: nginx ${nginx_r[-1]} MB/s, disk ${disk_r[-1]} MB/s, upload ${up_r[-1]} MB/s, download ${down_r[-1]} MB/s, others' CPU ${big_others[-1]} %"
done
# Correctness, untimed: the bytes that come back are the bytes that went in.
got_sha=$(ours "/openai/files/$file_id/content" | sha256sum | cut -d' ' -f1)
[[ $got_sha == "$big_sha" ]] || { echo "1 GiB download differs: $got_sha != $big_sha" >&2; exit 1; }
ours -o /dev/null -X DELETE "/openai/files/$file_id"
rm -f "$big"

# --- 2. 4 KiB objects
# The disk's fsync latency where the server keeps its data: 4 KiB written then fsync'd, 500
# times ("median p99 mean" in ms), and dd's per-write time with oflag=dsync. Measured before
# and after the 4 KiB runs: on a shared virtual disk it moves with the neighbours' writes.
fsync_probe() {
  python3 - "$work" <<'PY'
import os, statistics, sys, time
path = os.path.join(sys.argv[1], "fsync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
block, times = os.urandom(4096), []
for _ in range(500):
    os.write(fd, block)
    t = time.perf_counter(); os.fsync(fd); times.append(time.perf_counter() - t)
os.close(fd); os.unlink(path)
times.sort()
print(f"{statistics.median(times)*1e3:.2f} {times[int(len(times)*0.99)]*1e3:.2f} {statistics.mean(times)*1e3:.2f}")
PY
}
dd_probe() {
  (cd "$work" && dd if=/dev/zero of=dd-probe bs=4k count=500 oflag=dsync 2>&1 | tail -1; rm -f dd-probe) |
    awk '{for (i = 1; i <= NF; i++) if ($i == "s,") printf "%.2f\n", $(i - 1) * 1000 / 500}'
}
read -r fsync_med fsync_p99 fsync_mean < <(fsync_probe)
dd_ms=$(dd_probe)
log "fsync of 4 KiB: median $fsync_med ms, p99 $fsync_p99 ms; dd oflag=dsync: $dd_ms ms per write"

boundary=kfbench7d1c0e5a
cat >"$work/common.lua" <<LUA
local boundary = "$boundary"
local bytes = {}
math.randomseed(os.time())
for i = 1, 4096 do bytes[i] = string.char(math.random(0, 255)) end
upload_body = "--" .. boundary .. "\r\n" ..
  "Content-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n" ..
  "--" .. boundary .. "\r\n" ..
  "Content-Disposition: form-data; name=\"file\"; filename=\"small.bin\"\r\n" ..
  "Content-Type: application/octet-stream\r\n\r\n" .. table.concat(bytes) .. "\r\n" ..
  "--" .. boundary .. "--\r\n"
upload_headers = {["Host"] = "$host", ["api-key"] = "$api_key",
                  ["Content-Type"] = "multipart/form-data; boundary=" .. boundary}
download_headers = {["Host"] = "$host", ["api-key"] = "$api_key"}
ids = {}
local f = io.open("$work/ids.txt")
if f then for line in f:lines() do ids[#ids + 1] = line end f:close() end
local next_id = math.random(1, math.max(#ids, 1))
function upload() return wrk.format("POST", "/openai/files", upload_headers, upload_body) end
function download()
  next_id = next_id % #ids + 1
  return wrk.format("GET", "/openai/files/" .. ids[next_id] .. "/content", download_headers)
end
LUA
printf 'dofile("%s")\nrequest = upload\n' "$work/common.lua" >"$work/upload.lua"
printf 'dofile("%s")\nrequest = download\n' "$work/common.lua" >"$work/download.lua"
printf 'dofile("%s")\nlocal n = 0\nrequest = function() n = n + 1; if n %% 2 == 0 then return upload() end return download() end\n' \
    "$work/common.lua" >"$work/mixed.lua"
: >"$work/ids.txt"

# wrk output -> "requests ops/s p50_ms p99_ms errors"
parse_wrk() {
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
                     if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v }
    / 50%/ { p50 = ms($2) }
    / 99%/ { p99 = ms($2) }
    /requests in/ { n = $1 }
    /^Requests\/sec/ { r = $2 }
    /Non-2xx/ { err += $NF }
    /Socket errors/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    END { printf "%d %.0f %.2f %.2f %d\n", n, r, p50, p99, err }'
}
# The server's fsync and fdatasync calls during a run, counted with perf's syscall tracepoints
# when perf can (root, tracefs): how many durable commits the uploads cost.
sync_events=syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync
can_count_syncs=0
perf stat -x, -e "$sync_events" true >/dev/null 2>&1 && can_count_syncs=1
# run_wrk CONNECTIONS LUA -> parse_wrk's line, then the server's CPU (% of one core), the
# others' (% of the machine) and the server's syncs ("-" when not counted) over the run.
run_wrk() {
  local mark line syncs=- counter=
  if ((can_count_syncs)); then  # ends by itself should the server go (perf stat -p)
    perf stat -x, -e "$sync_events" -p "$server_pid" -o "$work/syncs" 2>/dev/null & counter=$!
  fi
  mark=$(cpu_mark)
  line=$(wrk -t2 -c"$1" -d"${small_seconds}s" --timeout 10s --latency -s "$2" "https://127.0.0.1:$port/" 2>&1 |
           tee -a "$work/wrk.log" | parse_wrk)
  line="$line $(cpu_since "$mark" "$small_seconds")"
  if [[ -n $counter ]]; then
    kill -INT "$counter"; wait "$counter" 2>/dev/null || true
    syncs=$(awk -F, '/sys_enter_f/ {n += $1} END {print n + 0}' "$work/syncs")
  fi
  echo "$line $syncs"
}
audit_count() {  # KeyUnwrap events since $1 (unix ms): "COUNT BURSTS LARGEST +T1,+T2,..." (s)
  python3 - "$base" "$ca" "$mgmt" "$sub" "$1" <<'PY'
import datetime, json, ssl, sys, urllib.parse, urllib.request
base, ca, token, sub, since = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
url = (f"{base}/subscriptions/{sub}/providers/Microsoft.KeyFoundry/auditEvents"
       f"?api-version=2024-01-01&operation=KeyUnwrap&from={since}&top=1000&order=asc")
times = []
while url:
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    page = json.load(urllib.request.urlopen(req, context=ctx))
    for e in page["value"]:
        t = datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp()
        times.append(t - int(since) / 1000)
    url = page.get("nextLink")
    if url:  # keep our address, take the continuation
        u = urllib.parse.urlsplit(url)
        url = f"{base}{u.path}?{u.query}"
times.sort()
# A burst: unwraps less than 1 s apart, the refreshes of one cache expiry.
bursts = []
for t in times:
    if bursts and t - bursts[-1][-1] < 1: bursts[-1].append(t)
    else: bursts.append([t])
print(len(times), len(bursts), max((len(b) for b in bursts), default=0),
      ",".join(f"+{t:.1f}" for t in times) or "-")
PY
}

small_start_ms=$(($(date +%s%N) / 1000000))
small_start=$(date +%s)
small_objects=0
small_rows=()
small() {  # small CONNECTIONS KIND: one wrk run, its row kept
  local n r p50 p99 e cpu others syncs per l
  l=$(load)
  read -r n r p50 p99 e cpu others syncs < <(run_wrk "$1" "$work/$2.lua")
  per=-  # syncs per upload (the mixed runs upload every other request)
  if [[ $syncs != - && $2 != download ]]; then
    local uploads=$n
    [[ $2 == mixed ]] && uploads=$((n / 2))
    per=$(python3 -c "print(f'{$syncs / max($uploads, 1):.2f}')")
  fi
  small_objects=$((small_objects + n))
  small_rows+=("$1 $2 $l $r $p50 $p99 $cpu $others $syncs $per $e")
  log "4 KiB -c$1 $2: $r/s, p50 $p50 ms, p99 $p99 ms, server CPU $cpu %, others' CPU $others %, syncs $syncs ($per per upload), errors $e"
}
for c in "${connections[@]}"; do
  small "$c" upload
  # The ids uploaded so far, for the downloads.
  ours '/openai/files?purpose=assistants&limit=10000' |
    python3 -c 'import json,sys; [print(f["id"]) for f in json.load(sys.stdin)["data"]]' >"$work/ids.txt"
  small "$c" download
  small "$c" mixed
done
small_elapsed=$(($(date +%s) - small_start))
sleep 1  # key uses are audited by group commit: let the last batch land
read -r unwraps bursts largest unwrap_times < <(audit_count "$small_start_ms")
read -r fsync_med2 fsync_p99_2 fsync_mean2 < <(fsync_probe)
dd_ms2=$(dd_probe)
log "fsync of 4 KiB after the runs: median $fsync_med2 ms, p99 $fsync_p99_2 ms; dd oflag=dsync: $dd_ms2 ms per write"

# --- 3. peak RSS over a 4 GiB upload then download, on a freshly started server
stop_server
start_server
base="https://127.0.0.1:$port"
wait_ready
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$server_pid/status"; }  # KiB
rss() { awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status"; }
huge="$work/huge.bin"
truncate -s 4G "$huge"  # sparse: the client reads zeros at memory speed; the server seals them
huge_size=$(stat -c %s "$huge")
rss_sampler() {  # the largest VmRSS (KiB) seen every 50 ms, kept in $1, until killed
  local max=0 v
  echo 0 >"$1"
  while [[ -d /proc/$server_pid ]]; do  # ends by itself should the server go
    v=$(awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0)
    if ((v > max)); then max=$v; echo "$max" >"$1"; fi
    sleep 0.05
  done
}
stop_sampler() { kill "$sampler"; wait "$sampler" 2>/dev/null || true; sampler=; }
hwm_start=$(hwm)
rss_start=$(rss)
huge_load=$(load)
mark=$(cpu_mark); huge_start=$(date +%s%N)
log "4 GiB upload (server VmHWM $hwm_start KiB)"
rss_sampler "$work/rss-max" & sampler=$!
read -r t_up b c < <(ours -o "$work/upload.json" -w '%{time_total} %{size_upload} %{http_code}\n' \
                         -F purpose=fine-tune -F "file=@$huge" /openai/files)
[[ $c == 200 ]] || { echo "4 GiB upload failed: $c $(cat "$work/upload.json")" >&2; exit 1; }
huge_up=$(mbps "$t_up" "$b")
hwm_up=$(hwm)
stop_sampler
rss_up=$(cat "$work/rss-max")
huge_id=$(jget id <"$work/upload.json")
log "4 GiB download (server VmHWM $hwm_up KiB)"
zero_sha=$(sha256sum "$huge" | cut -d' ' -f1)
rss_sampler "$work/rss-max" & sampler=$!
start_ns=$(date +%s%N)
got_sha=$(ours "/openai/files/$huge_id/content" | sha256sum | cut -d' ' -f1)
huge_down=$(python3 -c "import sys; print(f'{$huge_size/(($(date +%s%N)-$start_ns)/1e9)/1e6:.0f}')")
[[ $got_sha == "$zero_sha" ]] || { echo "4 GiB download differs: $got_sha != $zero_sha" >&2; exit 1; }
hwm_down=$(hwm)
stop_sampler
rss_down=$(cat "$work/rss-max")
read -r _ huge_others < <(cpu_since "$mark" "$(python3 -c "print(($(date +%s%N) - $huge_start) / 1e9)")")
rss_end=$(rss)
ours -o /dev/null -X DELETE "/openai/files/$huge_id"
rm -f "$huge"

# --- the table
mib() { python3 -c "import sys; print(f'{int(sys.argv[1])/1024:.1f}')" "$1"; }
n_med=$(median "${nginx_r[@]}")
u_med=$(median "${up_r[@]}")
d_med=$(median "${down_r[@]}")
k_med=$(median "${disk_r[@]}")
echo "## $(date -u +%Y-%m-%d), $cores cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo
echo "Command: \`bench/cmk_bench.sh $build $rounds $small_seconds ${connections[*]}\`" \
     "(keyfoundryd built $binary_date, tree at $head_commit; KEYFOUNDRY_THREADS=$KEYFOUNDRY_THREADS; TLS: keyfoundryd $suite_ours, nginx $suite_peer)"
echo
echo "### 1 GiB file, curl to /dev/null, MB/s (10^6 bytes/s)"
echo
echo "| round | load (1 min) | others' CPU | nginx download | CMK download | ratio | CMK upload | ratio to nginx download | dd write + fsync | upload / dd |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for ((i = 0; i < rounds; i++)); do
  echo "| $((i + 1)) | ${big_loads[i]} | ${big_others[i]} % | ${nginx_r[i]} | ${down_r[i]} | $(pct "${down_r[i]}" "${nginx_r[i]}") | ${up_r[i]} | $(pct "${up_r[i]}" "${nginx_r[i]}") | ${disk_r[i]} | $(pct "${up_r[i]}" "${disk_r[i]}") |"
done
ratio_median() {  # ratio_median OURS_ARRAY PEER_ARRAY: the median of the rounds' ratios
  local -n ours_=$1 peer_=$2
  local r=() j
  for ((j = 0; j < rounds; j++)); do r+=("$(pct "${ours_[j]}" "${peer_[j]}" | cut -d' ' -f1)"); done
  echo "$(median "${r[@]}") %"
}
echo "| median | | | $n_med | $d_med | $(ratio_median down_r nginx_r) | $u_med | $(ratio_median up_r nginx_r) | $k_med | $(ratio_median up_r disk_r) |"
echo
echo "The median row: medians of the rates, and of the rounds' ratios (each round's peer ran beside it)."
echo "Targets: download >= 80 % of nginx, upload >= 60 %. \"dd write + fsync\": \`dd bs=1M conv=fsync\` of the"
echo "same file into the data directory's file system, the durable-write limit of an upload (which"
echo "is acknowledged only once its bytes are fsync'd). The downloaded bytes' SHA-256 matched the upload's."
echo
echo "### 4 KiB objects with CMK, wrk -t2, ${small_seconds} s per run"
echo
echo "upload: POST /openai/files (multipart, purpose and a 4 KiB file); download: GET .../content of"
echo "the files uploaded so far; mixed: the two alternating on every connection."
echo
echo "| connections | workload | load (1 min) | ops/s | p50 | p99 | server CPU (% of a core) | others' CPU (% of the machine) | server fsyncs | per upload | errors |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for row in "${small_rows[@]}"; do
  read -r c kind l r p50 p99 cpu others syncs per e <<<"$row"
  echo "| $c | $kind | $l | $r | $p50 ms | $p99 ms | $cpu % | $others % | $syncs | $per | $e |"
done
echo
echo "Target: >= 3,000 ops/s, p99 <= 10 ms. The disk under the data directory, before / after the runs:"
echo "fsync of a 4 KiB write median $fsync_med / $fsync_med2 ms, p99 $fsync_p99 / $fsync_p99_2 ms" \
     "(mean $fsync_mean / $fsync_mean2 ms: at most $(python3 -c "print(f'{1000/$fsync_mean:.0f} / {1000/$fsync_mean2:.0f}')") serial fsyncs/s);" \
     "\`dd bs=4k count=500 oflag=dsync\`: $dd_ms / $dd_ms2 ms per write." \
     "Server fsyncs: fsync + fdatasync calls during the run (perf tracepoints)."
echo
echo "### unwrapkey calls during the 4 KiB runs"
echo
per10k=$(python3 -c "print(f'{$unwraps*10000/max($small_objects,1):.2f}')")
ttls=$(python3 -c "print(f'{$small_elapsed/$ttl:.1f}')")
echo "$unwraps KeyUnwrap audit events for $small_objects objects (uploads and downloads) in ${small_elapsed} s" \
     "($ttls key-cache TTLs of ${ttl} s): $per10k per 10,000 objects. They came in $bursts burst(s)" \
     "(unwraps less than 1 s apart: one cache expiry), the largest of $largest; seconds after the" \
     "first 4 KiB run began: $unwrap_times. Target: <= 1 per TTL, i.e. one unwrap per expiry."
echo
echo "### 4 GiB upload then download, fresh server (load $huge_load, others' CPU $huge_others %)"
echo
echo "| | VmHWM (peak so far) | largest VmRSS sampled every 50 ms | throughput |"
echo "| --- | --- | --- | --- |"
echo "| after start | $(mib "$hwm_start") MiB | VmRSS $(mib "$rss_start") MiB | |"
echo "| 4 GiB upload | $(mib "$hwm_up") MiB | $(mib "$rss_up") MiB | $huge_up MB/s (sparse source) |"
echo "| 4 GiB download | $(mib "$hwm_down") MiB | $(mib "$rss_down") MiB | $huge_down MB/s (piped to sha256sum, which matched) |"
echo
echo "Target: a 4 GiB upload or download peaks <= 64 MiB. VmRSS at the end: $(mib "$rss_end") MiB."
log "done"
