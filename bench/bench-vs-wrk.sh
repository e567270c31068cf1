#!/usr/bin/env bash
# How close `gengate bench` comes to wrk: both drive the bare hyper server
# (bench/hyper-ref) with the same connections and threads, alternately, in
# the same run, ROUNDS times each; prints each run, the ratio of the
# means, the median of the rounds' ratios (the machine may be shared) and
# the CPU each tool spends per request. The issue asks for at least 90 %.
#
#   bench/bench-vs-wrk.sh [DURATION] [CONNECTIONS] [ROUNDS]   e.g. bench/bench-vs-wrk.sh 10s 64 3
#
# Needs: wrk (apt-get install wrk), GNU time (/usr/bin/time), bc, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION="${1:-10s}"
CONNS="${2:-64}"
ROUNDS="${3:-3}"
THREADS="$(nproc)"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p gengate -p hyper-ref
# Wherever cargo put them (the target dir may be set per worktree).
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET_DIR/release/gengate"
REF="$TARGET_DIR/release/hyper-ref"

WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$REF" 127.0.0.1:0 > "$WORK/ref.out" & PIDS+=($!)
URL=$(wait_url "$WORK/ref.out")/

echo "$(nproc) cores; $CONNS connections, $THREADS threads, $DURATION per run, $ROUNDS rounds, target hyper-ref" >&2
WRK=() GG=() WCPU=() GCPU=()
# CPU each tool spends per request (user + system), from /usr/bin/time: a
# second view of efficiency that neighbours' load disturbs less.
cpu_us() { awk -v n="$2" '{printf "%.2f", ($1 + $2) * 1e6 / n}' "$1"; }
for round in $(seq "$ROUNDS"); do
  /usr/bin/time -f "%U %S" -o "$WORK/wt" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "$URL" > "$WORK/w"
  w=$(awk '/Requests\/sec/ {print $2}' "$WORK/w")
  wc=$(cpu_us "$WORK/wt" "$(awk '/requests in/ {print $1}' "$WORK/w")")
  /usr/bin/time -f "%U %S" -o "$WORK/gt" "$BIN" bench --target "$URL" -c "$CONNS" --threads "$THREADS" -d "$DURATION" --json > "$WORK/g"
  g=$(python3 -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["rps"], 2))' "$WORK/g")
  gc=$(cpu_us "$WORK/gt" "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["requests"])' "$WORK/g")")
  printf 'round %d   wrk %8.0f req/s %5.2f us CPU/req   gengate bench %8.0f req/s %5.2f us CPU/req   %5.1f %%\n' \
    "$round" "$w" "$wc" "$g" "$gc" "$(echo "100 * $g / $w" | bc -l)" >&2
  WRK+=("$w") GG+=("$g") WCPU+=("$wc") GCPU+=("$gc")
done
python3 - "${WRK[*]}" "${GG[*]}" "${WCPU[*]}" "${GCPU[*]}" <<'PY'
import sys
w = [float(x) for x in sys.argv[1].split()]
g = [float(x) for x in sys.argv[2].split()]
wc = [float(x) for x in sys.argv[3].split()]
gc = [float(x) for x in sys.argv[4].split()]
mw, mg = sum(w) / len(w), sum(g) / len(g)
print(f"mean: wrk {mw:,.0f} req/s, gengate bench {mg:,.0f} req/s: {100 * mg / mw:.1f} % of wrk")
# Each round's pair ran back to back; the median of their ratios resists a
# neighbour's burst of work landing on one side of one pair.
r = sorted(b / a for a, b in zip(w, g))
mid = len(r) // 2
median = r[mid] if len(r) % 2 else (r[mid - 1] + r[mid]) / 2
print(f"median of the rounds' ratios: {100 * median:.1f} %")
print(f"CPU per request: wrk {sum(wc) / len(wc):.2f} us, gengate bench {sum(gc) / len(gc):.2f} us")
PY
