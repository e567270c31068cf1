# Helpers shared by the bench scripts (sourced, not run).

# wait_url FILE: waits for a "listening on http://ADDR" line in FILE, prints the URL.
wait_url() {
  for _ in $(seq 200); do grep -q listening "$1" 2>/dev/null && break; sleep 0.05; done
  grep -o 'http://[0-9.:]*' "$1" | head -1
}

# rss PID: resident memory of a process, in MB.
rss() { awk '/VmRSS/ {printf "%.1f MB", $2 / 1024}' "/proc/$1/status"; }
