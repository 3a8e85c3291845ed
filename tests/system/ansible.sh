#!/usr/bin/env bash
# The Ansible role (integrations/ansible/, run straight from the repository
# with ansible-core from PyPI) against real hosts, each with its own libvirtd:
#
# Part 1, three hosts at once, without systemd as PID 1: this machine
# (libvirt 9.0, ansible_connection=local) and the Debian 11 and 13 release
# chroots (libvirt 7.0 and 11.3; tests/lib/release.sh), each on a throw-away
# overlay of its cached root and reached by tests/system/fleet/
# connection_plugins/vhostfix_exec.py (`chroot ROOT ...`; ansible-core has no
# chroot connection). Every host has three domains: a Windows guest with an
# e1000 vhost-user NIC that libvirt loaded from disk (fixable), a compliant
# Windows guest, and a guest whose client-mode vhost-user socket is missing
# (refused).
#   1. --check on hosts without vhostfix: the run reports, nothing changes;
#   2. the run installs the .deb, writes /etc/vhostfix/vhostfix.toml (checked
#      by `vhostfix config check` first; a broken one is refused), reloads
#      each libvirtd because the installer says it must, says why it leaves
#      the systemd units alone, and writes the report: each host's `vhostfix
#      audit --json` and a summary with the right verdicts and releases;
#      each libvirtd then calls the hook (it refuses the third guest's start);
#   3. a second run changes nothing (and reloads nothing);
#   4. --check --diff with another setting shows the diff and changes nothing.
# Part 2, the systemd parts, in the nspawn container of tests/lib/nspawn.sh:
# the package from an apt repository, the proxy's sockets, the audit timer
# with its textfile directory, transparent mode on and off; each state
# reached twice, the second time with no change.
# The README's "Running it on a fleet" report is this suite's (VHOSTFIX_BLESS=1
# rewrites it). About five minutes. Root; holds the system test lock; needs
# ansible-core (pip, .ci/run), debootstrap and cargo-deb.
T_NAME=ansible.sh
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/release.sh"
. "$(dirname "$0")/../lib/nspawn.sh"
need_root
command -v ansible-playbook >/dev/null || { t_fail "ansible-playbook is installed (.ci/run: pip install ansible-core)"; t_done; exit 1; }
[ -x "$VHOSTFIX" ] || { t_fail "vhostfix is built ($VHOSTFIX): cargo build --release"; t_done; exit 1; }

system_lock

D=$T_TMP
chmod 0755 "$D"
P=vhostfix-fleet
SITE=$REPO/integrations/ansible/site.yml
HOOKS=/etc/libvirt/hooks
DEB=$(deb_current) || { t_fail "the .deb to install (cargo-deb: see .ci/run)"; t_done; exit 1; }
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_RETRY_FILES_ENABLED=False \
  ANSIBLE_HOME=$D/ansible-home ANSIBLE_LOCAL_TEMP=$D/ansible-local ANSIBLE_REMOTE_TMP=/tmp/.vhostfix-ansible-$$ \
  ANSIBLE_CONNECTION_PLUGINS=$REPO/tests/system/fleet/connection_plugins ANSIBLE_PYTHON_INTERPRETER=auto_silent \
  ANSIBLE_DEPRECATION_WARNINGS=False ANSIBLE_STDOUT_CALLBACK=default
on_exit "rm -rf /tmp/.vhostfix-ansible-$$"
PART1=$(cleanup_mark)
t_log "$(ansible-playbook --version | head -n 1)"

# play NAME ARGS...: ansible-playbook site.yml; output in $D/NAME.out, rc returned.
play() {
  local name=$1
  shift
  no_lock ansible-playbook -i "$D/inventory" "$SITE" -e vhostfix_hosts=all "$@" >"$D/$name.out" 2>&1
}
# recap NAME HOST: the PLAY RECAP line of HOST in run NAME ("ok=.. changed=.. ...").
recap() { sed -n "s/^$2 *: //p" "$D/$1.out" | tr -s ' '; }
field() { recap "$1" "$2" | grep -o "$3=[0-9]*" | cut -d= -f2; }

