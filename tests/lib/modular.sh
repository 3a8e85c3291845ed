# libvirt's modular daemons for the system suites. Debian packages none of
# them (bookworm ships only libvirtd), but libvirt's own build makes them: this
# builds Debian 12's libvirt source (the upstream 9.0.0 tarball of its source
# package) once and caches the result under $MOD_CACHE (default
# /var/tmp/vhostfix-ci/modular), like the release chroots (release.sh).
# Source it; modular_reexec (below) must run before common.sh is sourced.
#
#   modular_ensure     build and install the daemons if the cache is missing
#                      or incomplete (a no-op otherwise); see modular_build
#   MOD_PREFIX         where they are: sbin/{virtqemud,virtproxyd,virtstoraged,
#                      virtlogd,virtlockd}, bin/{virsh,virt-admin},
#                      lib/systemd/system/*.{socket,service} (upstream's units)
#   MOD_ETC            the build's default /etc/libvirt files (virtqemud.conf...)
#   MOD_VERSION        the libvirt version built
#
# Cost from scratch on the project's 2-vCPU Debian 12 VM (measured twice,
# 2026-12-06/07, each time beside other work: a cargo install, then a cargo
# bench and an ansible suite; load 5-7): 167 s wall, 106 s CPU: apt source 3 s
# (9 MB), meson 18-19 s, ninja 117-137 s (547 steps, -O0), install under 1 s;
# 35 MB cached. The build dependencies took 14 s to install with apt when
# missing. With the cache complete, modular_ensure returns at once.
#
# The build uses libvirt's standard system paths (sysconfdir /etc,
# localstatedir /var, runstatedir /run) with binaries under the prefix, so the
# daemons behave as on a RHEL 9 host: virtqemud serves
# /run/libvirt/virtqemud-sock, reads /etc/libvirt/virtqemud.conf and runs
# /etc/libvirt/hooks/qemu.d/. Never start them in the machine's own mount
# namespace (they would share /etc/libvirt and /var/lib/libvirt with the
# host's libvirtd): tests/system/modular.sh runs them in a private mount
# namespace, tests/system/modular-units.sh in a systemd-nspawn container.

MOD_CACHE=${MOD_CACHE:-/var/tmp/vhostfix-ci/modular}
MOD_PREFIX=$MOD_CACHE/prefix
MOD_ETC=$MOD_CACHE/etc/libvirt
MOD_VERSION=9.0.0
# Bump when the recipe below changes: a cache made by another recipe is rebuilt.
MOD_RECIPE="libvirt $MOD_VERSION from Debian bookworm's source, recipe 1"
MOD_STAMP=$MOD_CACHE/.vhostfix-ready
MOD_DAEMONS="virtqemud virtproxyd virtstoraged virtlogd virtlockd"
# What the build needs beyond a C compiler (also in .ci/run's apt-get line).
MOD_BUILD_DEPS="meson ninja-build pkg-config gcc libc6-dev libxml2-dev libxml2-utils xsltproc
  libglib2.0-dev libgnutls28-dev libtirpc-dev rpcsvc-proto libyajl-dev"

mod_log() { printf '%s: %s\n' "${T_NAME:-modular}" "$*" >&2; }

# modular_complete: the cache holds every file the suites use, from this recipe.
modular_complete() {
  local f
  [ "$(cat "$MOD_STAMP" 2>/dev/null)" = "$MOD_RECIPE" ] || return 1
  for f in $MOD_DAEMONS; do [ -x "$MOD_PREFIX/sbin/$f" ] || return 1; done
  for f in virsh virt-admin; do [ -x "$MOD_PREFIX/bin/$f" ] || return 1; done
  for f in virtqemud.socket virtqemud-ro.socket virtqemud-admin.socket virtqemud.service \
    virtproxyd.socket virtproxyd.service; do
    [ -f "$MOD_PREFIX/lib/systemd/system/$f" ] || return 1
  done
  [ -f "$MOD_ETC/virtqemud.conf" ]
}

