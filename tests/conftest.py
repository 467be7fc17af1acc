"""Shared pytest fixtures: certificates, redis-server, the controller-cluster
simulator and the quorumgate binary, all on free loopback ports and all
stopped by PID at teardown (also when the test fails).

Fixtures
  certs            session CA + server cert (openssl CLI): ca, cert, key paths
  redis_server     a fresh redis-server (no persistence) -> RedisServer
  redis_sentinels  master + replica + 3 sentinels (redis-server --sentinel)
                   -> SentinelGroup (.config() .failover() .master_address())
  sim_factory      sim_factory(nodes=3, tls=False, args=(), events=True) -> SimProcess
  sim              a 3-node HTTP simulator with alice/bob/admin, fast elections
  quorumgate       factory: quorumgate(overrides=None, sim=None, redis=..., start=True)
                   -> Quorumgate (.url .admin_url .sighup() .sigterm() .stop()
                   .access_log() .error_log() .metrics()); the test fails at
                   teardown on sanitizer reports, assertion failures or crashes.
"""
import os
import secrets
import tempfile

import pytest

from tests.ctrlsim.control import SimProcess
from tests.support.procs import Quorumgate, RedisServer, deep_merge, make_certs
from tests.support.prom import PrometheusServer
from tests.support.scripted_upstream import ScriptedCluster, ScriptedUpstream
from tests.support.sentinel import SentinelGroup

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# identities every simulator starts with: name -> password
IDENTITIES = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "admin": "admin-pw"}

# fast timings so failure tests stay quick (real controllers: 5 s each)
FAST_SIM_ARGS = ["--election-timeout-ms", "300", "--election-delay-ms", "100",
                 "--forward-timeout-ms", "1000", "--apply-wait-timeout-ms", "2000",
                 "--apply-timeout-ms", "2000"]


def _identity_args():
    out = []
    for name, pw in IDENTITIES.items():
        out += ["--identity", "%s:%s%s" % (name, pw, ":admin" if name == "admin" else "")]
    return out


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture
def scripted(certs):
    """make(n, tls, leaders, host, port): n scripted controllers
    (tests/support/scripted_upstream.py) as a ScriptedCluster, stopped after
    the test.  tls: None/False, True (the suite's certificate) or (cert, key)."""
    started = []

    def make(n=1, tls=None, leaders=(0,), host="127.0.0.1", port=0):
        if tls is True:
            tls = (certs["cert"], certs["key"])
        ups = [ScriptedUpstream(leader=i in leaders, name="ctrl%d" % (i + 1), tls=tls or None,
                                host=host, port=port).start()
               for i in range(n)]
        started.extend(ups)
        return ScriptedCluster(ups)

    yield make
    for up in started:
        up.stop()


@pytest.fixture
def redis_server(tmp_path):
    r = RedisServer(str(tmp_path / "redis")).start()
    yield r
    r.stop()


@pytest.fixture
def redis_sentinels(tmp_path):
    """A Sentinel-managed Redis: master + replica + 3 sentinels with short
    timings (tests.support.sentinel.SentinelGroup); pass it as redis= to the
    quorumgate factory."""
    g = SentinelGroup(str(tmp_path / "sentinel"))
    try:
        g.start()
        yield g
    finally:
        g.stop()


@pytest.fixture
def sim_factory(tmp_path, certs):
    started = []

    def make(nodes=3, tls=False, args=(), events=True, fast=True):
        workdir = tempfile.mkdtemp(prefix="sim-", dir=str(tmp_path))
        a = ["--nodes", str(nodes)] + _identity_args() + (FAST_SIM_ARGS if fast else []) + list(args)
        if tls:
            a += ["--tls-cert", certs["cert"], "--tls-key", certs["key"]]
        if events:
            a += ["--events-dir", os.path.join(workdir, "events")]
        s = SimProcess(a, workdir=workdir)
        started.append(s)
        s.start()
        s.ca = certs["ca"] if tls else None
        return s

    yield make
    errors = []
    for s in started:
        code = s.stop()
        err = s.stderr()
        if "Traceback" in err:
            errors.append("ctrlsim (pid %s) wrote a traceback:\n%s" % (s.pid, err[-3000:]))
        elif code not in (0, None):
            errors.append("ctrlsim (pid %s) exited with %s:\n%s" % (s.pid, code, err[-2000:]))
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture
def sim(sim_factory):
    return sim_factory()


