"""Token keys on real controllers (issue 17), v1.5.4 and v1.7.2: what
quorumgate's identity check (routing/jwks.c) relies on.

- an OIDC access token is a JWS whose kid names a key in the JWKS of the
  controller that issued it (GET /oidc/keys), with that key's algorithm;
- a held verify through quorumgate (which needs the verified identity) is
  covered by test_dropin.py::test_every_spelling_of_verify_is_held."""
import json
import urllib.request

from tests.ctrlsim.client import ZitiClient
from tests.ctrlsim.tokens import decode_unverified


def jwks(cluster, mid):
    import ssl
    ctx = ssl.create_default_context(cafile=cluster.ca)
    ctx.check_hostname = False
    with urllib.request.urlopen(cluster.members[mid].url + "/oidc/keys", context=ctx, timeout=10) as r:
        return json.loads(r.read())


def test_access_token_kid_is_in_its_issuers_jwks(cluster, identity):
    name, pw, _iid = identity("tok")
    seen = {}
    for mid in cluster.members:
        c = ZitiClient(cluster.members[mid].url, ca_file=cluster.ca)
        c.oidc_login(name, pw).expect(200)
        hdr, claims = decode_unverified(c.access_token)
        doc = jwks(cluster, mid)
        own = [k for k in doc["keys"] if k.get("kid") == hdr["kid"]]
        assert len(own) == 1, (mid, hdr, [k.get("kid") for k in doc["keys"]])
        assert own[0].get("alg", hdr["alg"]) == hdr["alg"], (own[0], hdr)
        assert hdr["alg"] in ("RS256", "ES256", "ES384", "ES512"), hdr
        seen[mid] = (hdr["alg"], own[0]["kty"], len(doc["keys"]))
    print("token keys:", seen)
