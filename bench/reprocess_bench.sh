#!/usr/bin/env bash
# Reprocessing beside its peers, in one run (BRIEF §7: rewrap >= 50,000 objects/s over 1 M
# small objects; re-encrypt >= 50 % of AES-256-GCM's single-core speed).
#   Usage: bench/reprocess_bench.sh [BUILD_DIR] [OBJECTS] [LARGE_MIB]
# Peers, measured in the same run: `openssl speed -evp aes-256-gcm -bytes 1048576` on one
# core (the CPU's limit for sealing), and the disk's own write rate for the same bytes
# (`dd ... conv=fsync`, the physical limit of writing re-encrypted content).
set -euo pipefail
build=${1:-build/release}
objects=${2:-1000000}
large_mib=${3:-1024}
work=$(mktemp -d "${TMPDIR:-/var/tmp}/kf-reprocess-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

gcm() {
  taskset -c 1 openssl speed -evp aes-256-gcm -bytes 1048576 -seconds 2 2>/dev/null |
    awk '/^AES-256-GCM/ {sub(/k$/, "", $2); printf "%.0f", $2 * 1000 / 1e6}'
}
disk() {
  local start end
  start=$(date +%s.%N)
  dd if=/dev/zero of="$work/dd.bin" bs=1M count="$large_mib" conv=fsync status=none
  end=$(date +%s.%N)
  rm -f "$work/dd.bin"
  awk -v mib="$large_mib" -v s="$start" -v e="$end" 'BEGIN {printf "%.0f", mib * 1048576 / 1e6 / (e - s)}'
}

gcm_before=$(gcm)
disk_before=$(disk)
result=$("$build/bench/reprocess_bench" --dir "$work/data" --objects "$objects" \
           --large-mib "$large_mib" 2>/dev/null)
gcm_after=$(gcm)
disk_after=$(disk)

echo "## $(date -u '+%Y-%m-%d %H:%M') UTC, $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo
echo "reprocess_bench: $result"
python3 - "$result" "$gcm_before" "$gcm_after" "$disk_before" "$disk_after" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
gcm = (float(sys.argv[2]) + float(sys.argv[3])) / 2
disk = (float(sys.argv[4]) + float(sys.argv[5])) / 2
print()
print("| measure | keyfoundry | peer (same run) | ratio | bar |")
print("| --- | --- | --- | --- | --- |")
print(f"| rewrap, {r['objects']:,} objects of {r['object_bytes']} B | {r['rewrap_objects_per_s']:,.0f} objects/s | — | — | ≥ 50,000 objects/s: {'met' if r['rewrap_objects_per_s'] >= 50000 else 'not met'} |")
print(f"| re-encrypt, {r['large_files']} × 64 MiB | {r['reencrypt_mb_per_s']:,.0f} MB/s | AES-256-GCM 1 core {gcm:,.0f} MB/s | {100 * r['reencrypt_mb_per_s'] / gcm:.0f} % | ≥ 50 %: {'met' if r['reencrypt_mb_per_s'] >= gcm / 2 else 'not met'} |")
print(f"| re-encrypt vs. the disk | {r['reencrypt_mb_per_s']:,.0f} MB/s | dd conv=fsync {disk:,.0f} MB/s | {100 * r['reencrypt_mb_per_s'] / disk:.0f} % | (physical limit) |")
print(f"| set-up: small uploads through FileStore | {r['small_upload_per_s']:,.0f} objects/s | | | |")
print(f"| peak RSS of the whole run | {r['peak_rss_mib']:.1f} MiB | | | |")
PY
