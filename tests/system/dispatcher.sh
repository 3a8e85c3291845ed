#!/usr/bin/env bash
# The qemu hook dispatcher for libvirt < 6.5 (hooks/qemu-dispatcher) against
# libvirt's documented semantics for /etc/libvirt/hooks/qemu.d/, with scripted
# hooks in a private directory: name order, the same arguments and stdin for
# each, output chaining for migrate/restore, the first failure aborting with its
# status and stderr, and stepping aside where libvirt runs qemu.d/ itself.
# Needs no root and touches nothing outside its temporary directory.
source "$(dirname "$0")/../lib/common.sh"

DISPATCHER=$REPO/hooks/qemu-dispatcher
H=$T_TMP/hooks
mkdir -p "$H/qemu.d"
ln -s "$DISPATCHER" "$H/qemu"  # installed as a symlink, like the packages do
LOG=$T_TMP/log
XML="<domain type='qemu'><name>d1</name></domain>"

# hook NAME BODY: an executable script in qemu.d/ (bash; $LOG is exported).
export LOG
hook() {
  printf '#!/bin/bash\n%s\n' "$2" >"$H/qemu.d/$1"
  chmod 755 "$H/qemu.d/$1"
}
reset() { rm -rf "$H/qemu.d" "$LOG"; mkdir -p "$H/qemu.d"; : >"$LOG"; }
# dispatch OP [INPUT]: runs the dispatcher as libvirt would; sets OUT ERR RC.
dispatch() {
  local op=$1 input=${2-$XML}
  OUT=$(printf '%s' "$input" | VHOSTFIX_DISPATCH=always "$H/qemu" d1 "$op" begin - 2>"$T_TMP/err")
  RC=$?
  ERR=$(cat "$T_TMP/err")
}

# --- order, arguments, which entries count as hooks
reset
rec='echo "${0##*/} $*" >>"$LOG"; cat >/dev/null'
for n in 20-b 10-a 9-c .5-hidden; do hook "$n" "$rec"; done
printf '#!/bin/bash\necho never >>"$LOG"\n' >"$H/qemu.d/15-not-executable"
mkdir "$H/qemu.d/17-a-directory"
hook target-outside "$rec"
mv "$H/qemu.d/target-outside" "$T_TMP/linked-hook"
ln -s "$T_TMP/linked-hook" "$H/qemu.d/12-link"
ln -s "$T_TMP/does-not-exist" "$H/qemu.d/13-dangling"
dispatch prepare
t_eq "prepare exits 0 when every hook succeeds" 0 "$RC"
t_eq "hooks run in byte order of their names, dot files included, each with libvirt's arguments" \
  ".5-hidden d1 prepare begin -|10-a d1 prepare begin -|12-link d1 prepare begin -|20-b d1 prepare begin -|9-c d1 prepare begin -" \
  "$(paste -sd'|' "$LOG")"
t_not_contains "non-executable files, directories and dangling links are skipped" "$(cat "$LOG")" never

# --- stdin: every hook gets the whole domain XML; stdout is not used for prepare
reset
for n in 10-a 20-b 30-c; do hook "$n" 'cat >"$LOG.${0##*/}"; echo "output of ${0##*/}"'; done
dispatch prepare
t_eq "prepare: exit 0" 0 "$RC"
for n in 10-a 20-b 30-c; do
  t_eq "prepare: $n got the domain XML on stdin" "$XML" "$(cat "$LOG.$n")"
done
t_eq "prepare: hook output is not passed on (libvirt ignores it)" "" "$OUT"

# A large document passes through intact (no pipe deadlock, no truncation).
big="<domain>$(head -c 3000000 /dev/zero | tr '\0' 'x')</domain>"
reset
hook 10-a 'cat >"$LOG.a"'
hook 20-b 'cat >"$LOG.b"'
dispatch start "$big"
want=$(printf '%s' "$big" | md5sum)
t_eq "a 3 MB domain XML reaches every hook intact" "$want $want" "$(md5sum <"$LOG.a") $(md5sum <"$LOG.b")"

# --- restore/migrate: the output of one hook is the input of the next
for op in restore migrate; do
  reset
  hook 10-a 'sed "s|</domain>|<description>a</description></domain>|"'
  hook 20-b 'tee "$LOG.b" | sed "s|</domain>|<title>b</title></domain>|"'
  hook 30-quiet 'cat >"$LOG.quiet"'                    # no output: XML unchanged
  hook 40-blank 'cat >"$LOG.blank"; printf "  \n\n"'   # white space only: unchanged
  hook 50-last 'cat >"$LOG.last"'
  dispatch "$op"
  chained="<domain type='qemu'><name>d1</name><description>a</description><title>b</title></domain>"
  t_eq "$op: exit 0" 0 "$RC"
  t_eq "$op: the second hook reads the first hook's output" \
    "<domain type='qemu'><name>d1</name><description>a</description></domain>" "$(cat "$LOG.b")"
  t_eq "$op: a hook after a silent one gets the last real output" "$chained" "$(cat "$LOG.blank")"
  t_eq "$op: white-space-only output changes nothing either" "$chained" "$(cat "$LOG.last")"
  t_eq "$op: the dispatcher prints the last non-empty output" "$chained" "$OUT"
