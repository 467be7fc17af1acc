#!/usr/bin/env bash
# demo.sh - install what is needed (Debian 12), build quorumgate, and run the
# demo: Redis + a 3-controller simulated OpenZiti HA cluster with a lagging
# follower + quorumgate, one MFA enrollment through it, and the metrics.
#   scripts/demo.sh --real v1.7.2   the same against a real 3-controller OpenZiti
#   cluster built from ../shared/ziti (cached; ~8 min cold build)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target quorumgate
exec python3 scripts/demo.py --binary build/quorumgate "$@"
