#!/usr/bin/env bash
# The whole test suite from a fresh Debian machine (run as root, or with sudo for apt):
# installs system packages and npm dependencies, rebuilds the firmware and checks the
# committed hex, type-checks, then runs every test. CI runs exactly this.
set -euo pipefail
[ "${CI:-}" = true ] && export NO_COLOR=1
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# nginx, haproxy, ser2net, openssl, nftables, iproute2: the middlebox tests; chromium: the status
# page in a headless browser (about 50 s to install); g++, make and python3 build the optional
# unix-dgram addon (sd_notify from the daemon itself); systemd for systemd-analyze, python3-seccomp
# to run the daemon under the unit's SystemCallFilter (test/integration/systemd-unit.test.ts).
APT_PACKAGES=(gcc-avr avr-libc binutils-avr arduino-core-avr avrdude socat mosquitto mosquitto-clients rabbitmq-server nginx haproxy ser2net openssl nftables iproute2 chromium g++ make python3 systemd python3-seccomp)

step() { printf '\n== %s\n' "$*"; }

step "system packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "all present"
fi

step "npm dependencies"
npm ci --no-audit --no-fund --loglevel=error

step "firmware: rebuild and compare with the committed firmware/avr/tether.hex"
bash firmware/avr/build.sh --check

step "type check"
npx tsc --noEmit

step "tests"
results="$(mktemp)"
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$results" || status=$?
# One plain summary line that any CI can read.
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped`);
' "$results" || true
rm -f "$results"
exit "$status"
