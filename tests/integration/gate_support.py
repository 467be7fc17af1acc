"""Helpers for the replication-gate tests (issue 7): enrolment steps through
quorumgate, what each simulated controller holds, Redis scans, relay
processes.  Everything waits with a deadline; nothing sleeps blindly."""
import functools
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request

from tests.conftest import IDENTITIES
from tests.ctrlsim.client import ZitiClient, totp_now
from tests.support.procs import parse_json_lines, stop_pid, wait_until
from tests.support import prom
from tests.support.resp import RedisClient, resp_parse  # noqa: F401  (re-exported)
from tests.support.yamlout import dump_yaml

MFA_PATH = "/edge/client/v1/current-identity/mfa"

# The health checking of examples/quorumgate.yaml (timeout 1s, fall 2), for
# tests whose subject is not failure detection.  The suite's default
# (tests/conftest.py: 500ms, fall 1) takes every controller out at once when
# the one simulator process -- all three controllers -- or quorumgate stalls
# for half a second, which a loaded 2-core machine does: seen as a 678 ms
# token call with all three probes timing out in the same millisecond, then
# 503 PROXY_NO_HEALTHY_CONTROLLER for the next login.  quorumgate kept its
# contract (down after `fall` missed probes); the test had assumed none.
STEADY_HEALTH = {"timeout": "1s", "fall": 2}


def client(qg, name="alice", login=True, timeout=30.0, url=None, totp_secret=None):
    """A ZitiClient through quorumgate, logged in with OIDC (with the TOTP
    step when the identity is enrolled: pass its secret)."""
    c = ZitiClient(url or qg.url, ca_file=qg.ca, timeout=timeout)
    if login:
        c.oidc_login(name, IDENTITIES[name], totp_secret=totp_secret).expect(200)
    return c


def mfa_states(sim, identity_id):
    """{node id: {"id", "isVerified"} or None} as the simulator holds it now."""
    st = sim.control.state()
    return {n["id"]: n["mfas"].get(identity_id) for n in st["nodes"]}


def wait_all_have(sim, identity_id, mfa_id, verified=None, nodes=None, timeout=10.0):
    def ok():
        s = mfa_states(sim, identity_id)
        for nid, m in s.items():
            if nodes is not None and nid not in nodes:
                continue
            if not m or m["id"] != mfa_id:
                return False
            if verified is not None and m["isVerified"] != verified:
                return False
        return s
    return wait_until(ok, timeout=timeout, what="every node to hold %s (verified=%s)" % (mfa_id, verified))


def start_enrollment(c):
    """create (through whatever c talks to) + secret; returns (mfa id, secret)."""
    r = c.mfa_create().expect(201)
    return r.json()["data"]["id"], c.mfa_secret()


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return r, time.monotonic() - t0


def replication(resp):
    """Parse Quorumgate-Replication: {"acked": [...], "pending": [...]}."""
    v = resp.header("quorumgate-replication")
    if v is None:
        return None
    out = {"acked": [], "pending": []}
    for part in v.split(";"):
        part = part.strip()
        if not part:
            continue
        k, _, ids = part.partition("=")
        out[k.strip()] = [x for x in ids.split(",") if x]
    return out


# metric(qg, name, **labels): 0.0 for a series not exposed (yet)
metric = functools.partial(prom.metric, default=0.0)


def requests_on(sim, node, method=None, path=None, since_seq=0):
    reqs = sim.control.requests(node).get(node, [])
    return [r for r in reqs if r["seq"] > since_seq and (method is None or r["method"] == method)
            and (path is None or r["path"] == path or (path.endswith("*") and r["path"].startswith(path[:-1])))]


def last_seq(sim, node):
    reqs = sim.control.requests(node).get(node, [])
    return reqs[-1]["seq"] if reqs else 0


