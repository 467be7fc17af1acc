"""A worker's Redis connection being made again (at start, after it was
lost, after a Sentinel failover) is not "Redis down": a request that needs
Redis in that moment waits for the connection, at most
redis.connect_timeout, instead of refusing a gated MFA call with 503 or
routing a legacy session without the shared affinity.

Redis is kept from taking quorumgate's connections back with requirepass
(quorumgate has no password configured, so its handshake's PING is refused
with NOAUTH) while one connection of the test's own, made before, keeps
working; clearing requirepass lets the next attempt through.  Counted in
redis_connection_waits_total{result}.
"""
import threading

from tests.integration.gate_support import (MFA_PATH, client, mfa_states, requests_on, wait_log,
                                            wait_until)
from tests.integration.routing_support import ZitiClient
from tests.support.resp import RedisClient


def waits(qg, result):
    return qg.metrics().value("quorumgate_redis_connection_waits_total", result=result) or 0


class LockedOut:
    """Redis refuses new connections of quorumgate (requirepass) and has
    dropped the ones it had, until reopen()."""

    def __init__(self, redis):
        self.admin = RedisClient(redis.port)

    def lock(self, kill=True):
        assert self.admin("CONFIG", "SET", "requirepass", "locked-out-by-the-test") in ("OK", b"OK")
        if kill:
            self.admin("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")

    def drop(self, qg):
        """lock(), and wait until qg's worker saw its connection go."""
        self.lock()
        wait_log(qg, lambda e: "worker-0: connection lost" in e.get("msg", ""), timeout=5,
                 what="the worker's Redis connection to drop")

    def reopen(self):
        assert self.admin("CONFIG", "SET", "requirepass", "") in ("OK", b"OK")

    def close(self):
        self.admin.close()


def in_background(fn):
    out = {}

    def run():
        try:
            out["r"] = fn()
        except Exception as e:  # reported by the caller
            out["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def answer(t, out, timeout=20):
    t.join(timeout)
    assert not t.is_alive(), "no answer"
    if "e" in out:
        raise out["e"]
    return out["r"]


def refused_attempt(qg, after):
    """A reconnection attempt refused by Redis, logged after index `after`."""
    return wait_log(qg, lambda e: e in qg.error_log()[after:] and "worker-0" in e.get("msg", "") and
                    ("failed" in e.get("msg", "") or "cannot connect" in e.get("msg", "")),
                    timeout=10, what="a refused reconnection attempt of worker-0")


def test_a_gated_call_waits_for_the_workers_reconnection(quorumgate):
    qg = quorumgate({"redis": {"connect_timeout": "5s"}})
    sim = qg.sim
    c = client(qg)
    lock = LockedOut(qg.redis)
    try:
        n_log = len(qg.error_log())
        lock.drop(qg)
        t, out = in_background(c.mfa_create)
        refused_attempt(qg, n_log)
        # still no answer: the create waits for Redis, nothing was sent
        assert t.is_alive(), out
        assert all(not requests_on(sim, n, "POST", MFA_PATH) for n in sim.node_ids)
        lock.reopen()
        r = answer(t, out)
    finally:
        lock.close()
    assert r.status == 201, (r.status, r.body)
    assert waits(qg, "ok") == 1 and waits(qg, "error") == 0
    assert qg.metrics().value("quorumgate_replication_tracking_unavailable_total") in (0, None)


def test_the_wait_ends_at_connect_timeout_with_the_503_of_redis_down(quorumgate):
    qg = quorumgate({"redis": {"connect_timeout": "700ms"}})
    sim = qg.sim
    c = client(qg)
    lock = LockedOut(qg.redis)
    try:
        lock.drop(qg)
        r = c.mfa_create()
        assert r.status == 503 and r.error_code == "REPLICATION_TRACKING_UNAVAILABLE", (r.status, r.body)
        assert mfa_states(sim, c.identity_id) == {n: None for n in sim.node_ids}
        assert waits(qg, "error") == 1 and waits(qg, "ok") == 0
        # the window is over: the next call is refused at once, not held
        r = c.mfa_create()
        assert r.status == 503, (r.status, r.body)
        assert waits(qg, "error") == 1
    finally:
        lock.reopen()
        lock.close()
    wait_log(qg, lambda e: e.get("msg", "").startswith("redis worker-0: connected") and
             "connection lost" not in e.get("msg", ""), timeout=10, what="the worker to reconnect")


def test_a_legacy_session_on_a_starting_quorumgate_waits_for_the_shared_affinity(quorumgate):
    """The soak's lost-affinity finding (issue 18): a request reaching a
    quorumgate restarted a moment before, whose Redis connection was not
    up yet, was routed without the shared affinity (a 401 from a controller
    that never issued the session)."""
    qg1 = quorumgate()
    sim = qg1.sim
    s = ZitiClient(qg1.url)
    s.legacy_login("bob", "bob-pw").expect(200)
    home = s.current_identity().expect(200).header("quorumgate-controller")
    assert home in sim.node_ids
    lock = LockedOut(qg1.redis)
    try:
        lock.lock(kill=False)   # qg1 keeps its connections; qg2 gets none
        qg2 = quorumgate({"redis": {"connect_timeout": "5s"}}, sim=sim)
        via2 = ZitiClient(qg2.url)
        via2.zt_session = s.zt_session
        threads = [in_background(via2.current_identity) for _ in range(3)]
        refused_attempt(qg2, 0)
        assert all(t.is_alive() for t, _ in threads)
        lock.reopen()
        results = [answer(t, out) for t, out in threads]
    finally:
        lock.close()
    for r in results:
        assert r.status == 200, (r.status, r.body)
        assert r.header("quorumgate-controller") == home
    assert waits(qg2, "ok") == 3 and waits(qg2, "error") == 0
