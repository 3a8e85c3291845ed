#!/usr/bin/env bash
# The qemu hook and the filter against a real libvirtd (9.0 on Debian 12), QEMU
# under TCG and a real vhost-user backend (Open vSwitch with DPDK):
#
#  1. libvirt refuses the seed domain (vhost-user + e1000) as-is; piped through
#     `vhostfix filter` it defines, with a virtio model.
#  2. vhostfix installed in /etc/libvirt/hooks/qemu.d/ lets a plain guest go through
#     create, save, restore and destroy untouched, and logs every checked phase;
#     a recorder script next to it shows which phases libvirt really calls.
#  3. The hook refuses at start what cannot work: a missing client socket by
#     default, memory not shared with [hook.checks] shared_memory = "deny" in
#     /etc/vhostfix/vhostfix.toml (the file the hook reads under libvirtd); and
#     allows when it cannot decide (garbage input, broken configuration) unless
#     hook.on_error = "deny".
#  4. End to end: the filtered seed domain starts and its NIC connects to OVS;
#     by default a Windows guest whose memory is not shared starts too (its NIC
#     dead, as without vhostfix), with the hook's warning in the log.
#  5. Everything set up here is removed again, also on failure; checked at the end.
#
# Run as root after `cargo build --release` (tests/run-all.sh does both).

T_NAME=libvirt-hook.sh
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

FIX=$REPO/tests/system/fixtures
P=vhostfix-t-hook-                     # every domain of this suite starts with this
SEED_NAME=${P}win2019-vhu
HOOKD=/etc/libvirt/hooks/qemu.d
HOOK=$HOOKD/50-vhostfix-test           # -> $VHOSTFIX
REC=$HOOKD/60-vhostfix-test-record     # records every call libvirt makes
CALLS=$T_TMP/calls
OVS_LOG=/var/log/openvswitch/ovs-vswitchd.log
SOCK=/run/vhu-test/vhu0.sock           # the seed domain's socket
SECONDS=0

need_root
if [ ! -x "$VHOSTFIX" ]; then
  echo "$T_NAME: $VHOSTFIX missing: run cargo build --release first" >&2
  exit 2
fi
system_lock
t_log "holding the system test lock after ${SECONDS}s"
libvirt_up || exit 1
MARK=$(cleanup_mark)
conf_state() { if [ -e "$HOOK_CONF" ]; then md5sum <"$HOOK_CONF"; else echo absent; fi; }
CONF_BEFORE=$(conf_state)

state() { v domstate "$1" 2>/dev/null || echo absent; }
our_domains() { v list --all --name 2>/dev/null | grep "^$P" | sort | paste -sd' ' -; }
drop_domain() { v destroy "$1" >/dev/null 2>&1; v undefine "$1" --managed-save >/dev/null 2>&1; return 0; }

# Leftovers of an earlier run of this suite that was killed hard.
for d in $(our_domains); do drop_domain "$d"; done
rm -f "$HOOK" "$REC"

# The first domain start makes libvirt probe QEMU's capabilities (about 50 s on
# this machine): do it here so that the timeouts below are about the operation.
t_check "libvirt knows QEMU's capabilities (probed once)" \
  timeout 300 "${VIRSH[@]}" domcapabilities --virttype qemu --arch x86_64
t_log "libvirtd ready after ${SECONDS}s"

# The seed domain under this suite's name, without its fixed UUID.
SEED=$T_TMP/seed.xml
sed -e "s|<name>win2019-vhu</name>|<name>$SEED_NAME</name>|" -e '/<uuid>/d' \
  "$REPO/examples/windows-vhostuser.xml" >"$SEED"

