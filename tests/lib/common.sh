# Shared helpers for the shell test suites that drive real system components
# (libvirtd, QEMU, Open vSwitch, dpkg). Source it; do not run it.
#
# - t_ok/t_fail/t_check/t_contains count results; t_done prints the closing
#   line "N passed, N failed" and returns non-zero on any failure.
# - on_exit CMD registers cleanup, run in reverse order on exit, also on failure.
# - system_lock serialises suites that share libvirtd, /etc/libvirt/hooks or OVS.
# - libvirt_up / ovs_up start the daemons as root without systemd, and stop on
#   exit only what this suite started.

set -u
T_PASS=0
T_FAIL=0
T_NAME=${T_NAME:-$(basename "$0")}
T_CLEANUP=()
T_TMP=$(mktemp -d "/tmp/vhostfix-${T_NAME%.sh}.XXXXXX")

REPO=${REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
VHOSTFIX=${VHOSTFIX:-$REPO/target/release/vhostfix}
VIRSH=(virsh -q -c qemu:///system)

# v ARGS...: the host's virsh; vt SECS ARGS...: the same under a timeout (a
# vhost-user guest can hang in start).
v() { "${VIRSH[@]}" "$@"; }
vt() {
  local secs=$1
  shift
  timeout "$secs" "${VIRSH[@]}" "$@"
}

t_log() { printf '%s: %s\n' "$T_NAME" "$*" >&2; }
t_ok() { T_PASS=$((T_PASS + 1)); printf 'ok   %s\n' "$1"; }
t_fail() {
  T_FAIL=$((T_FAIL + 1)); printf 'FAIL %s\n' "$1"
  shift; [ $# -gt 0 ] && printf '     %s\n' "$@"
  return 0
}
# t_check DESC CMD...: passes when CMD exits 0.
t_check() {
  local desc=$1; shift
  local out
  if out=$("$@" 2>&1); then t_ok "$desc"; else t_fail "$desc" "command: $*" "output: ${out:0:2000}"; fi
}
# t_eq DESC EXPECTED ACTUAL
t_eq() {
  if [ "$2" = "$3" ]; then t_ok "$1"; else t_fail "$1" "expected: $2" "actual:   $3"; fi
}
# t_contains DESC HAYSTACK NEEDLE
t_contains() {
  case $2 in *"$3"*) t_ok "$1" ;; *) t_fail "$1" "expected to contain: $3" "actual: ${2:0:3000}" ;; esac
}
t_not_contains() {
  case $2 in *"$3"*) t_fail "$1" "expected NOT to contain: $3" "actual: ${2:0:3000}" ;; *) t_ok "$1" ;; esac
}
# The libvirt release the suite ran against; suites that use another release's
# libvirt (tests/lib/release.sh) set it. Printed by t_done.
VHOSTFIX_RELEASE=${VHOSTFIX_RELEASE:-}
host_release() {
  local os lv
  os=$(. /etc/os-release 2>/dev/null && echo "$ID $VERSION_CODENAME")
  lv=$(libvirtd --version 2>/dev/null); lv=${lv##* }
  echo "host ${os:-unknown}: libvirt ${lv:-not installed}, glibc $(ldd --version 2>/dev/null | head -n 1 | sed 's/.* //')"
}
t_done() {
  printf '%s: ran on %s\n' "$T_NAME" "${VHOSTFIX_RELEASE:-$(host_release)}"
  printf '%s: %d passed, %d failed\n' "$T_NAME" "$T_PASS" "$T_FAIL"
  [ "$T_FAIL" -eq 0 ]
}

on_exit() { T_CLEANUP+=("$*"); }
# cleanup_mark prints a position in the cleanup list; cleanup_since MARK runs
# (in reverse order) and forgets everything registered after it, so a suite can
# tear down what it set up and check that nothing is left before it exits.
cleanup_mark() { echo "${#T_CLEANUP[@]}"; }
cleanup_since() {
  local i
  for ((i = ${#T_CLEANUP[@]} - 1; i >= $1; i--)); do
    eval "${T_CLEANUP[$i]}" >/dev/null 2>&1 || true
    unset "T_CLEANUP[$i]"
  done
}
_t_run_cleanup() {
  cleanup_since 0
  rm -rf "$T_TMP"
}
trap _t_run_cleanup EXIT
trap 'exit 130' INT TERM

# Wait up to $2 seconds (default 20) for command $1 to succeed.
wait_for() {
  local cmd=$1 secs=${2:-20} i
  for ((i = 0; i < secs * 10; i++)); do
    eval "$cmd" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# alive PID: PID runs. A daemon that exited may stay a zombie for a while
# (its parent, PID 1 here, reaps late): that is not running.
alive() {
  kill -0 "$1" 2>/dev/null && [ "$(cut -d')' -f2 "/proc/$1/stat" 2>/dev/null | cut -d' ' -f2)" != Z ]
}

# stop_pid PID: stop a process this suite started (by its id), waiting up to 10 s.
stop_pid() {
  [ -n "${1:-}" ] || return 0
  kill "$1" 2>/dev/null || return 0
  wait_for "! kill -0 $1" 10 || kill -9 "$1" 2>/dev/null
  return 0
}

system_lock() {
  exec {T_LOCK_FD}>/run/lock/vhostfix-system-tests.lock
  flock -w 3600 "$T_LOCK_FD"
}
# no_lock CMD...: run CMD without the lock's file descriptor. Every daemon must
# be started this way: a daemon that inherits the descriptor holds the lock for
# as long as it lives, and every other suite then waits for it.
no_lock() {
  if [ -n "${T_LOCK_FD:-}" ]; then "$@" {T_LOCK_FD}>&-; else "$@"; fi
}

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "$T_NAME: must run as root (starts libvirtd)" >&2
    exit 2
  fi
}

# What a libvirt daemon started by hand needs from the machine: the users and
# groups of Debian's packages, /dev/kvm as udev would set it.
libvirt_prereqs() {
  getent group kvm >/dev/null || groupadd -r kvm
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  getent group libvirt >/dev/null || groupadd -r libvirt
  id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -G kvm -d /var/lib/libvirt libvirt-qemu
  mkdir -p /var/log/libvirt/qemu /var/lib/libvirt /var/run/libvirt
  # Without udev, /dev/kvm can be root:root 0600 (Debian's udev rule makes it
  # root:kvm 0660). libvirt then probes QEMU with KVM but finds KVM unusable for
  # libvirt-qemu, so it declares its capabilities cache stale on every lookup and
  # re-probes QEMU: ~45 s for each define or create instead of ~0.5 s. Give
  # /dev/kvm the udev permissions while the suite runs (guests stay TCG).
  if [ -c /dev/kvm ] && [ "$(stat -c %G:%a /dev/kvm)" != kvm:660 ]; then
    on_exit "chown $(stat -c %U:%G /dev/kvm) /dev/kvm; chmod $(stat -c %a /dev/kvm) /dev/kvm"
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  fi
}

# host_daemon_pid NAME: the pid of this machine's own daemon NAME: root's
# (not a user's session daemon), in this mount namespace (not a container's)
# and with root / (not a chroot's). Empty when none runs.
host_daemon_pid() {
  local p
  for p in $(pgrep -u 0 -x "$1"); do
    [ "$(readlink "/proc/$p/ns/mnt")" = "$(readlink /proc/self/ns/mnt)" ] &&
      [ "$(readlink "/proc/$p/root")" = / ] && { echo "$p"; return 0; }
  done
}

# Start virtlogd and libvirtd as in the project's hook facts (root, no systemd).
libvirt_up() {
  libvirt_prereqs
  # Stop on exit only the daemons started here, by the PID in their pidfile
  # (a pidfile left by a daemon that was killed is removed first). A daemon
  # runs already when its system pidfile names a live process: a user's
  # session libvirtd, or a container's, is not this host's system daemon.
  local d
  for d in virtlogd libvirtd; do
    [ -n "$(host_daemon_pid "$d")" ] && continue
    rm -f "/run/$d.pid"
    no_lock "$d" -d
    wait_for "[ -s /run/$d.pid ] && kill -0 \$(cat /run/$d.pid)" 10
    on_exit "stop_pid $(cat "/run/$d.pid" 2>/dev/null)"
  done
  wait_for "${VIRSH[*]} version" 30 || { echo "$T_NAME: libvirtd did not come up" >&2; return 1; }
}

# libvirtd_start_again OLDPID [ARGS...]: stop libvirtd OLDPID (if it still
# runs) and start a new one with ARGS. Where this suite was to stop OLDPID on
# exit, it stops the new daemon instead, so a suite leaves running exactly the
# daemons that ran before it. Waits for the pidfile, not for the sockets
# (ARGS may move them).
libvirtd_start_again() {
  local old=$1 new
  shift
  stop_pid "$old"
  rm -f /run/libvirtd.pid
  no_lock libvirtd -d "$@"
  wait_for "[ -s /run/libvirtd.pid ]" 10
  new=$(cat /run/libvirtd.pid 2>/dev/null)
  cleanup_pid_moved "$old" "$new"
}
# cleanup_pid_moved OLD NEW: a daemon this suite is to stop on exit now runs
# as NEW (restarted): stop NEW instead of OLD.
cleanup_pid_moved() {
  local i
  for i in "${!T_CLEANUP[@]}"; do
    [ "${T_CLEANUP[$i]}" = "stop_pid $1" ] && T_CLEANUP[$i]="stop_pid $2"
  done
  return 0
}

# hook_config TEXT [ROOT]: make /etc/vhostfix/vhostfix.toml (under ROOT, a
# chroot, if given) hold TEXT. That is the file the hook reads under libvirtd,
# which runs hooks with a cleared environment (no VHOSTFIX_CONFIG). What was
# there before (a file, or nothing, and /etc/vhostfix itself) is put back by
# hook_config_restore, which runs on exit too, also on failure. One file at a
# time: restore before writing under another ROOT.
HOOK_CONF=/etc/vhostfix/vhostfix.toml
HOOK_CONF_SAVED=
HOOK_CONF_AT=
hook_config() {
  if [ -z "$HOOK_CONF_SAVED" ]; then
    HOOK_CONF_AT=${2:-}$HOOK_CONF
    HOOK_CONF_SAVED=$T_TMP/hook-config.saved
    rm -rf "$HOOK_CONF_SAVED"
    mkdir -p "$HOOK_CONF_SAVED"
    if [ -e "$HOOK_CONF_AT" ] || [ -L "$HOOK_CONF_AT" ]; then
      cp -a "$HOOK_CONF_AT" "$HOOK_CONF_SAVED/file"
    fi
    [ -d "${HOOK_CONF_AT%/*}" ] || : >"$HOOK_CONF_SAVED/no-dir"
    on_exit hook_config_restore
  elif [ "$HOOK_CONF_AT" != "${2:-}$HOOK_CONF" ]; then
    t_log "hook_config: $HOOK_CONF_AT is not restored yet"
    return 1
  fi
  mkdir -p "${HOOK_CONF_AT%/*}"
  printf '%s\n' "$1" >"$HOOK_CONF_AT"
}
hook_config_restore() {
  [ -n "$HOOK_CONF_SAVED" ] || return 0
  rm -f "$HOOK_CONF_AT"
  if [ -e "$HOOK_CONF_SAVED/file" ] || [ -L "$HOOK_CONF_SAVED/file" ]; then
    cp -a "$HOOK_CONF_SAVED/file" "$HOOK_CONF_AT"
  elif [ -e "$HOOK_CONF_SAVED/no-dir" ]; then
    rmdir "${HOOK_CONF_AT%/*}" 2>/dev/null
  fi
  rm -rf "$HOOK_CONF_SAVED"
  HOOK_CONF_SAVED=
  return 0
}

# doc_example DESC FILE MARKER TEXT: FILE (README.md and the like) shows TEXT
# in a ``` block between "<!-- MARKER: begin -->" and "<!-- MARKER: end -->".
# With VHOSTFIX_BLESS set, the block is rewritten first; the check fails when
# they differ, so an example in the docs is always what a test printed.
doc_example() {
  local desc=$1 file=$2 marker=$3 text=$4 shown
  if [ -n "${VHOSTFIX_BLESS:-}" ]; then
    if python3 - "$file" "$marker" "$text" <<'PY'; then
import re, sys
path, marker, text = sys.argv[1:4]
doc = open(path).read()
begin, end = "<!-- %s: begin -->" % marker, "<!-- %s: end -->" % marker
block = begin + "\n```\n" + text + "\n```\n" + end
new, n = re.subn(re.escape(begin) + ".*?" + re.escape(end), lambda m: block, doc, flags=re.S)
if n != 1:
    sys.exit("%s: no %s markers" % (path, marker))
open(path, "w").write(new)
PY
      t_log "$file: the $marker example rewritten (VHOSTFIX_BLESS)"
    fi
  fi
  shown=$(awk -v b="<!-- $marker: begin -->" -v e="<!-- $marker: end -->" \
    '$0 == b {on=1; next} $0 == e {on=0} on' "$file" | sed -e '1d' -e '$d')
  t_eq "$desc (VHOSTFIX_BLESS=1 rewrites it)" "$text" "$shown"
}

# tcg_domain NAME: a small TCG guest without disk (it boots nothing and just
# runs), with a user-mode NIC and a VNC display for screenshots.
tcg_domain() {
  cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <interface type='user'><model type='virtio'/></interface>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
    <video><model type='vga'/></video>
  </devices>
</domain>
XML
}

# Define-or-create helpers that always clean up after themselves.
# vm_define FILE NAME: define, and undefine (after destroy) on exit.
vm_cleanup_on_exit() {
  on_exit "${VIRSH[*]} destroy '$1'; ${VIRSH[*]} undefine '$1' --managed-save --nvram"
}

# syslog_capture: from now on, keep what programs log to syslog (/dev/log),
# for hook_log. Without a syslog daemon, the datagrams are received into
# $T_TMP/syslog; with a live one, its file is read from the current end on.
SYSLOG=$T_TMP/syslog
LOG_FROM=
syslog_capture() {
  local f
  if [ -S /dev/log ] && socat -u OPEN:/dev/null UNIX-CLIENT:/dev/log 2>/dev/null; then
    for f in /var/log/syslog /var/log/messages; do
      [ -f "$f" ] && { LOG_FROM="$f:$(stat -c %s "$f")"; break; }
    done
    t_log "a syslog daemon owns /dev/log; reading ${LOG_FROM%:*}"
  else
    rm -f /dev/log # absent, or a dead socket nobody listens on
    # Started directly (not through a function) so that $! is socat itself.
    socat -u UNIX-RECV:/dev/log,mode=0666 "OPEN:$SYSLOG,creat,append" {T_LOCK_FD}>&- &
    on_exit "stop_pid $!; rm -f /dev/log"
    wait_for "[ -S /dev/log ]" 10 || t_fail "syslog receiver on /dev/log did not start"
  fi
}
# hook_log: vhostfix's syslog messages since syslog_capture, one per line
# (datagrams carry no newline: split before every RFC 3164 header).
hook_log() {
  if [ -n "$LOG_FROM" ]; then
    tail -c +"$((${LOG_FROM##*:} + 1))" "${LOG_FROM%:*}"
  else
    [ -f "$SYSLOG" ] && cat "$SYSLOG"
  fi | sed -E 's/<[0-9]{1,3}>[A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8} /\n&/g' | grep -a 'vhostfix\[[0-9]*\]: '
}

# Open vSwitch with DPDK and no hugepages (see the project's OVS notes).
# Brings up bridge br-vhu; ports are added by the caller.
ovs_up() {
  update-alternatives --set ovs-vswitchd /usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk >/dev/null
  mkdir -p /run/openvswitch /var/log/openvswitch /var/lib/openvswitch
  if ! pgrep -x ovsdb-server >/dev/null; then
    rm -f /var/lib/openvswitch/conf.db
    ovsdb-tool create /var/lib/openvswitch/conf.db /usr/share/openvswitch/vswitch.ovsschema
    no_lock ovsdb-server /var/lib/openvswitch/conf.db --remote=punix:/run/openvswitch/db.sock \
      --pidfile=/run/openvswitch/ovsdb-server.pid --detach -vconsole:off --log-file=/var/log/openvswitch/ovsdb-server.log
    on_exit "stop_pid \$(cat /run/openvswitch/ovsdb-server.pid); rm -rf /run/openvswitch"
    ovs-vsctl --no-wait init
    ovs-vsctl --no-wait set Open_vSwitch . other_config:dpdk-init=true \
      other_config:dpdk-extra="--no-huge --legacy-mem -m 512 --no-pci" \
      other_config:per-port-memory=true other_config:pmd-maxsleep=10000
  fi
  if ! pgrep -x ovs-vswitchd >/dev/null; then
    no_lock ovs-vswitchd unix:/run/openvswitch/db.sock --pidfile=/run/openvswitch/ovs-vswitchd.pid \
      --detach -vconsole:off --log-file=/var/log/openvswitch/ovs-vswitchd.log
    on_exit "stop_pid \$(cat /run/openvswitch/ovs-vswitchd.pid); rm -rf /var/run/dpdk"
  fi
  wait_for "[ \"\$(ovs-vsctl get Open_vSwitch . dpdk_initialized)\" = true ]" 60 || return 1
  ovs-vsctl --may-exist add-br br-vhu -- set bridge br-vhu datapath_type=netdev
  on_exit "ovs-vsctl --if-exists del-br br-vhu"
  install -d -m 0755 -o libvirt-qemu -g libvirt-qemu /run/vhu-test
  on_exit "rm -rf /run/vhu-test"
}

# ovs_add_client_port NAME SOCKET: OVS connects (client) to QEMU's server socket.
ovs_add_client_port() {
  ovs-vsctl --if-exists del-port br-vhu "$1"
  ovs-vsctl add-port br-vhu "$1" -- set Interface "$1" type=dpdkvhostuserclient \
    options:vhost-server-path="$2"
}

# A proxy started without `admin_socket` in its configuration makes
# /run/vhostfix (the default admin socket's directory); a suite that found no
# such directory takes it away again (only if empty).
[ -e /run/vhostfix ] || on_exit "rmdir /run/vhostfix"

# deb_current: prints the path of this tree's .deb (target/debian/), built as
# packaging/INSTALL.md says when it is missing or older than what it ships.
deb_current() {
  local version deb
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -n 1)
  deb=$REPO/target/debian/vhostfix_${version}-1_$(dpkg --print-architecture).deb
  if [ ! -f "$deb" ] || [ -n "$(cd "$REPO" && find src hooks packaging integrations docs Cargo.toml -newer "$deb" -print -quit)" ]; then
    if ! command -v cargo-deb >/dev/null; then
      t_log "cargo-deb is not installed (see .ci/run): no .deb"
      return 1
    fi
    t_log "building the .deb"
    if ! (cd "$REPO" && packaging/build-assets.sh && cargo deb --no-build) >"$T_TMP/deb-build.log" 2>&1; then
      t_log "building the .deb failed: $(tail -n 5 "$T_TMP/deb-build.log")"
      return 1
    fi
  fi
  echo "$deb"
}

# hooks_aside: the qemu hooks other suites or the site left in
# /etc/libvirt/hooks (qemu, qemu.d) are moved aside for the suite and put
# back on exit, after whatever the suite made there is removed.
hooks_aside() {
  local hooks=/etc/libvirt/hooks saved=$T_TMP/saved-hooks f
  mkdir -p "$saved"
  for f in qemu qemu.d; do
    if [ -e "$hooks/$f" ] || [ -L "$hooks/$f" ]; then
      mv "$hooks/$f" "$saved/$f"
      on_exit "rm -rf '$hooks/$f'; mv '$saved/$f' '$hooks/$f'"
    fi
  done
}
