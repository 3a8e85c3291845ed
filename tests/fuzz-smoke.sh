#!/usr/bin/env bash
# Short fuzz run of the proxy's frame/XDR decoders, of its whole decision, and
# of the core's fast path against its tree path (fuzz/fuzz_targets/*.rs).
# Needs cargo-fuzz (`cargo install --locked cargo-fuzz`).
# FUZZ_SECONDS per target (default 20).
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-20}
# cargo-fuzz needs unstable compiler flags: the machine's one (stable) toolchain
# allows them with RUSTC_BOOTSTRAP=1, for these fuzzing builds only.
export RUSTC_BOOTSTRAP=1
fuzz=(cargo fuzz)
if ! "${fuzz[@]}" --version >/dev/null 2>&1; then
  echo "fuzz-smoke: cargo-fuzz is missing (cargo install --locked cargo-fuzz; .ci/run does)" >&2
  exit 1
fi
pass=0 fail=0
for t in frame decide analyze; do
  mkdir -p "fuzz/corpus/$t"
  # The core starts from the golden inputs.
  if [ "$t" = analyze ] && [ -z "$(ls -A fuzz/corpus/analyze)" ]; then
    cp tests/files/*.xml fuzz/corpus/analyze/
  fi
  dict=()
  [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
  if "${fuzz[@]}" run "$t" -- -max_total_time="$secs" -rss_limit_mb=1024 "${dict[@]}" >"/tmp/fuzz-$t.log" 2>&1; then
    pass=$((pass + 1)); echo "ok   fuzz $t: $(grep -o 'Done [0-9]* runs' "/tmp/fuzz-$t.log" | tail -1)"
  else
    fail=$((fail + 1)); echo "FAIL fuzz $t"; tail -30 "/tmp/fuzz-$t.log"
  fi
done
echo "fuzz-smoke: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
