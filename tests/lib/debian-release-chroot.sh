#!/bin/bash
# debian-release-chroot.sh (used by tests/lib/release.sh): a Debian release's libvirt in a chroot, next to (not instead of)
# the host's libvirtd, without systemd. Cache used by the tests: /var/tmp/vhostfix-ci/rel (REL_ROOT).
#
#   debian-release-chroot.sh SUITE create   debootstrap SUITE (bullseye|trixie|bookworm) and install libvirt
#   debian-release-chroot.sh SUITE start    mount, start virtlogd + libvirtd in the chroot (creates it if missing)
#   debian-release-chroot.sh SUITE stop     destroy its running guests, stop the two daemons (by the pids
#                               in the chroot's /run), unmount
#   debian-release-chroot.sh SUITE status   versions, pids, sockets, mounts
#
# Root: ${REL_ROOT:-/var/tmp/rel}/SUITE. Mirror: ${REL_MIRROR:-the host apt sources' Debian URI}.
# libvirtd's sockets: ROOT/SUITE/run/libvirt/libvirt-sock{,-ro} (a tmpfs on the chroot's /run),
# so from the host:  virsh -c "qemu:///system?socket=ROOT/SUITE/run/libvirt/libvirt-sock" ...
# and inside:        chroot ROOT/SUITE virsh -c qemu:///system ...
#
# What it changes in the chroot, and why (measured on libvirt 7.0, 9.0, 11.3):
# - /usr/sbin/policy-rc.d exits 101: packages start no daemon.
# - qemu.conf: namespaces = [ ]  (with libvirt's per-domain mount namespace every QEMU
#   with a pty serial fails in this chroot: "Failed to create PTY: No such file or directory").
# - libvirtd.conf: log_outputs to /var/log/libvirt/libvirtd.log (warnings and errors).
# - a private /dev (tmpfs + nodes, the host's devpts bound in): the host's /dev/kvm
#   keeps its owner and mode; the chroot's own /dev/kvm node is root:kvm 0660 (its kvm gid).
# It never touches the host's /run/libvirt, /etc/libvirt, /var/lib/libvirt or libvirtd.
# The host's network namespace is shared: do not start libvirt networks in the chroot.
set -eu
SUITE=${1:?usage: debian-release-chroot.sh SUITE create|start|stop|status}
ACTION=${2:-start}
ROOT=${REL_ROOT:-/var/tmp/rel}
R=$ROOT/$SUITE
host_uri=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -1)
[ -n "$host_uri" ] || host_uri=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
MIRROR=${REL_MIRROR:-$host_uri}
ENV=(/usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)

in_root() { chroot "$R" "${ENV[@]}" "$@"; }

create() {
  command -v debootstrap >/dev/null || apt-get install -y debootstrap
  [ -x "$R/bin/sh" ] || debootstrap --variant=minbase "$SUITE" "$R" "$MIRROR"
  printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
  chmod 0755 "$R/usr/sbin/policy-rc.d"
  mount_all
  # libsasl2-modules (the SCRAM plugin) and sasl2-bin (saslpasswd2): a SASL
  # libvirtd for tests/system/proxy-faults.sh
  local pkgs=(libvirt-daemon-system libvirt-clients qemu-system-x86 python3-libvirt procps libsasl2-modules sasl2-bin)
  # bullseye: libvirt-daemon-system needs -systemd or -sysv; -sysv avoids pulling systemd
  [ "$SUITE" = bullseye ] && pkgs+=(libvirt-daemon-system-sysv)
  in_root apt-get update
  in_root DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${pkgs[@]}"
  grep -q '^namespaces' "$R/etc/libvirt/qemu.conf" || echo 'namespaces = [ ]' >>"$R/etc/libvirt/qemu.conf"
  grep -q '^log_outputs' "$R/etc/libvirt/libvirtd.conf" ||
    echo 'log_outputs="3:file:/var/log/libvirt/libvirtd.log"' >>"$R/etc/libvirt/libvirtd.conf"
  # no default network autostart (it would create virbr0 in the host's network namespace)
  rm -f "$R/etc/libvirt/qemu/networks/autostart/default.xml"
  # the kvm group exists only now: give the chroot's /dev/kvm node to it
  chgrp "$(in_root getent group kvm | cut -d: -f3)" "$R/dev/kvm"
}

