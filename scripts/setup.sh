#!/usr/bin/env bash
# Installs the Debian packages the test suites use (`npm run setup`; `npm run test:all` runs it before `npm test`).
# Idempotent: when every package is there it only asks dpkg and exits 0 (well under a second), without root and
# without touching apt. Missing packages are installed with apt-get, as root or through password-less sudo.
#
# Usage: scripts/setup.sh
#   SEI_SKIP_ARM=1 leaves out the packages only the ARM lanes use (test/arm.test.ts skips those lanes then too).
# Exit status: 0 everything is installed; 1 apt-get failed; 2 bad usage;
#   3 packages are missing and this user can neither be root nor use sudo without a password (the message says
#     what to install); 4 not a Debian-like system (no dpkg-query or apt-get; the message lists the packages).
set -euo pipefail

# One line per package: name, whether only the ARM lanes need it, and why the tests need it (printed when missing).
PACKAGES=(
  "dataset-fashion-mnist|all|real Fashion-MNIST for the trainer, engine and agent tests"
  "mosquitto|all|a real MQTT 5 broker, started by the tests on free ports"
  "mosquitto-clients|all|mosquitto_sub and mosquitto_pub, an MQTT client independent of the agent's"
  "ffmpeg|all|test video streams for the frame sources"
  "strace|all|the power-loss test traces the fsync and rename order of every commit point"
  "chromium|all|headless browser for the fleet console's end-to-end tests"
  "python3-torch|all|PyTorch for Debian's python3: the independent reference the trainer's gradients are checked against (test/parity.test.ts)"
  "qemu-user-static|arm|runs bookworm's Node 18 for arm64 and armhf under emulation"
  "debootstrap|arm|builds the emulated Debian roots, the throwaway root of the install test and the bookworm build root that compiles better-sqlite3 for the boxes"
)

say() { echo "setup: $*"; }
fail() { echo "setup: $*" >&2; }

case "${1-}" in
  "") ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) fail "unknown argument '$1' (see --help)"; exit 2 ;;
esac

skip_arm=0; [ "${SEI_SKIP_ARM-}" = 1 ] && skip_arm=1
wanted=()
declare -A why=()
for line in "${PACKAGES[@]}"; do
  IFS='|' read -r name group reason <<<"$line"
  [ "$group" = arm ] && [ "$skip_arm" = 1 ] && continue
  wanted+=("$name")
  why[$name]="$reason"
done

# Prints each wanted package that dpkg does not list as installed, one a line.
missing_packages() {
  local installed
  installed="$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${wanted[@]}" 2>/dev/null | awk '$2 ~ /^.i/ { print $1 }' || true)"
  for name in "${wanted[@]}"; do
    grep -qxF "$name" <<<"$installed" || echo "$name"
  done
}

explain() {
  for name in "$@"; do fail "  $name: ${why[$name]}"; done
}

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  fail "no dpkg-query or apt-get: this is not a Debian-like system. The tests need these Debian packages"
  fail "(or their equivalents; Fashion-MNIST is read from /usr/share/datasets/fashion-mnist):"
  explain "${wanted[@]}"
  exit 4
fi

mapfile -t missing < <(missing_packages)
if [ "${#missing[@]}" -eq 0 ]; then
  note=""; [ "$skip_arm" = 1 ] && note=" (SEI_SKIP_ARM=1: the ARM lanes' packages left out)"
  say "all ${#wanted[@]} Debian packages the tests use are installed$note"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  fail "${#missing[@]} Debian packages the tests use are missing:"
  explain "${missing[@]}"
  fail "installing them needs root or password-less sudo; this user ($(id -un 2>/dev/null || id -u)) is not root and cannot use sudo"
  fail "without a password. As root, run:"
  fail "  apt-get update && apt-get install -y ${missing[*]}"
  fail "then run this again."
  [ "$skip_arm" = 1 ] || fail "(SEI_SKIP_ARM=1 leaves out the ARM lanes and their packages.)"
  exit 3
fi

say "installing ${#missing[@]} Debian packages: ${missing[*]} (apt-get; a few minutes on a fresh machine)"
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
if ! "${apt[@]}" update -qq || ! "${apt[@]}" install -y -qq "${missing[@]}" >/dev/null; then
  fail "apt-get failed (its messages are above)"
  exit 1
fi

mapfile -t still < <(missing_packages)
if [ "${#still[@]}" -ne 0 ]; then
  fail "apt-get finished but these are still not installed: ${still[*]}"
  exit 1
fi
say "installed; all ${#wanted[@]} Debian packages the tests use are there"
