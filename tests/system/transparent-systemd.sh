#!/usr/bin/env bash
# Transparent mode (packaging/transparent-mode) under a real systemd, for the
# daemon layouts systemd-units.sh (Debian's socket-activated libvirtd) does
# not cover. The container of tests/lib/nspawn.sh boots this machine's own
# root (overlay) with libvirt's modular units as upstream installs them
# (virtqemud.socket, -ro, -admin, virtproxyd.socket..., from the source build
# of tests/lib/modular.sh) next to Debian's libvirtd units:
#   1. both libvirtd's and virtqemud's sockets enabled: enable refuses, says
#      which daemons and why, and changes nothing;
#   2. a RHEL 9 layout (libvirtd's units disabled; virtqemud, virtproxyd,
#      virtstoraged socket-activated): enable puts the proxy in front of
#      virtqemud; plain, read-only and virtproxyd's (legacy) clients go
#      through it, virtproxyd's as uid 0; virt-admin works; a reboot; disable
#      gives every socket back; dpkg -r and the rpm's %preun too;
#   3. libvirtd without socket units (libvirt < 5.6 such as CentOS 7, whose
#      libvirtd.service makes its own sockets; simulated by masking Debian's
#      libvirtd sockets): unix_sock_dir in libvirtd.conf, the proxy on its
#      socket units, virt-admin through the link tmpfiles.d makes, a reboot
#      (/run/libvirt/real and the link exist before libvirtd starts), disable
#      restores libvirtd.conf byte for byte.
# Guests are only defined, never started (the container has no /dev/kvm);
# tests/system/modular.sh and transparent-conf.sh keep a running guest across
# the restarts. Root; holds the system test lock; about two minutes.
T_NAME=transparent-systemd.sh
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/nspawn.sh"
. "$(dirname "$0")/../lib/modular.sh"
need_root
ct_require
[ -e /lib/systemd/system/libvirtd.socket ] || ct_skip "libvirtd.socket not installed (libvirt-daemon-system)"
[ -x "$VHOSTFIX" ] || { echo "$T_NAME: $VHOSTFIX missing: run cargo build --release" >&2; exit 2; }
system_lock
t_log "holding the system test lock after $SECONDS s"
modular_ensure || { t_fail "the modular daemons are built (see $MOD_CACHE.log)"; t_done; exit 1; }

D=$T_TMP
NAME=win2019-vhu
TM=/usr/lib/vhostfix/transparent-mode
ct_prepare layouts
ct_install_packaged
# The modular units as upstream installs them, and the daemons where RHEL 9
# has them; their default configuration files.
for u in "$MOD_PREFIX"/lib/systemd/system/{virtqemud,virtproxyd,virtstoraged}*; do
  install -m 0644 "$u" "$ROOT$UNITS/"
done
for d in virtqemud virtproxyd virtstoraged; do
  ln -sfn "$MOD_PREFIX/sbin/$d" "$ROOT/usr/sbin/$d"
  cp -n "$MOD_ETC/$d.conf" "$ROOT/etc/libvirt/"
done
HOST_BEFORE=$(host_state)

boot_first
VHOSTFIX_RELEASE="virtqemud (libvirt $MOD_VERSION, built from Debian 12's source) and Debian 12's libvirtd under systemd $(in_ct systemctl --version | awk 'NR == 1 {print $2}') (nspawn)"

