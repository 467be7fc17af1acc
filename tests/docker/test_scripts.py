"""The scripts of the compose stack, run here under bash with stand-ins for
what only the openziti/ziti-controller image has (`ziti`, its bootstrap.bash
and /entrypoint.bash):

- docker/ziti/ziti-controller.bash adds the health-checks API binding before
  the controller first reads config.yml, joins through
  ZITI_CLUSTER_JOIN_ADDRESS until the cluster takes the node, passes SIGTERM
  on and exits with the controller's status;
- docker/init/quorumgate-init.bash fills a directory that `quorumgate -t`
  accepts, keeps the key and certificate over reruns, and fails clearly
  without the cluster CA.
"""
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import yaml

from tests.docker.helpers import DOCKER, image_config, need_binary, referenced_files


WRAPPER = DOCKER / "ziti" / "ziti-controller.bash"


INIT = DOCKER / "init" / "quorumgate-init.bash"

# The shape `ziti create config controller` writes (web listener with its
# API bindings), abbreviated.


SAMPLE_CTRL_CONFIG = """\
v: 3
cluster:
  dataDir:         "/ziti-controller/raft"
web:
  - name: client-management
    bindPoints:
      - interface: 0.0.0.0:1280
        address: ziti-controller2:1280
    apis:
      # binding - required
      - binding: edge-management
        options: { }
      - binding: edge-client
        options: { }
      - binding: fabric
        options: { }
      - binding: edge-oidc
        options: { }
"""


def bash_call(function, *args, cwd=None):
    return subprocess.run(["bash", "-c", 'source "$1" && shift && %s "$@"' % function, "bash",
                           str(WRAPPER), *map(str, args)],
                          capture_output=True, text=True, timeout=30, cwd=cwd)


def test_wrapper_adds_the_health_checks_binding(tmp_path):
    f = tmp_path / "config.yml"
    f.write_text(SAMPLE_CTRL_CONFIG)
    os.chmod(f, 0o600)
    r = bash_call("add_health_checks_binding", f)
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(f.read_text())
    apis = doc["web"][0]["apis"]
    assert [a["binding"] for a in apis] == ["edge-management", "health-checks", "edge-client",
                                           "fabric", "edge-oidc"], apis
    assert all(a["options"] == {} for a in apis), apis
    assert stat.S_IMODE(f.stat().st_mode) == 0o600, "the file keeps its mode"
    once = f.read_text()
    r = bash_call("add_health_checks_binding", f)
    assert r.returncode == 0 and f.read_text() == once, "a second run changes nothing"


def test_wrapper_refuses_a_config_without_edge_client(tmp_path):
    f = tmp_path / "config.yml"
    text = SAMPLE_CTRL_CONFIG.replace("edge-client", "edge-clients")
    f.write_text(text)
    r = bash_call("add_health_checks_binding", f)
    assert r.returncode != 0 and "edge-client" in r.stderr
    assert f.read_text() == text
    assert os.listdir(tmp_path) == ["config.yml"], "no temporary file left"


def test_wrapper_and_init_scripts_are_valid_bash():
    for script in (WRAPPER, INIT):
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    # sourcing the wrapper runs nothing (the tests above rely on it)
    r = subprocess.run(["bash", "-c", 'source "$1"; echo sourced', "bash", str(WRAPPER)],
                       capture_output=True, text=True, timeout=10)
    assert r.stdout.strip() == "sourced", r.stdout + r.stderr


FAKE_ZITI = r"""#!/usr/bin/env bash
# stands in for `ziti pki create server`: same files, signed by the test CA
echo "$*" >>"$FAKE_ZITI_LOG"
[[ "$1 $2 $3" == "pki create server" ]] || exit 2
shift 3
while (( $# )); do
  case $1 in
    --pki-root) root=$2; shift 2 ;;
    --ca-name) ca=$2; shift 2 ;;
    --server-file) name=$2; shift 2 ;;
    *) shift 2 ;;
  esac
done
[[ -s $root/$ca/certs/$ca.cert ]] || { echo "no CA $ca in $root" >&2; exit 1; }
cp "$FAKE_CERT" "$root/$ca/certs/$name.cert"
cat "$FAKE_CERT" "$root/$ca/certs/$ca.cert" >"$root/$ca/certs/$name.chain.pem"
cp "$FAKE_KEY" "$root/$ca/keys/$name.key"
"""


