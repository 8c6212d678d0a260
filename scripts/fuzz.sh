#!/usr/bin/env bash
# Coverage-guided fuzzing of the code that reads untrusted input (fuzz/fuzz_targets), on the
# stable toolchain, each target for a bounded time. scripts/test.sh runs it after the tests.
#   scripts/fuzz.sh [target...]        (default: every target in fuzz/Cargo.toml)
# Environment:
#   FUZZ_SECONDS      time per target (default 20)
#   FUZZ_TARGET_DIR   cargo target directory of the fuzz build (default fuzz/target)
#   FUZZ_ARTIFACTS    where crashing inputs are written (default fuzz/artifacts/<target>/)
#   FUZZ_KEEP_CORPUS  a directory to keep the inputs libFuzzer finds in (<dir>/<target>/);
#                     by default they go to a temporary directory removed at the end, so the
#                     committed seeds in fuzz/corpus/<target>/ only change by hand
# With cargo-fuzz and a nightly toolchain, `cargo fuzz run <target>` works on the same layout.
#
# Exits non-zero when a target crashes (panic, failed assertion, abort, timeout, out of memory)
# or when the build gives libFuzzer no coverage feedback; the crashing input's path is printed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_DIR="$ROOT/fuzz"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
WORK=""

log() { printf 'fuzz.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
  local rc=$?
  [[ -n "$WORK" ]] && rm -rf "$WORK"
  exit "$rc"
}

# The instrumentation cargo-fuzz asks of a nightly compiler, with stable options only:
# - `-C passes=sancov-module` runs LLVM's SanitizerCoverage pass, and the `-sanitizer-coverage-*`
#   LLVM options pick what libFuzzer reads: edge coverage (level 4) as inline 8-bit counters with
#   the PC table, comparison operands (trace-compares, so it can solve `== "ed25519"` and the
#   like), and the stack depth;
# - `--cfg fuzzing` as cargo-fuzz sets it;
# - debug assertions and overflow checks on, so arithmetic overflow is a crash here too.
# No AddressSanitizer: `-Z sanitizer=address` is nightly-only. The crate forbids unsafe code, so
# what is left to find is panics, failed assertions, overflow, hangs and memory blow-ups, all of
# which libFuzzer catches without it. No RUSTC_BOOTSTRAP: nothing here needs an unstable option.
fuzz_rustflags() {
  local flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    --cfg=fuzzing
    -Cdebug-assertions
    -Coverflow-checks
  )
  echo "${flags[*]}"
}

# Every [[bin]] name in fuzz/Cargo.toml.
all_targets() {
  awk '/^\[\[bin\]\]/{bin=1; next} /^\[/{bin=0} bin && /^name *=/{gsub(/.*= *"|".*/, ""); print}' \
    "$FUZZ_DIR/Cargo.toml"
}

# Builds the targets with the instrumentation above. `--target` keeps RUSTFLAGS off build scripts
# and proc macros, which run on the build machine and must not be instrumented.
build_targets() {
  local host
  host="$(rustc -vV | sed -n 's/^host: //p')"
  [[ -n "$host" ]] || die "cannot tell the host target from rustc -vV"
  log "building the fuzz targets (release, instrumented, target $host)"
  RUSTFLAGS="$(fuzz_rustflags)" cargo build --release \
    --manifest-path "$FUZZ_DIR/Cargo.toml" --target "$host" \
    --target-dir "$TARGET_DIR" --bins "${@/#/--bin=}"
  BIN_DIR="$TARGET_DIR/$host/release"
}

# Runs one target for FUZZ_SECONDS over its committed seeds; returns non-zero on a crash.
run_target() {
  local target="$1" bin="$BIN_DIR/$1" seeds="$FUZZ_DIR/corpus/$1" out artifacts flog rc=0
  [[ -x "$bin" ]] || die "no binary for $target at $bin"
  [[ -d "$seeds" ]] || die "no seed corpus at fuzz/corpus/$target"
  if [[ -n "${FUZZ_KEEP_CORPUS:-}" ]]; then out="$FUZZ_KEEP_CORPUS/$target"; else out="$WORK/corpus/$target"; fi
  artifacts="${FUZZ_ARTIFACTS:-$FUZZ_DIR/artifacts}/$target/"
  flog="$WORK/$target.log"
  mkdir -p "$out" "$artifacts"
  local before
  before="$(find "$artifacts" -maxdepth 1 -type f | sort)"
  log "$target: fuzzing for ${FUZZ_SECONDS}s (seeds: fuzz/corpus/$target)"
  # New inputs go to the first directory; the seeds directory is only read.
  "$bin" "$out" "$seeds" \
    -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts" -print_final_stats=1 >"$flog" 2>&1 || rc=$?
  # The progress lines (coverage growing from INITED to DONE), without the per-input noise.
  grep -E '^#[0-9]+[[:space:]]+(INITED|pulse|DONE)' "$flog" >&2 || true
  if [[ "$rc" -ne 0 ]]; then
    log "$target: FAILED (libFuzzer exit $rc); the end of its output:"
    tail -n 60 "$flog" >&2
    local found
    found="$(comm -13 <(echo "$before") <(find "$artifacts" -maxdepth 1 -type f | sort))"
    if [[ -n "$found" ]]; then
      while IFS= read -r f; do log "$target: crashing input: $f"; done <<<"$found"
      log "reproduce: $bin <input>   (or: cargo fuzz run $target <input>)"
    fi
    return "$rc"
  fi
  local cov runs secs
  cov="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[^ ]+' "$flog" | tail -n 1)"
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$flog")"
  secs="$(sed -n 's/.*Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p' "$flog")"
  if [[ -z "$cov" || "$cov" == "cov: 0 "* ]]; then
    log "$target: no coverage feedback: the build is not instrumented for libFuzzer"
    tail -n 30 "$flog" >&2
    return 1
  fi
  log "$target: ok, ${runs:-?} runs in ${secs:-?}s ($(( ${runs:-0} / (${secs:-1} > 0 ? ${secs:-1} : 1) )) exec/s), $cov"
}

main() {
  cd "$ROOT"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  [[ "$FUZZ_SECONDS" =~ ^[0-9]+$ && "$FUZZ_SECONDS" -gt 0 ]] || die "FUZZ_SECONDS must be a positive number"
  local targets=("$@")
  [[ ${#targets[@]} -gt 0 ]] || mapfile -t targets < <(all_targets)
  [[ ${#targets[@]} -gt 0 ]] || die "no fuzz targets in fuzz/Cargo.toml"
  TARGET_DIR="${FUZZ_TARGET_DIR:-$FUZZ_DIR/target}"
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/ondc-rating-fuzz.XXXXXX")"
  build_targets "${targets[@]}"
  local failed=()
  for t in "${targets[@]}"; do
    run_target "$t" || failed+=("$t")
  done
  if [[ ${#failed[@]} -gt 0 ]]; then
    log "failed: ${failed[*]}"
  else
    log "all ${#targets[@]} targets ran ${FUZZ_SECONDS}s each without a crash"
  fi
  # One plain summary line, each target counting as one check.
  printf 'fuzz: %d passed, %d failed\n' "$((${#targets[@]} - ${#failed[@]}))" "${#failed[@]}"
  [[ ${#failed[@]} -eq 0 ]]
}

# Sourcing the script (for checking its parts) defines the functions only.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
