#!/usr/bin/env bash
# Whole-process timings and peak memory of `vhostfix filter` (see BENCHMARKS.md).
#
#   cargo build --release && benches/process.sh [OUTDIR]
#
# * time: hyperfine (no shell, warmup), output through a pipe, on the 3.3 KB
#   Windows domain (benches/data/win2019.xml) and on the 5.1 MB generated one
#   (benches/gen_domain.py): `vhostfix filter` against `cat` (the floor: read
#   the file, write it out) and against benches/filter_et.py (the same job in
#   Python's ElementTree);
# * the whole process as a pipeline stage on the 5.1 MB domain,
#   `vhostfix filter --quiet < big.xml > /dev/null`, against libxml2's parse
#   of the same file, `xmllint --noout big.xml` (the work libvirt itself does
#   on it); hyperfine's shell mode (for the redirections), whose start-up it
#   measures and subtracts;
# * memory: max RSS from /usr/bin/time -v on the 5.1 MB domain, vhostfix and cat.
#
# Environment: VHOSTFIX (binary, default target/release/vhostfix), BASELINE
# (an earlier build, timed in the same runs as `baseline`), PYTHON
# (default /usr/bin/python3, Debian's, which a libvirt host has; else the real
# interpreter behind `python3`, so that no pyenv-style shim script is timed),
# RUNS (memory repetitions, default 5).
# Results (hyperfine JSON/Markdown, generated input) go to OUTDIR
# (default: a new temporary directory, printed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

