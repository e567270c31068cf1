#!/usr/bin/env bash
# What per-user limits and credit holds cost a durable create (POST
# /v1/tasks): a build from before them (BASE) against this one, run free
# and unlimited (`new-free`: the limit checks still run, nothing is held)
# and priced with every limit on (`new-paid`: each create locks its user's
# row, checks credits, tasks in flight, the day's count and the minute's
# bucket, and writes its hold to the ledger). Rounds alternate the three so
# that the machine's drift hits each alike; the figures are medians, and the
# ratios are to BASE in the same run. Creates go to USERS users in turn (an
# app's many users; 1 is the worst case on a shared store, where each create
# of a user waits for the previous one's commit, its user row locked).
#
#   bench/accounts.sh BASE_BIN [DURATION] [ROUNDS] [STORE_URL] [USERS]
#
# BASE_BIN: a release build of the commit before accounts, e.g.
#   git worktree add /tmp/base 033108f && \
#   CARGO_TARGET_DIR=/tmp/base-target cargo build --release --manifest-path /tmp/base/Cargo.toml
# STORE_URL: a PostgreSQL or MySQL URL of an empty database to run on
# instead of SQLite (each round drops and migrates it).
# Needs: wrk, and a release build of this tree (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
BASE="${1:?usage: bench/accounts.sh BASE_BIN [DURATION] [ROUNDS] [STORE_URL] [USERS]}"
DURATION="${2:-10s}"
ROUNDS="${3:-3}"
STORE="${4:-}"
USERS="${5:-64}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
NEW="$TARGET_DIR/release/gengate"
[ -x "$NEW" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$BASE" ] || { echo "no base build at $BASE" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }

WORK=$(mktemp -d)
PID=
trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

# config VARIANT: the server's config for one variant.
config() { accounts_config "$1" "$WORK/data" "1s..2s" "$STORE"; }

# fresh_db: an empty database for the next round (networked stores).
fresh_db() {
  case "$STORE" in
    postgres*) psql -q "$STORE" -c 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;' ;;
    mysql*)
      local db="${STORE##*/}"; db="${db%%\?*}"
      mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db;" ;;
  esac
}

# round VARIANT BIN: creates per second of one fresh server.
round() {
  local variant=$1 bin=$2
  rm -rf "$WORK/data"
  config "$variant" > "$WORK/gengate.toml"
  if [ -n "$STORE" ]; then fresh_db; "$bin" migrate --config "$WORK/gengate.toml" >/dev/null; fi
  local admin u
  : > "$WORK/keys"
  for u in $(seq "$USERS"); do
    "$bin" keys create --user "bench$u" --config "$WORK/gengate.toml" 2>/dev/null >> "$WORK/keys"
  done
  admin=$("$bin" keys create --user root --admin --config "$WORK/gengate.toml" 2>/dev/null)
  "$bin" serve --config "$WORK/gengate.toml" --listen 127.0.0.1:0 > "$WORK/out" 2>"$WORK/err" &
  PID=$!
  local url; url=$(wait_url "$WORK/out")
  if [ "$variant" = new-paid ]; then
    for u in $(seq "$USERS"); do
      curl -sf -X POST "$url/v1/admin/users/bench$u/credits" -H "Authorization: Bearer $admin" \
        -H 'Content-Type: application/json' -d '{"amount":1000000000000,"reason":"bench"}' >/dev/null
    done
  fi
  local out; out=$(wrk -t2 -c64 -d"$DURATION" -s bench/create-users.lua "$url/v1/tasks" -- "$WORK/keys")
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  [ -z "$non2xx" ] || { echo "$variant: $non2xx answers were not 2xx" >&2; exit 1; }
  echo "$out" | awk '/Requests\/sec/ {print $2}'
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

declare -a BASE_R FREE_R PAID_R
echo "POST /v1/tasks, wrk -t2 -c64 -d$DURATION, $USERS users, $ROUNDS rounds, store ${STORE:-sqlite}, $(nproc) cores" >&2
for r in $(seq "$ROUNDS"); do
  BASE_R+=("$(round base "$BASE")")
  FREE_R+=("$(round new-free "$NEW")")
  PAID_R+=("$(round new-paid "$NEW")")
  echo "round $r: base ${BASE_R[-1]}  new-free ${FREE_R[-1]}  new-paid ${PAID_R[-1]} creates/s" >&2
done
B=$(median "${BASE_R[@]}"); F=$(median "${FREE_R[@]}"); P=$(median "${PAID_R[@]}")
python3 - "$B" "$F" "$P" <<'PY'
import sys
b, f, p = map(float, sys.argv[1:])
print(f"median creates/s: base {b:.0f}, new-free {f:.0f} ({f/b:.3f} x base), new-paid {p:.0f} ({p/b:.3f} x base)")
PY
