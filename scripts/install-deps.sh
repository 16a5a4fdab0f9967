#!/usr/bin/env bash
# Installs the Debian packages keyfoundry needs to build, run and test (BRIEF §6) when any is
# missing. Idempotent and quiet when everything is present. Needs root (or sudo) only when it
# has something to install.
set -euo pipefail

packages=(
  # build
  cmake ninja-build clang clang-14 libclang-rt-14-dev clang-format clang-tidy pkg-config
  # libraries
  libssl-dev libboost1.81-dev nlohmann-json3-dev libcli11-dev libsqlite3-dev libpq-dev
  libp11-kit-dev
  # runtime components
  openssl softhsm2 p11-kit postgresql
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev wrk nginx-light
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
