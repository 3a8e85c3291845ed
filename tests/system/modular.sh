#!/usr/bin/env bash
# vhostfix against libvirt's modular daemons, as RHEL 9 and its rebuilds run
# them: virtqemud serves qemu:///system on /run/libvirt/virtqemud-sock,
# virtproxyd serves /run/libvirt/libvirt-sock (and TCP) and forwards to it,
# virtstoraged serves storage. They are built from Debian 12's libvirt source
# (tests/lib/modular.sh, cached) and started here by hand, without systemd,
# in a private mount namespace where they use libvirt's standard paths and
# cannot see or touch the host's libvirtd (see modular_private_root).
#
#  1. the qemu hook, installed by the packages' installer
#     (packaging/libvirt-hooks install): the installer finds virtqemud and
#     says it must reload; after SIGHUP virtqemud runs the hook, which refuses
#     at prepare exactly as on libvirtd and learns the release (9.0) from
#     virtqemud's own libvirt.so;
#  2. the proxy in front of virtqemud-sock and -ro (default upstream resolution):
#     define, attach-device, create (OVS-DPDK backend) of the seed, events,
#     vol-upload/download streams through virtstoraged, the read-only socket;
#  3. vhostfix audit finds virtqemud-sock by itself;
#  4. transparent mode without systemd (unix_sock_dir in virtqemud.conf): plain
#     and read-only clients, virtproxyd's local and TCP clients go through the
#     proxy and arrive there as uid 0 (the log and the per-user limits show
#     it), virt-admin keeps working, a running guest is not touched, a reboot
#     needs `transparent-mode start`, and disable restores virtqemud.conf byte
#     for byte.
# Root; holds the system test lock. A few minutes (the first build of the
# daemons, when the cache is missing, about 3 more).
T_NAME=modular.sh
. "$(dirname "$0")/../lib/modular.sh"
[ "$(id -u)" = 0 ] || { echo "$T_NAME: must run as root" >&2; exit 2; }
modular_reexec "$0" "$@"
. "$(dirname "$0")/../lib/common.sh"
[ -x "$VHOSTFIX" ] || { echo "$T_NAME: $VHOSTFIX missing: run cargo build --release" >&2; exit 2; }
system_lock
t_log "holding the system test lock after $SECONDS s"
modular_ensure || { t_fail "the modular daemons are built (see $MOD_CACHE.log)"; t_done; exit 1; }

D=$T_TMP
chmod 0755 "$D"
P=vhfx-mod-
SEED=$REPO/examples/windows-vhostuser.xml
SEED_NAME=win2019-vhu
FIX=$REPO/tests/system/fixtures
GRP=vhfx-mod-grp
USR=vhfx-mod-user
TCP_PORT=16599
TM=/usr/lib/vhostfix/transparent-mode

modular_private_root || { t_fail "a private root for the daemons"; t_done; exit 1; }
libvirt_prereqs
# The packaged files where the .deb and the .rpm put them (in this namespace only).
install -m 0755 "$VHOSTFIX" /usr/bin/vhostfix
for f in libvirt-hooks transparent-mode; do install -D -m 0755 "$REPO/packaging/$f" "/usr/lib/vhostfix/$f"; done
install -D -m 0755 "$REPO/hooks/qemu-dispatcher" /usr/lib/vhostfix/qemu-dispatcher
# A site group whose members may use virtproxyd's socket and the proxy's.
groupadd "$GRP" && useradd -M -d /nonexistent -s /bin/sh -G "$GRP" "$USR"
mkdir -p /etc/vhostfix
cat >/etc/vhostfix/vhostfix.toml <<EOF
[proxy]
allowed_groups = ["$GRP"]
socket_group = "$GRP"
max_clients_per_user = 1
admin_socket = "/run/libvirt/vhostfix-admin-sock"

