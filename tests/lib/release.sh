# Other Debian releases' libvirt for the system suites: a debootstrap chroot per
# release (tests/lib/debian-release-chroot.sh), cached between runs under
# $REL_CACHE (default /var/tmp/vhostfix-ci/rel) and rebuilt when missing or
# incomplete. Source it after common.sh, while holding system_lock.
#
#   release_ensure SUITE  create the cached root if needed (sets R)
#   release_up SUITE    create (if needed) and start the release's virtlogd and
#                       libvirtd; sets R (the root), REL_LIBVIRT (its version),
#                       VHOSTFIX_RELEASE; stops them again on exit
#   release_down        stop them now (guests destroyed, mounts undone)
#   rin CMD...          run CMD inside the chroot (clean environment)
#   RVIRSH=(...)        the release's own virsh, inside the chroot
#   release_binary      copy the glibc 2.17 build (target/assets/vhostfix) into
#                       the chroot as $RBIN (removed on exit)
#   attach_fixture      a Windows domain without a NIC and an e1000 vhost-user
#                       NIC to attach to it
#
# The release's libvirtd runs instead of the host's, not at the same time: a
# host libvirtd that runs (without systemd) is stopped for the suite and
# started again on exit; all suites hold system_lock, so none needs it meanwhile.

REL_CACHE=${REL_CACHE:-/var/tmp/vhostfix-ci/rel}
REL_TOOL=$REPO/tests/lib/debian-release-chroot.sh
RBIN=/opt/vhostfix-test/vhostfix     # inside the chroot
R=
RENV=(/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)
RVIRSH=()

rin() { chroot "$R" "${RENV[@]}" "$@"; }
rel_tool() { REL_ROOT=$REL_CACHE no_lock bash "$REL_TOOL" "$@"; }

# release_version SUITE: the libvirt version a release ships (as measured).
release_libvirt() {
  case $1 in bullseye) echo 7.0.0 ;; bookworm) echo 9.0.0 ;; trixie) echo 11.3.0 ;; *) echo unknown ;; esac
}

# host_libvirtd_aside: stop the host's own libvirtd (root /), if one runs, and
# start it again on exit. Under systemd it is left alone (and runs beside).
host_libvirtd_aside() {
  local pid
  pid=$(host_daemon_pid libvirtd)
  [ -n "$pid" ] || return 0
  if [ "$(cat /proc/1/comm)" = systemd ]; then
    t_log "the host's libvirtd (pid $pid) runs under systemd: the release's runs beside it"
    return 0
  fi
  t_log "stopping the host's libvirtd (pid $pid) while the release's runs; started again on exit"
  stop_pid "$pid"
  on_exit "host_libvirtd_restart $pid"
  ! alive "$pid"
}
# host_libvirtd_restart OLDPID: start the host's libvirtd again; where this
# suite was to stop OLDPID on exit, it now stops the new daemon instead.
host_libvirtd_restart() {
  libvirtd_start_again "$1"
  wait_for "${VIRSH[*]} version" 30
  return 0
}

# release_ensure SUITE: the cached root of SUITE, created when missing (sets R).
release_ensure() {
  local suite=$1 t0=$SECONDS out
  R=$REL_CACHE/$suite
  mkdir -p "$REL_CACHE"
  # A root without the stamp is a creation that did not finish: start again.
  if [ ! -e "$R/.vhostfix-ready" ] && [ -e "$R" ]; then
    t_log "$R is incomplete: removing it"
    rel_tool "$suite" stop >/dev/null 2>&1
    if findmnt -rn -o TARGET | grep -q "^$R\(/\|$\)"; then
      t_log "$R still has mounts; not removing it"; return 1
    fi
    rm -rf --one-file-system "$R"
  fi
  if [ ! -e "$R/.vhostfix-ready" ]; then
    t_log "creating the $suite chroot in $R (debootstrap, libvirt, QEMU)"
    if ! out=$(rel_tool "$suite" create 2>&1); then
      t_log "creating $suite failed: ${out: -2000}"
      rel_tool "$suite" stop >/dev/null 2>&1
      return 1
    fi
    rel_tool "$suite" stop >/dev/null 2>&1
    touch "$R/.vhostfix-ready"
    t_log "$suite chroot created in $((SECONDS - t0)) s"
  fi
}

release_up() {
  local suite=$1 t0=$SECONDS out
  host_libvirtd_aside || return 1
  release_ensure "$suite" || return 1
  on_exit "REL_ROOT=$REL_CACHE bash $REL_TOOL $suite stop"
  out=$(rel_tool "$suite" start 2>&1)
  RVIRSH=(chroot "$R" "${RENV[@]}" virsh -q -c qemu:///system)
  if ! "${RVIRSH[@]}" version >/dev/null 2>&1; then
    t_log "the $suite libvirtd did not come up: $out"
    return 1
  fi
  REL_LIBVIRT=$(rin libvirtd --version); REL_LIBVIRT=${REL_LIBVIRT##* }
  VHOSTFIX_RELEASE="Debian $suite: libvirt $REL_LIBVIRT, $(rin ldd --version | head -n 1 | sed 's/.* //;s/^/glibc /') (chroot)"
  t_log "$VHOSTFIX_RELEASE up after $((SECONDS - t0)) s"
}

release_down() {
  [ -n "$R" ] || return 0
  rel_tool "$(basename "$R")" stop >/dev/null 2>&1
}

# attach_fixture SEED DIR (paths inside the chroot): DIR/nonic.xml, the
# Windows seed without its NIC, named win-attach, and DIR/nic.xml, an e1000
# vhost-user NIC to attach to it (socket /run/vhu/att.sock).
attach_fixture() {
  sed -e '/<interface/,/<\/interface>/d' -e 's/win2019-vhu/win-attach/' -e '/<uuid>/d' "$R$1" >"$R$2/nonic.xml"
  printf "<interface type='vhostuser'>\n  <mac address='52:54:00:5a:01:09'/>\n  <source type='unix' path='/run/vhu/att.sock' mode='server'/>\n  <model type='e1000'/>\n</interface>\n" >"$R$2/nic.xml"
}

# The glibc 2.17 build must be there (packaging/build-assets.sh makes it).
release_binary() {
  local src=$REPO/target/assets/vhostfix
  [ -x "$src" ] || { t_log "$src missing: run packaging/build-assets.sh"; return 1; }
  install -D -m 0755 "$src" "$R$RBIN"
  on_exit "rm -rf '$R/opt/vhostfix-test'"
}

