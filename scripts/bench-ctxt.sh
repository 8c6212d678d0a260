#!/usr/bin/env bash
# Context switches per round trip of each adapter during an embedded round-trip load run.
#   scripts/bench-ctxt.sh [BINARY] [extra `bench round-trip` options]
# Starts `BINARY bench round-trip --store embedded --concurrency 64 --duration 12 --floor-secs 0`,
# sums voluntary + nonvoluntary context switches over every thread of each adapter process
# (/proc/PID/task/*/status) at two points 8 s apart in its measured phase, and divides by 8 s
# and the run's throughput. Prints those two figures, then the run's CPU-per-round-trip line.
set -euo pipefail
B="${1:-target/release/ondc-rating}"
shift || true
OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
"$B" bench round-trip --store embedded --concurrency 64 --duration 12 --floor-secs 0 "$@" >"$OUT" 2>&1 &
RUN=$!
for _ in $(seq 600); do grep -q measuring "$OUT" && break; sleep 0.1; done
sleep 1
snapshot() {
  local p role total v
  for p in $(pgrep -f " serve --config" || true); do
    role=$(tr '\0' ' ' </proc/"$p"/cmdline | grep -o 'seller\|buyer' | head -1)
    total=0
    for t in /proc/"$p"/task/*; do
      v=$(awk '/ctxt_switches/ {s += $2} END {print s + 0}' "$t/status" 2>/dev/null || echo 0)
      total=$((total + v))
    done
    echo "$role $total"
  done | sort
}
first="$(snapshot)"
sleep 8
second="$(snapshot)"
wait "$RUN"
rate=$(awk '/throughput  / {print $2}' "$OUT")
echo "throughput $rate round trips/s"
join <(echo "$first") <(echo "$second") |
  awk -v r="$rate" '{printf "%s %.2f context switches per round trip\n", $1, ($3 - $2) / 8 / r}'
grep "CPU per" "$OUT"
