#!/usr/bin/env bash
# install-deps.sh - install what quorumgate needs on Debian 12 (bookworm).
# The README, .ci/run and docker/Dockerfile all use this one script.
#
#   scripts/install-deps.sh build     compiler, CMake, the -dev libraries
#   scripts/install-deps.sh test      build + redis-server, prometheus/promtool,
#                                     openssl, curl, python3 with pytest and PyYAML,
#                                     clang + libclang-rt (libFuzzer, scripts/fuzz.sh)
#   scripts/install-deps.sh bench     test + nginx, haproxy, wrk, strace, valgrind,
#                                     perf; inferno (flame graphs) when cargo is there
#   scripts/install-deps.sh runtime   the shared libraries the binary links
#
#   scripts/install-deps.sh MODE PACKAGE...   MODE's packages and these extra
#                                     ones (docker/Dockerfile: runtime curl)
#   scripts/install-deps.sh --list MODE       print MODE's packages, one a
#                                     line, and install nothing (the tests
#                                     read the runtime list this way)
#
# Runs apt-get as root (or through sudo when not root).  Nothing is started:
# tests start their own servers on loopback ports.
set -euo pipefail

list=0
if [ "${1:-}" = --list ]; then list=1; shift; fi
what=${1:-test}
[ $# -gt 0 ] && shift
extra=("$@")
for p in "${extra[@]}"; do
  case "$p" in
    [a-z0-9]*) ;;
    *) echo "install-deps: '$p' is not a package name" >&2; exit 2 ;;
  esac
done

build_pkgs=(build-essential cmake ninja-build pkg-config
            libcurl4-openssl-dev libssl-dev
            libhiredis-dev liburing-dev
            libuv1-dev libyaml-dev libcjson-dev libcmocka-dev)
# redis-server is also the sentinel of the Sentinel tests (`redis-server
# sentinel.conf --sentinel`; Debian's redis-sentinel package only adds a
# service unit for that).
test_pkgs=(redis-server prometheus openssl curl ca-certificates procps docker-compose
           clang libclang-rt-14-dev
           python3 python3-pip python3-pytest python3-yaml)
bench_pkgs=(nginx-light haproxy wrk util-linux strace valgrind linux-perf)
runtime_pkgs=(libcurl4 libssl3 libhiredis0.14 liburing2 libuv1
              libyaml-0-2 libcjson1 ca-certificates)

case "$what" in
  build)   pkgs=("${build_pkgs[@]}") ;;
  test)    pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench)   pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  runtime) pkgs=("${runtime_pkgs[@]}") ;;
  *) echo "usage: $0 [--list] build|test|bench|runtime [PACKAGE...]" >&2; exit 2 ;;
esac
pkgs+=("${extra[@]}")

if [ "$list" = 1 ]; then
  printf '%s\n' "${pkgs[@]}"
  exit 0
fi

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
  as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's prometheus package starts nothing without systemd, but on a
# machine that has systemd it would: keep the test machine quiet.
if [ "$what" != build ] && [ "$what" != runtime ] && command -v systemctl >/dev/null 2>&1 \
   && [ -d /run/systemd/system ]; then
  for s in prometheus redis-server nginx haproxy prometheus-node-exporter; do
    as_root systemctl disable --now "$s" >/dev/null 2>&1 || true
  done
fi

# The python3 first on PATH (which may not be Debian's) must have pytest and
# PyYAML for the test suite.
if [ "$what" = test ] || [ "$what" = bench ]; then
  if ! python3 -c 'import pytest, yaml' 2>/dev/null; then
    python3 -m pip install --quiet pytest pyyaml \
      || python3 -m pip install --quiet --break-system-packages pytest pyyaml
  fi
fi
# Flame graphs (bench/run.sh --only profile): inferno, from crates.io, when
# cargo is there; the profile is still written without it.
if [ "$what" = bench ] && ! command -v inferno-flamegraph >/dev/null \
   && [ ! -x "$HOME/.cargo/bin/inferno-flamegraph" ]; then
  if command -v cargo >/dev/null; then
    cargo install --quiet --locked inferno \
      || echo "install-deps: cargo install inferno failed; no flame graphs" >&2
  else
    echo "install-deps: no cargo; bench profiles come without flame graphs" >&2
  fi
fi
echo "install-deps: $what dependencies present"
