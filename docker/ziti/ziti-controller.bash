#!/usr/bin/env bash
# ziti-controller.bash - entrypoint of the three controllers in
# docker/compose.yml, around the openziti/ziti-controller image's own
# /entrypoint.bash.  That entrypoint still does all the work, as the image's
# README and compose.test.yml describe: PKI, config.yml and database on the
# first start, `ziti agent cluster init` on the first node (ZITI_PWD set),
# the root CA taken from ZITI_CLUSTER_NODE_PKI on the others.  This adds:
#
#  1. The `health-checks` API binding in config.yml, in place before the
#     controller first starts.  quorumgate finds the leader with
#     GET /health-checks/controller/raft (200 leader, 429 follower), and
#     `ziti create config controller` does not bind that API.  A config.yml
#     that binds it already is left alone.
#  2. With ZITI_CLUSTER_JOIN_ADDRESS (tls:host:port of a member) set: the
#     join.  Once this node's agent answers, `ziti agent cluster add
#     <that address>` runs on this node, as the image's own docker test does
#     for its second and third controller, retried until the cluster takes
#     it.  Success leaves .quorumgate-joined in ZITI_HOME (the compose
#     healthcheck tests it); raft keeps the membership over restarts, so a
#     node that has the file does not join again.
#
# compose: entrypoint [/bin/bash, this file], command [run, config.yml]
# Tests source this file (nothing runs then) and call its functions.

set -o errexit -o nounset -o pipefail

JOINED_MARKER=.quorumgate-joined
: "${ZITI_CLUSTER_JOIN_TRIES:=100}"   # 3 s apart
: "${ZITI_CLUSTER_JOIN_DELAY:=3}"
: "${ZITI_ENTRYPOINT:=/entrypoint.bash}"   # the image's; tests point elsewhere

# add_health_checks_binding FILE
# Inserts "- binding: health-checks" right before the edge-client binding
# (same indentation, so it joins the same web listener's apis), unless a
# health-checks binding exists.  Pure bash: nothing else in the image is
# needed.  Fails, changing nothing, when FILE has no edge-client binding.
add_health_checks_binding() {
  local file=$1 line indent inserted=0
  local has_re='^[[:space:]]*-[[:space:]]+binding:[[:space:]]*["'\'']?health-checks["'\'']?[[:space:]]*(#.*)?$'
  local client_re='^([[:space:]]*)-[[:space:]]+binding:[[:space:]]*["'\'']?edge-client["'\'']?[[:space:]]*(#.*)?$'
  local -a lines=()
  while IFS= read -r line || [[ -n $line ]]; do
    if [[ $line =~ $has_re ]]; then
      return 0
    fi
    lines+=("$line")
  done <"$file"
  local tmp="$file.health-checks.$$"
  : >"$tmp"
  for line in "${lines[@]}"; do
    if (( !inserted )) && [[ $line =~ $client_re ]]; then
      indent=${BASH_REMATCH[1]}
      printf '%s- binding: health-checks\n%s  options: { }\n' "$indent" "$indent" >>"$tmp"
      inserted=1
    fi
    printf '%s\n' "$line" >>"$tmp"
  done
  if (( !inserted )); then
    rm -f "$tmp"
    echo "ERROR: ${file} has no edge-client API binding to put health-checks next to" >&2
    return 1
  fi
  cat "$tmp" >"$file"   # keeps the file's owner and mode
  rm -f "$tmp"
  echo "INFO: added the health-checks API binding to ${file}"
}

# join_cluster CONTROLLER_PID
join_cluster() {
  local child=$1 out tries=0
  if [[ -e $JOINED_MARKER ]]; then
    echo "INFO: member of the cluster already (${PWD}/${JOINED_MARKER})"
    return 0
  fi
  until out=$(ziti agent cluster add "${ZITI_CLUSTER_JOIN_ADDRESS}" 2>&1); do
    if [[ $out == *"already initialized"* ]]; then
      break   # a member already (joined before the marker was written)
    fi
    if ! kill -0 "$child" 2>/dev/null; then
      return 1
    fi
    if (( ++tries >= ZITI_CLUSTER_JOIN_TRIES )); then
      echo "ERROR: could not join the cluster at ${ZITI_CLUSTER_JOIN_ADDRESS}: ${out}" >&2
      return 1
    fi
    echo "INFO: joining ${ZITI_CLUSTER_JOIN_ADDRESS}: not yet (${out//$'\n'/ }); retrying" >&2
    sleep "${ZITI_CLUSTER_JOIN_DELAY}"
  done
  : >"$JOINED_MARKER"
  echo "INFO: joined the cluster at ${ZITI_CLUSTER_JOIN_ADDRESS} ${out//$'\n'/ }"
}

main() {
  cd "${ZITI_HOME:-/ziti-controller}"
  if ! (( $# )) || [[ $1 == run && -z ${2:-} ]]; then
    set -- run config.yml   # the image entrypoint's own default
  fi
  local config=${2:-config.yml}
  if [[ ${1} == run && ! -s ${config} && ${ZITI_BOOTSTRAP:-} == true ]]; then
    # First start: the image's bootstrap writes PKI and config.yml now;
    # /entrypoint.bash finds them and goes on with the rest.  bootstrap.bash
    # writes debug output to fd 3, as /entrypoint.bash sets it up.
    if (( ${DEBUG:-0} )); then exec 3>&1; else exec 3>/dev/null; fi
    # shellcheck disable=SC1090
    source "${ZITI_CTRL_BOOTSTRAP_BASH:-/bootstrap.bash}"
    bootstrap "${config}"
  fi
  if [[ ${1} == run && -s ${config} ]]; then
    add_health_checks_binding "${config}"
  fi
  if [[ -z ${ZITI_CLUSTER_JOIN_ADDRESS:-} ]]; then
    exec "${ZITI_ENTRYPOINT}" "$@"
  fi

  "${ZITI_ENTRYPOINT}" "$@" &
  local child=$! rc=0
  # PID 1 here: pass docker stop's SIGTERM on, then wait for the exit.
  trap 'kill -TERM "${child}" 2>/dev/null || true' TERM INT
  join_cluster "${child}" &
  local joiner=$!
  while :; do
    wait "${child}" && rc=0 || rc=$?
    kill -0 "${child}" 2>/dev/null || break
  done
  kill "${joiner}" 2>/dev/null || true
  exit "${rc}"
}

if [[ ${BASH_SOURCE[0]} == "${0}" ]]; then
  main "$@"
fi
