#!/usr/bin/env bash
# Installs (or upgrades) the sei-edge device package on a Debian / Raspberry Pi OS box and runs it as a systemd
# service. Idempotent: running it again with the same package changes nothing; with a newer one it switches
# /opt/sei-edge/current to it and restarts the agent. The config in /etc/sei-edge is never overwritten.
#
# Usage: sudo ./install-pi.sh [--no-start] [PACKAGE.tgz | PACKAGE_DIR]
#   PACKAGE: the tarball from packaging/pack-device.mjs, or an unpacked package; default: the folder holding
#   this script when it sits inside an unpacked package.
#   --no-start: install and enable, but do not (re)start the service.
# Layout: /opt/sei-edge/releases/<version>/ (the package), /opt/sei-edge/current -> releases/<version>,
#   /usr/local/bin/sei, /etc/sei-edge/agent.json, /var/lib/sei-edge/ (state, owned by the sei-edge user),
#   /etc/systemd/system/sei-agent.service.
set -euo pipefail

start=1
package=""
for arg in "$@"; do
  case "$arg" in
    --no-start) start=0 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "install-pi.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
    *) package="$arg" ;;
  esac
done

PREFIX=/opt/sei-edge
USER_NAME=sei-edge
CONFIG_DIR=/etc/sei-edge
STATE_DIR=/var/lib/sei-edge
UNIT=/etc/systemd/system/sei-agent.service

say() { echo "install-pi.sh: $*"; }
die() { echo "install-pi.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 $*)"
command -v node >/dev/null || die "node is missing: sudo apt-get install nodejs (Node 18 or newer)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 18 ] || die "Node $(node --version) is too old: Node 18 or newer is needed (sudo apt-get install nodejs)"

if [ -z "$package" ]; then
  here="$(cd "$(dirname "$0")" && pwd)"
  [ -f "$here/package.json" ] && [ -f "$here/bin/sei.js" ] || die "give the device package: $0 sei-edge-device-<version>-<arch>.tgz"
  package="$here"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -d "$package" ]; then
  src="$(cd "$package" && pwd)"
else
  [ -f "$package" ] || die "no such package: $package"
  tar -xzf "$package" -C "$work"
  src="$work/package"
fi
[ -f "$src/package.json" ] && [ -f "$src/bin/sei.js" ] || die "$package is not a sei-edge device package (no package.json / bin/sei.js)"
name="$(node -p "require('$src/package.json').name")"
version="$(node -p "require('$src/package.json').version")"
[ "$name" = "sei-edge-device" ] || die "$package holds '$name', not sei-edge-device"
cpu="$(node -p "(require('$src/package.json').cpu || [process.arch])[0]")"
[ "$cpu" = "$(node -p process.arch)" ] || die "package is built for $cpu, this box is $(node -p process.arch): use the package for this architecture"

# 1. The package, in its own release folder; reinstalling the same content leaves the release untouched.
release="$PREFIX/releases/$version"
content="$(cd "$src" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
if [ -d "$release" ] && [ "$(cat "$release/.sei-package-sha256" 2>/dev/null)" = "$content" ]; then
  say "release $version already installed in $release"
else
  mkdir -p "$PREFIX/releases"
  rm -rf "$release.new"
  cp -a "$src" "$release.new"
  echo "$content" >"$release.new/.sei-package-sha256"
  chown -R root:root "$release.new"
  rm -rf "$release"
  mv "$release.new" "$release"
  say "installed release $version in $release"
fi
changed=0
if [ "$(readlink "$PREFIX/current" 2>/dev/null)" != "releases/$version" ]; then
  ln -sfn "releases/$version" "$PREFIX/current.new"
  mv -T "$PREFIX/current.new" "$PREFIX/current"
  changed=1
  say "$PREFIX/current -> releases/$version"
fi
ln -sfn "$PREFIX/current/bin/sei.js" /usr/local/bin/sei

