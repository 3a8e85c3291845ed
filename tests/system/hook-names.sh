#!/usr/bin/env bash
# Domain names that look like options, or hold control characters, through the
# real hook under a real libvirtd (issue 9, findings 7 and 9), and what
# `libvirt-hooks status` says about the running daemon (issue 10):
#
#  1. libvirt runs qemu.d/ scripts as `NAME OP SUBOP EXTRA`; domains named
#     `--guests=any`, `--`, `-x`, `--version`, `--help` are names to the hook:
#     a violating guest (vhost-user in client mode, its socket missing: refused
#     by default) is refused with its name,
#     and a guest named `--help` goes through start, save and restore (restore
#     begin takes the hook's stdout as the new XML: it must stay empty).
#  2. A name with a newline (and with an escape, where libvirt takes one) is
#     logged on one line, escaped.
#  3. `libvirt-hooks status` says whether the running daemon calls the hook,
#     from the daemon's start time and the hook's change time (the system
#     daemon: a user's libvirtd is not it).
#
# Run as root after `cargo build --release` (tests/run-all.sh does both).

T_NAME=hook-names.sh
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

FIX=$REPO/tests/system/fixtures
HOOKD=/etc/libvirt/hooks/qemu.d
HOOK=$HOOKD/50-vhostfix-test-names   # -> $VHOSTFIX
HELPER=$REPO/packaging/libvirt-hooks
UUID_PREFIX=6f0c1e2a-5b7d-4c3e-9a10-00000000   # + 4 hex digits per domain

need_root
if [ ! -x "$VHOSTFIX" ]; then
  echo "$T_NAME: $VHOSTFIX missing: run cargo build --release first" >&2
  exit 2
fi
system_lock

# --- 3 (set up before the daemon may start): a hook older than the daemon ---
# Private hooks directories for the status checks: the helper only compares
# change times there with the running daemon's start time.
EARLY=$T_TMP/early
mkdir -p "$EARLY/qemu.d"
ln -s /usr/bin/vhostfix "$EARLY/qemu.d/50-vhostfix"
OTHERS=$T_TMP/others
mkdir -p "$OTHERS/qemu.d"
printf '#!/bin/sh\nexit 0\n' >"$OTHERS/qemu.d/10-site"
chmod 755 "$OTHERS/qemu.d/10-site"
# A user's session libvirtd is not the system daemon, even when it is the
# older one: a stand-in (a process named libvirtd owned by nobody) started
# before the system daemon may be.
chmod 0755 "$T_TMP"
cp /bin/sleep "$T_TMP/libvirtd"
setpriv --reuid=65534 --regid=65534 --clear-groups "$T_TMP/libvirtd" 900 {T_LOCK_FD}>&- &
USER_DAEMON=$!
on_exit "stop_pid $USER_DAEMON"
sleep 1.1
libvirt_up || exit 1
MARK=$(cleanup_mark)

uuid_of() { printf '%s%04x' "$UUID_PREFIX" "$1"; }
drop_uuid() { v destroy "$1" >/dev/null 2>&1; v undefine "$1" --managed-save >/dev/null 2>&1; return 0; }
# Leftovers of an earlier run killed hard.
for i in $(seq 0 15); do drop_uuid "$(uuid_of "$i")"; done

t_check "libvirt knows QEMU's capabilities (probed once)" \
  timeout 300 "${VIRSH[@]}" domcapabilities --virttype qemu --arch x86_64

# --- the hook's log (syslog; received here when no syslog daemon runs) -------
syslog_capture

# --- the hook, in the real qemu.d ---------------------------------------------
if [ ! -d "$HOOKD" ]; then
  mkdir -p "$HOOKD"
  on_exit "rmdir '$HOOKD'"
fi
rm -f "$HOOK"
ln -s "$VHOSTFIX" "$HOOK"
on_exit "rm -f '$HOOK'"

# libvirtd runs a new qemu.d/ script at once only if it started with some qemu
# hook; otherwise after a reload. Probe, and reload when needed.
probe() {
  local u out
  u=$(uuid_of 15)
  sed -e "s|<name>[^<]*</name>|<name>vhostfix-t-names-probe</name><uuid>$u</uuid>|" \
    "$FIX/vhu-client-missing.xml" >"$T_TMP/probe.xml"
  out=$(vt 60 create "$T_TMP/probe.xml" 2>&1)
  drop_uuid "$u"
  case $out in *"vhostfix refused"*) return 0 ;; *) return 1 ;; esac
}
if ! probe; then
  kill -HUP "$(cat /run/libvirtd.pid)"
  sleep 1
  wait_for "${VIRSH[*]} version" 30
fi
t_check "libvirtd runs the test hook from qemu.d/" probe

