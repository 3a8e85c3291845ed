# vhostfix %postun: after erase ($1 = 0) systemd forgets the proxy's units.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
fi