journal() { in_ct journalctl -q --no-pager -o cat -b -u vhostfix-proxy.service; }
stat_of() { in_ct vhostfix proxy --stats 2>/dev/null | awk -v k="$1" '$1 == k {print $2}'; }
listen() { in_ct systemctl show -p Listen --value "$@" | grep . | paste -sd'|'; }
our_files() { in_sh 'ls /etc/systemd/system/*.d/50-vhostfix-transparent.conf /etc/tmpfiles.d/vhostfix-transparent.conf /run/libvirt/real /var/lib/vhostfix/transparent 2>/dev/null'; }
# define_seed LABEL URI REAL: the seed defined by a plain client through the
# proxy; the daemon, read at its moved socket REAL, stored virtio.
define_seed() {
  local n0 n1 out
  n0=$(stat_of calls_rewritten)
  out=$(in_ct virsh -c "$2" define /root/windows-vhostuser.xml 2>&1)
  t_contains "$1: virsh -c $2 define of the seed is accepted" "$out" "Domain '$NAME' defined"
  n1=$(stat_of calls_rewritten)
  t_eq "$1: ... it went through the proxy (calls_rewritten +1)" "$((${n0:-0} + 1))" "$n1"
  [ -n "$n1" ] || t_log "vhostfix proxy --stats said: $(in_ct vhostfix proxy --stats 2>&1 | tail -n 3)" \
    "/run/vhostfix: $(in_ct ls -la /run/vhostfix 2>&1)"
  t_contains "$1: ... the daemon stored virtio" \
    "$(in_ct virsh -c "qemu:///system?socket=$3" dumpxml "$NAME" 2>&1)" "<model type='virtio'/>"
  in_ct virsh -q -c "$2" undefine "$NAME" >/dev/null 2>&1
}
# enable_ok LABEL MESSAGE: transparent-mode enable succeeds and says MESSAGE.
enable_ok() {
  local out rc
  out=$(in_ct "$TM" enable 2>&1)
  rc=$?
  t_eq "transparent-mode enable ($1) succeeds" 0 "$rc"
  [ "$rc" = 0 ] || t_log "enable said: $out"
  t_contains "... and says where the sockets went" "$out" "$2"
}

# --- 1. libvirtd's and virtqemud's sockets both enabled ---------------------------
t_check "virtqemud's sockets enable next to Debian's libvirtd" \
  in_ct systemctl enable --now virtqemud.socket virtqemud-ro.socket virtqemud-admin.socket
t_eq "both listen" "active active" "$(in_ct systemctl is-active libvirtd.socket virtqemud.socket | paste -sd' ')"
out=$(in_ct "$TM" enable 2>&1)
t_eq "transparent-mode enable refuses (exit 2)" 2 "$?"
t_contains "... naming both daemons and the socket clients pick" "$out" \
  "both libvirtd (socket) and virtqemud (socket) are in use: qemu:///system clients connect to /run/libvirt/virtqemud-sock while it exists (libvirt's client prefers it), and clients of /run/libvirt/libvirt-sock reach libvirtd, which manages the same guests"
t_contains "... and what to do" "$out" "systemctl disable --now libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket"
t_eq "... and changes nothing" "3|" "$(in_ct "$TM" status >/dev/null 2>&1; echo "$?|$(our_files)")"
# What it says is what libvirt's client does: plain virsh reaches virtqemud
# (whose unit then stops libvirtd: Conflicts=libvirtd.service).
in_ct systemctl stop virtqemud.service >/dev/null 2>&1
in_ct virsh -q -c qemu:///system version >/dev/null 2>&1
t_eq "(plain virsh -c qemu:///system socket-activates virtqemud, not libvirtd)" "active inactive" \
  "$(in_ct systemctl is-active virtqemud.service libvirtd.service | paste -sd' ')"

# --- 2. the RHEL 9 layout -------------------------------------------------------------
in_ct systemctl disable --now libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket >/dev/null 2>&1
t_check "virtproxyd's and virtstoraged's sockets enabled (as on RHEL 9)" \
  in_ct systemctl enable --now virtproxyd.socket virtproxyd-ro.socket virtproxyd-admin.socket \
  virtstoraged.socket virtstoraged-ro.socket virtstoraged-admin.socket
t_eq "libvirtd is off, virtqemud and virtproxyd listen" "inactive inactive active active" \
  "$(in_ct systemctl is-active libvirtd.service libvirtd.socket virtqemud.socket virtproxyd.socket | paste -sd' ')"
t_contains "plain virsh is served by virtqemud (socket-activated)" \
  "$(in_ct virsh -c qemu:///system version 2>&1; in_ct systemctl is-active virtqemud.service)" "active"
