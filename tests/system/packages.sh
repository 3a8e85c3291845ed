#!/usr/bin/env bash
# The .deb and .rpm: built as packaging/INSTALL.md says, inspected (paths,
# modes, conffile, scripts, requirements), then the .deb installed on this
# machine with dpkg and proven against the real libvirtd: the install lists the
# defined guests the hook will refuse or warn about at their next start (and
# says so in one line, quickly, when libvirtd hangs), the packaged hook runs
# and logs, refuses a violating domain at `virsh start` and lets a guest with
# unshared memory start as before (with a warning; "deny" is one setting
# away), upgrades keep the hook and the operator's configuration, removal and
# purge take away exactly what the package added, and a foreign
# /etc/libvirt/hooks/qemu is never touched. The install example in README.md
# and packaging/INSTALL.md is this suite's output: VHOSTFIX_BLESS=1 rewrites
# it, otherwise the suite fails when they differ. Root; leaves the machine as
# it found it.
source "$(dirname "$0")/../lib/common.sh"
need_root
system_lock

cd "$REPO" || exit 2
HOOKS=/etc/libvirt/hooks
LINK=$HOOKS/qemu.d/50-vhostfix
CONF=/etc/vhostfix/vhostfix.toml
started=$(date +%s)
phase() { t_log "$1 after $(($(date +%s) - started)) s"; }

# ---------------------------------------------------------------- build
for tool in cargo-deb cargo-generate-rpm cargo-zigbuild objdump; do
  command -v "$tool" >/dev/null || { t_fail "$tool is installed (.ci/run installs it)"; t_done; exit 1; }
done
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
DEB=target/debian/vhostfix_${version}-1_$(dpkg --print-architecture).deb
RPM=target/generate-rpm/vhostfix-${version}-1.$(uname -m).rpm
# The suite inspects what it builds itself, every run: a package already in
# target/ may have been built another way (e.g. an .rpm without gzip). The
# builds are incremental, so an unchanged tree costs seconds. Later suites
# (release-matrix, rpm-root, systemd-units) reuse these packages.
rm -f "$DEB" "$RPM"
t_log "building the packages"
build_log=$T_TMP/build.log
# build-assets.sh builds the glibc 2.17 binary (cargo zigbuild) both packages ship.
if packaging/build-assets.sh >"$build_log" 2>&1 && cargo deb --no-build >>"$build_log" 2>&1 \
  && cargo generate-rpm --payload-compress gzip >>"$build_log" 2>&1; then
  t_ok "both packages build (build-assets.sh, cargo deb, cargo generate-rpm)"
else
  t_fail "both packages build" "$(tail -n 20 "$build_log")"
  t_done; exit 1
fi
t_check "the .deb is where cargo deb puts it ($DEB)" test -s "$DEB"
t_check "the .rpm is where cargo generate-rpm puts it ($RPM)" test -s "$RPM"

