#!/usr/bin/env bash
# Hostile local users and faults against `vhostfix proxy` and the qemu hook,
# with the real libvirtd: one block per finding of the adversarial review
# (docs/proxy.md, "Hostile-client tests"). Each block reproduces the attack and
# asserts the bounded behaviour; against the proxy before the hardening
# (VHOSTFIX=/path/to/an/older/vhostfix) each block fails.
#
#   1 symlink/ownership attack on the listen directory
#   2 memory: slow senders announcing 32 MiB frames, partly sent calls, root's length words
#   3 1,000 connections from nobody: threads, fds, log lines bounded; root answered
#   4 idle clients of the proxy do not use up libvirtd's unauthenticated places
#   5 `virsh -r` on the read-only socket works for an ordinary user
#   6 SIGTERM during a 64 MiB vol-upload: the upload completes within drain_seconds
#   7 hook argv: domain names that look like options are names
#   8 `type='vhost&#117;ser'` (an entity) is fixed by the proxy as by `filter`
#   9 newlines and escapes in domain names are escaped in the proxy's and hook's logs
#  10 descriptors sent with a call that takes none are never forwarded later
#  11 a peer whose pid reads as 0 (the proxy in a child PID namespace) is admitted
# (finding 12, transparent mode's way back, is tested by tests/system/systemd-units.sh.)
#
# PROXY_HOSTILE_ONLY=1,3,10 runs a subset. Needs root, libvirt-daemon-system,
# python3-libvirt, socat, strace, util-linux (unshare) (see .ci/run).
T_NAME=proxy-hostile.sh
. "$(dirname "$0")/../lib/common.sh"
need_root
system_lock
libvirt_up || exit 1

PY=/usr/bin/python3
HOSTILE=$REPO/tests/lib/hostile.py
D=$T_TMP
chmod 0755 "$D"
UPSTREAM=/run/libvirt/libvirt-sock
U=vhfx-hostile
G=vhfx-hostile-grp
ONLY=${PROXY_HOSTILE_ONLY:-}
# want N: run block N (and have libvirtd up for it: another suite that ends
# stops the daemons it started).
want() {
  [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]] || return 1
  libvirt_up
  return 0
}

