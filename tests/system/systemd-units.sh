#!/usr/bin/env bash
# The packaged systemd units (packaging/systemd/vhostfix-proxy.{socket,service},
# vhostfix-proxy-ro.socket) and transparent mode (packaging/transparent-mode)
# under a real systemd.
#
# The CI machine's PID 1 is not systemd, so the suite boots one in a
# systemd-nspawn container over a throw-away overlay of this machine's root
# (tests/lib/nspawn.sh says how, and why the host is never touched). The
# container runs Debian's own socket-activated libvirtd.
#
# Inside it the suite installs the files where the .deb/.rpm put them, then:
#   1. socket activation: the socket units listen, the first client starts the
#      proxy (Type=notify: started means ready; a broken configuration fails
#      the start), the proxy rewrites, counts (--stats) and reloads;
#   2. restart and stop while a vol-upload fed slowly is running: the socket
#      stays at its path, a client that connects during the restart is served
#      by the new proxy, the upload completes (the stop drains it) well within
#      TimeoutStopSec;
#   3. transparent mode: `transparent-mode enable` (libvirtd running, a site's
#      own drop-ins present), plain `virsh` and `virsh -r` go through the proxy
#      (its counters move), a reboot brings it all back, `transparent-mode
#      disable` puts libvirt's sockets back, the site's drop-ins untouched;
#   4. package removal in transparent mode: the real .deb installed and
#      removed with dpkg, and the rpm's %preun, give libvirt its sockets back;
#   5. the container is gone and the host's files and libvirtd are unchanged.
# About a minute. Root; holds the system test lock. Needs systemd-container
# and cargo-deb (see .ci/run). The seed is a TCG guest (type='qemu'), so the
# container needs no /dev/kvm; guests are only defined, never started.
T_NAME=systemd-units.sh
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/nspawn.sh"
need_root
ct_require
[ -e /lib/systemd/system/libvirtd.socket ] || ct_skip "libvirtd.socket not installed (libvirt-daemon-system)"
[ -x "$VHOSTFIX" ] || { echo "$T_NAME: $VHOSTFIX missing: run cargo build --release" >&2; exit 2; }

system_lock

D=$T_TMP
NAME=win2019-vhu
ct_prepare units
ct_install_packaged
install -D -m 0644 "$REPO/tests/system/fixtures/sandbox-probe.py" "$ROOT/usr/local/lib/vhostfix-sandbox-probe.py"
HOST_BEFORE=$(host_state)

boot_first
t_eq "the container runs Debian's socket-activated libvirtd" "active" "$(in_ct systemctl is-active libvirtd.socket)"
t_eq "the units are valid (systemd-analyze verify)" "" \
  "$(in_ct systemd-analyze verify vhostfix-proxy.socket vhostfix-proxy-ro.socket vhostfix-proxy.service 2>&1 |
    grep -v -e '^$' -e 'dpdk\|ovs\|openvswitch')"

PROXY_URI='qemu:///system?socket=/run/vhostfix/libvirt-sock'
PROXY_RO_URI='qemu:///system?socket=/run/vhostfix/libvirt-sock-ro'
DIRECT_URI='qemu:///system?socket=/run/libvirt/libvirt-sock'
REAL_URI='qemu:///system?socket=/run/libvirt/real/libvirt-sock'
# This boot's log of the proxy.
journal() { in_ct journalctl -q --no-pager -o cat -b -u vhostfix-proxy.service; }
# One counter of the running proxy (vhostfix proxy --stats, text format).
stat_of() { in_ct vhostfix proxy --stats 2>/dev/null | awk -v k="$1" '$1 == k {print $2}'; }
mainpid() { in_ct systemctl show -p MainPID --value vhostfix-proxy.service; }

# --- 1. socket activation ---------------------------------------------------

# libvirtd.service is enabled and already ran at boot; stop it so that the
# first call through the proxy has to socket-activate it too.
in_ct systemctl stop libvirtd.service 2>/dev/null # warns: its sockets can still activate it
t_check "systemctl enable --now vhostfix-proxy.socket vhostfix-proxy-ro.socket (as the README says)" \
  in_ct systemctl enable --now vhostfix-proxy.socket vhostfix-proxy-ro.socket
t_eq "the sockets listen before the proxy runs (service inactive)" "active active inactive" \
  "$(in_ct systemctl is-active vhostfix-proxy.socket vhostfix-proxy-ro.socket vhostfix-proxy.service | paste -sd' ')"
t_eq "the sockets have the units' modes (rw 0660 root:root, ro 0666)" \
  "socket 660 root:root socket 666 root:root" \
  "$(in_ct stat -c '%F %a %U:%G' /run/vhostfix/libvirt-sock /run/vhostfix/libvirt-sock-ro 2>&1 | paste -sd' ')"

out=$(in_ct virsh -c "$PROXY_URI" define /root/windows-vhostuser.xml 2>&1)
t_contains "the first client (virsh define through the rw socket) is served" "$out" "Domain '$NAME' defined"
t_eq "it started the proxy (socket activation) and libvirtd" "active active" \
  "$(in_ct systemctl is-active vhostfix-proxy.service libvirtd.service | paste -sd' ')"
xml=$(in_ct virsh -c "$DIRECT_URI" dumpxml "$NAME" 2>&1)
t_contains "the stored domain (read directly from libvirtd) has a virtio vhost-user NIC" "$xml" "<model type='virtio'/>"
t_contains "virsh -r through the ro socket is served" "$(in_ct virsh -r -c "$PROXY_RO_URI" list --all --name 2>&1)" "$NAME"
t_eq "the proxy counted the rewrite (vhostfix proxy --stats)" 1 "$(stat_of calls_rewritten)"
t_check "virsh undefine through the proxy" in_ct virsh -q -c "$PROXY_URI" undefine "$NAME"
log=$(journal)
t_contains "the proxy took the sockets systemd passed (journal)" "$log" \
  "listening on /run/vhostfix/libvirt-sock (read-write) -> /run/libvirt/libvirt-sock"
