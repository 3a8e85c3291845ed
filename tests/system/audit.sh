#!/usr/bin/env bash
# System test of `vhostfix audit` against the real libvirtd: a mix of defined
# and running domains (one whose inactive definition differs from what runs),
# listed over libvirt's socket directly and through `vhostfix proxy`; the table,
# --json, exit codes and the Prometheus textfile. The README's "Audit the
# domains on a host" output is this suite's output: VHOSTFIX_BLESS=1 rewrites
# it, otherwise the suite fails when they differ.
# Needs root, libvirt-daemon-system, qemu-system-x86, python3 (see .ci/run).
T_NAME=audit.sh
. "$(dirname "$0")/../lib/common.sh"
need_root
system_lock
libvirt_up || exit 1

D=$T_TMP
chmod 0755 "$D"
P=vhostfix-t-audit
VD=("${VIRSH[@]}")
PROM=$D/textfile/vhostfix.prom
mkdir -p "$D/textfile"

undefine() { "${VD[@]}" destroy "$1" >/dev/null 2>&1; "${VD[@]}" undefine "$1" --managed-save >/dev/null 2>&1; true; }

# dom NAME UUID-SUFFIX EXTRA-TOP DEVICES: a small TCG guest.
dom() {
  cat <<XML
<domain type='qemu'>
  <name>$P-$1</name>
  <uuid>7a3d0c1e-5b2f-4c6a-8e9d-00000000000$2</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  $3
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    $4
    <serial type='pty'/>
  </devices>
</domain>
XML
}
WIN_FEATURES="<features><acpi/><hyperv><relaxed state='on'/><vapic state='on'/></hyperv></features><clock offset='localtime'/>"
vhu() { # vhu MAC-SUFFIX PATH MODE [EXTRA-IN-SOURCE]
  echo "<interface type='vhostuser'><mac address='52:54:00:ad:00:$1'/><source type='unix' path='$2' mode='$3'>${4:-}</source><model type='virtio'/></interface>"
}
USER_NIC="<interface type='user'><mac address='52:54:00:ad:00:99'/><model type='virtio'/></interface>"

for n in linux win-ok win-memfd win-unshared drift; do
  undefine "$P-$n"
  vm_cleanup_on_exit "$P-$n"
done

dom linux 1 "" "$USER_NIC" >"$D/linux.xml"
dom win-ok 2 "<memoryBacking><access mode='shared'/></memoryBacking>$WIN_FEATURES" \
  "$(vhu 02 /run/vhostfix-t-audit/ok.sock server)" >"$D/win-ok.xml"
dom win-memfd 3 "<memoryBacking><source type='memfd'/></memoryBacking>$WIN_FEATURES" \
  "$(vhu 03 /run/vhostfix-t-audit/memfd.sock server)" >"$D/win-memfd.xml"
dom win-unshared 4 "$WIN_FEATURES" \
  "$(vhu 04 /run/vhostfix-t-audit/unshared.sock server)" >"$D/win-unshared.xml"
dom drift 5 "" "$USER_NIC" >"$D/drift.xml"
# The next boot of 'drift': a vhost-user NIC in client mode whose backend
# socket does not exist, and memory that is not shared.
dom drift 5 "" "$USER_NIC$(vhu 05 /run/vhostfix-t-audit/missing.sock client)" >"$D/drift-next.xml"

for n in linux win-ok win-memfd win-unshared drift; do
  out=$("${VD[@]}" define "$D/$n.xml" 2>&1) || t_fail "define $n" "$out"
done
t_check "start $P-linux" "${VD[@]}" start "$P-linux"
t_check "start $P-drift" "${VD[@]}" start "$P-drift"
t_check "redefine $P-drift while it runs (inactive XML differs)" "${VD[@]}" define "$D/drift-next.xml"
live=$("${VD[@]}" dumpxml "$P-drift")
t_not_contains "the live XML of drift has no vhost-user NIC" "$live" "vhostuser"

# Other suites' leftovers are not ours to judge: keep our rows only (the
# header, our domains and the finding lines below them).
ours() { awk -v p="$P-" 'NR==1 || index($0, p)==1 {keep=1; print; next} /^  / {if (keep) print; next} {keep=0}'; }

