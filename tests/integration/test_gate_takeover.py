"""A held change whose quorumgate dies before its deadline (SIGKILL, a crash, its host lost) was
never released: nobody fenced the controllers still lacking it, so until they caught up a login
there could skip TOTP, and a repeat of the call found the record "pending" forever.  Another
quorumgate sharing Redis takes it over a few seconds after its deadline (consistency/fencesync.c:
the record still open in <prefix>gate-open): the identity is fenced on every controller without
an acknowledgement, and the outcome is recorded.  Noticed while analysing the soak's quorumgate
kills (issue 18)."""
import os
import signal
import time

from tests.integration.gate_support import (STEADY_HEALTH, Background, change_id, client, fence_of, last_seq,
                                            redis_client, requests_on, roles, settled, start_enrollment, totp_now,
                                            wait_fenced, wait_leader_known, wait_log, wait_until)

GATE = {"mode": "all", "timeout": "3s", "poll": "200ms", "probe": {"initial": "20ms", "max": "100ms"}}


def redis_call(qg, *args):
    r = redis_client(qg.redis)
    try:
        return r(*args)
    finally:
        r.close()


def record(qg, cid):
    v = redis_call(qg, "HGETALL", "qg:gate:%s" % cid)
    return {v[i].decode(): v[i + 1].decode() for i in range(0, len(v), 2)}


def open_cids(qg):
    return [c.decode() for c in redis_call(qg, "ZRANGE", "qg:gate-open", "0", "-1")]


def test_a_change_held_by_a_quorumgate_that_died_is_taken_over_by_another(quorumgate):
    qg1 = quorumgate({"gate": GATE, "health": STEADY_HEALTH})
    qg2 = quorumgate({"gate": GATE, "health": STEADY_HEALTH}, sim=qg1.sim)
    sim = qg1.sim
    wait_leader_known(qg1)
    wait_leader_known(qg2)
    leader, (lagging, other) = roles(sim)

    # the common path: a released change leaves nothing open
    bob = client(qg2, "bob")
    bob_mfa, bob_secret = start_enrollment(bob)
    settled(qg2, sim, bob.identity_id, bob_mfa, verified=False)
    bob.mfa_verify(totp_now(bob_secret)).expect(200)
    assert change_id(qg2, bob.identity_id, bob_mfa, "verify") not in open_cids(qg2)

    alice = client(qg1, "alice")
    mfa_id, secret = start_enrollment(alice)
    settled(qg1, sim, alice.identity_id, mfa_id, verified=False)
    cid = change_id(qg1, alice.identity_id, mfa_id, "verify")
    sim.control.set_lag(lagging, 60000)
    held = Background(alice.mfa_verify, totp_now(secret))
    # held by qg1: committed, acknowledged by the leader and the other follower, waiting for
    # the lagging one
    wait_until(lambda: sorted(c.decode() for c in redis_call(qg1, "SMEMBERS", "qg:gate:%s:acks" % cid))
               == sorted([leader, other]), timeout=5, what="the verify held, acked by all but %s" % lagging)
    assert record(qg1, cid)["status"] == "pending" and cid in open_cids(qg1)
    os.kill(qg1.proc.pid, signal.SIGKILL)
    qg1.proc.wait(5)
    qg1._out.close()
    qg1._err.close()
    try:
        r = held.result(timeout=10)
    except (ConnectionError, OSError) as e:              # the client got no answer
        r = e
    assert isinstance(r, Exception), (r.status, r.headers)
    killed_at = time.monotonic()

    # qg2 takes it over: deadline (3 s) + margin (3 s + gate.poll), swept every second
    wait_fenced(qg2, alice.identity_id, [lagging], timeout=12)
    took = time.monotonic() - killed_at
    rec = record(qg2, cid)
    assert rec["status"] == "timeout", rec
    assert rec["replication"] == "acked=%s; pending=%s" % (",".join(sorted([leader, other])), lagging), rec
    assert cid not in open_cids(qg2)
    wait_log(qg2, lambda e: "taken over" in e.get("msg", "") and lagging in e.get("msg", ""),
             what="qg2's log line about the change it took over")
    assert qg2.metrics().value("quorumgate_replication_timeouts_total", call="verify") == 1
    wait_until(lambda: qg2.metrics().value("quorumgate_fenced_identities") == 1, timeout=5,
               what="qg2 to apply the fence to its routing")
    # and it routes alice away from the lagging member
    seq = last_seq(sim, lagging)
    via2 = client(qg2, login=False)
    via2.access_token = alice.access_token
    for _ in range(12):
        via2.current_identity().expect(200)
    assert requests_on(sim, lagging, "GET", "/edge/client/v1/current-identity", since_seq=seq) == []
    assert took < 12

    # qg1 back (as a service manager would restart it) takes the fence from Redis and nothing
    # takes the change over twice
    killed_output = qg1.problems()
    assert killed_output == [], killed_output
    qg1.stdout_path += ".restarted"      # a log of its own: addresses are read from it
    qg1.stderr_path += ".restarted"
    qg1.start()
    wait_until(lambda: qg1.metrics().value("quorumgate_fenced_identities") == 1, timeout=5,
               what="the restarted qg1 to read the fence from Redis")
    time.sleep(1.5)
    assert qg2.metrics().value("quorumgate_replication_timeouts_total", call="verify") == 1
    assert (qg1.metrics().value("quorumgate_replication_timeouts_total", call="verify") or 0) == 0
