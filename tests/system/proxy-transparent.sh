#!/usr/bin/env bash
# Transparent deployment of `vhostfix proxy`, end to end with a real vhost-user
# backend: libvirtd's sockets move to a root-only directory (unix_sock_dir), the
# proxy owns /run/libvirt/libvirt-sock{,-ro}, and a plain `virsh create` (no
# socket= in the URI) of the seed's Windows domain (e1000 on a vhost-user port
# of an OVS-DPDK bridge) starts the guest; OVS reports the port connected.
# Restores the normal libvirtd afterwards. Root; holds the system test lock.
T_NAME=proxy-transparent.sh
. "$(dirname "$0")/../lib/common.sh"
need_root
system_lock
libvirt_up || exit 1

SEED=$REPO/examples/windows-vhostuser.xml
REAL=/run/libvirt/real
D=$T_TMP
PROXY_PID=

restart_libvirtd() { # [CONFIG]
  libvirtd_start_again "$(cat /run/libvirtd.pid 2>/dev/null)" ${1:+-f "$1"}
}
stop_proxy() {
  [ -n "$PROXY_PID" ] || return 0
  kill -TERM "$PROXY_PID" 2>/dev/null
  wait "$PROXY_PID" 2>/dev/null
  PROXY_PID=
}
back_to_normal() {
  stop_proxy
  restart_libvirtd
  wait_for "virsh -c qemu:///system version" 30
  rm -rf "$REAL"
}

printf 'unix_sock_dir = "%s"\n' "$REAL" >"$D/libvirtd.conf"
on_exit back_to_normal
install -d -m 0700 "$REAL"
restart_libvirtd "$D/libvirtd.conf"
if wait_for "[ -S $REAL/libvirt-sock ]" 30; then
  t_ok "libvirtd listens in $REAL"
else
  t_fail "libvirtd listens in $REAL" "$(pgrep -a libvirtd)" "$(ls -la /run/libvirt "$REAL" 2>&1)"
fi
chmod 0700 "$REAL"
t_check "the canonical socket is free" test ! -e /run/libvirt/libvirt-sock
VHOSTFIX_LOG=stderr:info "$VHOSTFIX" --config /dev/null proxy \
  --listen /run/libvirt/libvirt-sock --upstream "$REAL/libvirt-sock" \
  --listen-ro /run/libvirt/libvirt-sock-ro --upstream-ro "$REAL/libvirt-sock-ro" 2>"$D/proxy.log" {T_LOCK_FD}>&- &
PROXY_PID=$!
wait_for "[ -S /run/libvirt/libvirt-sock ]" 15
t_check "plain virsh (default URI) goes through the proxy" virsh -c qemu:///system list --all
t_contains "the proxy saw the client" "$(cat "$D/proxy.log")" "listening on /run/libvirt/libvirt-sock"

NAME=win2019-vhu
virsh -c qemu:///system destroy "$NAME" >/dev/null 2>&1
virsh -c qemu:///system undefine "$NAME" >/dev/null 2>&1
if ovs_up; then
  OVSLOG=/var/log/openvswitch/ovs-vswitchd.log
  n0=$(wc -l <"$OVSLOG" 2>/dev/null || echo 0)
  ovs_add_client_port vhu0 /run/vhu-test/vhu0.sock
  out=$(timeout 120 virsh -c qemu:///system create "$SEED" 2>&1)
  t_contains "plain virsh create of the seed starts the guest" "$out" "Domain '$NAME' created"
  t_contains "the guest runs with virtio" "$(virsh -c qemu:///system dumpxml "$NAME" 2>&1)" "<model type='virtio'/>"
  if wait_for "tail -n +$((n0 + 1)) $OVSLOG | grep -q 'vhu0.sock) connected'" 30; then
    t_ok "OVS reports the vhost-user port connected"
  else
    t_fail "OVS reports the vhost-user port connected" "$(tail -5 /var/log/openvswitch/ovs-vswitchd.log)"
  fi
  t_contains "the rewrite is logged" "$(cat "$D/proxy.log")" "proc=DOMAIN_CREATE_XML domain='$NAME' verdict=windows"
  virsh -c qemu:///system destroy "$NAME" >/dev/null 2>&1
  ovs-vsctl --if-exists del-port br-vhu vhu0
else
  t_fail "Open vSwitch with DPDK comes up"
fi
t_done