# --- 1. directly on libvirtd's socket -------------------------------------------
"$VHOSTFIX" audit >"$D/table" 2>"$D/err"
rc=$?
t_eq "audit exits 3 (refused domains present)" 3 "$rc"
table=$(ours <"$D/table")
t_contains "header" "$table" "DOMAIN"
t_contains "linux: live and inactive, compliant" "$(grep "^$P-linux " <<<"$table")" "running"
t_eq "linux has two rows (live, inactive)" 2 "$(grep -c "^$P-linux " <<<"$table")"
t_contains "win-ok is compliant" "$(grep "^$P-win-ok " <<<"$table")" "compliant"
t_contains "win-memfd: a warning only on libvirt 9.0" "$(grep "^$P-win-memfd " <<<"$table")" "warning"
t_contains "win-unshared is refused" "$(grep "^$P-win-unshared " <<<"$table")" "refused"
t_contains "unshared memory is named with the fix" "$table" "needs shared guest memory, but memory is not shared (no <memoryBacking> access or memfd source)"
t_contains "drift live row is compliant" "$(grep "^$P-drift .* live " <<<"$table")" "compliant"
t_contains "drift inactive row is refused" "$(grep "^$P-drift .* inactive " <<<"$table")" "refused"
t_contains "the missing client socket is found" "$table" "socket /run/vhostfix-t-audit/missing.sock does not exist"
t_eq "nothing on stderr" "" "$(cat "$D/err")"

# --- 2. --json, --prometheus -------------------------------------------------------
"$VHOSTFIX" audit --json --prometheus "$PROM" >"$D/json" 2>"$D/err"
t_eq "audit --json exits 3" 3 "$?"
libver=$("${VD[@]}" version | awk '/Using library:/ {print $NF}')
check_json=$(python3 - "$D/json" "$P-" "$libver" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
p, libver = sys.argv[2], sys.argv[3]
rows = {(r["domain"][len(p):], r["xml"]): r for r in doc["domains"] if r["domain"].startswith(p)}
out = []
out.append("libvirt=%s" % (doc["libvirt"] == libver))
for key in sorted(rows):
    r = rows[key]
    kinds = ",".join(f["kind"] for f in r["findings"])
    out.append("%s/%s %s %s %s [%s]" % (key[0], key[1], r["state"].replace(" ", "-"), r["guest"], r["result"], kinds))
out.append("exit=%d" % doc["exit"])
print("\n".join(out))
PY
)
t_eq "JSON rows, results and finding kinds" "libvirt=True
drift/inactive running unknown refused [shared-memory,client-socket]
drift/live running unknown compliant []
linux/inactive running unknown compliant []
linux/live running unknown compliant []
win-memfd/inactive shut-off windows warning [memfd-default]
win-ok/inactive shut-off windows compliant []
win-unshared/inactive shut-off windows refused [shared-memory]
exit=3" "$check_json"
summary=$(python3 - "$D/json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d["summary"]
names = len({r["domain"] for r in d["domains"]})
print("%d domain XMLs (%d domains): %s" % (s["rows"], names, ", ".join(
    "%d %s" % (s[k], k) for k in ["compliant", "warning", "fixable", "refused", "error"])))
PY
)
t_eq "the table ends with a summary line that agrees with --json" "$summary" "$(tail -n 1 "$D/table")"
prom=$(cat "$PROM" 2>/dev/null)
t_contains "prometheus: success" "$prom" "vhostfix_audit_success 1"
t_contains "prometheus: compliant gauge per domain XML" "$prom" "vhostfix_audit_domain_compliant{domain=\"$P-win-unshared\",xml=\"inactive\",state=\"shut off\",result=\"refused\"} 0"
t_contains "prometheus: findings by severity" "$prom" "vhostfix_audit_findings{domain=\"$P-drift\",xml=\"inactive\",severity=\"refused\"} 2"
t_contains "prometheus: typed" "$prom" "# TYPE vhostfix_audit_domains gauge"
t_eq "prometheus: no temporary file left" "vhostfix.prom" "$(ls -A "$D/textfile")"

# --- 2b. --next-start: what the hook will do at each defined guest's next start ----
# (libvirt-hooks prints this at install.) Only the inactive XML counts; by
# default a missing client socket is refused, unshared memory only warned about.
: >"$D/empty.toml"
printf '[hook.checks]\nshared_memory = "deny"\n' >"$D/deny.toml"
others=$("${VD[@]}" list --all --name | grep -c -v -e "^$P-" -e '^$')
"$VHOSTFIX" --config "$D/empty.toml" audit --next-start >"$D/next" 2>"$D/err"
t_eq "audit --next-start exits 3 (the hook will refuse a guest)" 3 "$?"
next=$(cat "$D/next")
t_contains "drift's next boot: refused for its missing client socket, with the setting" \
  "$(grep "^refuse '$P-drift': " <<<"$next")" \
  "socket /run/vhostfix-t-audit/missing.sock does not exist, so QEMU would fail to connect; fix: start the backend (e.g. create the OVS dpdkvhostuser port) first, or add <reconnect enabled='yes' timeout='10'/> to the <source>; to let it start anyway: [hook.checks] client_socket = \"warn\""
