#!/usr/bin/env bash
# The .rpm's scriptlets, really run: Debian's rpm installs the package into a
# scratch root (a copy of the cached Debian 11 chroot of tests/lib/release.sh:
# /bin/sh, the tools the scriptlets call, libvirt 7.0.0's libvirtd binary) with
# `rpm --root DIR`, which runs %post and %preun chrooted into DIR. Checked: the hook link is made (and %post says
# that libvirt, not running there, could not list the guests), an upgrade keeps it,
# erase takes it away, a foreign /etc/libvirt/hooks/qemu is never touched, and
# with an old libvirt (a stand-in `libvirtd --version` printing 4.5.0) the
# dispatcher is installed and removed again.
#
# --nodeps: the root's software was installed by dpkg, so its rpm database is
# empty and nothing there "provides" /bin/sh, /bin/bash or libc.so.6 although
# the files are present. What this proves and what it does not: README.md
# ("The .rpm's scriptlets").
#
# Environment: REL_CACHE (default /var/tmp/vhostfix-ci/rel). Root.
T_NAME=rpm-root.sh
. "$(dirname "$0")/../lib/common.sh"
need_root
system_lock
SECONDS=0
cd "$REPO" || exit 2

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
RPM=target/generate-rpm/vhostfix-${version}-1.$(uname -m).rpm
LINK=/etc/libvirt/hooks/qemu.d/50-vhostfix
QH=/etc/libvirt/hooks/qemu

if [ ! -f "$RPM" ] || [ -n "$(find src hooks packaging integrations docs Cargo.toml -newer "$RPM" -print -quit)" ]; then
  t_log "building the .rpm"
  if packaging/build-assets.sh >"$T_TMP/build.log" 2>&1 && cargo generate-rpm --payload-compress gzip >>"$T_TMP/build.log" 2>&1; then
    t_ok "the .rpm builds"
  else
    t_fail "the .rpm builds" "$(tail -n 20 "$T_TMP/build.log")"; t_done; exit 1
  fi
fi

# The scratch root: a copy of release-matrix.sh's cached Debian 11 root (a
# Debian userland with a shell and a real libvirtd 7.0.0 binary, not running).
. "$REPO/tests/lib/release.sh"
release_ensure bullseye || { t_fail "the cached Debian 11 root exists or can be made"; t_done; exit 1; }
if findmnt -rn -o TARGET | grep -q "^$R\(/\|$\)"; then
  t_fail "the cached root $R is not in use (nothing mounted)"; t_done; exit 1
fi
D=$T_TMP/root
cp -a "$R" "$D"
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
# 1. libvirt 7.0.0 in the root: %post makes the qemu.d link only.
out=$(r -i --nodeps "$RPM" 2>&1); rc=$?
t_eq "rpm --root -i --nodeps succeeds" 0 "$rc"
t_contains "%post ran in the root, found its libvirtd 7.0.0 and says where the hook went" "$out" \
  "vhostfix: qemu hook: $LINK -> /usr/bin/vhostfix (libvirt 7.0.0 runs qemu.d/ itself)"
t_contains "%post checked the installed configuration" "$out" "configuration ok: /etc/vhostfix/vhostfix.toml"
t_eq "%post says in one line that libvirt is not running (none runs in the root), so no guest was checked" 1 \
  "$(grep -cxF "vhostfix: libvirt is not running (no socket in /run/libvirt), so the defined guests were not checked; once it runs, 'vhostfix audit --next-start' lists the defined guests the hook will refuse or warn about at their next start" <<<"$out")"
t_eq "the hook link is made in the root" /usr/bin/vhostfix "$(readlink "$D$LINK")"
t_eq "the host's own /etc/libvirt/hooks is not touched" "$host_hooks" "$(ls -lAR --time-style=+ /etc/libvirt/hooks 2>&1)"
t_eq "rpm knows the package in the root" "vhostfix-$version-1.$(uname -m)" "$(r -q vhostfix 2>&1)"
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
# 3. simulated libvirt 4.5.0 with a foreign hooks/qemu: left untouched, one line says so.
printf '#!/bin/sh\n# site hook, not vhostfix'"'"'s\nexit 0\n' >"$D$QH"
chmod 0750 "$D$QH"
touch -d '2020-01-02 03:04:05' "$D$QH"
foreign=$(fingerprint)
out=$(r -i --nodeps "$RPM" 2>&1); rc=$?
t_eq "simulated libvirt 4.5.0, foreign hooks/qemu: rpm -i succeeds" 0 "$rc"
t_eq "simulated libvirt 4.5.0, foreign hooks/qemu: untouched" "$foreign" "$(fingerprint)"
t_contains "simulated libvirt 4.5.0, foreign hooks/qemu: %post says it was left alone" "$out" \
  "vhostfix: $QH is not ours and was left untouched, so libvirt 4.5.0 will not run vhostfix"
out=$(r -e vhostfix 2>&1)
t_eq "simulated libvirt 4.5.0, foreign hooks/qemu: untouched by the erase" "$foreign" "$(fingerprint)"
t_eq "rpm's database in the root is empty again" "" "$(r -qa 2>&1)"

VHOSTFIX_RELEASE="a scratch root copied from the Debian 11 chroot, with the host's $(rpm --version)"
t_log "finished in ${SECONDS}s"
t_done
