# A throw-away machine with a real systemd as PID 1, for the suites that test
# systemd units (tests/system/systemd-units.sh, audit-timer.sh, ansible.sh).
# Source it after common.sh, while holding system_lock.
#
# The CI machine's PID 1 is not systemd, so the suite boots one: systemd-nspawn
# runs /lib/systemd/systemd as PID 1 of a container whose root is an overlayfs
# with this machine's own / as the (read-only) lower layer and a tmpfs as the
# upper layer. Everything the container writes (/etc, /var/lib/libvirt, the
# journal, dpkg's database) lands in that tmpfs and disappears with it; nspawn
# gives it its own /run, /tmp, /dev, PID, IPC, UTS and (--private-network)
# network namespace, so the host's libvirtd, its sockets and its bridges are
# never touched. The container runs Debian's own socket-activated libvirtd.
#
#   ct_require            exit 0 with "SKIP" when this machine cannot run one
#   ct_prepare NAME       mount the overlay (ROOT is its root; files put there
#                         before the boot are the container's starting point);
#                         everything is undone on exit
#   boot_container        boot it and wait until systemd is up (NSPAWN_PID, LEADER)
#   stop_container        halt it (the overlay stays until exit)
#   in_ct CMD...          run CMD inside it as root (clean environment)
#   in_sh SCRIPT          sh -c SCRIPT inside it
#   ct_mask UNIT...       before the boot: mask units of this machine's image
#                         that the container must not start (ct_prepare
#                         masks prometheus.service)

NSPAWN_PID=
LEADER=
CGROUPS=()
MACHINE=
CT=
ROOT=
NSPAWN_DIR_EXISTED=

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
  [ -e /lib/systemd/system/libvirtd.socket ] || ct_skip "libvirtd.socket not installed (libvirt-daemon-system)"
}

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
  CGROUPS=()
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
  ) </dev/null >"$CT.nspawn.log" 2>&1 {T_LOCK_FD}>&- &
  NSPAWN_PID=$!
  wait_booted
}
# The last lines nspawn printed (for a failure message).
nspawn_log() { tail -40 "$CT.nspawn.log" 2>/dev/null; }

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

# ct_prepare NAME: the throw-away root, an overlayfs over / with a tmpfs upper
# layer (the upper layer must not be on the lower layer's file system).
ct_prepare() {
  MACHINE=$1-$$
  CT=$T_TMP/ct
  ROOT=$CT/root
  [ -d /run/systemd/nspawn ] && NSPAWN_DIR_EXISTED=1
  on_exit cleanup_container
  mkdir -p "$CT"
  mount -t tmpfs -o mode=0755 "vhostfix-$MACHINE" "$CT" || return 1
  mkdir "$CT/upper" "$CT/work" "$ROOT"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$CT/upper,workdir=$CT/work" "$ROOT" || return 1
  # A machine id of its own, so its journal is not confused with the host's.
  systemd-id128 new >"$ROOT/etc/machine-id"
  # Debian's Prometheus server (.ci/run installs it for promtool) is enabled
  # by its package: no container needs it at boot (audit-timer.sh runs one
  # with its own configuration).
  ct_mask prometheus.service
}

ct_mask() {
  local u
  for u in "$@"; do
    ln -sfn /dev/null "$ROOT/etc/systemd/system/$u"
  done
}
