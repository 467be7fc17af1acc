"""Controllers with the quickstart's default configuration (no health-checks API): quorumgate
finds the leader through /fabric/v1/cluster/list-members with gate.management and the whole
enrollment works, held until every member has it.  This module sorts last: the members are
restarted once on the default ctrl.yaml (the next version gets a fresh cluster)."""
import pytest

from tests.realcluster.cluster import events_file
from tests.realcluster.support import KINDS, enroll, login, qg_client, replication, verify_code, wait_leader_known


@pytest.fixture
def default_cluster(cluster):
    def drop_health_checks(member_id, cfg):
        for web in cfg.get("web", []):
            web["apis"] = [a for a in web.get("apis", []) if a.get("binding") != "health-checks"]
    cluster.reconfigure([drop_health_checks, events_file])
    cluster.current_edits = (drop_health_checks, events_file)
    assert cluster.client(cluster.node_ids[0]).raft_health().status == 404
    return cluster


@pytest.mark.parametrize("kind", KINDS)
def test_default_configuration_enrollment_through_quorumgate(default_cluster, identity, rc_qg, kind):
    cluster = default_cluster
    qg = rc_qg()
    lead = wait_leader_known(qg, cluster)
    name, pw, iid = identity()
    c = qg_client(qg)
    login(c, kind, name, pw)
    mfa_id, secret = enroll(c, cluster, iid)
    r = c.mfa_verify(verify_code(secret))
    states = cluster.mfa_enabled(iid)
    r.expect(200)
    assert states == {m: True for m in cluster.node_ids}, states
    assert sorted(replication(r)["acked"]) == sorted(cluster.node_ids), r.header("quorumgate-replication")
    assert r.header("quorumgate-controller") == lead
