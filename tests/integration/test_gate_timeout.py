"""Replication gate (issue 7): what a timeout answers, and what a repeated
verify gets afterwards.

The change is never undone on timeout (it committed).  By default the answer
is a success naming the pending controllers; with gate.on_timeout: fail it is
a 504 REPLICATION_TIMEOUT in the OpenZiti error envelope.  A verify repeated
after a timeout -- or after the client lost its connection -- gets the
original outcome, not the controller's 404 for an enrollment already
verified."""
import json
import socket
import time

import pytest

from tests.integration.gate_support import (STEADY_HEALTH, change_id, client, direct, identity_hex, metric, MFA_PATH,
                                            mfa_states, redis_client, replication, requests_on, settled,
                                            start_enrollment, timed, totp_now, wait_fenced, wait_until)

TIMEOUT_MS = 1000


def setup(quorumgate, on_timeout=None, lag_ms=4000, timeout_ms=TIMEOUT_MS):
    g = {"mode": "healthy", "timeout": "%dms" % timeout_ms, "probe": {"initial": "20ms", "max": "100ms"}}
    if on_timeout:
        g["on_timeout"] = on_timeout
    # mode healthy stops waiting for a controller that goes down: a stall
    # of the simulator longer than the suite's 500 ms health timeout (1.5 s
    # reproduces it) would release the wait early, naming the lagging one
    qg = quorumgate({"gate": g, "health": STEADY_HEALTH})
    sim = qg.sim
    leader = sim.control.leader()
    lagging = [n for n in sim.node_ids if n != leader][0]
    c = client(qg)
    mfa_id, secret = start_enrollment(c)
    settled(qg, sim, c.identity_id, mfa_id, verified=False)
    sim.control.set_lag(lagging, lag_ms)
    return qg, sim, leader, lagging, c, mfa_id, secret


def verify_posts(sim):
    return sum(len(requests_on(sim, n, "POST", MFA_PATH + "/verify")) for n in sim.node_ids)


def test_timeout_answers_success_naming_the_pending_controller(quorumgate):
    qg, sim, leader, lagging, c, mfa_id, secret = setup(quorumgate)

    r, took = timed(c.mfa_verify, totp_now(secret))

    r.expect(200)
    assert TIMEOUT_MS / 1000.0 <= took < TIMEOUT_MS / 1000.0 + 1.0, took
    rep = replication(r)
    assert rep["pending"] == [lagging] and lagging not in rep["acked"] and leader in rep["acked"], rep
    assert r.header("quorumgate-replication") == "acked=%s; pending=%s" % (
        ",".join(n for n in sim.node_ids if n != lagging), lagging)
    # not undone: the leader has it verified
    assert sim.control.mfa_on(leader, c.identity_id) == {"id": mfa_id, "isVerified": True}
    wait_fenced(qg, c.identity_id, [lagging])
    m = qg.metrics()
    assert m.value("quorumgate_replication_timeouts_total", call="verify") == 1
    assert m.value("quorumgate_replication_timeouts_total", call="create") == 0


def test_timeout_with_on_timeout_fail_answers_504_in_the_error_envelope(quorumgate):
    qg, sim, leader, lagging, c, mfa_id, secret = setup(quorumgate, on_timeout="fail")

    r, took = timed(c.mfa_verify, totp_now(secret))

    assert r.status == 504, (r.status, r.body)
    assert TIMEOUT_MS / 1000.0 <= took < TIMEOUT_MS / 1000.0 + 1.0, took
    assert r.header("content-type").startswith("application/json")
    body = r.json()
    assert body["error"]["code"] == "REPLICATION_TIMEOUT"
    assert body["error"]["message"] and body["error"]["requestId"] == r.header("x-request-id")
    assert "meta" in body
    assert replication(r)["pending"] == [lagging]
    # the change committed all the same
    assert sim.control.mfa_on(leader, c.identity_id) == {"id": mfa_id, "isVerified": True}
    assert metric(qg, "quorumgate_replication_timeouts_total", call="verify") == 1


@pytest.mark.parametrize("on_timeout,status", [(None, 200), ("fail", 504)])
def test_a_verify_repeated_after_a_timeout_gets_the_original_outcome(quorumgate, on_timeout, status):
    qg, sim, leader, lagging, c, mfa_id, secret = setup(quorumgate, on_timeout=on_timeout)
    first = c.mfa_verify(totp_now(secret))
    assert first.status == status
    posts = verify_posts(sim)

    again = c.mfa_verify(totp_now(secret))

    assert again.status == status, (again.status, again.body)
    assert again.header("quorumgate-replication") == first.header("quorumgate-replication")
    if status == 504:
        assert again.error_code == "REPLICATION_TIMEOUT"
    # answered from the record: no second verify reached a controller
    assert verify_posts(sim) == posts
    # without quorumgate's memory the controller would have said 404
    assert direct(qg, c, leader).mfa_verify(totp_now(secret)).status == 404