# The suite checks the hook's refusal of a guest whose memory is not shared
# (the default only warns).
[hook.checks]
shared_memory = "deny"
EOF
# virtproxyd started without socket activation listens on TCP when its
# configuration says so (it has no --listen).
cat >>/etc/libvirt/virtproxyd.conf <<EOF
unix_sock_group = "$GRP"
unix_sock_rw_perms = "0770"
auth_unix_rw = "none"
listen_tcp = 1
listen_tls = 0
listen_addr = "127.0.0.1"
tcp_port = "$TCP_PORT"
auth_tcp = "none"
EOF

for d in virtlogd virtlockd virtqemud virtstoraged; do
  modular_start "$d" || t_fail "$d starts" "$(ls -la /run/libvirt)"
done
modular_start virtproxyd || t_fail "virtproxyd starts"
wait_for "[ -S /run/libvirt/virtqemud-sock ] && [ -S /run/libvirt/libvirt-sock ]" 10
ver=$(virt-admin -c virtqemud:///system version 2>/dev/null | sed -n 's/^Running against daemon: //p')
VHOSTFIX_RELEASE="virtqemud (libvirt ${ver:-unknown}, built from Debian 12's source; virtproxyd, virtstoraged; no systemd)"
t_eq "virtqemud runs and answers virt-admin" "$MOD_VERSION" "$ver"
t_eq "no libvirtd here: libvirt-sock and libvirt-admin-sock are virtproxyd's" \
  "virtproxyd" "$(virt-admin -c libvirtd:///system srv-list 2>&1 | awk '$2 == "virtproxyd" {print $2}')"
t_check "virtqemud knows QEMU's capabilities (probed once)" \
  timeout 300 virsh -c qemu:///system domcapabilities --virttype qemu --arch x86_64
VQ=(virsh -q -c qemu:///system)
undefine() { "${VQ[@]}" destroy "$1" >/dev/null 2>&1; "${VQ[@]}" undefine "$1" >/dev/null 2>&1; true; }
on_exit "for d in \$(virsh -q -c qemu:///system list --all --name); do virsh -c qemu:///system destroy \$d; virsh -c qemu:///system undefine \$d; done"

# --- 1. the qemu hook ---------------------------------------------------------
syslog_capture
out=$(sh /usr/lib/vhostfix/libvirt-hooks install 2>&1)
t_contains "libvirt-hooks install links the hook into qemu.d" "$out" \
  "qemu hook: /etc/libvirt/hooks/qemu.d/50-vhostfix -> /usr/bin/vhostfix (libvirt $MOD_VERSION runs qemu.d/ itself)"
t_contains "... finds virtqemud and says it must reload" "$out" \
  "virtqemud (pid $(cat /run/virtqemud.pid)) was started before the hook existed"
# A recorder before the hook: which process runs the qemu.d scripts, and
# which libvirt.so it has mapped.
cat >/etc/libvirt/hooks/qemu.d/40-record <<'EOF'
#!/bin/sh
cat >/dev/null
echo "$1 $2 $3 exe=$(readlink /proc/$PPID/exe) lib=$(grep -o '/[^ ]*/libvirt\.so\.0\.[0-9.]*' /proc/$PPID/maps | head -n 1)" >>/run/libvirt/hook-calls
EOF
chmod 0755 /etc/libvirt/hooks/qemu.d/40-record
kill -HUP "$(cat /run/virtqemud.pid)"
wait_for "virsh -c qemu:///system version" 30

UNSHARED=${P}unshared
sed -e "s/vhostfix-t-hook-unshared/$UNSHARED/" -e "s|/run/vhostfix-t-hook/|/run/vhu-test/|" \
  "$FIX/vhu-unshared.xml" >"$D/unshared.xml"
undefine "$UNSHARED"
t_check "a vhost-user guest without shared memory defines on virtqemud" "${VQ[@]}" define "$D/unshared.xml"
out=$(timeout 60 virsh -c qemu:///system start "$UNSHARED" 2>&1)
t_eq "virsh start of it fails" 1 "$?"
# What the hook says for libvirt 9.0.0, run by hand; virtqemud must show the same.
want=$(VHOSTFIX_LOG=stderr:off VHOSTFIX_LIBVIRT_VERSION=$MOD_VERSION /usr/bin/vhostfix hook qemu "$UNSHARED" prepare begin - \
  <"$D/unshared.xml" 2>&1)
t_contains "the hook refused it at prepare with the text it gives for libvirt $MOD_VERSION" "$out" "$want"
t_contains "... which names the NIC and the reason" "$want" \
  "vhostfix refused to start domain '$UNSHARED': vhost-user nic 0 (52:54:00:5a:02:01) on socket /run/vhu-test/unshared.sock needs shared guest memory"
t_contains "... with the memfd alternative, which libvirt before 11.2 accepts (the release is known)" "$out" \
  "(or <source type='memfd'/>)"
nover=$(VHOSTFIX_LOG=stderr:off /usr/bin/vhostfix hook qemu "$UNSHARED" prepare begin - <"$D/unshared.xml" 2>&1)
t_not_contains "(a hook that cannot learn the release gives other advice)" "$nover" "(or <source type='memfd'/>)"
t_eq "the domain stays shut off" "shut off" "$("${VQ[@]}" domstate "$UNSHARED" 2>&1)"
rec=$(grep "^$UNSHARED prepare begin" /run/libvirt/hook-calls 2>/dev/null)
t_eq "virtqemud itself ran the qemu.d scripts, with the build's libvirt.so mapped" \
  "$UNSHARED prepare begin exe=$MOD_PREFIX/sbin/virtqemud lib=$MOD_PREFIX/lib/x86_64-linux-gnu/libvirt.so.0.9000.0" "$rec"
wait_for "hook_log | grep -q \"domain='$UNSHARED' op=prepare/begin\"" 5
t_contains "the hook logged its decision to syslog" "$(hook_log | grep "domain='$UNSHARED' op=prepare/begin")" "action=deny"
undefine "$UNSHARED"

TINY=${P}tcg
tcg_domain "$TINY" >"$D/tiny.xml"
undefine "$TINY"
t_check "a plain TCG guest starts with the hook installed" timeout 120 "${VQ[@]}" create "$D/tiny.xml"
wait_for "hook_log | grep -q \"domain='$TINY' op=prepare/begin\"" 5
t_contains "... the hook allowed it" "$(hook_log | grep "domain='$TINY' op=prepare/begin")" "action=allow"
undefine "$TINY"

# --- 2. the proxy in front of virtqemud-sock ----------------------------------------
SOCK=$D/sock
ROSOCK=$D/sock-ro
PU="qemu:///system?socket=$SOCK"
VP=(virsh -q -c "$PU")
printf '[proxy]\nadmin_socket = "%s"\n' "$D/admin-sock" >"$D/proxy.toml"
# No --upstream: the default is virtqemud-sock because it exists (and -ro for --listen-ro).
VHOSTFIX_LOG=stderr:info "$VHOSTFIX" --config "$D/proxy.toml" proxy --listen "$SOCK" --listen-ro "$ROSOCK" \
  2>"$D/proxy.log" {T_LOCK_FD}>&- &
PROXY_PID=$!
on_exit "stop_pid $PROXY_PID"
wait_for "[ -S '$SOCK' ] && [ -S '$ROSOCK' ]" 15 || t_fail "the proxy starts" "$(cat "$D/proxy.log")"
log=$(cat "$D/proxy.log")
t_contains "the proxy picks virtqemud-sock by itself" "$log" "listening on $SOCK (read-write) -> /run/libvirt/virtqemud-sock"
t_contains "... and virtqemud-sock-ro for its read-only socket" "$log" "listening on $ROSOCK (read-only) -> /run/libvirt/virtqemud-sock-ro"

undefine "$SEED_NAME"
out=$(virsh -c qemu:///system define "$SEED" 2>&1)
t_contains "virtqemud itself refuses the seed (e1000 on vhost-user)" "$out" "vhostuser requires the virtio-net* frontend"
out=$(virsh -c "$PU" define "$SEED" 2>&1)
t_contains "virsh define of the seed through the proxy succeeds" "$out" "Domain '$SEED_NAME' defined"
t_contains "virtqemud stored a virtio NIC" "$("${VQ[@]}" dumpxml "$SEED_NAME")" "<model type='virtio'/>"
t_contains "the proxy logged the rewrite with virtqemud's release" "$(cat "$D/proxy.log")" \
  "proc=DOMAIN_DEFINE_XML domain='$SEED_NAME' verdict=windows"
t_contains "... libvirt=$MOD_VERSION" "$(grep "proc=DOMAIN_DEFINE_XML domain='$SEED_NAME'" "$D/proxy.log")" "libvirt=$MOD_VERSION action=rewrite"
undefine "$SEED_NAME"

sed -e '/<interface/,/<\/interface>/d' -e "s/win2019-vhu/${P}attach/" \
  -e 's/5f1c2a0e-8d4b-4a53-9a6e-2b7c9d1e0f01/5f1c2a0e-8d4b-4a53-9a6e-2b7c9d1e0f09/' "$SEED" >"$D/nonic.xml"
undefine "${P}attach"
"${VQ[@]}" define "$D/nonic.xml" >/dev/null
out=$(virsh -c qemu:///system attach-device "${P}attach" "$FIX/vhu-nic-e1000.xml" --config 2>&1)
t_contains "virtqemud refuses attach-device of an e1000 vhost-user NIC" "$out" "virtio-net"
out=$(virsh -c "$PU" attach-device "${P}attach" "$FIX/vhu-nic-e1000.xml" --config 2>&1)
t_contains "attach-device --config through the proxy succeeds" "$out" "Device attached successfully"
t_contains "... the attached NIC is virtio" "$("${VQ[@]}" dumpxml --inactive "${P}attach")" "<model type='virtio'/>"
undefine "${P}attach"

if ovs_up; then
  OVSLOG=/var/log/openvswitch/ovs-vswitchd.log
  n0=$(wc -l <"$OVSLOG" 2>/dev/null || echo 0)
  ovs_add_client_port vhu0 /run/vhu-test/vhu0.sock
  out=$(timeout 120 virsh -c "$PU" create "$SEED" 2>&1)
  t_contains "virsh create of the seed through the proxy starts it on virtqemud" "$out" "Domain '$SEED_NAME' created"
  t_contains "... with a virtio NIC" "$("${VQ[@]}" dumpxml "$SEED_NAME" 2>&1)" "<model type='virtio'/>"
  if wait_for "tail -n +$((n0 + 1)) $OVSLOG | grep -q 'vhu0.sock) connected'" 30; then
    t_ok "OVS reports the vhost-user port connected"
  else
    t_fail "OVS reports the vhost-user port connected" "$(tail -5 "$OVSLOG")"
  fi
  undefine "$SEED_NAME"
  ovs-vsctl --if-exists del-port br-vhu vhu0
else
  t_fail "Open vSwitch with DPDK comes up"
fi

# Events and streams through the proxy.
timeout 90 virsh -c "$PU" event --all --loop --timeout 60 >"$D/events.out" 2>&1 &
EV=$!
sleep 1
t_check "start of a TCG guest through the proxy" timeout 120 "${VP[@]}" create "$D/tiny.xml"
t_check "destroy through the proxy" "${VP[@]}" destroy "$TINY"
sleep 1
kill "$EV" 2>/dev/null
wait "$EV" 2>/dev/null
t_contains "event --all through the proxy: started" "$(cat "$D/events.out")" "lifecycle' for domain '$TINY': Started"
t_contains "event --all through the proxy: stopped" "$(cat "$D/events.out")" "lifecycle' for domain '$TINY': Stopped"
mkdir -p "$D/pool"
t_check "a directory pool (virtstoraged, reached through virtqemud)" "${VQ[@]}" pool-create-as "${P}pool" dir --target "$D/pool"
on_exit "virsh -c qemu:///system pool-destroy ${P}pool"
head -c $((8 << 20)) /dev/urandom >"$D/blob"
"${VQ[@]}" vol-create-as "${P}pool" up.raw "$(stat -c %s "$D/blob")" --format raw >/dev/null
t_check "vol-upload (8 MiB stream) through the proxy" timeout 60 "${VP[@]}" vol-upload up.raw "$D/blob" --pool "${P}pool"
t_eq "the volume is byte-identical" "$(sha256sum <"$D/blob")" "$(sha256sum <"$D/pool/up.raw")"
timeout 60 "${VP[@]}" vol-download up.raw "$D/down" --pool "${P}pool"
t_eq "vol-download through the proxy is byte-identical" "$(sha256sum <"$D/blob")" "$(sha256sum <"$D/down" 2>&1)"
t_contains "virsh -r through the read-only socket" "$(virsh -r -c "qemu:///system?socket=$ROSOCK" pool-list --name 2>&1)" "${P}pool"
t_contains "... stays read-only" "$(virsh -r -c "qemu:///system?socket=$ROSOCK" define "$SEED" 2>&1)" "read only"
stop_pid "$PROXY_PID"

# --- 3. audit -------------------------------------------------------------------------
"${VQ[@]}" define "$D/unshared.xml" >/dev/null
strace -f -qq -e trace=connect -o "$D/audit.strace" "$VHOSTFIX" audit --json >"$D/audit.json" 2>"$D/audit.err"
t_eq "vhostfix audit exits 3 (a domain vhostfix cannot make work)" 3 "$?"
t_contains "audit connected to virtqemud-sock by itself" "$(cat "$D/audit.strace")" 'sun_path="/run/libvirt/virtqemud-sock"'
t_not_contains "... and not to libvirt-sock (virtproxyd's)" "$(cat "$D/audit.strace")" 'sun_path="/run/libvirt/libvirt-sock"'
t_eq "audit: virtqemud's release and the refused guest" "9.0.0 refused" \
  "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["libvirt"], [r["result"] for r in d["domains"] if r["domain"]==sys.argv[2]][0])' \
    "$D/audit.json" "$UNSHARED" 2>&1)"
undefine "$UNSHARED"

# --- 4. transparent mode without systemd ----------------------------------------------
RUNNING=${P}running
tcg_domain "$RUNNING" >"$D/running.xml"
t_check "a TCG guest runs before transparent mode" timeout 120 "${VQ[@]}" create "$D/running.xml"
qpid() { cat "/run/libvirt/qemu/$RUNNING.pid" 2>/dev/null; }
QPID=$(qpid)
cp -p /etc/libvirt/virtqemud.conf "$D/virtqemud.conf.before"
CONF_STAT=$(stat -c '%a %U:%G %i' /etc/libvirt/virtqemud.conf)
VQ_PID=$(cat /run/virtqemud.pid)
on_exit "no_lock $TM disable"
out=$(no_lock "$TM" enable 2>&1)
t_eq "transparent-mode enable (virtqemud started by hand) succeeds" 0 "$?"
t_contains "... and says where everything went" "$out" \
  "enabled: virtqemud listens in /var/lib/vhostfix/real (unix_sock_dir in /etc/libvirt/virtqemud.conf), vhostfix proxy (pid"
TPROXY=$(cat /run/vhostfix/transparent-proxy.pid 2>/dev/null)
on_exit "stop_pidfile /run/vhostfix/transparent-proxy.pid vhostfix"
t_eq "the proxy it started runs (pidfile /run/vhostfix/transparent-proxy.pid)" vhostfix "$(cat "/proc/$TPROXY/comm" 2>/dev/null)"
t_eq "virtqemud.conf gained exactly the unix_sock_dir setting" \
  "# vhostfix transparent mode (transparent-mode disable removes this):|unix_sock_dir = \"/var/lib/vhostfix/real\"" \
  "$(diff "$D/virtqemud.conf.before" /etc/libvirt/virtqemud.conf | sed -n 's/^> //p' | paste -sd'|')"
t_check "virtqemud was restarted (new pid)" test "$(cat /run/virtqemud.pid)" != "$VQ_PID"
t_eq "virtqemud's sockets are in the root-only /var/lib/vhostfix/real" "700 socket socket socket" \
  "$(cd /var/lib/vhostfix/real && stat -c %a . | tr '\n' ' ' && stat -c %F virtqemud-sock virtqemud-sock-ro virtqemud-admin-sock | cut -d' ' -f1 | paste -sd' ')"
t_eq "the proxy owns virtqemud-sock (0660, group $GRP) and -ro (0666)" "660 root:$GRP 666 root:$GRP" \
  "$(stat -c '%a %U:%G' /run/libvirt/virtqemud-sock /run/libvirt/virtqemud-sock-ro | paste -sd' ')"
out=$(no_lock "$TM" status 2>&1)
t_eq "status exits 0" 0 "$?"
t_contains "status says on" "$out" "transparent mode: on (virtqemud in /var/lib/vhostfix/real via unix_sock_dir in /etc/libvirt/virtqemud.conf"
t_eq "the running guest kept running through virtqemud's restart (same QEMU)" "running $QPID" \
  "$("${VQ[@]}" domstate "$RUNNING" 2>&1) $(qpid)"

stat_of() { vhostfix proxy --stats 2>/dev/null | awk -v k="$1" '$1 == k {print $2}'; }
n0=$(stat_of calls_rewritten)
out=$(virsh -c qemu:///system define "$SEED" 2>&1)
t_contains "plain virsh -c qemu:///system define of the seed is accepted" "$out" "Domain '$SEED_NAME' defined"
t_eq "... it went through the proxy (calls_rewritten +1)" "$((${n0:-0} + 1))" "$(stat_of calls_rewritten)"
t_contains "... virtqemud stored virtio" "$(virsh -c "qemu:///system?socket=/var/lib/vhostfix/real/virtqemud-sock" dumpxml "$SEED_NAME")" "<model type='virtio'/>"
undefine "$SEED_NAME"
t_contains "plain virsh -r goes through the proxy's read-only socket" "$(virsh -r -c qemu:///system list --name 2>&1)" "$RUNNING"
t_check "virt-admin -c virtqemud:///system still works (its socket moved; the canonical path is a link)" \
  virt-admin -c virtqemud:///system srv-list
t_eq "... the link" "/var/lib/vhostfix/real/virtqemud-admin-sock" "$(readlink /run/libvirt/virtqemud-admin-sock)"

# virtproxyd's clients (local libvirt-sock, and TCP) reach virtqemud through the proxy, as uid 0.
VPD_PID=$(cat /run/virtproxyd.pid)
for via in "qemu:///system?mode=legacy" "qemu+tcp://127.0.0.1:$TCP_PORT/system"; do
  n0=$(stat_of calls_rewritten)
  out=$(virsh -c "$via" define "$SEED" 2>&1)
  t_contains "virsh -c $via define of the seed (through virtproxyd) is accepted" "$out" "Domain '$SEED_NAME' defined"
  t_eq "... the proxy rewrote it (calls_rewritten +1)" "$((${n0:-0} + 1))" "$(stat_of calls_rewritten)"
  undefine "$SEED_NAME"
done
wait_for "[ \$(hook_log | grep -c \"uid=0 pid=$VPD_PID proc=DOMAIN_DEFINE_XML domain='$SEED_NAME'\") -ge 2 ]" 5
t_eq "the proxy logged both as uid=0 with virtproxyd's pid" 2 \
  "$(hook_log | grep -c "uid=0 pid=$VPD_PID proc=DOMAIN_DEFINE_XML domain='$SEED_NAME'")"
line=$(hook_log | grep "uid=0 pid=$VPD_PID proc=DOMAIN_DEFINE_XML domain='$SEED_NAME'" | tail -n 1)
t_log "proxy log line for a client of virtproxyd: ${line#*vhostfix[}"
# Per-user limits: max_clients_per_user = 1 for $USR on the proxy's own
# socket; through virtproxyd the proxy sees root, so they do not apply.
out=$(runuser -u "$USR" -- env HOME=/tmp XDG_RUNTIME_DIR=/tmp python3 - <<'PY' 2>/dev/null
import libvirt
libvirt.registerErrorHandler(lambda *a: None, None)
held = []
def try_open(label, uri):
    try:
        c = libvirt.open(uri)
        c.getLibVersion()
        held.append(c)
        print(label, "ok")
    except libvirt.libvirtError as e:
        print(label, "refused:", e.get_error_message())
try_open("direct-1", "qemu:///system")
try_open("direct-2", "qemu:///system")
try_open("virtproxyd-1", "qemu:///system?mode=legacy")
try_open("virtproxyd-2", "qemu:///system?mode=legacy")
PY
)
t_contains "$USR ($GRP): a first connection to the proxy's socket is admitted" "$out" "direct-1 ok"
t_contains "... a second one is refused by max_clients_per_user = 1" "$out" \
  "vhostfix proxy: uid $(id -u "$USR") already holds 1 connections (proxy.max_clients_per_user)"
t_contains "... through virtproxyd the proxy sees root: a first connection" "$out" "virtproxyd-1 ok"
t_contains "... and a second one, not limited per user" "$out" "virtproxyd-2 ok"

# A reboot: /run is empty, the daemon starts as the init would, the proxy does not yet.
stop_pidfile /run/vhostfix/transparent-proxy.pid vhostfix
VQ_ARGV=$(tr '\0' ' ' </proc/"$(cat /run/virtqemud.pid)"/cmdline)
stop_pidfile /run/virtqemud.pid virtqemud
rm -f /run/libvirt/virtqemud-admin-sock /run/vhostfix/transparent-proxy.pid
# shellcheck disable=SC2086
no_lock $VQ_ARGV
t_check "after a reboot virtqemud starts on its moved sockets (unix_sock_dir survives)" \
  wait_for "[ -S /var/lib/vhostfix/real/virtqemud-sock ]" 10
out=$(virsh -c qemu:///system list 2>&1)
t_contains "... until 'transparent-mode start', clients find no socket (no way around the proxy)" "$out" "Failed to connect socket"
t_eq "... status says so (exit 1)" 1 "$(no_lock "$TM" status >/dev/null 2>&1; echo $?)"
out=$(no_lock "$TM" start 2>&1)
t_eq "transparent-mode start succeeds" 0 "$?"
TPROXY=$(cat /run/vhostfix/transparent-proxy.pid 2>/dev/null)
t_contains "... plain virsh works again" "$(virsh -c qemu:///system list --name 2>&1)" "$RUNNING"
t_check "... and virt-admin" virt-admin -c virtqemud:///system srv-list
t_eq "... status exits 0" 0 "$(no_lock "$TM" status >/dev/null 2>&1; echo $?)"

out=$(no_lock "$TM" disable 2>&1)
t_eq "transparent-mode disable succeeds" 0 "$?"
t_contains "... and says so" "$out" "disabled: virtqemud listens on its own sockets in /run/libvirt again (/etc/libvirt/virtqemud.conf restored)"
t_check "virtqemud.conf is restored byte for byte" cmp "$D/virtqemud.conf.before" /etc/libvirt/virtqemud.conf
t_eq "... with its mode, owner and inode" "$CONF_STAT" "$(stat -c '%a %U:%G %i' /etc/libvirt/virtqemud.conf)"
t_eq "virtqemud owns its sockets again, no link; the proxy stopped" "socket socket socket gone" \
  "$(cd /run/libvirt && stat -c %F virtqemud-sock virtqemud-sock-ro virtqemud-admin-sock | cut -d' ' -f1 | paste -sd' ') $(alive "$TPROXY" && echo running || echo gone)"
t_contains "plain virsh reaches virtqemud itself (it refuses the seed again)" \
  "$(virsh -c qemu:///system define "$SEED" 2>&1)" "vhostuser requires the virtio-net* frontend"
t_eq "nothing of transparent mode is left" "" \
  "$(ls -d /var/lib/vhostfix/transparent /var/lib/vhostfix/real /run/vhostfix/transparent-proxy.pid 2>/dev/null)"
t_eq "the guest still runs in the same QEMU" "running $QPID" "$("${VQ[@]}" domstate "$RUNNING" 2>&1) $(qpid)"
out=$(no_lock "$TM" disable 2>&1)
t_eq "a second disable is a no-op" "0|transparent-mode: transparent mode is off; nothing to undo" "$?|$out"
undefine "$RUNNING"
t_log "done after $SECONDS s"
t_done
