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
#  3. Images whose bootstrap.bash cannot make a cluster (1.x: no clusterInit,
#     no ZITI_BOOTSTRAP_CLUSTER or ZITI_CLUSTER_NODE_PKI; the 2.x scripts
#     have them): the same cluster bootstrap the 2.x scripts do, done here
#     with the image's `ziti` and its own makeConfig.  New cluster PKI
#     (root CA with the trust domain) on the first node, the first node's
#     root CA and an intermediate of its own on the others, leaf
#     certificates with the SPIFFE id controller/ZITI_CLUSTER_NODE_NAME
#     (renewed at each start when ZITI_AUTO_RENEW_CERTS=true, as the 2.x
#     image does), config.yml with --clustered, and `ziti agent cluster
#     init` with ZITI_PWD on the first node.  The image's /entrypoint.bash
#     then runs with ZITI_BOOTSTRAP=false (1.x's bootstrap would renew the
#     leaf certificates without the SPIFFE id and look for a `db:` file).
#     docker/test-stack.sh runs the stack this way with v1.7.2.
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

# image_bootstraps_clusters: whether the image's bootstrap.bash makes
# clusters itself (2.x defines clusterInit; 1.x does not).
image_bootstraps_clusters() {
  grep -Eq '^[[:space:]]*(function[[:space:]]+)?clusterInit[[:space:]]*\(\)' \
    "${ZITI_CTRL_BOOTSTRAP_BASH:-/bootstrap.bash}"
}

# source_image_bootstrap: the image's bootstrap.bash for its defaults and
# functions (call in a subshell).  1.x sets an EXIT trap when sourced.
source_image_bootstrap() {
  if (( ${DEBUG:-0} )); then exec 3>&1; else exec 3>/dev/null; fi
  # shellcheck disable=SC1090
  source "${ZITI_CTRL_BOOTSTRAP_BASH:-/bootstrap.bash}"
  trap - EXIT
}

# v1_make_pki: the root CA (new, or the first node's) and this node's
# intermediate, unless there.  Needs the bootstrap defaults (ZITI_PKI_ROOT...).
v1_make_pki() {
  local root=${ZITI_PKI_ROOT} ca=${ZITI_CA_FILE} int=${ZITI_INTERMEDIATE_FILE}
  local ca_dir="${root}/${ca}"
  if [[ ! -s ${ca_dir}/certs/${ca}.cert ]]; then
    if [[ -n ${ZITI_CLUSTER_NODE_PKI:-} ]]; then
      local src="${ZITI_CLUSTER_NODE_PKI}/${ca}"
      if [[ ! -s ${src}/certs/${ca}.cert || ! -s ${src}/keys/${ca}.key ]]; then
        echo "ERROR: no root CA (cert and key) in ${src}; has the first node bootstrapped?" >&2
        return 1
      fi
      mkdir -p "${ca_dir}/certs" "${ca_dir}/keys" "${ca_dir}/crls"
      cp "${src}/certs/${ca}.cert" "${ca_dir}/certs/${ca}.cert"
      cp "${src}/keys/${ca}.key" "${ca_dir}/keys/${ca}.key"
      : >"${ca_dir}/index.txt"
      : >"${ca_dir}/index.txt.attr"
      echo 01 >"${ca_dir}/serial"
      echo 01 >"${ca_dir}/crlnumber"
    elif [[ ${ZITI_BOOTSTRAP_CLUSTER:-} == true ]]; then
      if [[ -z ${ZITI_CLUSTER_TRUST_DOMAIN:-} ]]; then
        echo "ERROR: ZITI_CLUSTER_TRUST_DOMAIN must be set" >&2
        return 1
      fi
      ziti pki create ca --pki-root "${root}" --ca-file "${ca}" \
        --trust-domain "spiffe://${ZITI_CLUSTER_TRUST_DOMAIN}"
    else
      echo "ERROR: set ZITI_BOOTSTRAP_CLUSTER=true (first node) or ZITI_CLUSTER_NODE_PKI (the others)" >&2
      return 1
    fi
  fi
  if [[ ! -s ${root}/${int}/certs/${int}.cert ]]; then
    ziti pki create intermediate --pki-root "${root}" --ca-name "${ca}" --intermediate-file "${int}"
  fi
}

# v1_issue_leaf_certs: server and client certificates of this node, one
# key, SPIFFE id controller/NODE (the raft member id), as 2.x issues them.
v1_issue_leaf_certs() {
  local root=${ZITI_PKI_ROOT} int=${ZITI_INTERMEDIATE_FILE}
  local node=${ZITI_CLUSTER_NODE_NAME:-} addr=${ZITI_CTRL_ADVERTISED_ADDRESS:-}
  if [[ -z ${node} || -z ${addr} ]]; then
    echo "ERROR: ZITI_CLUSTER_NODE_NAME and ZITI_CTRL_ADVERTISED_ADDRESS must be set" >&2
    return 1
  fi
  if [[ ! -s ${root}/${int}/keys/${ZITI_SERVER_FILE}.key ]]; then
    ziti pki create key --pki-root "${root}" --ca-name "${int}" --key-file "${ZITI_SERVER_FILE}"
  fi
  local dns=localhost ip=127.0.0.1,::1
  if [[ ${addr} == *:* || ${addr} =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ ]]; then
    ip+=",${addr}"
  else
    dns+=",${addr}"
  fi
  ziti pki create server --pki-root "${root}" --ca-name "${int}" \
    --key-file "${ZITI_SERVER_FILE}" --server-file "${ZITI_SERVER_FILE}" \
    --server-name "${node}" --dns "${dns}" --ip "${ip}" --allow-overwrite \
    --spiffe-id "controller/${node}" >&3
  ziti pki create client --pki-root "${root}" --ca-name "${int}" \
    --key-file "${ZITI_SERVER_FILE}" --client-file "${ZITI_CLIENT_FILE}" \
    --client-name "${node}" --allow-overwrite --spiffe-id "controller/${node}" >&3
}

