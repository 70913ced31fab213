#!/usr/bin/env bash
# Runs the README's test command as a new user would, on a fresh Debian machine that has only Node and npm: a
# throwaway Debian trixie root (chroot, never the machine itself) into which apt installs Debian's nodejs and npm
# (and git and ca-certificates, to clone; g++, make, python3 and Node's headers, with which npm builds
# better-sqlite3 from source where its prebuilt binary cannot be downloaded) and the repository's committed HEAD
# is cloned; then, inside it, `npm ci` and `npm run test:all` (what .ci/run runs: `npm run setup` installs the
# Debian packages the tests use through apt, then `npm test`). Prints the transcript with a timestamp per phase and exits with the test command's status.
# Usage: sudo scripts/fresh-machine.sh [--keep]      --keep leaves the root in place (its path is printed).
# Env: SEI_SKIP_ARM=1 is passed on (the ARM lanes and their packages left out).
# Needs root (debootstrap, mount, chroot) and debootstrap. The pristine root is cached by scripts/arm/rootfs.sh;
# each run works on a copy of it under .cache/fresh-machine/.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
case "${1-}" in
  "") ;;
  --keep) THROWAWAY_KEEP=1 ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "fresh-machine: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "fresh-machine: needs root (debootstrap, mount, chroot): run it with sudo" >&2; exit 2; }

say() { echo "fresh-machine: $(date -u +%H:%M:%S) $*"; }

base="$(SEI_ARM_SUITE=trixie "$repo/scripts/arm/rootfs.sh" amd64)"
root="$repo/.cache/fresh-machine/root.$$"
. "$repo/scripts/arm/roots.sh"
throwaway_root "$base" "$root"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs tmpfs "$root/dev/shm"
mount -t tmpfs tmpfs "$root/tmp"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# node-gyp takes Node's headers from the root's own Node (libnode-dev) instead of downloading them.
echo "nodedir=/usr" >"$root/root/.npmrc"
ROOT_ENV=(TERM=dumb DEBIAN_FRONTEND=noninteractive NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)
[ -z "${SEI_SKIP_ARM:-}" ] || ROOT_ENV+=("SEI_SKIP_ARM=$SEI_SKIP_ARM")
# debootstrap's resolver cannot take npm's hundreds of dependencies: apt installs them, as on a new machine.
say "apt-get install npm git ca-certificates g++ make python3 libnode-dev"
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends npm git ca-certificates g++ make python3 libnode-dev >/dev/null
# The machine's own certificate authorities (a proxy's, say) go in too, as a new machine on this network has them.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  in_root update-ca-certificates >/dev/null
fi
mkdir -p "$root/work"
git clone --quiet --no-local "$repo" "$root/work/sei-edge"

say "root: Debian $(cat "$root/etc/debian_version"), node $(in_root node --version), npm $(in_root npm --version)," \
  "commit $(git -C "$root/work/sei-edge" rev-parse --short HEAD)"
tools="mosquitto ffmpeg chromium strace debootstrap qemu-aarch64-static"
say "of the tools the tests use ($tools), the root has: $(in_root sh -c "for t in $tools; do command -v \$t; done" | wc -l)"
start=$(date +%s)
say "npm ci --no-audit --no-fund"
in_root -C /work/sei-edge npm ci --no-audit --no-fund
say "npm run test:all"
status=0
in_root -C /work/sei-edge npm run test:all || status=$?
say "npm run test:all exited $status after $(( ($(date +%s) - start) / 60 )) min (npm ci included)"
exit "$status"