VHOSTFIX=${VHOSTFIX:-target/release/vhostfix}
if [ -z "${PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3; else PYTHON=$(python3 -c 'import sys; print(sys.executable)'); fi
fi
RUNS=${RUNS:-5}
OUT=${1:-$(mktemp -d /tmp/vhostfix-bench.XXXXXX)}
mkdir -p "$OUT"

for tool in hyperfine /usr/bin/time "$PYTHON" xmllint; do
  command -v "$tool" >/dev/null || { echo "process.sh: $tool is missing (Debian: apt-get install hyperfine time python3 libxml2-utils)" >&2; exit 2; }
done
[ -x "$VHOSTFIX" ] || { echo "process.sh: $VHOSTFIX not built; run cargo build --release" >&2; exit 2; }
BASELINE=${BASELINE:-}
[ -z "$BASELINE" ] || [ -x "$BASELINE" ] || { echo "process.sh: BASELINE=$BASELINE is not an executable" >&2; exit 2; }

SMALL=benches/data/win2019.xml
BIG=$OUT/big.xml
"$PYTHON" benches/gen_domain.py -o "$BIG"
# An empty configuration: built-in defaults, whatever /etc/vhostfix holds.
CONF=$OUT/empty.toml
: >"$CONF"

# Sanity: both filters produce the same document (modulo quoting and whitespace).
for f in "$SMALL" "$BIG"; do
  "$VHOSTFIX" --config "$CONF" filter -q "$f" >"$OUT/out.vhostfix.xml"
  "$PYTHON" benches/filter_et.py "$f" >"$OUT/out.et.xml"
  cmp -s "$f" "$OUT/out.vhostfix.xml" && { echo "process.sh: vhostfix changed nothing in $f" >&2; exit 1; }
  "$PYTHON" - "$OUT/out.vhostfix.xml" "$OUT/out.et.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
a, b = (ET.canonicalize(from_file=p, strip_text=True) for p in sys.argv[1:3])
sys.exit(0 if a == b else "process.sh: vhostfix and filter_et.py disagree")
EOF
done
rm -f "$OUT/out.vhostfix.xml" "$OUT/out.et.xml"

echo "== machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1); $(date -u +%FT%TZ)"
echo "== $("$PYTHON" -V), hyperfine $(hyperfine --version | cut -d' ' -f2), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== vhostfix $(git rev-parse --short HEAD 2>/dev/null || echo '?')${BASELINE:+, baseline $BASELINE}, input sizes: $(wc -c <"$SMALL") B, $(wc -c <"$BIG") B"

bench() { # name, warmup, min runs, input file
  local name=$1 warmup=$2 runs=$3 f=$4
  local base=()
  [ -z "$BASELINE" ] || base=(-n baseline "$BASELINE --config $CONF filter $f")
  echo "== time: $name"
  hyperfine -N --warmup "$warmup" --min-runs "$runs" --output=pipe \
    --export-json "$OUT/$name.json" --export-markdown "$OUT/$name.md" \
    -n cat "cat $f" \
    -n vhostfix "$VHOSTFIX --config $CONF filter $f" \
    "${base[@]}" \
    -n filter_et.py "$PYTHON benches/filter_et.py $f"
}
bench small 50 300 "$SMALL"
bench big 3 20 "$BIG"

echo "== time: stage (5.1 MB on stdin, output to /dev/null) against xmllint --noout"
stage=(-n vhostfix "$VHOSTFIX --config $CONF filter --quiet < $BIG > /dev/null")
[ -z "$BASELINE" ] || stage+=(-n baseline "$BASELINE --config $CONF filter --quiet < $BIG > /dev/null")
hyperfine --warmup 3 --min-runs 30 \
  --export-json "$OUT/stage.json" --export-markdown "$OUT/stage.md" \
  "${stage[@]}" -n xmllint "xmllint --noout $BIG"

echo "== ratios (median; mean in brackets)"
"$PYTHON" - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
for name in ("small", "big"):
    res = {x["command"]: x for x in json.load(open(f"{out}/{name}.json"))["results"]}
    def fig(stat):
        cat, vf, et = (res[c][stat] for c in ("cat", "vhostfix", "filter_et.py"))
        return cat, vf, et, vf / cat, et / vf
    m, a = fig("median"), fig("mean")
    print(f"{name}: cat {m[0]*1e3:.2f} ms, vhostfix {m[1]*1e3:.2f} ms, filter_et.py {m[2]*1e3:.2f} ms; "
          f"vhostfix/cat = {m[3]:.2f}x [{a[3]:.2f}x], filter_et.py/vhostfix = {m[4]:.1f}x [{a[4]:.1f}x]")
    if "baseline" in res:
        b, bm = res["baseline"]["median"], res["baseline"]["mean"]
        print(f"{name}: baseline {b*1e3:.2f} ms; baseline/cat = {b/res['cat']['median']:.2f}x [{bm/res['cat']['mean']:.2f}x]")
res = {x["command"]: x for x in json.load(open(f"{out}/stage.json"))["results"]}
x = res["xmllint"]
for c in ("vhostfix", "baseline"):
    if c in res:
        print(f"stage: {c} {res[c]['median']*1e3:.2f} ms, xmllint {x['median']*1e3:.2f} ms; "
              f"{c}/xmllint = {res[c]['median']/x['median']:.3f}x [{res[c]['mean']/x['mean']:.3f}x]")
EOF

echo "== peak memory (max RSS, KiB, $RUNS runs each) on $(wc -c <"$BIG") B"
maxrss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | sed -n 's/.*Maximum resident set size (kbytes): //p'; }
for cmd in cat vhostfix ${BASELINE:+baseline}; do
  case $cmd in
    cat) argv=(cat "$BIG") ;;
    vhostfix) argv=("$VHOSTFIX" --config "$CONF" filter -q "$BIG") ;;
    baseline) argv=("$BASELINE" --config "$CONF" filter -q "$BIG") ;;
  esac
  all=()
  for _ in $(seq "$RUNS"); do all+=("$(maxrss "${argv[@]}")"); done
  printf '%s: %s\n' "$cmd" "${all[*]}"
done
size=$(wc -c <"$BIG")
echo "budget (4 x input + 8 MiB): $(( (4 * size + 8 * 1048576) / 1024 )) KiB"
echo "== results in $OUT"
