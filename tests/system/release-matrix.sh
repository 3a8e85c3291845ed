#!/usr/bin/env bash
# The system suites' core on other libvirt releases: Debian 11 (libvirt 7.0) and
# Debian 13 (libvirt 11.3), each in a cached debootstrap chroot
# (tests/lib/release.sh). The host's Debian 12 (libvirt 9.0) is covered by
# libvirt-hook.sh, proxy.sh and packages.sh. Per release, with the release's
# own virsh and python3-libvirt as clients and the glibc 2.17 build
# (target/assets/vhostfix) inside the chroot:
#
#  A. hook: libvirt's refusal of vhost-user + e1000 (each release's own text),
#     `vhostfix filter | virsh define`, the phases libvirt calls for create,
#     save, restore, destroy (the truth table), the hook's verdicts, and its
#     admission checks (memory not shared, with shared_memory = "deny";
#     missing client socket);
#  B. proxy: define (virsh and python3-libvirt), attach-device, create with an
#     Open vSwitch DPDK backend, lifecycle events, and 8 MiB volume streams;
#  C. the .deb: install, upgrade, removal and purge inside the chroot; the
#     install lists the defined Windows guests the hook will refuse (missing
#     client socket) or warn about (memory not shared, where libvirt defines
#     it), and by default the latter still starts (Open vSwitch backend).
#
# Where a release behaves differently, the test accepts that release's own
# behaviour, and checks that vhostfix follows the release it runs against.
#
# Environment: VHOSTFIX_RELEASES (default "bullseye trixie"), REL_CACHE
# (default /var/tmp/vhostfix-ci/rel). Root; the chroots are kept as a cache.
T_NAME=release-matrix.sh
. "$(dirname "$0")/../lib/common.sh"
. "$REPO/tests/lib/release.sh"
need_root
system_lock
SECONDS=0
cd "$REPO" || exit 2

RELEASES=${VHOSTFIX_RELEASES:-bullseye trixie}
W=/opt/vhostfix-test                 # the suite's directory inside the chroot
ASSET=target/assets/vhostfix
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
DEB=target/debian/vhostfix_${version}-1_$(dpkg --print-architecture).deb

# --------------------------------------------------------------- the glibc 2.17 build
if [ ! -x "$ASSET" ] || [ ! -f "$DEB" ] || [ -n "$(find src hooks packaging integrations docs Cargo.toml -newer "$DEB" -print -quit)" ]; then
  t_log "building the glibc 2.17 binary and the .deb"
  if packaging/build-assets.sh >"$T_TMP/build.log" 2>&1 && cargo deb --no-build >>"$T_TMP/build.log" 2>&1; then
    t_ok "the glibc 2.17 binary and the .deb build"
  else
    t_fail "the glibc 2.17 binary and the .deb build" "$(tail -n 20 "$T_TMP/build.log")"
    t_done; exit 1
  fi
fi
maxglibc=$(objdump -T "$ASSET" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
t_eq "the binary used in the chroots needs at most GLIBC_2.17" 2.17 "$(printf '%s\n2.17\n' "$maxglibc" | sort -V | tail -n 1)"
t_log "build ready after ${SECONDS}s"

# A vhost-user backend for the guests that must really start (QEMU is the
# server; OVS connects to the socket under the chroot's /run/vhu).
OVS_OK=no
if ovs_up >/dev/null 2>&1; then OVS_OK=yes; else t_fail "Open vSwitch with DPDK is up (bridge br-vhu)"; fi

RAN=()
P=vhostfix-t-rel-

# The release-specific texts (measured; see README "Supported hosts").
model_refusal() {
  case $REL_LIBVIRT in
  11.*) echo "invalid model for interface of type 'vhostuser': 'e1000' - must be 'virtio'" ;;
  *) echo "vhostuser requires the virtio-net* frontend" ;;
  esac
}
refuses_unshared() { case $REL_LIBVIRT in 11.*) return 0 ;; *) return 1 ;; esac; }

rv() { "${RVIRSH[@]}" "$@"; }
rvt() { local s=$1; shift; timeout "$s" "${RVIRSH[@]}" "$@"; }
rstate() { rv domstate "$1" 2>/dev/null || echo absent; }
rdrop() { rv destroy "$1" >/dev/null 2>&1; rv undefine "$1" --managed-save >/dev/null 2>&1; return 0; }
rcleanup() { on_exit "chroot $R ${RENV[*]} virsh -q -c qemu:///system destroy '$1'; chroot $R ${RENV[*]} virsh -q -c qemu:///system undefine '$1' --managed-save"; }

