#!/usr/bin/env bash
# The packaged systemd unit (packaging/systemd/vhostfix-proxy.service) and the
# transparent-mode files (packaging/transparent/) under a real systemd.
#
# The CI machine's PID 1 is not systemd, so the suite boots one: systemd-nspawn
# runs /lib/systemd/systemd as PID 1 of a container whose root is an overlayfs
# with this machine's own / as the (read-only) lower layer and a tmpfs as the
# upper layer. Everything the container writes (/etc, /var/lib/libvirt, the
# journal) lands in that tmpfs and disappears with it; nspawn gives it its own
# /run, /tmp, /dev, PID, IPC, UTS and (--private-network) network namespace, so
# the host's libvirtd, its sockets and its bridges are never touched. The
# container runs Debian's own socket-activated libvirtd (libvirtd.socket).
#
# Inside it the suite installs the files where the .deb/.rpm put them, then:
#   1. opt-in mode: systemctl start/reload/stop vhostfix-proxy, virsh through
#      /run/vhostfix/libvirt-sock, the proxy's log in the journal;
#   2. transparent mode, following docs/proxy.md step by step (socket drop-ins,
#      tmpfiles.d, [proxy] paths, restart of libvirtd's sockets, enable and
#      restart of the proxy): plain virsh (qemu:///system, no socket=) and
#      virsh -r go through the proxy; then a reboot of the container, after
#      which everything comes up on its own;
#   3. the container is gone and the host's files and libvirtd are unchanged.
# About 10 s. Root; holds the system test lock. Needs systemd-container (see
# .ci/run). The seed is a TCG guest (type='qemu'), so the container needs no
# /dev/kvm; guests are only defined, never started.
T_NAME=systemd-units.sh
. "$(dirname "$0")/../lib/common.sh"
need_root

skip() {
  echo "$T_NAME: SKIP: $*" >&2
  exit 0
}
# Only a machine that cannot run a container at all skips; CI installs
# systemd-container and has overlayfs, so there the suite always runs.
command -v systemd-nspawn >/dev/null || skip "systemd-nspawn not installed (Debian package systemd-container)"
command -v nsenter >/dev/null || skip "nsenter not installed (util-linux)"
[ -x /lib/systemd/systemd ] || skip "no /lib/systemd/systemd to boot"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || skip "the kernel has no overlayfs"
[ -e /lib/systemd/system/libvirtd.socket ] || skip "libvirtd.socket not installed (libvirt-daemon-system)"
[ -x "$VHOSTFIX" ] || { echo "$T_NAME: $VHOSTFIX missing: run cargo build --release" >&2; exit 2; }

system_lock

D=$T_TMP
SEED=$REPO/examples/windows-vhostuser.xml
NAME=win2019-vhu
MACHINE=vhostfix-units-$$
CT=$D/ct           # tmpfs: upper/ and work/ of the overlay, root/ is the container
ROOT=$CT/root
NSPAWN_PID=
LEADER=
CGROUPS=()

# --- the container --------------------------------------------------------

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
  ) </dev/null >"$D/nspawn.log" 2>&1 {T_LOCK_FD}>&- &
  NSPAWN_PID=$!
  wait_booted
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

NSPAWN_DIR_EXISTED=
[ -d /run/systemd/nspawn ] && NSPAWN_DIR_EXISTED=1
on_exit cleanup_container

# The throw-away root: overlayfs over / with a tmpfs upper layer (the upper
# layer must not be on the lower layer's file system).
mkdir -p "$CT"
mount -t tmpfs -o mode=0755 "vhostfix-$MACHINE" "$CT"
mkdir "$CT/upper" "$CT/work" "$ROOT"
if ! mount -t overlay overlay -o "lowerdir=/,upperdir=$CT/upper,workdir=$CT/work" "$ROOT"; then
  skip "cannot mount an overlayfs over /"
fi
# A machine id of its own, so its journal is not confused with the host's.
systemd-id128 new >"$ROOT/etc/machine-id"

