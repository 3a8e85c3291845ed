#!/usr/bin/env bash
# The four stack integrations in integrations/, each run the way its stack
# runs it (see docs/integrations/): the vdsm hook through a vdsm-style hook
# directory runner, the KubeVirt onDefineDomain with the sidecar-shim's
# arguments, the CloudStack transformer through a GroovyScriptEngine as the
# KVM agent calls it, the ZStack hook exec()d over an ElementTree root as the
# kvmagent does. For each: a Windows guest's e1000 vhost-user NIC comes out
# as the golden output of `vhostfix filter`; a Linux guest comes out
# unchanged; with vhostfix missing, failing or silent the original XML comes
# out and the reason is logged. The vdsm hot-plug case looks the guest up in a
# real libvirtd, so the suite runs as root and takes the system lock.
source "$(dirname "$0")/../lib/common.sh"
need_root
system_lock

I=$REPO/integrations
H=$REPO/tests/system/integrations
F=$REPO/tests/files
[ -x "$VHOSTFIX" ] || { t_fail "vhostfix is built ($VHOSTFIX): cargo build --release"; t_done; exit 1; }

# doc_snippet PAGE ID TEXT: the fenced block between <!-- BEGIN ID --> and
# <!-- END ID --> in docs/integrations/PAGE.md must be TEXT (VHOSTFIX_BLESS=1
# writes it). Paths of the test's stand-in binaries read /usr/bin/vhostfix.
doc_snippet() {
  local page=$REPO/docs/integrations/$1.md text
  text=$(sed -e "s|$T_TMP/[a-z-]*vhostfix|/usr/bin/vhostfix|g" -e "s|$VHOSTFIX|/usr/bin/vhostfix|g" <<<"$3")
  if [ -n "${VHOSTFIX_BLESS:-}" ]; then
    python3 - "$page" "$2" "$text" <<'PY'
import sys
page, ident, text = sys.argv[1:4]
lines = open(page).read().split('\n')
b = lines.index('<!-- BEGIN %s -->' % ident)
e = lines.index('<!-- END %s -->' % ident)
lines[b + 1:e] = ['```'] + text.split('\n') + ['```']
open(page, 'w').write('\n'.join(lines))
PY
  fi
  t_eq "docs/integrations/$1.md shows what the test saw ($2)" "$text" \
    "$(sed -n "/^<!-- BEGIN $2 -->\$/,/^<!-- END $2 -->\$/p" "$page" | sed '1,2d;$d' | sed '$d')"
}

# Stand-ins for a broken installation.
MISSING=$T_TMP/no-such-vhostfix
FAILING=$T_TMP/failing-vhostfix
SILENT=$T_TMP/silent-vhostfix
printf '#!/bin/sh\nprintf "<domain type=\\"kvm\\"><name>half"\necho "vhostfix: error: simulated failure" >&2\nexit 2\n' >"$FAILING"
printf '#!/bin/sh\ncat >/dev/null\nexit 0\n' >"$SILENT"
chmod 755 "$FAILING" "$SILENT"
BROKEN=("$MISSING" "$FAILING" "$SILENT")
broken_name() { case $1 in "$MISSING") echo missing ;; "$FAILING") echo failing ;; *) echo silent ;; esac; }

WIN_VDSM=ovirt_hyperv
WIN_KUBEVIRT=kubevirt_passt
WIN_CLOUDSTACK=cloudstack_description
WIN_ZSTACK=zstack_windows
LINUX=linux_rhel_libosinfo

# ---------------------------------------------------------------- vdsm
VH=$T_TMP/vdsm-hooks
for ev in before_vm_start before_nic_hotplug; do
  mkdir -p "$VH/$ev"
  ln -s "$I/vdsm/50_vhostfix" "$VH/$ev/50_vhostfix"
done
# vdsm_run EVENT FILE [KEY=VALUE...]: sets OUT, ERR, RC.
vdsm_run() {
  OUT=$(VHOSTFIX_BIN=${BIN:-$VHOSTFIX} python3 "$H/vdsm-run-hooks.py" "$VH" "$@" 2>"$T_TMP/err")
  RC=$?
  ERR=$(cat "$T_TMP/err")
}

