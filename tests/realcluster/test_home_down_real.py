"""A legacy session's home that only looks down, on real controllers (issue 18, the soak's lost
affinity): stopped (SIGSTOP) long enough for quorumgate's probes to time out and mark it down, a
call of the session still goes there and gets the controller's 200 once it runs again; killed,
the client gets quorumgate's 401 UNAUTHORIZED envelope."""
import threading

from tests.integration.routing_support import assert_envelope, wait_view
from tests.realcluster.support import qg_client, wait_leader_known
from tests.support.procs import wait_until


def _counter(qg, name, ctrl):
    return qg.metrics().value("quorumgate_" + name, controller=ctrl) or 0


def test_legacy_session_survives_its_home_looking_down_and_ends_when_it_is_killed(cluster, identity, rc_qg):
    qg = rc_qg()
    wait_leader_known(qg, cluster)
    name, pw, _ = identity("home")
    c = qg_client(qg)
    c.legacy_login(name, pw).expect(200)                  # issued by the leader: its home
    home = cluster.leader()
    assert c.current_identity().expect(200).header("quorumgate-controller") == home
    # the home as a follower: stopping it later does not start an election
    cluster.transfer_leadership(to=next(m for m in cluster.node_ids if m != home))
    wait_leader_known(qg, cluster)

    before = _counter(qg, "affinity_home_down_total", home)
    out = {}
    cluster.pause(home)
    try:
        wait_view(qg, up={home: False}, timeout=15)       # probe timeouts, the fall rule
        t = threading.Thread(target=lambda: out.setdefault("r", c.current_identity()), daemon=True)
        t.start()
        wait_until(lambda: _counter(qg, "affinity_home_down_total", home) > before, timeout=10,
                   what="the session's call sent to its home marked down")
    finally:
        cluster.resume(home)
    t.join(30)
    r = out["r"]
    assert r.status == 200, (r.status, r.body[:300])
    assert r.header("quorumgate-controller") == home
    assert r.json()["data"]["name"] == name
    assert _counter(qg, "affinity_home_unreachable_total", home) == 0

    cluster.kill(home)
    r = c.current_identity()
    j = assert_envelope(r, 401, "UNAUTHORIZED")
    assert home in j["error"]["message"] and "cannot be reached" in j["error"]["message"], j
    assert _counter(qg, "affinity_home_unreachable_total", home) == 1
