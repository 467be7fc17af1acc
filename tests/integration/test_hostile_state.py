"""Hostile clients (issue 17): Redis state that unauthenticated clients can
create is bounded.

- affinity is learned only from ids a controller minted: the
  auth-request-id header of a login page echoes whatever id it is given
  (login.go loginHandler), and 4xx answers are not learned from;
- a client address learns at most routing.affinity_learn_rate entries per
  second (burst 5x);
- a Redis whose maxmemory-policy is not noeviction is reported at once
  (error log) and keeps quorumgate not ready."""
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from tests.integration.gate_support import redis_client
from tests.support.procs import wait_until


def aff_keys(qg, kind):
    r = redis_client(qg.redis)
    try:
        return r("KEYS", "qg:aff:%s:*" % kind)
    finally:
        r.close()


def get(qg, path):
    try:
        with urllib.request.urlopen(qg.url + path, timeout=10) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


def authorize(qg):
    q = urllib.parse.urlencode({"client_id": "openziti", "response_type": "code", "scope": "openid",
                                "redirect_uri": "http://127.0.0.1:20202/auth/callback",
                                "code_challenge": "x" * 43, "code_challenge_method": "S256", "state": "s"})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(qg.url + "/oidc/authorize?" + q, timeout=10)
    except urllib.error.HTTPError as e:
        return e.code
    return 200


def test_echoed_login_ids_are_not_learned(quorumgate):
    qg = quorumgate()
    for _ in range(30):
        status, headers = get(qg, "/oidc/login/password?authRequestID=" + uuid.uuid4().hex)
        assert status == 200, status
        assert headers.get("auth-request-id")          # the controller echoed it
    assert aff_keys(qg, "oidc") == []
    # a real login start is learned (the id is in the controller's redirect)
    assert authorize(qg) == 302
    wait_until(lambda: len(aff_keys(qg, "oidc")) == 1, timeout=5, what="one learned auth request")


def test_learning_is_rate_limited_per_client(quorumgate):
    qg = quorumgate({"routing": {"affinity_learn_rate": 2}})
    t0 = time.monotonic()
    for _ in range(40):
        assert authorize(qg) == 302
    elapsed = time.monotonic() - t0
    time.sleep(0.3)
    n = len(aff_keys(qg, "oidc"))
    assert 10 <= n <= 10 + 2 * elapsed + 1, (n, elapsed)
    assert "learns affinity faster than routing.affinity_learn_rate" in qg.stderr_text()


def test_evicting_redis_is_reported_and_not_ready(quorumgate, redis_server):
    r = redis_client(redis_server)
    try:
        r("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    finally:
        r.close()
    qg = quorumgate(redis=redis_server)

    def readyz():
        try:
            with urllib.request.urlopen(qg.admin_request("/readyz"), timeout=5) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    wait_until(lambda: "maxmemory-policy is 'allkeys-lru'" in qg.stderr_text(), timeout=10,
               what="the eviction policy error")
    status, body = readyz()
    assert status == 503 and b"maxmemory-policy is not noeviction" in body, (status, body)
    r = redis_client(redis_server)
    try:
        r("CONFIG", "SET", "maxmemory-policy", "noeviction")
    finally:
        r.close()
    assert json.loads(body)  # the reasons are JSON


def test_fence_resync_reads_the_index_not_the_keyspace(quorumgate, redis_server):
    """A second quorumgate starting against a Redis that holds a fence
    reads it through the fence index: Redis runs no SCAN (the old resync
    scanned the whole keyspace in one script, blocking Redis), and many
    unrelated keys change nothing."""
    from tests.integration.gate_support import client, settled, start_enrollment, totp_now, wait_fenced
    qg = quorumgate({"gate": {"mode": "majority", "timeout": "1s",
                              "probe": {"initial": "20ms", "max": "100ms"}}})
    sim = qg.sim
    lagging = [n for n in sim.node_ids if n != sim.control.leader()][0]
    alice = client(qg)
    mfa_id, secret = start_enrollment(alice)
    settled(qg, sim, alice.identity_id, mfa_id, verified=False)
    sim.control.set_lag(lagging, 60000)
    try:
        alice.mfa_verify(totp_now(secret)).expect(200)
        wait_fenced(qg, alice.identity_id, [lagging])
        r = redis_client(redis_server)
        try:
            for i in range(0, 20000, 1000):   # unrelated keys
                r("MSET", *[x for k in range(i, i + 1000) for x in ("other:%d" % k, "v")])
            r("CONFIG", "RESETSTAT")
        finally:
            r.close()
        qg2 = quorumgate(name="qg2")
        wait_until(lambda: qg2.metrics().value("quorumgate_fenced_identities") == 1, timeout=10,
                   what="the second quorumgate to read the fence")
        r = redis_client(redis_server)
        try:
            stats = r("INFO", "commandstats")
        finally:
            r.close()
        stats = stats.decode() if isinstance(stats, bytes) else stats
        assert "cmdstat_scan:" not in stats, stats
        assert "cmdstat_smembers:" in stats, stats
    finally:
        sim.control.set_lag(lagging, 0)
