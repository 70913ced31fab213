# Sourced, not run: a throwaway copy of a cached Debian root (scripts/arm/rootfs.sh) to work in as root, for
# packaging/test-install.sh and scripts/fresh-machine.sh.
#   throwaway_root BASE ROOT   copies BASE to ROOT and mounts /proc in it; at exit every mount under ROOT is
#                              undone and ROOT deleted (kept, and its path printed, when THROWAWAY_KEEP=1)
#   in_root CMD...             runs CMD in ROOT with a clean environment (PATH, HOME=/root and the NAME=VALUE
#                              words of the ROOT_ENV array)

throwaway_root() {
  _throwaway_root="$2"
  trap _throwaway_cleanup EXIT
  mkdir -p "$(dirname "$2")"
  cp -a "$1" "$2"
  mount -t proc proc "$2/proc"
}

_throwaway_cleanup() {
  awk -v p="$_throwaway_root/" 'index($2, p) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m" || true; done
  if [ "${THROWAWAY_KEEP:-0}" = 1 ]; then
    echo "root kept: $_throwaway_root" >&2
  else
    rm -rf --one-file-system "$_throwaway_root"
  fi
}

in_root() {
  chroot "$_throwaway_root" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root ${ROOT_ENV[@]+"${ROOT_ENV[@]}"} "$@"
}