t_contains "drift's next boot: a warning for its unshared memory, with the setting" \
  "$(grep "^warn '$P-drift': " <<<"$next")" \
  "needs shared guest memory, but memory is not shared (no <memoryBacking> access or memfd source), so the backend cannot map it and the NIC would stay dead"
t_contains "... it starts all the same" "$(grep "^warn '$P-drift': " <<<"$next")" \
  "; it starts all the same (logged); to refuse such a start: [hook.checks] shared_memory = \"deny\""
t_eq "win-unshared: one warning" 1 "$(grep -c "^warn '$P-win-unshared': .*shared_memory = \"deny\"$" <<<"$next")"
t_eq "no line for linux, win-ok or win-memfd" "" "$(grep -e "'$P-linux'" -e "'$P-win-ok'" -e "'$P-win-memfd'" <<<"$next")"
t_eq "two lines for drift (its next boot; the live XML is not judged)" 2 "$(grep -c "'$P-drift'" <<<"$next")"
if [ "$others" = 0 ]; then
  t_eq "the summary counts guests, not findings" \
    "at their next start the hook will refuse 1 and warn about 2 of 5 defined guests" "$(tail -n 1 <<<"$next")"
else
  t_contains "the summary line ends the list" "$(tail -n 1 <<<"$next")" "at their next start the hook will refuse "
  t_log "$others other domains are defined here: the summary's numbers are not checked"
fi
t_eq "nothing on stderr" "" "$(cat "$D/err")"
"$VHOSTFIX" --config "$D/deny.toml" audit --next-start >"$D/next" 2>"$D/err"
t_eq "with shared_memory = \"deny\": exit 3" 3 "$?"
t_contains "... win-unshared will be refused, and the setting that lets it start is named" \
  "$(grep "^refuse '$P-win-unshared': " <<<"$(cat "$D/next")")" "; to let it start anyway: [hook.checks] shared_memory = \"warn\""
t_eq "... no warning left" "" "$(grep "^warn '$P-" "$D/next")"

# --- 3. exit codes: all compliant, and an error -----------------------------------
for n in win-memfd win-unshared drift; do undefine "$P-$n"; done
"$VHOSTFIX" audit --json >"$D/json2" 2>&1
rc=$?
others=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(1 for r in d["domains"] if not r["domain"].startswith(sys.argv[2]) and r["result"] in ("fixable","refused","error")))' "$D/json2" "$P-" 2>/dev/null || echo x)
if [ "$others" = 0 ]; then
  t_eq "audit exits 0 when every domain is compliant (warnings allowed)" 0 "$rc"
else
  t_log "other domains on this host are not compliant ($others); exit 0 not checked"
fi
"$VHOSTFIX" audit --connect "$D/no-such-sock" --prometheus "$PROM" >"$D/out" 2>"$D/err"
t_eq "an unreachable socket exits 2" 2 "$?"
t_eq "nothing on stdout on error" "" "$(cat "$D/out")"
t_contains "the error names the socket" "$(cat "$D/err")" "vhostfix: error: audit: $D/no-such-sock: cannot connect"
t_contains "prometheus records the failure" "$(cat "$PROM")" "vhostfix_audit_success 0"
"$VHOSTFIX" audit --connect qemu+ssh://host/system >/dev/null 2>"$D/err"
t_eq "a remote URI is refused with exit 2" 2 "$?"

# --- 4. through the proxy, and with ?socket= ----------------------------------------
for n in win-memfd win-unshared drift; do "${VD[@]}" define "$D/$n.xml" >/dev/null; done
"${VD[@]}" start "$P-drift" >/dev/null
"${VD[@]}" define "$D/drift-next.xml" >/dev/null
: >"$D/proxy.toml"
SOCK=$D/libvirt-sock
# Started directly (not through a shell function) so that $! is the proxy.
"$VHOSTFIX" --config "$D/proxy.toml" proxy --listen "$SOCK" --upstream /run/libvirt/libvirt-sock \
  >>"$D/proxy.log" 2>&1 {T_LOCK_FD}>&- &
