#!/usr/bin/env bash
# Install a pinned OpenZiti `ziti` binary with the ordinary Go client (go install
# through the Go module proxy) into a private cache directory, and print its path.
#
#   tests/realcluster/install-ziti.sh            # prints e.g. ~/.cache/quorumgate/ziti-v1.5.4/bin/ziti
#   QG_CACHE=/somewhere tests/realcluster/install-ziti.sh
#   ZITI_VERSION=v1.5.4 tests/realcluster/install-ziti.sh
#
# Everything Go writes (GOBIN, GOMODCACHE, GOCACHE, GOPATH) stays under the cache
# directory, so nothing leaks into the user's Go setup and `rm -rf` of that
# directory is a full uninstall (the module cache is read-only; use
# `chmod -R u+w` first, or `GOMODCACHE=... go clean -modcache`).
#
# If the binary is already there and reports the pinned version, it is reused.
# Progress goes to stderr; the only line on stdout is the binary path.
set -euo pipefail

ZITI_VERSION="${ZITI_VERSION:-v1.5.4}"
QG_CACHE="${QG_CACHE:-$HOME/.cache/quorumgate}"
DEST="${ZITI_INSTALL_DIR:-$QG_CACHE/ziti-$ZITI_VERSION}"
BIN="$DEST/bin/ziti"

log() { printf 'install-ziti: %s\n' "$*" >&2; }

if [ -x "$BIN" ]; then
    if have="$("$BIN" version 2>/dev/null)" && [ "$have" = "$ZITI_VERSION" ]; then
        log "reusing $BIN ($have)"
        printf '%s\n' "$BIN"
        exit 0
    fi
    log "existing $BIN reports '${have:-?}', expected $ZITI_VERSION; reinstalling"
fi

command -v go >/dev/null 2>&1 || { log "go not found on PATH"; exit 2; }

mkdir -p "$DEST/bin" "$DEST/gopath" "$DEST/gomodcache" "$DEST/gocache"
export GOBIN="$DEST/bin"
export GOPATH="$DEST/gopath"
export GOMODCACHE="$DEST/gomodcache"
export GOCACHE="$DEST/gocache"
# Use the module proxy and checksum database exactly as configured (go env
# GOPROXY / GOSUMDB). No replace, no source mirror.
export GOFLAGS="${GOFLAGS:-} -trimpath"
export CGO_ENABLED="${CGO_ENABLED:-1}"
# The module asks for a go >= 1.24 toolchain; a newer local go satisfies it.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

# The tagged source carries Version="v0.0.0" (release builds generate the file);
# stamp the pinned version so `ziti version` and the `server:` header are honest.
LDFLAGS="-X github.com/openziti/ziti/common/version.Version=$ZITI_VERSION"

log "go install github.com/openziti/ziti/ziti@$ZITI_VERSION into $DEST ($(go version))"
start=$(date +%s)
errf="$DEST/go-install.err"
if ! go install -ldflags="$LDFLAGS" "github.com/openziti/ziti/ziti@$ZITI_VERSION" 2> >(tee "$errf" >&2); then
    wait
    if grep -q '403 Forbidden' "$errf" 2>/dev/null; then
        log "the Go module proxy refused the module (403, see above); no binary installed."
        log "this is final for this machine: do not build from a source mirror instead."
    fi
    log "go install FAILED (exact output above, also in $errf)"
    exit 1
fi
log "installed in $(( $(date +%s) - start ))s"

"$BIN" version >&2 || true
printf '%s\n' "$BIN"
