#!/usr/bin/env bash
# 1 node vs 3 nodes on one MariaDB (or MySQL), in the same run: requests per
# second of task creation (each a durable insert) and of task reads, with the
# load spread round-robin over the nodes by `gengate bench --also`. The two
# configurations alternate ROUNDS times; the ratio 3 nodes / 1 node is printed
# per round and as the median.
#
#   bench/cluster.sh [DURATION] [CONNECTIONS] [ROUNDS]     e.g. bench/cluster.sh 10s 64 2
#
# Needs: a release build (cargo build --release), the mysql client, and a
# server at $TEST_MYSQL_URL (default mysql://root@127.0.0.1:3306/test). With
# REDIS_URL set (e.g. redis://127.0.0.1:6379) the nodes exchange events through
# Redis instead of polling the database for changes.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION="${1:-10s}"
CONNS="${2:-64}"
ROUNDS="${3:-2}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET_DIR/release/gengate"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
BASE="${TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"
HOSTPORT=$(echo "$BASE" | sed -E 's#^[a-z]+://([^@]*@)?([^/]*)/.*#\2#')
HOST=${HOSTPORT%:*}; PORT=${HOSTPORT##*:}; [ "$PORT" = "$HOSTPORT" ] && PORT=3306
DB="gg_bench_$$"
mysql -h "$HOST" -P "$PORT" -u root -e "CREATE DATABASE $DB"
URL="${BASE%/*}/$DB"

WORK=$(mktemp -d)
PIDS=()
stop_nodes() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; PIDS=(); }
trap 'stop_nodes; mysql -h "$HOST" -P "$PORT" -u root -e "DROP DATABASE $DB" || true; rm -rf "$WORK"' EXIT
cat > "$WORK/gengate.toml" <<TOML
[server]
data_dir = "$WORK/data"
[store]
url = "$URL"
pool_size = 16
[log]
level = "warn"
[limits]
max_active = 0   # one user creates without pause: the server is measured, not a policy
[cluster]
${REDIS_URL:+redis_url = \"$REDIS_URL\"}
[providers.sim]
kind = "sim"
concurrency = 64
latency = "1s..2s"
TOML
"$BIN" migrate --config "$WORK/gengate.toml" >/dev/null
ADMIN=$("$BIN" keys create --user bench-admin --admin --config "$WORK/gengate.toml" 2>/dev/null)

start_nodes() {
  URLS=()
  for i in $(seq "$1"); do
    "$BIN" serve --config "$WORK/gengate.toml" --listen 127.0.0.1:0 --node-name "b$i" > "$WORK/out$i" 2>"$WORK/err$i" &
    PIDS+=($!)
    URLS+=("$(wait_url "$WORK/out$i")")
  done
}

# cpu PID...: CPU seconds (user + system) the processes used so far.
cpu() {
  local ticks=0
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] && ticks=$((ticks + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$ticks"
}
DBPID=$(pgrep -x mariadbd || pgrep -x mysqld || true)
HZ=$(getconf CLK_TCK)

# bench SCENARIO: req/s against the running nodes; the CPU the database and
# the nodes used meanwhile goes to $WORK/cpu.
bench() {
  local db0 nodes0
  db0=$(cpu $DBPID); nodes0=$(cpu "${PIDS[@]}")
  local also=()
  for u in "${URLS[@]:1}"; do also+=(--also "$u"); done
  "$BIN" bench --target "${URLS[0]}" "${also[@]}" -s "$1" -c "$CONNS" -d "$DURATION" \
    --admin-key "$ADMIN" --users 100 --json 2>/dev/null | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["rps"]))'
  echo "db $(( ($(cpu $DBPID) - db0) / HZ ))s nodes $(( ($(cpu "${PIDS[@]}") - nodes0) / HZ ))s" > "$WORK/cpu"
}

echo "gengate: 1 vs 3 nodes on $(mysql -h "$HOST" -P "$PORT" -u root -N -e 'SELECT VERSION()'), events by $([ -n "${REDIS_URL:-}" ] && echo redis || echo "polling the database"), $CONNS connections, $DURATION per figure, $(nproc) cores"
printf '%-6s %-9s %12s %12s\n' round scenario "1 node" "3 nodes"
RATIOS_CREATE=(); RATIOS_GET=()
for r in $(seq "$ROUNDS"); do
  declare -A RESULT=()
  for n in 1 3; do
    start_nodes "$n"
    RESULT[create$n]=$(bench create)
    RESULT[cpucreate$n]=$(cat "$WORK/cpu")
    RESULT[get$n]=$(bench get-task)
    RESULT[cpuget$n]=$(cat "$WORK/cpu")
    stop_nodes
  done
  for s in create get; do
    printf '%-6s %-9s %12s %12s   x%.2f   CPU 1 node: %s; 3 nodes: %s\n' "$r" "$s" "${RESULT[${s}1]} req/s" "${RESULT[${s}3]} req/s" \
      "$(python3 -c "print(${RESULT[${s}3]}/max(1,${RESULT[${s}1]}))")" "${RESULT[cpu${s}1]}" "${RESULT[cpu${s}3]}"
  done
  RATIOS_CREATE+=("$(python3 -c "print(${RESULT[create3]}/max(1,${RESULT[create1]}))")")
  RATIOS_GET+=("$(python3 -c "print(${RESULT[get3]}/max(1,${RESULT[get1]}))")")
done
median() { python3 -c 'import statistics,sys; print(f"{statistics.median(map(float, sys.argv[1:])):.2f}")' "$@"; }
echo "median 3 nodes / 1 node: create x$(median "${RATIOS_CREATE[@]}"), get x$(median "${RATIOS_GET[@]}")"