# --- the hook's log -----------------------------------------------------------
syslog_capture
# verdicts NAME: the hook's decisions for a domain, e.g. "prepare/begin:allow".
# Only the phases the hook checks; the others are logged as "nothing to check".
verdicts() {
  hook_log | grep -v 'nothing to check' |
    sed -nE "s/.*domain='$1' op=([a-z]+\/[a-z]+) .*action=([a-z]+).*/\1:\2/p" | paste -sd' ' -
}
# phases_logged NAME: every phase the hook logged for a domain, in order.
phases_logged() {
  hook_log | sed -nE "s/.*domain='$1' op=([a-z]+\/[a-z]+) .*/\1/p" | paste -sd' ' -
}
# calls NAME: the phases libvirt called for a domain since the last `: >$CALLS`.
calls() { [ -f "$CALLS" ] && awk -v d="$1" '$1 == d { printf "%s%s/%s", n++ ? " " : "", $2, $3 }' "$CALLS"; }
# Wait (briefly) until the hook's decisions for NAME are WANT; then compare.
t_verdicts() {
  wait_for "[ \"\$(verdicts '$2')\" = '$3' ]" 5
  t_eq "$1" "$3" "$(verdicts "$2")"
}

# --- 1. libvirt refuses the seed; the filtered seed defines ------------------
out=$(v define "$SEED" 2>&1)
t_eq "1: virsh define of the seed as-is fails" "1" "$?"
t_contains "1: libvirt says why" "$out" "vhostuser requires the virtio-net* frontend"
t_eq "1: nothing was defined" "absent" "$(state "$SEED_NAME")"

vm_cleanup_on_exit "$SEED_NAME"
"$VHOSTFIX" filter "$SEED" 2>"$T_TMP/filter.err" | v define /dev/stdin >"$T_TMP/define.out" 2>&1
t_eq "1: vhostfix filter | virsh define /dev/stdin succeeds" "0 0" "${PIPESTATUS[*]}"
t_contains "1: filter reports the change" "$(cat "$T_TMP/filter.err")" "model e1000 -> virtio"
xml=$(v dumpxml "$SEED_NAME" 2>&1)
t_contains "1: the defined domain has a virtio model" "$xml" "<model type='virtio'/>"
t_contains "1: ... on the same vhost-user socket" "$xml" "<source type='unix' path='$SOCK' mode='server'/>"
t_not_contains "1: ... and no e1000 left" "$xml" "e1000"
t_check "1: undefine it" v undefine "$SEED_NAME"

t_log "section 2. at ${SECONDS}s"
# --- 2. the hook in qemu.d/ ---------------------------------------------------
HOOKD_WAS=present
if [ ! -d "$HOOKD" ]; then
  HOOKD_WAS=absent
  mkdir -p "$HOOKD"
  on_exit "rmdir $HOOKD"
fi
cat >"$T_TMP/record-hook" <<EOF
#!/bin/sh
# Test recorder: which hook phases libvirt calls, and how much XML it passes.
n=\$(wc -c)
echo "\$1 \$2 \$3 \$4 stdin=\$n" >>"$CALLS"
EOF
chmod 0755 "$T_TMP/record-hook"
ln -s "$VHOSTFIX" "$HOOK"
on_exit "rm -f $HOOK"
ln -s "$T_TMP/record-hook" "$REC"
on_exit "rm -f $REC"

# Is libvirtd running the new scripts? Probe with a domain the hook refuses at
# once (check c); without the hook, QEMU fails on its own after a few seconds.
hook_runs() {
  local out
  out=$(vt 60 create "$FIX/vhu-client-missing.xml" 2>&1)
  drop_domain "${P}client"
  case $out in *"vhostfix refused"*) return 0 ;; *) return 1 ;; esac
}
if hook_runs; then
  PICKUP="at once"
else
  # libvirt looks for hook scripts when it starts or reloads its configuration.
  kill -HUP "$(cat /run/libvirtd.pid)"
  sleep 1
  wait_for "${VIRSH[*]} version" 30
  if hook_runs; then
    PICKUP="after a reload (SIGHUP)"
  else
    old=$(cat /run/libvirtd.pid)
    stop_pid "$old"
    no_lock libvirtd -d
    wait_for "[ -s /run/libvirtd.pid ] && [ \"\$(cat /run/libvirtd.pid)\" != $old ]" 10
    wait_for "${VIRSH[*]} version" 30
    # Stop the new daemon on exit only if this suite had started the old one.
    for c in "${T_CLEANUP[@]}"; do
      [ "$c" = "stop_pid $old" ] && on_exit "stop_pid $(cat /run/libvirtd.pid)"
    done
    if hook_runs; then PICKUP="after a restart"; else PICKUP="never"; fi
  fi
