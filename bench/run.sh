#!/usr/bin/env bash
# Runs the micro-benchmarks beside their peer, on one pinned core, and prints the figures and
# ratios recorded in docs/benchmarks.md.   Usage: bench/run.sh [BUILD_DIR] [ROUNDS]
#
# A shared virtual machine's speed drifts by tens of percent within a minute, so the peer
# (`openssl speed -evp aes-256-gcm -bytes 16384`) and our benchmarks are interleaved in short
# rounds: peer, ours, peer, ours, ..., peer. Each round's ratio divides our figure by the mean
# of the peer runs on either side of it; the table gives the median over rounds.
set -euo pipefail
build=${1:-build/release}
rounds=${2:-7}
core=1
[[ $(nproc) -gt 1 ]] || core=0

peer() {
  taskset -c $core openssl speed -evp aes-256-gcm -bytes 16384 -seconds 1 2>/dev/null |
    awk '/^AES-256-GCM/ {sub(/k$/, "", $2); print $2 * 1000}'
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
peer >"$work/peer-0"
for ((i = 1; i <= rounds; i++)); do
  taskset -c $core "$build/bench/envelope_bench" --benchmark_min_time=0.3 \
      --benchmark_format=json >"$work/ours-$i" 2>/dev/null
  peer >"$work/peer-$i"
done

echo "## $(date -u +%Y-%m-%d), $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
peers = [float(open(f"{work}/peer-{i}").read()) for i in range(rounds + 1)]
rates, ratios = {}, {}
for i in range(1, rounds + 1):
    peer = (peers[i - 1] + peers[i]) / 2
    for b in json.load(open(f"{work}/ours-{i}"))["benchmarks"]:
        rates.setdefault(b["name"], []).append(b["bytes_per_second"])
        ratios.setdefault(b["name"], []).append(b["bytes_per_second"] / peer)
print(f"Peer, `openssl speed -evp aes-256-gcm -bytes 16384` on the same core, {rounds + 1} runs: "
      f"median {statistics.median(peers) / 1e9:.3f} GB/s "
      f"(min {min(peers) / 1e9:.3f}, max {max(peers) / 1e9:.3f})\n")
print("| benchmark | object | median throughput | median ratio to the peer | objects/s |")
print("| --- | --- | --- | --- | --- |")
for name, values in rates.items():
    base, size = name.split("/")
    size = int(size)
    rate = statistics.median(values)
    label = f"{size // 1024} KiB" if size < 1 << 20 else f"{size >> 20} MiB"
    print(f"| {base} | {label} | {rate / 1e9:.3f} GB/s | "
          f"{100 * statistics.median(ratios[name]):.0f} % | {rate / size:,.0f} |")
PY
