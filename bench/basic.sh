#!/usr/bin/env bash
# Throughput of gengate's main paths on this machine, with wrk on the same box.
# Each figure is also given as a ratio to GET /healthz (no I/O, same server,
# same run), because absolute numbers on a shared machine drift.
#
#   bench/basic.sh [DURATION] [CONNECTIONS]      e.g. bench/basic.sh 10s 64
#
# Needs: wrk (apt-get install wrk), a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION="${1:-10s}"
CONNS="${2:-64}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET_DIR/release/gengate"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/gengate.toml" <<TOML
[server]
data_dir = "$WORK/data"
[log]
level = "warn"
[limits]
max_active = 0   # one user creates without pause: the server is measured, not a policy
[providers.sim]
kind = "sim"
concurrency = 64
latency = "1s..2s"
TOML
KEY=$("$BIN" keys create --user bench --config "$WORK/gengate.toml" 2>/dev/null)
"$BIN" serve --config "$WORK/gengate.toml" --listen 127.0.0.1:0 > "$WORK/out" 2>"$WORK/err" &
PID=$!
URL=$(wait_url "$WORK/out")
AUTH="Authorization: Bearer $KEY"

# One finished, public task to read.
ID=$(curl -s -X POST "$URL/v1/tasks" -H "$AUTH" -H 'Content-Type: application/json' \
  -d '{"model":"sim-image","input":{"prompt":"a fox"},"public":true}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
for _ in $(seq 100); do curl -s "$URL/v1/tasks/$ID" -H "$AUTH" | grep -q '"succeeded"' && break; sleep 0.1; done

rps() { awk '/Requests\/sec/ {print $2}'; }
p99() { awk '/ 99%/ {print $2}'; }
run() { # name, wrk args...
  local name=$1; shift
  local out; out=$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$@")
  printf '%-34s %10s req/s   p99 %8s\n' "$name" "$(echo "$out" | rps)" "$(echo "$out" | p99)" >&2
  echo "$out" | rps
}
echo "gengate $("$BIN" --version | cut -d' ' -f2), wrk -t2 -c$CONNS -d$DURATION, $(nproc) cores" >&2
BASE=$(run "GET /healthz (no I/O)" "$URL/healthz")
GET=$(run "GET /v1/tasks/{id} (auth)" -H "$AUTH" "$URL/v1/tasks/$ID")
GAL=$(run "GET /v1/gallery?limit=20" "$URL/v1/gallery?limit=20")
LIST=$(run "GET /v1/tasks?limit=20 (auth)" -H "$AUTH" "$URL/v1/tasks?limit=20")
POST=$(run "POST /v1/tasks (durable)" -H "$AUTH" -s bench/create.lua "$URL/v1/tasks")
ratio() { awk -v a="$1" -v b="$BASE" 'BEGIN {printf "%.1f%%", 100*a/b}'; }
echo "ratios to GET /healthz: task $(ratio "$GET"), gallery $(ratio "$GAL"), list $(ratio "$LIST"), create $(ratio "$POST")" >&2
echo "RSS after the run: $(rss $PID)" >&2
