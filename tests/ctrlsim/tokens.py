"""OIDC-style JWTs for the simulator, signed as real controllers sign them.

Real controllers sign with their TLS server key -- ES256/ES384/ES512 for EC
keys by curve, RS256 for RSA (controller/env/appenv.go getJwtSigningMethod)
-- with kid = hex SHA-1 of the server certificate (appenv.go SetServerCert),
and publish the public keys as a JWKS at GET /oidc/keys (zitadel op "keys"
endpoint; controller/oidc_auth/storage.go KeySet).  Every controller
verifies any member's tokens through the raft-replicated controller entities
(controller/model/token_provider_cache.go).

The simulator is standard library only, so it signs ES256 (ECDSA P-256,
SHA-256, signature r||s) with a small pure-Python implementation: one scalar
multiplication to make a key or sign (~10 ms), two to verify (results are
cached per token, so a token costs that once).  Claims follow
common/oidc_tokens.go (AccessClaims/CustomClaims).
"""
import base64
import hashlib
import json
import secrets
import threading
import time
import uuid

# ---- P-256 (SEC 2 / FIPS 186-4) ---------------------------------------------
_P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffff
_B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b
_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551
_G = (0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296,
      0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5)
_INF = (0, 1, 0)


def _double(p):
    x, y, z = p
    if y == 0 or z == 0:
        return _INF
    yy = y * y % _P
    s = 4 * x * yy % _P
    zz = z * z % _P
    m = 3 * (x - zz) * (x + zz) % _P
    x3 = (m * m - 2 * s) % _P
    return (x3, (m * (s - x3) - 8 * yy * yy) % _P, 2 * y * z % _P)


def _add(p, q):
    if p[2] == 0:
        return q
    if q[2] == 0:
        return p
    x1, y1, z1 = p
    x2, y2, z2 = q
    z1z1, z2z2 = z1 * z1 % _P, z2 * z2 % _P
    u1, u2 = x1 * z2z2 % _P, x2 * z1z1 % _P
    s1, s2 = y1 * z2 * z2z2 % _P, y2 * z1 * z1z1 % _P
    if u1 == u2:
        return _double(p) if s1 == s2 else _INF
    h, r = (u2 - u1) % _P, (s2 - s1) % _P
    hh = h * h % _P
    hhh, v = h * hh % _P, u1 * hh % _P
    x3 = (r * r - hhh - 2 * v) % _P
    return (x3, (r * (v - x3) - s1 * hhh) % _P, h * z1 * z2 % _P)


def _mul(k, pt):
    r, q = _INF, (pt[0], pt[1], 1)
    while k:
        if k & 1:
            r = _add(r, q)
        q = _double(q)
        k >>= 1
    return r


def _affine(p):
    if p[2] == 0:
        return None
    zi = pow(p[2], -1, _P)
    zi2 = zi * zi % _P
    return (p[0] * zi2 % _P, p[1] * zi2 * zi % _P)


class EcKey:
    """An ECDSA P-256 key pair (the private scalar never leaves the sim)."""

    def __init__(self, d=None):
        self.d = d or (secrets.randbelow(_N - 1) + 1)
        self.pub = _affine(_mul(self.d, _G))

    def sign(self, data):
        h = int.from_bytes(hashlib.sha256(data).digest(), "big")
        while True:
            k = secrets.randbelow(_N - 1) + 1
            r = _affine(_mul(k, _G))[0] % _N
            s = pow(k, -1, _N) * (h + r * self.d) % _N
            if r and s:
                return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def verify(self, data, sig):
        if len(sig) != 64:
            return False
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        if not (0 < r < _N and 0 < s < _N):
            return False
        h = int.from_bytes(hashlib.sha256(data).digest(), "big")
        w = pow(s, -1, _N)
        pt = _affine(_add(_mul(h * w % _N, _G), _mul(r * w % _N, self.pub)))
        return pt is not None and pt[0] % _N == r

    def jwk(self, kid):
        # go-jose JSONWebKey.MarshalJSON of an ECDSA public key
        return {"use": "sig", "kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
                "x": _b64(self.pub[0].to_bytes(32, "big")),
                "y": _b64(self.pub[1].to_bytes(32, "big"))}


def new_key():
    return EcKey()


def _b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def sign(claims, kid, key):
    header = {"alg": "ES256", "kid": kid, "typ": "JWT"}
    h = _b64(json.dumps(header, separators=(",", ":")).encode())
    p = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return h + "." + p + "." + _b64(key.sign((h + "." + p).encode()))


def decode_unverified(token):
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT")
    return json.loads(_unb64(parts[0])), json.loads(_unb64(parts[1]))


_cache_lock = threading.Lock()
_cache = {}   # token -> (key object it verified with, claims)


def verify(token, keys, now=None):
    """Return the claims if the signature (kid looked up in ``keys``) and the
    expiry are good, else None."""
    try:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        header = json.loads(_unb64(parts[0]))
        key = keys.get(header.get("kid"))
        if key is None or header.get("alg") != "ES256":
            return None
        with _cache_lock:
            hit = _cache.get(token)
        if hit is not None and hit[0] is key:
            claims = hit[1]
        else:
            if not key.verify((parts[0] + "." + parts[1]).encode(), _unb64(parts[2])):
                return None
            claims = json.loads(_unb64(parts[1]))
            with _cache_lock:
                if len(_cache) > 20000:
                    _cache.clear()
                _cache[token] = (key, claims)
    except Exception:
        return None
    now = time.time() if now is None else now
    if claims.get("exp", 0) < now:
        return None
    return claims


def new_kid():
    return hashlib.sha1(uuid.uuid4().bytes).hexdigest()


def peer_kid(kid):
    """How v1.5.4 names a peer controller's key in its JWKS: the SHA-1 bytes
    formatted with %s, not hex (storage.go KeySet: fmt.Sprintf("%s",
    sha1.Sum(cert.Raw))); Go's JSON encoder turns invalid UTF-8 into U+FFFD."""
    return bytes.fromhex(kid).decode("utf-8", "replace")
