#!/usr/bin/env bash
# make fuzz: builds every libFuzzer target (tests/fuzz/*.cmake) with clang
# -fsanitize=fuzzer,address,undefined in BUILD_FUZZ and runs each for FUZZ_SECONDS (an ASan or
# UBSan report is a crash: halt_on_error), starting
# from its seed corpus tests/fuzz/corpus/NAME (read-only: new inputs go to a scratch copy).
# A crash leaves its input in BUILD_FUZZ/crashes/NAME/; fix the bug, then copy the input into
# tests/fuzz/corpus/NAME/ so `make test` replays it. Exits 1 when any target crashed.
#
# Environment: FUZZ_SECONDS (default 60), FUZZ_TARGETS (space-separated names, default all),
# BUILD_FUZZ (default build-fuzz), JOBS (build parallelism), FUZZ_MAX_LEN (default 65536).
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
BUILD_FUZZ=${BUILD_FUZZ:-build-fuzz}
JOBS=${JOBS:-$(nproc)}
FUZZ_MAX_LEN=${FUZZ_MAX_LEN:-65536}

command -v clang >/dev/null || { echo "fuzz: clang not found (make deps)" >&2; exit 1; }

all=$(sed -n 's/^ *sl_add_fuzzer(\([a-z0-9-]*\) .*/\1/p' tests/fuzz/*.cmake | sort)
targets=${FUZZ_TARGETS:-$all}

if [ ! -f "$BUILD_FUZZ/CMakeCache.txt" ]; then
  CC=clang cmake -S . -B "$BUILD_FUZZ" -DSL_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
fi
# shellcheck disable=SC2086
cmake --build "$BUILD_FUZZ" -j"$JOBS" --target $targets

failed=()
for t in $targets; do
  seeds=tests/fuzz/corpus/$t
  work=$BUILD_FUZZ/corpus-work/$t
  crashes=$BUILD_FUZZ/crashes/$t
  mkdir -p "$work" "$crashes"
  echo "fuzz: $t for ${FUZZ_SECONDS}s (seeds: $(ls "$seeds" | wc -l))"
  log=$BUILD_FUZZ/crashes/$t.log
  if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      "$BUILD_FUZZ/fuzz/$t" -max_total_time="$FUZZ_SECONDS" -max_len="$FUZZ_MAX_LEN" \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$crashes/" "$work" "$seeds" >"$log" 2>&1; then
    echo "fuzz: $t FAILED; input(s) in $crashes/, log $log:" >&2
    grep -E "ERROR|SUMMARY|==[0-9]+==" "$log" | head -5 >&2 || true
    failed+=("$t")
  else
    grep -E "stat::number_of_executed_units|cov:" "$log" | tail -2 | tr '\n' ' '
    echo
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) crashed: ${failed[*]}" >&2
  echo "fuzz: fix each bug, then copy its input into tests/fuzz/corpus/NAME/" >&2
  exit 1
fi
echo "fuzz: $(echo "$targets" | wc -w) targets, ${FUZZ_SECONDS}s each, no crash"
