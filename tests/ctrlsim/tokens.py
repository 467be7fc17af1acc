"""OIDC-style JWTs for the simulator.

Real controllers sign with their TLS server key and put kid = SHA-1 of the
certificate; every controller verifies any member's tokens through the
raft-replicated controller entities (controller/model/token_provider_cache.go).
The simulator has no RSA/ECDSA in the standard library, so each node signs
with its own HMAC-SHA256 key (alg HS256) under its own kid, and every node
knows every member's key -- the same "valid on every node, signed by one"
property.  Claims follow common/oidc_tokens.go (AccessClaims/CustomClaims).
"""
import base64
import hashlib
import hmac
import json
import time
import uuid


def _b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def sign(claims, kid, key):
    header = {"alg": "HS256", "kid": kid, "typ": "JWT"}
    h = _b64(json.dumps(header, separators=(",", ":")).encode())
    p = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(key, (h + "." + p).encode(), hashlib.sha256).digest()
    return h + "." + p + "." + _b64(sig)


def decode_unverified(token):
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    return json.loads(_unb64(parts[0])), json.loads(_unb64(parts[1]))


def verify(token, keys, now=None):
    """Return the claims if the signature (kid looked up in ``keys``) and the
    expiry are good, else None."""
    try:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        header = json.loads(_unb64(parts[0]))
        key = keys.get(header.get("kid"))
        if key is None or header.get("alg") != "HS256":
            return None
        want = hmac.new(key, (parts[0] + "." + parts[1]).encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, _unb64(parts[2])):
            return None
        claims = json.loads(_unb64(parts[1]))
    except Exception:
        return None
    now = time.time() if now is None else now
    if claims.get("exp", 0) < now:
        return None
    return claims


def new_kid():
    return hashlib.sha1(uuid.uuid4().bytes).hexdigest()