phase "build"
# ---------------------------------------------------------------- the .deb
contents=$(dpkg-deb -c "$DEB")
# entry MODE PATH: the listing has PATH with MODE, owned by root.
deb_entry() {
  t_check "deb: $2 ($1, root:root)" grep -Eq "^$1 0/0 +[0-9]+ [0-9-]+ [0-9:]+ \./${2#/}\$" <<<"$contents"
}
# The files both packages install, with their modes. The .rpm names two of
# them differently (rpm_name): zsh's site-functions directory, and NEWS
# uncompressed.
manifest() {
  local f page doc
  echo "-rwxr-xr-x /usr/bin/vhostfix"
  echo "-rwxr-xr-x /usr/lib/vhostfix/qemu-dispatcher"
  echo "-rwxr-xr-x /usr/lib/vhostfix/libvirt-hooks"
  echo "-rw-r--r-- /etc/vhostfix/vhostfix.toml"
  for f in vhostfix-proxy.service vhostfix-proxy.socket vhostfix-proxy-ro.socket vhostfix-proxy-failure.service vhostfix-audit.service vhostfix-audit.timer; do
    echo "-rw-r--r-- /usr/lib/systemd/system/$f"
  done
  echo "-rwxr-xr-x /usr/lib/systemd/system-generators/vhostfix-generator"
  echo "-rw-r--r-- /usr/lib/tmpfiles.d/vhostfix.conf"
  echo "-rwxr-xr-x /usr/lib/vhostfix/transparent-mode"
  echo "-rwxr-xr-x /usr/lib/vhostfix/audit-textfile"
  echo "-rw-r--r-- /usr/share/vhostfix/prometheus/alerts.yml"
  echo "-rw-r--r-- /usr/share/vhostfix/prometheus/grafana-dashboard.json"
  for page in vhostfix vhostfix-filter vhostfix-diff vhostfix-check vhostfix-audit vhostfix-config vhostfix-hook vhostfix-completions vhostfix-man vhostfix-proxy; do
    echo "-rw-r--r-- /usr/share/man/man1/$page.1.gz"
  done
  echo "-rw-r--r-- /usr/share/man/man5/vhostfix.toml.5.gz"
  echo "-rw-r--r-- /usr/share/bash-completion/completions/vhostfix"
  echo "-rw-r--r-- /usr/share/zsh/vendor-completions/_vhostfix"
  echo "-rw-r--r-- /usr/share/fish/vendor_completions.d/vhostfix.fish"
  for doc in README.md INSTALL.md NEWS.gz copyright proxy.md; do
    echo "-rw-r--r-- /usr/share/doc/vhostfix/$doc"
  done
  echo "-rwxr-xr-x /usr/share/vhostfix/integrations/vdsm/50_vhostfix"
  echo "-rwxr-xr-x /usr/share/vhostfix/integrations/kubevirt/onDefineDomain"
  echo "-rw-r--r-- /usr/share/vhostfix/integrations/kubevirt/Containerfile"
  echo "-rw-r--r-- /usr/share/vhostfix/integrations/cloudstack/libvirt-vm-xml-transformer.groovy"
  echo "-rw-r--r-- /usr/share/vhostfix/integrations/zstack/vhostfix-xml-hook.py"
  for f in site.yml inventory.example roles/vhostfix/defaults/main.yml \
    roles/vhostfix/meta/main.yml roles/vhostfix/tasks/{main,install,configure,units,audit}.yml \
    roles/vhostfix/templates/vhostfix.toml.j2 roles/vhostfix/filter_plugins/vhostfix_report.py; do
    echo "-rw-r--r-- /usr/share/vhostfix/integrations/ansible/$f"
  done
  for doc in vdsm kubevirt cloudstack zstack ansible prometheus; do
    echo "-rw-r--r-- /usr/share/doc/vhostfix/integrations/$doc.md"
  done
}
rpm_name() { sed 's|/vendor-completions/|/site-functions/|; s|/NEWS.gz$|/NEWS|'; }
while read -r mode path; do deb_entry "$mode" "$path"; done < <(manifest)
t_eq "deb: under /etc only the configuration (the hook link is made by postinst)" \
  "./etc/ ./etc/vhostfix/ ./etc/vhostfix/vhostfix.toml" "$(awk '$6 ~ /^\.\/etc\// {print $6}' <<<"$contents" | paste -sd' ')"
t_eq "deb: no file outside /usr and /etc" "" "$(awk '$6 !~ /^\.\/(usr|etc)\// {print $6}' <<<"$contents")"

info=$(dpkg-deb -I "$DEB")
t_contains "deb: Package vhostfix $version-1" "$info" "Version: $version-1"
t_eq "deb: depends only on libc6 (>= 2.17)" "libc6 (>= 2.17)" "$(dpkg-deb -f "$DEB" Depends)"
ctrl=$T_TMP/deb-control
mkdir -p "$ctrl" && dpkg-deb -e "$DEB" "$ctrl"
t_eq "deb: conffiles is exactly the configuration" "$CONF" "$(cat "$ctrl/conffiles")"
for s in postinst prerm postrm; do
  t_check "deb: $s is executable" test -x "$ctrl/$s"
  t_check "deb: $s is valid sh" sh -n "$ctrl/$s"
  t_check "deb: $s keeps the #DEBHELPER# slot for a later systemd unit" grep -qx '#DEBHELPER#' "$ctrl/$s"
done
t_check "deb: postinst installs the hook on configure" \
  grep -Pzq 'configure\)\n\s+/usr/lib/vhostfix/libvirt-hooks install' "$ctrl/postinst"
t_check "deb: prerm removes the hook on remove only (not upgrade)" \
  grep -Pzq 'case "\$1" in\n\s+remove\)\n\s+/usr/lib/vhostfix/libvirt-hooks remove' "$ctrl/prerm"
t_check "deb: postrm cleans up on purge" grep -q 'purge)' "$ctrl/postrm"

