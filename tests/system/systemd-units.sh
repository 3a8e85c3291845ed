#!/usr/bin/env bash
# The packaged systemd units (packaging/systemd/vhostfix-proxy.{socket,service},
# vhostfix-proxy-ro.socket) and transparent mode (packaging/transparent-mode)
# under a real systemd.
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
nspawn_requirements
[ -e /lib/systemd/system/libvirtd.socket ] || skip "libvirtd.socket not installed (libvirt-daemon-system)"
[ -x "$VHOSTFIX" ] || { echo "$T_NAME: $VHOSTFIX missing: run cargo build --release" >&2; exit 2; }

system_lock

D=$T_TMP
NAME=win2019-vhu
ct_prepare units
ct_install_packaged
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
  t_fail "the container reboots" "nspawn exit status $REBOOT_RC" "$(tail -40 "$D/nspawn.log")"
fi

check_direct() { # LABEL
  local l=$1 out
  t_eq "$l: libvirtd's sockets are back at their own paths" \
    "/run/libvirt/libvirt-sock (Stream)|/run/libvirt/libvirt-sock-ro (Stream)" \
    "$(in_ct systemctl show -p Listen --value libvirtd.socket)|$(in_ct systemctl show -p Listen --value libvirtd-ro.socket)"
  t_eq "$l: the proxy is not running" inactive "$(in_ct systemctl is-active vhostfix-proxy.service)"
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

# --- 4. package removal in transparent mode ---------------------------------

if [ -f "$ROOT/root/vhostfix.deb" ]; then
  out=$(in_ct dpkg -i --force-confdef --force-confold /root/vhostfix.deb 2>&1)
  rc=$?
  t_eq "the .deb installs in the container" 0 "$rc"
  [ "$rc" = 0 ] || t_log "dpkg said: $out"
  t_check "transparent-mode enable from the package" in_ct "$TM" enable
  t_eq "transparent mode is on" 0 "$(in_ct "$TM" status >/dev/null 2>&1; echo $?)"
  out=$(in_ct dpkg -r vhostfix 2>&1)
  t_eq "dpkg -r vhostfix succeeds" 0 "$?"
  t_contains "removal said it put libvirt's sockets back" "$out" "disabled: libvirtd listens on its own sockets in /run/libvirt again"
  t_eq "the proxy's units are gone from systemd" "not-found not-found" \
    "$(in_ct systemctl show -p LoadState --value vhostfix-proxy.service vhostfix-proxy.socket | grep . | paste -sd' ')"
  check_direct "after dpkg -r" removed
else
  t_fail "the .deb to install (cargo-deb: see .ci/run)" "$DEB missing"
fi

# The rpm's %preun on erase ($1 = 0), with the files of the packaged layout.
install_proxy_files
install -D -m 0755 "$REPO/packaging/libvirt-hooks" "$ROOT/usr/lib/vhostfix/libvirt-hooks"
install -D -m 0644 "$REPO/packaging/vhostfix.toml" "$ROOT/etc/vhostfix/vhostfix.toml"
in_ct systemctl daemon-reload
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