fi
t_log "libvirtd ran the new qemu.d/ script: $PICKUP"
t_check "2: libvirtd runs the hook from qemu.d/ ($PICKUP)" test "$PICKUP" != never

# The seed as-is never reaches any hook: libvirt refuses it while parsing.
: >"$CALLS"
out=$(vt 60 create "$SEED" 2>&1)
t_contains "2: virsh create of the seed as-is fails in libvirt" "$out" "vhostuser requires the virtio-net* frontend"
t_eq "2: ... before any hook runs (no call, no log line)" "|" "$(calls "$SEED_NAME")|$(verdicts "$SEED_NAME")"
PLAIN=${P}plain
vm_cleanup_on_exit "$PLAIN"
: >"$CALLS"
started=$SECONDS
out=$(vt 120 create "$FIX/plain-tcg.xml" 2>&1)
t_eq "2: create a plain guest with the hook installed" "0:" "$?:$out"
t_log "plain guest created in $((SECONDS - started))s"
t_eq "2: ... it runs" "running" "$(state "$PLAIN")"
t_eq "2: ... libvirt called" "prepare/begin start/begin started/begin" "$(calls "$PLAIN")"
t_verdicts "2: ... the hook checked and allowed prepare/begin" "$PLAIN" "prepare/begin:allow"
before=$(v dumpxml "$PLAIN" | sed -E "1s/ id='[0-9]+'//")

: >"$CALLS"
out=$(vt 60 save "$PLAIN" "$T_TMP/plain.save" 2>&1)
t_eq "2: save it" "0:" "$?:$out"
t_eq "2: ... it is gone (transient)" "absent" "$(state "$PLAIN")"
t_eq "2: ... libvirt called" "stopped/end release/end" "$(calls "$PLAIN")"

: >"$CALLS"
out=$(vt 120 restore "$T_TMP/plain.save" 2>&1)
t_eq "2: restore it" "0:" "$?:$out"
t_eq "2: ... it runs" "running" "$(state "$PLAIN")"
t_eq "2: ... libvirt called" "restore/begin prepare/begin start/begin started/begin" "$(calls "$PLAIN")"
t_verdicts "2: ... the hook checked and allowed restore/begin and prepare/begin" "$PLAIN" \
  "prepare/begin:allow restore/begin:allow prepare/begin:allow"
after=$(v dumpxml "$PLAIN" | sed -E "1s/ id='[0-9]+'//")
t_eq "2: ... with the same domain XML as before the save" "$before" "$after"
t_log "restore calls (with the bytes of XML the recorder got): $(paste -sd'|' "$CALLS")"

: >"$CALLS"
out=$(vt 60 destroy "$PLAIN" 2>&1)
t_eq "2: destroy it" "0:" "$?:$out"
t_eq "2: ... it is gone" "absent" "$(state "$PLAIN")"
t_eq "2: ... libvirt called" "stopped/end release/end" "$(calls "$PLAIN")"
t_eq "2: the hook decided nothing else for it" \
  "prepare/begin:allow restore/begin:allow prepare/begin:allow" "$(verdicts "$PLAIN")"
all="prepare/begin start/begin started/begin stopped/end release/end"
all="$all restore/begin prepare/begin start/begin started/begin stopped/end release/end"
wait_for "[ \"\$(phases_logged '$PLAIN')\" = '$all' ]" 5
t_eq "2: the hook logged every phase libvirt called (create, save, restore, destroy)" \
  "$all" "$(phases_logged "$PLAIN")"

