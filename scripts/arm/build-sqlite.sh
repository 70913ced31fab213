#!/usr/bin/env bash
# Builds better-sqlite3's native addon for Debian bookworm's Node 18 on ARCH (arm64, armhf or amd64) with Debian's
# cross compilers, against the headers of that architecture's `libnode-dev`, and prints the addon's path.
# Cached under .cache/arm/ by better-sqlite3 version, arch and Node ABI: a rerun prints the cached file. Every
# addon, fresh or cached, is checked before it is printed: an ELF for ARCH that registers itself for that Node ABI
# (the symbol node_register_module_v<ABI>); a cached one that fails the check is rebuilt.
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
log="$repo/.cache/arm/better-sqlite3-$arch.log"

# Why an addon cannot load on ARCH's Node (ABI $abi), or nothing when it can.
addon_problem() {
  local machine libnode registers
  machine="$("$triplet-readelf" -h "$1" 2>/dev/null | sed -n 's/^ *Machine: *//p')"
  case "$arch:$machine" in
    arm64:AArch64|armhf:ARM|amd64:*X86-64) ;;
    *) echo "it is not an ELF for $arch (machine: '${machine:-not an ELF}')"; return ;;
  esac
  libnode="$("$triplet-readelf" -d "$1" | sed -n 's/.*(NEEDED).*\[\(libnode[^]]*\)\].*/\1/p' | head -n 1)"
  if [ -n "$libnode" ]; then
    echo "it needs $libnode (Node's shared library, linked by a distribution-patched node-gyp), which the box's node does not provide"
    return
  fi
  registers="$("$triplet-nm" -D --defined-only "$1" | sed -n 's/.* node_register_module_v\([0-9]*\)$/\1/p' | head -n 1)"
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
trap 'rm -rf "$work"' EXIT
# node-gyp wants a Node tree (<nodedir>/include/node); Debian's libnode-dev has the headers in /usr/include/node.
mkdir -p "$work/nodedir/include"
ln -s "$root/usr/include/node" "$work/nodedir/include/node"
cp -r "$src" "$work/src"
rm -rf "$work/src/build"
# The project's own node-gyp (a devDependency: upstream node-gyp, the same on every machine), else the one npm runs
# scripts with (npm_config_node_gyp), else npm's own, else a node-gyp.js on PATH. Debian's node-gyp package (what
# Debian's npm uses) links every addon against Node's shared library (-lnode): addon_problem refuses what it builds.
gyp="$repo/node_modules/node-gyp/bin/node-gyp.js"
[ -f "$gyp" ] || gyp="${npm_config_node_gyp:-}"
[ -f "$gyp" ] || gyp="$(dirname "$(readlink -f "$(command -v npm)")")/../node_modules/node-gyp/bin/node-gyp.js"
if [ ! -f "$gyp" ]; then
  for candidate in $(type -ap node-gyp); do
    candidate="$(readlink -f "$candidate")"
    case "$candidate" in *.js) gyp="$candidate"; break ;; esac
  done
fi
[ -f "$gyp" ] || { echo "build-sqlite.sh: no node-gyp: run npm ci (it installs the project's own, a devDependency)" >&2; exit 1; }
echo "build-sqlite.sh: compiling better-sqlite3 $version for $arch (Node ABI $abi); log: $log" >&2
# node-gyp copies every npm_config_* variable over its command-line options. Under `npm test` or `npm run`, npm
# exports its whole config that way, e.g. `nodedir=/usr` from ~/.npmrc (the host's Node 20 headers), which would
# silently replace --nodedir below: the addon would then be built for the host's ABI and refused on the box.
# Only the options given here count.
if ! (cd "$work/src" && for v in $(compgen -e); do case "$v" in npm_config_*|NPM_CONFIG_*) unset "$v" ;; esac; done &&
  CC="$triplet-gcc" CXX="$triplet-g++" LINK="$triplet-g++" AR="$triplet-ar" node "$gyp" rebuild --release --arch="$gyp_arch" --nodedir="$work/nodedir" -j "$(nproc)") >"$log" 2>&1; then
  echo "build-sqlite.sh: node-gyp failed; last lines of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
fi
"$triplet-strip" --strip-unneeded -o "$work/better_sqlite3.node" "$work/src/build/Release/better_sqlite3.node"
problem="$(addon_problem "$work/better_sqlite3.node")"
if [ -n "$problem" ]; then
  echo "build-sqlite.sh: the addon built for $arch cannot load on bookworm's Node 18: $problem." >&2
  echo "build-sqlite.sh: node-gyp was given: $(grep -o "'-Dnode_root_dir=[^']*'" "$log" | head -n 1) (expected $work/nodedir); log: $log" >&2
  exit 1
fi
mv "$work/better_sqlite3.node" "$out"
echo "$out"
