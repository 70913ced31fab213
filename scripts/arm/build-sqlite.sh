#!/usr/bin/env bash
# Builds better-sqlite3's native addon for Debian bookworm's Node 18 on ARCH (arm64, armhf or amd64) and prints the
# addon's path. The compiler runs in a cached bookworm amd64 build root (chroot) with bookworm's own compilers
# (g++ and the cross g++ for arm64 and armhf), against the headers of ARCH's `libnode-dev`: the addon links the
# glibc and libstdc++ the boxes have, whatever Debian release the build machine runs (a newer one's compilers
# produce addons that need GLIBC_2.38 and GLIBCXX_3.4.31, which bookworm lacks).
# Cached under .cache/arm/ by better-sqlite3 version, arch and Node ABI: a rerun prints the cached file. Every
# addon, fresh or cached, is checked before it is printed: an ELF for ARCH that registers itself for that Node ABI
# (the symbol node_register_module_v<ABI>) and does not need Node's shared library; a cached one that fails the
# check is rebuilt.
# Usage: scripts/arm/build-sqlite.sh ARCH
# Needs root or sudo (chroot, mount) and what scripts/arm/rootfs.sh needs. The addon goes into the device package:
# packaging/pack-device.mjs --sqlite-addon.
set -euo pipefail

arch="${1:?usage: build-sqlite.sh ARCH}"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
case "$arch" in
  arm64) triplet=aarch64-linux-gnu; gyp_arch=arm64 ;;
  armhf) triplet=arm-linux-gnueabihf; gyp_arch=arm ;;
  amd64) triplet=x86_64-linux-gnu; gyp_arch=x64 ;;
  *) echo "build-sqlite.sh: ARCH must be arm64, armhf or amd64, got '$arch'" >&2; exit 2 ;;
esac

src="$repo/node_modules/better-sqlite3"
gyp="$repo/node_modules/node-gyp/bin/node-gyp.js"
for f in "$src/package.json" "$gyp"; do
  [ -f "$f" ] || { echo "build-sqlite.sh: $f is missing: run npm ci" >&2; exit 1; }
done
version="$(node -p "require('$src/package.json').version")"
root="$("$here/rootfs.sh" "$arch" libnode-dev)"
abi="$(sed -n "s/.*'node_module_version': *\([0-9]*\).*/\1/p" "$root/usr/include/node/config.gypi" | head -n 1)"
[ -n "$abi" ] || { echo "build-sqlite.sh: no node_module_version in $root/usr/include/node/config.gypi" >&2; exit 1; }
out="$repo/.cache/arm/better-sqlite3-$version-$arch-abi$abi.node"
log="$repo/.cache/arm/better-sqlite3-$arch.log"

. "$here/roots.sh"
# One build at a time, from bootstrapping the build root on: each mounts the repository into the build root at the
# same path as outside it, and a second bootstrap of the same root would replace it under a running build.
exec 9>"$repo/.cache/arm/.build-sqlite.lock"
flock 9
# The build root: bookworm's toolchain for the three targets, and its Node 18 to run node-gyp. Commands run in it
# with a clean environment: npm's npm_config_* variables stay out, since node-gyp copies them over its command-line
# options (a machine's `nodedir=/usr` would replace --nodedir below, and the addon would be built for another
# Node's ABI).
build_root="$("$here/rootfs.sh" amd64 g++ make python3 g++-aarch64-linux-gnu g++-arm-linux-gnueabihf)"
use_root "$build_root"
as_root mkdir -p "$build_root$repo"
as_root mount --bind "$repo" "$build_root$repo"

# Why an addon cannot load on ARCH's Node (ABI $abi), or nothing when it can.
addon_problem() {
  local machine libnode registers
  machine="$(in_root "$triplet-readelf" -h "$1" 2>/dev/null | sed -n 's/^ *Machine: *//p')"
  case "$arch:$machine" in
    arm64:AArch64|armhf:ARM|amd64:*X86-64) ;;
    *) echo "it is not an ELF for $arch (machine: '${machine:-not an ELF}')"; return ;;
  esac
  libnode="$(in_root "$triplet-readelf" -d "$1" | sed -n 's/.*(NEEDED).*\[\(libnode[^]]*\)\].*/\1/p' | head -n 1)"
  if [ -n "$libnode" ]; then
    echo "it needs $libnode (Node's shared library, which a distribution-patched node-gyp links), which the box's node does not provide"
    return
  fi
  registers="$(in_root "$triplet-nm" -D --defined-only "$1" | sed -n 's/.* node_register_module_v\([0-9]*\)$/\1/p' | head -n 1)"
  if [ "$registers" != "$abi" ]; then
    echo "it was compiled against the headers of Node ABI ${registers:-?} (node_register_module_v${registers:-?}), not $abi (bookworm's Node 18)"
  fi
}

if [ -f "$out" ]; then
  problem="$(addon_problem "$out")"
  if [ -z "$problem" ]; then
    echo "$out"
    exit 0
  fi
  echo "build-sqlite.sh: the cached $out cannot load: $problem; rebuilding it" >&2
  rm -f "$out"
fi

work="$(mktemp -d "$repo/.cache/arm/.sqlite-$arch.XXXX")"
at_exit 'as_root rm -rf "$work"'
# node-gyp wants a Node tree (<nodedir>/include/node); Debian's libnode-dev has the headers in /usr/include/node.
mkdir -p "$work/nodedir/include"
ln -s "$root/usr/include/node" "$work/nodedir/include/node"
cp -r "$src" "$work/src"
rm -rf "$work/src/build"
echo "build-sqlite.sh: compiling better-sqlite3 $version for $arch (Node ABI $abi) in $build_root; log: $log" >&2
if ! in_root -C "$work/src" env CC="$triplet-gcc" CXX="$triplet-g++" LINK="$triplet-g++" AR="$triplet-ar" \
  node "$gyp" rebuild --release --arch="$gyp_arch" --nodedir="$work/nodedir" -j "$(nproc)" >"$log" 2>&1; then
  echo "build-sqlite.sh: node-gyp failed; last lines of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
in_root "$triplet-strip" --strip-unneeded -o "$work/better_sqlite3.node" "$work/src/build/Release/better_sqlite3.node"
problem="$(addon_problem "$work/better_sqlite3.node")"
if [ -n "$problem" ]; then
  echo "build-sqlite.sh: the addon built for $arch cannot load on bookworm's Node 18: $problem." >&2
  echo "build-sqlite.sh: node-gyp was given: $(grep -o "'-Dnode_root_dir=[^']*'" "$log" | head -n 1) (expected $work/nodedir); log: $log" >&2
  exit 1
fi
mv "$work/better_sqlite3.node" "$out"
echo "$out"
