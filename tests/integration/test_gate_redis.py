"""Replication gate (issue 7) and Redis: refused up front when Redis is down
(nothing committed), direct probes when Redis goes away during a wait, what
Redis holds (no secret, every key expires), and two quorumgate processes
sharing one Redis."""
import re

import pytest

from tests.integration.gate_support import (Background, change_id, client, enroll_on_leader, last_seq, metric,
                                            MFA_PATH, mfa_states, redis_client, replication, requests_on,
                                            restart_redis_same_port, settled, start_enrollment, totp_now,
                                            wait_all_have, wait_fenced, wait_log, wait_until)

FAST = {"initial": "20ms", "max": "100ms"}


def roles(sim):
    leader = sim.control.leader()
    return leader, [n for n in sim.node_ids if n != leader]


def redis_killed(qg):
    """Stop Redis and wait until quorumgate's worker and control connections
    have both seen it go."""
    qg.redis.stop()
    wait_until(lambda: qg.metrics().value("quorumgate_redis_up") == 0, timeout=5, what="redis_up 0")
    wait_log(qg, lambda e: "worker-0" in e.get("msg", "") and "lost" in e.get("msg", ""), timeout=5,
             what="the worker's Redis connection to drop")


def everything_on(sim, path_prefix):
    return sum(len(requests_on(sim, n, path=path_prefix + "*")) for n in sim.node_ids)


# ---- Redis down before the call ------------------------------------------

def test_verify_refused_with_503_when_redis_is_down_and_nothing_is_committed(quorumgate):
    qg = quorumgate({"gate": {"timeout": "3s", "probe": FAST}})
    sim = qg.sim
    c = client(qg)
    mfa_id, secret = start_enrollment(c)
    wait_all_have(sim, c.identity_id, mfa_id, verified=False)
    redis_killed(qg)
    sim.control.reset_requests()

    r = c.mfa_verify(totp_now(secret))

    assert r.status == 503, (r.status, r.body)
    assert r.header("content-type").startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == "REPLICATION_TRACKING_UNAVAILABLE" and err["message"]
    assert err["requestId"] == r.header("x-request-id")
    # nothing reached a controller, nothing changed
    assert everything_on(sim, MFA_PATH) == 0, sim.control.requests()
    assert mfa_states(sim, c.identity_id) == {n: {"id": mfa_id, "isVerified": False} for n in sim.node_ids}
    assert metric(qg, "quorumgate_replication_tracking_unavailable_total") == 1

    # Redis back: the same call goes through and is gated again
    restart_redis_same_port(qg.redis)
    wait_until(lambda: qg.metrics().value("quorumgate_redis_up") == 1, timeout=10, what="redis_up 1")
    wait_log(qg, lambda e: e.get("msg", "").startswith("redis worker-0: connected") and
             e.get("ts", "") > "", timeout=10, what="the worker to reconnect")
    r = wait_until(lambda: (lambda x: x if x.status != 503 else None)(c.mfa_verify(totp_now(secret))),
                   timeout=10, interval=0.2, what="verify accepted once Redis is back")
    assert r.status == 200, (r.status, r.body)
    assert replication(r)["pending"] == []


def test_create_and_delete_refused_with_503_when_redis_is_down(quorumgate):
    qg = quorumgate({"gate": {"timeout": "3s", "probe": FAST}})
    sim = qg.sim
    c = client(qg)
    bob = client(qg, "bob")
    mfa_id, _ = start_enrollment(bob)
    wait_all_have(sim, bob.identity_id, mfa_id, verified=False)
    redis_killed(qg)
    sim.control.reset_requests()

    r = c.mfa_create()
    assert r.status == 503 and r.error_code == "REPLICATION_TRACKING_UNAVAILABLE", (r.status, r.body)
    r = bob.mfa_delete("")
    assert r.status == 503 and r.error_code == "REPLICATION_TRACKING_UNAVAILABLE", (r.status, r.body)

    assert everything_on(sim, MFA_PATH) == 0, sim.control.requests()
    assert mfa_states(sim, c.identity_id) == {n: None for n in sim.node_ids}
    assert mfa_states(sim, bob.identity_id) == {n: {"id": mfa_id, "isVerified": False} for n in sim.node_ids}
    assert metric(qg, "quorumgate_replication_tracking_unavailable_total") == 2


# ---- Redis lost during the wait -------------------------------------------