def test_init_fills_a_directory_quorumgate_accepts(tmp_path, certs):
    binary = need_binary()
    pki = tmp_path / "ctrl1" / "pki"
    for d in ("root/certs", "root/keys", "intermediate/certs", "intermediate/keys"):
        (pki / d).mkdir(parents=True)
    shutil.copy(certs["ca"], pki / "root/certs/root.cert")
    shutil.copy(certs["ca"], pki / "intermediate/certs/intermediate.cert")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ziti").write_text(FAKE_ZITI)
    os.chmod(bindir / "ziti", 0o755)
    out = tmp_path / "etc" / "quorumgate"
    log = tmp_path / "ziti.log"
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"]),
               QG_INIT_PKI=str(pki), QG_INIT_CONFIG=str(DOCKER / "quorumgate.yaml"),
               QG_INIT_OUT=str(out), ZITI_PWD="demo-password", QG_UID=str(os.getuid()),
               FAKE_ZITI_LOG=str(log), FAKE_CERT=certs["cert"], FAKE_KEY=certs["key"])

    r = subprocess.run(["bash", str(INIT)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (out / "quorumgate.yaml").read_text() == (DOCKER / "quorumgate.yaml").read_text()
    for rel in referenced_files(image_config()):
        assert (out / rel).is_file(), "the init does not write %s" % rel
    assert (out / "ctrl-ca.pem").read_text() == Path(certs["ca"]).read_text()
    assert (out / "mgmt.password").read_text() == "demo-password\n"
    assert re.fullmatch(r"[0-9a-f]{64}\n", (out / "hmac.key").read_text())
    for secret in ("hmac.key", "mgmt.password", "tls/server.key"):
        assert stat.S_IMODE((out / secret).stat().st_mode) == 0o600, secret
    calls = log.read_text().splitlines()
    assert len(calls) == 1 and "--ca-name intermediate" in calls[0], calls
    assert "--dns localhost,quorumgate" in calls[0] and "--ip 127.0.0.1,::1" in calls[0]
    assert not (pki / "intermediate/certs/quorumgate.cert").exists(), "the controller's PKI is left alone"

    r = subprocess.run([binary, "-t", "-c", str(out / "quorumgate.yaml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr

    # a second `up` keeps the key and the certificate
    key, cert = (out / "hmac.key").read_text(), (out / "tls/server.pem").read_text()
    r = subprocess.run(["bash", str(INIT)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (out / "hmac.key").read_text() == key and (out / "tls/server.pem").read_text() == cert
    assert len(log.read_text().splitlines()) == 1

    # no cluster CA yet: a clear failure, not a half-filled directory
    env["QG_INIT_PKI"] = str(tmp_path / "nothing")
    r = subprocess.run(["bash", str(INIT)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "root CA" in r.stderr


FAKE_BOOTSTRAP = r"""
# stands in for a 2.x image's bootstrap.bash: bootstrap CONFIG writes it;
# clusterInit (which the 2.x entrypoint calls) marks the 2.x scripts
bootstrap() { echo "bootstrap $1" >>"$FAKE_LOG"; printf '%s' "$SAMPLE" >"$1"; }
clusterInit() { :; }
"""


FAKE_ENTRYPOINT = r"""#!/usr/bin/env bash
# stands in for the image's /entrypoint.bash + ziti controller
echo "entrypoint $*" >>"$FAKE_LOG"
cp config.yml "$FAKE_SEEN"          # the config the controller would read
trap 'echo "entrypoint TERM" >>"$FAKE_LOG"; exit 7' TERM
: >"$FAKE_READY"
for ((i = 0; i < 600; i++)); do sleep 0.05; done   # 30 s at most, even if orphaned
exit 9
"""


FAKE_AGENT = r"""#!/usr/bin/env bash
# stands in for `ziti agent cluster add ADDR`: fails twice, then joins
echo "ziti $*" >>"$FAKE_LOG"
[[ "$1 $2 $3" == "agent cluster add" ]] || exit 2
n=$(grep -c '^ziti agent cluster add' "$FAKE_LOG")
if (( n < 3 )); then echo "no processes found matching filter" >&2; exit 1; fi
echo "success"
"""


def wrapper_env(tmp_path, **extra):
    home = tmp_path / "home"
    home.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in (("ziti", FAKE_AGENT), ("entrypoint.bash", FAKE_ENTRYPOINT)):
        (bindir / name).write_text(text)
        os.chmod(bindir / name, 0o755)
    (tmp_path / "bootstrap.bash").write_text(FAKE_BOOTSTRAP)
    env = dict(os.environ, PATH="%s:%s" % (bindir, os.environ["PATH"]), ZITI_HOME=str(home),
               ZITI_BOOTSTRAP="true", ZITI_CTRL_BOOTSTRAP_BASH=str(tmp_path / "bootstrap.bash"),
               ZITI_ENTRYPOINT=str(bindir / "entrypoint.bash"), SAMPLE=SAMPLE_CTRL_CONFIG,
               FAKE_LOG=str(tmp_path / "log"), FAKE_SEEN=str(tmp_path / "seen.yml"),
               FAKE_READY=str(tmp_path / "ready"), ZITI_CLUSTER_JOIN_DELAY="0.05")
    env.pop("ZITI_CLUSTER_JOIN_ADDRESS", None)
    env.update(extra)
    return env, home


def start_wrapper(env, *args):
    """The wrapper in a process group of its own, so stop_group can end
    whatever it started (the stand-in controller, the join loop) by id."""
    return subprocess.Popen(["bash", str(WRAPPER), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def stop_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait()


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_wrapper_joins_and_passes_sigterm_on(tmp_path):
    env, home = wrapper_env(tmp_path, ZITI_CLUSTER_JOIN_ADDRESS="tls:ziti-controller1:1280")
    proc = start_wrapper(env, "run", "config.yml")
    try:
        wait_for(lambda: (home / ".quorumgate-joined").exists())
        # the controller first read a config that already had the binding
        seen = yaml.safe_load((tmp_path / "seen.yml").read_text())
        assert "health-checks" in [a["binding"] for a in seen["web"][0]["apis"]]
        log = (tmp_path / "log").read_text().splitlines()
        # (the join loop and the controller run side by side: no order between them)
        assert log[0] == "bootstrap config.yml" and "entrypoint run config.yml" in log, log
        adds = [l for l in log if l.startswith("ziti ")]
        assert adds == ["ziti agent cluster add tls:ziti-controller1:1280"] * 3, adds
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        stop_group(proc)
    assert proc.returncode == 7, "the wrapper exits with the controller's status\n" + out
    assert "entrypoint TERM" in (tmp_path / "log").read_text(), "SIGTERM reached the controller"
    assert "joined the cluster at tls:ziti-controller1:1280" in out, out

    # a restart: config and marker are there, nothing is bootstrapped or joined again
    (tmp_path / "log").write_text("")
    proc = start_wrapper(env, "run", "config.yml")
    try:
        wait_for(lambda: (tmp_path / "ready").exists())
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        stop_group(proc)
    log = (tmp_path / "log").read_text().splitlines()
    assert log == ["entrypoint run config.yml", "entrypoint TERM"], log
    assert "member of the cluster already" in out, out


def test_wrapper_first_node_execs_the_entrypoint(tmp_path):
    env, home = wrapper_env(tmp_path)
    proc = start_wrapper(env)
    try:
        wait_for(lambda: (tmp_path / "ready").exists())
        # exec: the controller is the process docker stop signals
        cmdline = Path("/proc/%d/cmdline" % proc.pid).read_bytes().split(b"\0")
        assert any(b"entrypoint.bash" in c for c in cmdline), cmdline
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        stop_group(proc)
    assert proc.returncode == 7
    log = (tmp_path / "log").read_text().splitlines()
    assert log == ["bootstrap config.yml", "entrypoint run config.yml", "entrypoint TERM"], log
    assert not (home / ".quorumgate-joined").exists()


FAKE_V1_BOOTSTRAP = r"""
# stands in for a 1.x image's bootstrap.bash (no clusterInit): defaults, and
# bootstrap CONFIG, which records what it was asked to do and writes CONFIG
: "${ZITI_PKI_ROOT:=pki}" "${ZITI_CA_FILE:=root}" "${ZITI_INTERMEDIATE_FILE:=intermediate}"
: "${ZITI_SERVER_FILE:=server}" "${ZITI_CLIENT_FILE:=client}"
trap 'echo "1.x exit trap ran" >>"$FAKE_LOG"' EXIT
bootstrap() {
  echo "bootstrap $1 pki=$ZITI_BOOTSTRAP_PKI db=$ZITI_BOOTSTRAP_DATABASE args=$ZITI_BOOTSTRAP_CONFIG_ARGS" >>"$FAKE_LOG"
  printf '%s' "$SAMPLE" >"$1"
}
"""


FAKE_V1_ZITI = r"""#!/usr/bin/env bash
# stands in for `ziti`: logs the call; `pki create ...` writes the file the
# wrapper checks for, `agent cluster init` succeeds the second time
echo "ziti $*" >>"$FAKE_LOG"
if [[ "$1 $2 $3" == "pki create key" ]]; then
  shift 3
  while (( $# )); do
    case $1 in --pki-root) r=$2 ;; --ca-name) ca=$2 ;; --key-file) k=$2 ;; esac
    shift 2
  done
  mkdir -p "$r/$ca/keys" && echo KEY >"$r/$ca/keys/$k.key"
elif [[ "$1 $2 $3" == "agent cluster init" ]]; then
  (( $(grep -c '^ziti agent cluster init' "$FAKE_LOG") >= 2 )) || { echo "timeout" >&2; exit 1; }
fi
exit 0
"""


FAKE_V1_ENTRYPOINT = r"""#!/usr/bin/env bash
echo "entrypoint $* bootstrap=$ZITI_BOOTSTRAP" >>"$FAKE_LOG"
trap 'echo "entrypoint TERM" >>"$FAKE_LOG"; exit 7' TERM
: >"$FAKE_READY"
for ((i = 0; i < 600; i++)); do sleep 0.05; done
exit 9
"""


def v1_env(tmp_path, **extra):
    env, home = wrapper_env(tmp_path, **extra)
    bindir = tmp_path / "bin"
    (bindir / "ziti").write_text(FAKE_V1_ZITI)
    (bindir / "entrypoint.bash").write_text(FAKE_V1_ENTRYPOINT)
    (tmp_path / "bootstrap.bash").write_text(FAKE_V1_BOOTSTRAP)
    env.update(ZITI_BOOTSTRAP_PKI="true", ZITI_BOOTSTRAP_CONFIG="true", ZITI_BOOTSTRAP_DATABASE="true",
               ZITI_AUTO_RENEW_CERTS="true", ZITI_CTRL_ADVERTISED_ADDRESS="ziti-controller1",
               ZITI_CLUSTER_NODE_NAME="ziti-controller1")
    env.update(extra)
    return env, home


def log_lines(tmp_path):
    f = tmp_path / "log"
    return f.read_text().splitlines() if f.exists() else []


def run_until_ready(env, tmp_path, until):
    """Runs the wrapper until until(its output so far) holds, then stops it
    with SIGTERM.  The output goes to a file, so the predicate can read it."""
    out_file = tmp_path / "wrapper.out"
    with open(out_file, "w") as out_fd:
        proc = subprocess.Popen(["bash", str(WRAPPER), "run", "config.yml"], env=env, stdout=out_fd,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            wait_for(lambda: until(out_file.read_text()))
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        finally:
            stop_group(proc)
    return proc.returncode, out_file.read_text(), log_lines(tmp_path)


def test_wrapper_bootstraps_a_cluster_with_a_1x_image(tmp_path):
    env, home = v1_env(tmp_path, ZITI_BOOTSTRAP_CLUSTER="true", ZITI_CLUSTER_TRUST_DOMAIN="ziti",
                       ZITI_PWD="pw")
    init = "ziti agent cluster init admin pw Default Admin"
    rc, out, log = run_until_ready(env, tmp_path, lambda out: "initialised the cluster" in out)
    assert log.count(init) == 2, log
    assert rc == 7, out
    pki = [l for l in log if l.startswith("ziti pki")]
    assert pki[0] == "ziti pki create ca --pki-root pki --ca-file root --trust-domain spiffe://ziti", pki
    assert pki[1] == "ziti pki create intermediate --pki-root pki --ca-name root --intermediate-file intermediate"
    assert pki[2].startswith("ziti pki create key ")
    assert pki[3].startswith("ziti pki create server ") and pki[4].startswith("ziti pki create client ")
    for leaf in pki[3:5]:
        assert "--spiffe-id controller/ziti-controller1" in leaf, leaf
    assert "--dns localhost,ziti-controller1" in pki[3] and "--ip 127.0.0.1,::1" in pki[3]
    assert "bootstrap config.yml pki=false db=false args=--clustered" in log, log
    assert "entrypoint run config.yml bootstrap=false" in log, log
    assert "1.x exit trap ran" not in log, "the sourced bootstrap's EXIT trap is dropped"
    seen = yaml.safe_load((home / "config.yml").read_text())
    assert "health-checks" in [a["binding"] for a in seen["web"][0]["apis"]]
    assert "initialised the cluster" in out, out

    # restart: leaf certificates renewed with the SPIFFE id, nothing else
    (tmp_path / "log").write_text("")
    (tmp_path / "ready").unlink()
    env["ZITI_PWD"] = ""
    rc, out, log = run_until_ready(env, tmp_path, lambda out: (tmp_path / "ready").exists())
    calls = [l.split(" --")[0] for l in log if l.startswith("ziti ")]
    assert calls == ["ziti pki create server", "ziti pki create client"], log
    assert not any(l.startswith("bootstrap") for l in log), log


def test_wrapper_1x_joiner_takes_the_first_nodes_root_ca(tmp_path):
    first = tmp_path / "ctrl1" / "pki" / "root"
    (first / "certs").mkdir(parents=True)
    (first / "keys").mkdir()
    (first / "certs" / "root.cert").write_text("ROOT CERT\n")
    (first / "keys" / "root.key").write_text("ROOT KEY\n")
    env, home = v1_env(tmp_path, ZITI_BOOTSTRAP_CLUSTER="false", ZITI_CLUSTER_NODE_PKI=str(first.parent),
                       ZITI_CLUSTER_NODE_NAME="ziti-controller2", ZITI_CTRL_ADVERTISED_ADDRESS="ziti-controller2",
                       ZITI_CLUSTER_JOIN_ADDRESS="tls:ziti-controller1:1280")
    rc, out, log = run_until_ready(env, tmp_path, lambda out: "joined the cluster" in out)
    assert (home / "pki/root/certs/root.cert").read_text() == "ROOT CERT\n"
    assert (home / "pki/root/keys/root.key").read_text() == "ROOT KEY\n"
    assert (home / "pki/root/serial").read_text() == "01\n"
    assert not any("pki create ca" in l for l in log), log
    assert any(l.startswith("ziti pki create intermediate") for l in log), log
    assert "ziti agent cluster add tls:ziti-controller1:1280" in log, log
    assert not any("cluster init" in l for l in log), "a joiner does not initialise a cluster"

    # no root CA to take: a clear failure before the controller starts
    other = tmp_path / "other"
    other.mkdir()
    env2, _ = v1_env(other, ZITI_BOOTSTRAP_CLUSTER="false", ZITI_CLUSTER_NODE_PKI=str(tmp_path / "nothing"))
    r = subprocess.run(["bash", str(WRAPPER), "run", "config.yml"], env=env2, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0 and "no root CA" in r.stderr, r.stdout + r.stderr
