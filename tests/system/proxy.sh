#!/usr/bin/env bash
# System tests of `vhostfix proxy` (the libvirt API admission proxy) against the
# real libvirtd: XML rewriting for virsh and python3-libvirt, device XML,
# denial, access control, read-only relay, robustness, signals, and a broad
# virsh session compared with the same commands sent directly.
# Needs root, libvirt-daemon-system, qemu-system-x86, python3-libvirt, socat,
# openvswitch-switch-dpdk (see .ci/run).
T_NAME=proxy.sh
. "$(dirname "$0")/../lib/common.sh"
need_root
system_lock
libvirt_up || exit 1

PY=/usr/bin/python3
SEED=$REPO/examples/windows-vhostuser.xml
D=$T_TMP
chmod 0755 "$D"
SOCK=$D/libvirt-sock
ROSOCK=$D/libvirt-sock-ro
PU="qemu:///system?socket=$SOCK"
VP=(virsh -q -c "$PU")
VD=("${VIRSH[@]}")
# Not quiet: the success messages are checked.
VPV=(virsh -c "$PU")
USER_T=vhfx-proxy-test
GROUP_T=vhfx-proxy-grp
PROXY_PID=
: >"$D/proxy.toml"

start_proxy() {
  VHOSTFIX_LOG=stderr:info "$VHOSTFIX" --config "$D/proxy.toml" proxy --listen "$SOCK" \
    --upstream /run/libvirt/libvirt-sock --listen-ro "$ROSOCK" "$@" 2>>"$D/proxy.log" {T_LOCK_FD}>&- &
  PROXY_PID=$!
  wait_for "[ -S '$SOCK' ] && [ -S '$ROSOCK' ]" 15
}
stop_proxy() {
  [ -n "$PROXY_PID" ] || return 0
  kill -TERM "$PROXY_PID" 2>/dev/null
  wait "$PROXY_PID" 2>/dev/null
  PROXY_PID=
}
on_exit 'stop_proxy'
undefine() { "${VD[@]}" destroy "$1" >/dev/null 2>&1; "${VD[@]}" undefine "$1" --managed-save >/dev/null 2>&1; true; }

start_proxy || { t_fail "proxy starts" "$(cat "$D/proxy.log")"; t_done; exit 1; }
t_ok "proxy starts and creates its sockets"
t_eq "socket mode is 0660 root:root" "660 root root" "$(stat -c '%a %U %G' "$SOCK")"

# --- 1. rewriting --------------------------------------------------------------
SEED_NAME=win2019-vhu
undefine "$SEED_NAME"
vm_cleanup_on_exit "$SEED_NAME"
out=$("${VD[@]}" define "$SEED" 2>&1)
t_contains "direct define of the seed is refused by libvirt" "$out" "vhostuser requires the virtio-net"
out=$("${VPV[@]}" define "$SEED" 2>&1)
t_contains "virsh define through the proxy succeeds" "$out" "Domain '$SEED_NAME' defined"
xml=$("${VD[@]}" dumpxml "$SEED_NAME" 2>&1)
t_contains "dumpxml via the real socket shows virtio" "$xml" "<model type='virtio'/>"
t_not_contains "no e1000 left" "$xml" "e1000"
t_contains "the decision is logged" "$(cat "$D/proxy.log")" "proc=DOMAIN_DEFINE_XML domain='win2019-vhu' verdict=windows"
undefine "$SEED_NAME"

out=$($PY - "$PU" "$SEED" <<'PYEOF' 2>&1
import sys, libvirt
c = libvirt.open(sys.argv[1])
d = c.defineXML(open(sys.argv[2]).read())
print("defined", d.name())
print("virtio" if "<model type='virtio'/>" in d.XMLDesc(0) else "NOT virtio")
c.close()
PYEOF
)
t_contains "python3-libvirt defineXML through the proxy" "$out" "defined $SEED_NAME"
t_contains "python3-libvirt sees virtio" "$out" "virtio"
t_not_contains "python3-libvirt: no e1000" "$out" "NOT virtio"

