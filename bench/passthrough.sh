#!/bin/sh
# the passthrough listener vs HAProxy mode tcp; see bench/README.md.
exec python3 "$(dirname "$0")/passthrough.py" "$@"