def quorumgate_binary():
    return os.environ.get("QUORUMGATE_BIN") or os.path.join(REPO_ROOT, "build", "quorumgate")


def default_qg_config(sim, redis, certs, workdir):
    """Sane test defaults following examples/quorumgate.yaml."""
    key_file = os.path.join(workdir, "hmac.key")
    if not os.path.exists(key_file):
        with open(key_file, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(key_file, 0o600)
    cfg = {
        "workers": 1,
        "listeners": [{"address": "127.0.0.1:0"}],
        "admin": {"address": "127.0.0.1:0", "allow": ["127.0.0.0/8"]},
        "controllers": [{"id": n, "url": sim.url(n)} for n in sim.node_ids],
        "upstream": {"connect_timeout": "1s"},
        "health": {"interval": "100ms", "fast_interval": "50ms", "timeout": "500ms", "rise": 1, "fall": 1},
        "redis": (redis.config() if hasattr(redis, "config")  # a SentinelGroup
                  else {"address": redis.address, "key_prefix": "qg:"}),
        "secrets": {"hmac_key_file": key_file},
        "log": {"level": "debug", "error_log": "stderr", "access_log": "stdout"},
        # no management credential by default: legacy-session MFA passes
        # unheld, marked (tests of the held legacy path configure one)
        "gate": {"timeout": "5s", "legacy_sessions": "unconfirmed"},
    }
    if sim.info["scheme"] == "https":
        cfg["upstream"]["tls"] = {"ca": certs["ca"], "verify": True}
    return cfg


@pytest.fixture
def quorumgate(tmp_path, redis_server, sim_factory, certs):
    binary = quorumgate_binary()
    if not os.access(binary, os.X_OK):
        msg = ("quorumgate binary not found at %s: build it (cmake -B build && cmake --build build) "
               "or set QUORUMGATE_BIN" % binary)
        if os.environ.get("QG_REQUIRE_BINARY") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    made = []
    default_sim = []

    def make(overrides=None, sim=None, redis=None, start=True, name=None):
        if sim is None:
            if not default_sim:
                default_sim.append(sim_factory(tls=True))
            sim = default_sim[0]
        redis = redis or redis_server
        workdir = str(tmp_path)
        cfg = deep_merge(default_qg_config(sim, redis, certs, workdir), overrides or {})
        qg = Quorumgate(binary, workdir, cfg, name=name or "qg%d" % (len(made) + 1))
        qg.sim = sim
        qg.redis = redis
        qg.ca = certs["ca"]
        made.append(qg)
        if start:
            qg.start()
        return qg

    yield make
    problems = []
    for qg in made:
        qg.stop()
        for p in qg.problems():
            problems.append("%s: %s" % (qg.name, p))
    if problems:
        pytest.fail("quorumgate problems:\n" + "\n\n".join(problems), pytrace=False)


# tests/readme runs the README's commands (the demo, a whole build): scripts/test.sh
# runs it once after the release build instead of in every pass.
collect_ignore = ["readme"]


@pytest.fixture
def prometheus(tmp_path):
    """factory: prometheus(targets, **kw) -> a started real Prometheus server (tests.support.prom)."""
    started = []

    def make(targets, **kw):
        p = PrometheusServer(str(tmp_path / ("prom%d" % len(started))), targets, **kw)
        started.append(p)
        return p.start()

    yield make
    for p in started:
        p.stop()
