#!/usr/bin/env bash
# Runs fuzzers against freshly generated seeds, in a temporary corpus (the repository is not
# written to).
#   run.sh BUILD_DIR SECONDS [NAME...]     libFuzzer for SECONDS each (BUILD_DIR: the fuzz preset)
#   run.sh --replay BUILD_DIR NAME...      replay the seeds through the non-fuzz build's binary
# Exits 77 (CTest's "skipped") when the fuzz build has not been made: `make fuzz-build`.
set -euo pipefail
replay=0
if [[ "${1:-}" == "--replay" ]]; then replay=1; shift; fi
build=$1; shift
seconds=0
if [[ $replay -eq 0 ]]; then seconds=$1; shift; fi
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(envelope jwt multipart training_line)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for name in "${names[@]}"; do
  bin="$build/tests/fuzz"
  mkdir -p "$work/$name/seeds" "$work/$name/corpus"
  if [[ $replay -eq 1 ]]; then
    "$bin/${name}_fuzz_seeds" "$work/$name/seeds"
    "$bin/${name}_fuzzer_replay" "$work/$name/seeds"
    continue
  fi
  if [[ ! -x "$bin/${name}_fuzzer" ]]; then
    echo "no fuzzer at $bin/${name}_fuzzer: run 'make fuzz-build' first" >&2
    exit 77
  fi
  "$bin/${name}_fuzz_seeds" "$work/$name/seeds"
  "$bin/${name}_fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 "$work/$name/corpus" "$work/$name/seeds" 2>&1 | tail -n 12
done