BIN= vdsm_run before_vm_start "$F/$WIN_VDSM.xml"
t_eq "vdsm before_vm_start: hook exits 0" 0 "$RC"
t_eq "vdsm before_vm_start: Windows e1000 vhost-user NIC fixed in \$_hook_domxml (= golden $WIN_VDSM.out.xml)" \
  "$(cat "$F/$WIN_VDSM.out.xml")" "$OUT"
t_contains "vdsm before_vm_start: vhostfix's change reaches vdsm's log (hook stderr)" "$ERR" "vhostfix: changed: domain"
# The hook's own stderr, which vdsm logs, for the page.
for b in "$VHOSTFIX" "$MISSING"; do
  cp "$F/$WIN_VDSM.xml" "$T_TMP/dom.xml"
  err=$(_hook_domxml=$T_TMP/dom.xml VHOSTFIX_BIN=$b "$VH/before_vm_start/50_vhostfix" 2>&1 >/dev/null)
  if [ "$b" = "$VHOSTFIX" ]; then doc_snippet vdsm vdsm-log "$err"; else doc_snippet vdsm vdsm-fallback "$err"; fi
done
BIN= vdsm_run before_vm_start "$F/$LINUX.xml"
t_eq "vdsm before_vm_start: Linux guest left byte-identical" "$(cat "$F/$LINUX.xml")" "$OUT"
for b in "${BROKEN[@]}"; do
  BIN=$b vdsm_run before_vm_start "$F/$WIN_VDSM.xml"
  t_eq "vdsm before_vm_start, vhostfix $(broken_name "$b"): exit 0 (vdsm would fail the start otherwise)" 0 "$RC"
  t_eq "vdsm before_vm_start, vhostfix $(broken_name "$b"): original XML passed on" "$(cat "$F/$WIN_VDSM.xml")" "$OUT"
  t_contains "vdsm before_vm_start, vhostfix $(broken_name "$b"): reason logged" "$ERR" "the XML is passed on unchanged"
done

# Hot-plug: only the <interface> arrives.
NIC=$F/device_interface_windows.xml
BIN= vdsm_run before_nic_hotplug "$NIC" vhostfix_guest_os=windows
t_eq "vdsm before_nic_hotplug, custom property vhostfix_guest_os=windows: e1000 -> virtio" \
  "$("$VHOSTFIX" filter --quiet --guest-os windows "$NIC" 2>/dev/null)" "$OUT"
t_contains "vdsm before_nic_hotplug: the result has the virtio model" "$OUT" "<model type='virtio'/>"
BIN= vdsm_run before_nic_hotplug "$NIC"
t_eq "vdsm before_nic_hotplug, OS unknown (no property, no vmId): interface unchanged" "$(cat "$NIC")" "$OUT"
t_eq "vdsm before_nic_hotplug, OS unknown: exit 0" 0 "$RC"

# The OS of the VM being hot-plugged into, from a real libvirtd by vmId.
libvirt_up
win_uuid=6f2a1c44-3b7e-4d0a-9a51-0c7d2e9b8a01
lin_uuid=6f2a1c44-3b7e-4d0a-9a51-0c7d2e9b8a02
# Two small guests that libvirtd accepts: Windows by its Hyper-V
# enlightenments and clock, Linux by its libosinfo id.
cat >"$T_TMP/win.xml" <<XML
<domain type='qemu'>
  <name>vhostfix-int-win</name>
  <uuid>$win_uuid</uuid>
  <memory unit='MiB'>128</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><hyperv mode='custom'><relaxed state='on'/></hyperv></features>
  <clock offset='localtime'><timer name='hypervclock' present='yes'/></clock>
</domain>
XML
cat >"$T_TMP/linux.xml" <<XML
<domain type='qemu'>
  <name>vhostfix-int-linux</name>
  <uuid>$lin_uuid</uuid>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://redhat.com/rhel/9.0"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='MiB'>128</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