getent group "$G" >/dev/null || groupadd "$G"
id "$U" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /bin/sh -G "$G" "$U"
on_exit "userdel $U; groupdel $G"
as_user() { local who=$1; shift; runuser -u "$who" -- env HOME=/tmp XDG_RUNTIME_DIR=/tmp "$@"; }
cp "$HOSTILE" "$REPO/tests/lib/rawrpc.py" "$D/" # readable by the unprivileged users
chmod 0644 "$D"/*.py
HPY=$D/hostile.py

# conf FILE KEY=VALUE...: a [proxy] table with the keys this binary knows (an
# older binary refuses unknown keys; the blocks test behaviour, not keys).
conf() {
  local f=$1 kv
  shift
  printf '[proxy]\n' >"$f"
  for kv in "$@"; do
    printf '[proxy]\n%s\n' "$kv" >"$f.probe"
    if "$VHOSTFIX" --config "$f.probe" config check >/dev/null 2>&1; then
      printf '%s\n' "$kv" >>"$f"
    fi
  done
  rm -f "$f.probe"
}

# Proxy instances: start_proxy NAME [KEY=VALUE...] serves $D/NAME/sock (rw)
# and $D/NAME/sock-ro (ro, 0666), logs to $D/NAME.log; P_PID, P_SOCK, P_RO, P_LOG.
P_PID=
start_proxy() {
  local name=$1
  shift
  install -d -m 0755 "$D/$name"
  P_SOCK=$D/$name/sock
  P_RO=$D/$name/sock-ro
  P_LOG=$D/$name.log
  conf "$D/$name.toml" "admin_socket = \"$D/$name/admin\"" "$@"
  VHOSTFIX_LOG=stderr:info "$VHOSTFIX" --config "$D/$name.toml" proxy --listen "$P_SOCK" \
    --upstream "$UPSTREAM" --listen-ro "$P_RO" 2>>"$P_LOG" {T_LOCK_FD}>&- &
  P_PID=$!
  on_exit "stop_pid $P_PID"
  wait_for "[ -S '$P_SOCK' ] && [ -S '$P_RO' ]" 15
}
stop_proxy() {
  [ -n "$P_PID" ] || return 0
  kill -TERM "$P_PID" 2>/dev/null
  wait_for "! kill -0 $P_PID" 15 || kill -9 "$P_PID" 2>/dev/null
  wait "$P_PID" 2>/dev/null
  P_PID=
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
threads() { ls "/proc/$1/task" 2>/dev/null | wc -l; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
# sample_rss PID SECONDS: the largest RSS (kB) seen, sampled every 0.1 s.
sample_rss() {
  local max=0 v i
  for ((i = 0; i < $2 * 10; i++)); do
    v=$(rss_kb "$1")
    [ "${v:-0}" -gt "$max" ] && max=$v
    sleep 0.1
  done
  echo "$max"
}
undefine() { "${VIRSH[@]}" destroy "$1" >/dev/null 2>&1; "${VIRSH[@]}" undefine "$1" --managed-save >/dev/null 2>&1; true; }
SEED=$REPO/examples/windows-vhostuser.xml

# --- 1. symlink / ownership attack on the listen directory ---------------------
if want 1; then
  UD=$D/userdir
  install -d -m 0755 -o "$U" "$UD"
  SECRET=$D/secret
  echo "root only" >"$SECRET"
  chmod 0600 "$SECRET"
  # The owner of the directory swaps every temporary name for a symlink to the
  # root-only file, as fast as it can, while the proxy is started ten times.
  as_user "$U" "$PY" - "$UD" "$SECRET" <<'PYEOF' &
import os, sys, time
d, target = sys.argv[1], sys.argv[2]
end = time.monotonic() + 40
while time.monotonic() < end:
    for n in os.listdir(d):
        if n.endswith(".tmp"):
            p = os.path.join(d, n)
            try:
                os.unlink(p)
                os.symlink(target, p)
            except OSError:
                pass
PYEOF
  ATT=$!
  on_exit "kill $ATT"
  started=0
  refused=0
  for i in $(seq 10); do
    : >"$D/p1.err"
    VHOSTFIX_LOG=stderr "$VHOSTFIX" --config /dev/null proxy --listen "$UD/sock" --upstream "$UPSTREAM" \
      2>"$D/p1.err" {T_LOCK_FD}>&- &
    pid=$!
    if wait_for "! kill -0 $pid" 3; then
      wait "$pid"
      [ $? -ne 0 ] && refused=$((refused + 1))
    else
      started=$((started + 1))
      stop_pid "$pid"
    fi
  done
  kill "$ATT" 2>/dev/null
  wait "$ATT" 2>/dev/null
  t_eq "1: a listen directory owned by another user: the proxy refuses to start (10 of 10)" "10 0" "$refused $started"
  t_contains "1: ... and names the directory" "$(cat "$D/p1.err")" "$UD: refusing to create $UD/sock"
  t_eq "1: the root-only file is still 0600 root:root" "600 root root" "$(stat -c '%a %U %G' "$SECRET")"
  t_eq "1: nothing was created in the user's directory" "" "$(find "$UD" -mindepth 1 ! -type l -print)"
  # Root-owned but writable by a group; and a path through a symlink to the user's directory.
  install -d -m 0775 -g "$G" "$D/grpdir"
  ln -s "$UD" "$D/link"
  for dir in "$D/grpdir" "$D/link"; do
    out=$(VHOSTFIX_LOG=stderr timeout 5 "$VHOSTFIX" --config /dev/null proxy --listen "$dir/sock" \
      --upstream "$UPSTREAM" 2>&1 {T_LOCK_FD}>&-)
    rc=$?
    t_check "1: listen under $(basename "$dir") ($(stat -L -c '%U:%G %a' "$dir")): refused at start (exit $rc)" \
      test "$rc" -ne 0 -a "$rc" -ne 124
    t_contains "1: ... with a clear error" "$out" "must belong to root and not be writable by group or others"
  done
fi

# --- 2. memory: slow senders, partly sent calls, root's length words ------------
if want 2; then
  start_proxy p2 || t_fail "2: proxy starts" "$(cat "$P_LOG")"
  sleep 1
  base=$(rss_kb "$P_PID")
  as_user "$U" "$PY" "$HPY" hold "$P_RO" 12 slow 8 >"$D/p2a.out" 2>&1 &
  H=$!
  peak=$(sample_rss "$P_PID" 8)
  wait $H
  t_log "2: 12 slow 32 MiB announcers: RSS ${base} kB -> peak ${peak} kB"
  t_check "2: 12 users' connections announcing 32 MiB frames slowly: RSS grows < 32 MB (${base} -> ${peak} kB)" \
    test $((peak - base)) -lt 32768
  as_user "$U" "$PY" "$HPY" fill "$P_RO" 16 6 4 >"$D/p2b.out" 2>&1 &
  H=$!
  peak=$(sample_rss "$P_PID" 5)
  wait $H
  t_log "2: 16 x 6 MiB of 16 MiB calls: RSS ${base} kB -> peak ${peak} kB"
  t_check "2: 16 users' calls of 16 MiB, 6 MiB of each sent: RSS grows < 64 MB (${base} -> ${peak} kB)" \
    test $((peak - base)) -lt 65536
  "$PY" "$HPY" hold "$P_SOCK" 4 slow 5 >"$D/p2c.out" 2>&1 &
  H=$!
  peak=$(sample_rss "$P_PID" 5)
  wait $H
  t_log "2: root's 4 slow 32 MiB announcers: RSS ${base} kB -> peak ${peak} kB"
  t_check "2: root's connections announcing 32 MiB: a length word allocates nothing (${base} -> ${peak} kB)" \
    test $((peak - base)) -lt 16384
  sleep 3
  after=$(rss_kb "$P_PID")
  t_check "2: RSS returns after the burst (${base} -> ${after} kB)" test $((after - base)) -lt 16384
  t_check "2: the proxy still answers" timeout 10 virsh -q -c "qemu:///system?socket=$P_SOCK" version
  stop_proxy
fi

# --- 3. 1,000 connections from nobody -----------------------------------------
if want 3; then
  start_proxy p3 || t_fail "3: proxy starts" "$(cat "$P_LOG")"
  lines0=$(wc -l <"$P_LOG")
  as_user nobody "$PY" "$HPY" hold "$P_RO" 1000 idle 12 >"$D/p3.out" 2>&1 &
  H=$!
  wait_for "grep -q connected '$D/p3.out'" 30
  sleep 1
  th=$(threads "$P_PID")
  fd=$(fds "$P_PID")
  t_log "3: $(cat "$D/p3.out" | tr '\n' ' ')threads $th fds $fd"
  t_check "3: 1,000 connections from nobody: at most 100 proxy threads (saw $th)" test "$th" -le 100
  t_check "3: ... at most 300 open descriptors (saw $fd)" test "$fd" -le 300
  t0=$(date +%s%N)
  out=$(timeout 10 virsh -q -c "qemu:///system?socket=$P_SOCK" list --all 2>&1 >/dev/null)
  rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  t_eq "3: ... root's virsh on the rw socket is answered (${ms} ms)" "0" "$rc${out:+ $out}"
  t_check "3: ... libvirtd answers its direct clients" timeout 10 "${VIRSH[@]}" version
  wait $H
  lines=$(($(wc -l <"$P_LOG") - lines0))
  t_check "3: ... the log grew by at most 20 lines (saw $lines)" test "$lines" -le 20
  stop_proxy
fi

# --- 4. idle clients do not use up libvirtd's unauthenticated places ------------
if want 4; then
  start_proxy p4 || t_fail "4: proxy starts" "$(cat "$P_LOG")"
  "$PY" "$HPY" hold "$P_SOCK" 30 idle 15 >"$D/p4.out" 2>&1 &
  H=$!
  wait_for "grep -q connected '$D/p4.out'" 10
  sleep 2
  t_check "4: 30 idle clients of the proxy: a direct virsh still gets libvirtd" timeout 10 "${VIRSH[@]}" list --all
  t_check "4: ... and a virsh through the proxy too" timeout 10 virsh -q -c "qemu:///system?socket=$P_SOCK" list --all
  as_user "$U" "$PY" "$HPY" hold "$P_RO" 30 idle 8 >"$D/p4b.out" 2>&1 &
  H2=$!
  wait_for "grep -q connected '$D/p4b.out'" 10
  sleep 2
  t_check "4: 30 idle clients of an ordinary user on the ro socket: direct virsh still answered" \
    timeout 10 "${VIRSH[@]}" list --all
  wait $H $H2
  stop_proxy
fi

# --- 5. the read-only socket serves ordinary users ------------------------------
if want 5; then
  start_proxy p5 || t_fail "5: proxy starts" "$(cat "$P_LOG")"
  out=$(as_user "$U" timeout 20 virsh -r -c "qemu:///system?socket=$P_RO" list --all 2>&1)
  t_eq "5: virsh -r list --all as an ordinary user on the 0666 read-only socket" "0" "$?"
  t_not_contains "5: ... no error" "$out" "error"
  t_eq "5: ... the same answer as root's direct virsh -r" "$(timeout 20 virsh -r -q -c qemu:///system list --all 2>&1)" \
    "$(as_user "$U" timeout 20 virsh -r -q -c "qemu:///system?socket=$P_RO" list --all 2>&1)"
  out=$(as_user "$U" timeout 20 virsh -c "qemu:///system?socket=$P_RO" define "$SEED" 2>&1)
  t_contains "5: ... and what writes is refused by libvirt's read-only socket" "$out" "read only"
  out=$(as_user "$U" timeout 20 virsh -c "qemu:///system?socket=$P_SOCK" list 2>&1)
  t_contains "5: the rw socket (0660 root) stays closed to the user" "$out" "error"
  stop_proxy
fi

# --- 6. SIGTERM during a 64 MiB vol-upload ------------------------------------
if want 6; then
  start_proxy p6 "drain_seconds = 5" || t_fail "6: proxy starts" "$(cat "$P_LOG")"
  mkdir -p "$D/pool"
  "${VIRSH[@]}" pool-destroy vhfx-hostile-pool >/dev/null 2>&1
  "${VIRSH[@]}" pool-create-as vhfx-hostile-pool dir --target "$D/pool" >/dev/null
  on_exit "${VIRSH[*]} pool-destroy vhfx-hostile-pool"
  head -c $((64 << 20)) /dev/urandom >"$D/blob"
  "${VIRSH[@]}" vol-create-as vhfx-hostile-pool up.raw $((64 << 20)) --format raw >/dev/null
  # The data comes through a FIFO at ~25 MiB/s, so the upload is surely running at SIGTERM.
  mkfifo "$D/fifo"
  timeout 90 "$PY" -c '
import sys, time
src, dst = open(sys.argv[1], "rb"), open(sys.argv[2], "wb")
while True:
    b = src.read(1 << 20)
    if not b:
        break
    dst.write(b); dst.flush(); time.sleep(0.04)
' "$D/blob" "$D/fifo" &
  W=$!
  timeout 60 virsh -q -c "qemu:///system?socket=$P_SOCK" vol-upload up.raw "$D/fifo" --pool vhfx-hostile-pool \
    >"$D/p6.out" 2>&1 &
  UP=$!
  sleep 0.8
  kill -TERM "$P_PID"
  t0=$(date +%s%N)
  wait $UP
  rc=$?
  [ $rc -eq 0 ] || kill $W 2>/dev/null
  wait $W
  out=$(cat "$D/p6.out")
  t_eq "6: SIGTERM 0.8 s into a 64 MiB vol-upload (drain_seconds = 5): the upload succeeds" "0" "$rc${out:+ $out}"
  t_eq "6: ... the volume is byte-identical" "$(sha256sum <"$D/blob")" "$(sha256sum <"$D/pool/up.raw")"
  if wait_for "! kill -0 $P_PID" 8; then
    t_ok "6: ... and the proxy stops within drain_seconds ($((($(date +%s%N) - t0) / 1000000)) ms after SIGTERM)"
  else
    t_fail "6: ... and the proxy stops within drain_seconds"
  fi
  stop_proxy
  "${VIRSH[@]}" pool-destroy vhfx-hostile-pool >/dev/null 2>&1
fi

# --- 7. hook arguments are positional ----------------------------------------
if want 7; then
  install -d "$D/hooks/qemu.d"
  HOOK=$D/hooks/qemu.d/50-vhostfix # what libvirt runs: a program in hooks/qemu.d
  ln -s "$VHOSTFIX" "$HOOK"
  : >"$D/empty.toml"
  # A violating domain (client socket missing): refused at prepare/begin.
  BAD=$REPO/tests/system/fixtures/vhu-client-missing.xml
  GOOD=$REPO/tests/system/fixtures/plain-tcg.xml
  hook() { VHOSTFIX_CONFIG=$D/empty.toml VHOSTFIX_LOG=stderr "$HOOK" "$@"; }
  t_eq "7: (the violating domain under a plain name is refused)" "1" \
    "$(hook vhfx-plain prepare begin - <"$BAD" >/dev/null 2>&1; echo $?)"
  for name in --guests=any -- -x --version --help; do
    x=$(sed "s|<name>[^<]*</name>|<name>$name</name>|" "$BAD")
    out=$(hook "$name" prepare begin - <<<"$x" 2>"$D/p7.err")
    rc=$?
    t_eq "7: domain named '$name' violating at prepare/begin: refused (exit 1), nothing on stdout" "1|" "$rc|$out"
    x=$(sed "s|<name>[^<]*</name>|<name>$name</name>|" "$GOOD")
    out=$(hook "$name" prepare begin - <<<"$x" 2>"$D/p7.err")
    t_eq "7: domain named '$name', nothing wrong: allowed (exit 0)" "0" "$?"
    out=$(hook "$name" migrate begin - <<<"$x" 2>"$D/p7.err")
    rc=$?
    t_eq "7: domain named '$name' at migrate/begin: no help text on stdout (libvirt takes it as XML)" \
      "" "$(grep -m1 -o 'Usage:.*' <<<"$out")"
    t_check "7: ... exit 0 or 1, not a usage error (saw $rc)" test "$rc" -le 1
  done
fi

# --- 8. an entity cannot hide vhostuser from the proxy -----------------------------
if want 8; then
  start_proxy p8 || t_fail "8: proxy starts" "$(cat "$P_LOG")"
  N8=vhfx-hostile-entity
  sed -e "s|<name>[^<]*</name>|<name>$N8</name>|" -e '/<uuid>/d' -e "s|type='vhostuser'|type='vhost\&#117;ser'|" \
    "$SEED" >"$D/entity.xml"
  t_contains "8: (the test XML spells vhostuser with an entity)" "$(cat "$D/entity.xml")" "type='vhost&#117;ser'"
  t_contains "8: vhostfix filter fixes it" "$("$VHOSTFIX" --config /dev/null filter "$D/entity.xml" 2>/dev/null)" \
    "<model type='virtio'/>"
  undefine "$N8"
  vm_cleanup_on_exit "$N8"
  out=$(timeout 30 virsh -c "qemu:///system?socket=$P_SOCK" define "$D/entity.xml" 2>&1)
  t_contains "8: define through the proxy: the entity-spelt vhost-user NIC is fixed" "$out" "Domain '$N8' defined"
  t_contains "8: ... the defined domain has virtio" "$("${VIRSH[@]}" dumpxml "$N8" 2>&1)" "<model type='virtio'/>"
  undefine "$N8"
  stop_proxy
fi

# --- 9. escaped log fields -----------------------------------------------------
if want 9; then
  start_proxy p9 || t_fail "9: proxy starts" "$(cat "$P_LOG")"
  out=$("$PY" "$HPY" attach-name "$P_SOCK" 'vhfx-evil\nFORGED vhostfix: accepted\x1b[2J' 2>&1)
  sed -e "s|<name>[^<]*</name>|<name>vhfx-evil\&#10;FORGED define\&#27;</name>|" -e '/<uuid>/d' "$SEED" >"$D/evil.xml"
  timeout 30 virsh -q -c "qemu:///system?socket=$P_SOCK" define "$D/evil.xml" >/dev/null 2>&1
  undefine "$(printf 'vhfx-evil\nFORGED define')"
  sleep 0.5
  log=$(cat "$P_LOG")
  t_contains "9: (the proxy logged the attach to the odd name)" "$log" "vhfx-evil"
  t_eq "9: proxy log: no line forged by a newline in a domain name" "0" "$(grep -c '^FORGED' "$P_LOG")"
  t_eq "9: proxy log: no raw ESC" "0" "$(grep -c $'\x1b' "$P_LOG")"
  stop_proxy
  : >"$D/empty.toml"
  name=$(printf 'vhfx-evil\nFORGED hook: allowed\x1b[2J')
  x=$(sed "s|<name>[^<]*</name>|<name>vhfx-evil</name>|" "$REPO/tests/system/fixtures/vhu-client-missing.xml")
  VHOSTFIX_CONFIG=$D/empty.toml VHOSTFIX_LOG=stderr:info "$VHOSTFIX" hook qemu "$name" prepare begin - \
    <<<"$x" >/dev/null 2>"$D/p9h.err"
  t_contains "9: (the hook logged the call)" "$(cat "$D/p9h.err")" "vhfx-evil"
  t_eq "9: hook log: no line forged by a newline in a domain name" "0" "$(grep -c '^FORGED' "$D/p9h.err")"
  t_eq "9: hook log: no raw ESC" "0" "$(grep -c $'\x1b' "$D/p9h.err")"
fi

# --- 10. stray descriptors ----------------------------------------------------
if want 10; then
  start_proxy p10 || t_fail "10: proxy starts" "$(cat "$P_LOG")"
  echo stray >"$D/stray-fd-file"
  echo announced >"$D/announced-fd-file"
  strace -f -qq -e trace=sendmsg -y -o "$D/p10.strace" -p "$P_PID" 2>"$D/p10.strace.err" &
  ST=$!
  on_exit "kill $ST"
  sleep 1
  mkfifo "$D/p10.in"
  "$PY" "$HPY" stray "$P_SOCK" "$D/stray-fd-file" "$D/announced-fd-file" <"$D/p10.in" >"$D/p10.out" 2>&1 &
  C=$!
  exec {HOLD}>"$D/p10.in"
  wait_for "grep -q files_call_status '$D/p10.out'" 20
  sleep 0.5
  held=$(ls -l "/proc/$P_PID/fd" 2>/dev/null | grep -c 'fd-file')
  exec {HOLD}>&-
  wait $C
  sleep 0.5
  kill "$ST" 2>/dev/null
  wait "$ST" 2>/dev/null
  t_contains "10: the call with a stray descriptor is answered" "$(cat "$D/p10.out")" "stray_call_status 0"
  t_contains "10: (the call that takes a descriptor was answered)" "$(cat "$D/p10.out")" "files_call_status"
  fwd=$(grep -o 'cmsg_data=\[[^]]*\]' "$D/p10.strace" | grep -o '[a-z]*-fd-file' | paste -sd' ')
  t_eq "10: the proxy forwarded only the announced descriptor, never the stray one" "announced-fd-file" "$fwd"
  t_eq "10: the proxy holds neither descriptor while the client stays connected" "0" "$held"
  stop_proxy
fi

# --- 11. peer pid 0: the proxy in a child PID namespace ------------------------
if want 11; then
  install -d -m 0755 "$D/ns"
  conf "$D/ns.toml" "admin_socket = \"$D/ns/admin\"" "allowed_groups = [\"$G\"]" 'socket_mode = "0666"'
  # The proxy is not the namespace's init (init ignores SIGTERM from outside):
  # sh is, and the proxy is stopped by its pid as seen from here.
  unshare -p -f --mount-proc --kill-child sh -c \
    'VHOSTFIX_LOG=stderr:info "$0" --config "$1" proxy --listen "$2" --upstream "$3" & wait' \
    "$VHOSTFIX" "$D/ns.toml" "$D/ns/sock" "$UPSTREAM" </dev/null >/dev/null 2>"$D/ns.log" {T_LOCK_FD}>&- &
  NS=$!
  on_exit "kill -9 $NS"
  wait_for "[ -S '$D/ns/sock' ]" 15
  NSP=$(pgrep -P "$(pgrep -P "$NS")")
  on_exit "stop_pid $NSP"
  out=$(timeout 20 virsh -q -c "qemu:///system?socket=$D/ns/sock" list --all 2>&1 >/dev/null)
  t_eq "11: root outside the proxy's PID namespace (its pid reads as 0) is admitted" "0" "$?${out:+ $out}"
  out=$(as_user "$U" timeout 20 virsh -q -c "qemu:///system?socket=$D/ns/sock" list --all 2>&1 >/dev/null)
  t_eq "11: ... and a member of allowed_groups too" "0" "$?${out:+ $out}"
  t_not_contains "11: no 'os error 0' refusals in the log" "$(cat "$D/ns.log")" "os error 0"
  stop_pid "$NSP"
  wait_for "! kill -0 $NS" 10 || kill -9 "$NS"
  t_check "11: the proxy in the namespace stops on SIGTERM and removes its socket" test ! -e "$D/ns/sock"
fi

t_done