# 2. The native SQLite addon must load with this Node; rebuild it here if it was built for another machine.
sqlite_dir="$release/node_modules/better-sqlite3"
if [ -f "$release/native/better_sqlite3.node" ] && [ ! -e "$sqlite_dir/build/Release/better_sqlite3.node" ]; then
  install -D -m 0755 "$release/native/better_sqlite3.node" "$sqlite_dir/build/Release/better_sqlite3.node"
fi
# Prints Node's own reason (on one line) when the addon does not load, e.g. "... compiled against a different
# Node.js version using NODE_MODULE_VERSION 115. This version of Node.js requires NODE_MODULE_VERSION 108 ...".
addon_error() {
  (cd "$release" && node -e "try { new (require('better-sqlite3'))(':memory:').close() } catch (e) { console.log(String(e.message).replace(/\s+/g, ' ')); process.exit(1) }" 2>/dev/null)
}
if ! why="$(addon_error)"; then
  say "better-sqlite3 does not load on this box ($(node -p 'process.arch + ", Node " + process.version + ", ABI " + process.versions.modules')): $why"
  say "rebuilding better-sqlite3 from the bundled sources"
  command -v npm >/dev/null && command -v make >/dev/null && command -v g++ >/dev/null ||
    die "rebuilding better-sqlite3 needs build tools: sudo apt-get install npm build-essential python3, then run this again"
  (cd "$release" && npm rebuild better-sqlite3 --build-from-source) || die "npm rebuild better-sqlite3 failed (see above)"
  why="$(addon_error)" || die "better-sqlite3 still does not load after the rebuild: $why"
  changed=1
fi

# 3. A dedicated system user; the camera is in the video group.
if ! id "$USER_NAME" >/dev/null 2>&1; then
  useradd --system --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin --user-group "$USER_NAME"
  say "created system user $USER_NAME"
fi
if getent group video >/dev/null && ! id -nG "$USER_NAME" | tr ' ' '\n' | grep -qx video; then
  usermod -a -G video "$USER_NAME"
fi

# 4. Config (kept if present) and state folders (systemd also creates them at start; made here so that
#    `sei doctor` and a first manual run find them).
install -d -m 0755 "$CONFIG_DIR"
if [ ! -e "$CONFIG_DIR/agent.json" ]; then
  install -m 0644 "$PREFIX/current/packaging/agent.json" "$CONFIG_DIR/agent.json"
  say "wrote the default config $CONFIG_DIR/agent.json (set mqtt.url and the source there)"
else
  say "kept the existing config $CONFIG_DIR/agent.json"
fi
install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$STATE_DIR" "$STATE_DIR/models"

# 5. The unit.
if ! cmp -s "$PREFIX/current/packaging/sei-agent.service" "$UNIT"; then
  install -m 0644 "$PREFIX/current/packaging/sei-agent.service" "$UNIT"
  changed=1
  say "installed $UNIT"
fi

# 6. systemd: enable always; start/restart only on a live systemd (not in a chroot or an image being prepared).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
  systemctl enable sei-agent.service >/dev/null
  if [ "$start" -eq 1 ]; then
    if [ "$changed" -eq 1 ] || ! systemctl is-active --quiet sei-agent.service; then
      systemctl restart sei-agent.service
      say "sei-agent.service (re)started; logs: journalctl -u sei-agent -f"
    else
      say "sei-agent.service already running this release"
    fi
  fi
elif command -v systemctl >/dev/null; then
  systemctl enable sei-agent.service >/dev/null 2>&1 || true
  say "systemd is not running here (chroot/image): sei-agent.service enabled for the next boot"
else
  say "no systemd: start the agent with: sei agent --config $CONFIG_DIR/agent.json"
fi

say "checking the box:"
sei doctor --config "$CONFIG_DIR/agent.json" --state-dir "$STATE_DIR" || say "sei doctor reported problems (above); fix them, then: sudo systemctl restart sei-agent"
