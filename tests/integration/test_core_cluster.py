"""Proxy core, the cluster view (issue 2): raft health probes with
rise/fall, a controller going down and coming back, a leader change
noticed by the probes, MFA-class requests and writes sent to the leader,
reads balanced over the healthy controllers, a never-sent failure retried
elsewhere and answered by an immediate re-probe.  Against the TLS
simulator; its request log is the witness of where requests went."""
import time

from tests.ctrlsim.client import ZitiClient
from tests.integration.core_support import (
    call, metric, node_status, sim_requests, status, wait_access, wait_leader_known, wait_metric, wait_up)
from tests.support.procs import wait_until

MFA = "/edge/client/v1/current-identity/mfa"


def _token(sim, nid):
    """An OIDC access token straight from one controller (valid on all)."""
    c = ZitiClient(sim.url(nid), ca_file=sim.ca)
    c.oidc_login("alice", "alice-pw")
    assert c.access_token
    return c.access_token


def _where(sim, path, method=None):
    """{node: count} of requests the simulator saw for path."""
    out = {}
    for nid in sim.node_ids:
        n = len([r for r in sim_requests(sim, nid) if r["path"] == path and (method is None or r["method"] == method)])
        if n:
            out[nid] = n
    return out


def test_probes_know_who_is_up_and_who_leads(quorumgate):
    qg = quorumgate()
    sim = qg.sim
    leader = sim.control.leader()
    wait_leader_known(qg, leader)
    s = wait_until(lambda: (lambda st: st if all(c["last_status"] for c in st["controllers"]) else None)(status(qg)),
                   timeout=5, what="every controller probed")
    assert [c["id"] for c in s["controllers"]] == sim.node_ids
    for c in s["controllers"]:
        assert c["up"] is True and c["leader"] is (c["id"] == leader), c
        assert c["last_status"] == (200 if c["id"] == leader else 429), c
    m = qg.metrics()
    for nid in sim.node_ids:
        assert m.value("quorumgate_controller_up", controller=nid) == 1
        assert m.value("quorumgate_controller_leader", controller=nid) == (1 if nid == leader else 0)
    # the probes are the documented raft health check
    probes = [r for r in sim.control.requests(leader)[leader] if r["path"].startswith("/health-checks")]
    assert probes and all(r["path"] == "/health-checks/controller/raft" for r in probes)


def test_reads_are_balanced_over_healthy_controllers(quorumgate):
    qg = quorumgate()
    sim = qg.sim
    wait_leader_known(qg)
    sim.control.reset_requests()
    for _ in range(30):
        assert call(qg, "GET", "/edge/client/v1/version", ca=qg.ca).status == 200
    where = _where(sim, "/edge/client/v1/version")
    assert sum(where.values()) == 30
    assert set(where) == set(sim.node_ids), where


def test_controller_down_is_avoided_and_used_again_when_back(quorumgate):
    qg = quorumgate()
    sim = qg.sim
    leader = sim.control.leader()
    wait_leader_known(qg, leader)
    victim = [n for n in sim.node_ids if n != leader][0]
    sim.control.kill(victim)
    wait_up(qg, victim, False, timeout=5)
    wait_metric(qg, "quorumgate_controller_up", 0, controller=victim)
    assert node_status(qg, victim)["last_error"], node_status(qg, victim)
    sim.control.reset_requests()
    before = len(qg.access_log())
    for _ in range(20):
        assert call(qg, "GET", "/edge/client/v1/version", ca=qg.ca).status == 200
    where = _where(sim, "/edge/client/v1/version")
    assert victim not in where and sum(where.values()) == 20, where
    assert len(where) == 2, where
    lines = wait_until(lambda: qg.access_log()[before:] if len(qg.access_log()) >= before + 20 else None,
                       timeout=5, what="20 access-log lines")
    assert all(a["controller"] != victim for e in lines for a in e["upstream"]), "down means not even tried"

    sim.control.restart(victim)
    wait_up(qg, victim, True, timeout=5)
    wait_metric(qg, "quorumgate_controller_up", 1, controller=victim)
    sim.control.reset_requests()
    for _ in range(30):
        assert call(qg, "GET", "/edge/client/v1/version", ca=qg.ca).status == 200
        if victim in _where(sim, "/edge/client/v1/version"):
            break
    assert victim in _where(sim, "/edge/client/v1/version"), "the controller is used again"


def test_rise_and_fall_counts(quorumgate):
    qg = quorumgate({"health": {"interval": "100ms", "rise": 3, "fall": 3}})
    sim = qg.sim
    leader = sim.control.leader()
    wait_leader_known(qg, leader)
    victim = [n for n in sim.node_ids if n != leader][0]

    def probes_of(nid, result):
        return metric(qg, "quorumgate_health_probes_total", controller=nid, result=result) or 0

    assert probes_of(victim, "error") == 0
    sim.control.kill(victim)
    wait_up(qg, victim, False, timeout=5)
    # marked down no sooner than the third failed probe
    assert probes_of(victim, "error") >= 3
    followers = probes_of(victim, "follower")
    sim.control.restart(victim)
    wait_up(qg, victim, True, timeout=5)
    assert probes_of(victim, "follower") - followers >= 3


