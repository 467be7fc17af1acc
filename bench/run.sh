#!/bin/sh
# quorumgate vs direct / nginx / HAProxy on one upstream; see bench/README.md.
exec python3 "$(dirname "$0")/run.py" "$@"
