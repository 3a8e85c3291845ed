#!/usr/bin/env bash
# Create the cached release chroots (tests/lib/release.sh) ahead of the suites
# that use them, or check that they are complete. .ci/run starts this in the
# background while it builds the cargo tools: on a fresh machine the chroots
# take minutes, mostly downloads. The suites create a missing root themselves,
# so a failure here only costs time later; it is reported, not fatal.
T_NAME=release-prepare.sh
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/release.sh"
need_root
status=0
for suite in ${VHOSTFIX_RELEASES:-bullseye trixie}; do
  t0=$SECONDS
  if release_ensure "$suite"; then
    t_log "$suite ready in $R after $((SECONDS - t0)) s"
  else
    t_log "$suite could not be prepared; release-matrix.sh will try again"
    status=1
  fi
done
exit $status
