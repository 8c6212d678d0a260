#!/usr/bin/env bash
# Checks the running server against the OpenAPI document it serves, with Schemathesis
# (property-based API testing from the document alone): no 5xx on any generated input, only
# documented status codes, bodies that match the documented schemas, schema-invalid bodies
# refused, 405 for methods a path does not take, the stateful links followed.
#   scripts/api-conformance.sh
# Needs python3 (with venv); installs a pinned Schemathesis into target/api-conformance/venv the
# first time. Runs the whole check twice, against the debug build of the server (both roles) on
# a free loopback port: with the embedded store in a temporary directory, then, when REDIS_URL
# is set, with the Redis store there under a key prefix of its own (deleted afterwards).
# scripts/test.sh runs it after the test suite, with REDIS_URL set (SKIP_API_CONFORMANCE=1 skips
# it there).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCHEMATHESIS_VERSION="4.32.5"
WORK="$ROOT/target/api-conformance"
VENV="$WORK/venv"
# Fixed seeds and example counts: the same inputs every run, so a failure reproduces.
SEED=20261207
EXAMPLES=150
ORDERS=40
SERVER_PID=""
TMP=""
# The Redis pass's key prefix, while its keys may exist.
REDIS_PREFIX=""
# 1 once a run failed.
FAILED=0
# Deletes every key matching ARGV[1].
FORGET_PREFIX='local cursor = "0"
repeat
  local page = redis.call("SCAN", cursor, "MATCH", ARGV[1], "COUNT", 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do redis.call("UNLINK", key) end
until cursor == "0"
return 0'

log() { printf 'api-conformance.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Stops the server and removes what its pass left: the temporary directory, the Redis keys.
stop_pass() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
  [[ -n "$TMP" ]] && rm -rf "$TMP"
  TMP=""
  if [[ -n "$REDIS_PREFIX" ]] && command -v redis-cli >/dev/null 2>&1; then
    # In the server, not through a pipe: generated ids put any byte in a key, newlines included.
    redis-cli -u "$REDIS_URL" EVAL "$FORGET_PREFIX" 0 "$REDIS_PREFIX*" >/dev/null || true
  fi
  REDIS_PREFIX=""
}

cleanup() {
  local rc=$?
  stop_pass
  exit "$rc"
}

setup_schemathesis() {
  command -v python3 >/dev/null 2>&1 || die "python3 is required"
  if [[ ! -x "$VENV/bin/schemathesis" ]] ||
    [[ "$("$VENV/bin/python" -c 'import schemathesis; print(schemathesis.__version__)' 2>/dev/null)" != "$SCHEMATHESIS_VERSION" ]]; then
    log "installing Schemathesis $SCHEMATHESIS_VERSION into $VENV"
    rm -rf "$VENV"
    mkdir -p "$WORK"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server PORT SIGNING_KEY STORE (embedded or redis)
start_server() {
  local port=$1 key=$2 store=$3 bin="$ROOT/target/debug/ondc-rating"
  ONDC_RATING__SERVER__BIND="127.0.0.1:$port" \
    ONDC_RATING__IDENTITY__SIGNING_PRIVATE_KEY="$key" \
    ONDC_RATING__SERVER__LOG_LEVEL=warn \
    ONDC_RATING__STORE__BACKEND="$store" \
    ONDC_RATING__STORE__PATH="$TMP/ondc-rating.redb" \
    ONDC_RATING__STORE__REDIS_URL="${REDIS_URL:-}" \
    ONDC_RATING__STORE__KEY_PREFIX="${REDIS_PREFIX:-ondc-rating:}" \
    ONDC_RATING__BUYER__BAP_URI="http://127.0.0.1:$port/bap" \
    ONDC_RATING__BUYER__CALLBACK_WAIT_MS=200 \
    ONDC_RATING__SELLER__BPP_URI="http://127.0.0.1:$port/bpp" \
    "$bin" serve --config "$ROOT/config/default.toml" >"$TMP/server.log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  cat "$TMP/server.log" >&2
  die "the server did not become ready"
}

# Data for the generated requests to find, so that they reach past "not found": a registered
# user and completed orders of hers whose seller is this server's own seller side, so a rating
# the generator submits really goes out as a signed /rating and comes back as an /on_rating; and
# three of those ratings already received by the seller side.
# The configuration makes the generator use these ids in most requests.
# seed_data INTERNAL_TOKEN BUYER_TOKEN
seed_data() {
  local internal=$1 token=$2 n ids=() messages=()
  curl -fsS -X PUT "$BASE/internal/users/alice" -H "Authorization: Bearer $internal" \
    -H 'Content-Type: application/json' -d '{"active":true}' >/dev/null
  for n in $(seq 1 "$ORDERS"); do
    curl -fsS -X PUT "$BASE/internal/orders/O-$n" -H "Authorization: Bearer $internal" \
      -H 'Content-Type: application/json' \
      -d "{\"userId\":\"alice\",\"state\":\"Completed\",\"domain\":\"ONDC:RET10\",\"city\":\"std:080\",\"transactionId\":\"t-$n\",\"bppId\":\"ondc-rating.localhost\",\"bppUri\":\"$BASE/bpp\",\"providerId\":\"P1\",\"agentId\":\"A1\",\"itemIds\":[\"I1\",\"I2\"],\"fulfillmentIds\":[\"F1\"]}" >/dev/null
    ids+=("\"O-$n\"")
  done
  # Three of them rated already, so that the seller side holds received ratings to read.
  for n in 1 2 3; do
    messages+=("\"$(curl -fsS -X POST "$BASE/ret11/rating" -H "Authorization: Bearer $token" \
      -H 'Content-Type: application/json' -d "{\"orderId\":\"O-$n\",\"orderRating\":5}" |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["dto"]["context"]["message_id"])')\"")
  done
  cat >"$TMP/schemathesis.toml" <<TOML
# Every check (as --checks all would, but leaving the operations below their own say).
[checks]
enabled = true

[dictionaries.users]
values = ["alice"]

[dictionaries.orders]
values = [$(IFS=,; echo "${ids[*]}")]

[dictionaries.buyers]
values = ["ondc-rating.localhost"]

[dictionaries.messages]
values = [$(IFS=,; echo "${messages[*]}")]

[parameters]
"path.user_id" = { dictionary = "users", probability = 0.8 }
"path.userId" = { dictionary = "users", probability = 0.5 }
"path.order_id" = { dictionary = "orders", probability = 0.8 }
"path.orderId" = { dictionary = "orders", probability = 0.8 }
"path.listing_id" = { dictionary = "orders", probability = 0.8 }
"body.orderId" = { dictionary = "orders", probability = 0.8 }
"path.bap_id" = { dictionary = "buyers", probability = 0.8 }
"path.message_id" = { dictionary = "messages", probability = 0.8 }

# Some schema-valid requests are refused by rules a JSON Schema cannot state, as the README
# documents: an unknown user is a 400 on the v2 feedback API (the API it replaces answered so),
# two item ratings may not name one item, and an order's bppUri must be on its bppId's domain.
# Every other operation must take every schema-valid request it is given (or answer 401, 403,
# 404, 409 for the state it finds).
[[operations]]
include-path-regex = "^/(ret11/rating|v2/feedback/|internal/orders/)"
checks = { positive_data_acceptance = { enabled = false } }
TOML
}

# run NAME ARGS...: one Schemathesis run; returns its exit status.
run() {
  local name=$1
  shift
  log "$name"
  # From the temporary directory: Schemathesis keeps its cache in the working directory.
  (cd "$TMP" && "$VENV/bin/schemathesis" --config-file "$TMP/schemathesis.toml" --no-color run \
    "$BASE/openapi.json" --seed "$SEED" --max-examples "$EXAMPLES" "$@")
}

# nacks CODE: how many NACKs with that ONDC code the server has answered.
nacks() {
  curl -fsS "$BASE/metrics" | awk -v code="$1" '
    $0 ~ "^ondc_rating_nacks_total\\{code=\"" code "\"\\}" { n = $2 }
    END { print n + 0 }'
}

# pass STORE: every run against a fresh server on STORE (embedded or redis); sets FAILED when a
# run failed (it returns 0, so that errexit holds within it).
pass() {
  local store=$1 port rc=0 token internal key bin="$ROOT/target/debug/ondc-rating"
  log "the $store store"
  TMP="$(mktemp -d "${TMPDIR:-/tmp}/ondc-rating-api.XXXXXX")"
  if [[ "$store" == redis ]]; then
    REDIS_PREFIX="ondc-rating-api-conformance-$$:"
  fi
  key="$("$bin" keygen | sed -n 's/^signing_private_key = "\(.*\)"/\1/p')"
  [[ -n "$key" ]] || die "keygen printed no signing key"
  port="$(free_port)"
  BASE="http://127.0.0.1:$port"
  start_server "$port" "$key" "$store"
  internal="$(sed -n 's/^internal_token = "\(.*\)"/\1/p' "$ROOT/config/default.toml" | head -n 1)"
  token="$("$ROOT/target/debug/ondc-rating" token --user alice --config "$ROOT/config/default.toml")"
  seed_data "$internal" "$token"
  # The buyer APIs (two of them without one check: the configuration above says which and why).
  run "buyer APIs" -H "Authorization: Bearer $token" --include-path-regex '^/(ret11|v2)/' || rc=1
  # The internal APIs, after the buyer APIs: they replace the seeded orders and users with what
  # they generate.
  run "internal APIs" -H "Authorization: Bearer $internal" --include-path-regex '^/internal' || rc=1
  # The rest: network endpoints (refused unsigned with a NACK), health, metrics, the document.
  run "network and operations endpoints" --exclude-path-regex '^/(ret11|v2|internal)/' || rc=1
  # The network endpoints again, each request signed as a peer signs it (api_conformance_hooks.py,
  # with the server's own key, which it trusts), so bodies reach the parsing and the checks. Not
  # the checks that every schema-valid body is taken (the inbound schemas are tolerant and ONDC's
  # context rules, a fresh RFC 3339 timestamp say, come after them, each with its NACK) and that
  # a successful answer needs the credentials (they are made here, not generated).
  local before_seller before_buyer after_seller after_buyer
  before_seller="$(nacks 30000)"
  before_buyer="$(nacks 20006)"
  SCHEMATHESIS_HOOKS=api_conformance_hooks PYTHONPATH="$ROOT/scripts" \
    CONFORMANCE_BIN="$bin" CONFORMANCE_SIGNING_KEY="$key" \
    CONFORMANCE_SUBSCRIBER_ID=ondc-rating.localhost CONFORMANCE_UNIQUE_KEY_ID=dev-1 \
    run "network endpoints, signed" --include-path-regex '^/(bpp|bap)/' \
    --exclude-checks positive_data_acceptance,ignored_auth || rc=1
  # The signatures were taken: bodies got as far as their schemas (a NACK a signature refused
  # first never is), on both sides.
  after_seller="$(nacks 30000)"
  after_buyer="$(nacks 20006)"
  log "schema NACKs behind a valid signature: seller $before_seller -> $after_seller, buyer $before_buyer -> $after_buyer"
  if ((after_seller <= before_seller || after_buyer <= before_buyer)); then
    log "error: the signed requests did not get past the signature check"
    rc=1
  fi
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    log "the server is still running"
  else
    cat "$TMP/server.log" >&2
    die "the server stopped during the runs"
  fi
  if grep -q "panicked" "$TMP/server.log"; then
    grep -B2 -A5 "panicked" "$TMP/server.log" >&2
    die "the server panicked"
  fi
  stop_pass
  ((rc == 0)) || FAILED=1
}

main() {
  trap cleanup EXIT
  setup_schemathesis
  (cd "$ROOT" && cargo build --quiet --bin ondc-rating)
  pass embedded
  if [[ -n "${REDIS_URL:-}" ]]; then
    pass redis
  else
    log "REDIS_URL is not set: the pass against the Redis store is not run"
  fi
  return "$FAILED"
}

main "$@"
