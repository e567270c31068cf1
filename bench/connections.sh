#!/usr/bin/env bash
# Memory of gengate holding 10,000 idle keep-alive connections, then 10,000
# open server-sent-event streams (loopback only).
#
#   bench/connections.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
N="${1:-10000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p gengate
BIN="$CARGO_TARGET_DIR/release/gengate"
ulimit -n "$(ulimit -Hn)"
WORK=$(mktemp -d)
trap 'kill $GPID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
KEY=$("$BIN" keys create --user conn --data-dir "$WORK/data" 2>/dev/null)
GENGATE_LOG__LEVEL=warn "$BIN" serve --data-dir "$WORK/data" --listen 127.0.0.1:0 > "$WORK/out" 2>"$WORK/err" & GPID=$!
URL=$(wait_url "$WORK/out")
echo "idle: $(rss $GPID)"
# Measure only once the client reports every connection open.
held() { for _ in $(seq 600); do grep -q held "$1" 2>/dev/null && break; sleep 0.1; done; cat "$1"; }
python3 bench/hold.py "$URL/healthz" "$N" 15 > "$WORK/ka" & HP=$!
held "$WORK/ka"; sleep 2; echo "$N keep-alive connections: $(rss $GPID)"; wait $HP
python3 bench/hold.py "$URL/v1/events" "$N" 15 "$KEY" > "$WORK/sse" & HP=$!
held "$WORK/sse"; sleep 2; echo "$N SSE streams: $(rss $GPID)"; wait $HP
