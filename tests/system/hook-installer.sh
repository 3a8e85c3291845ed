#!/usr/bin/env bash
# The packages' hook installer (packaging/libvirt-hooks, run by the maintainer
# scripts) in a private hooks directory, for every libvirt generation: where
# the hook goes, when the dispatcher is installed, and that a hook we did not
# install is never changed or removed. Needs no root.
source "$(dirname "$0")/../lib/common.sh"

HELPER=$REPO/packaging/libvirt-hooks
H=$T_TMP/hooks
STATE=$T_TMP/state                     # VHOSTFIX_STATE_DIR: what install created
BIN=/usr/bin/vhostfix
DISPATCHER=/usr/lib/vhostfix/qemu-dispatcher

# run VERSION ACTION: sets OUT (stdout+stderr) and RC.
run() {
  OUT=$(VHOSTFIX_HOOKS_DIR=$H VHOSTFIX_STATE_DIR=$STATE VHOSTFIX_LIBVIRT_VERSION=$1 sh "$HELPER" "$2" 2>&1)
  RC=$?
}
fresh() { rm -rf "$H" "$STATE"; mkdir -p "$H"; }
target() { readlink "$1" 2>/dev/null || echo "(none)"; }

# --- libvirt >= 6.5: only the qemu.d link
for v in 6.5.0 9.0.0 10.10.0; do
  fresh
  run "$v" install
  t_eq "libvirt $v: install succeeds" 0 "$RC"
  t_eq "libvirt $v: qemu.d/50-vhostfix -> $BIN" "$BIN" "$(target "$H/qemu.d/50-vhostfix")"
  t_check "libvirt $v: no dispatcher (libvirt runs qemu.d itself)" test ! -e "$H/qemu" -a ! -L "$H/qemu"
  t_contains "libvirt $v: says where the hook went" "$OUT" "qemu hook: $H/qemu.d/50-vhostfix -> $BIN (libvirt $v runs qemu.d/ itself)"
done

# --- libvirt < 6.5: the link and the dispatcher
for v in 4.5.0 6.4.0 1.2.17; do
  fresh
  run "$v" install
  t_eq "libvirt $v: install succeeds" 0 "$RC"
  t_eq "libvirt $v: qemu.d/50-vhostfix -> $BIN" "$BIN" "$(target "$H/qemu.d/50-vhostfix")"
  t_eq "libvirt $v: dispatcher installed as qemu" "$DISPATCHER" "$(target "$H/qemu")"
  t_contains "libvirt $v: says the dispatcher runs the hook" "$OUT" "run by the dispatcher $H/qemu -> $DISPATCHER (libvirt $v has no qemu.d/)"
done

# Upgrade on an old host: running install again changes nothing.
before=$(ls -l --time-style=+ "$H" "$H/qemu.d")
run 4.5.0 install
t_eq "libvirt 4.5.0: install again keeps the hooks as they are" "$before" "$(ls -l --time-style=+ "$H" "$H/qemu.d")"

# libvirt upgraded to >= 6.5 underneath: our dispatcher would run qemu.d twice.
run 8.0.0 install
t_check "libvirt upgraded to 8.0.0: our dispatcher is removed" test ! -e "$H/qemu" -a ! -L "$H/qemu"
t_contains "libvirt upgraded to 8.0.0: and the operator is told why" "$OUT" "would have run every hook twice"
t_eq "libvirt upgraded to 8.0.0: the link stays" "$BIN" "$(target "$H/qemu.d/50-vhostfix")"

# Removal takes away what we installed, and the directory if it is left empty.
run 4.5.0 install
run 4.5.0 remove
t_eq "remove: exit 0" 0 "$RC"
t_check "remove: link, dispatcher and the empty qemu.d are gone" test -z "$(ls -A "$H")"

# The site's hook moved into qemu.d (as the install line suggests) stops running
# on an old libvirt when the dispatcher goes: removal says so.
fresh
mkdir -p "$H/qemu.d"
printf '#!/bin/sh\nexit 0\n' >"$H/qemu.d/10-site"
chmod 755 "$H/qemu.d/10-site"
run 4.5.0 install
run 4.5.0 remove
t_contains "remove on libvirt 4.5.0 names the qemu.d hooks that no longer run" "$OUT" \
  "so these hooks in $H/qemu.d no longer run: 10-site"
t_eq "and leaves them in place" "10-site" "$(ls -A "$H/qemu.d")"

