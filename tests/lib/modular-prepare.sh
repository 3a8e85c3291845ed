#!/usr/bin/env bash
# Build the cached modular libvirt daemons (tests/lib/modular.sh) ahead of the
# suites that use them, or check that the cache is complete (then it does
# nothing). .ci/run starts this in the background while it builds the cargo
# tools: from scratch it takes minutes, mostly compiling. The suites build a
# missing cache themselves, so a failure here only costs time later; it is
# reported, not fatal.
T_NAME=modular-prepare.sh
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/modular.sh"
need_root
t0=$SECONDS
if modular_complete; then
  t_log "the modular daemons are cached in $MOD_PREFIX: nothing to do"
elif modular_ensure; then
  t_log "modular daemons ready in $MOD_PREFIX after $((SECONDS - t0)) s:"
  grep '^step:' "$MOD_CACHE.log" | sed 's/^/  /' >&2
else
  t_log "the modular daemons could not be built; modular.sh will try again"
  exit 1
fi