@pytest.mark.parametrize("source", ["probe", "events"])
def test_redis_lost_during_a_verify_the_answer_still_comes_from_direct_probes(quorumgate, source):
    # source events with no relay running: only the direct probes that start
    # when Redis goes away can release this verify before the timeout
    qg = quorumgate({"gate": {"timeout": "8s", "source": source, "probe": FAST, "poll": "100ms"}})
    sim = qg.sim
    leader, (lagging, other) = roles(sim)
    c = client(qg)
    mfa_id, secret = start_enrollment(c) if source == "probe" else (None, None)
    if source == "events":
        # the create itself would wait for the relay: make it directly
        mfa_id, secret = enroll_on_leader(qg, c)
    wait_all_have(sim, c.identity_id, mfa_id, verified=False)
    sim.control.set_lag(lagging, 1500)
    cid = change_id(qg, c.identity_id, mfa_id, "verify")
    rc = redis_client(qg.redis)

    bg = Background(c.mfa_verify, totp_now(secret))
    wait_until(lambda: rc("EXISTS", "qg:gate:" + cid) == 1, timeout=5, what="the gate record in Redis")
    rc.close()
    qg.redis.stop()                                  # during the wait
    r = bg.result(timeout=15)
    states = mfa_states(sim, c.identity_id)

    assert r.status == 200, (r.status, r.body)
    assert states == {n: {"id": mfa_id, "isVerified": True} for n in sim.node_ids}, states
    assert replication(r)["pending"] == []
    assert bg.elapsed < 5.0, "released by the timeout (%.2fs), not by probes" % bg.elapsed
    assert requests_on(sim, lagging, "GET", MFA_PATH), "no direct probe reached %s" % lagging
    wait_log(qg, lambda e: e.get("level") == "warn" and "Redis unavailable while" in e.get("msg", ""),
             timeout=2, what="the warning that the gate probes directly")
    m = qg.metrics()
    assert m.value("quorumgate_replication_tracking_unavailable_total") == 1
    errors = sum(v for lab, v in m.get("quorumgate_redis_operations_total", [])
                 if lab["result"] == "error" and lab["op"] in ("ack_read", "ack_write", "gate_write"))
    assert errors >= 1, m.get("quorumgate_redis_operations_total")


# ---- what Redis holds ------------------------------------------------------

SECRETY = re.compile(r"(secret|recovery|password|token|otpauth)", re.I)


def assert_nothing_secret_in(dump, secrets_):
    blob = b"\n".join([k for k in dump] + [v for e in dump.values() for v in e["values"] if v is not None])
    for s in secrets_:
        if s:
            assert s.encode() not in blob, "found %r in Redis" % s
    for k, e in dump.items():
        assert e["ttl"] > 0, "%r never expires (PTTL %s)" % (k, e["ttl"])
        assert not SECRETY.search(k.decode()), k


def secrets_of(c, sim, identity_name, secret, codes):
    return [secret, c.access_token, c.refresh_token, c.id_token, identity_name + "-pw",
            c.identity_id] + list(codes)


def test_redis_holds_no_secret_and_every_key_expires(quorumgate):
    qg = quorumgate({"gate": {"timeout": "3s", "probe": FAST}})
    sim = qg.sim
    leader, (lagging, other) = roles(sim)
    c = client(qg)
    r = c.mfa_create().expect(201)
    mfa_id = r.json()["data"]["id"]
    d = c.mfa_get().expect(200).json()["data"]
    codes = d["recoveryCodes"]
    secret = c.mfa_secret()
    sim.control.set_lag(lagging, 300)
    c.mfa_verify(totp_now(secret)).expect(200)
    legacy = client(qg, "bob", login=False)
    legacy.legacy_login("bob", "bob-pw").expect(200)
    legacy.current_identity().expect(200)

    dump = redis_client(qg.redis).dump()
    assert any(k.startswith(b"qg:gate:") for k in dump), list(dump)
    assert any(k.startswith(b"qg:aff:") for k in dump), list(dump)
    assert_nothing_secret_in(dump, secrets_of(c, sim, "alice", secret, codes) + [legacy.zt_session])
    # the record names the change by HMAC only
    rec = dump[b"qg:gate:" + change_id(qg, c.identity_id, mfa_id, "verify").encode()]
    assert rec["type"] == "hash"


# ---- two quorumgate processes, one Redis -------------------------------------

