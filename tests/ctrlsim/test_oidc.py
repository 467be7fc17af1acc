"""The OIDC login as v1.5.4 serves it (controller/oidc_auth)."""
import base64
import hashlib
import urllib.parse

from tests.conftest import IDENTITIES
from tests.ctrlsim.client import ZitiClient, totp_now

REDIRECT = "http://127.0.0.1:20202/auth/callback"


def cli(sim, nid):
    return ZitiClient(sim.url(nid), ca_file=sim.ca)


def pkce():
    verifier = "v" * 50
    ch = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, ch


def authorize(c, challenge, state="st1"):
    q = urllib.parse.urlencode({"client_id": "openziti", "response_type": "code", "scope": "openid",
                                "redirect_uri": REDIRECT, "code_challenge": challenge,
                                "code_challenge_method": "S256", "state": state})
    r = c.request("GET", "/oidc/authorize?" + q, auth=False)
    assert r.status == 302
    loc = r.header("location")
    assert loc.startswith("/oidc/login/username?authRequestID=")
    return loc.split("=", 1)[1]


def test_full_login_tokens_valid_everywhere(sim):
    c = cli(sim, "ctrl2")
    tr = c.oidc_login("alice", IDENTITIES["alice"]).expect(200)
    t = tr.json()
    assert t["token_type"] == "Bearer" and t["expires_in"] > 0
    assert set(t) >= {"access_token", "refresh_token", "id_token"}
    claims = c.claims()
    ident = [i for i in sim.control.state()["identities"] if i["name"] == "alice"][0]
    assert claims["sub"] == ident["id"] and claims["z_t"] == "a"
    # as on real controllers: the access token has no amr; the ID token names the methods
    assert "amr" not in claims and c.claims(c.id_token)["amr"] == ["password"]
    for nid in sim.node_ids:
        o = cli(sim, nid)
        o.access_token = c.access_token
        assert o.current_identity().expect(200).json()["data"]["name"] == "alice"
        o.refresh_token = c.refresh_token
        o.refresh().expect(200)                       # refresh works on any node
        assert o.claims()["sub"] == ident["id"]
    # garbage bearer: 401
    o = cli(sim, "ctrl1")
    o.access_token = c.access_token[:-4] + "AAAA"
    assert o.current_identity().status == 401


def test_auth_request_and_code_live_on_one_node(sim):
    verifier, ch = pkce()
    c1, c2 = cli(sim, "ctrl1"), cli(sim, "ctrl2")
    rid = authorize(c1, ch)
    r = c1.request("GET", "/oidc/login/password?authRequestID=" + rid, auth=False)
    assert r.status == 200 and r.header("auth-request-id") == rid
    # the password step on another node does not know the request: v1.5.4
    # renders the login page again (200, no redirect)
    r = c2.request("POST", "/oidc/login/password", auth=False,
                   body={"username": "alice", "password": IDENTITIES["alice"], "id": rid})
    assert r.status == 200 and r.header("location") is None and "text/html" in r.header("content-type")
    # on the owner: 302 to the absolute callback of this issuer
    r = c1.request("POST", "/oidc/login/password?authRequestID=" + rid, auth=False,
                   form={"username": "alice", "password": IDENTITIES["alice"]})
    assert r.status == 302
    cb = r.header("location")
    assert cb == "http://127.0.0.1:%d/oidc/authorize/callback?id=%s" % (sim.port("ctrl1"), rid)
    # callback elsewhere: unknown request
    assert c2.request("GET", "/oidc/authorize/callback?id=" + rid, auth=False).status == 400
    r = c1.request("GET", "/oidc/authorize/callback?id=" + rid, auth=False).expect(302)
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(r.header("location")).query)
    assert r.header("location").startswith(REDIRECT + "?") and q["state"] == ["st1"]
    form = {"grant_type": "authorization_code", "code": q["code"][0], "code_verifier": verifier,
            "client_id": "openziti", "redirect_uri": REDIRECT}
    bad = c2.request("POST", "/oidc/oauth/token", auth=False, form=form)      # code not on ctrl2
    assert bad.status == 400 and bad.json()["error"] == "invalid_grant"
    wrong = c1.request("POST", "/oidc/oauth/token", auth=False, form=dict(form, code_verifier="x" * 50))
    assert wrong.status == 400 and wrong.json()["error"] == "invalid_grant"
    # the failed PKCE attempt consumed the code (single use)
    assert c1.request("POST", "/oidc/oauth/token", auth=False, form=form).status == 400


