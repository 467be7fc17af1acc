"""Helpers shared by the retry/reconciliation integration tests (issue 4).

Every check reads the answers and the cluster state on the *leader* (the
replication gate is switched off in these configurations, so nothing here
depends on followers having caught up)."""
import contextlib
import json
import os
import secrets
import threading
import time

import pytest

from tests.conftest import (FAST_SIM_ARGS, IDENTITIES, _identity_args, default_qg_config,
                            quorumgate_binary)
from tests.ctrlsim.client import ZitiClient, totp_now
from tests.support import prom
from tests.ctrlsim.control import SimProcess
from tests.support.procs import Quorumgate, RedisServer, deep_merge, wait_until

MFA = "/edge/client/v1/current-identity/mfa"
VERIFY = MFA + "/verify"

# Fast but realistic retry settings for the MFA class: every knob is data in
# the configuration (retry.policies.<class>).
MFA_POLICY = {
    "on": ["never_sent", "sent_failed", "no_leader", "too_many", "ambiguous"],
    "max_attempts": 6,
    "per_try_timeout": "1s",
    "deadline": "6s",
    "backoff_base": "10ms",
    "backoff_cap": "100ms",
}


def retry_config(mfa=None, read=None, write=None, budget=None, leader_wait="6s", extra=None):
    """quorumgate overrides: gate off (the tests read state on the leader),
    the MFA policy above, optional policies for other classes."""
    policies = {"mfa": dict(MFA_POLICY, **(mfa or {}))}
    if read:
        policies["read"] = read
    if write:
        policies["write"] = write
    cfg = {
        "gate": {"enabled": False},
        "routing": {"leader_wait": leader_wait},
        "retry": {"policies": policies},
    }
    if budget:
        cfg["retry"]["budget"] = budget
    if extra:
        for k, v in extra.items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k].update(v)
            else:
                cfg[k] = v
    return cfg


class Env:
    """A started quorumgate in front of its simulator, with helpers."""

    def __init__(self, qg):
        self.qg = qg
        self.sim = qg.sim
        self.ctl = qg.sim.control

    # ---- identities and clients -------------------------------------------
    def new_identity(self, prefix="user"):
        name = "%s-%s" % (prefix, secrets.token_hex(4))
        pw = name + "-pw"
        self.ctl.create_identity(name, pw)
        return name, pw

    def direct(self, nid=None):
        """A client talking straight to a controller (the leader by default)."""
        nid = nid or self.ctl.leader()
        return ZitiClient(self.sim.url(nid), ca_file=self.sim.ca)

    def login(self, name=None, pw=None):
        """(client through quorumgate, identity id).  The OIDC login is done
        directly on the leader (tokens are valid on every controller), so
        these tests do not depend on OIDC routing."""
        if name is None:
            name, pw = self.new_identity()
        d = self.direct()
        d.oidc_login(name, pw or IDENTITIES.get(name)).expect(200)
        c = ZitiClient(self.qg.url, timeout=30)
        c.access_token = d.access_token
        c.identity_id = d.identity_id
        return c, d

    # ---- state ---------------------------------------------------------------
    def leader(self):
        return self.ctl.leader()

    def mfa_on_leader(self, identity_id):
        leader = self.ctl.wait_leader()
        return self.ctl.mfa_on(leader, identity_id)

    def create_events(self, identity_id, nid=None):
        """MFA 'created' entity-change events a node applied for the identity."""
        nid = nid or self.leader()
        out = []
        with open(self.sim.events_path(nid)) as f:
            for line in f:
                ev = json.loads(line)
                if ev.get("entityType") == "mfas" and ev.get("eventType") == "created" and \
                        ev.get("finalState", {}).get("identityId") == identity_id:
                    out.append(ev["finalState"]["id"])
        return out

    def seen(self, method, path, node=None):
        """Requests the simulator saw, oldest answer first:
        [(node, status, injected)] (status 0: no answer)."""
        out = []
        for nid, reqs in self.ctl.requests(node).items():
            for r in reqs:
                if r["method"] == method and r["path"] == path:
                    out.append((r["time"], nid, r["status"], r["injected"]))
        return [x[1:] for x in sorted(out, key=lambda x: x[0])]

    # ---- quorumgate --------------------------------------------------------
    def access_entry(self, request_id, timeout=5.0):
        def find():
            for e in self.qg.access_log():
                if e.get("request_id") == request_id:
                    return e
            return None
        return wait_until(find, timeout=timeout, what="access log line of %s" % request_id)

    def metric(self, name, **labels):
        return prom.metric(self.qg, name, default=0.0, **labels)

    def wait_qg_leader(self, nid, timeout=10.0):
        """quorumgate's own view names nid as leader (GET /status)."""
        import urllib.request

        def ok():
            with urllib.request.urlopen(self.qg.admin_url + "/status", timeout=2) as r:
                st = json.loads(r.read())
            return _status_leader(st) == nid
        wait_until(ok, timeout=timeout, what="quorumgate to see %s as leader" % nid)


