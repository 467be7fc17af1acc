"""Tokens some controllers refuse (issue 12): a real cluster can record a member's raft client
certificate as its token-signing key (v1.5.4 controller/raft/mesh/mesh.go:822;
tests/realcluster/OBSERVATIONS.md), and every other member then refuses that member's OIDC
tokens with 401 before any handler runs.  The simulator models it
(`POST /nodes/<id>/misrecord-key`); quorumgate resends such a call to the token's minter, routes
the minter's tokens there afterwards, and confirms a held verify on the members refusing the
token with its management credential.  The real-cluster twin is
tests/realcluster/test_key_refusal_real.py."""
import os

from tests.conftest import IDENTITIES
from tests.ctrlsim.client import ZitiClient
from tests.integration.gate_support import metric, mfa_states, replication, totp_now, wait_leader_known


def _refused(r):
    """The controller's own 401 (its error envelope, code UNAUTHORIZED)."""
    assert r.status == 401, (r.status, r.body[:300])
    assert r.json()["error"]["code"] == "UNAUTHORIZED", r.body[:300]


def _mgmt(tmp_path):
    pw = tmp_path / "mgmt.password"
    pw.write_text("admin-pw\n")
    os.chmod(pw, 0o600)
    return {"gate": {"timeout": "5s", "mode": "all",
                     "management": {"username": "admin", "password_file": str(pw)}}}


def _resends(qg):
    return sum(metric(qg, "quorumgate_token_resends_total", controller=n) for n in qg.sim.node_ids)


def _token_of(qg, node, name="alice"):
    d = ZitiClient(qg.sim.url(node), ca_file=qg.ca)
    d.oidc_login(name, IDENTITIES[name]).expect(200)
    return d


def test_the_simulator_refuses_a_misrecorded_members_tokens(quorumgate):
    """The model itself: the minter accepts its own token, the others answer 401 UNAUTHORIZED."""
    qg = quorumgate()
    sim = qg.sim
    minter = sim.node_ids[1]
    sim.control.misrecord_key(minter)
    d = _token_of(qg, minter)
    d.current_identity().expect(200)
    for n in sim.node_ids:
        if n != minter:
            o = ZitiClient(sim.url(n), ca_file=qg.ca)
            o.access_token = d.access_token
            _refused(o.current_identity())


def test_a_refused_token_is_served_and_its_enrollment_held(quorumgate, tmp_path):
    qg = quorumgate(_mgmt(tmp_path))
    sim = qg.sim
    leader = wait_leader_known(qg)
    minter = [n for n in sim.node_ids if n != leader][0]
    sim.control.misrecord_key(minter)
    d = _token_of(qg, minter)
    iid = d.identity_id
    c = ZitiClient(qg.url, ca_file=qg.ca)
    c.access_token = d.access_token

    # leader-pinned, refused by the leader: resent to the minter (a follower forwards the write)
    r = c.mfa_create()
    r.expect(201)
    assert r.header("quorumgate-controller") == minter
    assert r.header("quorumgate-attempts") == "2"
    assert _resends(qg) == 1
    assert metric(qg, "quorumgate_token_resends_total", controller=leader) == 1
    mfa_id = r.json()["data"]["id"]
    # now known: the minter's token goes to the minter first, whatever the route class
    for _ in range(6):
        r = c.current_identity()
        r.expect(200)
        assert r.header("quorumgate-controller") == minter
    assert _resends(qg) == 1
    secret = c.mfa_secret()
    r = c.mfa_verify(totp_now(secret))
    states = mfa_states(sim, iid)
    r.expect(200)
    assert states == {n: {"id": mfa_id, "isVerified": True} for n in sim.node_ids}, states
    rep = replication(r)
    assert sorted(rep["acked"]) == sorted(sim.node_ids) and not rep["pending"], rep
    assert _resends(qg) == 1


def test_a_first_verify_reads_and_verifies_on_the_minter(quorumgate, tmp_path):
    """No refusal seen yet: the verify's enrollment read on the leader is refused, read on the
    minter, and the verify sent there; the members refusing the token confirm it through the
    management API while one of them lags."""
    qg = quorumgate(_mgmt(tmp_path))
    sim = qg.sim
    leader = wait_leader_known(qg)
    minter = [n for n in sim.node_ids if n != leader][0]
    other = [n for n in sim.node_ids if n not in (leader, minter)][0]
    sim.control.misrecord_key(minter)
    d = _token_of(qg, minter)
    mfa_id = d.mfa_create().expect(201).json()["data"]["id"]
    secret = d.mfa_secret()
    sim.control.set_lag(other, 600)
    c = ZitiClient(qg.url, ca_file=qg.ca)
    c.access_token = d.access_token
    r = c.mfa_verify(totp_now(secret))
    states = mfa_states(sim, d.identity_id)
    r.expect(200)
    assert states == {n: {"id": mfa_id, "isVerified": True} for n in sim.node_ids}, states
    assert r.header("quorumgate-controller") == minter
    assert sorted(replication(r)["acked"]) == sorted(sim.node_ids), r.header("quorumgate-replication")
    assert _resends(qg) == 1


def test_an_expired_or_foreign_401_is_not_resent(quorumgate):
    """Only a valid token of another minter is resent: a token no controller signed gets the
    controller's own 401, sent once."""
    qg = quorumgate()
    sim = qg.sim
    wait_leader_known(qg)
    d = _token_of(qg, sim.node_ids[0])
    head, payload, sig = d.access_token.split(".")
    forged = ".".join((head, payload, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")))
    c = ZitiClient(qg.url, ca_file=qg.ca)
    c.access_token = forged
    r = c.current_identity()
    _refused(r)
    assert r.header("quorumgate-attempts") == "1"
    assert _resends(qg) == 0