# v1_bootstrap CONFIG: first start (PKI, leaf certificates, clustered
# config.yml through the image's makeConfig) or a restart (leaf renewal).
v1_bootstrap() (
  local config=$1
  source_image_bootstrap
  # what 1.x's makePki sets for makeConfig (edge enrollment signer)
  ZITI_PKI_SIGNER_CERT="${ZITI_PKI_ROOT}/${ZITI_INTERMEDIATE_FILE}/certs/${ZITI_INTERMEDIATE_FILE}.cert"
  ZITI_PKI_SIGNER_KEY="${ZITI_PKI_ROOT}/${ZITI_INTERMEDIATE_FILE}/keys/${ZITI_INTERMEDIATE_FILE}.key"
  if [[ ${ZITI_BOOTSTRAP_PKI:-} == true ]]; then
    if [[ ! -s ${config} ]]; then
      v1_make_pki
      v1_issue_leaf_certs
    elif [[ ${ZITI_AUTO_RENEW_CERTS:-} == true ]]; then
      v1_issue_leaf_certs
    fi
  fi
  if [[ ! -s ${config} ]]; then
    ZITI_BOOTSTRAP_PKI=false ZITI_BOOTSTRAP_DATABASE=false
    ZITI_BOOTSTRAP_CONFIG_ARGS="--clustered${ZITI_BOOTSTRAP_CONFIG_ARGS:+ ${ZITI_BOOTSTRAP_CONFIG_ARGS}}"
    bootstrap "${config}"
  fi
)

# v1_cluster_init CONTROLLER_PID: the default admin on a new cluster (the
# first node of a 1.x image; the 2.x entrypoint does this itself).
v1_cluster_init() {
  local child=$1 out tries=0
  until out=$(ziti agent cluster init "${ZITI_USER:-admin}" "${ZITI_PWD}" "${ZITI_USER_NAME:-Default Admin}" 2>&1); do
    if [[ $out == *"already initialized"* ]]; then
      echo "INFO: the cluster has its default admin already"
      return 0
    fi
    if ! kill -0 "$child" 2>/dev/null; then
      return 1
    fi
    if (( ++tries >= ZITI_CLUSTER_JOIN_TRIES )); then
      echo "ERROR: could not initialise the cluster: ${out}" >&2
      return 1
    fi
    sleep "${ZITI_CLUSTER_JOIN_DELAY}"
  done
  echo "INFO: initialised the cluster with the default admin '${ZITI_USER:-admin}'"
}

main() {
  cd "${ZITI_HOME:-/ziti-controller}"
  if ! (( $# )) || [[ $1 == run && -z ${2:-} ]]; then
    set -- run config.yml   # the image entrypoint's own default
  fi
  local config=${2:-config.yml} v1=0
  if ! image_bootstraps_clusters; then
    v1=1
  fi
  if [[ ${1} == run && ${ZITI_BOOTSTRAP:-} == true ]]; then
    if (( v1 )); then
      v1_bootstrap "${config}"
      export ZITI_BOOTSTRAP=false   # done: the 1.x entrypoint only runs ziti
    elif [[ ! -s ${config} ]]; then
      # First start: the image's bootstrap writes PKI and config.yml now;
      # /entrypoint.bash finds them and goes on with the rest.
      ( source_image_bootstrap && bootstrap "${config}" )
    fi
  fi
  if [[ ${1} == run && -s ${config} ]]; then
    add_health_checks_binding "${config}"
  fi
  local task=
  if [[ -n ${ZITI_CLUSTER_JOIN_ADDRESS:-} ]]; then
    task=join_cluster
  elif (( v1 )) && [[ ${1} == run && ${ZITI_BOOTSTRAP_CLUSTER:-} == true \
                     && -z ${ZITI_CLUSTER_NODE_PKI:-} && -n ${ZITI_PWD:-} ]]; then
    task=v1_cluster_init
  fi
  if [[ -z ${task} ]]; then
    exec "${ZITI_ENTRYPOINT}" "$@"
  fi

  "${ZITI_ENTRYPOINT}" "$@" &
  local child=$! rc=0
  # PID 1 here: pass docker stop's SIGTERM on, then wait for the exit.
  trap 'kill -TERM "${child}" 2>/dev/null || true' TERM INT
  "${task}" "${child}" &
  local helper=$!
  while :; do
    wait "${child}" && rc=0 || rc=$?
    kill -0 "${child}" 2>/dev/null || break
  done
  kill "${helper}" 2>/dev/null || true
  exit "${rc}"
}

if [[ ${BASH_SOURCE[0]} == "${0}" ]]; then
  main "$@"
fi