# attach-device --config of an e1000 vhost-user NIC to a defined Windows domain.
NONIC=$D/win-nonic.xml
sed -e '/<interface/,/<\/interface>/d' -e 's/win2019-vhu/win-attach/' \
  -e 's/5f1c2a0e-8d4b-4a53-9a6e-2b7c9d1e0f01/5f1c2a0e-8d4b-4a53-9a6e-2b7c9d1e0f02/' "$SEED" >"$NONIC"
undefine win-attach
vm_cleanup_on_exit win-attach
"${VD[@]}" define "$NONIC" >/dev/null
out=$("${VD[@]}" attach-device win-attach "$REPO/tests/system/fixtures/vhu-nic-e1000.xml" --config 2>&1)
t_contains "direct attach-device of an e1000 vhost-user NIC is refused" "$out" "virtio-net"
out=$("${VPV[@]}" attach-device win-attach "$REPO/tests/system/fixtures/vhu-nic-e1000.xml" --config 2>&1)
t_contains "attach-device --config through the proxy succeeds" "$out" "Device attached successfully"
xml=$("${VD[@]}" dumpxml --inactive win-attach)
t_contains "attached NIC is virtio" "$xml" "<model type='virtio'/>"
t_contains "device decision took the domain's OS" "$(cat "$D/proxy.log")" "proc=DOMAIN_ATTACH_DEVICE_FLAGS domain='win-attach' verdict=windows"
undefine win-attach

# A call vhostfix forwards unchanged and libvirt refuses: the client gets
# libvirt's error, same code and domain, with vhostfix's reason and fix after
# libvirt's text (issue 20: virsh users saw only libvirt's bare message).
OTHER=$D/other.xml
sed -e 's/win2019-vhu/vhostfix-t-proxy-other/' \
  -e 's/5f1c2a0e-8d4b-4a53-9a6e-2b7c9d1e0f01/5f1c2a0e-8d4b-4a53-9a6e-2b7c9d1e0f03/' \
  -e 's#<metadata>#<metadata><vhostfix:guest xmlns:vhostfix="urn:vhostfix:guest:1" os="other"/>#' "$SEED" >"$OTHER"
undefine vhostfix-t-proxy-other
vm_cleanup_on_exit vhostfix-t-proxy-other
direct=$("${VD[@]}" define "$OTHER" 2>&1)
t_contains "direct define of a non-Windows e1000 guest: libvirt refuses it" "$direct" "vhostuser requires the virtio-net"
out=$("${VP[@]}" define "$OTHER" 2>&1)
t_contains "through the proxy: libvirt's own text first" "$out" "$(sed -n 's/^error: \(internal error: Wrong or no.*\)$/\1/p' <<<"$direct" | head -n 1)"
libver=$("${VD[@]}" version | awk '/Using library:/ {print $NF}')
t_contains "... then vhostfix's reason" "$out" "; vhostfix: vhost-user nic 0 (52:54:00:5a:01:01) on socket /run/vhu-test/vhu0.sock has model e1000, which libvirt $libver refuses"
t_contains "... and the fix" "$out" "vhostfix left it alone because the guest is not Windows (vhostfix override os='other') and guests = \"windows\"; fix: mark a Windows guest with"
out=$($PY - "$PU" "$OTHER" <<'PYEOF' 2>&1
import sys, libvirt
def codes(uri):
    c = libvirt.open(uri)
    try:
        c.defineXML(open(sys.argv[2]).read())
        return "defined"
    except libvirt.libvirtError as e:
        return "%d %d %s" % (e.get_error_code(), e.get_error_domain(), e.get_error_message())
    finally:
        c.close()
direct, proxied = codes("qemu:///system"), codes(sys.argv[1])
print("same code and domain" if direct.split()[:2] == proxied.split()[:2] else "DIFFERENT: %s / %s" % (direct, proxied))
print("proxied:", proxied)
PYEOF
)
t_contains "python3-libvirt: the same error code and domain as libvirt's" "$out" "same code and domain"
t_contains "python3-libvirt: the message carries vhostfix's reason" "$out" "; vhostfix: vhost-user nic 0"
out=$("${VPV[@]}" define "$SEED" 2>&1)
t_not_contains "a rewrite stays silent to the client" "$out" "vhostfix"

