# vhostfix %preun: on erase ($1 = 0, not on upgrade) take away the hooks we
# installed (a hook somebody else put there is never touched), turn transparent
# mode off and stop the proxy.
if [ "$1" -eq 0 ]; then
  /usr/lib/vhostfix/libvirt-hooks remove || :
  # Transparent mode on: libvirt's own sockets come back before the proxy goes.
  on=0
  /usr/lib/vhostfix/transparent-mode status >/dev/null 2>&1 || on=$?
  if [ "$on" != 3 ]; then
    /usr/lib/vhostfix/transparent-mode disable || :
  fi
  if [ -d /run/systemd/system ]; then
    systemctl stop vhostfix-proxy.service vhostfix-proxy-ro.socket vhostfix-proxy.socket >/dev/null 2>&1 || :
  fi
  # What transparent mode recorded, and the proxy's runtime directory.
  rm -f /var/lib/vhostfix/transparent-mode
  rmdir /var/lib/vhostfix /run/vhostfix 2>/dev/null || :
fi