mount_all() {
  # / of the chroot must be a mount point (libvirt makes it a slave mount for QEMU)
  mountpoint -q "$R" || mount --bind "$R" "$R"
  mountpoint -q "$R/proc" || mount -t proc proc "$R/proc"
  mountpoint -q "$R/sys" || mount -t sysfs sysfs "$R/sys"
  if ! mountpoint -q "$R/dev"; then
    mount -t tmpfs -o mode=0755,size=64m reldev "$R/dev"
    mknod -m 666 "$R/dev/null" c 1 3; mknod -m 666 "$R/dev/zero" c 1 5
    mknod -m 666 "$R/dev/full" c 1 7; mknod -m 666 "$R/dev/random" c 1 8
    mknod -m 666 "$R/dev/urandom" c 1 9; mknod -m 666 "$R/dev/tty" c 5 0
    mkdir -p "$R/dev/net" "$R/dev/pts" "$R/dev/shm"
    mknod -m 666 "$R/dev/net/tun" c 10 200
    mknod -m 660 "$R/dev/kvm" c 10 232
    local kg
    kg=$(chroot "$R" getent group kvm | cut -d: -f3 || true)
    [ -n "$kg" ] && chgrp "$kg" "$R/dev/kvm"
    mount --bind /dev/pts "$R/dev/pts"
    mknod -m 666 "$R/dev/ptmx" c 5 2
    mount -t tmpfs -o mode=1777 relshm "$R/dev/shm"
    ln -sf /proc/self/fd "$R/dev/fd"
    ln -sf /proc/self/fd/0 "$R/dev/stdin"; ln -sf /proc/self/fd/1 "$R/dev/stdout"; ln -sf /proc/self/fd/2 "$R/dev/stderr"
  fi
  mountpoint -q "$R/run" || mount -t tmpfs -o mode=0755,size=256m relrun "$R/run"
  mkdir -p "$R/run/lock" "$R/run/libvirt" "$R/var/log/libvirt/qemu"
  # a directory for vhost-user sockets that QEMU (libvirt-qemu) can create
  install -d -m 0755 -o 64055 -g 64055 "$R/run/vhu"
}

umount_all() {
  local m
  for m in run dev/shm dev/pts dev sys proc ""; do
    if mountpoint -q "$R/$m"; then umount "$R/$m"; fi
  done
  if findmnt -rn -o TARGET | grep -q "^$R\(/\|$\)"; then
    echo "still mounted:"; findmnt -rn -o TARGET | grep "^$R"; return 1
  fi
}

alive() { [ -s "$R/run/$1.pid" ] && kill -0 "$(cat "$R/run/$1.pid")" 2>/dev/null; }

start() {
  [ -x "$R/usr/sbin/libvirtd" ] || create
  mount_all
  alive virtlogd || in_root virtlogd -d </dev/null >/dev/null 2>&1
  alive libvirtd || in_root libvirtd -d </dev/null >/dev/null 2>&1
  local i
  for i in $(seq 300); do
    [ -S "$R/run/libvirt/libvirt-sock" ] && in_root virsh -c qemu:///system version >/dev/null 2>&1 && break
    sleep 0.1
  done
  status
}

stop_pid() {
  local p=$1 i
  kill "$p" 2>/dev/null || return 0
  for i in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
}

stop() {
  local d
  if mountpoint -q "$R/run"; then
    # guests of this chroot keep /run busy (and would outlive libvirtd): destroy them
    if alive libvirtd; then
      for d in $(in_root virsh -c qemu:///system list --name 2>/dev/null); do
        echo "destroying running guest $d"
        in_root virsh -c qemu:///system destroy "$d" >/dev/null || true
      done
    fi
    for d in libvirtd virtlogd; do
      if alive "$d"; then stop_pid "$(cat "$R/run/$d.pid")"; fi
      rm -f "$R/run/$d.pid"
    done
  fi
  umount_all
}

status() {
  echo "$SUITE: $(in_root libvirtd --version 2>/dev/null), $(in_root qemu-system-x86_64 --version 2>/dev/null | head -n 1), $(in_root ldd --version 2>/dev/null | head -n 1)"
  local d
  for d in libvirtd virtlogd; do
    if alive "$d"; then echo "$d: pid $(cat "$R/run/$d.pid")"; else echo "$d: not running"; fi
  done
  ls "$R/run/libvirt" 2>/dev/null | grep sock || true
  findmnt -rn -o TARGET | grep "^$R" || true
}

case $ACTION in
create) create ;;
start) start ;;
stop) stop ;;
status) status ;;
*) echo "unknown action $ACTION" >&2; exit 2 ;;
esac