# virsh create with a real backend: OVS-DPDK is the vhost-user client of QEMU's socket.
if ovs_up; then
  OVSLOG=/var/log/openvswitch/ovs-vswitchd.log
  n0=$(wc -l <"$OVSLOG" 2>/dev/null || echo 0)
  ovs_add_client_port vhu0 /run/vhu-test/vhu0.sock
  out=$(timeout 120 "${VPV[@]}" create "$SEED" 2>&1)
  t_contains "virsh create through the proxy starts the guest" "$out" "Domain '$SEED_NAME' created"
  t_contains "running guest has virtio" "$("${VD[@]}" dumpxml "$SEED_NAME" 2>&1)" "<model type='virtio'/>"
  if wait_for "tail -n +$((n0 + 1)) $OVSLOG | grep -q 'vhu0.sock) connected'" 30; then
    t_ok "OVS reports the vhost-user port connected"
  else
    t_fail "OVS reports the vhost-user port connected" "$(tail -5 /var/log/openvswitch/ovs-vswitchd.log)"
  fi
  "${VD[@]}" destroy "$SEED_NAME" >/dev/null 2>&1
  ovs-vsctl --if-exists del-port br-vhu vhu0
else
  t_fail "Open vSwitch with DPDK comes up"
fi

# --- deny policy, reloaded with SIGHUP ----------------------------------------
printf '[proxy]\naction = "deny"\n' >"$D/proxy.toml"
kill -HUP "$PROXY_PID"
wait_for "grep -q 'configuration reloaded' '$D/proxy.log'" 10
out=$("${VP[@]}" define "$SEED" 2>&1)
t_contains "deny policy: virsh prints the proxy's message" "$out" "unsupported configuration: vhostfix refused DOMAIN_DEFINE_XML for domain '$SEED_NAME'"
out=$($PY - "$PU" "$SEED" <<'PYEOF' 2>&1
import sys, libvirt
c = libvirt.open(sys.argv[1])
try:
    c.defineXML(open(sys.argv[2]).read())
    print("defined?!")
except libvirt.libvirtError as e:
    print("code", e.get_error_code(), "domain", e.get_error_domain())
print("still usable:", c.getLibVersion() > 0, len(c.listAllDomains()) >= 0)
PYEOF
)
t_contains "deny: libvirtError code 67 from domain 20" "$out" "code 67 domain 20"
t_contains "deny: the connection stays usable" "$out" "still usable: True True"

# --- calls whose guest ABI is fixed: forwarded by default, refused on request ---
# restoreFlags (DOMAIN_RESTORE_FLAGS) and restoreParams (DOMAIN_RESTORE_PARAMS,
# typed parameter "dxml") with the seed's e1000 XML and a file that does not
# exist: forwarded, libvirt answers about the file; refused, the proxy answers.
restore_both() {
  $PY - "$PU" "$SEED" <<'PYEOF' 2>&1
import sys, libvirt
c = libvirt.open(sys.argv[1])
xml = open(sys.argv[2]).read()
missing = "/nonexistent/t.save"
calls = [
    ("restore_flags", lambda: c.restoreFlags(missing, xml, 0)),
    ("restore_params", lambda: c.restoreParams(
        {libvirt.VIR_DOMAIN_SAVE_PARAM_FILE: missing, libvirt.VIR_DOMAIN_SAVE_PARAM_DXML: xml}, 0)),
]
for name, call in calls:
    try:
        call()
        print(name, "restored?!")
    except libvirt.libvirtError as e:
        print(name, "code", e.get_error_code(), "domain", e.get_error_domain(), "|", e.get_error_message())
PYEOF
}
out=$(restore_both)
t_contains "fixed ABI, forward (default): restoreFlags reaches libvirt" "$(grep restore_flags <<<"$out")" \
  "Failed to open file '/nonexistent/t.save'"
t_contains "fixed ABI, forward (default): restoreParams reaches libvirt" "$(grep restore_params <<<"$out")" \
  "Failed to open file '/nonexistent/t.save'"