payload=$T_TMP/deb-root
mkdir -p "$payload" && dpkg-deb -x "$DEB" "$payload"
t_check "deb: the shipped configuration is packaging/vhostfix.toml" cmp "$payload$CONF" packaging/vhostfix.toml
t_check "deb: the shipped configuration parses" "$payload/usr/bin/vhostfix" config check "$payload$CONF"
t_check "deb: the dispatcher is hooks/qemu-dispatcher" cmp "$payload/usr/lib/vhostfix/qemu-dispatcher" hooks/qemu-dispatcher
t_contains "deb: the binary runs" "$("$payload/usr/bin/vhostfix" --version)" "vhostfix $version"
t_contains "deb: the man page is a gzipped man page" "$(zcat "$payload/usr/share/man/man1/vhostfix.1.gz" | head -n 3)" ".TH VHOSTFIX 1"
t_contains "deb: the zsh completion is one" "$(head -n 1 "$payload/usr/share/zsh/vendor-completions/_vhostfix")" "#compdef vhostfix"

# ---------------------------------------------------------------- the .rpm
files=$(rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" 2>/dev/null)
rpm_entry() {
  t_check "rpm: $2 ($1, root:root)" grep -Eq "^$1 root:root [a-z]* $2\$" <<<"$files"
}
while read -r mode path; do rpm_entry "$mode" "$path"; done < <(manifest | rpm_name)
t_eq "rpm: -qpl lists the same files as the .deb (bar the zsh directory and NEWS compression)" \
  "$(awk '$6 !~ /\/$/ {sub(/^\./, "", $6); print $6}' <<<"$contents" | rpm_name | sort)" \
  "$(rpm -qpl "$RPM" 2>/dev/null | sort)"
t_check "rpm: the configuration is %config(noreplace)" grep -Eq '^-rw-r--r-- root:root cn /etc/vhostfix/vhostfix.toml$' <<<"$files"
t_eq "rpm: it is the only configuration file" "$CONF" "$(rpm -qpc "$RPM" 2>/dev/null)"
t_eq "rpm: every man page and doc file is marked as documentation" \
  "$(rpm -qpl "$RPM" 2>/dev/null | grep -E '^/usr/share/(man|doc)/')" "$(rpm -qpd "$RPM" 2>/dev/null)"
scripts=$(rpm -qp --scripts "$RPM" 2>/dev/null)
t_contains "rpm: %post installs the hook" "$scripts" "/usr/lib/vhostfix/libvirt-hooks install"
t_check "rpm: %preun removes the hook on erase only (\$1 = 0, not upgrade)" \
  grep -Pzq 'preuninstall scriptlet[^\n]*\n(#[^\n]*\n)*if \[ "\$1" -eq 0 \]; then\n\s+/usr/lib/vhostfix/libvirt-hooks remove' <<<"$scripts"
t_not_contains "rpm: no %postun or %pre (nothing to do there)" "$scripts" "postuninstall scriptlet"
requires=$(rpm -qp --requires "$RPM" 2>/dev/null)
for r in /bin/sh /bin/bash 'libc.so.6()(64bit)'; do
  t_check "rpm: requires $r" grep -qxF "$r" <<<"$requires"
done
t_not_contains "rpm: does not require libvirt (hosts name it differently)" "$requires" libvirt
t_eq "rpm: no requirement on a glibc symbol version above 2.17" "" \
  "$(sed -n 's/^lib[a-z]*\.so\.[0-9]*(GLIBC_\([0-9.]*\))(64bit)$/\1/p' <<<"$requires" | while read -r v; do
    [ "$(printf '%s\n2.17\n' "$v" | sort -V | tail -n 1)" = 2.17 ] || echo "GLIBC_$v"; done)"
t_eq "rpm: the payload is gzip (rpm 4.11 of CentOS 7 cannot read zstd)" gzip "$(rpm -qp --qf '%{PAYLOADCOMPRESSOR}' "$RPM" 2>/dev/null)"
rpmroot=$T_TMP/rpm-root
mkdir -p "$rpmroot" && rpm2archive - <"$RPM" | tar -xz -C "$rpmroot"
t_check "rpm: the shipped configuration is packaging/vhostfix.toml" cmp "$rpmroot$CONF" packaging/vhostfix.toml
t_contains "rpm: the binary runs" "$("$rpmroot/usr/bin/vhostfix" --version)" "vhostfix $version"

