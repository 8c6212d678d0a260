#!/usr/bin/env bash
# The project's one test entry point (CI runs it through .ci/run).
#   scripts/test.sh [extra args for cargo nextest run / cargo test]
# Installs the Node interop peer (tests/interop), starts a private Redis unless
# REDIS_URL is already set and a private three-node Redis Cluster unless
# REDIS_CLUSTER_NODES is already set, runs the whole test suite, then the API
# conformance check against the served OpenAPI document (scripts/api-conformance.sh;
# SKIP_API_CONFORMANCE=1 skips it), then the fuzz targets for a bounded time
# (scripts/fuzz.sh; FUZZ_SECONDS per target, SKIP_FUZZ=1 skips them).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INTEROP_DIR="$ROOT/tests/interop"
REDIS_PID=""
REDIS_TMP=""
CLUSTER_PIDS=()

log() { printf 'test.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

stop_pid() {
  local pid=$1
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  local pid
  for pid in "${CLUSTER_PIDS[@]}"; do stop_pid "$pid"; done
  [[ -n "$REDIS_PID" ]] && stop_pid "$REDIS_PID"
  [[ -n "$REDIS_TMP" ]] && rm -rf "$REDIS_TMP"
  exit "$rc"
}

setup_node() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 ||
    die "node and npm are required: the interop tests run ONDC's Node signing SDK (tests/interop)"
  local marker="$INTEROP_DIR/node_modules/.package-lock.json"
  if [[ ! -f "$marker" || "$INTEROP_DIR/package-lock.json" -nt "$marker" ]]; then
    log "installing the Node interop peer in tests/interop"
    (cd "$INTEROP_DIR" && npm ci --no-audit --no-fund)
  fi
  export ONDC_NODE_SDK_DIR="$INTEROP_DIR"
}

ensure_redis_server() {
  command -v redis-server >/dev/null 2>&1 && return 0
  [[ "$(id -u)" -eq 0 ]] ||
    die "redis-server not found: install it (Debian package redis-server) or set REDIS_URL"
  log "installing redis-server"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
}

free_port() {
  local p
  if p="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null)" &&
    [[ -n "$p" ]]; then
    echo "$p"
    return
  fi
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  die "no free TCP port found"
}

# Starts a private redis-server; sets REDIS_PID, REDIS_TMP, exports REDIS_URL.
start_redis() {
  local port attempt
  REDIS_TMP="$(mktemp -d "${TMPDIR:-/tmp}/ondc-rating-redis.XXXXXX")"
  for attempt in 1 2 3; do
    port="$(free_port)"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
      --dir "$REDIS_TMP" --logfile "$REDIS_TMP/redis.log" &
    REDIS_PID=$!
    for _ in $(seq 100); do
      kill -0 "$REDIS_PID" 2>/dev/null || break
      if [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]]; then
        export REDIS_URL="redis://127.0.0.1:$port/"
        log "private redis-server (pid $REDIS_PID) at $REDIS_URL"
        return 0
      fi
      sleep 0.1
    done
    log "redis-server on port $port did not answer (attempt $attempt); log:"
    tail -n 20 "$REDIS_TMP/redis.log" >&2 2>/dev/null || true
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=""
  done
  die "could not start redis-server"
}

# A free port whose cluster bus port (port + 10000) is free too.
free_cluster_port() {
  local p
  p="$(python3 -c '
import random, socket
for _ in range(200):
    p = random.randint(20000, 50000)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
    except OSError:
        continue
    print(p); break
')" && [[ -n "$p" ]] || die "no free port pair for a Redis Cluster node"
  echo "$p"
}

# Starts a private Redis Cluster of three masters on loopback; exports REDIS_CLUSTER_NODES.
start_redis_cluster() {
  local ports=() port node_dir addrs=() urls=() state=""
  [[ -n "$REDIS_TMP" ]] || REDIS_TMP="$(mktemp -d "${TMPDIR:-/tmp}/ondc-rating-redis.XXXXXX")"
  for _ in 1 2 3; do
    port="$(free_cluster_port)"
    node_dir="$REDIS_TMP/cluster-$port"
    mkdir -p "$node_dir"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
      --dir "$node_dir" --logfile "$node_dir/redis.log" &
    CLUSTER_PIDS+=("$!")
    ports+=("$port")
    addrs+=("127.0.0.1:$port")
    urls+=("redis://127.0.0.1:$port/")
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 100); do
      [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]] && break
      sleep 0.1
    done
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$REDIS_TMP/cluster-create.log" 2>&1 ||
    { cat "$REDIS_TMP/cluster-create.log" >&2; die "could not create the Redis Cluster"; }
  for _ in $(seq 100); do
    state="$(redis-cli -h 127.0.0.1 -p "${ports[0]}" cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_state://p')"
    [[ "$state" == ok ]] && break
    sleep 0.1
  done
  [[ "$state" == ok ]] || die "the Redis Cluster did not reach cluster_state:ok"
  REDIS_CLUSTER_NODES="$(IFS=,; echo "${urls[*]}")"
  export REDIS_CLUSTER_NODES
  log "private Redis Cluster at $REDIS_CLUSTER_NODES"
}

setup_redis() {
  if [[ -z "${REDIS_URL:-}" ]]; then
    ensure_redis_server
    start_redis
  fi
  if [[ -z "${REDIS_CLUSTER_NODES:-}" ]]; then
    ensure_redis_server
    command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found (it comes with redis-server)"
    start_redis_cluster
  fi
  if command -v redis-server >/dev/null 2>&1; then
    REDIS_SERVER_BIN="$(command -v redis-server)"
    export REDIS_SERVER_BIN
  fi
}

run_tests() {
  local rc=0
  # Doctests first (nextest does not run them), so the suite's own summary closes the output.
  if [[ -f "$ROOT/src/lib.rs" ]]; then
    cargo test --doc --workspace || rc=$?
  fi
  if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --workspace --all-targets --no-fail-fast "$@" || rc=$?
  else
    cargo test --workspace --all-targets "$@" || rc=$?
  fi
  return "$rc"
}

# The fuzz targets (fuzz/), each for FUZZ_SECONDS on the committed seeds; a separate,
# instrumented release build of the crate. Runs whatever the tests did, so one CI run
# reports both.
run_fuzz() {
  if [[ "${SKIP_FUZZ:-}" == 1 ]]; then
    log "SKIP_FUZZ=1: fuzz targets not run"
    return 0
  fi
  bash "$ROOT/scripts/fuzz.sh"
}

run_api_conformance() {
  if [[ "${SKIP_API_CONFORMANCE:-}" == 1 ]]; then
    log "SKIP_API_CONFORMANCE=1: API conformance check not run"
    return 0
  fi
  bash "$ROOT/scripts/api-conformance.sh"
}

main() {
  cd "$ROOT"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  setup_node
  setup_redis
  local rc=0
  run_tests "$@" || rc=$?
  run_api_conformance || rc=$?
  run_fuzz || rc=$?
  return "$rc"
}

# Sourcing the script (for checking its parts) defines the functions only.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
