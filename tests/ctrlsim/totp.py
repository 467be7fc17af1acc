"""RFC 4226 / RFC 6238 one-time passwords, as the controller computes them.

The controller uses github.com/dgryski/dgoogauth (go.mod at v1.5.4 pins
v0.0.0-20190221195224-5a805980a5f3) from controller/model/mfa_manager.go:
  * ComputeCode: HMAC-SHA1 over the big-endian 64-bit counter, dynamic
    truncation, modulo 10^6 -> 6 digits, 30 s steps (Unix time / 30).
  * OTPConfig.Authenticate: a code must be 6 characters starting with a digit
    (8 digits starting 1-9 are "scratch codes"; the controller configures
    none, so they never match); anything else is ErrInvalidCode.
  * checkTotpCode: accepts t0 - WindowSize/2 .. t0 + WindowSize/2 with
    WindowSize = 5 (WindowSizeTOTP in mfa_manager.go), i.e. +-2 steps
    (+-60 s).  DisallowReuse is nil, so a code can be used again.
"""
import base64
import hashlib
import hmac
import struct
import time
import urllib.parse

STEP = 30
WINDOW_SIZE = 5  # controller/model/mfa_manager.go WindowSizeTOTP


def b32decode(secret):
    s = secret.strip().replace(" ", "").upper()
    s += "=" * ((8 - len(s) % 8) % 8)
    return base64.b32decode(s)


def hotp(secret, counter):
    key = b32decode(secret)
    h = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    off = h[19] & 0x0F
    val = struct.unpack(">I", h[off:off + 4])[0] & 0x7FFFFFFF
    return "%06d" % (val % 1000000)


def totp(secret, at=None, offset_steps=0):
    """The 6-digit code for ``secret`` at time ``at`` (default now)."""
    t = time.time() if at is None else at
    return hotp(secret, int(t // STEP) + offset_steps)


def verify(secret, code, at=None, window_size=WINDOW_SIZE):
    """dgoogauth OTPConfig.Authenticate semantics (see module doc)."""
    if not isinstance(code, str):
        return False
    if not (len(code) == 6 and code[0].isdigit()):
        return False  # ErrInvalidCode (8-digit scratch codes: none configured)
    if not code.isdigit():
        return False  # strconv.Atoi fails -> ErrInvalidCode
    t = time.time() if at is None else at
    t0 = int(t // STEP)
    half = window_size // 2
    want = int(code)
    for c in range(t0 - half, t0 + half + 1):
        if int(hotp(secret, c)) == want:
            return True
    return False


def provisioning_url(secret, user, issuer):
    """dgoogauth ProvisionURIWithIssuer: otpauth://totp/<issuer>:<user>?<q>
    where q is url.Values{secret, issuer}.Encode() (keys sorted, so issuer
    first).  The user is concatenated raw, not escaped."""
    q = urllib.parse.urlencode(sorted({"secret": secret, "issuer": issuer}.items()))
    return "otpauth://totp/" + issuer + ":" + user + "?" + q


def secret_from_url(url):
    """The base32 secret from an otpauth:// provisioning URL."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "otpauth":
        raise ValueError("not an otpauth URL: %r" % url)
    q = urllib.parse.parse_qs(parsed.query)
    if "secret" not in q:
        raise ValueError("no secret in %r" % url)
    return q["secret"][0]