# ---------------------------------------------------------------- glibc 2.17
# The packaged binary (from both packages) must run on glibc 2.17 (CentOS 7):
# no dynamic symbol may need a newer GLIBC_ version, and it may link nothing
# but glibc's own libraries (libc6 on Debian, glibc on RPM distributions).
glibc_above_217() {
  objdump -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -u | while read -r v; do
    [ "$(printf '%s\n2.17\n' "${v#GLIBC_}" | sort -V | tail -n 1)" = 2.17 ] || echo "$v"
  done | paste -sd' ' -
}
for pkg in deb rpm; do
  root=$payload; [ "$pkg" = rpm ] && root=$rpmroot
  t_eq "$pkg: the packaged binary needs no symbol version above GLIBC_2.17" "" "$(glibc_above_217 "$root/usr/bin/vhostfix")"
  t_eq "$pkg: ... and links only glibc's libraries" "" \
    "$(objdump -p "$root/usr/bin/vhostfix" | awk '$1 == "NEEDED" {print $2}' | grep -vxE 'libc\.so\.6|libpthread\.so\.0|libdl\.so\.2|libm\.so\.6|librt\.so\.1')"
done
t_check "both packages ship the same binary" cmp "$payload/usr/bin/vhostfix" "$rpmroot/usr/bin/vhostfix"
t_log "highest symbol version of the packaged binary: $(objdump -T "$payload/usr/bin/vhostfix" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -uV | tail -n 1)"

phase "inspection"
# ---------------------------------------------------------------- install the .deb
if dpkg-query -W -f '${db:Status-Status}' vhostfix 2>/dev/null | grep -qv '^not-installed$'; then
  t_fail "vhostfix is not installed before the test" "$(dpkg -l vhostfix | tail -n 1)"
  t_done; exit 1
fi
hooks_aside
hooks_before=$(ls -lA --time-style=+ "$HOOKS")
# Cleanups run in reverse: purge the package and drop what the test made in
# qemu.d first, then put back what was moved aside.
on_exit "dpkg -P vhostfix; rm -rf '$HOOKS/qemu.d'"

# Syslog: the hook logs there. Without /dev/log, listen on it ourselves.
SYSLOG=$T_TMP/syslog
if [ ! -e /dev/log ]; then
  # Without the lock's descriptor: a process that inherits it holds the lock.
  socat -u UNIX-RECV:/dev/log,mode=0666 "OPEN:$SYSLOG,creat,append" {T_LOCK_FD}>&- &
  socat_pid=$!
  on_exit "kill $socat_pid; rm -f /dev/log"
  wait_for "test -S /dev/log" 5 || t_fail "socat listens on /dev/log"
  # socat writes the datagrams back to back: one message per line again.
  syslog_lines() { sed 's/<[0-9]\{1,3\}>[A-Z][a-z][a-z] /\n&/g' "$SYSLOG" 2>/dev/null | sed '/^$/d'; }
else
  t_log "/dev/log exists: reading the hook's lines from the system log"
  syslog_lines() {
    if command -v journalctl >/dev/null; then journalctl -q -t vhostfix --since "@$started" 2>/dev/null; fi
    cat /var/log/syslog /var/log/messages /var/log/daemon.log 2>/dev/null | grep 'vhostfix\['
  }
fi

libvirt_up || { t_fail "libvirtd runs"; t_done; exit 1; }

# guest NAME [FIXTURE]: a small TCG guest without disk (or FIXTURE from
# tests/system/fixtures, renamed NAME); undefined on exit.
guest() {
  local nic="<interface type='user'><model type='e1000'/></interface>"
  vm_cleanup_on_exit "$1"
  if [ -n "${2:-}" ]; then
    sed "s|<name>[^<]*</name>|<name>$1</name>|" "tests/system/fixtures/$2" >"$T_TMP/$1.xml"
    "${VIRSH[@]}" define "$T_TMP/$1.xml" >/dev/null
    return
  fi
  cat >"$T_TMP/$1.xml" <<EOF
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>$nic</devices>
</domain>
EOF
  "${VIRSH[@]}" define "$T_TMP/$1.xml" >/dev/null
}
# starts NAME: start and stop a guest; fails when it does not start.
starts() {
  local out
  out=$(timeout 120 "${VIRSH[@]}" start "$1" 2>&1) || { echo "$out"; return 1; }
  timeout 60 "${VIRSH[@]}" destroy "$1" >/dev/null 2>&1
  return 0
}
# follow_advice OUTPUT: when postinst says libvirtd must reload to see the new
# hook (it only looks for hooks when it starts or reloads), do what it says,
# as INSTALL.md tells operators to (without systemd: SIGHUP).
follow_advice() {
  local pid
  pid=$(sed -n "s/.*was started before the hook existed.*'kill -HUP \([0-9]*\)'.*/\1/p" <<<"$1" | head -n 1)
  [ -n "$pid" ] || return 0
  t_log "following postinst's advice: kill -HUP $pid (libvirtd reload)"
  kill -HUP "$pid"
  sleep 1
  wait_for "${VIRSH[*]} version" 30
}
# Defined before the install: a compliant guest; a Windows guest whose
# client-mode vhost-user socket is missing (the hook refuses it by default);
# one whose memory is not shared (it starts today, its vhost-user NIC dead:
# the hook only warns by default). Open vSwitch is its backend: QEMU, the
# vhost-user server, waits for one before the guest runs.
GOOD=vhostfix-pkg-good
WCL=vhostfix-pkg-win-client
WUN=vhostfix-pkg-win-unshared
WSOCK=/run/vhu-test/win-unshared.sock
if ovs_up >"$T_TMP/ovs.out" 2>&1; then t_ok "Open vSwitch with DPDK is up (bridge br-vhu)"; else
  t_fail "Open vSwitch with DPDK is up (bridge br-vhu)" "$(cat "$T_TMP/ovs.out")"; fi
guest "$GOOD"
guest "$WCL" win-client-missing.xml
guest "$WUN" win-unshared.xml
t_eq "the three guests are defined" "$GOOD $WCL $WUN" \
  "$("${VIRSH[@]}" list --all --name | grep -x -e "$GOOD" -e "$WCL" -e "$WUN" | sort | paste -sd' ')"
ndefined=$("${VIRSH[@]}" list --all --name | grep -c .)
phase "guests defined"

t0=$(date +%s%N)
out=$(dpkg -i "$DEB" 2>&1); rc=$?
t_log "dpkg -i took $((($(date +%s%N) - t0) / 1000000)) ms"
INSTALL_OUT=$out
t_eq "dpkg -i succeeds" 0 "$rc"
t_check "the proxy units are installed but not enabled" \
  sh -c 'test -f /usr/lib/systemd/system/vhostfix-proxy.service && ! test -e /etc/systemd/system/multi-user.target.wants/vhostfix-proxy.service && ! test -e /etc/systemd/system/sockets.target.wants/vhostfix-proxy.socket'
t_check "the audit units are installed but not enabled" \
  sh -c 'test -f /usr/lib/systemd/system/vhostfix-audit.timer && ! test -e /etc/systemd/system/timers.target.wants/vhostfix-audit.timer'
t_contains "postinst checks the installed configuration" "$out" "vhostfix: configuration ok: $CONF"
lv=$(libvirtd --version); lv=${lv##* }
t_contains "postinst says where the hook went" "$out" "vhostfix: qemu hook: $LINK -> /usr/bin/vhostfix (libvirt $lv runs qemu.d/ itself)"
t_eq "the hook link points at the binary" /usr/bin/vhostfix "$(readlink "$LINK")"
t_check "no dispatcher on libvirt $lv (it runs qemu.d itself)" test ! -e "$HOOKS/qemu" -a ! -L "$HOOKS/qemu"
t_check "the configuration is installed" cmp "$CONF" packaging/vhostfix.toml
t_contains "the package knows its conffile" "$(dpkg-query -W -f '${Conffiles}' vhostfix)" "$CONF"
t_check "the binary is on PATH" /usr/bin/vhostfix --version

t_contains "postinst says libvirtd, started with no qemu hook, must reload to call it" "$out" \
  "was started before the hook existed and only looks for hooks when it starts or reloads"

# What the hook will do at each defined guest's next start, with the setting.
REFUSE_WCL="vhostfix: refuse '$WCL': vhost-user nic 0 (52:54:00:5a:05:01) is in client mode but the socket /run/vhostfix-t-win/no-such-dir/client.sock does not exist, so QEMU would fail to connect; fix: start the backend (e.g. create the OVS dpdkvhostuser port) first, or add <reconnect enabled='yes' timeout='10'/> to the <source>; to let it start anyway: [hook.checks] client_socket = \"warn\""
WARN_WUN="vhostfix: warn '$WUN': vhost-user nic 0 (52:54:00:5a:04:01) on socket $WSOCK needs shared guest memory, but memory is not shared (no <memoryBacking> access or memfd source), so the backend cannot map it and the NIC would stay dead; fix: add <memoryBacking><access mode='shared'/></memoryBacking> (or <source type='memfd'/>) to the domain; it starts all the same (logged); to refuse such a start: [hook.checks] shared_memory = \"deny\""
SUMMARY="vhostfix: at their next start the hook will refuse 1 and warn about 1 of $ndefined defined guests"
next_start_lines() { grep -e "^vhostfix: refuse '" -e "^vhostfix: warn '" -e "^vhostfix: at their next start" <<<"$1"; }
t_eq "postinst lists the guest the hook will refuse, with the setting that lets it start" 1 \
  "$(grep -cxF "$REFUSE_WCL" <<<"$out")"
t_eq "... and the guest it will only warn about, with the setting that refuses it" 1 \
  "$(grep -cxF "$WARN_WUN" <<<"$out")"
t_eq "... nothing about the compliant guest" "" "$(grep -F "'$GOOD'" <<<"$out")"
t_eq "... and a summary line that counts every defined guest" 1 "$(grep -cxF "$SUMMARY" <<<"$out")"
t_contains "... and where the settings are" "$out" \
  "vhostfix: the [hook.checks] settings are in $CONF; 'vhostfix audit --next-start' shows this list again"

# The install example in README.md and packaging/INSTALL.md is this output,
# with the daemon's pid and start time made constant and dpkg's own lines left
# out. Other domains defined on this host would show in it: then it is not
# compared.
shown=$(grep '^vhostfix: ' <<<"$INSTALL_OUT" | sed -E \
  -e 's/pid [0-9]+/pid 1234/g' -e 's/-HUP [0-9]+/-HUP 1234/g' \
  -e 's/started at [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}/started at 2026-12-07 09:14:02/g')
shown="# dpkg -i vhostfix_<version>-1_amd64.deb
$shown"
for doc in README.md packaging/INSTALL.md; do
  if [ "$ndefined" = 3 ]; then
    doc_example "$doc: the install example is what dpkg -i printed" "$REPO/$doc" install-output "$shown"
  else
    t_log "$((ndefined - 3)) other domains are defined on this host: the install example in $doc is not compared"
  fi
done

follow_advice "$out"

if starts "$GOOD" >"$T_TMP/start.out"; then t_ok "a compliant guest starts with the hook installed"; else
  t_fail "a compliant guest starts with the hook installed" "$(cat "$T_TMP/start.out")"; fi
wait_for "syslog_lines | grep -q \"domain='$GOOD' op=prepare/begin\"" 10
logged=$(syslog_lines)
t_contains "the packaged hook ran and logged its decision" "$logged" "domain='$GOOD' op=prepare/begin verdict=unknown"
t_contains "the log line names the decision" "$(grep "domain='$GOOD' op=prepare/begin" <<<"$logged")" "action=allow"
t_contains "the log lines come from the vhostfix ident" "$logged" "vhostfix["

out=$(timeout 120 "${VIRSH[@]}" start "$WCL" 2>&1); rc=$?
[ "$rc" = 0 ] && timeout 60 "${VIRSH[@]}" destroy "$WCL" >/dev/null 2>&1
t_eq "the guest whose client socket is missing is refused at virsh start" 1 "$rc"
t_contains "virsh start shows the hook's message" "$out" "vhostfix refused to start domain '$WCL'"
t_contains "and its reason" "$out" "the socket /run/vhostfix-t-win/no-such-dir/client.sock does not exist"
t_contains "libvirt names the packaged hook" "$out" "$LINK"
t_check "the refused guest is not running" bash -c "! ${VIRSH[*]} domstate $WCL | grep -q running"

# The guest with unshared memory starts as it did before the install.
ovs_add_client_port vhupkg0 "$WSOCK"
on_exit "ovs-vsctl --if-exists del-port br-vhu vhupkg0"
if starts "$WUN" >"$T_TMP/start.out"; then t_ok "the guest with unshared memory still starts (by default)"; else
  t_fail "the guest with unshared memory still starts (by default)" "$(cat "$T_TMP/start.out")"; fi
wait_for "syslog_lines | grep -q \"domain='$WUN' prepare/begin: \"" 10
t_contains "... the hook logged a warning naming the NIC" "$(syslog_lines | grep -F "domain='$WUN' prepare/begin: ")" \
  "vhost-user nic 0 (52:54:00:5a:04:01) on socket $WSOCK needs shared guest memory"
t_contains "... as a warning" "$(syslog_lines | grep -F "domain='$WUN' prepare/begin: ")" "(action warn)"
t_contains "... and allowed the start" "$(syslog_lines | grep -F "domain='$WUN' op=prepare/begin")" "action=allow"

t0=$(date +%s%N)
out=$(/usr/lib/vhostfix/libvirt-hooks status 2>&1); rc=$?
t_log "libvirt-hooks status took $((($(date +%s%N) - t0) / 1000000)) ms, 'vhostfix audit --next-start' alone $(
  t1=$(date +%s%N); vhostfix audit --next-start >/dev/null 2>&1; echo $((($(date +%s%N) - t1) / 1000000))) ms ($ndefined guests)"
t_eq "libvirt-hooks status succeeds" 0 "$rc"
t_eq "libvirt-hooks status lists the same guests and settings as the install" \
  "$(next_start_lines "$INSTALL_OUT")" "$(next_start_lines "$out")"

# A hung libvirtd (stopped with SIGSTOP): status says so in one line, within
# its time limit, and succeeds.
lpid=$(cat /run/libvirtd.pid)
mark=$(cleanup_mark)
on_exit "kill -CONT $lpid"
kill -STOP "$lpid"
t0=$(date +%s%N)
out=$(VHOSTFIX_AUDIT_TIMEOUT=3 /usr/lib/vhostfix/libvirt-hooks status 2>&1); rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
cleanup_since "$mark"
t_log "libvirt-hooks status against a stopped libvirtd took $ms ms (limit 3 s)"
t_eq "a hung libvirtd: status still succeeds" 0 "$rc"
t_eq "... says in one line that libvirt did not answer in time" 1 "$(grep -cxF "vhostfix: libvirt did not answer within 3 s, so the defined guests were not checked; when it answers, 'vhostfix audit --next-start' lists the defined guests the hook will refuse or warn about at their next start" <<<"$out")"
t_check "... within its time limit (3 s, ${ms} ms)" test "$ms" -lt 6000
t_check "libvirtd answers again" wait_for "${VIRSH[*]} version" 30

phase "install and hook checks"
# ---------------------------------------------------------------- upgrade
sed -i -e 's/^#guests = "windows"$/guests = "any"  # edited by the operator/' \
  -e 's/^#shared_memory = "warn"$/shared_memory = "deny"  # edited by the operator/' "$CONF"
t_eq "the operator's two edits are in place" 2 "$(grep -c -e '^guests = "any"  # edited' -e '^shared_memory = "deny"  # edited' "$CONF")"
edited=$(md5sum <"$CONF")
out=$(dpkg -i "$DEB" 2>&1); rc=$?
t_eq "upgrade (dpkg -i again) succeeds" 0 "$rc"
t_eq "upgrade keeps the operator's configuration" "$edited" "$(md5sum <"$CONF")"
t_contains "postinst checks the edited configuration" "$out" "vhostfix: configuration ok: $CONF"
t_eq "upgrade keeps the hook link" /usr/bin/vhostfix "$(readlink "$LINK")"
t_contains "with shared_memory = \"deny\" the upgrade lists the unshared guest as refused, with the setting that lets it start" \
  "$(grep -F "vhostfix: refuse '$WUN': " <<<"$out")" "; to let it start anyway: [hook.checks] shared_memory = \"warn\""
t_contains "... and counts two refusals" "$out" "vhostfix: at their next start the hook will refuse 2 and warn about 0 of $ndefined defined guests"
out=$(timeout 120 "${VIRSH[@]}" start "$WCL" 2>&1); rc=$?
[ "$rc" = 0 ] && timeout 60 "${VIRSH[@]}" destroy "$WCL" >/dev/null 2>&1
t_contains "after the upgrade the hook still refuses the violating guest" "$out" "vhostfix refused to start domain '$WCL'"
out=$(timeout 120 "${VIRSH[@]}" start "$WUN" 2>&1); rc=$?
[ "$rc" = 0 ] && timeout 60 "${VIRSH[@]}" destroy "$WUN" >/dev/null 2>&1
t_eq "with shared_memory = \"deny\" the unshared guest is refused at virsh start" 1 "$rc"
t_contains "... with the hook's message and its reason" "$out" \
  "vhostfix refused to start domain '$WUN': vhost-user nic 0 (52:54:00:5a:04:01) on socket $WSOCK needs shared guest memory, but memory is not shared"

phase "upgrade"
# ---------------------------------------------------------------- remove, purge
out=$(dpkg -r vhostfix 2>&1); rc=$?
t_eq "dpkg -r succeeds" 0 "$rc"
t_check "dpkg -r removes the hook link" test ! -e "$LINK" -a ! -L "$LINK"
t_check "dpkg -r removes the binary" test ! -e /usr/bin/vhostfix
t_eq "dpkg -r keeps the edited configuration" "$edited" "$(md5sum <"$CONF" 2>/dev/null)"
t_eq "the package is left in config-files state" config-files "$(dpkg-query -W -f '${db:Status-Status}' vhostfix)"
if starts "$GOOD" >"$T_TMP/start.out"; then t_ok "after dpkg -r libvirt still starts guests"; else
  t_fail "after dpkg -r libvirt still starts guests" "$(cat "$T_TMP/start.out")"; fi

out=$(dpkg -P vhostfix 2>&1); rc=$?
t_eq "dpkg -P succeeds" 0 "$rc"
t_check "dpkg -P removes the configuration and its directory" test ! -e /etc/vhostfix
t_eq "dpkg -P leaves no trace in dpkg" "" "$(dpkg-query -W -f '${db:Status-Status}' vhostfix 2>/dev/null | grep -v not-installed)"
t_eq "after purge $HOOKS is as before the install" "$hooks_before" "$(ls -lA --time-style=+ "$HOOKS")"
if starts "$GOOD" >"$T_TMP/start.out"; then t_ok "after dpkg -P libvirt still starts guests"; else
  t_fail "after dpkg -P libvirt still starts guests" "$(cat "$T_TMP/start.out")"; fi

phase "remove and purge"
# ---------------------------------------------------------------- a foreign qemu hook
foreign=$HOOKS/qemu
printf '#!/bin/sh\n# site hook, not vhostfix'"'"'s\ncat >/dev/null\nexit 0\n' >"$foreign"
chmod 0750 "$foreign"
touch -d '2020-01-02 03:04:05' "$foreign"
on_exit "rm -f '$foreign'"
fingerprint() { echo "$(md5sum <"$foreign") $(stat -c '%a %U:%G %Y %i' "$foreign")"; }
before=$(fingerprint)
for v in "" 4.5.0; do
  label=${v:+simulated libvirt $v}; label=${label:-libvirt $lv}
  out=$(VHOSTFIX_LIBVIRT_VERSION=$v dpkg -i "$DEB" 2>&1); rc=$?
  t_eq "foreign qemu, $label: dpkg -i succeeds" 0 "$rc"
  t_eq "foreign qemu, $label: byte-identical after install" "$before" "$(fingerprint)"
  if [ -n "$v" ]; then
    t_eq "foreign qemu, $label: one line tells how to chain vhostfix" 1 \
      "$(grep -c "^vhostfix: $foreign is not ours and was left untouched, so libvirt $v will not run vhostfix" <<<"$out")"
  fi
  out=$(dpkg -r vhostfix 2>&1)
  t_eq "foreign qemu, $label: byte-identical after dpkg -r" "$before" "$(fingerprint)"
  out=$(dpkg -P vhostfix 2>&1)
  t_eq "foreign qemu, $label: byte-identical after dpkg -P" "$before" "$(fingerprint)"
done
rm -f "$foreign"

phase "foreign hook"
# ---------------------------------------------------------------- the dispatcher, installed for an old libvirt
# libvirt 9 runs qemu.d itself, so here the dispatcher must step aside: the hook
# must run exactly once per phase even though both are installed.
out=$(VHOSTFIX_LIBVIRT_VERSION=4.5.0 dpkg -i "$DEB" 2>&1); rc=$?
t_eq "simulated libvirt 4.5.0: dpkg -i succeeds" 0 "$rc"
t_eq "simulated libvirt 4.5.0: the dispatcher is installed as $HOOKS/qemu" \
  /usr/lib/vhostfix/qemu-dispatcher "$(readlink "$HOOKS/qemu")"
t_contains "simulated libvirt 4.5.0: postinst says so" "$out" "run by the dispatcher $HOOKS/qemu"
follow_advice "$out"
n_before=$(syslog_lines | grep -c "domain='$GOOD' op=prepare/begin")
starts "$GOOD" >/dev/null
sleep 1
n_after=$(syslog_lines | grep -c "domain='$GOOD' op=prepare/begin")
t_eq "with dispatcher and qemu.d both present, libvirt $lv runs the hook once per phase" 1 "$((n_after - n_before))"
out=$(dpkg -r vhostfix 2>&1)
t_check "dpkg -r removes the dispatcher it installed" test ! -e "$HOOKS/qemu" -a ! -L "$HOOKS/qemu"
dpkg -P vhostfix >/dev/null 2>&1
t_eq "and $HOOKS is as before" "$hooks_before" "$(ls -lA --time-style=+ "$HOOKS")"

phase "done"
t_done
