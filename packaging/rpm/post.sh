# vhostfix %post: check the configuration and put the qemu hook where the
# installed libvirt runs it (the link qemu.d/50-vhostfix, plus the dispatcher
# /etc/libvirt/hooks/qemu on libvirt < 6.5). Same on install and upgrade.
/usr/lib/vhostfix/libvirt-hooks install || :