# ================================================================ A. the hook
hook_section() {
  local L=$1 HD=$R/etc/libvirt/hooks/qemu.d out xml calls_f=$W/calls seed
  # The seed under this suite's name, socket in the chroot's /run/vhu.
  sed -e "s|<name>win2019-vhu</name>|<name>${P}seed</name>|" -e '/<uuid>/d' \
    -e 's|/run/vhu-test/vhu0.sock|/run/vhu/vhu0.sock|' examples/windows-vhostuser.xml >"$R$W/seed.xml"
  sed -e '/<model type=.e1000.\/>/d' -e "s|${P}seed|${P}nomodel|" "$R$W/seed.xml" >"$R$W/nomodel.xml"
  sed -e "s|vhostfix-t-hook-|$P|" tests/system/fixtures/plain-tcg.xml >"$R$W/plain.xml"
  sed -e "s|vhostfix-t-hook-|$P|" tests/system/fixtures/vhu-unshared.xml >"$R$W/unshared.xml"
  sed -e "s|vhostfix-t-hook-|$P|" tests/system/fixtures/vhu-client-missing.xml >"$R$W/client.xml"
  # memfd without <access mode='shared'/> (server-mode socket: nothing else to refuse)
  sed -e "s|</memory>|</memory><memoryBacking><source type='memfd'/></memoryBacking>|" \
    -e "s|${P}unshared|${P}memfd|" "$R$W/unshared.xml" >"$R$W/memfd.xml"

  out=$(rv define "$W/seed.xml" 2>&1)
  t_contains "$L A1: libvirt refuses vhost-user + e1000 with its own text" "$out" "$(model_refusal)"
  t_eq "$L A1: nothing was defined" absent "$(rstate "${P}seed")"
  rcleanup "${P}seed"
  out=$(rin sh -c "$RBIN filter $W/seed.xml 2>$W/filter.err | virsh -q -c qemu:///system define /dev/stdin" 2>&1)
  t_eq "$L A1: vhostfix filter | virsh define succeeds" "0" "$?"
  t_contains "$L A1: filter reports the change" "$(cat "$R$W/filter.err")" "model e1000 -> virtio"
  xml=$(rv dumpxml "${P}seed" 2>&1)
  t_contains "$L A1: the defined domain has a virtio model" "$xml" "<model type='virtio'/>"
  t_not_contains "$L A1: ... and no e1000 left" "$xml" "e1000"
  rdrop "${P}seed"

  # vhost-user with no <model>: refused up to 9.0, accepted by 11.3 (virtio).
  rcleanup "${P}nomodel"
  out=$(rv define "$W/nomodel.xml" 2>&1); rc=$?
  case $REL_LIBVIRT in
  11.*)
    t_eq "$L A1: vhost-user without <model> defines" "0" "$rc"
    t_contains "$L A1: ... libvirt writes the virtio model itself" "$(rv dumpxml "${P}nomodel" 2>&1)" "<model type='virtio'/>"
    out=$(rin env VHOSTFIX_LIBVIRT_VERSION="$REL_LIBVIRT" "$RBIN" check "$W/nomodel.xml" 2>&1)
    t_contains "$L A1: vhostfix check, told the release, takes the missing model as libvirt does" "$out" "model (none): ok" ;;
  *)
    t_eq "$L A1: vhost-user without <model> is refused" "1" "$rc"
    t_contains "$L A1: ... with the same text" "$out" "vhostuser requires the virtio-net* frontend" ;;
  esac
  rdrop "${P}nomodel"

  # The hook and a recorder of every call, picked up with a reload (SIGHUP).
  mkdir -p "$HD"
  printf '#!/bin/sh\nn=$(wc -c)\necho "$1 $2 $3 $4 stdin=$n" >>%s\n' "$calls_f" >"$R$W/record"
  chmod 0755 "$R$W/record"
  ln -sf "$RBIN" "$HD/50-vhostfix-test"
  ln -sf "$W/record" "$HD/60-vhostfix-test-record"
  on_exit "rm -f '$HD/50-vhostfix-test' '$HD/60-vhostfix-test-record'"
  # The hook logs to the chroot's /dev/log (its private /dev): receive it here.
  rm -f "$R/dev/log"
  socat -u UNIX-RECV:"$R/dev/log",mode=0666 "OPEN:$T_TMP/syslog-$REL_LIBVIRT,creat,append" {T_LOCK_FD}>&- &
  local socat_pid=$!
  on_exit "stop_pid $socat_pid; rm -f '$R/dev/log'"
  wait_for "[ -S '$R/dev/log' ]" 10
  kill -HUP "$(cat "$R/run/libvirtd.pid")"
  sleep 1
  wait_for "${RVIRSH[*]} version" 30
  hook_log() { sed -E 's/<[0-9]{1,3}>[A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8} /\n&/g' "$T_TMP/syslog-$REL_LIBVIRT" 2>/dev/null | grep -a 'vhostfix\[[0-9]*\]: '; }
  verdicts() { hook_log | grep -v 'nothing to check' | sed -nE "s/.*domain='$1' op=([a-z]+\/[a-z]+) .*action=([a-z]+).*/\1:\2/p" | paste -sd' ' -; }
  calls() { awk -v d="$1" '$1 == d { printf "%s%s/%s", n++ ? " " : "", $2, $3 }' "$R$calls_f" 2>/dev/null; }
  arg4() { awk -v d="$1" -v p="$2" '$1 == d && $2 == p { print $4 }' "$R$calls_f" 2>/dev/null | paste -sd' ' -; }

  # The truth table: which phases libvirt calls, and what the hook decides.
  local PL=${P}plain
  rcleanup "$PL"
  : >"$R$calls_f"
  out=$(rvt 300 create "$W/plain.xml" 2>&1)
  t_eq "$L A2: create a plain guest with the hook installed" "0:" "$?:$out"
  t_eq "$L A2: ... libvirt called" "prepare/begin start/begin started/begin" "$(calls "$PL")"
  wait_for "[ \"\$(verdicts $PL)\" = prepare/begin:allow ]" 5
  t_eq "$L A2: ... the hook checked and allowed prepare/begin" "prepare/begin:allow" "$(verdicts "$PL")"
  : >"$R$calls_f"
  out=$(rvt 60 save "$PL" "$W/plain.save" 2>&1)
  t_eq "$L A2: save it" "0:" "$?:$out"
  t_eq "$L A2: ... libvirt called" "stopped/end release/end" "$(calls "$PL")"
  local want_save=- want_destroy=-
  case $REL_LIBVIRT in 11.*) want_save=saved; want_destroy=destroyed ;; esac
  t_eq "$L A2: ... release/end's 4th argument" "$want_save" "$(arg4 "$PL" release)"
  : >"$R$calls_f"
  out=$(rvt 120 restore "$W/plain.save" 2>&1)
  t_eq "$L A2: restore it" "0:" "$?:$out"
  t_eq "$L A2: ... libvirt called" "restore/begin prepare/begin start/begin started/begin" "$(calls "$PL")"
  local want="prepare/begin:allow restore/begin:allow prepare/begin:allow"
  wait_for "[ \"\$(verdicts $PL)\" = '$want' ]" 5
  t_eq "$L A2: ... the hook allowed restore/begin and prepare/begin" "$want" "$(verdicts "$PL")"
  : >"$R$calls_f"
  out=$(rvt 60 destroy "$PL" 2>&1)
  t_eq "$L A2: destroy it" "0:" "$?:$out"
  t_eq "$L A2: ... libvirt called" "stopped/end release/end" "$(calls "$PL")"
  t_eq "$L A2: ... release/end's 4th argument" "$want_destroy" "$(arg4 "$PL" release)"
  rm -f "$R$W/plain.save"

  # Admission: memory not shared. The hook only warns by default (C starts
  # such a guest); here it refuses, as with the operator's setting in the
  # chroot's /etc/vhostfix/vhostfix.toml (libvirt gives hooks no environment).
  local UN=${P}unshared
  printf '[hook.checks]\nshared_memory = "deny"\n' >"$R$W/deny.toml"
  hook_config "$(cat "$R$W/deny.toml")" "$R"
  rcleanup "$UN"
  out=$(rv define "$W/unshared.xml" 2>&1); rc=$?
  if refuses_unshared; then
    t_eq "$L A3: libvirt refuses a vhost-user domain without shared memory at define" "1" "$rc"
    t_contains "$L A3: ... with its own text" "$out" "'interface' requires shared memory"
  else
    t_eq "$L A3: a vhost-user domain without shared memory defines" "0" "$rc"
    out=$(rvt 60 start "$UN" 2>&1)
    t_eq "$L A3: ... with shared_memory = \"deny\", virsh start fails" "1" "$?"
    t_contains "$L A3: ... with the hook's message" "$out" "vhostfix refused to start domain '$UN'"
    t_contains "$L A3: ... saying why" "$out" "not shared"
    t_eq "$L A3: ... the domain stays shut off" "shut off" "$(rstate "$UN")"
    wait_for "[ \"\$(verdicts $UN)\" = prepare/begin:deny ]" 5
    t_eq "$L A3: ... the hook logged its decision" "prepare/begin:deny" "$(verdicts "$UN")"
  fi
  rdrop "$UN"
  hook_config_restore
  # The hook as libvirt calls it, on the same XML: with "deny" it must deny on
  # every release; by default it warns and allows.
  out=$(rin env VHOSTFIX_LOG=stderr "$RBIN" hook qemu "$UN" prepare begin - <"$R$W/unshared.xml" 2>&1)
  t_eq "$L A3: by default the hook itself allows the unshared domain (exit 0)" "0" "$?"
  t_contains "$L A3: ... with a warning" "$out" "needs shared guest memory, but memory is not shared"
  out=$(rin env VHOSTFIX_CONFIG="$W/deny.toml" "$RBIN" hook qemu "$UN" prepare begin - <"$R$W/unshared.xml" 2>&1)
  t_eq "$L A3: with shared_memory = \"deny\" the hook itself denies it (exit 1)" "1" "$?"
  # Its advice follows the release: memfd alone is offered only where libvirt
  # takes it as shared (the hook learns the release from libvirtd; here, as a
  # plain process, from VHOSTFIX_LIBVIRT_VERSION).
  out=$(rin env VHOSTFIX_CONFIG="$W/deny.toml" VHOSTFIX_LIBVIRT_VERSION="$REL_LIBVIRT" "$RBIN" hook qemu "$UN" prepare begin - <"$R$W/unshared.xml" 2>&1)
  t_eq "$L A3: ... also when told the release (exit 1)" "1" "$?"
  if refuses_unshared; then
    t_not_contains "$L A3: ... no memfd advice on a release that refuses memfd alone" "$out" "memfd'/>)"
  else
    t_contains "$L A3: ... memfd offered as the alternative on this release" "$out" "(or <source type='memfd'/>)"
  fi
  # memfd without <access mode='shared'/>: accepted up to 9.0, refused by 11.3.
  local MF=${P}memfd
  rcleanup "$MF"
  out=$(rv define "$W/memfd.xml" 2>&1); rc=$?
  if refuses_unshared; then
    t_contains "$L A3: memfd without shared access: libvirt refuses it at define" "$out" "'interface' requires shared memory"
    out=$(rin env VHOSTFIX_CONFIG="$W/deny.toml" VHOSTFIX_LIBVIRT_VERSION="$REL_LIBVIRT" "$RBIN" hook qemu "$MF" prepare begin - <"$R$W/memfd.xml" 2>&1)
    t_eq "$L A3: ... and the hook, told the release, refuses it too (exit 1, shared_memory = \"deny\")" "1" "$?"
    t_contains "$L A3: ... saying that this release requires shared access" "$out" "which libvirt $REL_LIBVIRT requires"
  else
    t_eq "$L A3: memfd without shared access: libvirt defines it" "0" "$rc"
  fi
  rdrop "$MF"

  # Admission: a client socket that does not exist.
  local CL=${P}client
  rcleanup "$CL"
  t_check "$L A4: a client-mode vhost-user domain defines" rv define "$W/client.xml"
  out=$(rvt 60 start "$CL" 2>&1)
  t_eq "$L A4: ... virsh start without its socket fails" "1" "$?"
  t_contains "$L A4: ... with the hook's message" "$out" "vhostfix refused to start domain '$CL'"
  t_contains "$L A4: ... naming the socket" "$out" "does not exist"
  t_eq "$L A4: ... the domain stays shut off" "shut off" "$(rstate "$CL")"
  rdrop "$CL"

  rm -f "$HD/50-vhostfix-test" "$HD/60-vhostfix-test-record"
  rmdir "$HD" 2>/dev/null
}

