"""MFA enrollment through quorumgate on a real cluster (issue 12, item 2), for OIDC and legacy
logins; every scenario reads isMfaEnabled from every controller's management API afterwards."""
import pytest

from tests.integration.gate_support import wait_fenced
from tests.realcluster.support import (KINDS, Background, all_members, enroll, login, qg_client, replication,
                                       verify_code, wait_leader_known)
from tests.support.procs import wait_until


@pytest.mark.parametrize("kind", KINDS)
def test_whole_enrollment_through_quorumgate(cluster, identity, rc_qg, kind):
    qg = rc_qg()
    wait_leader_known(qg, cluster)
    name, pw, iid = identity()
    c = qg_client(qg)
    login(c, kind, name, pw)
    mfa_id, secret = enroll(c, cluster, iid)

    r = c.mfa_verify(verify_code(secret))
    states = cluster.mfa_enabled(iid)          # read the moment verify answered
    r.expect(200)
    assert states == {m: True for m in cluster.node_ids}, states
    rep = replication(r)
    assert rep is not None and sorted(rep["acked"]) == sorted(cluster.node_ids) and not rep["pending"], \
        r.header("quorumgate-replication")

    # verified: detail without secrets, no QR code, recovery codes with a TOTP code
    d = c.mfa_get().expect(200).json()["data"]
    # the real detail keeps "recoveryCodes": null once verified (OBSERVATIONS.md)
    assert d["isVerified"] is True and not d.get("provisioningUrl") and not d.get("recoveryCodes"), d
    assert c.mfa_qr().status == 404
    if kind == "legacy":
        # the session that verified is MFA-complete on its home
        codes = c.recovery_codes(verify_code(secret)).expect(200).json()["data"]["recoveryCodes"]
    else:
        # an OIDC token minted before the enrollment has no TOTP claim: log in again with TOTP
        c2 = qg_client(qg)
        login(c2, kind, name, pw, totp_secret=secret)
        c = c2
        codes = c.recovery_codes(verify_code(secret)).expect(200).json()["data"]["recoveryCodes"]
    assert len(codes) == 20, codes

    r = c.mfa_delete(verify_code(secret))
    states = cluster.mfa_enabled(iid)
    r.expect(200)
    assert states == {m: False for m in cluster.node_ids}, states


@pytest.mark.parametrize("kind", KINDS)
def test_next_login_through_quorumgate_requires_totp_everywhere(cluster, identity, rc_qg, kind):
    """After a verify answered through quorumgate, a new login lands on any controller and every
    one of them asks for the TOTP code."""
    qg = rc_qg()
    wait_leader_known(qg, cluster)
    name, pw, iid = identity()
    c = qg_client(qg)
    login(c, kind, name, pw)
    mfa_id, secret = enroll(c, cluster, iid)
    c.mfa_verify(verify_code(secret)).expect(200)
    for mid in cluster.node_ids:
        d = cluster.client(mid)
        if kind == "oidc":
            with pytest.raises(AssertionError, match="TOTP required"):
                d.oidc_login(name, pw)
        else:
            r = d.legacy_login(name, pw).expect(200)
            assert [q["typeId"] for q in r.json()["data"]["authQueries"]] == ["MFA"], (mid, r.body[:300])


@pytest.mark.parametrize("kind", KINDS)
def test_authenticate_mfa_after_login(cluster, identity, rc_qg, kind):
    """legacy: /authenticate/mfa completes the session on its home; OIDC: the TOTP step of the
    OIDC login does it (a JWT at /authenticate/mfa is not a legacy session)."""
    qg = rc_qg()
    wait_leader_known(qg, cluster)
    name, pw, iid = identity()
    c = qg_client(qg)
    login(c, kind, name, pw)
    mfa_id, secret = enroll(c, cluster, iid)
    c.mfa_verify(verify_code(secret)).expect(200)

    c2 = qg_client(qg)
    if kind == "legacy":
        r = c2.legacy_login(name, pw).expect(200)
        assert r.json()["data"]["authQueries"][0]["typeId"] == "MFA"
        assert c2.current_identity().status == 401          # partially authenticated
        c2.authenticate_mfa(verify_code(secret)).expect(200)
        c2.current_identity().expect(200)
    else:
        c2.oidc_login(name, pw, totp_secret=secret).expect(200)
        assert c2.last_totp_required is True
        c2.current_identity().expect(200)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("when", ["between", "during"])