out=$(in_ct virsh -c qemu:///system define /root/windows-vhostuser.xml 2>&1)
t_contains "virtqemud refuses the seed by itself" "$out" "vhostuser requires the virtio-net* frontend"

enable_ok "RHEL 9 layout" \
  "enabled: virtqemud listens in /run/libvirt/real, vhostfix-proxy owns /run/libvirt/virtqemud-sock and /run/libvirt/virtqemud-sock-ro"
check_modular() { # LABEL
  local l=$1 out vp
  out=$(in_ct "$TM" status 2>&1)
  t_eq "$l: status exits 0" 0 "$?"
  t_contains "$l: status says on" "$out" "transparent mode: on (virtqemud in /run/libvirt/real; vhostfix-proxy on /run/libvirt/virtqemud-sock and /run/libvirt/virtqemud-sock-ro)"
  t_eq "$l: virtqemud's rw and ro sockets listen in /run/libvirt/real, its admin socket stays" \
    "/run/libvirt/real/virtqemud-sock (Stream)|/run/libvirt/real/virtqemud-sock-ro (Stream)|/run/libvirt/virtqemud-admin-sock (Stream)" \
    "$(listen virtqemud.socket virtqemud-ro.socket virtqemud-admin.socket)"
  t_eq "$l: the proxy listens at virtqemud's paths" \
    "/run/libvirt/virtqemud-sock (Stream)|/run/libvirt/virtqemud-sock-ro (Stream)" \
    "$(listen vhostfix-proxy.socket vhostfix-proxy-ro.socket)"
  t_eq "$l: virtproxyd keeps libvirt-sock" "/run/libvirt/libvirt-sock (Stream)" "$(listen virtproxyd.socket)"
  define_seed "$l" qemu:///system /run/libvirt/real/virtqemud-sock
  t_contains "$l: virsh -r goes through the proxy's read-only socket" \
    "$(in_ct virsh -r -c qemu:///system define /root/windows-vhostuser.xml 2>&1)" "read only"
  define_seed "$l" "qemu:///system?mode=legacy" /run/libvirt/real/virtqemud-sock
  vp=$(in_ct systemctl show -p MainPID --value virtproxyd.service)
  t_contains "$l: ... virtproxyd's connection reached the proxy as uid 0 with virtproxyd's pid (its log)" \
    "$(journal | grep "proc=DOMAIN_DEFINE_XML domain='$NAME'" | tail -n 1)" "uid=0 pid=$vp proc=DOMAIN_DEFINE_XML"
  t_check "$l: virt-admin -c virtqemud:///system works" in_ct virt-admin -c virtqemud:///system srv-list
  t_check "$l: virt-admin -c virtproxyd:///system works" in_ct virt-admin -c libvirtd:///system srv-list
}
check_modular "RHEL 9 layout"
if reboot_container; then
  t_ok "the container reboots"
  check_modular "after reboot"
else
  t_fail "the container reboots" "nspawn exit status $REBOOT_RC" "$(nspawn_log)"
fi
check_direct_modular() { # LABEL
  local l=$1
  t_eq "$l: virtqemud's sockets are back at their paths" \
    "/run/libvirt/virtqemud-sock (Stream)|/run/libvirt/virtqemud-sock-ro (Stream)|/run/libvirt/virtqemud-admin-sock (Stream)" \
    "$(listen virtqemud.socket virtqemud-ro.socket virtqemud-admin.socket)"
  t_eq "$l: the proxy is not running" inactive "$(in_ct systemctl is-active vhostfix-proxy.service)"
  t_contains "$l: plain virsh reaches virtqemud itself (it refuses the seed)" \
    "$(in_ct virsh -c qemu:///system define /root/windows-vhostuser.xml 2>&1)" "vhostuser requires the virtio-net* frontend"
  t_contains "$l: ... so do virtproxyd's clients" \
    "$(in_ct virsh -c 'qemu:///system?mode=legacy' define /root/windows-vhostuser.xml 2>&1)" "vhostuser requires the virtio-net* frontend"
  t_check "$l: virt-admin" in_ct virt-admin -c virtqemud:///system srv-list
  t_eq "$l: no file of transparent mode is left" "" "$(our_files)"
}
out=$(in_ct "$TM" disable 2>&1)
t_eq "transparent-mode disable succeeds" "0|transparent-mode: disabled: virtqemud listens on its own sockets in /run/libvirt again" "$?|$out"
check_direct_modular "after disable"

if [ -f "$ROOT/root/vhostfix.deb" ]; then
  out=$(in_ct dpkg -i --force-confdef --force-confold /root/vhostfix.deb 2>&1)
  t_eq "the .deb installs" 0 "$?"
  t_check "transparent-mode enable from the package" in_ct "$TM" enable
  out=$(in_ct dpkg -r vhostfix 2>&1)
  t_eq "dpkg -r vhostfix in transparent mode succeeds" 0 "$?"
  t_contains "... and gave virtqemud its sockets back" "$out" "disabled: virtqemud listens on its own sockets in /run/libvirt again"
  check_direct_modular "after dpkg -r"
else
  t_fail "the .deb to install (cargo-deb: see .ci/run)" "$DEB missing"
fi
# The files again, as an rpm installs them (dpkg -r took them away), and
# what its %post does: /run/vhostfix for the proxy's admin socket.
install_proxy_files
install -D -m 0644 "$REPO/packaging/vhostfix.toml" "$ROOT/etc/vhostfix/vhostfix.toml"
in_ct systemctl daemon-reload
in_ct systemd-tmpfiles --create /usr/lib/tmpfiles.d/vhostfix.conf
t_check "transparent-mode enable (rpm layout)" in_ct "$TM" enable
out=$(in_ct sh /root/preun.sh 0 2>&1)
t_eq "the rpm's %preun (erase) succeeds" 0 "$?"
t_contains "... and gave virtqemud its sockets back" "$out" "disabled: virtqemud listens on its own sockets in /run/libvirt again"
check_direct_modular "after the rpm's %preun"

# --- 3. libvirtd without socket units -------------------------------------------------
# The package's files stay; its /run/vhostfix (for the proxy's admin socket)
# went with the %preun above: made again as the rpm's %post makes it.
in_ct systemd-tmpfiles --create /usr/lib/tmpfiles.d/vhostfix.conf
in_ct systemctl disable --now virtqemud.socket virtqemud-ro.socket virtqemud-admin.socket virtqemud.service \
  virtproxyd.socket virtproxyd-ro.socket virtproxyd-admin.socket >/dev/null 2>&1
# Upstream's virtqemud-ro.socket (unlike virtqemud.socket) has no
# RemoveOnStop=yes: its stale path would keep drawing `virsh -r` (libvirt's
# client prefers virtqemud-sock-ro whenever it exists). An operator leaving
# the modular daemons removes it too.
in_ct rm -f /run/libvirt/virtqemud-sock-ro /run/libvirt/virtqemud-admin-sock
in_ct systemctl mask libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd-tcp.socket libvirtd-tls.socket >/dev/null 2>&1
# As CentOS 7's libvirtd.service: no --timeout (nothing would start it again).
in_sh 'printf "LIBVIRTD_ARGS=\"\"\n" >/etc/default/libvirtd'
t_check "libvirtd.service starts without its socket units" in_ct systemctl enable --now libvirtd.service
t_eq "libvirtd made its own sockets" "socket socket socket" \
  "$(in_ct stat -c %F /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro /run/libvirt/libvirt-admin-sock | cut -d' ' -f1 | paste -sd' ')"
in_ct cp -p /etc/libvirt/libvirtd.conf /root/libvirtd.conf.before
CONF_STAT=$(in_ct stat -c '%a %U:%G %i' /etc/libvirt/libvirtd.conf)
enable_ok "libvirtd.service, no socket units" \
  "enabled: libvirtd listens in /run/libvirt/real (unix_sock_dir in /etc/libvirt/libvirtd.conf), vhostfix-proxy owns /run/libvirt/libvirt-sock and /run/libvirt/libvirt-sock-ro"
check_conf() { # LABEL
  local l=$1 out
  out=$(in_ct "$TM" status 2>&1)
  t_eq "$l: status exits 0" 0 "$?"
  t_contains "$l: status says on" "$out" "transparent mode: on (libvirtd in /run/libvirt/real via unix_sock_dir in /etc/libvirt/libvirtd.conf"
  t_eq "$l: libvirtd's sockets, admin too, are in /run/libvirt/real (0700)" "700 socket socket socket" \
    "$(in_sh 'cd /run/libvirt/real && stat -c %a . | tr "\n" " " && stat -c %F libvirt-sock libvirt-sock-ro libvirt-admin-sock | cut -d" " -f1 | paste -sd" "')"
  t_eq "$l: the proxy's sockets listen at libvirt's paths" \
    "/run/libvirt/libvirt-sock (Stream)|/run/libvirt/libvirt-sock-ro (Stream)" "$(listen vhostfix-proxy.socket vhostfix-proxy-ro.socket)"
  define_seed "$l" qemu:///system /run/libvirt/real/libvirt-sock
  t_contains "$l: virsh -r goes through the proxy's read-only socket" \
    "$(in_ct virsh -r -c qemu:///system define /root/windows-vhostuser.xml 2>&1)" "read only"
  t_check "$l: virt-admin -c libvirtd:///system works (the admin socket moved too)" in_ct virt-admin -c libvirtd:///system srv-list
  t_eq "$l: ... through the link" "/run/libvirt/real/libvirt-admin-sock" "$(in_ct readlink /run/libvirt/libvirt-admin-sock)"
}
check_conf "libvirtd.service"
if reboot_container; then
  t_ok "the container reboots"
  t_eq "after reboot: libvirtd.service started (its unix_sock_dir and the link existed before it)" active \
    "$(in_ct systemctl is-active libvirtd.service)"
  check_conf "after reboot"
else
  t_fail "the container reboots" "nspawn exit status $REBOOT_RC" "$(nspawn_log)"
fi
out=$(in_ct "$TM" disable 2>&1)
t_eq "transparent-mode disable succeeds" \
  "0|transparent-mode: disabled: libvirtd listens on its own sockets in /run/libvirt again (/etc/libvirt/libvirtd.conf restored)" "$?|$out"
t_check "libvirtd.conf is restored byte for byte" in_ct cmp /root/libvirtd.conf.before /etc/libvirt/libvirtd.conf
t_eq "... with its mode, owner and inode" "$CONF_STAT" "$(in_ct stat -c '%a %U:%G %i' /etc/libvirt/libvirtd.conf)"
t_eq "libvirtd's own sockets are back, the admin one too" "socket socket socket" \
  "$(in_ct stat -c %F /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro /run/libvirt/libvirt-admin-sock | cut -d' ' -f1 | paste -sd' ')"
t_contains "plain virsh reaches libvirtd itself (it refuses the seed)" \
  "$(in_ct virsh -c qemu:///system define /root/windows-vhostuser.xml 2>&1)" "vhostuser requires the virtio-net* frontend"
t_eq "the proxy is not running; no file of transparent mode is left" "inactive|" \
  "$(in_ct systemctl is-active vhostfix-proxy.service)|$(our_files)"

if [ "$T_FAIL" -gt 0 ] && [ -n "$LEADER" ]; then
  in_ct journalctl -q --no-pager -b -u vhostfix-proxy.service -u 'virtqemud*' -u 'libvirtd*' >"$D/journal.txt" 2>&1
  t_log "journal of the container:"
  tail -60 "$D/journal.txt" >&2
fi
stop_container
t_eq "the host's libvirt sockets, libvirtd, /etc and /usr are as before" "$HOST_BEFORE" "$(host_state)"
t_log "done after $SECONDS s"
t_done