</domain>
XML
for d in win linux; do
  vm_cleanup_on_exit "vhostfix-int-$d"
  t_check "libvirtd accepts the $d test domain" "${VIRSH[@]}" define "$T_TMP/$d.xml"
done
BIN= vdsm_run before_nic_hotplug "$NIC" "vmId=$win_uuid"
t_contains "vdsm before_nic_hotplug, vmId of a Windows domain (virsh -r dumpxml): e1000 -> virtio" "$OUT" "<model type='virtio'/>"
t_contains "vdsm before_nic_hotplug, vmId of a Windows domain: vhostfix was told the OS" "$ERR" "--guest-os windows"
BIN= vdsm_run before_nic_hotplug "$NIC" "vmId=$lin_uuid"
t_eq "vdsm before_nic_hotplug, vmId of a Linux domain: interface unchanged" "$(cat "$NIC")" "$OUT"
t_contains "vdsm before_nic_hotplug, vmId of a Linux domain: the lookup said not Windows" "$ERR" "the guest is not-windows (--guest-os other)"
for b in "${BROKEN[@]}"; do
  BIN=$b vdsm_run before_nic_hotplug "$NIC" vhostfix_guest_os=windows
  t_eq "vdsm before_nic_hotplug, vhostfix $(broken_name "$b"): original interface passed on, exit 0" \
    "0 $(cat "$NIC")" "$RC $OUT"
done

# ---------------------------------------------------------------- KubeVirt
KB=$T_TMP/kubevirt-bin
mkdir -p "$KB"
ln -s "$I/kubevirt/onDefineDomain" "$KB/onDefineDomain"
VMI='{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachineInstance","metadata":{"name":"win","annotations":{}},"spec":{}}'
VMI_WIN='{"apiVersion":"kubevirt.io/v1","kind":"VirtualMachineInstance","metadata":{"name":"win","annotations":{"vm.kubevirt.io/os":"windows2k22"}},"spec":{}}'
# kubevirt_run VMI_JSON FILE: as the shim's runOnDefineDomain: looked up in
# PATH, two flags, stdout taken as the domain. Sets OUT, ERR, RC.
kubevirt_run() {
  OUT=$(PATH=$KB:$PATH VHOSTFIX_BIN=${BIN:-$VHOSTFIX} onDefineDomain --vmi "$1" --domain "$(cat "$2")" 2>"$T_TMP/err")
  RC=$?
  ERR=$(cat "$T_TMP/err")
}
BIN= kubevirt_run "$VMI" "$F/$WIN_KUBEVIRT.xml"
t_eq "kubevirt onDefineDomain: exit 0" 0 "$RC"
t_eq "kubevirt onDefineDomain: Windows passt vhost-user e1000e fixed (= golden $WIN_KUBEVIRT.out.xml)" \
  "$(cat "$F/$WIN_KUBEVIRT.out.xml")" "$OUT"
t_contains "kubevirt onDefineDomain: vhostfix's change logged on stderr" "$ERR" "vhostfix: changed: domain"
doc_snippet kubevirt kubevirt-log "$ERR"
BIN= kubevirt_run "$VMI" "$F/$LINUX.xml"
t_eq "kubevirt onDefineDomain: Linux guest unchanged" "$(cat "$F/$LINUX.xml")" "$OUT"
BIN= kubevirt_run "$VMI_WIN" "$F/linux_no_evidence.xml"
t_eq "kubevirt onDefineDomain: VMI annotation vm.kubevirt.io/os=windows* decides for an XML without evidence" \
  "$("$VHOSTFIX" filter --quiet --guest-os windows "$F/linux_no_evidence.xml" 2>/dev/null)" "$OUT"
t_contains "kubevirt onDefineDomain: ... and the NIC became virtio" "$OUT" "virtio"
for b in "${BROKEN[@]}"; do
  BIN=$b kubevirt_run "$VMI" "$F/$WIN_KUBEVIRT.xml"
  t_eq "kubevirt onDefineDomain, vhostfix $(broken_name "$b"): original domain on stdout, exit 0" \
    "0 $(cat "$F/$WIN_KUBEVIRT.xml")" "$RC $OUT"
  t_contains "kubevirt onDefineDomain, vhostfix $(broken_name "$b"): reason logged" "$ERR" "passed on unchanged"
