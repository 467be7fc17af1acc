#!/usr/bin/env bash
# test.sh - the whole test suite, as CI runs it:
#   1. release build with -Werror, unit tests (CTest), integration tests (pytest)
#   2. AddressSanitizer + UndefinedBehaviorSanitizer build, the same tests
# Usage: scripts/test.sh [--no-asan] [pytest args...]
# The real-OpenZiti tier (tests/realcluster) runs separately: scripts/test-realcluster.sh.
# Servers (redis-server, the controller simulator, prometheus) are started by
# the tests themselves on free loopback ports and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
asan=1
if [ "${1:-}" = "--no-asan" ]; then asan=0; shift; fi
jobs=$(nproc 2>/dev/null || echo 2)

run_suite() {
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DQG_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  (cd "$dir" && ctest --output-on-failure -j "$jobs")
  QUORUMGATE_BIN="$PWD/$dir/quorumgate" QG_REQUIRE_BINARY=1 \
    python3 -m pytest -q -p no:cacheprovider tests --ignore=tests/realcluster "${PYTEST_ARGS[@]}"
}

PYTEST_ARGS=("$@")
echo "== release build, unit and integration tests"
run_suite build -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== the README's commands as written (scripts/demo.sh, the build, quorumgate -t/--version/--help, relay)"
QUORUMGATE_BIN="$PWD/build/quorumgate" python3 -m pytest -q -p no:cacheprovider tests/readme
if [ "$asan" = 1 ]; then
  echo "== ASan+UBSan build, unit and integration tests"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build-asan -DCMAKE_BUILD_TYPE=Debug -DQG_SANITIZE=ON
fi
echo "== all tests passed"