# Install the package's files where the .deb and the .rpm put them (Cargo.toml
# [package.metadata.deb] / [package.metadata.generate-rpm] assets). On the same
# machine, whatever vhostfix the host may have installed is overwritten.
install -D -m 0755 "$VHOSTFIX" "$ROOT/usr/bin/vhostfix"
install -D -m 0644 "$REPO/packaging/systemd/vhostfix-proxy.service" "$ROOT/usr/lib/systemd/system/vhostfix-proxy.service"
rm -rf "$ROOT/usr/lib/vhostfix/transparent"
install -d -m 0755 "$ROOT/usr/lib/vhostfix/transparent"
install -m 0644 "$REPO"/packaging/transparent/* "$ROOT/usr/lib/vhostfix/transparent/"
install -D -m 0644 "$REPO/packaging/vhostfix.toml" "$ROOT/etc/vhostfix/vhostfix.toml"
# The man pages (Documentation=man:vhostfix-proxy(1)), made as
# packaging/build-assets.sh makes them.
install -d -m 0755 "$ROOT/usr/share/man/man1"
"$VHOSTFIX" man --dir "$D/man" && gzip -9nf "$D"/man/*.1 && install -m 0644 "$D"/man/*.1.gz "$ROOT/usr/share/man/man1/"
install -D -m 0644 "$SEED" "$ROOT/root/windows-vhostuser.xml"
# The host's own vhostfix configuration or transparent-mode leftovers must not
# leak into the container's starting point.
rm -rf "$ROOT"/etc/systemd/system/libvirtd{,-ro,-admin}.socket.d "$ROOT/etc/tmpfiles.d/vhostfix-proxy.conf" \
  "$ROOT/etc/systemd/system/multi-user.target.wants/vhostfix-proxy.service"

# What the host has now, to check afterwards that the container left it alone.
host_state() {
  local f
  for f in /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro /run/libvirt/real /run/vhostfix \
    /etc/systemd/system/libvirtd.socket.d /etc/tmpfiles.d/vhostfix-proxy.conf /etc/vhostfix/vhostfix.toml \
    /usr/lib/systemd/system/vhostfix-proxy.service /usr/bin/vhostfix; do
    printf '%s %s\n' "$f" "$(stat -c '%i %a %Y' "$f" 2>/dev/null || echo absent)"
  done
  printf 'libvirtd %s\n' "$(pgrep -x libvirtd | tr '\n' ' ')"
  printf 'vhostfix %s\n' "$(pgrep -x vhostfix | tr '\n' ' ')"
}
HOST_BEFORE=$(host_state)

t0=$SECONDS
if boot_container; then
  t_ok "systemd boots in the container ($((SECONDS - t0)) s, $(in_ct systemctl is-system-running))"
else
  t_fail "systemd boots in the container" "$(tail -40 "$D/nspawn.log")"
  t_done
  exit 1
fi
t_eq "the container runs Debian's socket-activated libvirtd" "active" "$(in_ct systemctl is-active libvirtd.socket)"
t_eq "the unit file is valid (systemd-analyze verify)" "" \
  "$(in_ct systemd-analyze verify vhostfix-proxy.service 2>&1 | grep -v -e '^$' -e 'dpdk\|ovs\|openvswitch')"

PROXY_URI='qemu:///system?socket=/run/vhostfix/libvirt-sock'
DIRECT_URI='qemu:///system?socket=/run/libvirt/libvirt-sock'
# This boot's log of the proxy.
journal() { in_ct journalctl -q --no-pager -o cat -b -u vhostfix-proxy.service; }

# --- 1. opt-in mode ---------------------------------------------------------

# libvirtd.service is enabled and already ran at boot; stop it so that the
# first call through the proxy has to socket-activate it.
in_ct systemctl stop libvirtd.service 2>/dev/null # warns: its sockets can still activate it
t_check "systemctl start vhostfix-proxy" in_ct systemctl start vhostfix-proxy.service
wait_for "in_ct test -S /run/vhostfix/libvirt-sock" 10
t_eq "the unit is active" active "$(in_ct systemctl is-active vhostfix-proxy.service)"
t_eq "/run/vhostfix/libvirt-sock has the configured mode and group (0660 root:root)" \
  "socket 660 root:root" "$(in_ct stat -c '%F %a %U:%G' /run/vhostfix/libvirt-sock 2>&1)"

out=$(in_ct virsh -c "$PROXY_URI" define /root/windows-vhostuser.xml 2>&1)
t_contains "virsh define of the seed through the proxy succeeds" "$out" "Domain '$NAME' defined"
t_eq "libvirtd was socket-activated by the proxy's connection" active "$(in_ct systemctl is-active libvirtd.service)"
xml=$(in_ct virsh -c "$DIRECT_URI" dumpxml "$NAME" 2>&1)
t_contains "the stored domain (read directly from libvirtd) has a virtio vhost-user NIC" "$xml" "<model type='virtio'/>"
t_not_contains "the e1000 model is gone" "$xml" "<model type='e1000'/>"
t_check "virsh undefine through the proxy" in_ct virsh -q -c "$PROXY_URI" undefine "$NAME"

wait_for "journal | grep -q 'proc=DOMAIN_DEFINE_XML'" 10
log=$(journal)
t_contains "the proxy's log reaches the journal (listening line)" "$log" "listening on /run/vhostfix/libvirt-sock"
t_contains "the proxy's log reaches the journal (decision)" "$log" "proc=DOMAIN_DEFINE_XML domain='$NAME' verdict=windows"

pid1=$(in_ct systemctl show -p MainPID --value vhostfix-proxy.service)
t_check "systemctl reload vhostfix-proxy" in_ct systemctl reload vhostfix-proxy.service
wait_for "journal | grep -q 'configuration reloaded'" 10
t_contains "the reload (SIGHUP) is logged" "$(journal)" "configuration reloaded"
t_eq "the proxy keeps running after the reload (same MainPID)" "active $pid1" \
  "$(in_ct systemctl is-active vhostfix-proxy.service) $(in_ct systemctl show -p MainPID --value vhostfix-proxy.service)"
t_check "the proxy still relays after the reload" in_ct virsh -q -c "$PROXY_URI" list --all

t_check "systemctl stop vhostfix-proxy" in_ct systemctl stop vhostfix-proxy.service
t_check "the socket file is gone after stop" in_ct test ! -e /run/vhostfix/libvirt-sock
t_eq "the proxy exited cleanly on SIGTERM (Result=success)" "inactive success" \
  "$(in_ct systemctl is-active vhostfix-proxy.service) $(in_ct systemctl show -p Result --value vhostfix-proxy.service)"

# --- 2. transparent mode, as docs/proxy.md says -----------------------------

T=/usr/lib/vhostfix/transparent
# Step 1: libvirtd's sockets move to /run/libvirt/real (socket drop-ins), and
# the tmpfiles.d entry for the root-only directory.
t_check "install the three socket drop-ins" in_sh "
  for s in libvirtd libvirtd-ro libvirtd-admin; do
    install -D -m 0644 $T/\$s.socket.conf /etc/systemd/system/\$s.socket.d/vhostfix.conf || exit 1
  done"
t_check "install the tmpfiles.d entry" in_sh "
  install -D -m 0644 $T/tmpfiles.conf /etc/tmpfiles.d/vhostfix-proxy.conf &&
  systemd-tmpfiles --create /etc/tmpfiles.d/vhostfix-proxy.conf"
# Step 2: merge the [proxy] paths into /etc/vhostfix/vhostfix.toml. The
# packaged file's [proxy] table is the last one and holds only comments: it is
# replaced by the transparent one.
t_check "merge the transparent [proxy] table into /etc/vhostfix/vhostfix.toml" in_sh "
  sed -i '/^\[proxy\]/,\$d' /etc/vhostfix/vhostfix.toml &&
  cat $T/vhostfix.toml >>/etc/vhostfix/vhostfix.toml &&
  vhostfix config check"
for s in libvirtd libvirtd-ro libvirtd-admin; do
  t_eq "$s.socket with the drop-in passes systemd-analyze verify" "" \
    "$(in_ct systemd-analyze verify "$s.socket" 2>&1 | grep -v -e '^$' -e 'dpdk\|ovs\|openvswitch')"
done
# Step 3, literally. (The first version of docs/proxy.md restarted the sockets
# and libvirtd in one systemctl call; with libvirtd.service running, as it is
# after boot on Debian, systemd refuses: "libvirtd.socket: Socket service
# libvirtd.service already active, refusing.")
step3=$(in_sh "
  systemctl daemon-reload &&
  systemctl stop libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket &&
  systemctl start libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd.service &&
  systemctl enable vhostfix-proxy.service && systemctl restart vhostfix-proxy.service" 2>&1)
rc=$?
t_eq "daemon-reload; stop libvirtd and its sockets; start them; enable and restart vhostfix-proxy" "0" "$rc"
[ "$rc" = 0 ] || t_log "step 3 said: $step3"
wait_for "in_ct test -S /run/libvirt/libvirt-sock" 10

check_transparent() { # LABEL
  local l=$1 out xml
  t_eq "$l: libvirtd.socket listens in /run/libvirt/real" \
    "/run/libvirt/real/libvirt-sock (Stream)" "$(in_ct systemctl show -p Listen --value libvirtd.socket)"
  t_eq "$l: libvirtd-ro.socket listens in /run/libvirt/real" \
    "/run/libvirt/real/libvirt-sock-ro (Stream)" "$(in_ct systemctl show -p Listen --value libvirtd-ro.socket)"
  t_eq "$l: libvirtd-admin.socket listens in /run/libvirt/real" \
    "/run/libvirt/real/libvirt-admin-sock (Stream)" "$(in_ct systemctl show -p Listen --value libvirtd-admin.socket)"
  t_eq "$l: /run/libvirt/real is root-only" "700 root:root" "$(in_ct stat -c '%a %U:%G' /run/libvirt/real 2>&1)"
  t_eq "$l: vhostfix-proxy is active" active "$(in_ct systemctl is-active vhostfix-proxy.service)"
  t_eq "$l: the proxy owns /run/libvirt/libvirt-sock{,-ro} (0660, 0666)" "660 666" \
    "$(in_ct stat -c %a /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro 2>&1 | tr '\n' ' ' | sed 's/ $//')"
  out=$(in_ct virsh -c qemu:///system define /root/windows-vhostuser.xml 2>&1)
  t_contains "$l: plain virsh -c qemu:///system define of the seed is accepted" "$out" "Domain '$NAME' defined"
  xml=$(in_ct virsh -c 'qemu:///system?socket=/run/libvirt/real/libvirt-sock' dumpxml "$NAME" 2>&1)
  t_contains "$l: virsh through /run/libvirt/real/libvirt-sock works and the NIC is virtio" "$xml" "<model type='virtio'/>"
  out=$(in_ct virsh -r -c qemu:///system list --all --name 2>&1)
  t_contains "$l: virsh -r (read-only socket, through the proxy) works" "$out" "$NAME"
  out=$(in_ct virsh -r -c qemu:///system undefine "$NAME" 2>&1)
  t_contains "$l: the read-only socket stays read-only" "$out" "read only"
  t_check "$l: virt-admin with the URI from docs/proxy.md" \
    in_ct virt-admin -c 'libvirtd:///system?socket=/run/libvirt/real/libvirt-admin-sock' version
  t_check "$l: plain virsh undefine" in_ct virsh -q -c qemu:///system undefine "$NAME"
  wait_for "journal | grep -q 'proc=DOMAIN_DEFINE_XML'" 10
  t_contains "$l: the proxy logged the rewrite" "$(journal)" "proc=DOMAIN_DEFINE_XML domain='$NAME' verdict=windows"
}
check_transparent transparent

# After a reboot everything must come up on its own: tmpfiles.d creates the
# directory, the sockets listen there, the enabled proxy takes the canonical
# paths (ordering: After=libvirtd.socket). On a reboot, nspawn exits (status
# 133, which systemd-nspawn@.service restarts on): boot the same overlay again.
in_ct systemctl reboot
if wait_for "! kill -0 $NSPAWN_PID" 60; then
  wait "$NSPAWN_PID"
  rc=$?
  NSPAWN_PID=
else
  rc="none (still running after 60 s)"
  stop_container
fi
remove_cgroups
CGROUPS=()
if [ "$rc" = 133 ] && boot_container; then
  t_ok "the container reboots"
  t_eq "after reboot: /run/libvirt stays world-searchable (non-root clients reach the proxy)" \
    755 "$(in_ct stat -c %a /run/libvirt 2>&1)"
  check_transparent "after reboot"
else
  t_fail "the container reboots" "nspawn exit status $rc" "$(tail -40 "$D/nspawn.log")"
fi

t_check "systemctl stop vhostfix-proxy (transparent)" in_ct systemctl stop vhostfix-proxy.service
t_check "the proxy removed /run/libvirt/libvirt-sock and -ro on stop" \
  in_ct sh -c '! test -e /run/libvirt/libvirt-sock && ! test -e /run/libvirt/libvirt-sock-ro'

if [ "$T_FAIL" -gt 0 ] && [ -n "$LEADER" ]; then
  in_ct journalctl -q --no-pager -b -u vhostfix-proxy.service -u libvirtd.service -u 'libvirtd*.socket' >"$D/journal.txt" 2>&1
  t_log "journal of the container (vhostfix-proxy, libvirtd):"
  tail -60 "$D/journal.txt" >&2
fi

# --- the host is untouched -------------------------------------------------
stop_container
t_eq "the container is gone" "" "$(pgrep -f -- "--machine=$MACHINE")"
t_eq "the host's libvirt sockets, libvirtd, /etc and /usr are as before" "$HOST_BEFORE" "$(host_state)"
t_done