# --- part 1: three hosts ---------------------------------------------------------------
if dpkg-query -W -f '${db:Status-Status}' vhostfix 2>/dev/null | grep -qv '^not-installed$'; then
  t_fail "vhostfix is not installed on this machine before the test" "$(dpkg -l vhostfix | tail -n 1)"
  t_done
  exit 1
fi
hooks_aside
on_exit "dpkg -P vhostfix; rm -rf '$HOOKS/qemu.d' /var/cache/vhostfix-ansible"

# dom NAME UUID-SUFFIX: the three test domains (small TCG guests).
SHARED="<memoryBacking><access mode='shared'/></memoryBacking>"
WIN="<features><acpi/><hyperv><relaxed state='on'/></hyperv></features><clock offset='localtime'/>"
dom() {
  local extra nic
  case $1 in
    win-e1000) extra="$SHARED$WIN" nic="<source type='unix' path='/run/$P/e1000.sock' mode='server'/><model type='e1000'/>" ;;
    win-ok) extra="$SHARED$WIN" nic="<source type='unix' path='/run/$P/ok.sock' mode='server'/><model type='virtio'/>" ;;
    client) extra="$SHARED" nic="<source type='unix' path='/run/$P/missing.sock' mode='client'/><model type='virtio'/>" ;;
  esac
  cat <<XML
<domain type='qemu'>
  <name>$P-$1</name>
  <uuid>3b9f0d52-7c1a-4e88-a6f1-00000000000$2</uuid>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  $extra
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><interface type='vhostuser'><mac address='52:54:00:f1:00:0$2'/>$nic</interface></devices>
</domain>
XML
}
# put_domains ROOT: the e1000 guest as a file libvirtd loads when it starts
# (libvirt refuses it at define), the others as files for virsh define.
put_domains() {
  mkdir -p "$1/etc/libvirt/qemu" "$1/root"
  dom win-e1000 1 >"$1/etc/libvirt/qemu/$P-win-e1000.xml"
  dom win-ok 2 >"$1/root/$P-win-ok.xml"
  dom client 3 >"$1/root/$P-client.xml"
}

# This machine: its libvirtd (started here if none runs), restarted once so
# that it loads the e1000 definition from disk.
libvirt_up || { t_fail "libvirtd runs"; t_done; exit 1; }
put_domains /
on_exit "rm -f /etc/libvirt/qemu/$P-win-e1000.xml /root/$P-win-ok.xml /root/$P-client.xml"
for n in win-e1000 win-ok client; do vm_cleanup_on_exit "$P-$n"; done
libvirtd_start_again "$(cat /run/libvirtd.pid)"
wait_for "${VIRSH[*]} version" 30 || t_fail "libvirtd comes back"
for n in win-ok client; do v define "/root/$P-$n.xml" >/dev/null; done
# The report counts every domain of this machine's libvirtd: another one (left
# by a run that was killed, or an operator's) would change it, so name it.
names=$(v list --all --name) || t_fail "virsh list on this machine's libvirtd" "$names"
t_eq "this machine's libvirtd has the suite's three domains and no other (the report counts them all)" \
  "$P-client $P-win-e1000 $P-win-ok" "$(grep . <<<"$names" | sort | paste -sd' ')"

