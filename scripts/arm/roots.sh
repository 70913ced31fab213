# Sourced, not run: working as root in a Debian root (a cached one from scripts/arm/rootfs.sh, or a copy of it), for
# scripts/arm/build-sqlite.sh, packaging/test-install.sh and scripts/fresh-machine.sh. Commands that need root run
# directly when the caller is root, else under sudo.
#   use_root ROOT              works in ROOT: mounts /proc in it; at exit every mount under ROOT is undone, ROOT kept
#   throwaway_root BASE ROOT   copies BASE to ROOT and works in it as use_root does; at exit ROOT is also deleted
#                              (kept, and its path printed, when THROWAWAY_KEEP=1)
#   in_root [-C DIR] CMD...    runs CMD in ROOT (in DIR, default /) with a clean environment: PATH, HOME=/root and
#                              the NAME=VALUE words of the ROOT_ENV array
#   at_exit CMD                runs the shell command CMD at exit (in reverse order of registration)
#   unmount_under DIR          undoes every mount under DIR, deepest first

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

unmount_under() {
  awk -v p="$1/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do as_root umount -l "$m" || true; done
}

_exit_hooks=()
_run_exit_hooks() {
  local i
  for ((i = ${#_exit_hooks[@]} - 1; i >= 0; i--)); do eval "${_exit_hooks[i]}" || true; done
}
at_exit() {
  _exit_hooks+=("$1")
  trap _run_exit_hooks EXIT
}

use_root() {
  _root="$1"
  at_exit _root_cleanup
  as_root mount -t proc proc "$1/proc"
}

throwaway_root() {
  _throwaway=1
  mkdir -p "$(dirname "$2")"
  cp -a "$1" "$2"
  use_root "$2"
}

_root_cleanup() {
  unmount_under "$_root"
  [ "${_throwaway:-0}" = 1 ] || return 0
  if [ "${THROWAWAY_KEEP:-0}" = 1 ]; then
    echo "root kept: $_root" >&2
  else
    as_root rm -rf --one-file-system "$_root"
  fi
}

in_root() {
  local dir=/
  if [ "${1:-}" = -C ]; then
    dir="$2"
    shift 2
  fi
  as_root chroot "$_root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root ${ROOT_ENV[@]+"${ROOT_ENV[@]}"} /bin/sh -c 'cd "$0" && exec "$@"' "$dir" "$@"
}