t_log "section 3. at ${SECONDS}s"
# --- 3. what the hook refuses at start, and when it cannot decide -----------
# Unshared memory only warns by default (section 4 starts such a guest); the
# deny path, as an operator sets it. libvirt clears the environment of hooks,
# so the hook reads /etc/vhostfix/vhostfix.toml (put back on exit).
CONF=$HOOK_CONF
hook_config $'[hook.checks]\nshared_memory = "deny"'
UNSHARED=${P}unshared
vm_cleanup_on_exit "$UNSHARED"
t_check "3b: a vhost-user domain without shared memory defines" v define "$FIX/vhu-unshared.xml"
out=$(vt 60 start "$UNSHARED" 2>&1)
t_eq "3b: with shared_memory = \"deny\" in $CONF, virsh start fails" "1" "$?"
t_contains "3b: ... with the hook's message" "$out" "vhostfix refused to start domain '$UNSHARED'"
t_contains "3b: ... saying why" "$out" "not shared"
t_contains "3b: ... naming the NIC" "$out" "nic 0 (52:54:00:5a:02:01) on socket /run/vhostfix-t-hook/unshared.sock"
t_eq "3b: ... the domain stays shut off" "shut off" "$(state "$UNSHARED")"
t_verdicts "3b: ... the hook logged its decision" "$UNSHARED" "prepare/begin:deny"
t_check "3b: undefine it" v undefine "$UNSHARED"
hook_config_restore

CLIENT=${P}client
CSOCK=/run/vhostfix-t-hook/no-such-dir/client.sock
vm_cleanup_on_exit "$CLIENT"
t_check "3c: a client-mode vhost-user domain defines" v define "$FIX/vhu-client-missing.xml"
out=$(vt 60 start "$CLIENT" 2>&1)
t_eq "3c: ... virsh start without its socket fails" "1" "$?"
t_contains "3c: ... with the hook's message" "$out" "vhostfix refused to start domain '$CLIENT'"
t_contains "3c: ... naming the socket" "$out" "the socket $CSOCK does not exist"
t_eq "3c: ... the domain stays shut off" "shut off" "$(state "$CLIENT")"

# A broken /etc/vhostfix/vhostfix.toml must not block guests (on_error = allow):
# the same domain gets past the hook and fails in QEMU instead.
hook_config $'[hook]\non_error = "sometimes"'
out=$(vt 60 start "$CLIENT" 2>&1)
hook_config_restore
t_not_contains "3c: with a broken $CONF the hook lets it through" "$out" "vhostfix refused"
t_contains "3c: ... and QEMU fails to connect instead" "$out" "$CSOCK"
t_contains "3c: ... the hook logged that it allowed it" \
  "$(hook_log | grep -F "domain '$CLIENT' prepare/begin: configuration: $CONF")" "allowing"
drop_domain "$CLIENT"

# The hook called directly, as libvirt does, with input it cannot read.
out=$(printf garbage | VHOSTFIX_LOG=stderr "$VHOSTFIX" hook qemu x prepare begin - 2>&1)
t_eq "3: garbage on stdin: allowed (exit 0)" "0" "$?"
t_contains "3: ... the log line says so" "$out" "domain 'x' prepare/begin: domain XML:"
t_contains "3: ... and that it is allowing" "$out" "; allowing (hook.on_error = \"allow\")"
out=$(printf garbage | "$VHOSTFIX" hook qemu x-syslog prepare begin - 2>&1)
t_eq "3: garbage, logging to syslog: allowed, nothing on stderr" "0:" "$?:$out"
wait_for "hook_log | grep -qF \"domain 'x-syslog' prepare/begin\"" 5
t_contains "3: ... the syslog line says allowing" \
  "$(hook_log | grep -F "domain 'x-syslog' prepare/begin")" "allowing (hook.on_error = \"allow\")"

printf '[hook]\non_error = "deny"\n' >"$T_TMP/deny.toml"
out=$(printf garbage | VHOSTFIX_CONFIG=$T_TMP/deny.toml "$VHOSTFIX" hook qemu x prepare begin - 2>"$T_TMP/deny.err")
t_eq "3: garbage with on_error = deny: denied (exit 1), nothing on stdout" "1:" "$?:$out"
t_contains "3: ... the message on stderr" "$(cat "$T_TMP/deny.err")" \
  "vhostfix refused to start domain 'x': domain XML:"
t_contains "3: ... names the setting" "$(cat "$T_TMP/deny.err")" "hook.on_error = \"deny\""

printf '[hook]\non_error = "sometimes"\n' >"$T_TMP/broken.toml"
out=$(VHOSTFIX_CONFIG=$T_TMP/broken.toml VHOSTFIX_LOG=stderr \
  "$VHOSTFIX" hook qemu "$CLIENT" prepare begin - <"$FIX/vhu-client-missing.xml" 2>&1)
