#!/usr/bin/env bash
# Runs the micro-benchmarks beside their peers, on one pinned core, and prints the figures and
# ratios recorded in docs/benchmarks.md.   Usage: bench/run.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build/release}
core=1
[[ $(nproc) -gt 1 ]] || core=0
seconds=3

echo "## $(date -u +%Y-%m-%d) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo
peer=$(taskset -c $core openssl speed -evp aes-256-gcm -bytes 16384 -seconds $seconds 2>/dev/null |
       awk '/^AES-256-GCM/ {sub(/k$/, "", $2); print $2 * 1000}')
json=$(mktemp)
trap 'rm -f "$json"' EXIT
taskset -c $core "$build/bench/envelope_bench" --benchmark_min_time=$seconds \
    --benchmark_format=json >"$json" 2>/dev/null
python3 - "$json" "$peer" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
peer = float(sys.argv[2])
print(f"`openssl speed -evp aes-256-gcm -bytes 16384` (1 core): {peer / 1e9:.3f} GB/s\n")
print("| benchmark | object | throughput | vs openssl speed | ops/s |")
print("| --- | --- | --- | --- | --- |")
for b in data["benchmarks"]:
    name, size = b["name"].split("/")
    rate = b["bytes_per_second"]
    ops = 1e9 / b["real_time"] if b["time_unit"] == "ns" else float("nan")
    size = int(size)
    label = f"{size // 1024} KiB" if size < 1 << 20 else f"{size >> 20} MiB"
    print(f"| {name} | {label} | {rate / 1e9:.3f} GB/s | {100 * rate / peer:.0f} % | {ops:,.0f} |")
PY
