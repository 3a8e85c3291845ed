#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/golden/property/black-box tests,
# then every system suite in tests/system/ (real libvirtd, QEMU, Open vSwitch,
# packages). System suites need root and the Debian packages .ci/run installs.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
step() {
  echo "== $*" >&2
  "$@" || failed+=("$*")
}

step cargo fmt --all -- --check
step cargo clippy --all-targets -- -D warnings
step cargo test
step cargo build --release
step bash tests/fuzz-smoke.sh
for suite in tests/system/*.sh; do
  [ -e "$suite" ] || continue
  step bash "$suite"
done

if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "all suites passed" >&2
