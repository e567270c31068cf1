#!/usr/bin/env bash
# How close `gengate bench` comes to wrk: both drive the bare hyper server
# (bench/hyper-ref) with the same connections and threads, alternately, in
# the same run, ROUNDS times each; prints each run and the ratio of the
# means. The issue asks for at least 90 %.
#
#   bench/bench-vs-wrk.sh [DURATION] [CONNECTIONS] [ROUNDS]   e.g. bench/bench-vs-wrk.sh 10s 64 3
#
# Needs: wrk (apt-get install wrk).
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
WRK=() GG=()
for round in $(seq "$ROUNDS"); do
  w=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "$URL" | awk '/Requests\/sec/ {print $2}')
  g=$("$BIN" bench --target "$URL" -c "$CONNS" --threads "$THREADS" -d "$DURATION" --json | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["rps"], 2))')
  printf 'round %d   wrk %10.0f req/s   gengate bench %10.0f req/s   %5.1f %%\n' "$round" "$w" "$g" "$(echo "100 * $g / $w" | bc -l)" >&2
  WRK+=("$w") GG+=("$g")
done
python3 - "${WRK[*]}" "${GG[*]}" <<'PY'
import sys
w = [float(x) for x in sys.argv[1].split()]
g = [float(x) for x in sys.argv[2].split()]
mw, mg = sum(w) / len(w), sum(g) / len(g)
print(f"mean: wrk {mw:,.0f} req/s, gengate bench {mg:,.0f} req/s: {100 * mg / mw:.1f} % of wrk")
PY
