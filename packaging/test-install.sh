#!/usr/bin/env bash
# Installs the device package in a throwaway Debian bookworm root (chroot, never the machine itself), installs it
# again to prove the install idempotent, checks the unit with systemd-analyze, then starts the agent the way the
# unit does (as sei-edge, in /var/lib/sei-edge, on /etc/sei-edge/agent.json) for a few seconds.
# Usage: sudo packaging/test-install.sh [PACKAGE.tgz]
#   default: `npm run build` must have run; packs an amd64 package with better-sqlite3 built for bookworm's Node 18.
# Needs root (chroot, debootstrap), debootstrap and g++. The pristine root is cached by scripts/arm/rootfs.sh.
# `sei doctor`, run by install-pi.sh through /usr/local/bin/sei, also proves the launcher's shebang (with the
# unit's heap flags) starts on the box's Node.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
RUN_SECONDS="${RUN_SECONDS:-12}"

say() { echo "test-install: $*"; }
die() { echo "test-install: FAIL: $*" >&2; exit 1; }

package="${1:-}"
if [ -z "$package" ]; then
  # Its own line, so that a failed addon build stops here (set -e) instead of packing without it.
  addon="$("$repo/scripts/arm/build-sqlite.sh" amd64)"
  node "$here/pack-device.mjs" --sqlite-addon "$addon" >&2
  package="$(ls -t "$repo"/dist/packages/sei-edge-device-*-amd64.tgz | head -n 1)"
fi
package="$(cd "$(dirname "$package")" && pwd)/$(basename "$package")"

base="$("$repo/scripts/arm/rootfs.sh" amd64 passwd systemd)"
root="$repo/.cache/pi-install/root.$$"
. "$repo/scripts/arm/roots.sh"
throwaway_root "$base" "$root"
cp "$package" "$root/tmp/package.tgz"
tar -xzf "$package" -C "$root/tmp" package/install-pi.sh

say "node in the root: $(in_root node --version)"
say "first install"
in_root bash /tmp/package/install-pi.sh /tmp/package.tgz | sed 's/^/  | /'

for path in /opt/sei-edge/current/bin/sei.js /usr/local/bin/sei /etc/sei-edge/agent.json /etc/systemd/system/sei-agent.service \
  /etc/systemd/system/multi-user.target.wants/sei-agent.service /var/lib/sei-edge/models; do
  [ -e "$root$path" ] || [ -L "$root$path" ] || die "$path missing after install"
done
in_root id sei-edge >/dev/null || die "user sei-edge missing"
[ "$(in_root stat -c %U /var/lib/sei-edge)" = sei-edge ] || die "/var/lib/sei-edge not owned by sei-edge"
say "installed: files, user, state folder, unit enabled"

snapshot() { (cd "$root" && find opt/sei-edge etc/sei-edge etc/systemd/system var/lib/sei-edge usr/local/bin -printf '%p %s %m %U %l\n' | sort | md5sum); }
before="$(snapshot)"
echo '{ "fleet": "line-3", "device": "pi-7" }' >"$root/etc/sei-edge/agent.json"
edited="$(snapshot)"
say "second install (same package, edited config)"
in_root bash /tmp/package/install-pi.sh /tmp/package.tgz | sed 's/^/  | /'
[ "$(snapshot)" = "$edited" ] || die "a second install of the same package changed the installed files"
grep -q '"pi-7"' "$root/etc/sei-edge/agent.json" || die "the second install overwrote the edited config"
[ "$before" != "$edited" ] || die "snapshot does not see config edits"
say "idempotent: nothing changed, the edited config was kept"

say "upgrade to a newer release (the same package with a later version)"
mkdir -p "$root/tmp/upgrade"
tar -xzf "$package" -C "$root/tmp/upgrade"
old_version="$(node -p "require('$root/tmp/upgrade/package/package.json').version")"
new_version="$old_version-upgrade.1"
node -e "const f='$root/tmp/upgrade/package/package.json', p=require(f); p.version='$new_version'; require('fs').writeFileSync(f, JSON.stringify(p))"
in_root bash /tmp/package/install-pi.sh /tmp/upgrade/package | sed 's/^/  | /' | grep -v '^  | ok '
[ "$(readlink "$root/opt/sei-edge/current")" = "releases/$new_version" ] || die "current does not point at the new release"
[ -d "$root/opt/sei-edge/releases/$old_version" ] || die "the previous release was removed"
grep -q '"pi-7"' "$root/etc/sei-edge/agent.json" || die "the upgrade overwrote the edited config"
say "upgraded: current -> releases/$new_version, releases/$old_version kept for going back, config kept"

say "systemd-analyze verify sei-agent.service"
if ! in_root systemd-analyze verify /etc/systemd/system/sei-agent.service 2>&1 | grep -v 'Failed to connect\|Cannot add dependency job\|^$' | sed 's/^/  | /' | tee "$root/tmp/verify.log" | grep -qi 'error\|unknown\|invalid'; then
  say "unit verified"
else
  die "systemd-analyze found problems in the unit (above)"
fi

# The unit's own command line (its V8 heap flags included), as systemd would run it.
exec_start="$(sed -n 's/^ExecStart=//p' "$root/etc/systemd/system/sei-agent.service")"
[ -n "$exec_start" ] || die "no ExecStart= in the installed unit"
say "starting the agent as the unit does, for ${RUN_SECONDS}s: $exec_start"
status=0
chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin NODE_ENV=production \
  setpriv --reuid=sei-edge --regid=sei-edge --init-groups \
  sh -c "cd /var/lib/sei-edge && exec timeout -s TERM $RUN_SECONDS $exec_start" \
  >"$root/tmp/agent.log" 2>&1 || status=$?
sed 's/^/  | /' "$root/tmp/agent.log" | tail -n 15
# timeout's SIGTERM is the unit's stop: a clean exit (0) or 124 from timeout means it ran until stopped.
case "$status" in
  0|124) ;;
  *) die "the agent exited with $status before it was stopped" ;;
esac
[ -s "$root/var/lib/sei-edge/sei-agent.db" ] || die "the agent wrote no SQLite state in /var/lib/sei-edge"
say "the agent ran ${RUN_SECONDS}s as sei-edge and kept its state in /var/lib/sei-edge"
say "PASS"
