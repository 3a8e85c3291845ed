#!/usr/bin/env bash
# Transparent mode without libvirt socket units and without systemd
# (packaging/transparent-mode, layout "conf"): libvirt < 5.6 (CentOS 7's 4.5,
# ZStack's 4.9) has no libvirtd.socket, and a libvirtd started by an init
# script or by hand makes its own sockets. `transparent-mode enable` moves
# them with unix_sock_dir in libvirtd.conf, restarts libvirtd with its own
# command line, and starts `vhostfix proxy` on the old paths; `disable` puts
# libvirtd.conf back byte for byte.
#
# Run on two libvirtd, each without systemd:
#   1. this machine's libvirtd 9.0, started by hand (`libvirtd -d`);
#   2. Debian 11's libvirtd 7.0 in the cached chroot (tests/lib/release.sh),
#      started by its sysv init script (/etc/init.d/libvirtd); there also a
#      configuration that sets unix_sock_dir already is refused, and a missing
#      unix_sock_dir keeps libvirtd from starting (why the sockets go to the
#      persistent /var/lib/vhostfix/real).
# Each time: a TCG guest keeps running (same QEMU process) through enable,
# a simulated reboot and disable; plain `virsh` defines the seed through the
# proxy, `virsh -r` uses its read-only socket, virt-admin keeps working; after
# a reboot nothing bypasses the proxy until `transparent-mode start`.
# Root; holds the system test lock. Needs the glibc 2.17 build for the chroot
# (packaging/build-assets.sh; built here when missing).
T_NAME=transparent-conf.sh
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/release.sh"
need_root
[ -x "$VHOSTFIX" ] || { echo "$T_NAME: $VHOSTFIX missing: run cargo build --release" >&2; exit 2; }
system_lock
t_log "holding the system test lock after $SECONDS s"

D=$T_TMP
chmod 0755 "$D"
SEED=$REPO/examples/windows-vhostuser.xml
SEED_NAME=win2019-vhu
RUNNING=vhfx-tconf-running
CONF=/etc/libvirt/libvirtd.conf
REALDIR=/var/lib/vhostfix/real
tcg_domain "$RUNNING" >"$D/running.xml"
[ -e /var/log/vhostfix ] || on_exit "rm -rf /var/log/vhostfix"