class Background:
    """Run fn in a thread; .result(timeout) returns its value or raises."""

    def __init__(self, fn, *args, **kw):
        self.value = None
        self.error = None
        self.t0 = time.monotonic()
        self.t1 = None
        self.th = threading.Thread(target=self._run, args=(fn, args, kw), daemon=True)
        self.th.start()

    def _run(self, fn, args, kw):
        try:
            self.value = fn(*args, **kw)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.error = e
        self.t1 = time.monotonic()

    def done(self):
        return not self.th.is_alive()

    def result(self, timeout=30.0):
        self.th.join(timeout)
        if self.th.is_alive():
            raise TimeoutError("background call still running after %.1fs" % timeout)
        if self.error:
            raise self.error
        return self.value

    @property
    def elapsed(self):
        return (self.t1 or time.monotonic()) - self.t0


# ---------------------------------------------------------------------------
# Redis (tests.support.resp)

def redis_client(redis):
    return RedisClient(redis.port)


# ---------------------------------------------------------------------------
# the relay process

class Relay:
    """`quorumgate relay -c FILE` as a child process, stopped by PID."""

    def __init__(self, binary, workdir, config, name="relay"):
        self.binary = binary
        self.config = config
        self.name = name
        self.config_path = os.path.join(workdir, name + ".yaml")
        self.stdout_path = os.path.join(workdir, name + ".stdout")
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        self.proc = None
        self.address = None
        self.exit_code = None
        self.killed_by_us = False

    def start(self, timeout=15.0):
        with open(self.config_path, "w") as f:
            f.write(dump_yaml(self.config))
        self._out = open(self.stdout_path, "ab")
        self._err = open(self.stderr_path, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        self.proc = subprocess.Popen([self.binary, "relay", "-c", self.config_path], stdout=self._out,
                                     stderr=self._err, stdin=subprocess.DEVNULL, env=env)

        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError("relay exited with %s:\n%s" % (self.proc.returncode, self.stderr_text()[-3000:]))
            for ev in self.log():
                if ev.get("msg") == "listening" and ev.get("kind") == "relay":
                    self.address = ev["address"]
                    return True
            return False
        wait_until(listening, timeout=timeout, what="relay 'listening' line")
        return self

    def stderr_text(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def log(self):
        return parse_json_lines(self.stderr_text())

    def metrics_text(self):
        with urllib.request.urlopen("http://%s/metrics" % self.address, timeout=5) as r:
            return r.read().decode()

    def healthz(self):
        with urllib.request.urlopen("http://%s/healthz" % self.address, timeout=5) as r:
            return json.loads(r.read())

    def stop(self, timeout=10.0):
        if self.proc is not None and self.exit_code is None:
            self.exit_code, self.killed_by_us = stop_pid(self.proc, timeout=timeout)
            self._out.close()
            self._err.close()
        return self.exit_code

    def problems(self):
        from tests.support.procs import SANITIZER_PATTERNS
        text = self.stderr_text()
        found = ["relay stderr matches %r" % p.pattern for p in SANITIZER_PATTERNS if p.search(text)]
        if self.exit_code not in (None, 0):
            found.append("relay exited with %s" % self.exit_code)
        return found



# ---------------------------------------------------------------------------
# the names quorumgate gives things in Redis (consistency/gate.c)

def hmac_key(qg):
    with open(qg.config["secrets"]["hmac_key_file"], "rb") as f:
        return f.read()


def _hmac_hex(qg, text):
    import hashlib
    import hmac
    return hmac.new(hmac_key(qg), text.encode(), hashlib.sha256).hexdigest()


def identity_hex(qg, identity_id):
    return _hmac_hex(qg, "identity|%s" % identity_id)


def change_id(qg, identity_id, mfa_id, call):
    return _hmac_hex(qg, "change|%s|%s|%s" % (identity_id, mfa_id, call))


def fence_of(qg, identity_id, prefix="qg:"):
    """{controller: expiry ms} of the identity's fence in Redis (the value
    is "<expiry>:<change id>")."""
    r = redis_client(qg.redis)
    try:
        v = r("HGETALL", "%sfence:%s" % (prefix, identity_hex(qg, identity_id)))
    finally:
        r.close()
    return {v[i].decode(): int(v[i + 1].split(b":")[0]) for i in range(0, len(v), 2)}


def wait_controller_up(qg, node, up, timeout=10.0):
    return wait_until(lambda: qg.metrics().value("quorumgate_controller_up", controller=node) == (1 if up else 0),
                      timeout=timeout, what="quorumgate to see %s %s" % (node, "up" if up else "down"))


def restart_redis_same_port(redis):
    """Start the (stopped) RedisServer again on its old port, empty."""
    redis._log = open(redis.log_path, "ab")
    redis.proc = subprocess.Popen(
        ["redis-server", "--port", str(redis.port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", redis.workdir, "--daemonize", "no",
         "--protected-mode", "yes", "--loglevel", "warning"],
        stdout=redis._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_until(redis.ping, timeout=10, what="redis-server back on port %d" % redis.port)
    return redis


def wait_log(proc, pred, timeout=10.0, what="a log line"):
    """Wait for an error-log (stderr JSON) line that pred accepts."""
    return wait_until(lambda: next((e for e in proc.error_log() if pred(e)), None), timeout=timeout, what=what)


def wait_fenced(qg, identity_id, nodes, timeout=3.0):
    """The identity's fence in Redis names exactly `nodes`.  quorumgate fences
    its own routing before it answers; the shared copy in Redis follows a
    moment later (its write may leave after the answer)."""
    want = sorted(nodes)
    return wait_until(lambda: sorted(fence_of(qg, identity_id)) == want, timeout=timeout,
                      what="fence of %s in Redis to be %s (last: %s)" % (
                          identity_id, want, sorted(fence_of(qg, identity_id))))


def settled(qg, sim, identity_id, mfa_id, verified=None):
    """Every node holds the enrollment and quorumgate heard every
    acknowledgement of it: no fence left from the change (in modes that do
    not wait for every controller, the last ones acknowledge after the
    answer)."""
    wait_all_have(sim, identity_id, mfa_id, verified=verified)
    wait_fenced(qg, identity_id, [])


def roles(sim):
    """(leader, [the other two])"""
    leader = sim.control.leader()
    return leader, [n for n in sim.node_ids if n != leader]


def fenced_verify(qg, lagging, lag_ms=60000):
    """alice verifies while `lagging` cannot apply: the gate (majority)
    answers and fences her away from it.  (client, mfa id, secret, when the
    verify was answered: time.monotonic())"""
    sim = qg.sim
    c = client(qg)
    mfa_id, secret = start_enrollment(c)
    settled(qg, sim, c.identity_id, mfa_id, verified=False)
    sim.control.set_lag(lagging, lag_ms)
    r = c.mfa_verify(totp_now(secret)).expect(200)
    answered_at = time.monotonic()
    assert replication(r)["pending"] == [lagging], r.header("quorumgate-replication")
    wait_fenced(qg, c.identity_id, [lagging])
    return c, mfa_id, secret, answered_at


def wait_leader_known(qg, timeout=10.0):
    """quorumgate's cluster view names the simulator's leader."""
    leader = qg.sim.control.leader()
    wait_until(lambda: qg.metrics().value("quorumgate_controller_leader", controller=leader) == 1,
               timeout=timeout, what="quorumgate to know the leader %s" % leader)
    return leader


def direct(qg, c, node):
    """A client that talks straight to controller `node` with c's token
    (bypassing quorumgate)."""
    d = client(qg, login=False, url=qg.sim.url(node))
    d.access_token = c.access_token
    return d


def enroll_on_leader(qg, c):
    """Create c's enrollment directly on the leader (not gated); returns
    (mfa id, secret)."""
    d = direct(qg, c, qg.sim.control.leader())
    mfa_id = d.mfa_create().expect(201).json()["data"]["id"]
    return mfa_id, d.mfa_secret()


def enrolled_then_lagging(qg, lagging, lag_ms, name="alice"):
    """name logged in through quorumgate, its enrollment created and settled
    everywhere, then `lagging` set to lag.  Returns (client, mfa id, secret)."""
    c = client(qg, name)
    mfa_id, secret = start_enrollment(c)
    settled(qg, qg.sim, c.identity_id, mfa_id, verified=False)
    qg.sim.control.set_lag(lagging, lag_ms)
    return c, mfa_id, secret
