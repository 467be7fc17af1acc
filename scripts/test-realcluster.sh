#!/usr/bin/env bash
# test-realcluster.sh - the real-OpenZiti tier (tests/realcluster): builds the `ziti` controller
# v1.5.4 and v1.7.2 from the source archives in ../shared/ziti (build.sh, cached in
# ~/.cache/ziti-src-build: about 8 minutes each when cold, one after the other), then runs the
# tier's pytest against the release build of quorumgate (built when missing).
# Usage: scripts/test-realcluster.sh [--build-only] [pytest args...]
#   QG_ZITI_VERSIONS=v1.7.2 scripts/test-realcluster.sh      # one version only
# Then the soak's CI variant (bench/soak.py --ci) on QG_SOAK_VERSIONS (default v1.7.2; QG_SOAK=0: not).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
command -v go >/dev/null || { echo "test-realcluster.sh: the go command (1.24+) is needed to build ziti" >&2; exit 2; }
build_sh=$(python3 -c 'from tests.realcluster.cluster import BUILD_SH; print(BUILD_SH)')
[ -x "$build_sh" ] || [ -f "$build_sh" ] || { echo "test-realcluster.sh: no $build_sh (../shared/ziti)" >&2; exit 2; }
build_only=0
if [ "${1:-}" = --build-only ]; then build_only=1; shift; fi
versions=${QG_ZITI_VERSIONS:-v1.5.4,v1.7.2}
for v in ${versions//,/ }; do
  start=$(date +%s)
  bin=$(bash "$build_sh" "$v")
  echo "ziti $v: $bin ($("$bin" version)), $(( $(date +%s) - start )) s"
  export "QG_ZITI_BIN_${v//./_}=$bin"
done
[ "$build_only" = 1 ] && exit 0
if [ ! -x build/quorumgate ]; then
  cmake -S . -B build -G Ninja -DQG_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j "$(nproc 2>/dev/null || echo 2)"
fi
start=$(date +%s)
QUORUMGATE_BIN="${QUORUMGATE_BIN:-$PWD/build/quorumgate}" QG_REQUIRE_BINARY=1 QG_ZITI_VERSIONS=$versions \
  python3 -m pytest -q -p no:cacheprovider -rA tests/realcluster "$@"
echo "== real-cluster tier passed in $(( $(date +%s) - start )) s"
# the soak's CI variant (issue 18): 3 minutes, 30 users, every fault kind at least once, then the
# history checker (exits 1 on any violation); only on a whole-tier run (no pytest arguments);
# QG_SOAK=0 skips it
if [ "${QG_SOAK:-1}" = 1 ] && [ $# -eq 0 ]; then
  for v in ${QG_SOAK_VERSIONS:-v1.7.2}; do
    start=$(date +%s)
    QUORUMGATE_BIN="${QUORUMGATE_BIN:-$PWD/build/quorumgate}" python3 bench/soak.py --ci --cleanup --version "$v"
    echo "== soak (CI variant, $v) passed in $(( $(date +%s) - start )) s"
  done
fi
