#!/usr/bin/env bash
# Load test of `vhostfix proxy` under hostile clients, against the real libvirtd:
# 1,000 connections from `nobody` on the 0666 read-only socket (a third idle, a
# third announcing frames over libvirt's limit, a third slow senders of a
# 32 MiB call), then a second wave of 16 connections from another user that each send 6 MiB of a
# 16 MiB call, while root's virsh is timed through the proxy. Asserts:
#   - each of root's virsh calls through the proxy is answered in under 1 s
#   - the proxy's RSS (sampled from /proc every 0.1 s) stays under 64 MB
#   - libvirtd stays usable by its direct clients
# and prints the measured numbers. Needs root, libvirt-daemon-system,
# python3-libvirt (see .ci/run).
T_NAME=proxy-load.sh
. "$(dirname "$0")/../lib/common.sh"
need_root
system_lock
libvirt_up || exit 1

PY=/usr/bin/python3
D=$T_TMP
chmod 0755 "$D"
cp "$REPO/tests/lib/hostile.py" "$REPO/tests/lib/rawrpc.py" "$D/"
chmod 0644 "$D"/*.py
SOCK=$D/sock
RO=$D/sock-ro
LOG=$D/proxy.log
HOLD_S=${PROXY_LOAD_SECONDS:-30}
# The second wave comes from another ordinary user (nobody's own places,
# proxy.max_clients_per_user, are taken by the first).
U=vhfx-load
id "$U" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /bin/sh "$U"
on_exit "userdel $U"

printf '[proxy]\n' >"$D/proxy.toml"
printf '[proxy]\nadmin_socket = "%s"\n' "$D/admin" >"$D/probe.toml"
"$VHOSTFIX" --config "$D/probe.toml" config check >/dev/null 2>&1 && cp "$D/probe.toml" "$D/proxy.toml"
VHOSTFIX_LOG=stderr:info "$VHOSTFIX" --config "$D/proxy.toml" proxy --listen "$SOCK" \
  --upstream /run/libvirt/libvirt-sock --listen-ro "$RO" 2>"$LOG" {T_LOCK_FD}>&- &
PID=$!
on_exit "stop_pid $PID"
if ! wait_for "[ -S '$SOCK' ] && [ -S '$RO' ]" 15; then
  t_fail "proxy starts" "$(cat "$LOG")"
  t_done
  exit 1
fi
sleep 1
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
RSS0=$(rss_kb "$PID")

# Sampler: max RSS, threads and fds of the proxy while the load runs.
(
  max=0 tmax=0 fmax=0
  while kill -0 "$PID" 2>/dev/null && [ ! -e "$D/stop-sampling" ]; do
    r=$(rss_kb "$PID"); t=$(ls "/proc/$PID/task" 2>/dev/null | wc -l); f=$(ls "/proc/$PID/fd" 2>/dev/null | wc -l)
    [ "${r:-0}" -gt "$max" ] && max=$r
    [ "$t" -gt "$tmax" ] && tmax=$t
    [ "$f" -gt "$fmax" ] && fmax=$f
    echo "$max $tmax $fmax" >"$D/peak.tmp" && mv "$D/peak.tmp" "$D/peak"
    sleep 0.1
  done
) &
SAMPLER=$!
on_exit "kill $SAMPLER"

runuser -u nobody -- "$PY" "$D/hostile.py" hold "$RO" 1000 mixed "$HOLD_S" >"$D/wave1.out" 2>&1 &
W1=$!
wait_for "grep -q connected '$D/wave1.out'" 60
runuser -u "$U" -- "$PY" "$D/hostile.py" fill "$RO" 16 6 $((HOLD_S / 2)) >"$D/wave2.out" 2>&1 &
W2=$!

# Root's virsh through the proxy, timed, while both waves hold their connections.
times=()
fails=0
for i in $(seq 20); do
  t0=$(date +%s%N)
  if ! timeout 10 virsh -q -c "qemu:///system?socket=$SOCK" list --all >/dev/null 2>"$D/virsh.err"; then
    fails=$((fails + 1))
    cat "$D/virsh.err" >>"$D/virsh.fail"
  fi
  times+=($((($(date +%s%N) - t0) / 1000000)))
  sleep 0.5
done
t0=$(date +%s%N)
timeout 10 "${VIRSH[@]}" list --all >/dev/null 2>&1
direct_rc=$?
direct_ms=$((($(date +%s%N) - t0) / 1000000))
wait $W1 $W2
touch "$D/stop-sampling"
wait $SAMPLER 2>/dev/null
sleep 2
RSS_AFTER=$(rss_kb "$PID")
read -r RSS_MAX THR_MAX FD_MAX <"$D/peak"
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
t_min=$(head -1 <<<"$sorted")
t_med=$(sed -n 10p <<<"$sorted")
t_max=$(tail -1 <<<"$sorted")

printf '%s: hostile clients: wave 1 %s, wave 2 %s\n' "$T_NAME" \
  "$(tr '\n' ' ' <"$D/wave1.out")" "$(tr '\n' ' ' <"$D/wave2.out")"
printf '%s: root virsh list through the proxy (20 calls): min %s ms, median %s ms, max %s ms, failed %s\n' \
  "$T_NAME" "$t_min" "$t_med" "$t_max" "$fails"
printf '%s: direct virsh list during the load: exit %s, %s ms\n' "$T_NAME" "$direct_rc" "$direct_ms"
printf '%s: proxy RSS %s kB before, %s kB peak, %s kB after; peak threads %s, peak fds %s; log lines %s\n' \
  "$T_NAME" "$RSS0" "$RSS_MAX" "$RSS_AFTER" "$THR_MAX" "$FD_MAX" "$(wc -l <"$LOG")"

t_eq "every root virsh call through the proxy succeeded" "0" "$fails$( [ "$fails" = 0 ] || echo " ($(head -c 500 "$D/virsh.fail"))")"
t_check "each root virsh call through the proxy took under 1 s (max $t_max ms)" test "$t_max" -lt 1000
t_check "proxy RSS stayed under 64 MB (peak $RSS_MAX kB)" test "$RSS_MAX" -lt 65536
t_eq "libvirtd answered a direct client during the load (${direct_ms} ms)" "0" "$direct_rc"
t_check "the proxy is still running" kill -0 "$PID"
t_check "libvirtd answers direct clients after the load" timeout 10 "${VIRSH[@]}" version
t_done