# ================================================================ B. the proxy
proxy_section() {
  local L=$1 out xml pid PU="qemu:///system?socket=$W/sock"
  local VP=(chroot "$R" "${RENV[@]}" virsh -c "$PU")
  : >"$R$W/proxy.toml"
  chroot "$R" "${RENV[@]}" VHOSTFIX_LOG=stderr:info "$RBIN" --config "$W/proxy.toml" proxy \
    --listen "$W/sock" --upstream /run/libvirt/libvirt-sock --listen-ro "$W/sock-ro" \
    2>>"$T_TMP/proxy-$REL_LIBVIRT.log" {T_LOCK_FD}>&- &
  pid=$!
  on_exit "stop_pid $pid"
  if wait_for "[ -S '$R$W/sock' ]" 15; then t_ok "$L B: the proxy runs in the chroot"; else
    t_fail "$L B: the proxy runs in the chroot" "$(cat "$T_TMP/proxy-$REL_LIBVIRT.log")"; return; fi

  local S=win2019-vhu
  sed -e 's|/run/vhu-test/|/run/vhu/|' examples/windows-vhostuser.xml >"$R$W/pseed.xml"
  rcleanup "$S"
  out=$("${VP[@]}" define "$W/pseed.xml" 2>&1)
  t_contains "$L B1: virsh define through the proxy succeeds" "$out" "defined"
  xml=$(rv dumpxml "$S" 2>&1)
  t_contains "$L B1: ... the defined domain has virtio" "$xml" "<model type='virtio'/>"
  t_not_contains "$L B1: ... and no e1000" "$xml" "e1000"
  rdrop "$S"
  out=$(rin python3 - "$PU" "$W/pseed.xml" <<'PYEOF' 2>&1
import sys, libvirt
c = libvirt.open(sys.argv[1])
d = c.defineXML(open(sys.argv[2]).read())
print("defined", d.name(), "virtio" if "<model type='virtio'/>" in d.XMLDesc(0) else "NOT virtio")
PYEOF
)
  t_contains "$L B1: the release's python3-libvirt defineXML through the proxy" "$out" "defined $S virtio"
  rdrop "$S"

  # attach-device --config of an e1000 vhost-user NIC to a Windows domain.
  attach_fixture "$W/pseed.xml" "$W"
  rcleanup win-attach
  rv define "$W/nonic.xml" >/dev/null
  out=$(rv attach-device win-attach "$W/nic.xml" --config 2>&1)
  t_contains "$L B2: direct attach-device of an e1000 vhost-user NIC is refused" "$out" "$(model_refusal)"
  out=$("${VP[@]}" attach-device win-attach "$W/nic.xml" --config 2>&1)
  t_contains "$L B2: attach-device --config through the proxy succeeds" "$out" "attached successfully"
  t_contains "$L B2: ... the attached NIC is virtio" "$(rv dumpxml --inactive win-attach)" "<model type='virtio'/>"
  rdrop win-attach

  # create with a real backend: OVS connects to QEMU's socket in the chroot.
  if [ "$OVS_OK" = yes ]; then
    local OVSLOG=/var/log/openvswitch/ovs-vswitchd.log n0
    n0=$(wc -l <"$OVSLOG" 2>/dev/null || echo 0)
    ovs_add_client_port vhurel0 "$R/run/vhu/vhu0.sock"
    on_exit "ovs-vsctl --if-exists del-port br-vhu vhurel0"
    out=$(timeout 180 "${VP[@]}" create "$W/pseed.xml" 2>&1)
    t_contains "$L B3: virsh create through the proxy starts the guest" "$out" "created"
    t_contains "$L B3: ... running with virtio" "$(rv dumpxml "$S" 2>&1)" "<model type='virtio'/>"
    if wait_for "tail -n +$((n0 + 1)) $OVSLOG | grep -q 'vhu0.sock) connected'" 30; then
      t_ok "$L B3: OVS reports the vhost-user port connected"
    else
      t_fail "$L B3: OVS reports the vhost-user port connected" "$(tail -n 5 "$OVSLOG")"
    fi
    rv destroy "$S" >/dev/null 2>&1
    ovs-vsctl --if-exists del-port br-vhu vhurel0
  fi

  # events and streams
  local TINY=${P}tiny
  sed -e "s|vhostfix-t-hook-plain|$TINY|" tests/system/fixtures/plain-tcg.xml >"$R$W/tiny.xml"
  rcleanup "$TINY"
  "${VP[@]}" -q define "$W/tiny.xml" >/dev/null 2>&1
  # line-buffered: virsh killed at the end must not lose what it printed
  timeout 90 chroot "$R" "${RENV[@]}" stdbuf -oL virsh -c "$PU" event --all --loop --timeout 60 \
    >"$T_TMP/events-$REL_LIBVIRT" 2>&1 {T_LOCK_FD}>&- &
  local ev=$!
  sleep 1
  t_check "$L B4: start a guest through the proxy" timeout 120 "${VP[@]}" -q start "$TINY"
  t_check "$L B4: destroy it through the proxy" timeout 60 "${VP[@]}" -q destroy "$TINY"
  wait_for "grep -q Stopped '$T_TMP/events-$REL_LIBVIRT'" 10
  kill "$ev" 2>/dev/null; wait "$ev" 2>/dev/null
  t_check "$L B4: event --all through the proxy: Started" grep -qE "lifecycle' for domain '?$TINY'?: Started" "$T_TMP/events-$REL_LIBVIRT"
  t_check "$L B4: event --all through the proxy: Stopped" grep -qE "lifecycle' for domain '?$TINY'?: Stopped" "$T_TMP/events-$REL_LIBVIRT"
  t_log "events seen: $(paste -sd'|' "$T_TMP/events-$REL_LIBVIRT")"
  rdrop "$TINY"

  mkdir -p "$R$W/pool"
  rv pool-create-as vhfx-rel-pool dir --target "$W/pool" >/dev/null
  on_exit "chroot $R ${RENV[*]} virsh -q -c qemu:///system pool-destroy vhfx-rel-pool"
  head -c $((8 << 20)) /dev/urandom >"$R$W/blob"
  printf tail >>"$R$W/blob"
  rv vol-create-as vhfx-rel-pool up.raw "$(stat -c %s "$R$W/blob")" --format raw >/dev/null
  t_check "$L B5: vol-upload (8 MiB stream) through the proxy" timeout 60 "${VP[@]}" -q vol-upload up.raw "$W/blob" --pool vhfx-rel-pool
  t_eq "$L B5: ... the volume is byte-identical" "$(sha256sum <"$R$W/blob")" "$(sha256sum <"$R$W/pool/up.raw")"
  timeout 60 "${VP[@]}" -q vol-download up.raw "$W/down" --pool vhfx-rel-pool >/dev/null 2>&1
  t_eq "$L B5: vol-download through the proxy is byte-identical" "$(sha256sum <"$R$W/blob")" "$(sha256sum <"$R$W/down" 2>&1)"
  rv pool-destroy vhfx-rel-pool >/dev/null 2>&1
  rm -rf "$R$W/pool" "$R$W/blob" "$R$W/down"
  t_contains "$L B: the proxy logged its decisions" "$(cat "$T_TMP/proxy-$REL_LIBVIRT.log")" "proc=DOMAIN_DEFINE_XML domain='win2019-vhu' verdict=windows"
  stop_pid "$pid"
}