# The release chroots: an overlay on each cached root, so nothing the role
# does there lasts; their own libvirtd runs beside this machine's.
RELS=$D/rel
declare -A RROOT
for suite in bullseye trixie; do
  release_ensure "$suite" || { t_fail "the $suite chroot exists ($REL_CACHE/$suite)"; t_done; exit 1; }
  lower=$R
  up=$D/rel-$suite
  mkdir -p "$up" "$RELS/$suite"
  mount -t tmpfs -o mode=0755 "vhostfix-$suite" "$up" && mkdir "$up/upper" "$up/work"
  on_exit "umount '$up'"
  mount -t overlay overlay -o "lowerdir=$lower,upperdir=$up/upper,workdir=$up/work" "$RELS/$suite"
  on_exit "REL_ROOT=$RELS bash $REL_TOOL $suite stop; mountpoint -q '$RELS/$suite' && umount '$RELS/$suite'"
  RROOT[$suite]=$RELS/$suite
  put_domains "$RELS/$suite"
  out=$(REL_ROOT=$RELS no_lock bash "$REL_TOOL" "$suite" start 2>&1)
  if chroot "$RELS/$suite" "${RENV[@]}" virsh -q -c qemu:///system version >/dev/null 2>&1; then
    t_ok "the $suite chroot's libvirtd runs beside this machine's ($(chroot "$RELS/$suite" libvirtd --version))"
  else
    t_fail "the $suite chroot's libvirtd runs" "$out"
  fi
  for n in win-ok client; do
    chroot "$RELS/$suite" "${RENV[@]}" virsh -q -c qemu:///system define "/root/$P-$n.xml" >/dev/null
  done
done
t_eq "three libvirtd run at once (this machine's and the two chroots', by their pidfiles)" 3 \
  "$(for r in / "${RROOT[@]}"; do p=$(cat "$r/run/libvirtd.pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null && echo "$p"; done | sort -u | wc -l)"

# host_virsh HOST ARGS...: that host's own virsh.
host_virsh() {
  local h=$1
  shift
  case $h in
    bookworm) v "$@" ;;
    *) chroot "${RROOT[$h]}" "${RENV[@]}" virsh -q -c qemu:///system "$@" ;;
  esac
}
# on HOST CMD...: run CMD on that host.
on() {
  local h=$1
  shift
  case $h in
    bookworm) "$@" ;;
    *) chroot "${RROOT[$h]}" "${RENV[@]}" "$@" ;;
  esac
}
HOSTS=(bookworm bullseye trixie)
# libvirt 9.0 and 11.3 load a definition from disk without validating it
# again; libvirt 7.0 checks a vhost-user NIC's model while it parses, so it
# refuses to load the e1000 guest at all (the guest is not in its list).
for h in bookworm trixie; do
  t_contains "$h: libvirt loaded the e1000 guest from disk" "$(host_virsh "$h" dumpxml --inactive "$P-win-e1000" 2>&1)" "<model type='e1000'/>"
done
t_contains "bullseye: libvirt 7.0 refused to load the e1000 guest (its log says so)" \
  "$(cat "${RROOT[bullseye]}/var/log/libvirt/libvirtd.log" 2>&1)" "Failed to load config for domain '$P-win-e1000'"
# expected HOST: what the report must say of our guests there.
expected() {
  case $1 in
    bullseye) echo "7.0.0 client/inactive=refused win-ok/inactive=compliant" ;;
    *) echo "$(release_libvirt "$1") client/inactive=refused win-e1000/inactive=fixable win-ok/inactive=compliant" ;;
  esac
}

prefix() { echo "chroot ${RROOT[$1]} /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8"; }
cat >"$D/inventory" <<EOF
[vhostfix]
bookworm ansible_connection=local
bullseye ansible_connection=vhostfix_exec ansible_vhostfix_exec_prefix='$(prefix bullseye)'
trixie ansible_connection=vhostfix_exec ansible_vhostfix_exec_prefix='$(prefix trixie)'

[vhostfix:vars]
# Root everywhere already (chroots have no sudo); the distribution's Python.
ansible_become=false
ansible_python_interpreter=/usr/bin/python3
EOF
cat >"$D/vars.yml" <<EOF
vhostfix_package_file: $DEB
vhostfix_report_dir: $D/report
vhostfix_config:
  guests: windows
  proxy:
    allowed_groups: [libvirt]
vhostfix_hook_checks:
  model: deny
  shared_memory: deny
  client_socket: deny