printf '[proxy]\nfixed_abi_calls = "deny"\n' >"$D/proxy.toml"
kill -HUP "$PROXY_PID"
wait_for "[ \$(grep -c 'configuration reloaded' '$D/proxy.log') -ge 2 ]" 10
out=$(restore_both)
t_contains "fixed ABI, deny: restoreFlags refused by the proxy" "$(grep restore_flags <<<"$out")" \
  "code 67 domain 20 | unsupported configuration: vhostfix refused DOMAIN_RESTORE_FLAGS for domain '$SEED_NAME'"
t_contains "fixed ABI, deny: restoreParams (typed dxml) refused by the proxy" "$(grep restore_params <<<"$out")" \
  "code 67 domain 20 | unsupported configuration: vhostfix refused DOMAIN_RESTORE_PARAMS for domain '$SEED_NAME'"
t_contains "fixed ABI, deny: the message says why" "$out" "cannot change here"
{ echo "<domainsnapshot><name>vhfx-s1</name><state>shutoff</state><creationTime>1700000000</creationTime>"
  cat "$SEED"; echo "</domainsnapshot>"; } >"$D/snap.xml"
out=$(timeout 30 "${VP[@]}" snapshot-create "$SEED_NAME" "$D/snap.xml" --redefine 2>&1)
t_contains "fixed ABI, deny: a snapshot redefinition embedding e1000 is refused by the proxy" "$out" \
  "vhostfix refused DOMAIN_SNAPSHOT_CREATE_XML for domain '$SEED_NAME'"
t_eq "... and no snapshot was made" "" "$("${VD[@]}" snapshot-list "$SEED_NAME" --name 2>&1)"
# An incoming migration's finish carries the persistent definition inside the
# source's cookie. No binding exposes the step: send it with tests/lib/rawrpc.py.
finish_calls() {
  $PY - "$SOCK" "$SEED" "$REPO/tests/lib" <<'PYEOF' 2>&1
import sys
sys.path.insert(0, sys.argv[3])
import rawrpc as r
dom = open(sys.argv[2]).read().split("?>", 1)[-1]
cookie = ("<qemu-migration>\n  <name>win2019-vhu</name>\n  <feature name='persistent'/>\n"
          + dom + "</qemu-migration>\n\0").encode()
c = r.Client(sys.argv[1])
for cancelled in (0, 1):
    args = (r.typed_string_params([("destination_name", "win2019-vhu")]) + r.string(cookie)
            + r.u32(8) + r.u32(cancelled))
    status, payload = c.call(306, args)
    print("finish3_params cancelled=%d status %d code %s domain %s | %s" % ((cancelled, status) + r.error(payload)))
    args = (r.string("win2019-vhu") + r.string(cookie) + r.opt_string(None)
            + r.opt_string("tcp://127.0.0.1:49152") + r.hyper(8) + r.u32(cancelled))
    status, payload = c.call(217, args)
    print("finish3 cancelled=%d status %d code %s domain %s | %s" % ((cancelled, status) + r.error(payload)))
PYEOF
}
out=$(finish_calls)
t_contains "fixed ABI, deny: FINISH3_PARAMS with e1000 in the cookie's persistent <domain> is refused" \
  "$(grep 'finish3_params cancelled=0' <<<"$out")" \
  "status 1 code 67 domain 20 | unsupported configuration: vhostfix refused DOMAIN_MIGRATE_FINISH3_PARAMS for domain '$SEED_NAME'"
t_contains "fixed ABI, deny: FINISH3 likewise" "$(grep 'finish3 cancelled=0' <<<"$out")" \
  "vhostfix refused DOMAIN_MIGRATE_FINISH3 for domain '$SEED_NAME'"
t_not_contains "fixed ABI, deny: a cancelled finish still reaches libvirt" "$(grep 'cancelled=1' <<<"$out")" "vhostfix"
t_eq "... and libvirt answered both cancelled finishes itself (with an error: no such migration)" 2 \
  "$(grep 'cancelled=1' <<<"$out" | grep -c 'status 1 code')"