done

reset
hook 10-quiet 'cat >/dev/null'
dispatch restore
t_eq "restore: no hook output, no dispatcher output (XML unchanged)" "0:" "$RC:$OUT"

# --- the first failure aborts, with its exit status and its stderr
for op in prepare restore; do
  reset
  hook 10-ok 'cat >/dev/null; echo "10-ok ran" >>"$LOG"; echo "<domain>changed</domain>"'
  hook 20-deny 'cat >/dev/null; echo "20-deny ran" >>"$LOG"; echo "denied by 20-deny: bad NIC" >&2; exit 3'
  hook 30-after 'cat >/dev/null; echo "30-after ran" >>"$LOG"'
  dispatch "$op"
  t_eq "$op: the failing hook's exit status is the dispatcher's" 3 "$RC"
  t_contains "$op: the failing hook's stderr reaches libvirt" "$ERR" "denied by 20-deny: bad NIC"
  t_eq "$op: hooks after the failure do not run" "10-ok ran|20-deny ran" "$(paste -sd'|' "$LOG")"
  t_eq "$op: no XML is printed after a failure" "" "$OUT"
done

reset
hook 10-killed 'cat >/dev/null; kill -TERM $$'
dispatch prepare
t_eq "a hook killed by a signal fails the operation (128+15)" 143 "$RC"

# --- no qemu.d at all, or an empty one
rm -rf "$H/qemu.d"
dispatch prepare
t_eq "no qemu.d directory: exit 0, no output" "0:" "$RC:$OUT"
mkdir -p "$H/qemu.d"
dispatch restore
t_eq "empty qemu.d: exit 0, no output" "0:" "$RC:$OUT"

# --- VHOSTFIX_DISPATCH=never, and auto where libvirt >= 6.5 runs qemu.d itself
reset
hook 10-a "$rec"
out=$(printf '%s' "$XML" | VHOSTFIX_DISPATCH=never "$H/qemu" d1 prepare begin - 2>&1); rc=$?
t_eq "VHOSTFIX_DISPATCH=never runs nothing" "0::" "$rc:$out:$(cat "$LOG")"
ver=$(libvirtd --version 2>/dev/null || virtqemud --version 2>/dev/null)
ver=${ver##* }
if [ -n "$ver" ] && [ "$(printf '%s\n6.5.0\n' "$ver" | sort -V | head -n1)" = 6.5.0 ]; then
  out=$(printf '%s' "$XML" | env -u VHOSTFIX_DISPATCH "$H/qemu" d1 prepare begin - 2>&1); rc=$?
  t_eq "auto: with libvirt $ver (runs qemu.d itself) the dispatcher steps aside" "0::" "$rc:$out:$(cat "$LOG")"
else
  t_log "skipped the auto check: no libvirt >= 6.5 daemon installed (found '${ver:-none}')"
fi

# --- the real hook behind the dispatcher (no libvirtd needed)
if [ -x "$VHOSTFIX" ]; then
  reset
  ln -s "$VHOSTFIX" "$H/qemu.d/50-vhostfix"
  real() { VHOSTFIX_DISPATCH=always VHOSTFIX_LOG=stderr VHOSTFIX_CONFIG=/dev/null "$H/qemu" win2019-vhu prepare begin -; }
  example=$REPO/examples/windows-vhostuser.xml
  real <"$example" >/dev/null 2>"$T_TMP/err"; rc=$?
  t_eq "vhostfix behind the dispatcher refuses a Windows guest with a vhost-user e1000 (exit 1)" 1 "$rc"
  t_contains "vhostfix behind the dispatcher: its reason reaches stderr" "$(cat "$T_TMP/err")" \
    "vhostfix refused to start domain 'win2019-vhu'"
  sed "s|<model type='e1000'/>|<model type='virtio'/>|" "$example" | real >/dev/null 2>"$T_TMP/err"; rc=$?
  t_eq "vhostfix behind the dispatcher lets the corrected guest start" 0 "$rc"
else
  t_log "skipped the vhostfix checks: $VHOSTFIX not built"
fi

t_done
