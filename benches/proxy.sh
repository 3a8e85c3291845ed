#!/usr/bin/env bash
# Benchmark of `vhostfix proxy` against direct libvirt access and a plain relay
# (socat), in one run: a python3-libvirt loop of cheap calls and a 512 MiB
# stream (vol-upload into a dir pool). Root; real libvirtd (the system daemon,
# under the system test lock; or any daemon socket given as UPSTREAM with its
# URI as URI_BASE, e.g. a session daemon). Prints a Markdown table on stdout
# (figures for BENCHMARKS-proxy.md).
#   CALLS=1000 STREAM_MIB=512 ROUNDS=3 benches/proxy.sh
#   UPSTREAM=/run/user/1000/libvirt/libvirt-sock URI_BASE=qemu:///session benches/proxy.sh
# BASELINE=/path/to/other/vhostfix adds a fourth path, "baseline": the same
# proxy workload through another build (e.g. the previous commit's), started
# with BASELINE_ARGS (e.g. "--config poll.toml") and labelled BASELINE_NAME.
T_NAME=proxy-bench.sh
. "$(dirname "$0")/../tests/lib/common.sh"
need_root
UPSTREAM=${UPSTREAM:-/run/libvirt/libvirt-sock}
URI_BASE=${URI_BASE:-qemu:///system}
T_LOCK_FD=
if [ "$URI_BASE" = qemu:///system ] && [ "$UPSTREAM" = /run/libvirt/libvirt-sock ]; then
  system_lock
  libvirt_up >&2 || exit 1
fi
VIRSH=(virsh -q -c "$URI_BASE?socket=$UPSTREAM")
chmod 0755 "$T_TMP"
CALLS=${CALLS:-1000}
STREAM_MIB=${STREAM_MIB:-512}
ROUNDS=${ROUNDS:-3}
D=$T_TMP
PY=/usr/bin/python3

VHOSTFIX_LOG=stderr:warn "$VHOSTFIX" proxy --listen "$D/proxy-sock" --upstream "$UPSTREAM" 2>"$D/proxy.log" &
PP=$!
on_exit "kill $PP"
PATHS=(direct proxy socat)
if [ -n "${BASELINE:-}" ]; then
  # shellcheck disable=SC2086 # BASELINE_ARGS is a list of words
  VHOSTFIX_LOG=stderr:warn "$BASELINE" ${BASELINE_ARGS:-} proxy --listen "$D/baseline-sock" --upstream "$UPSTREAM" 2>"$D/baseline.log" &
  BP=$!
  on_exit "kill $BP"
  PATHS+=(baseline)
fi
socat "UNIX-LISTEN:$D/socat-sock,fork" "UNIX-CONNECT:$UPSTREAM" &
SP=$!
on_exit "kill $SP"
wait_for "[ -S $D/proxy-sock ] && [ -S $D/socat-sock ]" 10
[ -z "${BASELINE:-}" ] || wait_for "[ -S $D/baseline-sock ]" 10

DOM=vhfx-bench
cat >"$D/dom.xml" <<XML
<domain type='qemu'><name>$DOM</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>
XML
"${VIRSH[@]}" define "$D/dom.xml" >/dev/null
on_exit "${VIRSH[*]} undefine $DOM"
# The pool and the blob live in memory (tmpfs): on disk, write-back of the
# uploaded volume varied the direct upload time by +-20 % from round to round
# and hid the relay's own cost.
M=$(mktemp -d /dev/shm/vhfx-bench.XXXXXX)
on_exit "rm -rf $M"
mkdir -p "$M/pool"
chmod 0777 "$M/pool"
"${VIRSH[@]}" pool-create-as vhfx-bench-pool dir --target "$M/pool" >/dev/null
on_exit "${VIRSH[*]} pool-destroy vhfx-bench-pool"
[ "$STREAM_MIB" = 0 ] || head -c $((STREAM_MIB << 20)) /dev/urandom >"$M/blob"
chmod 0644 "$M/blob"

calls() { # URI -> seconds for CALLS iterations
  $PY - "$1" "$CALLS" "$DOM" <<'PYEOF'
import sys, time, libvirt
c = libvirt.open(sys.argv[1]); n = int(sys.argv[2])
for _ in range(20): c.lookupByName(sys.argv[3]).info()
t = time.perf_counter()
for _ in range(n): c.lookupByName(sys.argv[3]).info()
print(f"{time.perf_counter() - t:.4f}")
PYEOF
}
stream() { # URI -> seconds to upload the blob
  local uri=$1 vol=v$RANDOM
  if [ "$STREAM_MIB" = 0 ]; then echo 1; return; fi
  virsh -q -c "$uri" vol-create-as vhfx-bench-pool "$vol" "${STREAM_MIB}M" --format raw >/dev/null
  local t0 t1
  t0=$(date +%s.%N)
  virsh -q -c "$uri" vol-upload "$vol" "$M/blob" --pool vhfx-bench-pool
  t1=$(date +%s.%N)
  virsh -q -c "$uri" vol-delete "$vol" --pool vhfx-bench-pool >/dev/null
  echo "$t1 - $t0" | bc -l
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A U=([direct]="$URI_BASE?socket=$UPSTREAM" [proxy]="$URI_BASE?socket=$D/proxy-sock" [socat]="$URI_BASE?socket=$D/socat-sock" [baseline]="$URI_BASE?socket=$D/baseline-sock")
declare -A C S
for r in $(seq "$ROUNDS"); do
  for k in "${PATHS[@]}"; do
    C[$k]+="$(calls "${U[$k]}") "
    S[$k]+="$(stream "${U[$k]}") "
  done
done
printf '| path | %d calls (s, median of %d) | x direct | %d MiB upload (s) | MiB/s | x direct throughput |\n' "$CALLS" "$ROUNDS" "$STREAM_MIB"
printf '|---|---|---|---|---|---|\n'
cd=$(echo "${C[direct]}" | tr ' ' '\n' | grep . | median)
sd=$(echo "${S[direct]}" | tr ' ' '\n' | grep . | median)
for k in "${PATHS[@]}"; do
  c=$(echo "${C[$k]}" | tr ' ' '\n' | grep . | median)
  s=$(echo "${S[$k]}" | tr ' ' '\n' | grep . | median)
  label=$k
  [ "$k" = baseline ] && label=${BASELINE_NAME:-baseline}
  printf '| %s | %.3f | %.2f | %.2f | %.0f | %.2f |\n' "$label" "$c" "$(echo "$c / $cd" | bc -l)" "$s" \
    "$(echo "$STREAM_MIB / $s" | bc -l)" "$(echo "$sd / $s" | bc -l)"
done
cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$1/stat"; }
echo "CPU seconds used by the proxy process over all rounds: proxy $(cpu "$PP")${BP:+, baseline $(cpu "$BP")}" >&2
for k in "${PATHS[@]}"; do
  echo "raw $k: calls ${C[$k]}/ stream ${S[$k]}" >&2
done