# ================================================================ C. the .deb
package_section() {
  local L=$1 out rc LINK=/etc/libvirt/hooks/qemu.d/50-vhostfix CONF=/etc/vhostfix/vhostfix.toml before edited pid
  local HK=$R/etc/libvirt/hooks
  cp "$DEB" "$R$W/vhostfix.deb"
  before=$(ls -lAR --time-style=+ "$HK" 2>/dev/null)
  # Defined before the install: a Windows guest whose client-mode socket is
  # missing (the hook will refuse it), and one whose memory is not shared
  # (before libvirt 11.2 it starts, its vhost-user NIC dead, so the hook only
  # warns; 11.2 and later refuse it at define).
  local WCL=${P}win-client WUN=${P}win-unshared WSOCK=/run/vhu/win-unshared.sock ndef inst
  sed -e "s|vhostfix-t-win-client|$WCL|" tests/system/fixtures/win-client-missing.xml >"$R$W/win-client.xml"
  sed -e "s|vhostfix-t-win-unshared|$WUN|" -e "s|/run/vhu-test/win-unshared.sock|$WSOCK|" \
    tests/system/fixtures/win-unshared.xml >"$R$W/win-unshared.xml"
  rcleanup "$WCL"
  rcleanup "$WUN"
  t_check "$L C: a Windows guest whose client socket is missing defines" rv define "$W/win-client.xml"
  out=$(rv define "$W/win-unshared.xml" 2>&1); rc=$?
  if refuses_unshared; then
    t_eq "$L C: libvirt refuses to define a Windows guest without shared memory" 1 "$rc"
    t_contains "$L C: ... with its own text" "$out" "'interface' requires shared memory"
  else
    t_eq "$L C: a Windows guest without shared memory defines" 0 "$rc"
  fi
  ndef=$(rv list --all --name | grep -c .)
  on_exit "chroot $R ${RENV[*]} dpkg -P vhostfix"
  out=$(rin dpkg -i "$W/vhostfix.deb" 2>&1); rc=$?
  inst=$out
  t_eq "$L C: dpkg -i succeeds in the chroot" 0 "$rc"
  t_contains "$L C: postinst lists the guest the hook will refuse, with the setting that lets it start" \
    "$(grep -F "vhostfix: refuse '$WCL': " <<<"$out")" \
    "the socket /run/vhostfix-t-win/no-such-dir/client.sock does not exist, so QEMU would fail to connect; fix: start the backend (e.g. create the OVS dpdkvhostuser port) first, or add <reconnect enabled='yes' timeout='10'/> to the <source>; to let it start anyway: [hook.checks] client_socket = \"warn\""
  if refuses_unshared; then
    t_eq "$L C: ... nothing about the guest libvirt would not define" "" "$(grep -F "'$WUN'" <<<"$out")"
    t_contains "$L C: ... and the summary" "$out" "vhostfix: at their next start the hook will refuse 1 and warn about 0 of $ndef defined guests"
  else
    t_contains "$L C: ... and the guest it will only warn about" "$(grep -F "vhostfix: warn '$WUN': " <<<"$out")" \
      "vhost-user nic 0 (52:54:00:5a:04:01) on socket $WSOCK needs shared guest memory, but memory is not shared"
    t_contains "$L C: ... with the setting that refuses it" "$(grep -F "vhostfix: warn '$WUN': " <<<"$out")" \
      "; it starts all the same (logged); to refuse such a start: [hook.checks] shared_memory = \"deny\""
    t_contains "$L C: ... and the summary" "$out" "vhostfix: at their next start the hook will refuse 1 and warn about 1 of $ndef defined guests"
  fi
  t_contains "$L C: postinst puts the hook in qemu.d (libvirt $REL_LIBVIRT runs it itself)" "$out" \
    "vhostfix: qemu hook: $LINK -> /usr/bin/vhostfix (libvirt $REL_LIBVIRT runs qemu.d/ itself)"
  t_eq "$L C: the hook link points at the binary" /usr/bin/vhostfix "$(readlink "$R$LINK")"
  t_check "$L C: no dispatcher" test ! -e "$HK/qemu" -a ! -L "$HK/qemu"
  t_contains "$L C: the packaged binary runs" "$(rin vhostfix --version 2>&1)" "vhostfix $version"
  pid=$(sed -n "s/.*'kill -HUP \([0-9]*\)'.*/\1/p" <<<"$out" | head -n 1)
  if [ -n "$pid" ]; then
    t_log "following postinst's advice: kill -HUP $pid"
    kill -HUP "$pid"; sleep 1; wait_for "${RVIRSH[*]} version" 30
  fi
  next_start_lines() { grep -e "^vhostfix: refuse '" -e "^vhostfix: warn '" -e "^vhostfix: at their next start" <<<"$1"; }
  out=$(rin /usr/lib/vhostfix/libvirt-hooks status 2>&1); rc=$?
  t_eq "$L C: libvirt-hooks status succeeds" 0 "$rc"
  t_eq "$L C: ... and lists the same guests and settings as the install (nothing defined since)" \
    "$(next_start_lines "$inst")" "$(next_start_lines "$out")"
  local CL=${P}client
  rcleanup "$CL"
  rv define "$W/client.xml" >/dev/null 2>&1
  out=$(rvt 60 start "$CL" 2>&1)
  t_contains "$L C: the packaged hook refuses a domain whose socket is missing" "$out" "vhostfix refused to start domain '$CL'"
  t_contains "$L C: ... libvirt names the packaged hook" "$out" "$LINK"
  out=$(rvt 60 start "$WCL" 2>&1)
  t_contains "$L C: ... and the Windows guest the install listed" "$out" "vhostfix refused to start domain '$WCL'"
  t_eq "$L C: ... which stays shut off" "shut off" "$(rstate "$WCL")"
  if ! refuses_unshared && [ "$OVS_OK" = yes ]; then
    ovs_add_client_port vhurel1 "$R$WSOCK"
    on_exit "ovs-vsctl --if-exists del-port br-vhu vhurel1"
    local qlog=$R/var/log/libvirt/qemu/$WUN.log qoff
    qoff=$(stat -c %s "$qlog" 2>/dev/null || echo 0)
    if out=$(rvt 120 start "$WUN" 2>&1); then t_ok "$L C: by default the guest with unshared memory still starts"; else
      t_fail "$L C: by default the guest with unshared memory still starts" "$out"; fi
    t_eq "$L C: ... it runs" running "$(rstate "$WUN")"
    wait_for "hook_log | grep -qF \"domain='$WUN' prepare/begin: \"" 5
    t_contains "$L C: ... the packaged hook logged a warning naming the NIC" \
      "$(hook_log | grep -F "domain='$WUN' prepare/begin: ")" "vhost-user nic 0 (52:54:00:5a:04:01) on socket $WSOCK needs shared guest memory"
    t_contains "$L C: ... as a warning" "$(hook_log | grep -F "domain='$WUN' prepare/begin: ")" "(action warn)"
    # The boot ROM drives the NIC some seconds after start; QEMU cannot map
    # the guest's memory for the backend and says so only in its log.
    wait_for "tail -c +$((qoff + 1)) '$qlog' | grep -q 'Failed initializing vhost-user memory map'" 60
    t_contains "$L C: ... its vhost-user NIC is dead, as without vhostfix (QEMU's log)" \
      "$(tail -c +$((qoff + 1)) "$qlog" 2>&1)" "Failed initializing vhost-user memory map"
    rv destroy "$WUN" >/dev/null 2>&1
    ovs-vsctl --if-exists del-port br-vhu vhurel1
  fi

  sed -i 's/^#guests = "windows"$/guests = "any"  # edited by the operator/' "$R$CONF"
  edited=$(md5sum <"$R$CONF")
  out=$(rin dpkg -i "$W/vhostfix.deb" 2>&1); rc=$?
  t_eq "$L C: upgrade (dpkg -i again) succeeds" 0 "$rc"
  t_eq "$L C: ... keeps the operator's configuration" "$edited" "$(md5sum <"$R$CONF")"
  t_eq "$L C: ... keeps the hook link" /usr/bin/vhostfix "$(readlink "$R$LINK")"
  out=$(rvt 60 start "$CL" 2>&1)
  t_contains "$L C: ... and the hook still refuses" "$out" "vhostfix refused to start domain '$CL'"
  rdrop "$CL"
  rdrop "$WCL"
  rdrop "$WUN"

  out=$(rin dpkg -r vhostfix 2>&1); rc=$?
  t_eq "$L C: dpkg -r succeeds" 0 "$rc"
  t_check "$L C: dpkg -r removes the hook link and the binary" test ! -L "$R$LINK" -a ! -e "$R/usr/bin/vhostfix"
  t_eq "$L C: dpkg -r keeps the edited configuration" "$edited" "$(md5sum <"$R$CONF" 2>/dev/null)"
  out=$(rin dpkg -P vhostfix 2>&1); rc=$?
  t_eq "$L C: dpkg -P succeeds" 0 "$rc"
  t_check "$L C: dpkg -P removes /etc/vhostfix" test ! -e "$R/etc/vhostfix"
  t_eq "$L C: the chroot's hooks directory is as before" "$before" "$(ls -lAR --time-style=+ "$HK" 2>/dev/null)"
  rm -f "$R$W/vhostfix.deb"
}

