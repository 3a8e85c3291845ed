# vhostfix %preun: on erase ($1 = 0, not on upgrade) take away the hooks we
# installed; a hook somebody else put there is never touched.
if [ "$1" -eq 0 ]; then
  /usr/lib/vhostfix/libvirt-hooks remove || :
  if [ -d /run/systemd/system ]; then
    systemctl stop vhostfix-proxy.service >/dev/null 2>&1 || :
  fi
fi
