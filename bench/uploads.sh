#!/usr/bin/env bash
# Upload throughput: POST /v1/uploads of one image, over and over, from wrk
# (-t2 -c16), into the local media backend of a release build. Prints
# uploads/s and MB/s for each size given (KB of a real PNG, made by ffmpeg).
#
#   bench/uploads.sh [DURATION] [SIZE_KB...]      e.g. bench/uploads.sh 10s 100 1000 5000
# Needs: wrk, ffmpeg, a release build (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
DURATION="${1:-10s}"; shift || true
SIZES=("${@:-100 1000 5000}")
BIN="${CARGO_TARGET_DIR:-target}/release/gengate"
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d)
PID=
trap 'kill $PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
cat > "$WORK/gengate.toml" <<TOML
[server]
data_dir = "$WORK/data"
[log]
level = "warn"
TOML
KEY=$("$BIN" keys create --user uploader --config "$WORK/gengate.toml" 2>/dev/null)
"$BIN" serve --config "$WORK/gengate.toml" --listen 127.0.0.1:0 > "$WORK/out" 2>"$WORK/err" &
PID=$!
URL=$(wait_url "$WORK/out")
for kb in ${SIZES[*]}; do
  # Noise compresses badly, so the PNG's size follows its pixel count.
  side=$(python3 -c "print(int(($kb * 1000 / 3) ** 0.5))")
  ffmpeg -v error -y -f lavfi -i "nullsrc=s=${side}x${side},geq=random(1)*255:128:128" \
    -frames:v 1 "$WORK/in.png"
  bytes=$(stat -c %s "$WORK/in.png")
  cat > "$WORK/upload.lua" <<LUA
local f = io.open("$WORK/in.png", "rb"); local body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "image/png"
wrk.headers["Authorization"] = "Bearer $KEY"
LUA
  out=$(wrk -t2 -c16 -d"$DURATION" -s "$WORK/upload.lua" "$URL/v1/uploads")
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  [ -z "$non2xx" ] || { echo "$kb KB: $non2xx answers were not 2xx" >&2; exit 1; }
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  python3 -c "print(f'{$bytes/1e6:.2f} MB PNG: {$rps:.0f} uploads/s, {$rps*$bytes/1e6:.0f} MB/s')"
  rm -rf "$WORK/data/media/u"
done
echo "server RSS after: $(rss "$PID")"
