# A real systemd for the system suites, on a machine whose PID 1 is not
# systemd: systemd-nspawn runs /lib/systemd/systemd as PID 1 of a container
# whose root is an overlayfs with this machine's own / as the (read-only)
# lower layer and a tmpfs as the upper layer. Everything the container writes
# lands in that tmpfs and disappears with it; nspawn gives it its own /run,
# /tmp, /dev, PID, IPC, UTS and (--private-network) network namespace, so the
# host's libvirtd, its sockets and its bridges are never touched.
# Source it after common.sh, holding system_lock:
#
#   ct_require            exit 0 (SKIP) where no container can run at all
#   ct_skip REASON        exit 0 with "SKIP: REASON"
#   ct_prepare NAME       mount the throw-away root at $ROOT (machine
#                         vhostfix-NAME-PID); everything is undone on exit
#   boot_container        boot it and wait until systemd has finished
#   boot_first            the same, as the suite's first check (ends it on failure)
#   stop_container        halt it (boot_container again reboots the same root)
#   reboot_container      reboot it (systemctl reboot inside) and boot it again
#   in_ct CMD... / in_sh SCRIPT   run inside it as root
#   nspawn_log            nspawn's last lines (for a failure message)
#   ct_mask UNIT...       before the boot: mask units of this machine's image
#                         the container must not start (ct_prepare masks
#                         prometheus.service)
#   install_proxy_files   the proxy's packaged files into the container's root
#   ct_install_packaged   everything the packages install, and the .deb ($DEB)
#   host_state            what the host has that a container must not touch

ct_skip() {
  echo "$T_NAME: SKIP: $*" >&2
  exit 0
}
# Only a machine that cannot run a container at all skips; CI installs
# systemd-container and has overlayfs, so there the suites always run.
ct_require() {
  command -v systemd-nspawn >/dev/null || ct_skip "systemd-nspawn not installed (Debian package systemd-container)"
  command -v nsenter >/dev/null || ct_skip "nsenter not installed (util-linux)"
  [ -x /lib/systemd/systemd ] || ct_skip "no /lib/systemd/systemd to boot"
  grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
  grep -qw overlay /proc/filesystems || ct_skip "the kernel has no overlayfs"
}

NSPAWN_PID=
LEADER=
CGROUPS=()

# Run a command inside the container (all its namespaces, its root, a clean
# environment) as root, like a root shell on that machine would.
in_ct() {
  no_lock nsenter -t "$LEADER" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 HOME=/root TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@" </dev/null
}
# sh -c inside the container.
in_sh() { in_ct sh -c "$1"; }

# The container's PID 1 (a child of nspawn in a new PID namespace).
find_leader() {
  local c self
  self=$(readlink /proc/self/ns/pid)
  for c in $(pgrep -P "$NSPAWN_PID"); do
    if [ "$(readlink "/proc/$c/ns/pid" 2>/dev/null)" != "$self" ] && [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ]; then
      LEADER=$c
      return 0
    fi
  done
  return 1
}

