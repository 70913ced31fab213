#!/usr/bin/env bash
# Builds better-sqlite3's native addon for Debian bookworm's Node 18 on ARCH (arm64, armhf or amd64) with Debian's
# cross compilers, against the headers of that architecture's `libnode-dev`, and prints the addon's path.
# Cached under .cache/arm/ by better-sqlite3 version, arch and Node ABI: a rerun prints the cached file.
# Usage: scripts/arm/build-sqlite.sh ARCH
# Needs: g++-aarch64-linux-gnu (arm64) or g++-arm-linux-gnueabihf (armhf), make, python3, and what
# scripts/arm/rootfs.sh needs. The addon goes into the device package: packaging/pack-device.mjs --sqlite-addon.
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
command -v "$triplet-g++" >/dev/null || { echo "build-sqlite.sh: $triplet-g++ is missing: apt-get install g++-${triplet//_/-}" >&2; exit 1; }

src="$repo/node_modules/better-sqlite3"
version="$(node -p "require('$src/package.json').version")"
root="$("$here/rootfs.sh" "$arch" libnode-dev)"
abi="$(sed -n "s/.*'node_module_version': *\([0-9]*\).*/\1/p" "$root/usr/include/node/config.gypi" | head -n 1)"
[ -n "$abi" ] || { echo "build-sqlite.sh: no node_module_version in $root/usr/include/node/config.gypi" >&2; exit 1; }
out="$repo/.cache/arm/better-sqlite3-$version-$arch-abi$abi.node"
if [ -f "$out" ]; then
  echo "$out"
  exit 0
fi

work="$(mktemp -d "$repo/.cache/arm/.sqlite-$arch.XXXX")"
trap 'rm -rf "$work"' EXIT
# node-gyp wants a Node tree (<nodedir>/include/node); Debian's libnode-dev has the headers in /usr/include/node.
mkdir -p "$work/nodedir/include"
ln -s "$root/usr/include/node" "$work/nodedir/include/node"
cp -r "$src" "$work/src"
rm -rf "$work/src/build"
gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
log="$repo/.cache/arm/better-sqlite3-$arch.log"
echo "build-sqlite.sh: compiling better-sqlite3 $version for $arch (Node ABI $abi); log: $log" >&2
if ! (cd "$work/src" && CC="$triplet-gcc" CXX="$triplet-g++" LINK="$triplet-g++" AR="$triplet-ar" \
  node "$gyp" rebuild --release --arch="$gyp_arch" --nodedir="$work/nodedir" -j "$(nproc)") >"$log" 2>&1; then
  echo "build-sqlite.sh: node-gyp failed; last lines of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
"$triplet-strip" --strip-unneeded -o "$out" "$work/src/build/Release/better_sqlite3.node"
echo "$out"
