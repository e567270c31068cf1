#!/usr/bin/env bash
# The read-path benchmark: gengate's hot routes against a bare hyper server
# answering a fixed ~350-byte JSON body (bench/hyper-ref), measured in the same
# run with the same load generator, on a store holding 100,000 tasks.
#
#   bench/read-path.sh [DURATION] [CONNECTIONS]      e.g. bench/read-path.sh 10s 256
#
# Needs: wrk and sqlite3 (apt-get install wrk sqlite3), curl.
# Prints req/s, p99 and the ratio to the reference for each route, bytes on
# the wire per response (headers included) plain and compressed with what a
# 3 Mbps link carries of each, and gengate's memory.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION="${1:-10s}"
CONNS="${2:-256}"
SEED="${SEED_TASKS:-100000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p gengate -p hyper-ref
BIN="$CARGO_TARGET_DIR/release/gengate"
REF="$CARGO_TARGET_DIR/release/hyper-ref"
for tool in wrk sqlite3 curl; do command -v $tool >/dev/null || { echo "needs $tool" >&2; exit 1; }; done

WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true


"$REF" 127.0.0.1:0 > "$WORK/ref.out" & PIDS+=($!)
REF_URL=$(wait_url "$WORK/ref.out")

cat > "$WORK/gengate.toml" <<TOML
[server]
data_dir = "$WORK/data"
[log]
level = "warn"
[limits]
max_active = 0   # one user creates without pause: the server is measured, not a policy
TOML
KEY=$("$BIN" keys create --user bench --config "$WORK/gengate.toml" 2>/dev/null)
# Seed finished public tasks straight into the store (the API would spend the
# run creating them). Same shape as tasks gengate makes.
sqlite3 "$WORK/data/gengate.db" <<SQL
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $SEED)
INSERT INTO tasks SELECT printf('tsk_%026d', i), 1, 'sim-image', 'sim', 'succeeded',
  '{"prompt":"seeded task ' || i || ', a lighthouse at dusk","size":"1024x1024","steps":20}',
  '[{"url":"http://127.0.0.1:8080/media/sim/seed-' || i || '.png","content_type":"image/png","bytes":123456}]',
  NULL, 1, 0, 1, 3, 'sim-img-seed-' || i, 1.0, 0, 4102444800000,
  1790000000000 + i, 1790000000000 + i, 1790000005000 + i, 1790000005000 + i, 3, NULL
FROM n;
SQL
"$BIN" serve --config "$WORK/gengate.toml" --listen 127.0.0.1:0 > "$WORK/g.out" 2> "$WORK/g.err" & GPID=$!; PIDS+=($GPID)
URL=$(wait_url "$WORK/g.out")
sleep 1
IDLE_RSS=$(rss $GPID)
ID=$(printf 'tsk_%026d' $((SEED / 2)))
AUTH="Authorization: Bearer $KEY"

run() { # name, wrk args... → prints a row, returns req/s on stdout
  local name=$1; shift
  local out; out=$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$@")
  local rps p99; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}'); p99=$(echo "$out" | awk '/ 99%/ {print $2}')
  printf '%-32s %10s req/s   p99 %8s' "$name" "$rps" "$p99" >&2
  echo "$rps"
}
# The machine's speed drifts during a run, so each route is compared with
# the mean of reference runs taken right before and right after it.
REF_PREV=""
measure() { # name, wrk args...
  local before after r
  before=${REF_PREV:-$(run "  reference" "$REF_URL/" 2>/dev/null)}
  r=$(run "$@")
  after=$(run "  reference" "$REF_URL/" 2>/dev/null)
  REF_PREV=$after
  awk -v a="$r" -v b="$before" -v c="$after" 'BEGIN {printf "   %5.1f %% of reference (%.0f..%.0f)\n", 200 * a / (b + c), b, c}' >&2
}

echo "$(nproc) cores, wrk -t2 -c$CONNS -d$DURATION, $SEED tasks in the store" >&2
REF_PREV=$(run "reference (bare hyper, 351 B)" "$REF_URL/"); echo >&2
measure "GET /v1/tasks/{id}" -H "$AUTH" "$URL/v1/tasks/$ID"
measure "GET /v1/gallery?limit=20" "$URL/v1/gallery?limit=20"
measure "GET /v1/tasks?limit=20" -H "$AUTH" "$URL/v1/tasks?limit=20"
measure "POST /v1/tasks (durable)" -H "$AUTH" -s bench/create.lua "$URL/v1/tasks"

echo >&2
echo "bytes per response, headers included (3 Mbps = 375,000 B/s):" >&2
for path in "/v1/tasks/$ID" "/v1/gallery?limit=20" "/v1/tasks?limit=20"; do
  for enc in identity gzip br zstd; do
    b=$(curl -s -o /dev/null -H "$AUTH" -H "Accept-Encoding: $enc" -w '%{size_header} %{size_download}' "$URL$path" | awk '{print $1 + $2}')
    printf '  %-24s %-8s %6d B  -> %7d req/s on 3 Mbps\n' "${path%%\?*}$( [[ $path == *\?* ]] && echo '?limit=20')" "$enc" "$b" $((375000 / b)) >&2
  done
done
echo >&2
echo "RSS: idle $IDLE_RSS, after the run $(rss $GPID)" >&2
