#!/usr/bin/env bash
# 100,000 tasks in flight at a slow mock provider: gengate's memory, and the
# CPU it spends following them (polling), measured over 30 s once all are in.
#
#   bench/inflight.sh [N] [POLL_MAX]        e.g. bench/inflight.sh 100000 30s
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N="${1:-100000}"
POLL_MAX="${2:-30s}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p gengate
BIN="$CARGO_TARGET_DIR/release/gengate"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BIN" mock-provider --kind sim --listen 127.0.0.1:0 --latency 1800s --concurrency $((N * 2)) > "$WORK/mock.out" 2>/dev/null & MPID=$!; PIDS+=($MPID)
MOCK=$(wait_url "$WORK/mock.out")
cat > "$WORK/gengate.toml" <<TOML
[server]
data_dir = "$WORK/data"
[log]
level = "warn"
[limits]
max_active = 0   # one user creates without pause: the server is measured, not a policy
[dispatch]
poll_max = "$POLL_MAX"
[providers.sim]
kind = "sim"
base_url = "$MOCK"
concurrency = $N
TOML
KEY=$("$BIN" keys create --user flight --admin --config "$WORK/gengate.toml" 2>/dev/null)
"$BIN" serve --config "$WORK/gengate.toml" --listen 127.0.0.1:0 > "$WORK/g.out" 2>"$WORK/g.err" & GPID=$!; PIDS+=($GPID)
URL=$(wait_url "$WORK/g.out")
AUTH="Authorization: Bearer $KEY"

start=$(date +%s)
python3 bench/create.py "$URL" "$KEY" "$N" 16
in_flight() { curl -s -H "$AUTH" "$URL/v1/admin/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["providers"][0]["in_flight"])'; }
for _ in $(seq 600); do [ "$(in_flight)" -ge "$N" ] && break; sleep 0.5; done
echo "$(in_flight) tasks in flight after $(( $(date +%s) - start )) s"
ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
polls() { curl -s "$MOCK/_mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("polls", 0))'; }
sleep 5
t0=$(ticks $GPID); m0=$(ticks $MPID); s0=$(date +%s.%N); p0=$(polls)
sleep 30
t1=$(ticks $GPID); m1=$(ticks $MPID); s1=$(date +%s.%N); p1=$(polls)
echo "polls: $(( (p1 - p0) / 30 ))/s"
hz=$(getconf CLK_TCK)
awk -v a="$t0" -v b="$t1" -v c="$m0" -v d="$m1" -v s="$s0" -v e="$s1" -v hz="$hz" \
  'BEGIN {printf "following them: gengate %.2f cores, mock provider %.2f cores (over %.0f s)\n", (b-a)/hz/(e-s), (d-c)/hz/(e-s), e-s}'
echo "gengate RSS with $N in flight: $(rss $GPID)"