: >"$D/proxy.toml"
kill -HUP "$PROXY_PID"
wait_for "[ \$(grep -c 'configuration reloaded' '$D/proxy.log') -ge 3 ]" 10
out=$(finish_calls)
t_not_contains "fixed ABI, forward (default): finish calls reach libvirt" "$out" "vhostfix"
t_contains "... and the forwarded finish is logged" "$(cat "$D/proxy.log")" \
  "proc=DOMAIN_MIGRATE_FINISH3_PARAMS domain='$SEED_NAME' verdict=windows"

# --- polling (busy_poll_us, adaptive_poll): same answers, no CPU while idle ---
printf '[proxy]\nbusy_poll_us = 200\n' >"$D/proxy.toml"
kill -HUP "$PROXY_PID"
wait_for "[ \$(grep -c 'configuration reloaded' '$D/proxy.log') -ge 4 ]" 10
call_loop() {
  $PY - "$1" "$SEED_NAME" <<'PYEOF' 2>&1
import sys, libvirt
c = libvirt.open(sys.argv[1])
print([tuple(c.lookupByName(sys.argv[2]).info()) for _ in range(300)][-1],
      sorted(d.name() for d in c.listAllDomains()))
PYEOF
}
ticks() { awk '{print $14 + $15}' "/proc/$PROXY_PID/stat"; }
# polling_checks LABEL: a call loop answers as direct, and a connected client
# that sends nothing costs the proxy no CPU.
polling_checks() {
  local t1 t2 evp
  t_eq "$1: a call loop through the proxy answers as direct" \
    "$(call_loop "qemu:///system?socket=/run/libvirt/libvirt-sock")" "$(call_loop "$PU")"
  "${VP[@]}" event --all --timeout 5 >/dev/null 2>&1 &
  evp=$!
  sleep 1.5
  t1=$(ticks)
  sleep 2
  t2=$(ticks)
  wait "$evp"
  t_check "$1: an idle connected client costs no CPU (proxy used $((t2 - t1)) ticks of 100 in 2 s)" \
    test $((t2 - t1)) -le 10
}
polling_checks "busy_poll_us = 200"
: >"$D/proxy.toml"
kill -HUP "$PROXY_PID"
wait_for "[ \$(grep -c 'configuration reloaded' '$D/proxy.log') -ge 5 ]" 10
# The default, adaptive_poll: polls only while that pays (src/proxy/spin.rs).
polling_checks "adaptive_poll (default)"

# --- 2. access control -------------------------------------------------------
getent group "$GROUP_T" >/dev/null || groupadd "$GROUP_T"
id "$USER_T" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /bin/sh "$USER_T"
on_exit "userdel $USER_T; groupdel $GROUP_T"
chmod 0666 "$SOCK" # let the user reach the socket: the proxy's own check must refuse it
as_user() { runuser -u "$USER_T" -- env HOME=/tmp XDG_RUNTIME_DIR=/tmp "$@"; }
out=$(as_user virsh -c "$PU" list --all 2>&1)
t_contains "a non-root user without an allowed group is refused" "$out" "access denied"
t_not_contains "... and cannot list domains" "$out" "Id"
printf '[proxy]\nallowed_groups = ["%s"]\n' "$GROUP_T" >"$D/proxy.toml"
usermod -a -G "$GROUP_T" "$USER_T"
kill -HUP "$PROXY_PID"
sleep 0.5
out=$(as_user virsh -c "$PU" list --all 2>&1)
t_not_contains "a member of an allowed group is admitted" "$out" "error"
: >"$D/proxy.toml"
kill -HUP "$PROXY_PID"
out=$(virsh -c "qemu:///system?socket=$ROSOCK" -r list --all 2>&1)
t_not_contains "read-only socket: list works" "$out" "error"
out=$(virsh -c "qemu:///system?socket=$ROSOCK" define "$SEED" 2>&1)
t_contains "read-only socket: define is refused by libvirt" "$out" "read only"

# --- 3. robustness -----------------------------------------------------------
$PY - "$PU" "$SOCK" >"$D/robust.out" 2>&1 <<'PYEOF' &
import sys, time, libvirt
c = libvirt.open(sys.argv[1])
ok = 0
for i in range(40):
    c.getLibVersion(); c.listAllDomains(); ok += 1
    time.sleep(0.1)