# A host libvirtd left running is set aside once for all releases (and started
# again on exit), not once per release.
host_libvirtd_aside || { t_fail "the host's libvirtd can be stopped for the suite"; t_done; exit 1; }
for suite in $RELEASES; do
  mark=$(cleanup_mark)
  t0=$SECONDS
  if ! release_up "$suite"; then
    t_fail "$suite: the release's libvirtd runs in its chroot"
    cleanup_since "$mark"
    continue
  fi
  RAN+=("$VHOSTFIX_RELEASE")
  L="[libvirt $REL_LIBVIRT]"
  release_binary
  mkdir -p "$R$W"
  # The first domain start probes QEMU (cached in the chroot afterwards).
  t_check "$L libvirt knows QEMU's capabilities" timeout 300 "${RVIRSH[@]}" domcapabilities --virttype qemu --arch x86_64
  t_log "$suite ready after $((SECONDS - t0)) s"
  hook_section "$L"; t_log "$suite hook section done at $((SECONDS - t0)) s"
  proxy_section "$L"; t_log "$suite proxy section done at $((SECONDS - t0)) s"
  package_section "$L"; t_log "$suite package section done at $((SECONDS - t0)) s"
  t_eq "$L no domain of this suite is left" "" "$("${RVIRSH[@]}" list --all --name 2>/dev/null | grep -E "^($P|win)" | paste -sd' ' -)"
  cleanup_since "$mark"
  t_eq "$L nothing of the chroot is left mounted" "" "$(findmnt -rn -o TARGET | grep "^$R\(/\|$\)")"
  t_log "$suite finished in $((SECONDS - t0)) s"
done
VHOSTFIX_RELEASE=$(printf '%s; ' "${RAN[@]}")
VHOSTFIX_RELEASE=${VHOSTFIX_RELEASE%; }
t_log "finished in ${SECONDS}s"
t_done
