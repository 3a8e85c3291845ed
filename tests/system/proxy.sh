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
USER_T=vhfx-proxy-test
GROUP_T=vhfx-proxy-grp
PROXY_PID=
: >"$D/proxy.toml"

start_proxy() {
  VHOSTFIX_LOG=stderr:info "$VHOSTFIX" --config "$D/proxy.toml" proxy --listen "$SOCK" \
    --upstream /run/libvirt/libvirt-sock --listen-ro "$ROSOCK" "$@" 2>>"$D/proxy.log" &
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
out=$("${VP[@]}" define "$SEED" 2>&1)
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
cat >"$D/nic.xml" <<'XML'
<interface type='vhostuser'>
  <mac address='52:54:00:5a:01:09'/>
  <source type='unix' path='/run/vhu-test/att.sock' mode='server'/>
  <model type='e1000'/>
</interface>
XML
out=$("${VD[@]}" attach-device win-attach "$D/nic.xml" --config 2>&1)
t_contains "direct attach-device of an e1000 vhost-user NIC is refused" "$out" "virtio-net"
out=$("${VP[@]}" attach-device win-attach "$D/nic.xml" --config 2>&1)
t_contains "attach-device --config through the proxy succeeds" "$out" "Device attached successfully"
xml=$("${VD[@]}" dumpxml --inactive win-attach)
t_contains "attached NIC is virtio" "$xml" "<model type='virtio'/>"
t_contains "device decision took the domain's OS" "$(cat "$D/proxy.log")" "proc=DOMAIN_ATTACH_DEVICE_FLAGS domain='win-attach' verdict=windows"
undefine win-attach

# virsh create with a real backend: OVS-DPDK is the vhost-user client of QEMU's socket.
if ovs_up; then
  ovs_add_client_port vhu0 /run/vhu-test/vhu0.sock
  out=$(timeout 120 "${VP[@]}" create "$SEED" 2>&1)
  t_contains "virsh create through the proxy starts the guest" "$out" "Domain '$SEED_NAME' created"
  t_contains "running guest has virtio" "$("${VD[@]}" dumpxml "$SEED_NAME" 2>&1)" "<model type='virtio'/>"
  if wait_for "grep -q 'vhu0.sock) connected' /var/log/openvswitch/ovs-vswitchd.log" 30; then
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
: >"$D/proxy.toml"
kill -HUP "$PROXY_PID"

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

t_done
