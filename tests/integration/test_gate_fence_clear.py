"""A fence's lifting that Redis refuses is sent again (found by a CI run:
during a Sentinel failover the clear went out on a connection still bound
for the former master, failed, and the fence stayed in Redis -- keeping the
identity away from a controller that had caught up, in every quorumgate,
until it expired).  Here Redis refuses the clear for a while (an ACL takes
EVAL away from quorumgate's user, as a READONLY former master would refuse
it); once it takes commands again the fence must be gone from Redis,
without any new call of that identity."""
from tests.integration.gate_support import (client, fence_of, redis_client, replication, settled, start_enrollment,
                                            totp_now, wait_all_have, wait_fenced, wait_until)

FAST = {"initial": "20ms", "max": "100ms"}


def test_a_refused_fence_clear_is_sent_again_when_redis_takes_it(quorumgate):
    qg = quorumgate({"gate": {"mode": "majority", "timeout": "1s", "probe": FAST}})
    sim = qg.sim
    lagging = next(n for n in sim.node_ids if n != sim.control.leader())
    c = client(qg)
    mfa_id, secret = start_enrollment(c)
    settled(qg, sim, c.identity_id, mfa_id, verified=False)
    sim.control.set_lag(lagging, 60000)
    r = c.mfa_verify(totp_now(secret)).expect(200)
    assert replication(r)["pending"] == [lagging]
    wait_fenced(qg, c.identity_id, [lagging])

    errors_before = qg.metrics().value("quorumgate_redis_operations_total", op="fence_write", result="error") or 0
    admin = redis_client(qg.redis)
    try:
        admin("ACL", "SETUSER", "default", "-eval", "-evalsha")
        sim.control.set_lag(lagging, 0)
        wait_all_have(sim, c.identity_id, mfa_id, verified=True)
        # quorumgate saw the controller catch up and tried to lift the fence: refused
        wait_until(lambda: (qg.metrics().value("quorumgate_redis_operations_total", op="fence_write",
                                               result="error") or 0) > errors_before,
                   timeout=10, what="a refused fence clear")
        assert sorted(fence_of(qg, c.identity_id)) == [lagging]
    finally:
        admin("ACL", "SETUSER", "default", "+@all")
        admin.close()
    wait_until(lambda: fence_of(qg, c.identity_id) == {}, timeout=10,
               what="the fence lifted in Redis once it takes commands again")