modular_ensure() {
  modular_complete && return 0
  local t0=$SECONDS
  mod_log "building libvirt $MOD_VERSION's modular daemons into $MOD_PREFIX (log: $MOD_CACHE.log)"
  if modular_build >"$MOD_CACHE.log" 2>&1; then
    mod_log "modular daemons built in $((SECONDS - t0)) s"
  else
    mod_log "building the modular daemons failed after $((SECONDS - t0)) s: $(tail -n 20 "$MOD_CACHE.log")"
    return 1
  fi
}

# modular_build: from scratch. Each step prints its wall time (kept in
# $MOD_CACHE.log). The cache is replaced only by a complete build.
modular_build() (
  set -eu
  local w a opts t
  # The build dependencies, from the machine's own apt sources.
  local missing=()
  for p in $MOD_BUILD_DEPS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    t=$SECONDS
    while fuser /var/lib/dpkg/lock-frontend >/dev/null 2>&1; do sleep 5; done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    echo "step: build dependencies (${missing[*]}) installed in $((SECONDS - t)) s"
  fi
  mkdir -p "$(dirname "$MOD_CACHE")"
  w=$(mktemp -d "$(dirname "$MOD_CACHE")/modular-build.XXXXXX")
  trap 'rm -rf "$w"' EXIT
  # The source through a private apt configuration: one deb-src line, its own
  # lists and cache, so the machine's apt setup is not touched.
  a=$w/apt
  mkdir -p "$a/lists/partial" "$a/cache/archives/partial"
  local mirror
  mirror=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n 1)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  echo "deb-src ${mirror:-http://deb.debian.org/debian} bookworm main" >"$a/sources.list"
  opts=(-o "Dir::Etc::sourcelist=$a/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$a/lists"
    -o "Dir::Cache=$a/cache" -o APT::Sandbox::User=root)
  t=$SECONDS
  apt-get "${opts[@]}" update -q
  (cd "$w" && apt-get "${opts[@]}" source --download-only -q libvirt)
  echo "step: source downloaded in $((SECONDS - t)) s: $(cd "$w" && ls libvirt_*.dsc)"
  tar -C "$w" -xf "$w/libvirt_$MOD_VERSION.orig.tar.xz"
  # Standard system paths, binaries under the prefix; every optional feature
  # off except what virtqemud, virtproxyd and virtstoraged need here (QEMU,
  # the remote driver, JSON for QMP, the directory storage backend for
  # vol-upload/download) and upstream's systemd units.
  t=$SECONDS
  meson setup "$w/build" "$w/libvirt-$MOD_VERSION" --prefix="$MOD_PREFIX" --sysconfdir=/etc \
    --localstatedir=/var -Drunstatedir=/run --buildtype=plain -Dauto_features=disabled \
    -Ddriver_qemu=enabled -Ddriver_remote=enabled -Ddriver_libvirtd=enabled -Dyajl=enabled \
    -Dstorage_dir=enabled -Dinit_script=systemd -Dqemu_user=libvirt-qemu -Dqemu_group=libvirt-qemu \
    -Ddocs=disabled -Dtests=disabled -Dnls=disabled
  echo "step: configured in $((SECONDS - t)) s"
  t=$SECONDS
  ninja -C "$w/build"
  echo "step: compiled in $((SECONDS - t)) s ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))"
  # Installed into a staging root: a plain install would write /etc/libvirt
  # and /var/lib/libvirt of this machine.
  t=$SECONDS
  DESTDIR=$w/stage meson install -C "$w/build" --no-rebuild >/dev/null
  rm -rf "$MOD_PREFIX.new" "$MOD_CACHE.new"
  mkdir -p "$MOD_CACHE.new/etc"
  mv "$w/stage$MOD_PREFIX" "$MOD_CACHE.new/prefix"
  mv "$w/stage/etc/libvirt" "$MOD_CACHE.new/etc/libvirt"
  echo "$MOD_RECIPE" >"$MOD_CACHE.new/.vhostfix-ready"
  rm -rf "$MOD_CACHE"
  mv "$MOD_CACHE.new" "$MOD_CACHE"
  echo "step: installed in $((SECONDS - t)) s; $(du -sh "$MOD_CACHE" | cut -f1) in $MOD_CACHE"
)

