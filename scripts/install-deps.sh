#!/usr/bin/env bash
# Installs the Debian packages keyfoundry needs to build, run and test (BRIEF §6) when any is
# missing, and the end-to-end tests' npm packages (tests/e2e/js, pinned by its
# package-lock.json) when node_modules is missing or older than the lock. Idempotent and quiet
# when everything is present. Needs root (or sudo) only when it has a Debian package to install.
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
  # end-to-end tests with the official Azure SDKs (tests/e2e): Python's from Debian, run with
  # /usr/bin/python3; JavaScript's from npm (below)
  python3-azure python3-cryptography nodejs
  # the portal's browser tests (tests/e2e/portal): Chromium driven by playwright-core (npm,
  # below), trusting the deployment's CA through an NSS database made with certutil
  chromium libnss3-tools
)
# NodeSource's nodejs package ships npm itself and conflicts with Debian's npm package: ask for
# the latter only when there is no npm at all.
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The JavaScript SDKs and playwright-core for tests/e2e/js and tests/e2e/portal, exactly as
# package-lock.json pins them. npm ci writes
# node_modules/.package-lock.json, so a lock changed since (a pull, a checkout) is newer.
js_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/e2e/js"
if [[ ! -f "$js_dir/node_modules/.package-lock.json" ||
      "$js_dir/package-lock.json" -nt "$js_dir/node_modules/.package-lock.json" ]]; then
  echo "install-deps: npm ci in tests/e2e/js" >&2
  (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