def test_two_quorumgates_release_the_same_waiting_verify_on_one_acknowledgement(quorumgate):
    """qg1 holds a verify; the client repeats it through qg2 (which sees the
    pending record and waits with it); a single acknowledgement written to
    the shared Redis -- no probe, no relay: source events -- releases both."""
    g = {"gate": {"timeout": "10s", "source": "events", "poll": "30s", "probe": FAST}}
    qg1 = quorumgate(g)
    qg2 = quorumgate(g, sim=qg1.sim)
    sim = qg1.sim
    leader, (f1, f2) = roles(sim)
    c = client(qg1)
    mfa_id, secret = enroll_on_leader(qg1, c)
    wait_all_have(sim, c.identity_id, mfa_id, verified=False)
    cid = change_id(qg1, c.identity_id, mfa_id, "verify")
    rc = redis_client(qg1.redis)

    first = Background(c.mfa_verify, totp_now(secret))
    wait_until(lambda: rc("EXISTS", "qg:gate:" + cid) == 1, timeout=5, what="qg1's gate record")
    c2 = client(qg2, login=False)
    c2.access_token = c.access_token
    second = Background(c2.mfa_verify, totp_now(secret))
    wait_until(lambda: _status(qg2)["pending_acknowledgements"] == 1, timeout=5, what="qg2 to hold the repeat")
    assert _status(qg1)["pending_acknowledgements"] == 1
    assert not first.done() and not second.done()

    # one acknowledgement each from the two followers, as the relay writes them
    for f in (f1, f2):
        rc("EVAL", "redis.call('SADD',KEYS[1],ARGV[1]) redis.call('PUBLISH',ARGV[2],ARGV[3]) return 1",
           1, "qg:gate:%s:acks" % cid, f, "qg:acks", cid)
    r1 = first.result(timeout=3)
    r2 = second.result(timeout=3)

    assert r1.status == 200 and r2.status == 200, (r1.body, r2.body)
    assert replication(r1)["pending"] == [] and replication(r2)["pending"] == []
    assert sorted(replication(r2)["acked"]) == sorted(sim.node_ids)
    # the publish woke both (the fallback poll is 30 s away)
    assert abs(first.t1 - second.t1) < 1.0
    # the repeat never reached a controller as a verify
    posts = sum(len(requests_on(sim, n, "POST", MFA_PATH + "/verify")) for n in sim.node_ids)
    assert posts == 1


def _status(qg):
    import json
    import urllib.request
    with urllib.request.urlopen(qg.admin_url + "/status", timeout=5) as r:
        return json.loads(r.read())


def test_a_missed_publish_is_covered_by_the_fallback_poll(quorumgate):
    g = {"gate": {"timeout": "10s", "source": "events", "poll": "200ms", "probe": FAST}}
    qg = quorumgate(g)
    sim = qg.sim
    leader, (f1, f2) = roles(sim)
    c = client(qg)
    mfa_id, secret = enroll_on_leader(qg, c)
    wait_all_have(sim, c.identity_id, mfa_id, verified=False)
    cid = change_id(qg, c.identity_id, mfa_id, "verify")
    rc = redis_client(qg.redis)

    bg = Background(c.mfa_verify, totp_now(secret))
    wait_until(lambda: rc("EXISTS", "qg:gate:" + cid) == 1, timeout=5, what="the gate record")
    rc("SADD", "qg:gate:%s:acks" % cid, f1, f2)         # no PUBLISH
    t_ack = bg.elapsed
    r = bg.result(timeout=3)

    assert r.status == 200 and replication(r)["pending"] == []
    assert bg.elapsed - t_ack < 1.0


def test_a_fence_set_by_one_quorumgate_routes_the_other_too(quorumgate):
    g = {"gate": {"mode": "majority", "timeout": "1s", "probe": FAST}}
    qg1 = quorumgate(g)
    qg2 = quorumgate(g, sim=qg1.sim)
    sim = qg1.sim
    leader, (lagging, other) = roles(sim)
    c = client(qg1)
    mfa_id, secret = start_enrollment(c)
    settled(qg1, sim, c.identity_id, mfa_id, verified=False)
    sim.control.set_lag(lagging, 60000)
    r = c.mfa_verify(totp_now(secret)).expect(200)
    assert replication(r)["pending"] == [lagging]
    wait_fenced(qg1, c.identity_id, [lagging])
    wait_until(lambda: qg2.metrics().value("quorumgate_fenced_identities") == 1, timeout=3,
               what="qg2 to apply qg1's fence")

    via2 = client(qg2, login=False)
    via2.access_token = c.access_token
    seq = last_seq(sim, lagging)
    for _ in range(20):
        via2.current_identity().expect(200)
    assert requests_on(sim, lagging, "GET", "/edge/client/v1/current-identity", since_seq=seq) == []

    sim.control.set_lag(lagging, 0)                      # it catches up; qg1's probe sees it
    wait_until(lambda: qg2.metrics().value("quorumgate_fenced_identities") == 0, timeout=5,
               what="qg2 to lift the fence qg1 lifted")
    for _ in range(20):
        via2.current_identity().expect(200)
    assert requests_on(sim, lagging, "GET", "/edge/client/v1/current-identity", since_seq=seq)