def test_a_verify_repeated_after_release_gets_the_original_success(quorumgate):
    qg, sim, leader, lagging, c, mfa_id, secret = setup(quorumgate, lag_ms=300, timeout_ms=4000)
    first = c.mfa_verify(totp_now(secret)).expect(200)
    assert replication(first)["pending"] == []

    again = c.mfa_verify(totp_now(secret))

    assert again.status == 200, (again.status, again.body)
    assert again.header("quorumgate-replication") == first.header("quorumgate-replication")


def raw_post_then_drop(qg, path, token, body):
    """Send a request and close the connection without reading the answer."""
    host, port = qg.client_addresses[0].rsplit(":", 1)
    data = json.dumps(body).encode()
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(b"POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\nAccept: application/json\r\n\r\n%s"
              % (path.encode(), host.encode(), token.encode(), len(data), data))
    return s


def test_a_verify_repeated_after_a_dropped_connection_waits_with_the_first(quorumgate):
    qg, sim, leader, lagging, c, mfa_id, secret = setup(quorumgate, lag_ms=2000, timeout_ms=5000)
    cid = change_id(qg, c.identity_id, mfa_id, "verify")
    rc = redis_client(qg.redis)
    s = raw_post_then_drop(qg, MFA_PATH + "/verify", c.access_token, {"code": totp_now(secret)})
    # the verify committed on the leader and is held for the lagging follower
    # (its record is in Redis: the leader alone showing it verified is not
    # enough, quorumgate may not have its answer yet)
    wait_until(lambda: rc("EXISTS", "qg:gate:" + cid) == 1, timeout=5, what="the held verify's record")
    s.close()                                         # the client gives up
    assert not sim.control.mfa_on(lagging, c.identity_id)["isVerified"]
    posts = verify_posts(sim)

    r, took = timed(c.mfa_verify, totp_now(secret))
    states = mfa_states(sim, c.identity_id)

    assert r.status == 200, (r.status, r.body)
    assert states == {n: {"id": mfa_id, "isVerified": True} for n in sim.node_ids}, states
    assert replication(r)["pending"] == []
    assert verify_posts(sim) == posts
    assert took < 4.5


def test_a_dropped_verify_still_fences_and_records_its_outcome_at_the_deadline(quorumgate):
    """Nobody is left to answer, but the identity must still be fenced away
    from the controller that does not have the change, and the outcome kept
    for a repeat."""
    qg, sim, leader, lagging, c, mfa_id, secret = setup(quorumgate, lag_ms=60000, timeout_ms=TIMEOUT_MS)
    cid = change_id(qg, c.identity_id, mfa_id, "verify")
    rc = redis_client(qg.redis)
    s = raw_post_then_drop(qg, MFA_PATH + "/verify", c.access_token, {"code": totp_now(secret)})
    wait_until(lambda: rc("EXISTS", "qg:gate:" + cid) == 1, timeout=5, what="the held verify's record")
    s.close()
    wait_until(lambda: rc("HGET", "qg:gate:" + cid, "status") == b"timeout", timeout=5,
               what="the outcome of the dropped verify in Redis")
    wait_fenced(qg, c.identity_id, [lagging])

    r = c.mfa_verify(totp_now(secret))

    assert r.status == 200, (r.status, r.body)
    rep = replication(r)
    assert rep["pending"] == [lagging] and leader in rep["acked"], rep


def test_a_verify_repeated_on_a_stale_pending_record_does_not_fence_the_leader(quorumgate):
    """The quorumgate that held the first verify died before it wrote the
    outcome: the record still says pending, its deadline passed.  The repeat
    must not fence the identity away from controllers that have the change
    (above all the leader, which just showed it verified)."""
    qg, sim, leader, lagging, c, mfa_id, secret = setup(quorumgate, lag_ms=60000, timeout_ms=TIMEOUT_MS)
    direct(qg, c, leader).mfa_verify(totp_now(secret)).expect(200)   # the first verify, its holder gone
    cid = change_id(qg, c.identity_id, mfa_id, "verify")
    rc = redis_client(qg.redis)
    rc("HSET", "qg:gate:" + cid, "call", "verify", "identity", identity_hex(qg, c.identity_id),
       "deadline", str(int(time.time() * 1000) - 1000), "status", "pending", "answeredBy", leader)
    other = [n for n in sim.node_ids if n not in (leader, lagging)][0]
    rc("SADD", "qg:gate:%s:acks" % cid, other)            # acknowledged before its holder died
    rc("PEXPIRE", "qg:gate:" + cid, 60000)
    rc("PEXPIRE", "qg:gate:%s:acks" % cid, 60000)

    r = c.mfa_verify(totp_now(secret))

    assert r.status == 200, (r.status, r.body)
    rep = replication(r)
    assert sorted(rep["acked"]) == sorted([leader, other]) and rep["pending"] == [lagging], rep
    wait_fenced(qg, c.identity_id, [lagging])
    # the identity can still reach the leader: MFA calls are pinned there
    assert c.mfa_get().status == 200