# Asked for everywhere; none of these hosts runs systemd.
vhostfix_audit_timer: true
EOF
state() { # HOST: what the role may change there
  on "$1" sh -c 'dpkg-query -W -f "\${db:Status-Status} \${Version}\n" vhostfix 2>&1; md5sum /etc/vhostfix/vhostfix.toml 2>&1;
    ls -l /etc/libvirt/hooks/qemu.d 2>&1 | grep -c vhostfix; ls /etc/systemd/system 2>/dev/null | grep -c vhostfix;
    ls -d /var/cache/vhostfix-ansible 2>&1' | paste -sd' '
}

# 1. --check where vhostfix is not installed
declare -A BEFORE
for h in "${HOSTS[@]}"; do BEFORE[$h]=$(state "$h"); done
play check0 -e @"$D/vars.yml" --check
t_eq "--check on three hosts without vhostfix succeeds" 0 "$?"
for h in "${HOSTS[@]}"; do
  t_eq "$h: --check reports the copy of the package as a change, no failure" "1 0" \
    "$([ "$(field check0 "$h" changed)" -ge 1 ] && echo 1) $(field check0 "$h" failed)"
  t_eq "$h: ... and changes nothing" "${BEFORE[$h]}" "$(state "$h")"
done
t_contains "--check says why it looks no further" "$(cat "$D/check0.out")" "vhostfix is not installed on bullseye yet (--check run)"

# 2. the run
t0=$SECONDS
play run1 -e @"$D/vars.yml"
rc=$?
t_eq "ansible-playbook installs, configures and audits three hosts" 0 "$rc"
[ "$rc" = 0 ] || t_log "$(tail -n 40 "$D/run1.out")"
t_log "first run: $((SECONDS - t0)) s"
out=$(cat "$D/run1.out")
version=$(dpkg-deb -f "$DEB" Version)
for h in "${HOSTS[@]}"; do
  t_eq "$h: changed, nothing failed or unreachable" "yes 0 0" \
    "$([ "$(field run1 "$h" changed)" -ge 3 ] && echo yes) $(field run1 "$h" failed) $(field run1 "$h" unreachable)"
  t_eq "$h: vhostfix $version is installed" "installed $version" "$(on "$h" dpkg-query -W -f '${db:Status-Status} ${Version}' vhostfix)"
  t_eq "$h: the hook link is in place" /usr/bin/vhostfix "$(on "$h" readlink /etc/libvirt/hooks/qemu.d/50-vhostfix)"
  t_check "$h: its vhostfix.toml is valid" on "$h" vhostfix config check /etc/vhostfix/vhostfix.toml
  t_contains "$h: ... and says what the role was given" "$(on "$h" cat /etc/vhostfix/vhostfix.toml)" '[hook.checks]
client_socket = "deny"'
  t_contains "$h: the installer's advice was followed (libvirtd reloaded)" "$out" "$h: the installer says libvirtd must reload"
  # The hook runs in the daemon of that host: it refuses a guest libvirt would start.
  res=$(host_virsh "$h" start "$P-client" 2>&1)
  t_contains "$h: its libvirtd calls the vhostfix hook now (the client-socket guest is refused)" "$res" \
    "vhostfix refused to start domain '$P-client'"
done
t_contains "the systemd units are left alone, and the run says why" "$out" \
  "bullseye does not run systemd (no /run/systemd/system): skipped the audit timer"
t_eq "... nothing was written for systemd there" "0" "$(on bullseye sh -c 'ls /etc/systemd/system 2>/dev/null | grep -c vhostfix')"
# reloads NAME: the hosts whose libvirtd the SIGHUP task reloaded in run NAME.
reloads() {
  awk '/^TASK \[vhostfix : Reload the libvirt daemon \(SIGHUP/ {on=1; next} /^(RUNNING|TASK|PLAY)/ {on=0}
    on && /^changed: / {print $2}' "$D/$1.out" | tr -d '[]' | sort | paste -sd' '
}
t_eq "each libvirtd was reloaded, by its own pidfile" "bookworm bullseye trixie" "$(reloads run1)"

