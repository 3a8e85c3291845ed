#!/usr/bin/env bash
# The .rpm's scriptlets, really run: Debian's rpm installs the package into a
# scratch root (a copy of a cached debootstrap minbase root, so it has /bin/sh
# and the tools the scriptlets call) with `rpm --root DIR`, which runs %post and
# %preun chrooted into DIR. Checked: the hook link is made, an upgrade keeps it,
# erase takes it away, a foreign /etc/libvirt/hooks/qemu is never touched, and
# with an old libvirt (a stand-in `libvirtd --version` printing 4.5.0) the
# dispatcher is installed and removed again.
#
# --nodeps: the root's software was installed by dpkg, so its rpm database is
# empty and nothing there "provides" /bin/sh, /bin/bash or libc.so.6 although
# the files are present. What this proves and what it does not: README.md
# ("The .rpm's scriptlets").
#
# Environment: REL_CACHE (default /var/tmp/vhostfix-ci/rel; the base root is
# REL_CACHE/rpm-base). Root.
T_NAME=rpm-root.sh
. "$(dirname "$0")/../lib/common.sh"
need_root
system_lock
SECONDS=0
cd "$REPO" || exit 2

REL_CACHE=${REL_CACHE:-/var/tmp/vhostfix-ci/rel}
BASE=$REL_CACHE/rpm-base
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
RPM=target/generate-rpm/vhostfix-${version}-1.$(uname -m).rpm
LINK=/etc/libvirt/hooks/qemu.d/50-vhostfix
QH=/etc/libvirt/hooks/qemu

if [ ! -f "$RPM" ] || [ -n "$(find src hooks packaging Cargo.toml -newer "$RPM" -print -quit)" ]; then
  t_log "building the .rpm"
  if packaging/build-assets.sh >"$T_TMP/build.log" 2>&1 && cargo generate-rpm --payload-compress gzip >>"$T_TMP/build.log" 2>&1; then
    t_ok "the .rpm builds"
  else
    t_fail "the .rpm builds" "$(tail -n 20 "$T_TMP/build.log")"; t_done; exit 1
  fi
fi

# The cached base root (host's Debian release, minbase); rebuilt when missing.
if [ ! -e "$BASE/.vhostfix-ready" ]; then
  rm -rf --one-file-system "$BASE"
  mirror=$(sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n 1)
  [ -n "$mirror" ] || mirror=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  suite=$(. /etc/os-release && echo "$VERSION_CODENAME")
  t_log "creating the base root $BASE (debootstrap --variant=minbase $suite)"
  mkdir -p "$REL_CACHE"
  if debootstrap --variant=minbase "$suite" "$BASE" "$mirror" >"$T_TMP/debootstrap.log" 2>&1; then
    touch "$BASE/.vhostfix-ready"
    t_log "base root created after ${SECONDS}s"
  else
    t_fail "debootstrap of the base root" "$(tail -n 20 "$T_TMP/debootstrap.log")"; t_done; exit 1
  fi
fi
D=$T_TMP/root
cp -a "$BASE" "$D"
on_exit "rm -rf --one-file-system '$D'"
t_check "the scratch root has a shell" chroot "$D" /bin/sh -c true
r() { rpm --root "$D" "$@"; }
t_check "rpm --initdb in the scratch root" r --initdb

# A site's own qemu hook, which the package must never touch.
mkdir -p "$D/etc/libvirt/hooks"
printf '#!/bin/sh\n# site hook, not vhostfix'"'"'s\nexit 0\n' >"$D$QH"
chmod 0750 "$D$QH"
touch -d '2020-01-02 03:04:05' "$D$QH"
fingerprint() { echo "$(md5sum <"$D$QH") $(stat -c '%a %U:%G %Y %i' "$D$QH")"; }
foreign=$(fingerprint)

host_hooks=$(ls -lAR --time-style=+ /etc/libvirt/hooks 2>&1)
# 1. no libvirt in the root: %post makes the link (libvirt >= 6.5 assumed).
out=$(r -i --nodeps "$RPM" 2>&1); rc=$?
t_eq "rpm --root -i --nodeps succeeds" 0 "$rc"
t_contains "%post ran in the root and says where the hook went" "$out" "vhostfix: qemu hook: $LINK -> /usr/bin/vhostfix"
t_contains "%post checked the installed configuration" "$out" "configuration ok: /etc/vhostfix/vhostfix.toml"
t_eq "the hook link is made in the root" /usr/bin/vhostfix "$(readlink "$D$LINK")"
t_eq "the host's own /etc/libvirt/hooks is not touched" "$host_hooks" "$(ls -lAR --time-style=+ /etc/libvirt/hooks 2>&1)"
t_eq "rpm knows the package in the root" "vhostfix-$version-1" "$(r -q vhostfix 2>&1)"
t_eq "the foreign hooks/qemu is untouched by the install" "$foreign" "$(fingerprint)"
t_contains "the installed binary runs in the root" "$(chroot "$D" /usr/bin/vhostfix --version 2>&1)" "vhostfix $version"

out=$(r -U --replacepkgs --nodeps "$RPM" 2>&1); rc=$?
t_eq "rpm -U --replacepkgs (reinstall over itself) succeeds" 0 "$rc"
t_eq "... the hook link is still there (%preun does nothing when \$1 is 1)" /usr/bin/vhostfix "$(readlink "$D$LINK")"

out=$(r -e vhostfix 2>&1); rc=$?
t_eq "rpm --root -e succeeds" 0 "$rc"
t_check "%preun took the hook link away" test ! -e "$D$LINK" -a ! -L "$D$LINK"
t_check "... and the empty qemu.d" test ! -e "$D/etc/libvirt/hooks/qemu.d"
t_check "the binary is gone" test ! -e "$D/usr/bin/vhostfix"
t_eq "the foreign hooks/qemu is untouched by the erase" "$foreign" "$(fingerprint)"

# 2. a stand-in for an old libvirtd (4.5.0, no qemu.d): the dispatcher.
rm -f "$D$QH"
printf '#!/bin/sh\necho "libvirtd (libvirt) 4.5.0"\n' >"$D/usr/sbin/libvirtd"
chmod 0755 "$D/usr/sbin/libvirtd"
out=$(r -i --nodeps "$RPM" 2>&1); rc=$?
t_eq "simulated libvirt 4.5.0: rpm -i succeeds" 0 "$rc"
t_eq "simulated libvirt 4.5.0: %post installs the dispatcher as hooks/qemu" \
  /usr/lib/vhostfix/qemu-dispatcher "$(readlink "$D$QH")"
t_contains "simulated libvirt 4.5.0: ... and says so" "$out" "run by the dispatcher $QH"
out=$(r -e vhostfix 2>&1); rc=$?
t_eq "simulated libvirt 4.5.0: rpm -e succeeds" 0 "$rc"
t_check "simulated libvirt 4.5.0: %preun removes the dispatcher and the link" \
  test ! -L "$D$QH" -a ! -e "$D$QH" -a ! -L "$D$LINK"
t_eq "rpm's database in the root is empty again" "" "$(r -qa 2>&1)"

t_log "finished in ${SECONDS}s"
t_done