def test_code_exchange_on_owner(sim):
    verifier, ch = pkce()
    c = cli(sim, "ctrl3")
    rid = authorize(c, ch, state="zz")
    r = c.request("POST", "/oidc/login/username", auth=False,
                  body={"username": "bob", "password": IDENTITIES["bob"], "id": rid}).expect(302)
    r = c.request("GET", urllib.parse.urlsplit(r.header("location")).path + "?id=" + rid, auth=False).expect(302)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.header("location")).query)["code"][0]
    t = c.request("POST", "/oidc/oauth/token", auth=False,
                  form={"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                        "client_id": "openziti", "redirect_uri": REDIRECT}).expect(200)
    assert "access_token" in t.json()


def test_totp_step_when_mfa_verified(sim):
    c = cli(sim, "ctrl1")
    c.oidc_login("alice", IDENTITIES["alice"]).expect(200)
    secret = c.enroll_mfa()
    sim.control.wait_applied()
    verifier, ch = pkce()
    o = cli(sim, "ctrl2")
    rid = authorize(o, ch)
    r = o.request("POST", "/oidc/login/password", auth=False,
                  body={"username": "alice", "password": IDENTITIES["alice"], "id": rid})
    assert r.status == 200 and r.header("totp-required") == "true"
    assert r.json() == {"authQueries": [{"format": "numeric", "httpMethod": "POST", "httpUrl": "./oidc/login/totp",
                                         "maxLength": 8, "minLength": 6, "provider": "ziti", "typeId": "TOTP"}]}
    # callback before TOTP: not done
    r = o.request("GET", "/oidc/authorize/callback?id=" + rid, auth=False)
    assert r.status == 302 and "error=" in r.header("location") and "code=" not in r.header("location")
    bad = o.request("POST", "/oidc/login/totp", auth=False,
                    body={"id": rid, "code": "000000" if totp_now(secret) != "000000" else "111111"})
    assert bad.status == 400
    assert bad.json() == {"code": "INVALID TOTP CODE", "message": "an invalid TOTP code was supplied"}
    q = o.request("GET", "/oidc/login/auth-queries?id=" + rid, auth=False).expect(200)
    assert q.header("totp-required") == "true"
    r = o.request("POST", "/oidc/login/totp", auth=False, body={"id": rid, "code": totp_now(secret)}).expect(302)
    assert "/oidc/authorize/callback?id=" in r.header("location")
    # the client does the whole thing and gets amr totp
    o2 = cli(sim, "ctrl3")
    o2.oidc_login("alice", IDENTITIES["alice"], totp_secret=secret).expect(200)
    assert sorted(o2.claims(o2.id_token)["amr"]) == ["password", "totp"]


def test_authorize_rejects_bad_clients(sim):
    c = cli(sim, "ctrl1")
    _, ch = pkce()
    base = {"client_id": "openziti", "response_type": "code", "scope": "openid", "redirect_uri": REDIRECT,
            "code_challenge": ch, "code_challenge_method": "S256", "state": "s"}
    r = c.request("GET", "/oidc/authorize?" + urllib.parse.urlencode(dict(base, client_id="evil")), auth=False)
    assert r.status == 400
    r = c.request("GET", "/oidc/authorize?" + urllib.parse.urlencode(dict(base, redirect_uri="http://10.1.1.1/x")),
                  auth=False)
    assert r.status == 400
    r = c.request("GET", "/oidc/authorize?" + urllib.parse.urlencode({k: v for k, v in base.items()
                                                                      if k != "code_challenge"}), auth=False)
    assert r.status == 302 and "error=invalid_request" in r.header("location")


def test_auth_requests_are_lost_on_restart(sim):
    _, ch = pkce()
    c = cli(sim, "ctrl2")
    rid = authorize(c, ch)
    assert sim.control.node("ctrl2")["authRequests"] == 1
    sim.control.kill("ctrl2")
    sim.control.restart("ctrl2")
    r = c.request("POST", "/oidc/login/password", auth=False,
                  body={"username": "alice", "password": IDENTITIES["alice"], "id": rid})
    assert r.status == 200 and r.header("location") is None


def test_jwks_names_own_key_and_verifies_tokens(sim):
    """GET /oidc/keys: this controller's ES256 key under the kid its tokens
    carry; peers' keys under v1.5.4's raw-bytes kid (storage.go KeySet).
    A key rotation gives a new kid and the old tokens stop working."""
    from tests.ctrlsim import tokens
    c = cli(sim, "ctrl2")
    c.oidc_login("alice", IDENTITIES["alice"]).expect(200)
    hdr, _ = tokens.decode_unverified(c.access_token)
    assert hdr["alg"] == "ES256"
    doc = c.request("GET", "/oidc/keys", auth=False).expect(200).json()
    own = [k for k in doc["keys"] if k["kid"] == hdr["kid"]]
    assert len(own) == 1 and own[0]["kty"] == "EC" and own[0]["crv"] == "P-256"
    assert len(doc["keys"]) == len(sim.node_ids)
    other = cli(sim, "ctrl1").request("GET", "/oidc/keys", auth=False).expect(200).json()
    assert hdr["kid"] not in [k["kid"] for k in other["keys"]]
    x, y = (int.from_bytes(tokens._unb64(own[0][p]), "big") for p in ("x", "y"))
    key = tokens.EcKey.__new__(tokens.EcKey)
    key.pub = (x, y)
    assert tokens.verify(c.access_token, {hdr["kid"]: key}) is not None
    sim.control.rotate_key("ctrl2")
    assert c.current_identity().status == 401
    c2 = cli(sim, "ctrl2")
    c2.oidc_login("alice", IDENTITIES["alice"]).expect(200)
    assert tokens.decode_unverified(c2.access_token)[0]["kid"] != hdr["kid"]
    assert c2.current_identity().status == 200