PROXY_PID=$!
on_exit "stop_pid $PROXY_PID"
if wait_for "[ -S '$SOCK' ]" 15; then
  t_ok "proxy starts"
  "$VHOSTFIX" audit --connect "$SOCK" --json >"$D/json-proxy" 2>"$D/err"
  t_eq "audit through the proxy exits 3" 3 "$?"
  a=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sorted((r["domain"],r["xml"],r["result"]) for r in d["domains"] if r["domain"].startswith(sys.argv[2])))' "$D/json-proxy" "$P-")
  "$VHOSTFIX" audit --json >"$D/json-direct" 2>/dev/null
  b=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sorted((r["domain"],r["xml"],r["result"]) for r in d["domains"] if r["domain"].startswith(sys.argv[2])))' "$D/json-direct" "$P-")
  t_eq "the proxy gives the same verdicts as libvirtd's socket" "$b" "$a"
  t_contains "the proxy's rows include the drifted definition" "$a" "('$P-drift', 'inactive', 'refused')"
  "$VHOSTFIX" audit --connect "qemu:///system?socket=$SOCK" >"$D/table-uri" 2>&1
  t_eq "--connect qemu:///system?socket=PATH works (exit 3: refused domains present)" 3 "$?"
  t_eq "same table either way" "$(ours <"$D/table")" "$(ours <"$D/table-uri")"
  # The proxy applies the rules of the libvirt behind it (CONNECT_GET_LIB_VERSION).
  undefine "$P-via-proxy"
  vm_cleanup_on_exit "$P-via-proxy"
  dom via-proxy 6 "<memoryBacking><access mode='shared'/></memoryBacking>$WIN_FEATURES" \
    "$(vhu 06 /run/vhostfix-t-audit/via.sock server | sed "s/'virtio'/'e1000'/")" >"$D/via.xml"
  out=$(virsh -c "qemu:///system?socket=$SOCK" define "$D/via.xml" 2>&1)
  t_contains "define of an e1000 Windows guest through the proxy" "$out" "Domain '$P-via-proxy' defined"
  t_contains "the proxy logs the upstream libvirt release" "$(cat "$D/proxy.log")" "domain='$P-via-proxy' verdict=windows"
  t_contains "... as libvirt=$libver" "$(grep "domain='$P-via-proxy'" "$D/proxy.log")" "libvirt=$libver action=rewrite"
else
  t_fail "proxy starts" "$(cat "$D/proxy.log")"
fi

# --- 5. the hook learns the release from the daemon that runs it -----------------
# (with shared_memory = "deny": by default unshared memory only warns, and the
# text to check is the refusal's)
# The hook reads the libvirt.so its parent has mapped. A Python that imported
# libvirt maps the same library libvirtd does; one that did not maps none.
hook_from_python() {
  /usr/bin/python3 - "$VHOSTFIX" "$D/win-unshared.xml" "$D/${2:-deny}.toml" "$1" <<'PY'
import os, subprocess, sys
if sys.argv[4] == "with-libvirt":
    import libvirt  # noqa: F401  (maps libvirt.so.0.MAJOR*1000+MINOR.MICRO)
env = {"VHOSTFIX_LOG": "stderr", "VHOSTFIX_CONFIG": sys.argv[3], "PATH": os.environ["PATH"]}
r = subprocess.run([sys.argv[1], "hook", "qemu", "w", "prepare", "begin", "-"],
                   stdin=open(sys.argv[2]), capture_output=True, text=True, env=env)
print(r.returncode, r.stderr)
PY
}
out=$(hook_from_python with-libvirt)
t_eq "hook under a process with libvirt $libver mapped: exit 1" 1 "${out%% *}"
t_contains "... refused" "$out" "vhostfix refused to start domain 'w'"
case $libver in
  7.* | 8.* | 9.* | 10.* | 11.0.* | 11.1.*)
    t_contains "... with the memfd alternative libvirt $libver accepts" "$out" "(or <source type='memfd'/>) to the domain" ;;
  *)
    t_contains "... with the text for libvirt $libver" "$out" "libvirt $libver refuses to define or start it" ;;
esac
out=$(hook_from_python without-libvirt)
t_not_contains "hook whose parent maps no libvirt: advice for every release" "$out" "(or <source type='memfd'/>)"
out=$(hook_from_python with-libvirt empty)
t_eq "by default the hook lets it start (exit 0)" 0 "${out%% *}"
t_contains "... with a warning" "$out" "domain='w' prepare/begin: vhost-user nic 0"
t_contains "... as a warning" "$out" "(action warn)"

# --- 6. the README's example is this output ----------------------------------------
doc_example "README's audit example is what audit prints" "$REPO/README.md" audit-output \
  "$ vhostfix audit
$(ours <"$D/table")"

t_done
