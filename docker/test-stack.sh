#!/usr/bin/env bash
# docker/test-stack.sh - runs docker/compose.yml for real, with podman, and
# checks it end to end (tests/docker/stack_check.py).  From the repository
# root, as root (podman runs rootful here):
#
#   docker/test-stack.sh                  # build what is missing, up, check, down
#   QG_STACK_KEEP=1 docker/test-stack.sh  # leave the stack running (teardown: see the end)
#
# No registry holds images here, so every image is built on this machine:
#   localhost/debian:bookworm-slim          debootstrap --variant=minbase bookworm, imported
#   localhost/quorumgate:local              docker/Dockerfile, unchanged (the compose file's build)
#   localhost/quorumgate-test/ziti-controller:v1.7.2
#                                           `ziti` v1.7.2 built from source by ../shared/ziti/build.sh,
#                                           with the vendor image's own scripts and ENV lines
#                                           from the same source archive
#   localhost/quorumgate-test/redis:bookworm, .../prometheus:bookworm
#                                           Debian 12's redis-server and prometheus packages
# The compose file runs unchanged except for the image names, given through
# its own variables (ZITI_CONTROLLER_IMAGE, QUORUMGATE_IMAGE, REDIS_IMAGE,
# PROMETHEUS_IMAGE), and its top-level `name:`, which docker-compose 1.29
# rejects: the project name is given with -p instead.  docker-compose 1.29
# talks to a podman API socket this script starts (podman-compose 1.x skips
# the service_healthy conditions on podman 4.3).  Podman times health
# checks with systemd, which this machine does not run: the script runs
# `podman healthcheck run` every 3 s for the stack's containers instead.
#
# Caches (a fresh machine builds everything; later runs reuse):
#   ${QG_STACK_CACHE:-~/.cache/quorumgate-docker}/bookworm-minbase.tar.gz  the debootstrap rootfs
#   podman's image store: the five images (a rebuild reuses unchanged layers;
#   the controller image is rebuilt only when its inputs change)
# Network: published ports on 127.0.0.1 only (8443, 9901, 9090: they must
# be free); everything else stays on the compose project's own network.
# At the end (also on failure or Ctrl-C) the project's containers,
# volumes and network are removed by name, and the processes this script
# started are stopped by PID.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
here=$root/docker/test-stack
cache=${QG_STACK_CACHE:-$HOME/.cache/quorumgate-docker}
project=${QG_STACK_PROJECT:-qgstacktest}
ziti_version=${QG_STACK_ZITI_VERSION:-v1.7.2}   # the archive and binary ../shared/ziti has
ctrl_image=localhost/quorumgate-test/ziti-controller:$ziti_version
redis_image=localhost/quorumgate-test/redis:bookworm
prom_image=localhost/quorumgate-test/prometheus:bookworm
qg_image=localhost/quorumgate:local
base_image=localhost/debian:bookworm-slim
ziti_pwd=stack-test-$RANDOM$RANDOM
export CONTAINERS_CONF=$here/containers.conf