t_contains "... both of them" "$log" "listening on /run/vhostfix/libvirt-sock-ro (read-only) -> /run/libvirt/libvirt-sock-ro"
t_contains "the proxy's decisions reach the journal" "$log" "proc=DOMAIN_DEFINE_XML domain='$NAME' verdict=windows"
t_eq "Type=notify, and the proxy said it is ready (READY=1 with its STATUS=)" "notify|relaying libvirt clients" \
  "$(in_ct systemctl show -p Type --value vhostfix-proxy.service)|$(in_ct systemctl show -p StatusText --value vhostfix-proxy.service)"
t_eq "LimitNOFILE reaches the proxy" 16384 "$(in_ct sh -c "awk '/Max open files/ {print \$4}' /proc/$(mainpid)/limits")"

# --- 1b. the sandbox is in force --------------------------------------------

# The exposure systemd rates (0 best, 10 worst): of the file as shipped, and
# of the unit as this systemd loaded it.
exposure() { sed -n 's/^→ Overall exposure level for [^:]*: \([0-9.]*\) .*/\1/p'; }
score=$(systemd-analyze security --offline=true "$REPO/packaging/systemd/vhostfix-proxy.service" 2>/dev/null | exposure)
t_eq "systemd-analyze security --offline=true rates the shipped unit at most 2.0" yes \
  "$(awk -v s="${score:-99}" 'BEGIN {print (s <= 2.0) ? "yes" : "no: " s}')"
t_log "exposure of the shipped vhostfix-proxy.service: $score"
t_eq "... and the unit as loaded by systemd in the container" "$score" "$(in_ct systemd-analyze security vhostfix-proxy.service 2>/dev/null | exposure)"

# The running proxy itself: uid 0, no capability in any set, no new
# privileges, a seccomp filter, namespaces of its own.
pid=$(mainpid)
t_eq "the running proxy: uid 0, every capability set empty, NoNewPrivs, seccomp filter mode" \
  "Uid:0 CapInh:0000000000000000 CapPrm:0000000000000000 CapEff:0000000000000000 CapBnd:0000000000000000 CapAmb:0000000000000000 NoNewPrivs:1 Seccomp:2" \
  "$(in_ct awk '$1 ~ /^(Uid|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):$/ {print $1 $2}' "/proc/$pid/status" | paste -sd' ')"
t_eq "... in a network and a mount namespace of its own" "other other" \
  "$(for n in net mnt; do [ "$(in_ct readlink "/proc/$pid/ns/$n")" != "$(in_ct readlink "/proc/1/ns/$n")" ] && echo other || echo "same $n"; done | paste -sd' ')"
t_eq "... whose network has no interface but lo" "lo" \
  "$(in_ct nsenter -t "$pid" -n ip -o link show | awk -F': ' '{print $2}' | paste -sd' ')"
t_contains "... where / is read-only" "$(in_ct nsenter -t "$pid" -m touch /etc/vhostfix/probe 2>&1)" "Read-only file system"
t_check "... but /run/vhostfix is writable" in_ct nsenter -t "$pid" -m sh -c 'touch /run/vhostfix/probe && rm /run/vhostfix/probe'

# What a process with exactly the unit's settings may do: the probe runs as
# an ExecStartPre= of the real unit (tests/system/fixtures/sandbox-probe.py).
in_sh "mkdir -p /etc/systemd/system/vhostfix-proxy.service.d &&
  printf '[Service]\nExecStartPre=/usr/bin/python3 /usr/local/lib/vhostfix-sandbox-probe.py /run/vhostfix/probe.out\n' \
    >/etc/systemd/system/vhostfix-proxy.service.d/90-probe.conf && systemctl daemon-reload && rm -f /run/vhostfix/probe.out &&
  systemctl restart vhostfix-proxy.service"
t_eq "a probe run with the unit's own settings (ExecStartPre=) may use what the proxy needs and nothing else" \
  "socket-unix allowed
write-run-vhostfix allowed
read-etc-vhostfix allowed
read-proc-status-of-other-user allowed
socket-inet EAFNOSUPPORT
socket-inet6 EAFNOSUPPORT
socket-netlink EAFNOSUPPORT
socket-packet EAFNOSUPPORT
write-etc EROFS
write-usr EROFS
write-var-lib EROFS
write-run-libvirt EROFS
write-run-lock EROFS
write-root-home EACCES
read-proc-sys ENOENT
open-dev-kmsg ENOENT
chown-to-other-user EPERM
mount EPERM
unshare-user-namespace EPERM
sethostname EPERM
clock-settime EPERM
mmap-write-exec EPERM
setuid-nobody EPERM
raise-nofile-hard-limit EPERM" "$(in_ct cat /run/vhostfix/probe.out 2>&1)"
in_sh "rm -f /etc/systemd/system/vhostfix-proxy.service.d/90-probe.conf /run/vhostfix/probe.out;
  rmdir /etc/systemd/system/vhostfix-proxy.service.d; systemctl daemon-reload; systemctl restart vhostfix-proxy.service"

# systemd before 239 has no @system-service: vhostfix-generator replaces the
# allow list by a deny list there. Here (252) it writes nothing; what it
# writes when systemctl says 219, applied here, still lets the proxy serve.
t_eq "the generator writes nothing for this systemd ($(in_ct systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p'))" "" \
  "$(in_sh 'rm -rf /root/gen && mkdir /root/gen && /usr/lib/systemd/system-generators/vhostfix-generator /root/gen && find /root/gen -type f')"
