"""docker/compose.yml, without a Docker engine.

`docker compose config` (or Debian's docker-compose 1.29); always a PyYAML parse
with every bind mount, build context and env_file present, every variable
defaulted and documented in docker/.env.example, images pinned, the start
order, the cluster bootstrap and join as the openziti/ziti-controller image
documents them, and the quorumgate, Redis and Prometheus wiring consistent
with docker/quorumgate.yaml and docker/prometheus.yml (promtool).
"""
import os
import re
import shutil
import subprocess
from pathlib import PurePosixPath

import pytest
import yaml

from tests.docker.helpers import (COMPOSE, CONTROLLERS, DOCKER, ENV_EXAMPLE, ROOT, VAR, compose,
                                  dockerfile_has_healthcheck, env_example, env_of, image_config,
                                  image_config_path, image_tag, is_bind, port_of, raw_compose,
                                  volume_mounts, walk_strings)


def _compose_cli(tmp_path):
    """The compose command line to validate with, and the file to give it:
    the docker compose plugin with the file as it is, else Debian's
    docker-compose 1.29 (scripts/install-deps.sh installs it; the stack tier
    runs the file with it) with the top-level `name:` taken out, which 1.29
    rejects and docker/test-stack.sh gives with -p instead."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"], COMPOSE
    assert shutil.which("docker-compose"), "neither the docker compose plugin nor docker-compose is installed"
    text = COMPOSE.read_text()
    stripped = re.sub(r"(?m)^name:.*\n", "", text)
    assert stripped != text, "docker/compose.yml has no top-level name: line any more"
    f = tmp_path / "compose.yml"
    f.write_text(stripped)
    return ["docker-compose", "-p", "quorumgate", "--project-directory", str(DOCKER)], f


def test_compose_config_validates(tmp_path):
    cli, path = _compose_cli(tmp_path)
    clean = {k: v for k, v in os.environ.items() if k not in env_example()}
    empty = tmp_path / "empty.env"
    empty.write_text("")
    for env_file in (empty, ENV_EXAMPLE):
        r = subprocess.run([*cli, "-f", str(path), "--env-file", str(env_file), "config", "--quiet"],
                           capture_output=True, text=True, env=clean, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr


def test_compose_parses_and_references_only_existing_files():
    c = compose()
    assert set(c["services"]) == {"ziti-volumes", *CONTROLLERS, "quorumgate-init", "redis",
                                  "quorumgate", "prometheus", "grafana"}, set(c["services"])
    declared = set(c.get("volumes") or {})
    used = set()
    for name, svc in c["services"].items():
        assert "image" in svc, name
        b = svc.get("build")
        if b:
            ctx = DOCKER / (b if isinstance(b, str) else b.get("context", "."))
            assert ctx.is_dir(), "%s: build context %s" % (name, ctx)
            if isinstance(b, dict) and b.get("dockerfile"):
                assert (ctx / b["dockerfile"]).is_file(), "%s: %s" % (name, b["dockerfile"])
        for f in ([svc["env_file"]] if isinstance(svc.get("env_file"), str) else svc.get("env_file", [])):
            p = f if isinstance(f, str) else f["path"]
            assert (DOCKER / p).is_file(), "%s: env_file %s" % (name, p)
        for src, tgt, _ in volume_mounts(svc):
            assert tgt.startswith("/"), (name, tgt)
            if is_bind(src):
                assert (DOCKER / src).exists(), "%s mounts %s, which does not exist" % (name, src)
                assert (DOCKER / src).resolve().is_relative_to(ROOT), (name, src)
            else:
                assert src in declared, "%s: volume %s is not declared" % (name, src)
                used.add(src)
    assert used == declared, "declared but unused volumes: %s" % (declared - used)


def test_compose_variables_have_defaults_and_are_documented():
    raw = raw_compose()
    defaults = {}
    for s in walk_strings(raw):
        for m in VAR.finditer(s):
            if m.group(0) == "$$":
                continue
            name = m.group(1) or m.group(4)
            assert m.group(2) in (":-", "-"), "${%s} has no default: %s" % (name, s)
            assert "$" not in (m.group(3) or ""), "nested default in %s" % s
            defaults.setdefault(name, set()).add(m.group(3))
    example = env_example()
    assert set(defaults) == set(example), (
        "compose.yml and .env.example disagree: only in compose %s, only in .env.example %s"
        % (set(defaults) - set(example), set(example) - set(defaults)))
    for name, ds in defaults.items():
        assert len(ds) == 1, "%s has several defaults: %s" % (name, ds)
        assert example[name] == next(iter(ds)), (
            "%s: .env.example says %r, compose.yml defaults to %r" % (name, example[name], ds))
    # the .env.example values give the same file as no .env at all
    assert compose(example) == compose({})


def test_compose_images_are_pinned():
    for name, svc in compose()["services"].items():
        if svc.get("build"):
            continue
        tag = image_tag(svc["image"])
        assert tag and tag != "latest", "%s: image %s has no version tag" % (name, svc["image"])
    ctrl = compose()["services"]["ziti-controller1"]["image"]
    assert ctrl.rpartition(":")[0].endswith("openziti/ziti-controller"), ctrl
    version = tuple(int(x) for x in re.match(r"v?(\d+)\.(\d+)\.(\d+)", image_tag(ctrl)).groups())
    assert version >= (2, 0, 0), "cluster bootstrap and join in the image arrived in 2.0.0"


def test_compose_start_order():
    c = compose()
    svcs = c["services"]

    def deps(name):
        d = svcs[name].get("depends_on", {})
        assert isinstance(d, dict), "%s: depends_on needs conditions" % name
        return {k: v["condition"] for k, v in d.items()}

    healthy, done = "service_healthy", "service_completed_successfully"
    assert deps("ziti-controller1") == {"ziti-volumes": done}
    for n in CONTROLLERS[1:]:
        assert deps(n) == {"ziti-volumes": done, "ziti-controller1": healthy}, n
    assert deps("quorumgate-init") == {"ziti-controller1": healthy}
    assert deps("quorumgate") == {"quorumgate-init": done, "redis": healthy,
                                  **{n: healthy for n in CONTROLLERS}}
    assert deps("prometheus") == {"quorumgate": healthy}
    for name in svcs:
        for dep, cond in deps(name).items():
            if cond == healthy:
                has = "healthcheck" in svcs[dep] or (
                    svcs[dep].get("build", {}).get("dockerfile") == "docker/Dockerfile"
                    and dockerfile_has_healthcheck())
                assert has, "%s waits for %s to be healthy, which has no healthcheck" % (name, dep)
            if cond == done:
                assert svcs[dep].get("restart", "no") == "no", (
                    "%s must run once: %s waits for it to complete" % (dep, name))


def test_compose_bootstraps_one_cluster_as_the_image_documents():
    svcs = compose()["services"]
    first = [n for n in CONTROLLERS if env_of(svcs[n]).get("ZITI_BOOTSTRAP_CLUSTER") == "true"]
    assert first == ["ziti-controller1"], first
    e1 = env_of(svcs["ziti-controller1"])
    assert e1.get("ZITI_PWD"), "the first node initialises the cluster with ZITI_PWD"
    assert "ZITI_CLUSTER_NODE_PKI" not in e1 and "ZITI_CLUSTER_JOIN_ADDRESS" not in e1
    vol1 = [s for s, t, _ in volume_mounts(svcs["ziti-controller1"]) if t == "/ziti-controller"]
    assert len(vol1) == 1 and not is_bind(vol1[0])
    join = "tls:%s:%s" % (e1["ZITI_CTRL_ADVERTISED_ADDRESS"], e1["ZITI_CTRL_ADVERTISED_PORT"])
    names = set()
    for n in CONTROLLERS:
        svc, e = svcs[n], env_of(svcs[n])
        names.add(e["ZITI_CLUSTER_NODE_NAME"])
        assert e["ZITI_CTRL_ADVERTISED_ADDRESS"] == n, "the advertised address is the service name"
        for k in ("ZITI_BOOTSTRAP", "ZITI_BOOTSTRAP_PKI", "ZITI_BOOTSTRAP_CONFIG"):
            assert e.get(k) == "true", (n, k)
        assert svc["entrypoint"] == ["/bin/bash", "/quorumgate/ziti-controller.bash"], n
        assert ("./ziti/ziti-controller.bash", "/quorumgate/ziti-controller.bash", True) in \
            volume_mounts(svc), n
        assert svc["command"] == ["run", "config.yml"], n
        if n == "ziti-controller1":
            continue
        assert e.get("ZITI_BOOTSTRAP_CLUSTER") == "false" and not e.get("ZITI_PWD"), n
        assert e["ZITI_CLUSTER_JOIN_ADDRESS"] == join, n
        pki = PurePosixPath(e["ZITI_CLUSTER_NODE_PKI"])
        mount = [(t, ro) for s, t, ro in volume_mounts(svc) if s == vol1[0]]
        assert len(mount) == 1 and mount[0][1], "%s mounts the first node's volume read-only" % n
        assert pki == PurePosixPath(mount[0][0]) / "pki", (n, pki, mount)
        assert ".quorumgate-joined" in " ".join(svc["healthcheck"]["test"]), n
    assert len(names) == 3


def test_compose_wiring_agrees_with_quorumgate_and_prometheus_configs():
    c = compose()
    svcs = c["services"]
    cfg = image_config()

    # controllers: raft member id = node name, url = advertised address and port
    want = [{"id": env_of(svcs[n])["ZITI_CLUSTER_NODE_NAME"],
             "url": "https://%s:%s" % (env_of(svcs[n])["ZITI_CTRL_ADVERTISED_ADDRESS"],
                                       env_of(svcs[n])["ZITI_CTRL_ADVERTISED_PORT"])}
            for n in CONTROLLERS]
    assert cfg["controllers"] == want
    assert "server_name" not in cfg["upstream"]["tls"], (
        "each controller's certificate names its own advertised address")

    qg = svcs["quorumgate"]
    mounts = volume_mounts(qg)
    conf_dir = str(PurePosixPath(image_config_path()).parent)
    conf_mount = [s for s, t, _ in mounts if t == conf_dir]
    assert conf_mount == ["quorumgate-config"], "the default QG_CONFIG is the init's volume"
    init = svcs["quorumgate-init"]
    assert ("quorumgate-config", conf_dir, False) in volume_mounts(init)
    assert ("./quorumgate.yaml", "/quorumgate/quorumgate.yaml", True) in volume_mounts(init)
    script = [s for s, t, _ in volume_mounts(init) if t == init["entrypoint"][-1]]
    assert script and (DOCKER / script[0]).is_file()
    assert env_of(init)["ZITI_PWD"] == env_of(svcs["ziti-controller1"])["ZITI_PWD"]
    assert env_of(init)["QG_UID"] == str(qg["build"]["args"]["QG_UID"])

    # Redis: quorumgate's unix socket is the one redis-server creates
    addr = cfg["redis"]["address"]
    assert addr.startswith("unix:/"), addr
    sock = PurePosixPath(addr[len("unix:"):])
    qg_vol = [s for s, t, _ in mounts if PurePosixPath(t) == sock.parent]
    assert len(qg_vol) == 1 and not is_bind(qg_vol[0]), (sock, mounts)
    redis = svcs["redis"]
    cmd = redis["command"]
    rsock = PurePosixPath(cmd[cmd.index("--unixsocket") + 1])
    assert rsock.name == sock.name
    assert (qg_vol[0], str(rsock.parent)) in [(s, t) for s, t, _ in volume_mounts(redis)]
    assert cmd[cmd.index("--port") + 1] == "0", "Redis answers on the socket only"
    assert str(rsock) in redis["healthcheck"]["test"]

    # published ports: the listener and the admin port; public_url matches
    published = {}
    for p in qg["ports"]:
        host_ip, host_port, container = p.rsplit(":", 2) if p.count(":") >= 2 else ("", *p.split(":"))
        published[int(container.split("/")[0])] = int(host_port)
    lport = port_of(cfg["listeners"][0]["address"])
    aport = port_of(cfg["admin"]["address"])
    assert set(published) == {lport, aport}, published
    public = re.match(r"https://localhost:(\d+)$", cfg["public_url"])
    assert public and int(public.group(1)) == published[lport], (cfg["public_url"], published)

    # Prometheus scrapes the admin port of the quorumgate service, with the
    # repository's alert rules mounted where rule_files points
    prom = svcs["prometheus"]
    cfile = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    pmounts = {t: s for s, t, _ in volume_mounts(prom)}
    pconf = yaml.safe_load((DOCKER / pmounts[cfile]).read_text())
    jobs = {j["job_name"]: j for j in pconf["scrape_configs"]}
    assert set(jobs) == {"quorumgate"}, "the alert rules read job=\"quorumgate\""
    targets = [t for sc in jobs["quorumgate"]["static_configs"] for t in sc["targets"]]
    assert targets == ["quorumgate:%d" % aport], targets
    assert jobs["quorumgate"].get("metrics_path", "/metrics") == "/metrics"
    for rf in pconf["rule_files"]:
        tgt = str(PurePosixPath(cfile).parent / rf)
        assert tgt in pmounts, "rule file %s is not mounted" % tgt
        assert (DOCKER / pmounts[tgt]).resolve() == ROOT / "metrics/prometheus/alerts.yml"


def test_compose_prometheus_config_passes_promtool(tmp_path):
    exe = shutil.which("promtool")
    assert exe, "promtool is not installed (apt-get install prometheus)"
    prom = compose()["services"]["prometheus"]
    cfile = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    root = tmp_path / "container"
    for src, tgt, _ in volume_mounts(prom):
        if is_bind(src):
            dst = root / tgt.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(DOCKER / src, dst)
    conf = root / cfile.lstrip("/")
    r = subprocess.run([exe, "check", "config", conf.name], cwd=conf.parent,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 rule files found" in r.stdout + r.stderr