print("long session calls:", ok)
PYEOF
LONG=$!
sleep 0.5
printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 socat - "UNIX-CONNECT:$SOCK" >/dev/null 2>&1
printf '\x00\x00\x03\xe8\x20\x00\x80\x86' | timeout 5 socat - "UNIX-CONNECT:$SOCK" >/dev/null 2>&1
printf '\x02\x80\x00\x00' | timeout 5 socat - "UNIX-CONNECT:$SOCK" >/dev/null 2>&1
head -c 100000 /dev/urandom | timeout 5 socat - "UNIX-CONNECT:$SOCK" >/dev/null 2>&1
wait $LONG
t_contains "garbage, truncated and 40 MiB frames drop only their client" "$(cat "$D/robust.out")" "long session calls: 40"
t_check "proxy survives bad clients" kill -0 "$PROXY_PID"

out=$($PY - "$PU" <<'PYEOF' 2>&1
import sys, threading, libvirt
ok = []
def work():
    c = libvirt.open(sys.argv[1])
    for _ in range(5):
        c.getLibVersion(); c.listAllDomains()
    c.close(); ok.append(1)
ts = [threading.Thread(target=work) for _ in range(200)]
[t.start() for t in ts]; [t.join() for t in ts]
print("clients done:", len(ok))
PYEOF
)
t_contains "200 concurrent clients each doing calls" "$out" "clients done: 200"

# A broad session, through the proxy and directly: same answers.
TINY=vhfx-proxy-tcg
tcg_domain "$TINY" >"$D/tiny.xml"
undefine "$TINY"
vm_cleanup_on_exit "$TINY"
"${VP[@]}" define "$D/tiny.xml" >/dev/null
for cmd in "list --all" "dominfo $TINY" "dumpxml $TINY" "domstate $TINY" "nodeinfo" "capabilities"; do
  # shellcheck disable=SC2086
  t_eq "same answer direct and proxied: virsh $cmd" "$("${VD[@]}" $cmd 2>&1)" "$("${VP[@]}" $cmd 2>&1)"
done
timeout 60 virsh -c "$PU" event --all --loop --timeout 40 >"$D/events.out" 2>&1 &
EV=$!
sleep 1
t_check "start of a TCG guest through the proxy" timeout 60 "${VP[@]}" start "$TINY"
t_eq "domstate after start" "running" "$("${VP[@]}" domstate "$TINY" | head -1)"
sleep 2
t_check "screenshot (a stream) through the proxy" timeout 60 "${VP[@]}" screenshot "$TINY" "$D/shot-proxy.ppm"
timeout 60 "${VD[@]}" screenshot "$TINY" "$D/shot-direct.ppm" >/dev/null 2>&1
# The picture may change between the two shots; the format may not.
t_eq "screenshot in the same format as direct" "$(head -c 8 "$D/shot-direct.ppm" | od -An -tx1)" \
  "$(head -c 8 "$D/shot-proxy.ppm" 2>/dev/null | od -An -tx1)"