done
# The shim image is distroless: no tools but what the Containerfile adds. With
# a PATH holding only onDefineDomain and vhostfix, the script must still work.
mkdir -p "$T_TMP/distroless"
ln -s "$I/kubevirt/onDefineDomain" "$T_TMP/distroless/onDefineDomain"
ln -s "$VHOSTFIX" "$T_TMP/distroless/vhostfix"
OUT=$(env -i PATH="$T_TMP/distroless" VHOSTFIX_BIN="$T_TMP/distroless/vhostfix" onDefineDomain --vmi "$VMI" --domain "$(cat "$F/$WIN_KUBEVIRT.xml")" 2>"$T_TMP/err")
t_eq "kubevirt onDefineDomain with no tools in PATH but vhostfix (distroless): domain fixed" \
  "$(cat "$F/$WIN_KUBEVIRT.out.xml")" "$OUT"
OUT=$(env -i PATH="$T_TMP/distroless" VHOSTFIX_BIN="$MISSING" onDefineDomain --vmi "$VMI" --domain "$(cat "$F/$WIN_KUBEVIRT.xml")" 2>"$T_TMP/err")
t_eq "kubevirt onDefineDomain with no tools in PATH, vhostfix missing: original domain" "$(cat "$F/$WIN_KUBEVIRT.xml")" "$OUT"
CF=$(cat "$I/kubevirt/Containerfile")
t_contains "kubevirt Containerfile: based on KubeVirt's sidecar-shim image" "$CF" "ARG SHIM_IMAGE=quay.io/kubevirt/sidecar-shim:"
t_contains "kubevirt Containerfile: onDefineDomain where the shim looks (PATH)" "$CF" "COPY --chmod=0755 onDefineDomain /usr/bin/onDefineDomain"
t_contains "kubevirt Containerfile: vhostfix where onDefineDomain looks" "$CF" "COPY --chmod=0755 vhostfix /usr/bin/vhostfix"
t_contains "kubevirt Containerfile: a /bin/sh for the script's #!/bin/sh" "$CF" "/bin/busybox /bin/sh"
t_eq "kubevirt onDefineDomain: #!/bin/sh" "#!/bin/sh" "$(head -n 1 "$I/kubevirt/onDefineDomain")"

# In the sidecar the shim is PID 1 and keeps the hook's stderr only on
# failure: messages go to PID 1's stderr, the container log.
if command -v unshare >/dev/null; then
  cat >"$T_TMP/shim-as-pid1.sh" <<SH
#!/bin/bash
PATH=$KB:\$PATH VHOSTFIX_BIN=$VHOSTFIX onDefineDomain --vmi '$VMI' --domain "\$(cat $F/$WIN_KUBEVIRT.xml)" >$T_TMP/pid1.out 2>/dev/null
SH
  unshare --pid --fork --mount-proc bash "$T_TMP/shim-as-pid1.sh" 2>"$T_TMP/pid1.err"
  t_eq "kubevirt onDefineDomain under a PID-1 parent: domain fixed" "$(cat "$F/$WIN_KUBEVIRT.out.xml")" "$(cat "$T_TMP/pid1.out")"
  t_contains "kubevirt onDefineDomain under a PID-1 parent: vhostfix's messages on PID 1's stderr" \
    "$(cat "$T_TMP/pid1.err")" "vhostfix: changed: domain"
fi

