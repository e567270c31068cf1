#!/usr/bin/env bash
# Memory of the media step: a 300 MB output served from loopback is copied to
# the local backend and, when an S3 server answers at S3_URL (moto, as .ci/run
# starts it), to S3 by multipart upload. Prints the peak RSS growth over the
# resting RSS of the copying process.
#
#   bench/media-copy.sh [MB] [S3_URL]        e.g. bench/media-copy.sh 300 http://127.0.0.1:5055
set -euo pipefail
cd "$(dirname "$0")/.."
MB="${1:-300}"
S3_URL="${2:-${TEST_S3_URL:-http://127.0.0.1:5055}}"
cargo build --release -q -p gengate-server --example media_copy
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN="$TARGET/release/examples/media_copy"
WORK=$(mktemp -d)
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

# An MP4-looking file (ftyp box, then zeros) of MB megabytes.
python3 - "$WORK/clip.mp4" "$MB" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    f.write(b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41")
    f.truncate(int(sys.argv[2]) * 1000 * 1000)
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$WORK" && exec python3 -m http.server "$PORT" --bind 127.0.0.1 >/dev/null 2>&1) & PIDS+=($!)
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null && break; sleep 0.05; done

S3_ARG=()
if curl -fsS -o /dev/null "$S3_URL/" 2>/dev/null; then
  curl -fsS -o /dev/null -X PUT "$S3_URL/bench" || true
  S3_ARG=("$S3_URL")
else
  echo "note: no S3 server at $S3_URL; local backend only"
fi
"$BIN" "http://127.0.0.1:$PORT/clip.mp4" "${S3_ARG[@]}"
