"""A fence lifted in the middle of an OIDC login (issue 18, found by
bench/soak.py): the lagging controller answered the password step without
asking for TOTP (it lacked the verify then), caught up, its fence went, and
the token step came after that.  The controller does not look again: an OIDC
token's session is MFA-complete by its amr claim alone (the real controller:
controller/env/appenv.go, MfaRequired false for a JWT's API session).  So
quorumgate reads the identity's enrollment on the minting controller, with
the new token, before it passes a token without "totp" that a controller
fenced for someone lately minted.  The simulator's request log and each
answer's Quorumgate-Controller header are the witnesses."""
from tests.conftest import IDENTITIES
from tests.ctrlsim.client import ZitiClient
from tests.integration.gate_support import (MFA_PATH, STEADY_HEALTH, fenced_verify, last_seq, requests_on, roles,
                                            wait_all_have, wait_fenced, wait_until)
from tests.integration.routing_support import client_with_token, oidc_login

GATE = {"gate": {"mode": "majority", "timeout": "1000ms", "probe": {"initial": "20ms", "max": "100ms"}},
        "health": STEADY_HEALTH}


def refused(qg, node):
    return qg.metrics().value("quorumgate_login_tokens_refused_total", controller=node) or 0


def caught_up(qg, alice, mfa_id, lagging):
    """lagging applies the verify; its fence goes, here and in Redis."""
    qg.sim.control.set_lag(lagging, 0)
    wait_all_have(qg.sim, alice.identity_id, mfa_id, verified=True)
    wait_fenced(qg, alice.identity_id, [], timeout=5)
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 0, timeout=5,
               what="fenced_identities to drop to 0")


def login_held_by(qg, node, name, before_token=None, totp_secret=None, net="127.0.3"):
    """An OIDC login of name whose auth request node holds, from addresses
    no fenced identity's calls came from (nothing steers its first step):
    first steps that went elsewhere are abandoned."""
    held = lambda r: r.header("quorumgate-controller") == node  # noqa: E731
    for i in range(40):
        c = ZitiClient(qg.url)
        c.source_address = "%s.%d" % (net, i + 1)
        lg = oidc_login(c, c, name, IDENTITIES[name], totp_secret=totp_secret, after_authorize=held,
                        before_token=before_token)
        if lg.failed_step != "stopped after authorize":
            return lg
    raise AssertionError("no OIDC login's first step reached %s in 40 tries" % node)


def test_a_token_minted_without_totp_is_refused_when_the_fence_went_after_its_password_step(quorumgate):
    qg = quorumgate(GATE)
    sim = qg.sim
    _, (lagging, _) = roles(sim)
    alice, mfa_id, secret, _ = fenced_verify(qg, lagging)

    lg = login_held_by(qg, lagging, "alice", totp_secret=secret,
                       before_token=lambda lg: caught_up(qg, alice, mfa_id, lagging))
    # the lagging controller let the password step through without TOTP
    assert [n for n, _ in lg.steps] == ["authorize", "login-page", "password", "callback", "token"], lg.failed_step
    assert set(lg.controllers()) == {lagging}
    name, r = lg.steps[-1]
    assert r.status == 503, (r.status, r.body[:300])
    assert r.json()["error"]["code"] == "REPLICATION_LOGIN_FENCED"
    assert b"access_token" not in r.body and b"eyJ" not in r.body
    assert refused(qg, lagging) == 1
    # the read that decided it: alice's enrollment, verified there now
    assert len(requests_on(sim, lagging, "GET", MFA_PATH)) >= 1

    # logging in again there asks for TOTP, and its token passes
    again = login_held_by(qg, lagging, "alice", totp_secret=secret, net="127.0.4")
    assert again.ok, again.failed_step
    assert "totp" in [n for n, _ in again.steps]
    assert client_with_token(qg.url, None, again.tokens["access_token"]).claims()["sub"] == alice.identity_id
    assert refused(qg, lagging) == 1


