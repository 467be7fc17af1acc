"""TOTP exactly as the controller checks it (dgoogauth, WindowSize 5)."""
import base64

from tests.ctrlsim import totp

# RFC 6238 appendix B, SHA-1 seed "12345678901234567890"; the controller's
# codes are the last 6 digits of the 8-digit vectors
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
VECTORS = [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"),
           (1234567890, "005924"), (2000000000, "279037")]


def test_rfc6238_vectors():
    for t, code in VECTORS:
        assert totp.totp(RFC_SECRET, at=t) == code


def test_window_is_plus_minus_two_steps():
    t = 1234567890
    for off in (-2, -1, 0, 1, 2):
        assert totp.verify(RFC_SECRET, totp.totp(RFC_SECRET, at=t + 30 * off), at=t)
    for off in (-3, 3):
        assert not totp.verify(RFC_SECRET, totp.totp(RFC_SECRET, at=t + 30 * off), at=t)


def test_code_format_rules():
    t = 1234567890
    assert not totp.verify(RFC_SECRET, "89005924", at=t)      # 8 digits: scratch code, none exist
    assert not totp.verify(RFC_SECRET, "05924", at=t)
    assert not totp.verify(RFC_SECRET, "0059a4", at=t)
    assert not totp.verify(RFC_SECRET, "", at=t)
    assert totp.verify(RFC_SECRET, "005924", at=t)


def test_provisioning_url_round_trip():
    url = totp.provisioning_url("JBSWY3DPEHPK3PXP", "alice", "openziti.io")
    assert url == "otpauth://totp/openziti.io:alice?issuer=openziti.io&secret=JBSWY3DPEHPK3PXP"
    assert totp.secret_from_url(url) == "JBSWY3DPEHPK3PXP"