# --- a foreign /etc/libvirt/hooks/qemu is never touched
for v in 4.5.0 9.0.0; do
  fresh
  printf '#!/bin/sh\n# the site hook\nexit 0\n' >"$H/qemu"
  chmod 750 "$H/qemu"
  sum=$(md5sum <"$H/qemu"); mode=$(stat -c %a "$H/qemu")
  run "$v" install
  t_eq "foreign qemu, libvirt $v: install succeeds" 0 "$RC"
  t_eq "foreign qemu, libvirt $v: unchanged by install" "$sum $mode" "$(md5sum <"$H/qemu") $(stat -c %a "$H/qemu")"
  t_eq "foreign qemu, libvirt $v: the link is installed" "$BIN" "$(target "$H/qemu.d/50-vhostfix")"
  if [ "$v" = 4.5.0 ]; then
    t_eq "foreign qemu, libvirt $v: exactly one line explains how to chain vhostfix" 1 \
      "$(grep -c "is not ours and was left untouched, so libvirt $v will not run vhostfix: move it to $H/qemu.d/10-site" <<<"$OUT")"
  else
    t_not_contains "foreign qemu, libvirt $v: nothing to chain (libvirt runs both)" "$OUT" "not ours"
  fi
  run "$v" remove
  t_eq "foreign qemu, libvirt $v: unchanged by remove" "$sum $mode" "$(md5sum <"$H/qemu") $(stat -c %a "$H/qemu")"
  t_check "foreign qemu, libvirt $v: our link is gone" test ! -e "$H/qemu.d/50-vhostfix" -a ! -L "$H/qemu.d/50-vhostfix"
done

# A foreign symlink as qemu (pointing elsewhere) is foreign too.
fresh
ln -s /opt/site/hook "$H/qemu"
run 4.5.0 install
run 4.5.0 remove
t_eq "a foreign qemu symlink survives install and remove" /opt/site/hook "$(target "$H/qemu")"

# A foreign 50-vhostfix in qemu.d is left alone (and said so).
fresh
mkdir -p "$H/qemu.d"
printf '#!/bin/sh\nexit 0\n' >"$H/qemu.d/50-vhostfix"
sum=$(md5sum <"$H/qemu.d/50-vhostfix")
run 9.0.0 install
t_contains "a foreign qemu.d/50-vhostfix is reported" "$OUT" "is not a link to $BIN; left untouched"
run 9.0.0 remove
t_eq "a foreign qemu.d/50-vhostfix survives install and remove" "$sum" "$(md5sum <"$H/qemu.d/50-vhostfix")"

# A qemu.d/ that existed before install stays after removal, even when empty
# (issue 10: removal deleted it); one that install created goes, with its record.
fresh
mkdir -p "$H/qemu.d"
run 9.0.0 install
t_check "pre-existing qemu.d: install records no creation" test ! -e "$STATE/created-qemu.d"
run 9.0.0 remove
t_check "pre-existing empty qemu.d survives install and remove" test -d "$H/qemu.d"
t_eq "pre-existing qemu.d: only our link is gone" "" "$(ls -A "$H/qemu.d")"
fresh
run 9.0.0 install
t_check "install records that it created qemu.d" test -f "$STATE/created-qemu.d"
run 9.0.0 install
t_check "a second install keeps the record" test -f "$STATE/created-qemu.d"
run 9.0.0 remove
t_check "remove takes away the qemu.d it created" test ! -e "$H/qemu.d"
t_check "and the record" test ! -e "$STATE/created-qemu.d"
# Created by install, then used by the site: it stays (not empty), record goes.
run 9.0.0 install
printf '#!/bin/sh\nexit 0\n' >"$H/qemu.d/20-site"
chmod 755 "$H/qemu.d/20-site"
run 9.0.0 remove
t_eq "a qemu.d we created but the site uses stays" "20-site" "$(ls -A "$H/qemu.d")"
run 9.0.0 install
t_check "a later install into the now site-owned qemu.d records nothing" test ! -e "$STATE/created-qemu.d"

# Other hooks in qemu.d stay, and so does the directory.
fresh
mkdir -p "$H/qemu.d"
printf '#!/bin/sh\nexit 0\n' >"$H/qemu.d/10-site"
chmod 755 "$H/qemu.d/10-site"
run 9.0.0 install
run 9.0.0 remove
t_eq "other qemu.d hooks survive install and remove" "10-site" "$(ls -A "$H/qemu.d")"

# --- no libvirt daemon installed: link only, and a note for old libvirt
fresh
run none install
t_eq "no libvirt: the link is installed" "$BIN" "$(target "$H/qemu.d/50-vhostfix")"
t_check "no libvirt: no dispatcher" test ! -e "$H/qemu" -a ! -L "$H/qemu"
t_contains "no libvirt: says what to do with an older libvirt" "$OUT" "With an older libvirt, run '/usr/lib/vhostfix/libvirt-hooks install'"

# --- status, and detection of the real daemon on this machine
fresh
run 4.5.0 install
run 4.5.0 status
t_contains "status names the dispatcher" "$OUT" "dispatcher: $H/qemu -> $DISPATCHER"
if command -v libvirtd >/dev/null; then
  want=$(libvirtd --version); want=${want##* }
  OUT=$(VHOSTFIX_HOOKS_DIR=$H VHOSTFIX_STATE_DIR=$STATE sh "$HELPER" status 2>&1)
  t_contains "the installed libvirt daemon's version is detected ($want)" "$OUT" "libvirt daemon: $want"
fi

t_done