# ---------------------------------------------------------------- CloudStack
CB=$T_TMP/cloudstack-hooks
mkdir -p "$CB"
cp "$I/cloudstack/libvirt-vm-xml-transformer.groovy" "$CB/"
if command -v groovy >/dev/null; then
  # cloudstack_run FILE: sets OUT, ERR, RC.
  cloudstack_run() {
    OUT=$(VHOSTFIX_BIN=${BIN:-$VHOSTFIX} groovy "$H/cloudstack-agent-hook.groovy" "$CB" libvirt-vm-xml-transformer.groovy transform "$1" 2>"$T_TMP/err")
    RC=$?
    ERR=$(grep -E '^(DEBUG|INFO|WARN|ERROR) ' "$T_TMP/err")
  }
  BIN= cloudstack_run "$F/$WIN_CLOUDSTACK.xml"
  t_eq "cloudstack transform(logger, xml): call succeeds" 0 "$RC"
  t_eq "cloudstack transform: Windows Server e1000 vhost-user fixed (= golden $WIN_CLOUDSTACK.out.xml)" \
    "$(cat "$F/$WIN_CLOUDSTACK.out.xml")" "$OUT"
  t_contains "cloudstack transform: vhostfix's change in the agent log (logger.info)" "$ERR" "INFO vhostfix: changed: domain"
  doc_snippet cloudstack cloudstack-log "$ERR"
  BIN= cloudstack_run "$F/$LINUX.xml"
  t_eq "cloudstack transform: Linux guest unchanged" "$(cat "$F/$LINUX.xml")" "$OUT"
  for b in "${BROKEN[@]}"; do
    BIN=$b cloudstack_run "$F/$WIN_CLOUDSTACK.xml"
    t_eq "cloudstack transform, vhostfix $(broken_name "$b"): original XML returned" \
      "0 $(cat "$F/$WIN_CLOUDSTACK.xml")" "$RC $OUT"
    t_contains "cloudstack transform, vhostfix $(broken_name "$b"): logger.warn says why" "$ERR" "WARN vhostfix: "
    [ "$b" = "$MISSING" ] && doc_snippet cloudstack cloudstack-fallback "$ERR"
  done
else
  t_fail "groovy is installed (.ci/run installs groovy and default-jre-headless)"
fi

# ---------------------------------------------------------------- ZStack
ZH=$I/zstack/vhostfix-xml-hook.py
: >"$T_TMP/empty-hook.py"
pythons=(python3)
# The kvmagent of most ZStack hosts is Python 2.7: test it there too when a
# Python 2 is on this machine (Debian 12 has none; .ci/run does not add one).
py2=${PYTHON2:-python2}
"$py2" -c "import sys; assert sys.version_info[0] == 2" >/dev/null 2>&1 && pythons+=("$py2")
for py in "${pythons[@]}"; do
  # zstack_run HOOK FILE: sets OUT, ERR, RC.
  zstack_run() {
    OUT=$(VHOSTFIX_BIN=${BIN:-$VHOSTFIX} "$py" "$H/zstack-kvmagent-hook.py" "$1" "$2" 2>"$T_TMP/err")
    RC=$?
    ERR=$(cat "$T_TMP/err")
  }
  # What the agent itself makes of a given XML (its parse + re-serialisation).
  as_agent() { "$py" "$H/zstack-kvmagent-hook.py" "$T_TMP/empty-hook.py" "$1"; }
  BIN= zstack_run "$ZH" "$F/$WIN_ZSTACK.xml"
  t_eq "zstack ($py): hook succeeds" 0 "$RC"
  t_eq "zstack ($py): Windows localtime+hypervclock e1000 fixed (= the agent's rendering of golden $WIN_ZSTACK.out.xml)" \
    "$(as_agent "$F/$WIN_ZSTACK.out.xml")" "$OUT"
  t_contains "zstack ($py): vhostfix's change logged" "$ERR" "vhostfix xml hook: vhostfix: changed: domain"
  [ "$py" = python3 ] && doc_snippet zstack zstack-log "$ERR"
  BIN= zstack_run "$ZH" "$F/$LINUX.xml"
  t_eq "zstack ($py): Linux guest unchanged" "$(as_agent "$F/$LINUX.xml")" "$OUT"
  for b in "${BROKEN[@]}"; do
    BIN=$b zstack_run "$ZH" "$F/$WIN_ZSTACK.xml"
    t_eq "zstack ($py), vhostfix $(broken_name "$b"): original XML passed on, no exception" \
      "0 $(as_agent "$F/$WIN_ZSTACK.xml")" "$RC $OUT"
    t_contains "zstack ($py), vhostfix $(broken_name "$b"): reason logged" "$ERR" "the domain XML is left unchanged"
  done
done

t_done
