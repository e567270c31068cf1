# Helpers shared by the bench scripts (sourced, not run).

# wait_url FILE: waits for a "listening on http://ADDR" line in FILE, prints the URL.
wait_url() {
  for _ in $(seq 200); do grep -q listening "$1" 2>/dev/null && break; sleep 0.05; done
  grep -o 'http://[0-9.:]*' "$1" | head -1
}

# rss PID: resident memory of a process, in MB.
rss() { awk '/VmRSS/ {printf "%.1f MB", $2 / 1024}' "/proc/$1/status"; }

# accounts_config VARIANT DATA_DIR SIM_LATENCY [STORE_URL]: the config of one
# variant of the accounts benchmarks: `base` (a build from before accounts),
# `new-free` (limits checked, nothing held) or `new-paid` (priced, every
# limit on, high enough never to refuse).
accounts_config() {
  local variant=$1 data=$2 latency=$3 store_url=${4:-}
  if [ -n "$store_url" ]; then printf '[store]\nurl = "%s"\npool_size = 16\n' "$store_url"; fi
  cat <<TOML
[server]
data_dir = "$data"
[log]
level = "warn"
[providers.sim]
kind = "sim"
concurrency = 64
latency = "$latency"
TOML
  case "$variant" in
    base) ;;
    new-free) printf '[limits]\nmax_active = 0\n' ;;
    new-paid) cat <<TOML
[limits]
max_active = 1000000
creates_per_minute = 100000000
tasks_per_day = 100000000
[models.sim-image]
provider = "sim"
kind = "image"
expected = "1s..2s"
price = 1
[models.sim-image.input.prompt]
type = "string"
required = true
[models.sim-image.input.size]
type = "enum"
values = ["512x512"]
TOML
    ;;
  esac
}
