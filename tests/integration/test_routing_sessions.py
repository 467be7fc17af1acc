"""Legacy zt-session affinity (issue 9): a session lives only on the
controller that issued it (learned from the /authenticate answer), its
requests go there whatever the leader, a dead home answers 401 in the
OpenZiti envelope (never 404s from the others), and two quorumgate
processes sharing a Redis route a session the same way.
"""
import time
import uuid

from tests.integration.routing_support import (
    ZitiClient, assert_envelope, decisions, delta, nodes_that_saw, redis_call, redis_dump, wait_view)
from tests.support.procs import wait_until


def _session_requests(r):
    return r["path"].startswith("/edge/client/v1/current-") or r["path"] == "/edge/client/v1/authenticate/mfa"


def test_legacy_session_stays_home_and_gets_401_when_home_dies(quorumgate, sim):
    qg = quorumgate(sim=sim)
    wait_view(qg, leader="ctrl1")
    bob = ZitiClient(qg.url)
    sim.control.reset_requests()
    bob.legacy_login("bob", "bob-pw").expect(200)
    home = "ctrl1"      # /authenticate goes to the leader
    assert nodes_that_saw(sim, lambda r: r["path"] == "/edge/client/v1/authenticate") == [home]

    # the leader moves away; the session stays home
    sim.control.transfer("ctrl2")
    wait_view(qg, leader="ctrl2")
    sim.control.reset_requests()
    for _ in range(20):
        bob.current_identity().expect(200)
        bob.request("GET", "/edge/client/v1/current-api-session").expect(200)
    # MFA enrollment with a legacy session: the session's home wins over
    # leader pinning (a follower forwards the write itself)
    bob.mfa_create().expect(201)
    bob.mfa_get().expect(200)
    assert nodes_that_saw(sim, _session_requests) == [home]

    # home dies: a clean 401 at once, nobody else is asked
    sim.control.kill(home)
    sim.control.reset_requests()
    for method, path in (("GET", "/edge/client/v1/current-identity"),
                         ("POST", "/edge/client/v1/current-identity/mfa/verify"),
                         ("GET", "/edge/client/v1/current-identity")):
        r = bob.request(method, path, body={"code": "123456"} if method == "POST" else None)
        j = assert_envelope(r, 401, "UNAUTHORIZED")
        assert "controller" in j["error"]["message"].lower(), j
    wait_view(qg, up={home: False})
    r = bob.current_identity()
    assert_envelope(r, 401, "UNAUTHORIZED")
    assert nodes_that_saw(sim, _session_requests) == [], sim.control.requests()

    # a new login works (on the leader) and is routed to its own home
    fresh = ZitiClient(qg.url)
    fresh.legacy_login("bob", "bob-pw").expect(200)
    fresh.current_identity().expect(200)
    assert nodes_that_saw(sim, _session_requests) == ["ctrl2"]

    # home comes back with its database (legacy sessions live in bolt):
    # the old session works again, at home
    sim.control.restart(home)
    wait_view(qg, up={home: True})
    sim.control.reset_requests()
    assert bob.current_identity().expect(200).header("quorumgate-controller") == home
    assert nodes_that_saw(sim, _session_requests) == [home]


def test_unknown_session_is_a_sticky_miss_and_balanced(quorumgate, sim):
    qg = quorumgate(sim=sim)
    c = ZitiClient(qg.url)
    c.zt_session = str(uuid.uuid4())       # never issued through quorumgate
    before = decisions(qg)
    sim.control.reset_requests()
    for _ in range(30):
        assert c.current_identity().status == 401
    assert len(nodes_that_saw(sim, _session_requests)) == 3
    d = delta(decisions(qg), before)
    # one decision per request: a miss is balanced, and counted as a miss
    assert d == {("session", "sticky_miss"): 30}, d


