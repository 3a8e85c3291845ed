# vhostfix %post: check the configuration and put the qemu hook where the
# installed libvirt runs it (the link qemu.d/50-vhostfix, plus the dispatcher
# /etc/libvirt/hooks/qemu on libvirt < 6.5). Same on install and upgrade.
/usr/lib/vhostfix/libvirt-hooks install || :
# /run/vhostfix (tmpfiles.d/vhostfix.conf makes it at boot) and the units,
# the generator's output included, as of this version.
if [ -d /run/systemd/system ]; then
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/vhostfix.conf >/dev/null 2>&1 || :
  systemctl daemon-reload >/dev/null 2>&1 || :
fi