# xml_escape TEXT: for a name inside <name>.
xml_escape() { sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' <<<"$1"; }

# define_named I NAME FIXTURE: defines FIXTURE as NAME with uuid I; sets U.
define_named() {
  U=$(uuid_of "$1")
  local esc
  esc=$(xml_escape "$2")
  awk -v name="$esc" -v uuid="$U" '
    /<name>/ { sub(/<name>[^<]*<\/name>/, "<name>" name "</name><uuid>" uuid "</uuid>") }
    { print }' "$3" >"$T_TMP/dom-$1.xml"
  on_exit "drop_uuid $U"
  v define "$T_TMP/dom-$1.xml" >"$T_TMP/define-$1.out" 2>&1
}

# --- 1. names that look like options ------------------------------------------
i=0
for name in --guests=any -- -x --version --help; do
  i=$((i + 1))
  if ! define_named "$i" "$name" "$FIX/vhu-client-missing.xml"; then
    t_fail "define a guest named '$name'" "$(cat "$T_TMP/define-$i.out")"
    continue
  fi
  t_eq "libvirt keeps the name '$name'" "$name" "$(v domname "$U")"
  out=$(vt 60 start "$U" 2>&1)
  t_eq "'$name' (client socket missing): start is refused" "shut off" "$(v domstate "$U" 2>&1)"
  t_contains "'$name': virsh shows the hook's refusal with the name" "$out" \
    "vhostfix refused to start domain '$name': vhost-user nic 0 (52:54:00:5a:03:01)"
  t_not_contains "'$name': no usage error or help text reached libvirt" "$out" "Usage:"
  wait_for "hook_log | grep -qF \"domain='$name' op=prepare/begin\"" 5
  t_contains "'$name': the log names the domain and the decision" \
    "$(hook_log | grep -F "domain='$name' op=prepare/begin")" "action=deny"
  drop_uuid "$U"
done

# A compliant guest named --help: start, save, restore (stdout used), destroy.
i=$((i + 1))
define_named "$i" --help "$FIX/plain-tcg.xml" || t_fail "define plain --help" "$(cat "$T_TMP/define-$i.out")"
out=$(vt 120 start "$U" 2>&1)
t_eq "a plain guest named --help starts" running "$(v domstate "$U" 2>&1)"
SAVE=$T_TMP/help.save
out=$(vt 120 save "$U" "$SAVE" 2>&1)
t_eq "... and saves" "shut off" "$(v domstate "$U" 2>&1)"
out=$(vt 120 restore "$SAVE" 2>&1)
t_eq "... and restores: the hook printed nothing libvirt would take as XML" running "$(v domstate "$U" 2>&1)"
t_not_contains "... with no parse error from libvirt" "$out" "error"
wait_for "hook_log | grep -qF \"domain='--help' op=restore/begin\"" 5
t_contains "the restore is logged under the name --help" \
  "$(hook_log | grep -F "domain='--help' op=restore/begin")" "action=allow"
drop_uuid "$U"
rm -f "$SAVE"

# --- 2. control characters in names -------------------------------------------
i=$((i + 1))
NL_NAME=$'vhostfix-t-names-nl\nvhostfix: info: domain=\'x\' action=allow'
if define_named "$i" "$NL_NAME" "$FIX/vhu-client-missing.xml"; then
  out=$(vt 60 start "$U" 2>&1)
  t_contains "a name with a newline: refused, the name escaped in the message" "$out" \
    "vhostfix refused to start domain 'vhostfix-t-names-nl\\nvhostfix: info: domain=\\'x\\' action=allow'"
  wait_for "hook_log | grep -qF 'vhostfix-t-names-nl'" 5
  line=$(hook_log | grep -F 'vhostfix-t-names-nl')
  t_contains "a name with a newline is logged on one line, escaped" "$line" \
    "domain='vhostfix-t-names-nl\\nvhostfix: info: domain=\\'x\\' action=allow' op=prepare/begin"
  t_eq "no forged log line" "" "$(hook_log | grep -E "\]: domain='x' action=allow")"
else
  # libvirt 9.0: "error: invalid char in name: " and the newline.
  t_contains "libvirt refuses a newline in a name itself" "$(cat "$T_TMP/define-$i.out")" "invalid char in name"
fi
drop_uuid "$(uuid_of "$i")"

# Tab, NEL (U+0085) and a right-to-left override (U+202E): libvirt 9.0 takes them.
i=$((i + 1))
CTL_NAME=$'vhostfix-t-names-ctl\tb\xc2\x85c\xe2\x80\xaed'
if define_named "$i" "$CTL_NAME" "$FIX/vhu-client-missing.xml"; then
  out=$(vt 60 start "$U" 2>&1)
  t_contains "a name with tab, NEL, RLO: refused, escaped in the message" "$out" \
    "vhostfix refused to start domain 'vhostfix-t-names-ctl\\tb\\u{85}c\\u{202e}d': vhost-user nic 0"
  wait_for "hook_log | grep -qF 'vhostfix-t-names-ctl'" 5
  t_contains "... and in the log" "$(hook_log | grep -F 'vhostfix-t-names-ctl')" \
    "domain='vhostfix-t-names-ctl\\tb\\u{85}c\\u{202e}d' op=prepare/begin"
  t_eq "... with none of them raw" 0 "$(hook_log | grep -c $'\t\\|\xc2\x85\\|\xe2\x80\xae')"