def fence_went(quorumgate):
    """alice's verify fenced a follower, which then caught up: its fence went a moment ago.
    (qg, the follower, alice's TOTP secret)"""
    qg = quorumgate(GATE)
    _, (lagging, _) = roles(qg.sim)
    alice, mfa_id, secret, _ = fenced_verify(qg, lagging)
    caught_up(qg, alice, mfa_id, lagging)
    return qg, lagging, secret


def test_a_token_without_totp_passes_where_the_identity_has_no_mfa_after_reading_it(quorumgate):
    qg, lagging, _ = fence_went(quorumgate)
    sim = qg.sim

    # bob has no MFA: his token from the controller fenced lately is read
    # for, and passed
    seq = last_seq(sim, lagging)
    lg = login_held_by(qg, lagging, "bob")
    assert lg.ok, lg.failed_step
    assert set(lg.controllers()) == {lagging}
    reads = requests_on(sim, lagging, "GET", MFA_PATH, since_seq=seq)
    assert [x["status"] for x in reads] == [404], reads
    bob = client_with_token(qg.url, None, lg.tokens["access_token"])
    bob.current_identity().expect(200)
    assert refused(qg, lagging) == 0


def test_the_client_whose_verify_named_a_controller_pending_logs_in_elsewhere_next(quorumgate):
    """The usual next step after a verify is a login from the same place:
    the held answer notes the client's address for the controllers it names
    pending (fence hints), so that login's first step avoids them."""
    qg = quorumgate(GATE)
    sim = qg.sim
    _, (lagging, _) = roles(sim)
    alice, _, secret, _ = fenced_verify(qg, lagging)
    seq = last_seq(sim, lagging)
    for _ in range(6):
        lg = oidc_login(ZitiClient(qg.url), ZitiClient(qg.url), "alice", IDENTITIES["alice"], totp_secret=secret)
        assert lg.ok, lg.failed_step
        assert "totp" in [n for n, _ in lg.steps]
    assert requests_on(sim, lagging, path="/oidc/*", since_seq=seq) == []
    assert refused(qg, lagging) == 0


def test_a_login_that_asked_for_totp_passes_where_a_fence_went_lately(quorumgate):
    """The other side: the token answer of a login whose TOTP step ran says so (the ID token's amr;
    the access token carries none, as on real controllers), and is passed without a read.  The
    30-minute soak on v1.7.2 saw 10,127 such logins refused when only the access token was looked
    at."""
    qg, lagging, secret = fence_went(quorumgate)
    sim = qg.sim
    seq = last_seq(sim, lagging)
    for net in ("127.0.5", "127.0.6", "127.0.7"):
        lg = login_held_by(qg, lagging, "alice", totp_secret=secret, net=net)
        assert lg.ok, lg.failed_step
        assert "totp" in [n for n, _ in lg.steps]
    assert requests_on(sim, lagging, "GET", MFA_PATH, since_seq=seq) == []
    assert refused(qg, lagging) == 0


def test_a_token_whose_mfa_state_cannot_be_read_is_refused(quorumgate):
    """The read that decides is answered 500 by the controller that minted the token: its MFA
    state is unknown, so the token without TOTP is not passed (503, logged); the next login
    passes once the controller answers again."""
    qg, lagging, _ = fence_went(quorumgate)
    qg.sim.control.inject("500", MFA_PATH, method="GET", node=lagging, count=1)
    lg = login_held_by(qg, lagging, "bob")
    name, r = lg.steps[-1]
    assert name == "token" and r.status == 503, lg.failed_step
    assert r.json()["error"]["code"] == "REPLICATION_LOGIN_FENCED"
    assert b"access_token" not in r.body and b"eyJ" not in r.body
    assert refused(qg, lagging) == 1
    wait_until(lambda: "could not be read on %s" % lagging in qg.stderr_text(), timeout=5,
               what="the warning about the unreadable MFA state")
    again = login_held_by(qg, lagging, "bob", net="127.0.8")
    assert again.ok, again.failed_step
    assert refused(qg, lagging) == 1
