#!/usr/bin/env bash
# Benchmark of `vhostfix proxy` against direct libvirt access and a plain relay
# (socat), all in one run, round by round. Root; real libvirtd (the system
# daemon, under the system test lock; or any daemon socket given as UPSTREAM
# with its URI as URI_BASE, e.g. a session daemon). Prints Markdown tables on
# stdout (figures for BENCHMARKS-proxy.md), raw figures and the machine's load
# on stderr.
#
# Workloads (WORKLOADS, default all four):
#   calls     one python3-libvirt process with a connection on every path; in
#             each round every path in turn (the order rotates) runs CALLS
#             iterations of getLibVersion + numOfDomains (two RPCs each), after
#             50 warm-up iterations (LOOP=lookup: lookupByName(dom).info(),
#             the loop of the figures before 2026-12-07)
#   conc      CLIENTS python3-libvirt clients at once, CONC_CALLS iterations
#             each, timed from the moment all are connected to the last one done
#   upload    virsh vol-upload of a STREAM_MIB random file into a dir pool
#   download  virsh vol-download of that volume
# Pool and file live in tmpfs (/dev/shm): on disk, write-back varied the
# direct upload by +-20 % from round to round.
#
# Each table gives per path the median time, its range, the ratio of the
# medians to direct, the median (and quartiles) of the ratios within each
# round (paths measured moments apart share the machine's state, which on a
# shared machine varies more than the paths do), and the CPU time the proxy
# process used (utime + stime from /proc/PID/stat) during the workload, per
# RPC (calls, conc) or per MiB (streams). HOG=N runs N busy loops during the
# rounds (a host whose CPUs are busy with guests).
#
#   CALLS=2000 ROUNDS=7 benches/proxy.sh
#   BUILDS="old=/tmp/vhostfix-old;poll200=target/release/vhostfix --config poll.toml" benches/proxy.sh
#   UPSTREAM=/run/user/1000/libvirt/libvirt-sock URI_BASE=qemu:///session benches/proxy.sh
# BUILDS adds paths: `label=BINARY [ARGS...]` separated by `;`, each started
# as `BINARY ARGS proxy --listen ... --upstream ...`. BASELINE=BINARY (with
# BASELINE_ARGS, BASELINE_NAME) is one more such path.
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
CALLS=${CALLS:-2000}
CLIENTS=${CLIENTS:-20}
CONC_CALLS=${CONC_CALLS:-600}
STREAM_MIB=${STREAM_MIB:-256}
ROUNDS=${ROUNDS:-5}
WORKLOADS=${WORKLOADS:-calls conc upload download}
LOOP=${LOOP:-cheap}
HOG=${HOG:-0}
D=$T_TMP
PY=/usr/bin/python3

machine() { # what else runs: load, CPU pressure, the busiest processes over 1 s
  echo "load $(cut -d' ' -f1-3 /proc/loadavg); cpu pressure" \
    "$(awk '/^some/ {print $2}' /proc/pressure/cpu 2>/dev/null); busiest:" \
    "$(top -b -n 2 -d 1 -w 200 | awk '/^top -/ {n++} n == 2 && /^ *[0-9]+ / {print $9, $12}' |
      sort -rn | head -n 5 | awk '{printf "%s %s%%, ", $2, $1}')"
}
echo "before: $(machine)" >&2

# Paths: label -> socket; proxies: label -> pid.
declare -A SOCK PID
PATHS=(direct proxy socat)
SOCK[direct]=$UPSTREAM
# bg CMD...: starts CMD in the background without the lock's descriptor
# (see no_lock), as a process of its own: BG_PID is CMD's pid.
bg() {
  if [ -n "${T_LOCK_FD:-}" ]; then "$@" {T_LOCK_FD}>&- & else "$@" & fi
  BG_PID=$!
  on_exit "stop_pid $BG_PID"
}
start_proxy() { # LABEL BINARY [ARGS...]
  local label=$1 bin=$2
  shift 2
  SOCK[$label]=$D/sock-$label
  bg env VHOSTFIX_LOG=stderr:warn "$bin" "$@" proxy --listen "${SOCK[$label]}" \
    --upstream "$UPSTREAM" 2>"$D/$label.log"
  PID[$label]=$BG_PID
}
start_proxy proxy "$VHOSTFIX"
SOCK[socat]=$D/sock-socat
bg socat "UNIX-LISTEN:${SOCK[socat]},fork" "UNIX-CONNECT:$UPSTREAM"
if [ -n "${BASELINE:-}" ]; then
  BUILDS="${BUILDS:+$BUILDS;}${BASELINE_NAME:-baseline}=$BASELINE ${BASELINE_ARGS:-}"