# Without a systemd on the host, nspawn cannot ask it for a scope unit
# (--keep-unit) and there is no machined to register with (--register=no). It
# then puts the container below the cgroup it was started in (sub-cgroups
# "supervisor" and "payload"): give it a cgroup of its own in every hierarchy
# systemd uses, so that the whole subtree can be removed afterwards.
make_cgroups() {
  local h rel cg
  for h in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified /sys/fs/cgroup; do
    case $(stat -f -c %T "$h" 2>/dev/null) in
      cgroupfs) rel=$(sed -n 's/^[0-9]*:name=systemd://p' /proc/self/cgroup) ;;
      cgroup2fs) rel=$(sed -n 's/^0:://p' /proc/self/cgroup) ;;
      *) continue ;;
    esac
    [ -n "$rel" ] || continue
    cg=$h${rel%/}/$MACHINE
    mkdir -p "$cg" && CGROUPS+=("$cg")
  done
}
remove_cgroups() {
  local cg
  for cg in "${CGROUPS[@]}"; do
    [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}

# Stop the container: SIGTERM makes nspawn halt it cleanly; SIGKILL of the
# container's PID 1 ends every process in its PID namespace.
stop_container() {
  [ -n "$NSPAWN_PID" ] || return 0
  if kill -0 "$NSPAWN_PID" 2>/dev/null; then
    kill -TERM "$NSPAWN_PID"
    wait_for "! kill -0 $NSPAWN_PID" 30 || {
      [ -n "$LEADER" ] && kill -KILL "$LEADER" 2>/dev/null
      kill -KILL "$NSPAWN_PID" 2>/dev/null
    }
  fi
  wait "$NSPAWN_PID" 2>/dev/null
  NSPAWN_PID=
  LEADER=
}

# Find the container's PID 1 and wait until its systemd has finished booting.
wait_booted() {
  wait_for find_leader 30 || return 1
  # "degraded": some unit of this machine's own image failed inside the
  # container (e.g. OVS-DPDK without hugepages); not the suite's concern.
  wait_for "in_ct systemctl is-system-running | grep -qxE 'running|degraded'" 60 || return 1
}

boot_container() {
  local opts=(--quiet --directory="$ROOT" --machine="$MACHINE" --boot --private-network
    --link-journal=no --console=passive)
  # A host that runs systemd registers the container as usual.
  [ -d /run/systemd/system ] || opts+=(--register=no --keep-unit)
  make_cgroups
  (
    for cg in "${CGROUPS[@]}"; do echo "$BASHPID" >"$cg/cgroup.procs"; done
    exec systemd-nspawn "${opts[@]}"
  ) </dev/null >"$T_TMP/nspawn.log" 2>&1 {T_LOCK_FD}>&- &
  NSPAWN_PID=$!
  wait_booted
}

# The last lines nspawn printed (for a failure message).
nspawn_log() { tail -40 "$T_TMP/nspawn.log" 2>/dev/null; }

# boot_first: boot the container for the suite; without it the suite ends.
boot_first() {
  local t0=$SECONDS
  if boot_container; then
    t_ok "systemd boots in the container ($((SECONDS - t0)) s, $(in_ct systemctl is-system-running))"
  else
    t_fail "systemd boots in the container" "$(nspawn_log)"
    t_done
    exit 1
  fi
}

# reboot_container: reboot the container. On a reboot, nspawn exits (status
# 133, which systemd-nspawn@.service restarts on): boot the same overlay
# again. REBOOT_RC: nspawn's exit status.
reboot_container() {
  in_ct systemctl reboot
  if wait_for "! kill -0 $NSPAWN_PID" 60; then
    wait "$NSPAWN_PID"
    REBOOT_RC=$?
    NSPAWN_PID=
  else
    REBOOT_RC="none (still running after 60 s)"
    stop_container
  fi
  remove_cgroups
  CGROUPS=()
  [ "$REBOOT_RC" = 133 ] && boot_container
}

cleanup_container() {
  stop_container
  mountpoint -q "$ROOT" && umount "$ROOT"
  mountpoint -q "$CT" && umount "$CT"
  remove_cgroups
  # nspawn leaves an empty mount-propagation directory behind when /run is not
  # a tmpfs (it refuses to rm -rf there); remove it and what it created.
  rmdir "/run/systemd/nspawn/propagate/$MACHINE" 2>/dev/null
  if [ -z "$NSPAWN_DIR_EXISTED" ]; then
    rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn 2>/dev/null
  fi
  return 0
}

# ct_prepare NAME: the throw-away root at $ROOT ($T_TMP/ct/root) for the
# machine vhostfix-NAME-PID; the container, its mounts and cgroups go on exit.
ct_prepare() {
  MACHINE=vhostfix-$1-$$
  CT=$T_TMP/ct       # tmpfs: upper/ and work/ of the overlay, root/ is the container
  ROOT=$CT/root
  NSPAWN_DIR_EXISTED=
  [ -d /run/systemd/nspawn ] && NSPAWN_DIR_EXISTED=1
  on_exit cleanup_container
  # The throw-away root: overlayfs over / with a tmpfs upper layer (the upper
  # layer must not be on the lower layer's file system).
  mkdir -p "$CT"
  mount -t tmpfs -o mode=0755 "vhostfix-$MACHINE" "$CT"
  mkdir "$CT/upper" "$CT/work" "$ROOT"
  if ! mount -t overlay overlay -o "lowerdir=/,upperdir=$CT/upper,workdir=$CT/work" "$ROOT"; then
    ct_skip "cannot mount an overlayfs over /"
  fi
  # A machine id of its own, so its journal is not confused with the host's.
  systemd-id128 new >"$ROOT/etc/machine-id"
  # Debian's Prometheus server (.ci/run installs it for promtool) is enabled
  # by its package: no container needs it at boot (audit-timer.sh runs one
  # with its own configuration).
  ct_mask prometheus.service
}

ct_mask() {
  local u
  mkdir -p "$ROOT/etc/systemd/system"
  for u in "$@"; do
    ln -sfn /dev/null "$ROOT/etc/systemd/system/$u"
  done
}

# Install the package's files where the .deb and the .rpm put them (Cargo.toml
# [package.metadata.deb] / [package.metadata.generate-rpm] assets). On the same
# machine, whatever vhostfix the host may have installed is overwritten.
UNITS=/usr/lib/systemd/system
# The proxy's files where the packages put them: binary, units, generator,
# tmpfiles.d, transparent-mode.
install_proxy_files() {
  install -D -m 0755 "$VHOSTFIX" "$ROOT/usr/bin/vhostfix"
  local u
  for u in vhostfix-proxy.service vhostfix-proxy.socket vhostfix-proxy-ro.socket vhostfix-proxy-failure.service; do
    install -D -m 0644 "$REPO/packaging/systemd/$u" "$ROOT$UNITS/$u"
  done
  install -D -m 0755 "$REPO/packaging/systemd-generator" "$ROOT/usr/lib/systemd/system-generators/vhostfix-generator"
  install -D -m 0644 "$REPO/packaging/vhostfix-tmpfiles.conf" "$ROOT/usr/lib/tmpfiles.d/vhostfix.conf"
  install -D -m 0755 "$REPO/packaging/transparent-mode" "$ROOT/usr/lib/vhostfix/transparent-mode"
}

# ct_install_packaged: what the packages install, in the container's root:
# the proxy's files, the default configuration, the man pages; the seed
# (/root/windows-vhostuser.xml), the rpm's %preun (/root/preun.sh) and the
# .deb (/root/vhostfix.deb, built as packaging/INSTALL.md says, as packages.sh
# does, unless a current one is there; its path in DEB).
ct_install_packaged() {
  DEB=$(deb_current) || DEB=
  install_proxy_files
  install -D -m 0644 "$REPO/packaging/vhostfix.toml" "$ROOT/etc/vhostfix/vhostfix.toml"
  # The man pages (Documentation=man:vhostfix-proxy(1)), made as
  # packaging/build-assets.sh makes them.
  install -d -m 0755 "$ROOT/usr/share/man/man1"
  "$VHOSTFIX" man --dir "$T_TMP/man" && gzip -9nf "$T_TMP"/man/*.1 && install -m 0644 "$T_TMP"/man/*.1.gz "$ROOT/usr/share/man/man1/"
  install -D -m 0644 "$REPO/examples/windows-vhostuser.xml" "$ROOT/root/windows-vhostuser.xml"
  install -D -m 0644 "$REPO/packaging/rpm/preun.sh" "$ROOT/root/preun.sh"
  [ -f "$DEB" ] && install -D -m 0644 "$DEB" "$ROOT/root/vhostfix.deb"
  # The host's own vhostfix units or transparent-mode leftovers must not leak
  # into the container's starting point.
  rm -rf "$ROOT"/etc/systemd/system/{libvirtd,libvirtd-ro,libvirtd-admin,vhostfix-proxy,vhostfix-proxy-ro}.socket.d \
    "$ROOT"/etc/systemd/system/{vhostfix-proxy.service.d,sockets.target.d} "$ROOT/etc/tmpfiles.d/vhostfix-transparent.conf" \
    "$ROOT"/etc/systemd/system/*.wants/vhostfix-proxy* "$ROOT/var/lib/vhostfix"
}

# What the host has now, to check afterwards that the container left it alone.
host_state() {
  local f
  # (/run/vhostfix: the sockets the units could make there, not the directory,
  # where any proxy on the machine keeps its admin socket.)
  for f in /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro /run/libvirt/real \
    /run/vhostfix/libvirt-sock /run/vhostfix/libvirt-sock-ro \
    /etc/systemd/system/libvirtd.socket.d /etc/systemd/system/sockets.target.d /etc/tmpfiles.d/vhostfix-transparent.conf \
    /etc/vhostfix/vhostfix.toml /usr/lib/systemd/system/vhostfix-proxy.service /usr/lib/systemd/system/vhostfix-proxy.socket \
    /usr/lib/systemd/system-generators/vhostfix-generator /var/lib/vhostfix /usr/bin/vhostfix /var/lib/dpkg/status; do
    printf '%s %s\n' "$f" "$(stat -c '%i %a %Y' "$f" 2>/dev/null || echo absent)"
  done
  printf 'libvirtd %s\n' "$(host_daemon_pid libvirtd)"
  printf 'vhostfix %s\n' "$(pgrep -x vhostfix | tr '\n' ' ')"
}