t0=$SECONDS
step() { printf '== [%4ds] %s\n' $((SECONDS - t0)) "$*"; }
die() { echo "test-stack: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (rootful podman)"

# --- packages ------------------------------------------------------------
# iptables: netavark (podman 4.3's network backend) runs it to set up the bridge; without it
# `compose up` fails with "netavark: No such file or directory" (a fresh Debian 12 machine)
pkgs=(podman runc netavark aardvark-dns iptables debootstrap docker-compose python3 curl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  step "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for port in 8443 9901 9090; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "127.0.0.1:$port is in use; the stack publishes it"
  fi
done

run=$(mktemp -d /tmp/qg-stack.XXXXXX)
service_pid= timer_pid=
compose=(docker-compose -p "$project" --project-directory "$root/docker"
         --env-file "$run/empty.env" -f "$run/compose.yml")

teardown() {
  local rc=$?
  set +e
  if (( rc != 0 )) && [[ -S $run/podman.sock ]]; then
    step "FAILED (exit $rc): state and logs"
    podman ps -a --filter "label=com.docker.compose.project=$project" \
      --format '{{.Names}}  {{.Status}}'
    for c in $(podman ps -a --filter "label=com.docker.compose.project=$project" --format '{{.Names}}'); do
      echo "---- $c (last 40 lines)"
      podman logs --tail 40 "$c" 2>&1
    done
  fi
  if [[ -z ${QG_STACK_KEEP:-} ]]; then
    step "teardown: project $project"
    if [[ -S $run/podman.sock ]]; then
      DOCKER_HOST=unix://$run/podman.sock "${compose[@]}" down -v --remove-orphans -t 20 >/dev/null 2>&1
    fi
    # whatever compose left (by name: the project's label, volumes, network)
    for c in $(podman ps -a --filter "label=com.docker.compose.project=$project" --format '{{.ID}}'); do
      podman rm -f -t 5 "$c" >/dev/null 2>&1
    done
    for v in $(podman volume ls --filter "label=com.docker.compose.project=$project" --format '{{.Name}}'); do
      podman volume rm -f "$v" >/dev/null 2>&1
    done
    podman network rm -f "${project}_default" >/dev/null 2>&1
  else
    step "kept: DOCKER_HOST=unix://$run/podman.sock ${compose[*]} down -v"
  fi
  [[ -n $timer_pid ]] && kill "$timer_pid" 2>/dev/null
  if [[ -n $service_pid && -z ${QG_STACK_KEEP:-} ]]; then
    kill "$service_pid" 2>/dev/null
    wait "$service_pid" 2>/dev/null
  fi
  [[ -z ${QG_STACK_KEEP:-} ]] && rm -rf "$run"
  step "done (exit $rc)"
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# --- the OpenZiti source: binary and the vendor's image scripts -------------
build_sh=${QG_ZITI_BUILD_SH:-}
if [[ -z $build_sh ]]; then
  for d in "$root/../shared/ziti" "$root/../../shared/ziti" /work/shared/ziti; do
    [[ -x $d/build.sh ]] && { build_sh=$d/build.sh; break; }
  done
fi
[[ -n $build_sh && -x $build_sh ]] || die "no ../shared/ziti/build.sh (set QG_ZITI_BUILD_SH)"
archive=$(dirname "$build_sh")/ziti-$ziti_version.tar.gz
step "ziti $ziti_version ($build_sh)"
ziti=$("$build_sh" "$ziti_version")

# --- base image ---------------------------------------------------------------
if ! podman image exists "$base_image"; then
  mkdir -p "$cache"
  if [[ ! -s $cache/bookworm-minbase.tar.gz ]]; then
    step "debootstrap bookworm (minbase)"
    debootstrap --variant=minbase bookworm "$run/rootfs" http://deb.debian.org/debian >"$run/debootstrap.log" 2>&1 \
      || { tail -20 "$run/debootstrap.log" >&2; die "debootstrap failed"; }
    rm -rf "$run/rootfs/var/cache/apt/archives/"*.deb "$run/rootfs/var/lib/apt/lists/"*
    tar -C "$run/rootfs" --numeric-owner -c . | gzip -1 >"$cache/bookworm-minbase.tar.gz.tmp"
    mv "$cache/bookworm-minbase.tar.gz.tmp" "$cache/bookworm-minbase.tar.gz"
    rm -rf "$run/rootfs"
  fi
  step "import $base_image"
  podman import -q "$cache/bookworm-minbase.tar.gz" "$base_image" >/dev/null
fi

# build IMAGE LABEL-HASH ARGS...: podman build unless IMAGE carries that hash
build() {
  local image=$1 hash=$2; shift 2
  if [[ $(podman image inspect --format '{{index .Labels "qg.inputs"}}' "$image" 2>/dev/null) == "$hash" ]]; then
    step "$image: up to date"
    return 0
  fi
  step "build $image"
  podman build -q --pull=never --network host --format docker --label "qg.inputs=$hash" \
    -t "$image" "$@" >"$run/build.log" 2>&1 || { tail -30 "$run/build.log" >&2; die "building $image failed"; }
}
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# quorumgate: docker/Dockerfile as is, the repository root as context
qg_paths=(CMakeLists.txt base config io metrics retry routing consistency proxy cmake docs examples
          packaging scripts/install-deps.sh docker/quorumgate.yaml docker/Dockerfile
          docker/Dockerfile.dockerignore)
qg_inputs=$(git ls-files -s -- "${qg_paths[@]}" | sha256sum | cut -c1-16)
if [[ -n $(git status --porcelain -- "${qg_paths[@]}") ]]; then
  qg_inputs=dirty-$(date +%s)   # uncommitted changes: let podman's layer cache decide
fi
build "$qg_image" "$qg_inputs" --ignorefile docker/Dockerfile.dockerignore -f docker/Dockerfile .

build "$redis_image" "$(hash_of "$here/redis.Containerfile" "$here/redis-entrypoint.sh")" \
  -f "$here/redis.Containerfile" "$here"
build "$prom_image" "$(hash_of "$here/prometheus.Containerfile")" -f "$here/prometheus.Containerfile" "$here"

# controller: the vendor's scripts and ENV lines from the source archive
ctx=$run/ctrl
mkdir -p "$ctx"
prefix=ziti-$ziti_version
tar -xzf "$archive" -C "$ctx" --strip-components=1 \
  "$prefix/dist/dist-packages/linux/openziti-controller/bootstrap.bash" \
  "$prefix/dist/dist-packages/linux/openziti-controller/entrypoint.bash" \
  "$prefix/dist/docker-images/ziti-controller/Dockerfile"
cp "$ctx/dist/dist-packages/linux/openziti-controller/"{bootstrap,entrypoint}.bash "$ctx/"
chmod 0755 "$ctx/entrypoint.bash" "$ctx/bootstrap.bash"
grep -E '^ENV ' "$ctx/dist/docker-images/ziti-controller/Dockerfile" >"$ctx/vendor.env"
[[ -s $ctx/vendor.env ]] || die "no ENV lines in the vendor's Dockerfile"
awk -v envfile="$ctx/vendor.env" '
  /^# @VENDOR_ENV@$/ { while ((getline l < envfile) > 0) print l; next } { print }
' "$here/ziti-controller.Containerfile" >"$ctx/Containerfile"
ln "$ziti" "$ctx/ziti" 2>/dev/null || cp "$ziti" "$ctx/ziti"
build "$ctrl_image" "$( (sha256sum <"$ziti"; cat "$ctx/Containerfile" "$ctx/bootstrap.bash" "$ctx/entrypoint.bash") \
                        | sha256sum | cut -c1-16)" -f "$ctx/Containerfile" "$ctx"

# --- compose up -----------------------------------------------------------
sed '/^name: quorumgate$/d' docker/compose.yml >"$run/compose.yml"
grep -q '^name:' "$run/compose.yml" && die "docker/compose.yml's name line changed; adjust this script"
: >"$run/empty.env"   # not docker/.env: the defaults of the compose file
export ZITI_CONTROLLER_IMAGE=$ctrl_image QUORUMGATE_IMAGE=$qg_image REDIS_IMAGE=$redis_image \
       PROMETHEUS_IMAGE=$prom_image ZITI_PWD=$ziti_pwd
export DOCKER_HOST=unix://$run/podman.sock

step "podman API socket"
podman system service --time=0 "$DOCKER_HOST" >"$run/podman-service.log" 2>&1 &
service_pid=$!
for ((i = 0; i < 100; i++)); do [[ -S $run/podman.sock ]] && break; sleep 0.1; done
[[ -S $run/podman.sock ]] || die "podman system service did not start"

# the health-check timer systemd would be (bounded: 30 min at most)
(
  set +e
  end=$((SECONDS + 1800))
  while (( SECONDS < end )); do
    # (only containers with a health check: their status ends in "(...)")
    podman ps --filter "label=com.docker.compose.project=$project" --format '{{.Names}} {{.Status}}' |
      while read -r name status; do
        [[ $status == *')' ]] && podman healthcheck run "$name" </dev/null >/dev/null 2>&1
      done
    sleep 3   # the compose file's shortest interval
  done
) &
timer_pid=$!

step "compose up"
"${compose[@]}" down -v --remove-orphans >/dev/null 2>&1 || true   # leftovers of an interrupted run
# (bounded: compose waits for health without a limit of its own)
# Every service but grafana: Debian has no Grafana package to build its
# image from, and no registry is reachable here.
services=$("${compose[@]}" config --services | grep -vx grafana)
# shellcheck disable=SC2086
timeout 600 "${compose[@]}" up -d --no-build $services 2>&1 | sed 's/^/   /'
"${compose[@]}" ps

# --- checks -------------------------------------------------------------------
ctrl_args=()
for n in 1 2 3; do
  c=$(podman ps --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=ziti-controller$n" --format '{{.Names}}')
  ctrl_args+=(--controller "ziti-controller$n=$c")
done
qg_ctr=$(podman ps --filter "label=com.docker.compose.project=$project" \
           --filter "label=com.docker.compose.service=quorumgate" --format '{{.Names}}')
podman exec "$qg_ctr" cat /etc/quorumgate/ctrl-ca.pem >"$run/ctrl-ca.pem"
step "generated controller configuration (ziti-controller1): web APIs bound"
c1=$(podman ps --filter "label=com.docker.compose.project=$project" \
       --filter "label=com.docker.compose.service=ziti-controller1" --format '{{.Names}}')
podman exec "$c1" grep -E '^[[:space:]]*- binding:' /ziti-controller/config.yml | sed 's/^ */   /'

step "checks (tests/docker/stack_check.py)"
python3 -m tests.docker.stack_check --ca "$run/ctrl-ca.pem" --password "$ziti_pwd" "${ctrl_args[@]}" \
  --compose "${compose[*]}" --timeout 120
step "stack checks passed"
