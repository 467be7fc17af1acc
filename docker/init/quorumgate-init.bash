#!/usr/bin/env bash
# quorumgate-init.bash - fills the quorumgate-config volume of
# docker/compose.yml before quorumgate starts.  Runs on every `up`, as root,
# in the openziti/ziti-controller image (for the ziti CLI and bash), with
# ziti-controller1's volume mounted read-only.  It writes, into QG_INIT_OUT:
#
#   quorumgate.yaml   a copy of docker/quorumgate.yaml (the image's own file)
#   ctrl-ca.pem       the cluster's root CA (every controller chains to it)
#   hmac.key          64 random hex digits, made once and kept
#   mgmt.password     ZITI_PWD, for gate.management (the default admin)
#   tls/server.pem    quorumgate's server certificate chain, issued once by
#   tls/server.key    the cluster's intermediate CA (so clients trust one
#                     CA, ctrl-ca.pem), renewed when older than 300 days
#
# and hands them to QG_UID (keys 0600, the rest 0644).  Paths can be moved
# with QG_INIT_* for tests; the defaults are the compose mounts.

set -o errexit -o nounset -o pipefail

: "${QG_INIT_PKI:=/ctrl1/pki}"                          # ziti-controller1's PKI
: "${QG_INIT_CONFIG:=/quorumgate/quorumgate.yaml}"      # docker/quorumgate.yaml
: "${QG_INIT_OUT:=/etc/quorumgate}"                     # the config volume
: "${QG_UID:=10001}"
: "${QG_TLS_DNS:=localhost,quorumgate}"                 # names in the certificate
: "${QG_TLS_IP:=127.0.0.1,::1}"
: "${ZITI_INTERMEDIATE_FILE:=intermediate}"             # as the controller image names them
: "${ZITI_CA_FILE:=root}"

ca_cert="${QG_INIT_PKI}/${ZITI_CA_FILE}/certs/${ZITI_CA_FILE}.cert"
if [[ ! -s ${ca_cert} ]]; then
  echo "ERROR: no cluster root CA at ${ca_cert}; has ziti-controller1 bootstrapped?" >&2
  exit 1
fi
if [[ -z ${ZITI_PWD:-} ]]; then
  echo "ERROR: ZITI_PWD is empty" >&2
  exit 1
fi

out=${QG_INIT_OUT}
mkdir -p "${out}/tls"

cp "${QG_INIT_CONFIG}" "${out}/quorumgate.yaml"
cp "${ca_cert}" "${out}/ctrl-ca.pem"
printf '%s\n' "${ZITI_PWD}" >"${out}/mgmt.password"

if [[ ! -s ${out}/hmac.key ]]; then
  od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"${out}/hmac.key"
  echo >>"${out}/hmac.key"
  echo "INFO: made ${out}/hmac.key"
fi

renew=0
if [[ ! -s ${out}/tls/server.pem || ! -s ${out}/tls/server.key ]]; then
  renew=1
elif [[ -n $(find "${out}/tls/server.pem" -mtime +300) ]]; then
  renew=1
fi
if (( renew )); then
  # Sign with a copy: the controller's own PKI index stays untouched.
  work=$(mktemp -d)
  trap 'rm -rf "${work}"' EXIT
  cp -R "${QG_INIT_PKI}" "${work}/pki"
  ziti pki create server \
    --pki-root "${work}/pki" \
    --ca-name "${ZITI_INTERMEDIATE_FILE}" \
    --server-file quorumgate \
    --server-name quorumgate \
    --dns "${QG_TLS_DNS}" \
    --ip "${QG_TLS_IP}" \
    --expire-limit 365
  cp "${work}/pki/${ZITI_INTERMEDIATE_FILE}/certs/quorumgate.chain.pem" "${out}/tls/server.pem"
  cp "${work}/pki/${ZITI_INTERMEDIATE_FILE}/keys/quorumgate.key" "${out}/tls/server.key"
  echo "INFO: issued ${out}/tls/server.pem for ${QG_TLS_DNS},${QG_TLS_IP}"
fi

chmod 0755 "${out}" "${out}/tls"
chmod 0644 "${out}/quorumgate.yaml" "${out}/ctrl-ca.pem" "${out}/tls/server.pem"
chmod 0600 "${out}/hmac.key" "${out}/mgmt.password" "${out}/tls/server.key"
if (( $(id -u) == 0 )); then
  chown -R "${QG_UID}:${QG_UID}" "${out}"
fi
echo "INFO: ${out} is ready for quorumgate (uid ${QG_UID})"