def test_leadership_transfer_and_verify(cluster, identity, rc_qg, kind, when):
    qg = rc_qg()
    lead = wait_leader_known(qg, cluster)
    name, pw, iid = identity()
    c = qg_client(qg)
    login(c, kind, name, pw)
    mfa_id, secret = enroll(c, cluster, iid)
    to = [m for m in cluster.node_ids if m != lead][0]
    if when == "between":
        cluster.transfer_leadership(to)
        r = c.mfa_verify(verify_code(secret))
    else:
        bg = Background(c.mfa_verify, verify_code(secret))
        cluster.transfer_leadership(to)
        r = bg.result(30)
    states = cluster.mfa_enabled(iid)
    r.expect(200)
    assert states == {m: True for m in cluster.node_ids}, (states, r.headers)


@pytest.mark.parametrize("kind", ["oidc"])
# "during" failed on v1.7.2 before two gate fixes (a bearer token quorumgate could not verify was
# passed unheld; a state read that met the dying leader left the gate without the enrollment id);
# since, 5 of 5 passed on each version (no longer marked xfail)
@pytest.mark.parametrize("when", ["between", "during"])
def test_leader_killed_and_verify(cluster, identity, rc_qg, kind, when):
    """OIDC only: a legacy session lives on its issuing controller (the leader, where quorumgate
    sends legacy logins), so killing that controller ends the session by design."""
    qg = rc_qg({"routing": {"leader_wait": "20s"},
                "retry": {"policies": {"mfa": {"deadline": "25s", "per_try_timeout": "6s"}}}})
    lead = wait_leader_known(qg, cluster)
    name, pw, iid = identity()
    c = qg_client(qg, timeout=60)
    login(c, kind, name, pw)
    mfa_id, secret = enroll(c, cluster, iid)
    if when == "between":
        cluster.kill(lead)
        r = c.mfa_verify(verify_code(secret))
    else:
        # the leader frozen first so the verify is certainly in flight at it when it dies
        cluster.pause(lead)
        bg = Background(c.mfa_verify, verify_code(secret))
        wait_until(lambda: qg.metrics().value("quorumgate_requests_in_flight") >= 1, timeout=5,
                   what="the verify in flight")
        cluster.kill(lead)
        r = bg.result(60)
    r.expect(200)
    alive = [m for m in cluster.node_ids if m != lead]
    states = cluster.mfa_enabled(iid, members=alive)
    assert states == {m: True for m in alive}, (states, r.headers)
    cluster.restart(lead)
    cluster.wait_mfa(iid, True)


@pytest.mark.parametrize("kind", KINDS)
def test_follower_stopped_during_verify_times_out_with_pending_and_fences(cluster, identity, rc_qg, kind):
    qg = rc_qg({"gate": {"timeout": "3s"}})
    lead = wait_leader_known(qg, cluster)
    name, pw, iid = identity()
    c = qg_client(qg)
    r = login(c, kind, name, pw)
    home = r.header("quorumgate-controller")
    mfa_id, secret = enroll(c, cluster, iid)
    stopped = [m for m in cluster.node_ids if m not in (lead, home)][0]
    cluster.pause(stopped)
    try:
        r = c.mfa_verify(verify_code(secret))
        r.expect(200)
        rep = replication(r)
        assert rep["pending"] == [stopped], r.header("quorumgate-replication")
        assert stopped not in rep["acked"]
        wait_fenced(qg, iid, [stopped])   # the Redis copy follows the answer by a moment
    finally:
        cluster.resume(stopped)
    # the fenced identity's next login through quorumgate requires TOTP
    c2 = qg_client(qg)
    if kind == "oidc":
        with pytest.raises(AssertionError, match="TOTP required"):
            c2.oidc_login(name, pw)
    else:
        r = c2.legacy_login(name, pw).expect(200)
        assert [q["typeId"] for q in r.json()["data"]["authQueries"]] == ["MFA"], r.body[:300]
    cluster.wait_mfa(iid, True)