else
  t_fail "define a guest whose name holds a tab, NEL and RLO" "$(cat "$T_TMP/define-$i.out")"
fi
drop_uuid "$U"

i=$((i + 1))
# ESC cannot appear in XML 1.0, not even as &#27;: libvirt must refuse it.
U=$(uuid_of "$i")
printf '<domain type="qemu"><name>vhostfix-t-names-esc&#27;[2J</name><uuid>%s</uuid><memory unit="MiB">128</memory><os><type arch="x86_64" machine="pc">hvm</type></os></domain>\n' "$U" >"$T_TMP/esc.xml"
on_exit "drop_uuid $U"
if out=$(v define "$T_TMP/esc.xml" 2>&1); then
  # Should libvirt ever take it, the hook must still log it escaped.
  vt 60 start "$U" >/dev/null 2>&1
  wait_for "hook_log | grep -qF 'vhostfix-t-names-esc'" 5
  t_contains "a name with ESC is logged escaped" "$(hook_log | grep -F 'vhostfix-t-names-esc')" \
    "domain='vhostfix-t-names-esc\\u{1b}[2J'"
  drop_uuid "$U"
else
  t_ok "libvirt refuses ESC in a domain name (XML 1.0 has no such character): $(head -n 1 <<<"$out")"
fi
t_eq "no raw ESC in the hook's log" 0 "$(hook_log | grep -c $'\x1b')"

# --- 3. libvirt-hooks status against the running daemon -----------------------
status() { VHOSTFIX_HOOKS_DIR=$1 VHOSTFIX_LIBVIRT_VERSION=9.0.0 sh "$HELPER" status 2>&1; }
# The system daemon (libvirt_up made sure it runs): not a user's session
# libvirtd, nor a chroot's, whichever is older.
pid=$(cat /run/libvirtd.pid)
started=$(($(date +%s) - $(ps -o etimes= -p "$pid" | tr -d ' ')))
LATE=$T_TMP/late
mkdir -p "$LATE/qemu.d"
ln -s /usr/bin/vhostfix "$LATE/qemu.d/50-vhostfix"
ln -s /usr/bin/vhostfix "$OTHERS/qemu.d/50-vhostfix"
out=$(status "$LATE")
t_eq "status: the stand-in for a user's libvirtd runs (pid $USER_DAEMON, uid 65534)" "libvirtd 65534" \
  "$(ps -o comm=,uid= -p "$USER_DAEMON" | tr -s ' ')"
t_not_contains "status: ... and is not taken for the system daemon" "$out" "pid $USER_DAEMON"
t_contains "status: a hook newer than the daemon, no other hook: reload needed" "$out" \
  "libvirtd (pid $pid) was started before the hook existed and only looks for hooks when it starts or reloads: run 'systemctl reload libvirtd' (or 'kill -HUP $pid'; running guests are not affected) so it calls the vhostfix hook"
t_contains "... and says it does not call the hook now" "$out" \
  "with no qemu hook at all; unless it was reloaded since, it does not call the hook now)"
out=$(status "$OTHERS")
if [ "$(stat -c %Z "$OTHERS/qemu.d/10-site")" -lt "$started" ]; then
  t_contains "status: other hooks were there at start: called at once" "$out" \
    "libvirtd (pid $pid): calls the vhostfix hook (it started at"
  out=$(status "$EARLY")
  t_contains "status: a hook older than the daemon is called" "$out" \
    "libvirtd (pid $pid): calls the vhostfix hook (it started at"
  t_contains "... after the hook appeared" "$out" "after the hook appeared)"
else
  t_log "libvirtd was running before this suite: the 'older hook' cases are not observable"
fi
rm -f "$EARLY/qemu.d/50-vhostfix"
t_contains "status: no hook link, nothing said about the daemon" "$(status "$EARLY")" "hook link: missing"
t_not_contains "... (no daemon line)" "$(status "$EARLY")" "calls the vhostfix hook"

# --- cleanup, checked ----------------------------------------------------------
cleanup_since "$MARK"
t_check "the test hook is gone" test ! -e "$HOOK" -a ! -L "$HOOK"
left=0
for j in $(seq 0 15); do v domname "$(uuid_of "$j")" >/dev/null 2>&1 && left=$((left + 1)); done
t_eq "no domain of this suite is left" 0 "$left"

t_done