# --- running them without systemd, in a private mount namespace ---------------
#
# A suite calls modular_reexec first (before common.sh): it runs again under
# `unshare --mount` with VHOSTFIX_PRIVATE_NS=1, so every mount it makes is its
# own and goes away with it. modular_private_root then gives the daemons a
# machine of their own where they use libvirt's standard paths:
#   - /etc, /usr, /var/lib and /var/log: overlays of the machine's own with a
#     tmpfs upper layer (the suite installs /usr/bin/vhostfix and the rest
#     where the packages put them, and none of it reaches the machine);
#   - /etc/libvirt (the build's default configuration), /run/libvirt,
#     /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt: empty tmpfs, so
#     the host's libvirtd, its sockets and its guests are neither seen nor
#     touched;
#   - /usr/sbin/virtqemud etc.: links to the build, as installed by RHEL 9's
#     packages.
# Processes are not isolated: the suite stops exactly the daemons it started.
modular_reexec() { # "$0" "$@"
  [ "${VHOSTFIX_PRIVATE_NS:-}" = 1 ] && return 0
  exec unshare --mount --propagation private env VHOSTFIX_PRIVATE_NS=1 bash "$@"
}

modular_private_root() {
  local u=$T_TMP/ns d
  if [ "${VHOSTFIX_PRIVATE_NS:-}" != 1 ]; then
    t_log "modular_private_root: not in a private mount namespace (call modular_reexec first)"
    return 1
  fi
  if [ ! -d /run/libvirt ]; then
    mkdir -m 0755 /run/libvirt || return 1
    on_exit "rmdir /run/libvirt"
  fi
  mkdir -p "$u" && mount -t tmpfs -o mode=0755 vhostfix-modular "$u" || return 1
  on_exit "umount -l $u"
  for d in etc usr var/lib var/log; do
    mkdir -p "$u/$d.up" "$u/$d.work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$u/$d.up,workdir=$u/$d.work" "/$d" || return 1
  done
  for d in /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
    mkdir -p "$d" && mount -t tmpfs -o mode=0755 vhostfix-modular "$d" || return 1
  done
  # /run/libvirt is a directory of the machine's: free it before it goes.
  on_exit "umount -l /run/libvirt"
  cp -a "$MOD_ETC/." /etc/libvirt/
  mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt/qemu
  for d in $MOD_DAEMONS; do ln -sfn "$MOD_PREFIX/sbin/$d" "/usr/sbin/$d"; done
}

# modular_start DAEMON [ARGS...]: start DAEMON of the build with --daemon (as
# /usr/sbin/DAEMON); it is stopped on exit by its pidfile, so a daemon that
# transparent mode restarted with the same command line is stopped too.
# virtlogd and virtlockd keep their pidfiles in the private /run/libvirt (the
# host's own virtlogd has /run/virtlogd.pid).
modular_start() {
  local d=$1 pf
  shift
  case $d in
    virtlogd | virtlockd) pf=/run/libvirt/$d.pid && set -- -p "$pf" "$@" ;;
    *) pf=/run/$d.pid ;;
  esac
  no_lock "/usr/sbin/$d" -d "$@" || return 1
  wait_for "[ -s $pf ]" 10 || return 1
  on_exit "stop_pidfile $pf $d"
}

# stop_pidfile FILE NAME: stop the process FILE names if it is NAME.
stop_pidfile() {
  local p
  p=$(cat "$1" 2>/dev/null) || return 0
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] && stop_pid "$p"
  return 0
}