t_eq "3: broken configuration: a violating domain is allowed (exit 0)" "0" "$?"
t_contains "3: ... the log line names the file" "$out" "configuration: $T_TMP/broken.toml"
t_contains "3: ... and says allowing" "$out" "; allowing (hook.on_error = \"allow\")"
printf 'guests = "any"\n' >"$T_TMP/good.toml"
out=$(VHOSTFIX_CONFIG=$T_TMP/good.toml "$VHOSTFIX" hook qemu "$CLIENT" prepare begin - \
  <"$FIX/vhu-client-missing.xml" 2>&1)
t_eq "3: the same domain with a valid configuration: denied (exit 1)" "1" "$?"
t_contains "3: ... saying why" "$out" "does not exist"
out=$(VHOSTFIX_CONFIG=$T_TMP/good.toml VHOSTFIX_LOG=stderr "$VHOSTFIX" hook qemu "$UNSHARED" prepare begin - \
  <"$FIX/vhu-unshared.xml" 2>&1)
t_eq "3: memory not shared, by default: allowed (exit 0)" "0" "$?"
t_contains "3: ... with a warning naming the NIC and the fix" "$out" \
  "domain='$UNSHARED' prepare/begin: vhost-user nic 0 (52:54:00:5a:02:01) on socket /run/vhostfix-t-hook/unshared.sock needs shared guest memory"
t_contains "3: ... as a warning" "$out" "(action warn)"
printf 'guests = "any"\n[hook.checks]\nshared_memory = "deny"\n' >"$T_TMP/deny-shared.toml"
out=$(VHOSTFIX_CONFIG=$T_TMP/deny-shared.toml "$VHOSTFIX" hook qemu "$UNSHARED" prepare begin - \
  <"$FIX/vhu-unshared.xml" 2>&1)
t_eq "3: ... with shared_memory = \"deny\": denied (exit 1)" "1" "$?"
t_contains "3: ... saying why" "$out" "not shared"

t_log "section 4. at ${SECONDS}s"
# --- 4. end to end with Open vSwitch (DPDK) ----------------------------------
# ovs_e2e: the filtered seed domain against a real vhost-user backend.
ovs_e2e() {
  t_check "4: add the dpdkvhostuserclient port vhu0" ovs_add_client_port vhu0 "$SOCK"
  log_off=$(stat -c %s "$OVS_LOG" 2>/dev/null || echo 0)
  "$VHOSTFIX" filter -q "$SEED" >"$T_TMP/seed-fixed.xml"
  vm_cleanup_on_exit "$SEED_NAME"
  started=$SECONDS
  out=$(vt 120 create "$T_TMP/seed-fixed.xml" 2>&1)
  t_eq "4: virsh create of the filtered seed" "0:" "$?:$out"
  t_log "seed domain created in $((SECONDS - started))s"
  t_eq "4: ... it runs" "running" "$(state "$SEED_NAME")"
  t_verdicts "4: ... the hook allowed it" "$SEED_NAME" "prepare/begin:allow"
  t_contains "4: ... as a Windows guest with one vhost-user NIC" \
    "$(hook_log | grep -F "domain='$SEED_NAME' op=prepare/begin")" "verdict=windows"
  ovs_says() { tail -c +"$((log_off + 1))" "$OVS_LOG" | grep -F "($SOCK) connected"; }
  wait_for ovs_says 60
  t_contains "4: OVS logs the vhost-user connection" "$(ovs_says)" "VHOST_CONFIG: ($SOCK) connected"
  # The guest's boot ROM drives the NIC for about 10 s, some seconds after start.
  wait_for "ovs-vsctl get interface vhu0 status | grep -q 'status=connected'" 60
  t_contains "4: the port is up while the guest drives the NIC" \
    "$(ovs-vsctl get interface vhu0 status 2>&1)" "status=connected"
  t_log "port seen connected $((SECONDS - started))s after create"
  out=$(vt 60 destroy "$SEED_NAME" 2>&1)
  t_eq "4: destroy it" "0:" "$?:$out"
}

