#!/usr/bin/env bash
# test.sh - the whole test suite, as CI runs it (.ci/run calls exactly this):
#   1. release build with -Werror, unit tests (CTest), integration tests (pytest)
#   2. the README's commands as written (tests/readme: the demo, the build, -t ...)
#   3. AddressSanitizer + UndefinedBehaviorSanitizer build, the same tests
#   4. the Debian package (tests/package/run.sh; root), the libFuzzer smoke
#      (scripts/fuzz.sh), the docker stack under podman (docker/test-stack.sh;
#      root), the real-OpenZiti tier (scripts/test-realcluster.sh)
# Usage: scripts/test.sh [--no-asan] [--quick] [pytest args...]
#   --quick: steps 1-3 only (a developer's loop; CI never passes it)
# The ziti controllers for step 4 are built from ../shared/ziti in the
# background (nice 19) while steps 1-3 run; a cached build returns at once.
# Servers (redis-server, the controller simulator, prometheus) are started by
# the tests themselves on free loopback ports and stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
asan=1
quick=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-asan) asan=0; shift ;;
    --quick) quick=1; shift ;;
    *) break ;;
  esac
done
zlog=$(mktemp /tmp/qg-ziti-build.XXXXXX)
zpid=
if [ "$quick" = 0 ]; then
  echo "== building ziti v1.5.4 and v1.7.2 in the background (log: $zlog)"
  (nice -n 19 scripts/test-realcluster.sh --build-only) >"$zlog" 2>&1 &
  zpid=$!
fi
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
if [ "$quick" = 0 ]; then
  echo "== the Debian package (build, lintian, dpkg -i/-r/-P)"
  tests/package/run.sh build
  echo "== libFuzzer smoke of every parser"
  scripts/fuzz.sh all 30
  echo "== the docker/ compose stack under podman"
  docker/test-stack.sh
  echo "== real OpenZiti HA clusters (v1.5.4, v1.7.2)"
  if ! wait "$zpid"; then cat "$zlog"; echo "building ziti failed" >&2; exit 1; fi
  tail -3 "$zlog"
  scripts/test-realcluster.sh
fi
echo "== all tests passed"