def _status_leader(st):
    c = st.get("cluster", st)
    ld = c.get("leader")
    if isinstance(ld, dict):
        return ld.get("id")
    return ld


def enroll_started(env, c, d):
    """An unverified enrollment made directly on the leader; returns the secret."""
    d.mfa_create().expect(201)
    return d.mfa_secret()


def enroll_verified(env, c, d):
    secret = enroll_started(env, c, d)
    d.mfa_verify(totp_now(secret)).expect(200)
    return secret


def attempts_header(r):
    v = r.header("quorumgate-attempts")
    assert v is not None, "no Quorumgate-Attempts header: %s" % (r.header_list,)
    return int(v)


class Background:
    """Run fn in a thread; .result() joins with a deadline."""

    def __init__(self, fn, *args):
        self.value = None
        self.error = None
        self.t = threading.Thread(target=self._run, args=(fn,) + args, daemon=True)
        self.started = time.monotonic()
        self.t.start()

    def _run(self, fn, *args):
        try:
            self.value = fn(*args)
        except BaseException as e:  # re-raised in result()
            self.error = e
        self.finished = time.monotonic()

    def result(self, timeout=30.0):
        self.t.join(timeout)
        if self.t.is_alive():
            raise TimeoutError("background call still running after %.0fs" % timeout)
        if self.error:
            raise self.error
        return self.value

    @property
    def elapsed(self):
        return self.finished - self.started


@contextlib.contextmanager
def shared_env(workdir, certs, overrides):
    """A simulator (HTTPS, fast timings), redis-server and quorumgate shared
    by the tests of one module (each test uses its own identity).  Like the
    conftest fixtures, everything is stopped by PID at the end, and
    sanitizer reports, crashes or a simulator traceback fail the module."""
    binary = quorumgate_binary()
    if not os.access(binary, os.X_OK):
        msg = "quorumgate binary not found at %s" % binary
        if os.environ.get("QG_REQUIRE_BINARY") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    os.makedirs(workdir, exist_ok=True)
    sim = SimProcess(["--nodes", "3"] + _identity_args() + FAST_SIM_ARGS +
                     ["--tls-cert", certs["cert"], "--tls-key", certs["key"],
                      "--events-dir", os.path.join(workdir, "events")], workdir=os.path.join(workdir, "sim"))
    redis = RedisServer(os.path.join(workdir, "redis"))
    qg = None
    try:
        os.makedirs(sim.workdir, exist_ok=True)
        sim.start()
        sim.ca = certs["ca"]
        redis.start()
        cfg = deep_merge(default_qg_config(sim, redis, certs, workdir), overrides)
        qg = Quorumgate(quorumgate_binary(), workdir, cfg, name="qg-shared")
        qg.sim, qg.redis, qg.ca = sim, redis, certs["ca"]
        qg.start()
        e = Env(qg)
        e.ctl.wait_leader()
        e.wait_qg_leader(e.leader())
        yield e
    finally:
        problems = []
        if qg is not None and qg.proc is not None:
            qg.stop()
            problems += ["quorumgate: " + p for p in qg.problems()]
        redis.stop()
        code = sim.stop()
        if "Traceback" in sim.stderr():
            problems.append("ctrlsim traceback:\n" + sim.stderr()[-3000:])
        elif code not in (0, None):
            problems.append("ctrlsim exited with %s" % code)
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


class MetricDelta:
    """Counter increases between construction and .get()."""

    def __init__(self, env, name, **labels):
        self.env, self.name, self.labels = env, name, labels
        self.before = env.metric(name, **labels)

    def get(self):
        return self.env.metric(self.name, **self.labels) - self.before
