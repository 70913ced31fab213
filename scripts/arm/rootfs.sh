#!/usr/bin/env bash
# Builds (once) a minimal Debian root holding Node from Debian's `nodejs`: for arm64 and armhf, to run the test
# suites under qemu user-mode emulation (`qemu-<cpu>-static -L ROOT ROOT/usr/bin/node`); for amd64 (the host), a
# complete root to chroot into, e.g. to try the device install (packaging/test-install.sh).
# Usage: scripts/arm/rootfs.sh ARCH [EXTRA_PACKAGE...]   ARCH is arm64, armhf or amd64. Prints the root's path.
# The root is cached under .cache/arm/<key>/ and reused while its key (suite, arch, packages) is unchanged.
# Needs root (or sudo) for debootstrap, and the Debian packages debootstrap and qemu-user-static.
# Env: SEI_ARM_SUITE (default bookworm), SEI_ARM_MIRROR (default: the Debian mirror apt is configured with for that
# suite, else for the host's own release).
set -euo pipefail

arch="${1:?usage: rootfs.sh ARCH [EXTRA_PACKAGE...]}"
shift
case "$arch" in arm64|armhf|amd64) ;; *) echo "rootfs.sh: ARCH must be arm64, armhf or amd64, got '$arch'" >&2; exit 2 ;; esac
suite="${SEI_ARM_SUITE:-bookworm}"
packages=(nodejs "$@")
here="$(cd "$(dirname "$0")" && pwd)"
cache="$(cd "$here/../.." && pwd)/.cache/arm"

# The mirror apt already uses for this suite (a deb822 .sources or a one-line .list entry), so that a machine
# with a local or proxied mirror builds from it.
debian_mirror() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  local f
  for f in "${files[@]}"; do
    [ -r "$f" ] || continue
    case "$f" in
      *.sources)
        awk -v suite="$suite" 'BEGIN { RS = ""; FS = "\n" }
          { uris = ""; suites = ""
            for (i = 1; i <= NF; i++) {
              if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
              if ($i ~ /^Suites:/) { suites = " " $i " "; sub(/^ Suites:/, "", suites) }
            }
            if (uris != "" && index(suites, " " suite " ")) { split(uris, u, /[ \t]+/); print u[1]; exit }
          }' "$f" ;;
      *)
        awk -v suite="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++; if ($2 ~ /^\[/) i++
          if ($(i + 1) == suite) { print $i; exit } }' "$f" ;;
    esac
  done | head -n 1
}

key="$suite-$arch-$(printf '%s\n' "${packages[@]}" | sort | tr '\n' '+' | sed 's/+$//')"
root="$cache/$key"
if [ -f "$root/.sei-rootfs" ] && [ -x "$root/usr/bin/node" ]; then
  echo "$root"
  exit 0
fi

mirror="${SEI_ARM_MIRROR:-$(debian_mirror)}"
# A suite apt does not list (e.g. a newer release than the host's) comes from the mirror of the host's own release.
if [ -z "$mirror" ] && [ -r /etc/os-release ]; then
  mirror="$(suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" && [ -n "$suite" ] && debian_mirror)"
fi
if [ -z "$mirror" ]; then
  echo "rootfs.sh: no apt source for suite '$suite' in /etc/apt/sources.list*; set SEI_ARM_MIRROR to a Debian mirror URL" >&2
  exit 1
fi
for tool in debootstrap dpkg; do
  command -v "$tool" >/dev/null || { echo "rootfs.sh: '$tool' is missing: apt-get install debootstrap qemu-user-static" >&2; exit 1; }
done
# debootstrap and the extraction need root; a non-root user with sudo gets a root-owned (read-only to it) cache.
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "rootfs.sh: debootstrap needs root: run as root, or install sudo" >&2; exit 1; }
fi
. "$here/roots.sh"

mkdir -p "$cache"
tmp="$cache/.build-$key.$$"
# A complete bootstrap mounts /proc and /sys in the new root; never let a cleanup reach into them.
remove_root() {
  unmount_under "$1"
  as_root rm -rf --one-file-system "$1"
}
at_exit 'remove_root "$tmp"'
echo "rootfs.sh: building $suite/$arch root with ${packages[*]} in $root" >&2
# For a foreign architecture --foreign only downloads and unpacks the base; the packages' own scripts never need
# to run for `node` to start, so extracting every downloaded .deb replaces the second stage (which would need
# binfmt). The host's own architecture gets a complete install (users, maintainer scripts) to chroot into.
include="$(IFS=,; echo "${packages[*]}")"
foreign=(--foreign)
[ "$arch" = "$(dpkg --print-architecture)" ] && foreign=()
if ! as_root debootstrap --variant=minbase "${foreign[@]}" --include="$include" --arch="$arch" "$suite" "$tmp" "$mirror" >"$cache/debootstrap-$arch.log" 2>&1; then
  echo "rootfs.sh: debootstrap failed; last lines of $cache/debootstrap-$arch.log:" >&2
  tail -n 20 "$cache/debootstrap-$arch.log" >&2
  exit 1
fi
if [ ${#foreign[@]} -gt 0 ]; then
  for deb in "$tmp"/var/cache/apt/archives/*.deb; do as_root dpkg -x "$deb" "$tmp"; done
fi
as_root find "$tmp/var/cache/apt/archives" -name '*.deb' -delete
printf 'suite=%s\narch=%s\npackages=%s\n' "$suite" "$arch" "${packages[*]}" | as_root tee "$tmp/.sei-rootfs" >/dev/null
remove_root "$root"
as_root mv "$tmp" "$root"
trap - EXIT
echo "$root"
