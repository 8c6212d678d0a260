#!/usr/bin/env bash
# A Redis round trip against a Redis that fsyncs every write before its reply, as the embedded
# store does, beside the machine's own Redis (which may keep nothing on disk).
#   scripts/bench-durable-redis.sh [BINARY] [extra `bench round-trip` options]
# Starts a second redis-server on a free loopback port with its append-only file in a temp dir
# (`--appendonly yes --appendfsync always`), runs `BINARY bench round-trip --store redis
# --concurrency 128 --duration 8 --floor-secs 1` against it and then against the machine's Redis
# (REDIS_URL, default redis://127.0.0.1:6379/), prints each run's ratio to the floor and CPU per
# round trip, and stops the second server and removes its files.
set -euo pipefail
B="${1:-target/release/ondc-rating}"
MACHINE_REDIS="${REDIS_URL:-redis://127.0.0.1:6379/}"
shift || true
DIR="$(mktemp -d)"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
stop() {
  redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap stop EXIT
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$DIR" --appendonly yes --appendfsync always \
  --save "" --daemonize yes --logfile "$DIR/redis.log"
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
[ "$(redis-cli -p "$PORT" config get appendfsync | tail -1)" = always ] || {
  echo "the second Redis did not start with appendfsync always" >&2
  exit 1
}
run() {
  local label="$1" url="$2" out
  shift 2
  out="$("$B" bench round-trip --store redis --redis-url "$url" --concurrency 128 --duration 8 \
    --floor-secs 1 "$@" 2>&1)" || { echo "$out" >&2; exit 1; }
  printf '%-34s %s | %s | %s\n' "$label" \
    "$(grep -oE 'throughput/floor +[0-9.]+' <<<"$out")" \
    "$(grep -oE 'CPU per round trip .*' <<<"$out")" \
    "$(grep -oE 'errors +[0-9]+' <<<"$out")"
}
run "Redis, every write fsynced" "redis://127.0.0.1:$PORT/" "$@"
run "Redis, $MACHINE_REDIS" "$MACHINE_REDIS" "$@"
