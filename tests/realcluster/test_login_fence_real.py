"""The token check after a fence went (issue 18), on real controllers.  quorumgate passes a token
without "totp" in its amr, minted by a member fenced for anyone lately, only after that member
shows the identity without a verified enrollment (GET .../current-identity/mfa with the new
token).  Here: what the real members answer that read with such a token (404 without MFA; the
verified enrollment when the identity enrolled after the login -- an OIDC token's session is
MFA-complete by its amr alone, controller/env/appenv.go, so the read is not refused), and an
identity without MFA logging in through quorumgate right after every member's fence went: its
token passes, after one read answered 404 by the member that minted it; once enrolled, its login
with TOTP passes without a read (its ID token's amr says totp; the access token has no amr)."""
from tests.integration.routing_support import client_with_token, lift_fence, write_fence
from tests.realcluster.support import enroll, login, qg_client, verify_code, wait_leader_known
from tests.support.procs import wait_until

MFA_PATH = "/edge/client/v1/current-identity/mfa"


def _token_line(qg, after=0):
    """The access-log line of the last token call among the lines after the first `after`."""
    lines = [x for x in qg.access_log()[after:] if x.get("path", "").startswith("/oidc/oauth/token")]
    return lines[-1] if lines else None


def test_a_token_without_totp_is_read_for_where_a_fence_went_lately(cluster, identity, rc_qg):
    qg = rc_qg()
    wait_leader_known(qg, cluster)
    # every member fenced for someone, then lifted: each was fenced "lately"
    idhex = write_fence(qg, "someone-else", list(cluster.node_ids))
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 1, timeout=10,
               what="the fence reaching quorumgate")
    lift_fence(qg, idhex)
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 0, timeout=10,
               what="the fence lifted in quorumgate")

    name, pw, iid = identity("lifted")
    c = qg_client(qg)
    c.oidc_login(name, pw).expect(200)
    # what the token answer says of the login: the access token has no amr, the ID token does
    assert "amr" not in c.claims(), c.claims()
    assert c.claims(c.id_token)["amr"] == ["password"], c.claims(c.id_token)
    line = wait_until(lambda: _token_line(qg), timeout=5, what="the token call's access-log line")
    minter = line["controller"]
    reads = [u for u in line["upstream"] if u.get("read")]
    assert [(u["controller"], u["outcome"], u["status"]) for u in reads] == [(minter, "no_mfa", 404)], line
    c.current_identity().expect(200)                       # the token passed
    assert (qg.metrics().value("quorumgate_login_tokens_refused_total", controller=minter) or 0) == 0

    # the identity enrolls with that token: every member then shows the verified enrollment to
    # the same token, whose amr still lacks totp -- what the check reads
    mfa_id, secret = enroll(c, cluster, iid)
    c.mfa_verify(verify_code(secret)).expect(200)
    cluster.wait_mfa(iid, True)
    for m in cluster.node_ids:
        d = client_with_token(cluster.url(m), cluster.ca, c.access_token)
        r = d.request("GET", MFA_PATH)
        assert r.status == 200, (m, r.status, r.body[:300])
        data = r.json()["data"]
        assert data["id"] == mfa_id and data["isVerified"] is True, (m, data)

    # the next login asks for TOTP: its token passes, no read
    before = len(qg.access_log())
    c2 = qg_client(qg)
    login(c2, "oidc", name, pw, totp_secret=secret)
    assert sorted(c2.claims(c2.id_token)["amr"]) == ["password", "totp"], c2.claims(c2.id_token)
    line = wait_until(lambda: _token_line(qg, after=before), timeout=5,
                      what="the second token call's access-log line")
    assert line["status"] == 200 and not [u for u in line["upstream"] if u.get("read")], line
    c2.current_identity().expect(200)