# ovs_unshared: by default ([hook.checks] shared_memory = "warn") a Windows
# guest whose memory is not shared starts as it would without vhostfix: its
# vhost-user NIC dead, the hook's warning in the log.
ovs_unshared() {
  local W=vhostfix-t-win-unshared WSOCK=/run/vhu-test/win-unshared.sock qlog qoff
  hook_config "# every setting at its default"
  t_check "4b: add the dpdkvhostuserclient port vhu1" ovs_add_client_port vhu1 "$WSOCK"
  on_exit "ovs-vsctl --if-exists del-port br-vhu vhu1"
  vm_cleanup_on_exit "$W"
  t_check "4b: a Windows guest without shared memory defines" v define "$FIX/win-unshared.xml"
  qlog=/var/log/libvirt/qemu/$W.log
  qoff=$(stat -c %s "$qlog" 2>/dev/null || echo 0)
  qemu_says() { tail -c +"$((qoff + 1))" "$qlog" 2>/dev/null; }
  out=$(vt 120 start "$W" 2>&1)
  t_eq "4b: by default, virsh start succeeds" "0" "$?"
  t_not_contains "4b: ... without a refusal" "$out" "vhostfix refused"
  t_eq "4b: ... it runs" "running" "$(state "$W")"
  t_verdicts "4b: ... the hook allowed it" "$W" "prepare/begin:allow"
  wait_for "hook_log | grep -qF \"domain='$W' prepare/begin: \"" 5
  t_contains "4b: ... and logged a warning naming the NIC and the fix" \
    "$(hook_log | grep -F "domain='$W' prepare/begin: ")" \
    "vhost-user nic 0 (52:54:00:5a:04:01) on socket $WSOCK needs shared guest memory, but memory is not shared"
  t_contains "4b: ... as a warning (the setting that refuses it is one away)" \
    "$(hook_log | grep -F "domain='$W' prepare/begin: ")" "(action warn)"
  # The boot ROM drives the NIC some seconds after start: QEMU cannot give the
  # backend the guest's memory, and says so only in its log.
  wait_for "qemu_says | grep -q 'Failed initializing vhost-user memory map'" 60
  t_contains "4b: ... its vhost-user NIC is dead (QEMU's log)" "$(qemu_says)" \
    "Failed initializing vhost-user memory map"
  out=$(vt 60 destroy "$W" 2>&1)
  t_eq "4b: destroy it" "0:" "$?:$out"
  t_check "4b: undefine it" v undefine "$W"
  hook_config_restore
}

OVS_WAS_UP=no
pgrep -x ovs-vswitchd >/dev/null && OVS_WAS_UP=yes
if ovs_up; then
  t_ok "4: Open vSwitch with DPDK is up (bridge br-vhu)"
  ovs_e2e
  ovs_unshared
else
  t_fail "4: Open vSwitch with DPDK is up (bridge br-vhu)" "$(tail -5 "$OVS_LOG" 2>&1)"
fi

t_log "section 5. at ${SECONDS}s"
# --- 5. tear down, then check that nothing is left ---------------------------
cleanup_since "$MARK"
t_eq "5: no domain of this suite is left" "" "$(our_domains)"
t_check "5: the hook links are gone" test ! -e "$HOOK" -a ! -L "$HOOK" -a ! -L "$REC"
t_check "5: /run/vhu-test is gone" test ! -e /run/vhu-test
t_eq "5: $CONF is as before the suite" "$CONF_BEFORE" "$(conf_state)"
[ "$HOOKD_WAS" = absent ] && t_check "5: $HOOKD (created here) is gone" test ! -e "$HOOKD"
if [ -z "$LOG_FROM" ]; then
  t_check "5: the syslog receiver is stopped and /dev/log removed" \
    sh -c "! pgrep -f '[U]NIX-RECV:/dev/log' && test ! -e /dev/log"
fi
if [ "$OVS_WAS_UP" = no ]; then
  t_check "5: the OVS daemons started here are stopped" sh -c '! pgrep -x ovs-vswitchd && ! pgrep -x ovsdb-server'
else
  t_check "5: bridge br-vhu is gone" sh -c '! ovs-vsctl br-exists br-vhu'
fi
t_log "finished in ${SECONDS}s"
t_done
