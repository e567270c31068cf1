#!/usr/bin/env bash
# Instructions per durable create (POST /v1/tasks), counted by callgrind:
# unlike creates per second, the count does not move with what else the
# machine runs. The same three variants as bench/accounts.sh (BASE: a build
# from before accounts; new-free: limits checked, nothing held; new-paid:
# priced, every limit on), each a fresh server under valgrind whose counters
# are zeroed after a warm-up and read after N creates from USERS users, 32
# at a time. The provider never answers within the run, so only the create
# path is counted (with its enqueue and the dispatcher's submissions).
#
#   bench/accounts-instructions.sh BASE_BIN [N] [USERS]
#
# Needs: valgrind, python3, a release build of this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
BASE="${1:?usage: bench/accounts-instructions.sh BASE_BIN [N] [USERS]}"
N="${2:-2000}"
USERS="${3:-64}"
NEW="${CARGO_TARGET_DIR:-target}/release/gengate"
[ -x "$NEW" ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -x "$BASE" ] || { echo "no base build at $BASE" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }

WORK=$(mktemp -d)
PID=
trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

# config VARIANT: a provider that never answers within the run.
config() { accounts_config "$1" "$WORK/data" "3600s..3601s" ""; }

# count VARIANT BIN: instructions per create.
count() {
  local variant=$1 bin=$2 u admin url
  rm -rf "$WORK/data" "$WORK"/cg.*
  config "$variant" > "$WORK/gengate.toml"
  : > "$WORK/keys"
  for u in $(seq "$USERS"); do
    "$bin" keys create --user "bench$u" --config "$WORK/gengate.toml" 2>/dev/null >> "$WORK/keys"
  done
  admin=$("$bin" keys create --user root --admin --config "$WORK/gengate.toml" 2>/dev/null)
  valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" \
    "$bin" serve --config "$WORK/gengate.toml" --listen 127.0.0.1:0 > "$WORK/out" 2>"$WORK/err" &
  PID=$!
  for _ in $(seq 600); do grep -q listening "$WORK/out" 2>/dev/null && break; sleep 0.1; done
  url=$(grep -o 'http://[0-9.:]*' "$WORK/out" | head -1)
  if [ "$variant" = new-paid ]; then
    for u in $(seq "$USERS"); do
      curl -sf -X POST "$url/v1/admin/users/bench$u/credits" -H "Authorization: Bearer $admin" \
        -H 'Content-Type: application/json' -d '{"amount":1000000000000,"reason":"bench"}' >/dev/null
    done
  fi
  python3 bench/create.py "$url" "@$WORK/keys" 200 32 >/dev/null
  callgrind_control -z "$PID" >/dev/null 2>&1
  python3 bench/create.py "$url" "@$WORK/keys" "$N" 32 >/dev/null
  callgrind_control -d "$PID" >/dev/null 2>&1
  sleep 1
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  local total; total=$(grep -h '^summary:' "$WORK"/cg.*.1 | awk '{print $2}')
  echo $(( total / N ))
}

echo "POST /v1/tasks under callgrind: $N creates from $USERS users, 32 at a time" >&2
B=$(count base "$BASE"); F=$(count new-free "$NEW"); P=$(count new-paid "$NEW")
python3 - "$B" "$F" "$P" <<'PY'
import sys
b, f, p = map(int, sys.argv[1:])
print(f"instructions per create: base {b}, new-free {f} ({f/b:.3f} x base), new-paid {p} ({p/b:.3f} x base)")
PY