# The report.
for h in "${HOSTS[@]}"; do
  verdicts=$(python3 - "$D/report/$h.json" "$P-" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
rows = sorted((r["domain"][len(sys.argv[2]):], r["xml"], r["result"]) for r in d["domains"] if r["domain"].startswith(sys.argv[2]))
print(d["libvirt"], " ".join("%s/%s=%s" % r for r in rows))
PY
)
  t_eq "report/$h.json: the release and each domain's verdict" "$(expected "$h")" "$verdicts"
done
summary=$(cat "$D/report/summary.txt")
# The summary's line for a host: its release, then the counts of its audit.
for h in "${HOSTS[@]}"; do
  t_eq "summary.txt: $h's line is its audit's summary" \
    "$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); s = d["summary"]
print(sys.argv[2], d["libvirt"], s["rows"], s["compliant"], s["warning"], s["fixable"], s["refused"], s["error"], d["exit"])' "$D/report/$h.json" "$h")" \
    "$(awk -v h="$h" '$1 == h {print; exit}' <<<"$summary" | tr -s ' ')"
  for n in "client refused" "win-e1000 fixable"; do
    [ "$h ${n% *}" = "bullseye win-e1000" ] && continue
    t_eq "summary.txt: $h $P-${n% *} is listed as ${n#* }" 1 \
      "$(awk -v h="$h" -v d="$P-${n% *}" -v r="${n#* }" '$1 == h && $2 == d && $NF == r' <<<"$summary" | wc -l)"
  done
done
t_contains "the run shows the summary" "$out" '"HOST      LIBVIRT  XMLS  COMPLIANT  WARNING  FIXABLE  REFUSED  ERROR  EXIT",'
README_REPORT=$summary

# A configuration vhostfix refuses never replaces the good one.
good=$(md5sum </etc/vhostfix/vhostfix.toml)
play bad -e @"$D/vars.yml" -e '{"vhostfix_config": {"proxy": {"no_such_key": 1}}}' --limit bookworm
t_eq "a configuration vhostfix config check refuses fails the run" 2 "$?"
t_contains "... naming the key" "$(cat "$D/bad.out")" "no_such_key"
t_eq "... and the file in place is the good one" "$good" "$(md5sum </etc/vhostfix/vhostfix.toml)"

# 3. again: nothing changes
declare -A AFTER
for h in "${HOSTS[@]}"; do AFTER[$h]=$(state "$h"); done
t0=$SECONDS
play run2 -e @"$D/vars.yml"
t_eq "the second run succeeds" 0 "$?"
t_log "second run: $((SECONDS - t0)) s"
for h in "${HOSTS[@]}"; do
  t_eq "$h: the second run changes nothing (changed=0)" "0 0" "$(field run2 "$h" changed) $(field run2 "$h" failed)"
  t_eq "$h: ... package, configuration, hook as they were" "${AFTER[$h]}" "$(state "$h")"
done
t_eq "... and reloads no libvirtd" "" "$(reloads run2)"
t_eq "... the report is the same" "$README_REPORT" "$(cat "$D/report/summary.txt")"

# 4. --check --diff with another setting
play check1 -e @"$D/vars.yml" -e '{"vhostfix_hook_checks": {"model": "deny", "shared_memory": "deny", "client_socket": "warn"}}' --check --diff
t_eq "--check --diff with client_socket = warn succeeds" 0 "$?"
out=$(cat "$D/check1.out")
t_contains "--check --diff shows the change to vhostfix.toml" "$out" '-client_socket = "deny"
+client_socket = "warn"'
for h in "${HOSTS[@]}"; do
  t_eq "$h: --check reports one change" 1 "$(field check1 "$h" changed)"
  t_eq "$h: ... and makes none" "${AFTER[$h]}" "$(state "$h")"
done
res=$(v start "$P-client" 2>&1)
t_contains "the hook still refuses (the check changed nothing)" "$res" "vhostfix refused to start domain '$P-client'"

# The packaged copy of the role is the repository's and is usable as it is.
pkg=$D/pkg
mkdir -p "$pkg" && dpkg-deb -x "$DEB" "$pkg"
t_check "the .deb ships the role as in the repository" \
  diff -r "$REPO/integrations/ansible" "$pkg/usr/share/vhostfix/integrations/ansible" -x README.md
t_check "the packaged site.yml passes ansible-playbook --syntax-check" \
  no_lock ansible-playbook -i "$D/inventory" --syntax-check "$pkg/usr/share/vhostfix/integrations/ansible/site.yml"

# Part 1 leaves: this machine's package purged, the chroots' overlays dropped.
cleanup_since "$PART1"
t_eq "vhostfix is gone from this machine again" "" \
  "$(dpkg-query -W -f '${db:Status-Status}' vhostfix 2>/dev/null | grep -v not-installed)"

# --- part 2: the systemd parts, in a container ------------------------------------------------
ct_prepare ansible
# An apt repository with the .deb, reachable in the container without a network.
# (apt reads it as its own unprivileged user: not under /root.)
REPO_DIR=/srv/vhostfix-test-repo
install -d -m 0755 "$ROOT$REPO_DIR"
cp "$DEB" "$ROOT$REPO_DIR/"
(cd "$ROOT$REPO_DIR" && dpkg-scanpackages --multiversion . >Packages 2>/dev/null)
echo "deb [trusted=yes] file:$REPO_DIR ./" >"$ROOT/etc/apt/sources.list.d/vhostfix-test.list"
dom client 3 >"$ROOT/root/$P-client.xml"
if ! boot_container; then
  t_fail "systemd boots in the container" "$(nspawn_log)"
  t_done
  exit 1
fi
in_ct apt-get update -q -o Dir::Etc::sourcelist=/etc/apt/sources.list.d/vhostfix-test.list \
  -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 >"$D/apt.out" 2>&1 ||
  t_fail "apt-get update of the test repository" "$(tail -n 5 "$D/apt.out")"
cat >"$D/inventory" <<EOF
[vhostfix]
ct ansible_connection=vhostfix_exec ansible_vhostfix_exec_prefix='nsenter -t $LEADER -a /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8'

[vhostfix:vars]
ansible_become=false
ansible_python_interpreter=/usr/bin/python3
vhostfix_report_dir=$D/report-ct
EOF
# converge NAME VARS: the run reaches the state (changes), a second one changes nothing.
converge() {
  local name=$1 vars=$2
  play "$name" -e "$vars"
  t_eq "container, $name: the run succeeds and changes something" "0 yes" \
    "$? $([ "$(field "$name" ct changed)" -ge 1 ] && echo yes)"
  [ "$(field "$name" ct failed)" = 0 ] || t_log "$(grep -B2 -A8 'fatal:' "$D/$name.out" | head -n 40)"
  play "$name-again" -e "$vars"
  t_eq "container, $name: the second run changes nothing" "0 0" "$? $(field "$name-again" ct changed)"
}
converge sockets-timer '{"vhostfix_proxy_sockets": true, "vhostfix_audit_timer": true, "vhostfix_textfile_dir": "/var/lib/vhostfix-textfile"}'
t_eq "container: vhostfix installed from the repository (apt)" "installed $version" \
  "$(in_ct dpkg-query -W -f '${db:Status-Status} ${Version}' vhostfix)"
t_eq "container: the proxy's sockets are enabled and listening" "enabled enabled active active" \
  "$(in_ct systemctl is-enabled vhostfix-proxy.socket vhostfix-proxy-ro.socket | paste -sd' ') $(in_ct systemctl is-active vhostfix-proxy.socket vhostfix-proxy-ro.socket | paste -sd' ')"
t_eq "container: the audit timer is enabled and active" "enabled active" \
  "$(in_ct systemctl is-enabled vhostfix-audit.timer) $(in_ct systemctl is-active vhostfix-audit.timer)"
t_eq "container: the audit writes to the textfile directory given" "VHOSTFIX_TEXTFILE_DIR=/var/lib/vhostfix-textfile" \
  "$(in_ct systemctl show -p Environment --value vhostfix-audit.service)"
in_ct mkdir -p /var/lib/vhostfix-textfile
in_ct systemctl start vhostfix-audit.service
t_check "container: ... and it does" in_ct test -s /var/lib/vhostfix-textfile/vhostfix.prom
t_contains "container: the report has its audit" "$(cat "$D/report-ct/summary.txt")" "ct    9.0.0"
t_contains "container: the installer's advice was followed with systemctl reload libvirtd" \
  "$(sed -n '/^TASK \[vhostfix : Reload the libvirt daemon (systemctl reload)/,/^$/p' "$D/sockets-timer.out")" "changed: [ct]"
in_ct virsh -q -c qemu:///system define "/root/$P-client.xml" >/dev/null
t_contains "container: ... so its libvirtd calls the hook (the client-socket guest is refused)" \
  "$(in_ct virsh -c qemu:///system start "$P-client" 2>&1)" "vhostfix refused to start domain '$P-client'"
in_ct virsh -q -c qemu:///system undefine "$P-client" >/dev/null

converge transparent-on '{"vhostfix_proxy_sockets": true, "vhostfix_audit_timer": true, "vhostfix_textfile_dir": "/var/lib/vhostfix-textfile", "vhostfix_transparent_mode": true}'
out=$(in_ct /usr/lib/vhostfix/transparent-mode status 2>&1)
t_eq "container: transparent mode is on" 0 "$?"
t_contains "container: ... libvirt's socket is the proxy's" "$out" "vhostfix-proxy on /run/libvirt/libvirt-sock"
t_check "container: plain virsh works through the proxy" in_ct virsh -q -c qemu:///system list --all

converge all-off '{"vhostfix_proxy_sockets": false, "vhostfix_audit_timer": false, "vhostfix_transparent_mode": false}'
in_ct /usr/lib/vhostfix/transparent-mode status >/dev/null 2>&1
t_eq "container: transparent mode is off again" 3 "$?"
t_eq "container: the sockets and the timer are off" "disabled disabled disabled inactive inactive inactive" \
  "$(in_ct systemctl is-enabled vhostfix-proxy.socket vhostfix-proxy-ro.socket vhostfix-audit.timer | paste -sd' ') $(in_ct systemctl is-active vhostfix-proxy.socket vhostfix-proxy-ro.socket vhostfix-audit.timer | paste -sd' ')"
t_check "container: plain virsh reaches libvirtd directly" in_ct virsh -q -c qemu:///system list --all
stop_container

# --- the README's example -----------------------------------------------------------------
README=$REPO/README.md
if [ -n "${VHOSTFIX_BLESS:-}" ]; then
  python3 - "$README" "$README_REPORT" <<'PY'
import re, sys
path, text = sys.argv[1:3]
s = open(path).read()
block = "<!-- fleet-report: begin -->\n```\n$ cat vhostfix-report/summary.txt\n%s\n```\n<!-- fleet-report: end -->" % text
new, n = re.subn(r"<!-- fleet-report: begin -->.*?<!-- fleet-report: end -->", lambda m: block, s, flags=re.S)
assert n == 1, "README.md has no fleet-report markers"
open(path, "w").write(new)
PY
fi
t_eq "README's fleet report is what the role wrote (VHOSTFIX_BLESS=1 rewrites it)" "$README_REPORT" \
  "$(awk '/^<!-- fleet-report: begin -->$/ {on=1; next} /^<!-- fleet-report: end -->$/ {on=0} on' "$README" | sed -e '1,2d' -e '$d')"
t_done