in_sh "mkdir -p /root/fake-219 && printf '#!/bin/sh\necho \"systemd 219\"\n' >/root/fake-219/systemctl && chmod +x /root/fake-219/systemctl &&
  PATH=/root/fake-219:\$PATH /usr/lib/systemd/system-generators/vhostfix-generator /root/gen &&
  mkdir -p /run/systemd/system/vhostfix-proxy.service.d && cp /root/gen/vhostfix-proxy.service.d/*.conf /run/systemd/system/vhostfix-proxy.service.d/ &&
  systemctl daemon-reload && systemctl restart vhostfix-proxy.service"
t_eq "for systemd 219 it writes a drop-in that turns the allow list into a deny list" \
  "50-vhostfix-systemd-before-239.conf ~" \
  "$(in_ct ls /run/systemd/system/vhostfix-proxy.service.d) $(in_ct systemctl show -p SystemCallFilter --value vhostfix-proxy.service | cut -c1)"
t_check "... with which the proxy still serves" in_ct virsh -q -c "$PROXY_URI" list --all
in_sh "rm -rf /run/systemd/system/vhostfix-proxy.service.d /root/gen /root/fake-219 && systemctl daemon-reload && systemctl restart vhostfix-proxy.service"
t_eq "... without it the filter is an allow list again" "@" \
  "$(in_ct systemctl show -p SystemCallFilter --value vhostfix-proxy.service | cut -c1 | tr -c '~\n' '@')"

# Still everything works: attach-device, events, a non-root client admitted
# by a supplementary group the proxy reads from /proc/PID/status.
in_sh "sed -e '/<interface/,/<\/interface>/d' -e 's/win2019-vhu/win-attach/' \
  -e 's/5f1c2a0e-8d4b-4a53-9a6e-2b7c9d1e0f01/5f1c2a0e-8d4b-4a53-9a6e-2b7c9d1e0f02/' /root/windows-vhostuser.xml >/root/win-nonic.xml &&
  virsh -q -c '$DIRECT_URI' define /root/win-nonic.xml >/dev/null"
install -m 0644 "$REPO/tests/system/fixtures/vhu-nic-e1000.xml" "$ROOT/root/nic.xml"
in_ct timeout 20 virsh -c "$PROXY_URI" event --all --loop --timeout 8 >"$D/events.out" 2>&1 &
EVENTS_PID=$!
sleep 1
out=$(in_ct virsh -c "$PROXY_URI" attach-device win-attach /root/nic.xml --config 2>&1)
t_contains "attach-device --config of an e1000 vhost-user NIC through the sandboxed proxy" "$out" "Device attached successfully"
t_contains "... the stored NIC is virtio" "$(in_ct virsh -c "$DIRECT_URI" dumpxml --inactive win-attach 2>&1)" "<model type='virtio'/>"
in_ct virsh -q -c "$DIRECT_URI" undefine win-attach >/dev/null 2>&1
wait "$EVENTS_PID"
t_contains "domain events reach a client of the sandboxed proxy" "$(cat "$D/events.out")" "event 'lifecycle' for domain 'win-attach': Undefined"

reloads() { journal | grep -c 'configuration reloaded'; }
n=$(reloads)
in_sh "groupadd -r vfxtest && cp /etc/vhostfix/vhostfix.toml /root/before-groups.toml &&
  sed -i 's/^\[proxy\]\$/[proxy]\nallowed_groups = [\"vfxtest\"]/' /etc/vhostfix/vhostfix.toml && systemctl reload vhostfix-proxy.service"
wait_for "[ \$(reloads) -gt $n ]" 10
gid=$(in_ct getent group vfxtest | cut -d: -f3)
# nobody with root's group (to reach the 0660 socket) and, only as a
# supplementary group of the process (not in the group database), vfxtest.
as_nobody() { in_ct env HOME=/tmp setpriv --reuid=65534 --regid=65534 --groups="$1" virsh -q -c "$PROXY_URI" list --all 2>&1; }
out=$(as_nobody "0,$gid")
t_eq "a non-root client whose process has an allowed group is admitted (groups read from /proc/PID/status)" 0 "$?"
[ -z "$out" ] || t_log "virsh said: $out"
t_contains "... and one without it is refused" "$(as_nobody 0)" "access denied"
in_sh "cp /root/before-groups.toml /etc/vhostfix/vhostfix.toml && systemctl reload vhostfix-proxy.service"

pid1=$(mainpid)
t_check "systemctl reload vhostfix-proxy" in_ct systemctl reload vhostfix-proxy.service
wait_for "journal | grep -q 'configuration reloaded'" 10
t_eq "the proxy keeps running after the reload (same MainPID)" "active $pid1" \
  "$(in_ct systemctl is-active vhostfix-proxy.service) $(mainpid)"

# Started means ready: with a configuration the proxy refuses, the start fails
# (with Type=simple it would "succeed" and the proxy die a moment later).
t_check "stop the proxy; its sockets stay" in_ct systemctl stop vhostfix-proxy.service
t_eq "after stop: sockets active, paths still there" "active active socket socket" \
  "$(in_ct systemctl is-active vhostfix-proxy.socket vhostfix-proxy-ro.socket | paste -sd' ') $(in_ct stat -c %F /run/vhostfix/libvirt-sock /run/vhostfix/libvirt-sock-ro | cut -d' ' -f1 | paste -sd' ')"
in_sh "cp /etc/vhostfix/vhostfix.toml /root/good.toml && printf '[proxy]\nno_such_key = 1\n' >>/etc/vhostfix/vhostfix.toml"
if in_ct systemctl start vhostfix-proxy.service >/dev/null 2>&1; then
  t_fail "with a broken configuration, systemctl start vhostfix-proxy fails"
else
  t_ok "with a broken configuration, systemctl start vhostfix-proxy fails"
fi
# (Restart=on-failure retries until the start limit, which fails the sockets too.)
in_sh "cp /root/good.toml /etc/vhostfix/vhostfix.toml && systemctl stop vhostfix-proxy.service;
  systemctl reset-failed vhostfix-proxy.service vhostfix-proxy.socket vhostfix-proxy-ro.socket;
  systemctl start vhostfix-proxy.socket vhostfix-proxy-ro.socket"
t_check "a stopped proxy is started again by the next client" in_ct virsh -q -c "$PROXY_URI" list --all
t_eq "... and runs" active "$(in_ct systemctl is-active vhostfix-proxy.service)"

# --- 2. restart and stop during a stream ------------------------------------

# A vol-upload whose source trickles in: 16 blocks of 4 KiB, one every 0.25 s
# (4 s in all). virsh sends the data only when its buffer fills or the source
# ends, so the stream carries no data frame for those 4 s.
in_sh "mkdir -p /var/lib/vhostfix-pool && virsh -q -c '$DIRECT_URI' pool-create-as vfpool dir --target /var/lib/vhostfix-pool >/dev/null &&
  virsh -q -c '$DIRECT_URI' vol-create-as vfpool up.img 1M --format raw >/dev/null" ||
  t_fail "a directory pool and a volume for the uploads"
in_sh "i=0; while [ \$i -lt 16 ]; do printf 'block %05d ' \$i; head -c 4084 /dev/zero; i=\$((i+1)); done >/root/up.src"
upload() { # OUTFILE: starts a slow vol-upload through the proxy in the background
  in_sh "(i=0; while [ \$i -lt 16 ]; do dd if=/root/up.src bs=4096 skip=\$i count=1 status=none; sleep 0.25; i=\$((i+1)); done) |
    virsh -q -c '$PROXY_URI' vol-upload --pool vfpool up.img /dev/stdin" >"$1" 2>&1 &
  UPLOAD_PID=$!
}
uploaded() { # the volume's first 64 KiB equal the source
  in_sh "virsh -q -c '$DIRECT_URI' vol-download --pool vfpool up.img /root/up.out && head -c 65536 /root/up.out | cmp -s - /root/up.src"
}
wait_uploading() { wait_for "in_ct pgrep -x virsh" 10 && sleep 1; }

in_ct virsh -q -c "$DIRECT_URI" vol-wipe --pool vfpool up.img >/dev/null 2>&1
pid1=$(mainpid)
upload "$D/up1.out"
wait_uploading
in_ct systemctl restart vhostfix-proxy.service >"$D/restart.out" 2>&1 &
RESTART_PID=$!
sleep 0.5
t_eq "during the restart the old proxy still drains and the socket is at its path" "draining socket" \
  "$(in_ct sh -c "kill -0 $pid1 && echo draining") $(in_ct stat -c %F /run/vhostfix/libvirt-sock | cut -d' ' -f1)"
t0=$(date +%s.%N)
out=$(in_ct virsh -c "$PROXY_URI" list --all --name 2>&1)
rc=$?
t1=$(date +%s.%N)
t_eq "a client that connects during the restart is served (queued in the backlog)" 0 "$rc"
[ "$rc" = 0 ] || t_log "virsh said: $out"
wait "$RESTART_PID"
t_eq "systemctl restart succeeds" 0 "$?"
wait "$UPLOAD_PID"
t_eq "the upload in flight at the restart completes" "0" "$?"
t_check "... with every byte (vol-download compared)" uploaded
pid2=$(mainpid)
t_eq "the restart replaced the proxy" "new" "$([ -n "$pid2" ] && [ "$pid2" != 0 ] && [ "$pid2" != "$pid1" ] && echo new || echo "same: $pid1 $pid2")"
t_log "the client during the restart waited $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s"

in_ct virsh -q -c "$DIRECT_URI" vol-wipe --pool vfpool up.img >/dev/null 2>&1
upload "$D/up2.out"
wait_uploading
t0=$SECONDS
in_ct systemctl stop vhostfix-proxy.service
t_eq "systemctl stop during an upload succeeds" 0 "$?"
took=$((SECONDS - t0))
wait "$UPLOAD_PID"
t_eq "the upload in flight at the stop completes (drained)" "0" "$?"
t_check "... with every byte" uploaded
t_eq "the stop waited for it, within drain_seconds (5) and TimeoutStopSec (15)" yes \
  "$([ "$took" -ge 1 ] && [ "$took" -le 6 ] && echo yes || echo "no: $took s")"
t_eq "the proxy exited cleanly (Result=success)" "inactive success" \
  "$(in_ct systemctl is-active vhostfix-proxy.service) $(in_ct systemctl show -p Result --value vhostfix-proxy.service)"
t_contains "the drain is logged" "$(journal)" "waiting up to 5s for calls and streams in flight"
in_ct virsh -q -c "$DIRECT_URI" pool-destroy vfpool >/dev/null 2>&1
t_check "systemctl disable --now of the sockets" in_ct systemctl disable --now vhostfix-proxy-ro.socket vhostfix-proxy.socket
t_check "stopping the sockets removes their paths" in_ct sh -c '! test -e /run/vhostfix/libvirt-sock && ! test -e /run/vhostfix/libvirt-sock-ro'

# --- 3. transparent mode ------------------------------------------------------

TM=/usr/lib/vhostfix/transparent-mode
# A site's own drop-ins, which transparent mode must leave alone.
in_sh "mkdir -p /etc/systemd/system/libvirtd.socket.d /etc/systemd/system/vhostfix-proxy.service.d &&
  printf '[Socket]\nBacklog=77\n' >/etc/systemd/system/libvirtd.socket.d/10-site.conf &&
  printf '[Service]\nEnvironment=SITE_SETTING=1\n' >/etc/systemd/system/vhostfix-proxy.service.d/10-site.conf &&
  systemctl daemon-reload"
site_state() { in_sh "sha256sum /etc/systemd/system/libvirtd.socket.d/10-site.conf /etc/systemd/system/vhostfix-proxy.service.d/10-site.conf; systemctl show -p Backlog --value libvirtd.socket" 2>&1; }
SITE_BEFORE=$(site_state)
# As after boot on Debian: libvirtd.service running.
in_ct systemctl start libvirtd.service
out=$(in_ct "$TM" status 2>&1)
t_eq "status before: off (exit 3)" "3" "$?"
t_contains "status before says off" "$out" "transparent mode: off"

out=$(in_ct "$TM" enable 2>&1)
rc=$?
t_eq "transparent-mode enable (libvirtd running) succeeds" 0 "$rc"
[ "$rc" = 0 ] || t_log "enable said: $out"
wait_for "in_ct test -S /run/libvirt/libvirt-sock" 10

check_transparent() { # LABEL
  local l=$1 out xml n0 a0 g0
  out=$(in_ct "$TM" status 2>&1)
  t_eq "$l: status exits 0" 0 "$?"
  t_contains "$l: status says on" "$out" "transparent mode: on (libvirtd in /run/libvirt/real; vhostfix-proxy on /run/libvirt/libvirt-sock and /run/libvirt/libvirt-sock-ro)"
  t_eq "$l: libvirtd's rw and ro sockets listen in /run/libvirt/real" \
    "/run/libvirt/real/libvirt-sock (Stream)|/run/libvirt/real/libvirt-sock-ro (Stream)" \
    "$(in_ct systemctl show -p Listen --value libvirtd.socket)|$(in_ct systemctl show -p Listen --value libvirtd-ro.socket)"
  t_eq "$l: the proxy's sockets listen at the canonical paths" \
    "/run/libvirt/libvirt-sock (Stream)|/run/libvirt/libvirt-sock-ro (Stream)" \
    "$(in_ct systemctl show -p Listen --value vhostfix-proxy.socket)|$(in_ct systemctl show -p Listen --value vhostfix-proxy-ro.socket)"
  t_eq "$l: /run/libvirt/real is root-only, /run/libvirt searchable" "700 root:root 755" \
    "$(in_ct stat -c '%a %U:%G' /run/libvirt/real 2>&1) $(in_ct stat -c %a /run/libvirt 2>&1)"
  t_eq "$l: canonical sockets: rw 0660 root:root, ro 0666 (from [proxy])" "660 root:root 666 root:root" \
    "$(in_ct stat -c '%a %U:%G' /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro 2>&1 | paste -sd' ')"
  t_eq "$l: the admin socket stays with libvirtd" "/run/libvirt/libvirt-admin-sock (Stream)" \
    "$(in_ct systemctl show -p Listen --value libvirtd-admin.socket)"
  t_eq "$l: vhostfix-proxy is active (started by enable or at boot by its socket)" active \
    "$(in_ct systemctl is-active vhostfix-proxy.service)"
  n0=$(stat_of calls_rewritten)
  a0=$(stat_of connections_accepted)
  g0=$(journal | grep -c "proc=DOMAIN_DEFINE_XML domain='$NAME' verdict=windows")
  out=$(in_ct virsh -c qemu:///system define /root/windows-vhostuser.xml 2>&1)
  t_contains "$l: plain virsh -c qemu:///system define of the seed is accepted" "$out" "Domain '$NAME' defined"
  t_eq "$l: it went through the proxy (calls_rewritten +1)" "$((${n0:-0} + 1))" "$(stat_of calls_rewritten)"
  xml=$(in_ct virsh -c "$REAL_URI" dumpxml "$NAME" 2>&1)
  t_contains "$l: libvirtd (through /run/libvirt/real) stored a virtio NIC" "$xml" "<model type='virtio'/>"
  out=$(in_ct virsh -r -c qemu:///system list --all --name 2>&1)
  t_contains "$l: virsh -r (read-only socket, through the proxy) works" "$out" "$NAME"
  t_eq "$l: both clients were accepted by the proxy" "$((${a0:-0} + 2))" "$(stat_of connections_accepted)"
  out=$(in_ct virsh -r -c qemu:///system undefine "$NAME" 2>&1)
  t_contains "$l: the read-only socket stays read-only" "$out" "read only"
  t_check "$l: plain virt-admin still works" in_ct virt-admin -c libvirtd:///system version
  t_check "$l: plain virsh undefine" in_ct virsh -q -c qemu:///system undefine "$NAME"
  t_eq "$l: the proxy logged the rewrite" "$((g0 + 1))" "$(journal | grep -c "proc=DOMAIN_DEFINE_XML domain='$NAME' verdict=windows")"
}
check_transparent transparent
t_check "the proxy's restart keeps /run/libvirt/libvirt-sock (plain virsh right after)" \
  in_sh "systemctl restart vhostfix-proxy.service & test -S /run/libvirt/libvirt-sock && virsh -q -c qemu:///system list --all >/dev/null; r=\$?; wait; exit \$r"

# After a reboot everything must come up on its own: tmpfiles.d creates the
# directories, libvirtd's sockets listen in /run/libvirt/real, the proxy's at
# the canonical paths (sockets.target wants them).
if reboot_container; then
  t_ok "the container reboots"
  t_eq "after reboot: the proxy's sockets listen, the proxy waits for its first client" "active active inactive" \
    "$(in_ct systemctl is-active vhostfix-proxy.socket vhostfix-proxy-ro.socket vhostfix-proxy.service | paste -sd' ')"
  in_ct virsh -q -c qemu:///system list >/dev/null 2>&1
  check_transparent "after reboot"
else
  t_fail "the container reboots" "nspawn exit status $REBOOT_RC" "$(nspawn_log)"
fi

check_direct() { # LABEL
  local l=$1 out
  t_eq "$l: libvirtd's sockets are back at their own paths" \
    "/run/libvirt/libvirt-sock (Stream)|/run/libvirt/libvirt-sock-ro (Stream)" \
    "$(in_ct systemctl show -p Listen --value libvirtd.socket)|$(in_ct systemctl show -p Listen --value libvirtd-ro.socket)"
  t_eq "$l: the proxy is not running" no "$(in_ct systemctl is-active -q vhostfix-proxy.service && echo yes || echo no)"
  out=$(in_ct virsh -c qemu:///system define /root/windows-vhostuser.xml 2>&1)
  t_contains "$l: plain virsh reaches libvirtd itself (the e1000 seed is refused by libvirt)" "$out" "vhostuser"
  t_check "$l: plain virsh list" in_ct virsh -q -c qemu:///system list --all
  t_check "$l: plain virsh -r list" in_ct virsh -q -r -c qemu:///system list --all
  t_eq "$l: no file of transparent mode is left" "" \
    "$(in_sh 'ls /etc/systemd/system/*.d/50-vhostfix-transparent.conf /etc/tmpfiles.d/vhostfix-transparent.conf /run/libvirt/real 2>/dev/null')"
  t_eq "$l: the site's drop-ins are untouched and still in effect" "$SITE_BEFORE" "$(site_state)"
  if [ "${2:-}" = removed ]; then
    t_check "$l: the package took transparent-mode with it" in_ct test ! -e "$TM"
  else
    out=$(in_ct "$TM" status 2>&1)
    t_eq "$l: status exits 3 (off)" 3 "$?"
  fi
}

out=$(in_ct "$TM" disable 2>&1)
rc=$?
t_eq "transparent-mode disable succeeds" 0 "$rc"
[ "$rc" = 0 ] || t_log "disable said: $out"
check_direct "after disable"
out=$(in_ct "$TM" disable 2>&1)
t_eq "a second disable is a no-op" "0|transparent-mode: transparent mode is off; nothing to undo" "$?|$out"

# A site that had the opt-in sockets enabled gets them back on disable.
in_ct systemctl enable vhostfix-proxy.socket vhostfix-proxy-ro.socket 2>/dev/null
t_check "transparent-mode enable with the opt-in sockets enabled" in_ct "$TM" enable
t_check "transparent-mode disable" in_ct "$TM" disable
t_eq "the opt-in sockets listen on their own paths again" \
  "active /run/vhostfix/libvirt-sock (Stream)|/run/vhostfix/libvirt-sock-ro (Stream)" \
  "$(in_ct systemctl is-active vhostfix-proxy.socket) $(in_ct systemctl show -p Listen --value vhostfix-proxy.socket)|$(in_ct systemctl show -p Listen --value vhostfix-proxy-ro.socket)"
t_check "plain virsh reaches libvirtd, virsh through the opt-in socket the proxy" \
  in_sh "virsh -q -c qemu:///system list --all && virsh -q -c '$PROXY_URI' list --all"
in_ct systemctl disable --now vhostfix-proxy.service vhostfix-proxy-ro.socket vhostfix-proxy.socket 2>/dev/null

# --- 3b. failure policy -------------------------------------------------------

# [proxy] failure_policy and a configuration the proxy refuses, both under the
# packaged file's [proxy] header (/root/good.toml is that file).
set_config() { # default|open|closed [broken]
  local lines=
  [ "$1" = default ] || lines="failure_policy = \"$1\"\n"
  [ "${2:-}" != broken ] || lines="${lines}no_such_key = 1\n"
  in_sh "cp /root/good.toml /etc/vhostfix/vhostfix.toml && sed -i 's/^\[proxy\]\$/[proxy]\n$lines/' /etc/vhostfix/vhostfix.toml"
}
STATE=/var/lib/vhostfix/transparent-mode
state_of() { in_ct sed -n 's/^state=//p' "$STATE" 2>/dev/null; }
# transparent-mode's error-level log lines of this boot.
tm_errors() { in_ct journalctl -q --no-pager -o cat -b -p err -t transparent-mode; }
# The transparent-mode gauge of `vhostfix audit --prometheus`, and of --stats.
gauge() {
  in_ct vhostfix audit --prometheus /root/metrics.prom >/dev/null 2>&1
  in_ct sed -n 's/^vhostfix_proxy_transparent{state="\(.*\)"} 1$/\1/p' /root/metrics.prom
}
plain_virsh() { in_ct timeout 10 virsh -q -c qemu:///system "$@"; }

set_config default
out=$(in_ct "$TM" enable 2>&1)
t_eq "transparent-mode enable (default failure policy)" 0 "$?"
[ -z "$out" ] || t_log "enable said: $out"
out=$(in_ct "$TM" status 2>&1)
t_contains "status names the failure policy: open by default" "$out" "failure policy: open ([proxy] failure_policy)"
t_eq "the state is recorded as on, and the metric says so" "on on" "$(state_of) $(gauge)"
plain_virsh list --all >/dev/null 2>&1
t_contains "vhostfix proxy --stats says transparent mode is on" "$(in_ct vhostfix proxy --stats 2>&1)" "transparent on"

# One crash, then another, under load: Restart= brings the proxy back each
# time and nothing is handed back. Three clients call back to back meanwhile.
# (SIGABRT, as an abort or a failed assertion raises it, and SIGKILL, as the
# OOM killer sends it. Not SIGSEGV from kill: Rust's runtime catches SIGSEGV
# to report stack overflows, and one sent by kill only resets its handler.)
pid1=$(mainpid)
restarts0=$(in_ct systemctl show -p NRestarts --value vhostfix-proxy.service)
for k in 1 2 3; do
  in_sh "f=0; i=0; while [ \$i -lt 40 ]; do virsh -q -c qemu:///system list --all >/dev/null 2>&1 || f=\$((f+1)); i=\$((i+1)); done; echo \$f" >"$D/load$k" 2>&1 &
  eval "LOAD$k=\$!"
done
sleep 1
in_ct kill -ABRT "$pid1"
wait_for "[ \"\$(mainpid)\" != $pid1 ] && [ \"\$(mainpid)\" != 0 ] && in_ct systemctl is-active -q vhostfix-proxy.service" 10
pid2=$(mainpid)
t_eq "SIGABRT: systemd started a new proxy" new "$([ "$pid2" != "$pid1" ] && [ "$pid2" != 0 ] && echo new || echo "same: $pid1 $pid2")"
sleep 0.5
in_ct kill -KILL "$pid2"
wait_for "[ \"\$(mainpid)\" != $pid2 ] && [ \"\$(mainpid)\" != 0 ] && in_ct systemctl is-active -q vhostfix-proxy.service" 10
wait "$LOAD1" "$LOAD2" "$LOAD3"
failed_calls=$(awk '/^[0-9]+$/ {n += $1; k++} END {if (k == 3) print n}' "$D/load1" "$D/load2" "$D/load3")
t_eq "SIGABRT and then SIGKILL of the running proxy: systemd restarted it twice (NRestarts)" \
  "$((restarts0 + 2))" "$(in_ct systemctl show -p NRestarts --value vhostfix-proxy.service)"
t_eq "... it runs again and transparent mode is still on (status exit 0, state on)" "0 on" \
  "$(in_ct "$TM" status >/dev/null 2>&1; echo $?) $(state_of)"
t_eq "... nothing was handed back (no error from transparent-mode)" "" "$(tm_errors)"
t_eq "... the 120 calls made meanwhile mostly went through" yes \
  "$([ -n "$failed_calls" ] && [ "$failed_calls" -le 12 ] && echo yes || echo "no: $failed_calls failed")"
t_log "calls that failed while the proxy crashed twice: ${failed_calls:-?} of 120"
check_transparent "after two crashes"

# A proxy that can never start (a configuration it refuses, as after an
# upgrade that removed a setting), failure_policy "open" (the default): once
# systemd gives up, libvirt gets its sockets back.
# (reset-failed forgets the two crashes above, which count towards the start
# limit: the whole limit, five starts, is measured.)
in_ct systemctl reset-failed vhostfix-proxy.service
set_config default broken
t0=$(date +%s%N)
in_ct systemctl restart vhostfix-proxy.service >/dev/null 2>&1
tfail=
tok=
for _ in $(seq 600); do
  if [ -z "$tfail" ] && [ "$(in_ct systemctl is-failed vhostfix-proxy.service)" = failed ]; then tfail=$(date +%s%N); fi
  if plain_virsh list --all >/dev/null 2>&1; then
    tok=$(date +%s%N)
    break
  fi
  sleep 0.1
done
if [ -n "$tok" ]; then
  gap=$(awk -v a="$t0" -v b="$tok" 'BEGIN {printf "%.1f", (b - a) / 1e9}')
  t_ok "failure_policy open: plain virsh -c qemu:///system works again, $gap s after the broken proxy was restarted"
  t_log "failover gap: ${gap} s from systemctl restart to the first working plain virsh; the proxy was failed for good after $(awk -v a="$t0" -v b="${tfail:-$t0}" 'BEGIN {printf "%.1f", (b - a) / 1e9}') s"
  t_eq "... within 30 s" yes "$(awk -v g="$gap" 'BEGIN {print (g <= 30) ? "yes" : "no"}')"
else
  t_fail "failure_policy open: plain virsh -c qemu:///system works again within 60 s"
fi
wait_for "[ \"\$(state_of)\" = handed-back ]" 30
errs=$(tm_errors)
t_contains "an error-level log line says what happened: systemd gave up at its start limit (5 starts in 10 s; the 5th restart refused)" "$errs" \
  "vhostfix-proxy failed for good (vhostfix-proxy.service: exit-code after 5 restarts; the proxy last exited with status 2; last error: vhostfix: error: /etc/vhostfix/vhostfix.toml:"
t_contains "... with the proxy's own reason" "$errs" "proxy.no_such_key: unknown field"
t_contains "... and what the policy did" "$errs" "failure_policy \"open\": giving libvirt's sockets back to libvirtd"
out=$(plain_virsh define /root/windows-vhostuser.xml 2>&1)
t_contains "libvirt itself refuses the e1000 seed, as without vhostfix" "$out" "vhostuser"
t_not_contains "... (not vhostfix)" "$out" "vhostfix"
check_handed_back() { # LABEL
  local out
  out=$(in_ct "$TM" status 2>&1)
  t_eq "$1: transparent-mode status exits 3 (off)" 3 "$?"
  t_contains "$1: status says it was handed back, when and why" "$out" "handed back: vhostfix-proxy failed for good at "
  t_contains "$1: ... why" "$out" "proxy.no_such_key"
  t_eq "$1: libvirtd's sockets are at their own paths" "/run/libvirt/libvirt-sock (Stream)|/run/libvirt/libvirt-sock-ro (Stream)" \
    "$(in_ct systemctl show -p Listen --value libvirtd.socket)|$(in_ct systemctl show -p Listen --value libvirtd-ro.socket)"
  t_eq "$1: no drop-in of transparent mode is left" "" \
    "$(in_sh 'ls /etc/systemd/system/*.d/50-vhostfix-transparent.conf /etc/tmpfiles.d/vhostfix-transparent.conf 2>/dev/null')"
  t_check "$1: plain virsh and virsh -r reach libvirtd" in_sh "virsh -q -c qemu:///system list --all && virsh -q -r -c qemu:///system list --all"
  t_eq "$1: the metric says handed-back" handed-back "$(gauge)"
}
check_handed_back "handed back"
t_contains "vhostfix proxy --stats cannot load the broken configuration and says so" "$(in_ct vhostfix proxy --stats 2>&1)" "proxy.no_such_key"
set_config default
t_contains "with the configuration fixed, vhostfix proxy --stats says vhostfix is not in front of libvirt" \
  "$(in_ct vhostfix proxy --stats 2>&1)" "transparent mode: vhostfix is not in front of libvirt since "
if reboot_container; then
  t_ok "the container reboots after the hand-back"
  t_eq "after reboot: the proxy's sockets stay off" "inactive inactive" \
    "$(in_ct systemctl is-active vhostfix-proxy.socket vhostfix-proxy-ro.socket | paste -sd' ')"
  check_handed_back "after reboot"
else
  t_fail "the container reboots after the hand-back" "nspawn exit status $REBOOT_RC" "$(nspawn_log)"
fi
out=$(in_ct "$TM" enable 2>&1)
t_eq "transparent-mode enable puts the proxy back (the operator's explicit step)" 0 "$?"
[ -z "$out" ] || t_log "enable said: $out"
t_eq "... the state is on again" "on on" "$(state_of) $(gauge)"
check_transparent "re-enabled"

# failure_policy "closed": the sockets stay the proxy's.
set_config closed broken
in_ct systemctl restart vhostfix-proxy.service >/dev/null 2>&1
wait_for "[ \"\$(state_of)\" = failed-closed ]" 30
t_eq "failure_policy closed: the failure is recorded as failed-closed" "failed-closed failed-closed" "$(state_of) $(gauge)"
t_contains "... logged at error level" "$(tm_errors)" "failure_policy \"closed\": libvirt's sockets stay with the proxy"
out=$(in_ct "$TM" status 2>&1)
t_eq "... status exits 1 (installed, not in effect)" 1 "$?"
t_contains "... and says why" "$out" "failed: vhostfix-proxy failed for good at "
t_eq "... libvirtd still listens only in /run/libvirt/real, the proxy's socket unit keeps the canonical path" \
  "/run/libvirt/real/libvirt-sock (Stream)|/run/libvirt/libvirt-sock (Stream) failed" \
  "$(in_ct systemctl show -p Listen --value libvirtd.socket)|$(in_ct systemctl show -p Listen --value vhostfix-proxy.socket) $(in_ct systemctl is-failed vhostfix-proxy.socket)"
t_check "... so plain virsh is refused" in_sh "! timeout 10 virsh -q -c qemu:///system list"
# Fixed, and started again by hand: the proxy records that it is back.
set_config closed
in_ct systemctl reset-failed vhostfix-proxy.service vhostfix-proxy.socket vhostfix-proxy-ro.socket
t_check "with the configuration fixed, the proxy's units start again" \
  in_ct systemctl start vhostfix-proxy.socket vhostfix-proxy-ro.socket vhostfix-proxy.service
t_eq "... and the state is on again (ExecStartPost)" "on on" "$(state_of) $(gauge)"
check_transparent "closed, recovered"
t_check "transparent-mode disable" in_ct "$TM" disable
t_eq "disable forgets the state (off)" "|off" "$(state_of)|$(gauge)"
set_config default

# --- 4. package removal in transparent mode ---------------------------------

if [ -f "$ROOT/root/vhostfix.deb" ]; then
  out=$(in_ct dpkg -i --force-confdef --force-confold /root/vhostfix.deb 2>&1)
  rc=$?
  t_eq "the .deb installs in the container" 0 "$rc"
  [ "$rc" = 0 ] || t_log "dpkg said: $out"
  t_check "transparent-mode enable from the package" in_ct "$TM" enable
  t_eq "transparent mode is on" 0 "$(in_ct "$TM" status >/dev/null 2>&1; echo $?)"
  # An upgrade (the same package again: prerm upgrade, postinst configure)
  # with either failure policy leaves transparent mode on and serving.
  for policy in open closed; do
    set_config "$policy"
    out=$(in_ct dpkg -i --force-confdef --force-confold /root/vhostfix.deb 2>&1)
    rc=$?
    t_eq "failure_policy $policy: an upgrade of the .deb in transparent mode succeeds" 0 "$rc"
    [ "$rc" = 0 ] || t_log "dpkg said: $out"
    plain_virsh list --all >/dev/null 2>&1
    t_eq "... transparent mode stays on (status exit 0, state on), the proxy serving" "0 on active" \
      "$(in_ct "$TM" status >/dev/null 2>&1; echo $?) $(state_of) $(in_ct systemctl is-active vhostfix-proxy.service)"
  done
  t_eq "... and nothing was handed back" "" "$(tm_errors | grep -v 'no_such_key')"
  # Removal while the proxy is failed for good with failure_policy "closed".
  set_config closed broken
  in_ct systemctl restart vhostfix-proxy.service >/dev/null 2>&1
  wait_for "[ \"\$(state_of)\" = failed-closed ]" 30
  t_eq "failure_policy closed, proxy failed for good before the removal" failed-closed "$(state_of)"
  out=$(in_ct dpkg -r vhostfix 2>&1)
  t_eq "dpkg -r vhostfix succeeds" 0 "$?"
  t_contains "removal said it put libvirt's sockets back" "$out" "disabled: libvirtd listens on its own sockets in /run/libvirt again"
  t_eq "the proxy's units are gone from systemd" "not-found not-found not-found" \
    "$(in_ct systemctl show -p LoadState --value vhostfix-proxy.service vhostfix-proxy.socket vhostfix-proxy-failure.service | grep . | paste -sd' ')"
  t_check "... and so is the recorded state" in_ct test ! -e "$STATE" -a ! -e /var/lib/vhostfix
  set_config default
  check_direct "after dpkg -r" removed
else
  t_fail "the .deb to install (cargo-deb: see .ci/run)" "deb_current built none"
fi

# The rpm's %preun on erase ($1 = 0), with the files of the packaged layout.
install_proxy_files
install -D -m 0755 "$REPO/packaging/libvirt-hooks" "$ROOT/usr/lib/vhostfix/libvirt-hooks"
install -D -m 0644 "$REPO/packaging/vhostfix.toml" "$ROOT/etc/vhostfix/vhostfix.toml"
in_ct systemctl daemon-reload
in_sh "systemd-tmpfiles --create /usr/lib/tmpfiles.d/vhostfix.conf"
# Removal after the proxy failed for good and libvirt got its sockets back.
t_check "transparent-mode enable (rpm layout)" in_ct "$TM" enable
set_config default broken
in_ct systemctl restart vhostfix-proxy.service >/dev/null 2>&1
wait_for "[ \"\$(state_of)\" = handed-back ]" 30
t_eq "rpm layout: the broken proxy was handed back" handed-back "$(state_of)"
out=$(in_ct sh /root/preun.sh 0 2>&1)
t_eq "the rpm's %preun (erase) after a hand-back succeeds" 0 "$?"
t_check "... and takes the recorded state away" in_ct test ! -e "$STATE"
set_config default
in_sh "systemd-tmpfiles --create /usr/lib/tmpfiles.d/vhostfix.conf"
in_ct systemctl reset-failed vhostfix-proxy.service vhostfix-proxy.socket vhostfix-proxy-ro.socket
t_check "transparent-mode enable (rpm layout)" in_ct "$TM" enable
out=$(in_ct sh /root/preun.sh 0 2>&1)
t_eq "the rpm's %preun (erase) succeeds" 0 "$?"
t_contains "%preun put libvirt's sockets back" "$out" "disabled: libvirtd listens on its own sockets in /run/libvirt again"
check_direct "after the rpm's %preun"

if [ "$T_FAIL" -gt 0 ] && [ -n "$LEADER" ]; then
  in_ct journalctl -q --no-pager -b -u vhostfix-proxy.service -u libvirtd.service -u 'libvirtd*.socket' -u 'vhostfix*.socket' >"$D/journal.txt" 2>&1
  t_log "journal of the container (vhostfix-proxy, libvirtd):"
  tail -60 "$D/journal.txt" >&2
fi

# --- 5. the host is untouched -----------------------------------------------
stop_container
t_eq "the container is gone" "" "$(pgrep -f -- "--machine=$MACHINE")"
t_eq "the host's libvirt sockets, libvirtd, /etc and /usr are as before" "$HOST_BEFORE" "$(host_state)"
t_done