def test_two_quorumgates_share_session_affinity(quorumgate, sim):
    qa = quorumgate(sim=sim, name="qa")
    qb = quorumgate(sim=sim, name="qb")
    wait_view(qa, leader="ctrl1")
    wait_view(qb, leader="ctrl1")
    sessions = []
    for i, leader in enumerate(("ctrl1", "ctrl2", "ctrl3")):
        if sim.control.leader() != leader:
            sim.control.transfer(leader)
        wait_view(qa, leader=leader)
        for _ in range(5):
            a = ZitiClient(qa.url)
            a.legacy_login("alice", "alice-pw").expect(200)
            sessions.append((a.zt_session, leader))
    before = decisions(qb)
    for token, home in sessions:
        b = ZitiClient(qb.url)
        b.zt_session = token
        sim.control.reset_requests()
        for _ in range(3):
            r = b.current_identity().expect(200)
            assert r.header("quorumgate-controller") == home
        assert nodes_that_saw(sim, _session_requests) == [home]
    d = delta(decisions(qb), before)
    # B found each session in Redis once, then in its own cache
    assert d.get(("session", "sticky_hit"), 0) == 3 * len(sessions), d
    assert d.get(("session", "sticky_miss"), 0) == 0, d


def test_authenticate_carrying_an_old_session_goes_to_the_leader(quorumgate, sim):
    """A client that logs in again while still sending its old zt-session
    gets a new session from the leader: /authenticate creates state, it does
    not use the old session's.  Not a 401 when the old home is gone."""
    qg = quorumgate(sim=sim)
    wait_view(qg, leader="ctrl1")
    old = ZitiClient(qg.url)
    old.legacy_login("bob", "bob-pw").expect(200)          # home ctrl1
    sim.control.transfer("ctrl2")
    wait_view(qg, leader="ctrl2")

    def login_with_old_header():
        return old.request("POST", "/edge/client/v1/authenticate?method=password",
                           body={"username": "bob", "password": "bob-pw"},
                           headers={"zt-session": old.zt_session}, auth=False)

    sim.control.reset_requests()
    r = login_with_old_header().expect(200)
    assert r.header("quorumgate-controller") == "ctrl2"
    assert nodes_that_saw(sim, lambda x: x["path"] == "/edge/client/v1/authenticate") == ["ctrl2"]
    # the new session is routed to where it was issued
    new = ZitiClient(qg.url)
    new.zt_session = r.json()["data"]["token"]
    assert new.current_identity().expect(200).header("quorumgate-controller") == "ctrl2"
    # the old home dies: logging in again still works
    sim.control.kill("ctrl1")
    wait_view(qg, up={"ctrl1": False})
    r = login_with_old_header()
    assert r.status == 200, r.body
    assert r.header("quorumgate-controller") == "ctrl2"
    # ... while the old session itself is gone
    assert_envelope(old.current_identity(), 401, "UNAUTHORIZED")


def test_affinity_ttl_is_refreshed_on_use_and_expires_when_idle(quorumgate, sim):
    """routing.affinity_ttl: an entry used more often than its TTL lives on
    (locally and in Redis); left alone it expires in both."""
    ttl_ms = 2000
    qg = quorumgate({"routing": {"affinity_ttl": "%dms" % ttl_ms}}, sim=sim)
    wait_view(qg, leader="ctrl1")
    bob = ZitiClient(qg.url)
    bob.legacy_login("bob", "bob-pw").expect(200)
    keys = [k for k in redis_dump(qg.redis) if k.startswith(b"qg:aff:sess:")]
    assert len(keys) == 1, keys
    pttl = redis_call(qg.redis, "PTTL", keys[0])
    assert 0 < pttl <= ttl_ms, pttl
    sim.control.transfer("ctrl2")                 # home is no longer the leader
    wait_view(qg, leader="ctrl2")
    before = decisions(qg)
    # in use for three TTLs: every request goes home
    end = time.monotonic() + 3 * ttl_ms / 1000
    n = 0
    while time.monotonic() < end:
        assert bob.current_identity().expect(200).header("quorumgate-controller") == "ctrl1"
        n += 1
        time.sleep(0.1)                           # a client's pace, not a wait
    d = delta(decisions(qg), before)
    assert d.get(("session", "sticky_hit"), 0) == n, d
    assert d.get(("session", "sticky_miss"), 0) == 0, d
    assert redis_call(qg.redis, "PTTL", keys[0]) > 0
    # left alone: gone from Redis and from the local cache
    wait_until(lambda: redis_call(qg.redis, "EXISTS", keys[0]) == 0, timeout=3 * ttl_ms / 1000,
               what="the Redis entry expiring")
    wait_until(lambda: qg.metrics().value("quorumgate_affinity_entries", kind="sess") == 0,
               timeout=3 * ttl_ms / 1000, what="the local entry expiring")
    before = decisions(qg)
    assert bob.current_identity().status in (200, 401)
    d = delta(decisions(qg), before)
    assert d.get(("session", "sticky_miss"), 0) == 1, d
