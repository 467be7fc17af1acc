"""MFA enrollment endpoints (current_identity_router.go + mfa_manager.go)."""
import pytest

from tests.conftest import IDENTITIES
from tests.ctrlsim.client import ZitiClient, totp_now
from tests.ctrlsim.totp import secret_from_url


def login(sim, nid, name="alice", kind="oidc", api="client"):
    c = ZitiClient(sim.url(nid), ca_file=sim.ca)
    if kind == "oidc":
        c.oidc_login(name, IDENTITIES[name]).expect(200)
    else:
        c.legacy_login(name, IDENTITIES[name], api=api).expect(200)
    return c


@pytest.mark.parametrize("api", ["client", "management"])
def test_enrollment_happy_path_and_errors(sim, api):
    c = login(sim, "ctrl1", kind="legacy", api=api)
    assert c.mfa_get(api).status == 404                 # not started
    assert c.mfa_qr(api).status == 404
    assert c.mfa_verify("123456", api).status == 404
    r = c.mfa_create(api).expect(201)
    mfa_id = r.json()["data"]["id"]
    assert r.json()["data"]["_links"] == {"self": {"href": "./current-identity/mfa"}}
    r2 = c.mfa_create(api)
    assert r2.status == 409 and r2.error_code == "MFA_EXISTS"
    d = c.mfa_get(api).expect(200).json()["data"]
    assert d["id"] == mfa_id and d["isVerified"] is False
    assert d["provisioningUrl"].startswith("otpauth://totp/openziti.io:alice?issuer=openziti.io&secret=")
    assert len(d["recoveryCodes"]) == 20 and all(len(x) == 6 for x in d["recoveryCodes"])
    secret = secret_from_url(d["provisioningUrl"])
    assert len(secret) == 16                              # base32 of 10 bytes
    q = c.mfa_qr(api).expect(200)
    assert q.header("content-type") == "image/png" and q.body.startswith(b"\x89PNG\r\n\x1a\n")
    bad = c.mfa_verify("000000" if totp_now(secret) != "000000" else "111111", api)
    assert bad.status == 400 and bad.error_code == "MFA_INVALID_TOKEN"
    assert c.mfa_verify("12345678", api).status == 400
    c.mfa_verify(totp_now(secret), api).expect(200)
    assert c.mfa_verify(totp_now(secret), api).status == 404      # already verified
    assert c.mfa_qr(api).status == 404                             # already verified
    d = c.mfa_get(api).expect(200).json()["data"]
    # real controllers keep "recoveryCodes": null once verified (tests/realcluster/OBSERVATIONS.md)
    assert d["isVerified"] is True and "provisioningUrl" not in d and d["recoveryCodes"] is None
    assert c.mfa_create(api).status == 409


def test_recovery_codes_and_delete(sim):
    c = login(sim, "ctrl2")
    c.mfa_create().expect(201)
    codes = c.mfa_get().json()["data"]["recoveryCodes"]
    secret = c.mfa_secret()
    assert c.recovery_codes(totp_now(secret)).status == 404          # not verified yet
    c.mfa_verify(totp_now(secret)).expect(200)
    r = c.recovery_codes("")
    assert r.status == 400 and r.error_code == "MFA_INVALID_TOKEN"   # the code is required
    assert c.recovery_codes(codes[0]).status == 400                  # GET takes TOTP only
    assert c.recovery_codes(totp_now(secret)).expect(200).json()["data"]["recoveryCodes"] == codes
    c.new_recovery_codes(codes[0]).expect(200)                      # POST takes a recovery code too
    new = c.recovery_codes(totp_now(secret)).expect(200).json()["data"]["recoveryCodes"]
    assert len(new) == 20 and new != codes
    assert c.mfa_delete("").status == 400                            # verified: code needed
    assert c.mfa_delete("999999" if totp_now(secret) != "999999" else "888888").status == 400
    c.mfa_delete(new[3]).expect(200)                                 # a recovery code works
    assert c.mfa_get().status == 404
    assert c.mfa_delete("").status == 404


def test_delete_unverified_needs_no_code(sim):
    c = login(sim, "ctrl1")
    c.mfa_create().expect(201)
    c.mfa_delete("").expect(200)
    c.mfa_create().expect(201)


def test_legacy_partial_session_after_mfa(sim):
    c = login(sim, "ctrl1", kind="legacy")
    secret = c.enroll_mfa()
    p = login(sim, "ctrl1", kind="legacy")        # new session: MFA now required
    d = p.legacy_login("alice", IDENTITIES["alice"]).json()["data"]
    assert d["isMfaRequired"] is True and d["isMfaComplete"] is False
    assert d["authQueries"] == [{"format": "alphaNumeric", "httpMethod": "POST", "httpUrl": "./authenticate/mfa",
                                 "maxLength": 6, "minLength": 4, "provider": "ziti", "typeId": "MFA"}]
    # partially authenticated: MFA detail allowed, full-auth endpoints not
    assert p.mfa_get().status == 200
    assert p.current_identity().status == 401
    assert p.mfa_delete(totp_now(secret)).status == 401
    assert p.authenticate_mfa("000000" if totp_now(secret) != "000000" else "111111").status == 400
    p.authenticate_mfa(totp_now(secret)).expect(200)
    assert p.current_identity().status == 200


def test_authenticate_mfa_without_enrollment(sim):
    c = login(sim, "ctrl1", kind="legacy")
    r = c.authenticate_mfa("123456")
    assert r.status == 409 and r.error_code == "MFA_NOT_ENROLLED"


def test_jwt_session_is_fully_authenticated_even_without_totp(sim):
    # ProcessJwt grants AuthenticatedPermission whatever the amr (v1.5.4)
    c = login(sim, "ctrl3")
    secret = c.enroll_mfa()
    assert "amr" not in c.claims() and "totp" not in c.claims(c.id_token)["amr"]
    assert c.current_identity().status == 200
    assert c.recovery_codes(totp_now(secret)).status == 200


def test_admin_mfa_removal_is_local_only(sim):
    """DELETE /edge/management/v1/identities/{id}/mfa bypasses raft in v1.5.4
    (MfaManager.DeleteAllForIdentity, openziti/ziti #4291)."""
    c = login(sim, "ctrl1")
    c.enroll_mfa()
    sim.control.wait_applied()
    a = login(sim, "ctrl2", name="admin", kind="legacy", api="management")
    a.request("DELETE", "/edge/management/v1/identities/%s/mfa" % c.identity_id).expect(200)
    assert sim.control.mfa_on("ctrl2", c.identity_id) is None
    assert sim.control.mfa_on("ctrl1", c.identity_id)["isVerified"] is True
    assert sim.control.mfa_on("ctrl3", c.identity_id)["isVerified"] is True