def test_leader_change_is_noticed_quickly_and_mfa_follows_it(quorumgate):
    qg = quorumgate({"health": {"interval": "250ms"}})
    sim = qg.sim
    old = sim.control.leader()
    wait_leader_known(qg, old)
    token = _token(sim, old)
    auth = {"Authorization": "Bearer " + token}
    sim.control.reset_requests()
    r = call(qg, "GET", MFA, headers=auth, ca=qg.ca)
    assert r.status in (200, 404), r.body
    assert _where(sim, MFA) == {old: 1}

    new = [n for n in sim.node_ids if n != old][1]
    t0 = time.monotonic()
    sim.control.transfer(new)
    wait_leader_known(qg, new, timeout=5)
    noticed = time.monotonic() - t0
    assert noticed < 1.0, "leader change noticed after %.2fs" % noticed
    assert metric(qg, "quorumgate_controller_leader", controller=new) == 1
    assert metric(qg, "quorumgate_controller_leader", controller=old) == 0
    assert metric(qg, "quorumgate_leader_changes_total") >= 2

    sim.control.reset_requests()
    for _ in range(5):
        r = call(qg, "GET", MFA, headers=auth, ca=qg.ca)
        assert r.status in (200, 404), r.body
        assert r.header("Quorumgate-Controller") == new
    assert _where(sim, MFA) == {new: 5}
    line = wait_access(qg, lambda e: e.get("path") == MFA and e.get("controller") == new)
    assert line["class"] == "mfa" and line["decision"] == "pinned", line


def test_mfa_class_waits_for_an_election_and_reaches_the_new_leader(quorumgate):
    qg = quorumgate()
    sim = qg.sim
    old = sim.control.leader()
    wait_leader_known(qg, old)
    token = _token(sim, [n for n in sim.node_ids if n != old][0])
    sim.control.reset_requests()
    sim.control.kill(old)
    t0 = time.monotonic()
    r = call(qg, "GET", MFA + "/recovery-codes", headers={"Authorization": "Bearer " + token}, ca=qg.ca)
    took = time.monotonic() - t0
    new = sim.control.leader()
    assert new and new != old
    assert r.status != 503, (r.status, r.body)
    assert r.header("Quorumgate-Controller") == new
    assert took < 5.0, took
    where = _where(sim, MFA + "/recovery-codes")
    assert where == {new: 1}, where


def test_writes_go_to_the_leader(quorumgate):
    qg = quorumgate()
    sim = qg.sim
    leader = sim.control.leader()
    wait_leader_known(qg, leader)
    sim.control.reset_requests()
    for _ in range(10):
        r = call(qg, "POST", "/edge/client/v1/authenticate?method=password",
                 body=b'{"username":"alice","password":"alice-pw"}',
                 headers={"Content-Type": "application/json"}, ca=qg.ca)
        assert r.status == 200 and r.header("Quorumgate-Controller") == leader
        r = call(qg, "PUT", "/edge/management/v1/things/1", body=b"{}",
                 headers={"Content-Type": "application/json"}, ca=qg.ca)
        assert r.header("Quorumgate-Controller") == leader
    assert _where(sim, "/edge/client/v1/authenticate") == {leader: 10}
    assert _where(sim, "/edge/management/v1/things/1") == {leader: 10}


def test_connection_refused_is_retried_elsewhere_and_reprobed_at_once(quorumgate):
    # probes so slow that only the passive signal can explain a quick "down"
    qg = quorumgate({"health": {"interval": "30s", "fast_interval": "30s", "rise": 1, "fall": 2}})
    sim = qg.sim
    leader = sim.control.leader()
    wait_leader_known(qg, leader)
    wait_until(lambda: all(c["last_probe_ms"] for c in status(qg)["controllers"]), timeout=5,
               what="a first probe of every controller")
    victim = [n for n in sim.node_ids if n != leader][0]
    probes_before = metric(qg, "quorumgate_health_probes_total", controller=victim)
    sim.control.kill(victim)
    assert node_status(qg, victim)["up"] is True
    hit = None
    t_hit = None
    for i in range(40):
        r = call(qg, "GET", "/edge/client/v1/version?i=%d" % i, ca=qg.ca)
        assert r.status == 200, r.body      # never the client's problem
        line = wait_access(qg, lambda e: e.get("path") == "/edge/client/v1/version?i=REDACTED"
                           and e.get("request_id") == r.header("X-Request-Id"))
        if any(a["controller"] == victim for a in line["upstream"]):
            hit, t_hit = line, time.monotonic()
            break
    assert hit, "no request was balanced to the dead controller"
    assert [a["outcome"] for a in hit["upstream"]] == ["connect_error", "ok"], hit
    assert hit["upstream"][0]["controller"] == victim and hit["upstream"][1]["controller"] != victim
    assert hit["attempts"] == 2
    # the refusal triggered a probe right away: down long before the 30 s interval
    wait_up(qg, victim, False, timeout=3)
    assert time.monotonic() - t_hit < 3
    assert metric(qg, "quorumgate_health_probes_total", controller=victim) > probes_before
    assert metric(qg, "quorumgate_upstream_attempts_total", controller=victim, outcome="connect_error") >= 1


def test_unclean_spellings_of_mfa_paths_are_still_pinned(quorumgate):
    # the controller's router cleans the path (Go path.Clean) before
    # matching, so these reach the MFA handlers: they must be pinned too
    qg = quorumgate()
    sim = qg.sim
    leader = sim.control.leader()
    wait_leader_known(qg, leader)
    token = _token(sim, leader)
    for target, call_name in (("/edge/client/v1/current-identity/./mfa", "mfa_read"),
                              ("/edge/client/v1/x/../current-identity/mfa", "mfa_read"),
                              ("//edge/client/v1/current-identity/%6dfa", "mfa_read"),
                              ("/edge/client/v1/current-identity/mfa/", "mfa_read")):
        for _ in range(3):
            r = call(qg, "GET", target, headers={"Authorization": "Bearer " + token}, ca=qg.ca)
            assert r.header("Quorumgate-Controller") == leader, (target, r.status)
        line = wait_access(qg, lambda e: e.get("path") == target)
        assert (line["class"], line["call"], line["decision"]) == ("mfa", call_name, "pinned"), line