# The target: this machine (IN empty) or the chroot (IN=rin). tx runs a
# command there, tm runs transparent-mode there, tv its own virsh.
IN=
TM_PATH=$REPO/packaging/transparent-mode
TM_BIN=$VHOSTFIX
tx() { if [ -n "$IN" ]; then rin "$@"; else "$@"; fi; }
tm() { no_lock tx env VHOSTFIX_BIN="$TM_BIN" sh "$TM_PATH" "$@"; }
tv() { tx virsh -c qemu:///system "$@"; }
lv_pid() { tx cat /run/libvirtd.pid 2>/dev/null; }
qemu_pid() { tx cat "/run/libvirt/qemu/$RUNNING.pid" 2>/dev/null; }
proxy_pid() { tx cat /run/vhostfix/transparent-proxy.pid 2>/dev/null; }
# What the proxy logged: to syslog when /dev/log exists, else the file.
proxy_log() {
  tx cat /var/log/vhostfix/proxy.log 2>/dev/null
  [ -z "$IN" ] && hook_log
}
# start_like_init: libvirtd started again as the host's boot would.
START_LIKE_INIT=(libvirtd -d)
# The host's libvirtd was started here (libvirt_up): a restart moves it.
moved() { [ -z "$IN" ] && cleanup_pid_moved "$1" "$2"; return 0; }

# cycle LABEL: enable, a reboot, disable; every check of both targets.
cycle() {
  local l=$1 out rc before_stat lv0 lv1 lv2 q0 tp
  tv destroy "$RUNNING" >/dev/null 2>&1
  out=$(tv create /dev/stdin <"$D/running.xml" 2>&1)
  t_contains "$l: a TCG guest runs" "$out" "Domain '$RUNNING' created"
  q0=$(qemu_pid)
  tx cat "$CONF" >"$D/conf.before"
  before_stat=$(tx stat -c '%a %U:%G %i' "$CONF")
  lv0=$(lv_pid)

  out=$(tm enable 2>&1)
  rc=$?
  t_eq "$l: transparent-mode enable succeeds (no systemd, no socket units)" 0 "$rc"
  [ "$rc" = 0 ] || t_log "enable said: $out"
  t_contains "$l: ... and says where everything went" "$out" \
    "enabled: libvirtd listens in $REALDIR (unix_sock_dir in $CONF), vhostfix proxy (pid"
  tp=$(proxy_pid)
  [ -n "$tp" ] && on_exit "stop_pid $tp"
  lv1=$(lv_pid)
  moved "$lv0" "$lv1"
  t_check "$l: libvirtd was restarted (new pid, with its own command line)" test -n "$lv1" -a "$lv1" != "$lv0"
  t_eq "$l: libvirtd.conf gained exactly the unix_sock_dir setting" \
    "# vhostfix transparent mode (transparent-mode disable removes this):|unix_sock_dir = \"$REALDIR\"" \
    "$(tx cat "$CONF" | diff "$D/conf.before" - | sed -n 's/^> //p' | paste -sd'|')"
  t_eq "$l: libvirtd's sockets (admin too) are in the root-only $REALDIR" "700 socket socket socket" \
    "$(tx stat -c %a "$REALDIR") $(tx stat -c %F "$REALDIR/libvirt-sock" "$REALDIR/libvirt-sock-ro" "$REALDIR/libvirt-admin-sock" | cut -d' ' -f1 | paste -sd' ')"
  t_eq "$l: the proxy owns libvirt-sock (0660) and -ro (0666)" "660 root:root 666 root:root" \
    "$(tx stat -c '%a %U:%G' /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro 2>&1 | paste -sd' ')"
  out=$(tm status 2>&1)
  t_eq "$l: status exits 0" 0 "$?"
  t_contains "$l: status says on" "$out" "transparent mode: on (libvirtd in $REALDIR via unix_sock_dir in $CONF"
  t_eq "$l: the guest kept running through libvirtd's restart (same QEMU)" "running $q0" \
    "$(tv domstate "$RUNNING" 2>&1 | head -n 1) $(qemu_pid)"

  tv undefine "$SEED_NAME" >/dev/null 2>&1
  out=$(tv define /dev/stdin <"$SEED" 2>&1)
  t_contains "$l: plain virsh -c qemu:///system define of the seed is accepted" "$out" "Domain '$SEED_NAME' defined"
  t_contains "$l: ... libvirtd (read through $REALDIR) stored virtio" \
    "$(tx virsh -c "qemu:///system?socket=$REALDIR/libvirt-sock" dumpxml "$SEED_NAME" 2>&1)" "<model type='virtio'/>"
  wait_for "proxy_log | grep -q \"proc=DOMAIN_DEFINE_XML domain='$SEED_NAME'\"" 5
  t_contains "$l: ... the proxy logged the rewrite" \
    "$(proxy_log | grep "proc=DOMAIN_DEFINE_XML domain='$SEED_NAME'")" "action=rewrite"
  t_eq "$l: vhostfix proxy --stats finds the proxy (its admin socket where the configuration puts it, not beside --listen) and counted the rewrite" \
    1 "$(tx "$TM_BIN" proxy --stats 2>&1 | awk '$1 == "calls_rewritten" {print $2}')"
  tv undefine "$SEED_NAME" >/dev/null 2>&1
  t_contains "$l: plain virsh -r works through the proxy's read-only socket" \
    "$(tx virsh -r -c qemu:///system list --name 2>&1)" "$RUNNING"
  t_contains "$l: ... and stays read-only" "$(tx virsh -r -c qemu:///system define /dev/stdin <"$SEED" 2>&1)" "read only"
  t_check "$l: virt-admin -c libvirtd:///system still works" tx virt-admin -c libvirtd:///system srv-list
  t_eq "$l: ... through the link to the moved admin socket" "$REALDIR/libvirt-admin-sock" \
    "$(tx readlink /run/libvirt/libvirt-admin-sock)"

  # A reboot: /run starts empty, the init starts libvirtd, nothing starts the proxy yet.
  stop_pid "$tp"
  tx kill "$lv1"
  wait_for "! alive $lv1" 30
  tx rm -f /run/libvirt/libvirt-admin-sock /run/vhostfix/transparent-proxy.pid
  no_lock tx "${START_LIKE_INIT[@]}" >/dev/null 2>&1
  wait_for "[ -n \"\$(lv_pid)\" ] && [ \"\$(lv_pid)\" != $lv1 ]" 10
  lv2=$(lv_pid)
  moved "$lv1" "$lv2"
  t_check "$l: after a reboot libvirtd starts, on $REALDIR (unix_sock_dir persists, so does the directory)" \
    wait_for "tx test -S $REALDIR/libvirt-sock" 30
  out=$(tv list 2>&1)
  t_contains "$l: ... clients find no socket until transparent-mode start (nothing goes around the proxy)" \
    "$out" "Failed to connect socket to '/var/run/libvirt/libvirt-sock'"
  t_eq "$l: ... status exits 1 and says what is missing" "1 yes" \
    "$(tm status >"$D/st" 2>&1; echo "$? $(grep -q "vhostfix proxy: not running (after a reboot: 'transparent-mode start')" "$D/st" && echo yes)")"
  out=$(tm start 2>&1)
  t_eq "$l: transparent-mode start succeeds" 0 "$?"
  tp=$(proxy_pid)
  [ -n "$tp" ] && on_exit "stop_pid $tp"
  t_contains "$l: ... plain virsh works again" "$(tv list --name 2>&1)" "$RUNNING"
  t_check "$l: ... and virt-admin" tx virt-admin -c libvirtd:///system srv-list
  t_eq "$l: the guest still runs (same QEMU)" "running $q0" "$(tv domstate "$RUNNING" 2>&1 | head -n 1) $(qemu_pid)"

  out=$(tm disable 2>&1)
  rc=$?
  t_eq "$l: transparent-mode disable succeeds" 0 "$rc"
  t_contains "$l: ... and says so" "$out" "disabled: libvirtd listens on its own sockets in /run/libvirt again ($CONF restored)"
  moved "$lv2" "$(lv_pid)"
  t_eq "$l: libvirtd.conf is restored byte for byte" "$(sha256sum <"$D/conf.before")" "$(tx cat "$CONF" | sha256sum)"
  t_eq "$l: ... with its mode, owner and inode" "$before_stat" "$(tx stat -c '%a %U:%G %i' "$CONF")"
  t_eq "$l: libvirtd's own sockets are back, the admin one too; the proxy stopped" "socket socket socket gone" \
    "$(tx stat -c %F /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro /run/libvirt/libvirt-admin-sock 2>&1 | cut -d' ' -f1 | paste -sd' ') $(alive "$tp" && echo running || echo gone)"
  t_contains "$l: plain virsh reaches libvirtd itself again (it refuses the seed)" \
    "$(tv define /dev/stdin <"$SEED" 2>&1)" "vhostuser requires the virtio-net* frontend"
  t_eq "$l: nothing of transparent mode is left" "" \
    "$(tx ls -d /var/lib/vhostfix/transparent $REALDIR /run/vhostfix/transparent-proxy.pid 2>/dev/null)"
  t_eq "$l: the guest still runs (same QEMU)" "running $q0" "$(tv domstate "$RUNNING" 2>&1 | head -n 1) $(qemu_pid)"
  tv destroy "$RUNNING" >/dev/null 2>&1
}

# missing_dir LABEL: why the sockets go to a persistent directory: libvirtd
# does not start when unix_sock_dir is missing (as a directory in /run that
# nobody made at boot would be). A second libvirtd, on a pid file of its own,
# fails before it touches anything.
missing_dir() {
  local out
  printf 'unix_sock_dir = "/run/libvirt/no-such-dir"\n' | tx sh -c 'cat >/tmp/vhfx-missing-dir.conf'
  out=$(no_lock tx libvirtd -d -f /tmp/vhfx-missing-dir.conf -p /run/vhfx-missing-dir.pid 2>&1)
  t_eq "$1: a libvirtd whose unix_sock_dir is missing does not start" \
    "1 Unable to initialize network sockets" "$? $(grep -o 'Unable to initialize network sockets' <<<"$out")"
  tx rm -f /tmp/vhfx-missing-dir.conf /run/vhfx-missing-dir.pid
}

# --- 1. this machine's libvirtd, started by hand --------------------------------------
if [ -d /run/systemd/system ]; then
  t_log "this machine runs systemd: the by-hand part is for machines without it; skipped"
else
  libvirt_up || exit 1
  syslog_capture
  [ -e /var/lib/vhostfix ] || on_exit "rm -rf /var/lib/vhostfix"
  # Whatever happens, the host's libvirtd.conf is what it was.
  cp -p "$CONF" "$D/host-libvirtd.conf"
  on_exit "cmp -s $D/host-libvirtd.conf $CONF || cat $D/host-libvirtd.conf >$CONF"
  on_exit "no_lock env VHOSTFIX_BIN=$VHOSTFIX sh $REPO/packaging/transparent-mode disable"
  on_exit "v destroy $RUNNING"
  t_check "libvirtd knows QEMU's capabilities (probed once)" timeout 300 "${VIRSH[@]}" domcapabilities --virttype qemu --arch x86_64
  t_log "this machine: $(host_release); libvirtd: $(tr '\0' ' ' </proc/"$(lv_pid)"/cmdline)"
  missing_dir "libvirt 9.0"
  cycle "libvirtd 9.0 by hand"
fi

# --- 2. libvirt 7.0 (Debian 11), started by its init script -----------------------------
if [ ! -x "$REPO/target/assets/vhostfix" ]; then
  t_log "building the glibc 2.17 binary for the chroot (packaging/build-assets.sh)"
  (cd "$REPO" && packaging/build-assets.sh) >"$D/assets.log" 2>&1 || t_log "build-assets.sh failed: $(tail -5 "$D/assets.log")"
fi
if release_up bullseye && release_binary; then
  HOST_RELEASE_LINE=$VHOSTFIX_RELEASE
  IN=rin
  TM_PATH=/usr/lib/vhostfix/transparent-mode
  TM_BIN=$RBIN
  install -D -m 0755 "$REPO/packaging/transparent-mode" "$R$TM_PATH"
  on_exit "rm -rf '$R/usr/lib/vhostfix' '$R/var/log/vhostfix' '$R/var/lib/vhostfix'"
  cp -p "$R$CONF" "$D/rel-libvirtd.conf"
  on_exit "cmp -s $D/rel-libvirtd.conf $R$CONF || cat $D/rel-libvirtd.conf >$R$CONF"
  on_exit "no_lock rin env VHOSTFIX_BIN=$RBIN sh $TM_PATH disable"
  # The init script starts libvirtd (as Debian 11 without systemd does).
  rin kill "$(lv_pid)"
  wait_for "! tx test -S /run/libvirt/libvirt-sock" 30
  out=$(rin /etc/init.d/libvirtd start 2>&1)
  t_check "libvirt 7.0: /etc/init.d/libvirtd start" wait_for "rin virsh -c qemu:///system version" 30
  t_log "libvirt 7.0: libvirtd: $(tr '\0' ' ' </proc/"$(lv_pid)"/cmdline) ($out)"
  START_LIKE_INIT=(/etc/init.d/libvirtd start)

  # A configuration that sets unix_sock_dir already is refused, untouched.
  printf 'unix_sock_dir = "/run/libvirt"\n' >>"$R$CONF"
  cp -p "$R$CONF" "$D/with-dir.conf"
  out=$(tm enable 2>&1)
  t_eq "libvirt 7.0: enable with unix_sock_dir already set exits 2" 2 "$?"
  t_contains "libvirt 7.0: ... naming the line" "$out" \
    "$CONF already sets unix_sock_dir (line $(wc -l <"$R$CONF"): unix_sock_dir = \"/run/libvirt\"); transparent mode moves libvirtd's sockets itself"
  t_check "libvirt 7.0: ... and changes nothing" cmp "$D/with-dir.conf" "$R$CONF"
  cat "$D/rel-libvirtd.conf" >"$R$CONF"
  missing_dir "libvirt 7.0"

  cycle "libvirt 7.0 by init script"
  VHOSTFIX_RELEASE="this machine ($(host_release)), and $HOST_RELEASE_LINE"
else
  t_fail "the libvirt 7.0 chroot comes up (tests/lib/release.sh)"
fi
t_log "done after $SECONDS s"
t_done