t_check "screenshot is not empty" test -s "$D/shot-proxy.ppm"
# Stream data in both directions: an upload through the proxy (its large
# frames are spliced, never copied into the proxy) and downloads both ways.
mkdir -p "$D/pool"
"${VD[@]}" pool-create-as vhfx-proxy-pool dir --target "$D/pool" >/dev/null
on_exit "${VD[*]} pool-destroy vhfx-proxy-pool"
head -c $((8 << 20)) /dev/urandom >"$D/blob"
printf 'tail' >>"$D/blob" # not a multiple of the stream chunk
"${VD[@]}" vol-create-as vhfx-proxy-pool up.raw "$(stat -c %s "$D/blob")" --format raw >/dev/null
t_check "vol-upload (8 MiB stream) through the proxy" timeout 60 "${VP[@]}" vol-upload up.raw "$D/blob" --pool vhfx-proxy-pool
t_eq "the uploaded volume is byte-identical (read directly)" "$(sha256sum <"$D/blob")" "$(sha256sum <"$D/pool/up.raw")"
timeout 60 "${VP[@]}" vol-download up.raw "$D/down-proxy" --pool vhfx-proxy-pool
t_eq "vol-download through the proxy is byte-identical" "$(sha256sum <"$D/blob")" "$(sha256sum <"$D/down-proxy" 2>&1)"
t_contains "the connection stays usable after the streams" "$("${VP[@]}" vol-list vhfx-proxy-pool)" "up.raw"
t_check "save through the proxy" timeout 120 "${VP[@]}" save "$TINY" "$D/tiny.save"
t_eq "saved guest is shut off" "shut off" "$("${VD[@]}" domstate "$TINY" | head -1)"
t_check "restore through the proxy" timeout 120 "${VP[@]}" restore "$D/tiny.save"
t_eq "restored guest runs" "running" "$("${VD[@]}" domstate "$TINY" | head -1)"
t_check "destroy through the proxy" "${VP[@]}" destroy "$TINY"
sleep 1
kill "$EV" 2>/dev/null; wait "$EV" 2>/dev/null
ev=$(cat "$D/events.out")
t_contains "event --all through the proxy: started" "$ev" "lifecycle' for domain '$TINY': Started"
t_contains "event --all through the proxy: stopped" "$ev" "lifecycle' for domain '$TINY': Stopped"
# virsh create --pass-fds sends DOMAIN_CREATE_XML_WITH_FILES with an fd after the frame.
a=$(timeout 30 "${VD[@]}" create "$D/tiny.xml" --pass-fds 3 3</dev/null 2>&1)
"${VD[@]}" destroy "$TINY" >/dev/null 2>&1
b=$(timeout 30 "${VP[@]}" create "$D/tiny.xml" --pass-fds 3 3</dev/null 2>&1)
"${VD[@]}" destroy "$TINY" >/dev/null 2>&1
t_eq "create --pass-fds (fd passing) answers as direct" "$a" "$b"
undefine "$TINY"

# libvirtd restarts under the proxy.
$PY - "$PU" >"$D/restart.out" 2>&1 <<'PYEOF' &
import sys, time, libvirt
c = libvirt.open(sys.argv[1])
c.getLibVersion()
time.sleep(3)
try:
    c.getLibVersion(); print("call after restart: ok?!")
except libvirt.libvirtError as e:
    print("call after restart failed cleanly")
PYEOF
RC=$!
sleep 1
LVPID=$(cat /run/libvirtd.pid 2>/dev/null)
if [ -n "$LVPID" ] && kill -0 "$LVPID"; then
  libvirtd_start_again "$LVPID"
  wait_for "${VIRSH[*]} version" 30
  wait $RC
  t_contains "libvirtd restart: the proxied client sees its connection close" "$(cat "$D/restart.out")" "failed cleanly"
  t_check "libvirtd restart: new clients work again" "${VP[@]}" list --all
else
  t_fail "libvirtd restart" "no /run/libvirtd.pid"
fi

# SIGTERM with one client idle and one with a call in flight: the proxy stops
# accepting, waits for the call (libvirtd is paused with SIGSTOP so that the
# call is surely in flight), then closes both connections and removes its sockets.
$PY - "$PU" >"$D/term.out" 2>&1 <<'PYEOF' &
import sys, time, libvirt
c = libvirt.open(sys.argv[1])
c.getLibVersion(); print("connected", flush=True)
time.sleep(4)
try:
    c.getLibVersion(); print("after stop: ok?!")
except libvirt.libvirtError:
    print("after stop: closed")
PYEOF
TC=$!
$PY - "$PU" >"$D/drain.out" 2>&1 <<'PYEOF' &
import sys, time, libvirt
c = libvirt.open(sys.argv[1])
c.getLibVersion(); print("connected", flush=True)
time.sleep(1)
print("calling", flush=True)
try:
    print("in-flight call answered:", len(c.getHostname()) > 0, flush=True)
except libvirt.libvirtError as e:
    print("in-flight call failed:", e, flush=True)
