#!/bin/sh
# What the official redis image's entrypoint does for docker/compose.yml's
# command: arguments starting with "-" go to redis-server; as root, /data
# is handed to the redis user and redis-server runs as that user.
set -eu
case "${1:-}" in -*) set -- redis-server "$@" ;; esac
if [ "${1:-}" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"