fi
IFS=';' read -r -a extra <<<"${BUILDS:-}"
for b in "${extra[@]}"; do
  [ -n "$b" ] || continue
  label=${b%%=*}
  # shellcheck disable=SC2086 # the binary and its arguments are words
  start_proxy "$label" ${b#*=}
  PATHS+=("$label")
done
for k in "${PATHS[@]}"; do
  wait_for "[ -S ${SOCK[$k]} ]" 10 || { echo "no socket for $k" >&2; exit 1; }
done

DOM=vhfx-bench
cat >"$D/dom.xml" <<XML
<domain type='qemu'><name>$DOM</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>
XML
"${VIRSH[@]}" define "$D/dom.xml" >/dev/null
on_exit "${VIRSH[*]} undefine $DOM"
M=$(mktemp -d /dev/shm/vhfx-bench.XXXXXX)
on_exit "rm -rf $M"
mkdir -p "$M/pool"
chmod 0755 "$M"
chmod 0777 "$M/pool"
"${VIRSH[@]}" pool-create-as vhfx-bench-pool dir --target "$M/pool" >/dev/null || exit 1
on_exit "${VIRSH[*]} pool-destroy vhfx-bench-pool"
head -c $((STREAM_MIB << 20)) /dev/urandom >"$M/blob"
chmod 0644 "$M/blob"
"${VIRSH[@]}" vol-create-as vhfx-bench-pool down "${STREAM_MIB}M" --format raw >/dev/null || exit 1
"${VIRSH[@]}" vol-upload down "$M/blob" --pool vhfx-bench-pool || exit 1

cat >"$D/calls.py" <<'PYEOF'
# One client process with a connection on every path; in each round every
# path in turn (rotated) runs the loop. Prints per path: its label, the CPU
# ticks its proxy used during its loops (0 without a proxy), the seconds of
# each round.
import sys, time, libvirt
rounds, n, dom, loop = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
paths = [a.split("=", 2) for a in sys.argv[5:]]  # label=pid=uri
def ticks(pid):
    if pid == "-": return 0
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return int(v[11]) + int(v[12])
conns = []
for label, pid, uri in paths:
    c = libvirt.open(uri)
    def cheap(c=c):
        c.getLibVersion(); c.numOfDomains()
    def lookup(c=c):
        c.lookupByName(dom).info()
    conns.append((label, pid, cheap if loop == "cheap" else lookup))
for _, _, step in conns:
    for _ in range(50): step()
times = {l: [] for l, _, _ in paths}
cpu = {l: 0 for l, _, _ in paths}
for r in range(rounds):
    k = r % len(conns)
    for label, pid, step in conns[k:] + conns[:k]:
        c0 = ticks(pid)
        t = time.perf_counter()
        for _ in range(n): step()
        times[label].append(time.perf_counter() - t)
        cpu[label] += ticks(pid) - c0
for label, _, _ in paths:
    print(label, cpu[label], " ".join(f"{t:.4f}" for t in times[label]))
PYEOF
cat >"$D/conc.py" <<'PYEOF'
# CLIENTS processes, each with its own connection: all connect, then start
# together; prints the seconds from the start to the last one done.
import os, sys, time, libvirt
uri, clients, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ready_r, ready_w = os.pipe(); go_r, go_w = os.pipe(); done_r, done_w = os.pipe()
kids = []
for _ in range(clients):
    pid = os.fork()
    if pid == 0:
        c = libvirt.open(uri)
        c.getLibVersion()
        os.write(ready_w, b"r")
        os.read(go_r, 1)
        for _ in range(n):
            c.getLibVersion(); c.numOfDomains()
        os.write(done_w, f"{time.perf_counter():.6f}\n".encode().rjust(24))
        os._exit(0)
    kids.append(pid)
for _ in range(clients): os.read(ready_r, 1)
t0 = time.perf_counter()
os.write(go_w, b"g" * clients)
ends = [float(os.read(done_r, 24)) for _ in range(clients)]
for p in kids: os.waitpid(p, 0)
print(f"{max(ends) - t0:.4f}")
PYEOF

conc() { $PY "$D/conc.py" "$1" "$CLIENTS" "$CONC_CALLS"; }
upload() {
  local uri=$1 vol=v$RANDOM t0 t1
  virsh -q -c "$uri" vol-create-as vhfx-bench-pool "$vol" "${STREAM_MIB}M" --format raw >/dev/null
  t0=$(date +%s.%N)
  virsh -q -c "$uri" vol-upload "$vol" "$M/blob" --pool vhfx-bench-pool
  t1=$(date +%s.%N)
  virsh -q -c "$uri" vol-delete "$vol" --pool vhfx-bench-pool >/dev/null
  echo "$t1 - $t0" | bc -l
}
download() {
  local uri=$1 t0 t1
  t0=$(date +%s.%N)
  virsh -q -c "$uri" vol-download down "$M/out" --pool vhfx-bench-pool
  t1=$(date +%s.%N)
  rm -f "$M/out"
  echo "$t1 - $t0" | bc -l
}
ticks() { if [ -n "${PID[$1]:-}" ]; then awk '{print $14 + $15}' "/proc/${PID[$1]}/stat"; else echo 0; fi; }

HOGS=()
for _ in $(seq "$HOG"); do
  bg sh -c 'while :; do :; done'
  HOGS+=("$BG_PID")
done

declare -A T CPU
if [[ " $WORKLOADS " == *" calls "* ]]; then
  args=()
  for k in "${PATHS[@]}"; do args+=("$k=${PID[$k]:--}=$URI_BASE?socket=${SOCK[$k]}"); done
  while read -r k ticks times; do
    T[calls,$k]=$times
    CPU[calls,$k]=$ticks
  done < <($PY "$D/calls.py" "$ROUNDS" "$CALLS" "$DOM" "$LOOP" "${args[@]}")
fi
for r in $(seq "$ROUNDS"); do
  # Rotate the order of the paths from round to round.
  order=("${PATHS[@]:$(((r - 1) % ${#PATHS[@]}))}" "${PATHS[@]:0:$(((r - 1) % ${#PATHS[@]}))}")
  for w in $WORKLOADS; do
    [ "$w" = calls ] && continue
    for k in "${order[@]}"; do
      c0=$(ticks "$k")
      t=$($w "$URI_BASE?socket=${SOCK[$k]}")
      c1=$(ticks "$k")
      T[$w,$k]+="$t "
      CPU[$w,$k]+="$((c1 - c0)) "
    done
  done
done
for h in "${HOGS[@]}"; do kill "$h"; done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
lo() { tr ' ' '\n' | grep . | sort -g | head -n 1; }
hi() { tr ' ' '\n' | grep . | sort -g | tail -n 1; }
# paired "T1 T2.." "D1 D2..": the ratios Ti/Di of each round: median (q1-q3).
paired() {
  paste <(echo "$1" | tr ' ' '\n' | grep .) <(echo "$2" | tr ' ' '\n' | grep .) |
    awk '{print $1 / $2}' | sort -g |
    awk '{a[NR]=$1} END {q1=a[int((NR+3)/4)]; q3=a[int((3*NR+1)/4)]; printf "%.2f (%.2f-%.2f)", a[int((NR+1)/2)], q1, q3}'
}
# CPU ticks (1/100 s) over all rounds -> microseconds per unit.
per() { echo "$1" | tr ' ' '\n' | grep . | awk -v u="$2" '{s += $1} END {printf "%.1f", s * 10000 / u}'; }
for w in $WORKLOADS; do
  case $w in
    calls) what="$CALLS iterations ($LOOP), one client"; units=$((CALLS * 2 * ROUNDS)); unit="µs/RPC" ;;
    conc) what="$CLIENTS clients x $CONC_CALLS iterations"; units=$((CLIENTS * CONC_CALLS * 2 * ROUNDS)); unit="µs/RPC" ;;
    upload) what="$STREAM_MIB MiB vol-upload"; units=$((STREAM_MIB * ROUNDS)); unit="µs/MiB" ;;
    download) what="$STREAM_MIB MiB vol-download"; units=$((STREAM_MIB * ROUNDS)); unit="µs/MiB" ;;
  esac
  printf '\n%s (%s, median of %d rounds)\n\n' "$w" "$what" "$ROUNDS"
  printf '| path | s (median) | min-max | x direct | x direct, same round: median (quartiles) | proxy CPU %s |\n|---|---|---|---|---|---|\n' "$unit"
  base=$(echo "${T[$w,direct]}" | median)
  for k in "${PATHS[@]}"; do
    m=$(echo "${T[$w,$k]}" | median)
    cpu=-
    [ -n "${PID[$k]:-}" ] && cpu=$(per "${CPU[$w,$k]}" "$units")
    printf '| %s | %.3f | %.3f-%.3f | %.2f | %s | %s |\n' "$k" "$m" "$(echo "${T[$w,$k]}" | lo)" \
      "$(echo "${T[$w,$k]}" | hi)" "$(echo "$m / $base" | bc -l)" \
      "$(paired "${T[$w,$k]}" "${T[$w,direct]}")" "$cpu"
  done
  for k in "${PATHS[@]}"; do echo "raw $w $k: ${T[$w,$k]}${PID[$k]:+ / proxy CPU ticks: ${CPU[$w,$k]}}" >&2; done
done
echo "after: $(machine)" >&2