PYEOF
DC=$!
wait_for "grep -q connected '$D/term.out' && grep -q connected '$D/drain.out'" 10
LVPID=$(cat /run/libvirtd.pid 2>/dev/null)
on_exit "kill -CONT $LVPID"
kill -STOP "$LVPID"
wait_for "grep -q calling '$D/drain.out'" 10
sleep 0.5 # the call now waits in the paused libvirtd
kill -TERM "$PROXY_PID"
sleep 1
if kill -0 "$PROXY_PID" 2>/dev/null; then draining=yes; else draining=no; fi
kill -CONT "$LVPID"
t_eq "SIGTERM with a call in flight: the proxy waits for it" "yes" "$draining"
wait $DC
t_contains "SIGTERM: the call in flight gets its answer" "$(cat "$D/drain.out")" "in-flight call answered: True"
if wait_for "! kill -0 $PROXY_PID" 10; then t_ok "SIGTERM stops the proxy"; else t_fail "SIGTERM stops the proxy"; fi
wait "$PROXY_PID" 2>/dev/null
PROXY_PID=
wait $TC
t_contains "SIGTERM: the idle client sees the connection close" "$(cat "$D/term.out")" "after stop: closed"
t_check "SIGTERM: the sockets are removed" test ! -e "$SOCK" -a ! -e "$ROSOCK"

# --- a proxy whose libvirt is not there ---------------------------------------
# It starts (it connects to libvirt per client, on the first call) and a
# client gets libvirt's error with the reason, not a reset connection.
VHOSTFIX_LOG=stderr:info "$VHOSTFIX" --config "$D/proxy.toml" proxy --listen "$D/nolv-sock" \
  --upstream "$D/absent-sock" 2>>"$D/nolv.log" {T_LOCK_FD}>&- &
NOLV_PID=$!
on_exit "kill $NOLV_PID"
if wait_for "[ -S '$D/nolv-sock' ]" 15; then t_ok "the proxy starts while its upstream is missing"; else t_fail "the proxy starts while its upstream is missing" "$(cat "$D/nolv.log")"; fi
out=$(virsh -c "qemu:///system?socket=$D/nolv-sock" version 2>&1)
t_contains "missing upstream: virsh shows why" "$out" "vhostfix proxy: cannot reach libvirt at $D/absent-sock: No such file or directory (os error 2) (is libvirtd or virtqemud running?)"
t_not_contains "missing upstream: not a bare reset" "$out" "Connection reset by peer"
t_contains "missing upstream: the proxy logs it" "$(cat "$D/nolv.log")" "cannot reach libvirt at $D/absent-sock"
kill "$NOLV_PID"; wait "$NOLV_PID" 2>/dev/null


# --- a proxy that died: what a client sees, and the bypass (docs/proxy.md) ----
VHOSTFIX_LOG=stderr:info "$VHOSTFIX" --config "$D/proxy.toml" proxy --listen "$D/down-sock" \
  --upstream /run/libvirt/libvirt-sock 2>>"$D/down.log" {T_LOCK_FD}>&- &
DOWN_PID=$!
on_exit "kill -9 $DOWN_PID; rm -f '$D/down-sock'"
wait_for "[ -S '$D/down-sock' ]" 15
t_contains "a proxy started by hand serves" "$(virsh -c "qemu:///system?socket=$D/down-sock" version 2>&1)" "Using library"
kill -KILL "$DOWN_PID"; wait "$DOWN_PID" 2>/dev/null
shown=$(virsh -c "qemu:///system?socket=$D/down-sock" list 2>&1 | sed "s#$D/down-sock#/run/vhostfix/libvirt-sock#g")
t_contains "after SIGKILL: libvirt's connect error" "$shown" "Connection refused"
doc_example "docs/proxy.md shows what virsh prints when the proxy is down" "$REPO/docs/proxy.md" proxy-down \
  "\$ virsh -c 'qemu:///system?socket=/run/vhostfix/libvirt-sock' list
$shown"
t_contains "the bypass: libvirt's own socket still answers" \
  "$(virsh -c 'qemu:///system?socket=/run/libvirt/libvirt-sock' version 2>&1)" "Using library"

t_done
