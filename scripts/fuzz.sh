#!/usr/bin/env bash
# fuzz.sh - build the libFuzzer harnesses (fuzz/, clang with ASan+UBSan) and
# run one of them, or each in turn.
#
#   scripts/fuzz.sh TARGET SECONDS     run fuzz_TARGET for SECONDS
#   scripts/fuzz.sh all SECONDS        every target, SECONDS each (CI smoke)
#   scripts/fuzz.sh --list             the targets
#
# Targets: framing config json location relay redis h1parse h1req.  Seeds
# come from fuzz/corpus/TARGET (committed, taken from the tests); what the
# fuzzer finds on top goes to build-fuzz/corpus/TARGET (kept between runs).
# A crash, leak, timeout or sanitizer report stops the run and exits
# non-zero with the input in build-fuzz/crashes/; the last line printed is
# "fuzz TARGET: N runs in S s (R execs/s), cov C, ft F, corpus K".
# Environment: BUILD_DIR (build-fuzz), FUZZ_JOBS (2 build jobs), CC (clang).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=(framing config json location relay redis h1parse h1req)
if [ "${1:-}" = --list ]; then printf '%s\n' "${TARGETS[@]}"; exit 0; fi
if [ $# -ne 2 ] || ! [[ "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 TARGET|all SECONDS   (targets: ${TARGETS[*]})" >&2; exit 2
fi
what=$1 secs=$2
build=${BUILD_DIR:-build-fuzz}
if [ "$what" = all ]; then run=("${TARGETS[@]}"); else run=("$what"); fi
for t in "${run[@]}"; do
  [ -f "fuzz/fuzz_$t.c" ] || { echo "fuzz: no target '$t' (${TARGETS[*]})" >&2; exit 2; }
done
command -v "${CC:-clang}" >/dev/null || { echo "fuzz: needs clang (scripts/install-deps.sh test)" >&2; exit 2; }

if [ ! -f "$build/build.ninja" ]; then
  CC=${CC:-clang} cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DQG_FUZZ=ON -DQG_TESTS=OFF >/dev/null
fi
cmake --build "$build" -j "${FUZZ_JOBS:-2}" --target $(printf 'fuzz_%s ' "${run[@]}") >/dev/null

status=0
for t in "${run[@]}"; do
  corpus="$build/corpus/$t" crashes="$build/crashes"
  mkdir -p "$corpus" "$crashes"
  log="$build/fuzz_$t.log"
  # hiredis 0.14 allocates what a reply announces: let a huge array be a
  # failed allocation (handled) rather than a report about the allocator
  if ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$build/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
       -max_len=16384 -print_final_stats=1 -artifact_prefix="$crashes/$t-" \
       "$corpus" "fuzz/corpus/$t" >"$log" 2>&1; then
    ok=1
  else
    ok=0; status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  files=$(find "$corpus" -type f | wc -l)
  if [ "$ok" = 0 ]; then
    echo "fuzz $t: FAILED (log: $log)" >&2
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -8 >&2 || true
  fi
  echo "fuzz $t: ${runs:-0} runs in $secs s (${rate:-0} execs/s), cov ${cov:-?}, ft ${ft:-?}, corpus $files"
done
exit $status
