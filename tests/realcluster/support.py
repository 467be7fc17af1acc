"""Helpers for the real-cluster scenarios: logins of either kind, the enrollment steps through
quorumgate, and what every controller holds afterwards."""
import time

from tests.ctrlsim.client import ZitiClient, totp_now
from tests.integration.gate_support import Background, replication  # noqa: F401  (re-exported)
from tests.support.procs import wait_until

KINDS = ("oidc", "legacy")


def qg_client(qg, timeout=30.0):
    return ZitiClient(qg.url, timeout=timeout)


def login(c, kind, name, password, totp_secret=None):
    """OIDC (with the TOTP step when a secret is given and asked for) or legacy password login
    (then /authenticate/mfa when the session asks for it).  Returns the login's answer."""
    if kind == "oidc":
        return c.oidc_login(name, password, totp_secret=totp_secret).expect(200)
    r = c.legacy_login(name, password).expect(200)
    queries = r.json()["data"].get("authQueries") or []
    if queries and totp_secret:
        c.authenticate_mfa(totp_now(totp_secret)).expect(200)
    return r


def wait_leader_known(qg, cluster, timeout=15.0):
    """quorumgate names the cluster's own leader (controller_leader gauge)."""
    def ok():
        lead = cluster.leader()
        return lead if lead and qg.metrics().value("quorumgate_controller_leader", controller=lead) == 1 else None
    return wait_until(ok, timeout=timeout, what="quorumgate to know the real leader")


def enroll(c, cluster, iid):
    """create, detail, QR code through c; returns (mfa id, secret)."""
    r = c.mfa_create().expect(201)
    mfa_id = r.json()["data"]["id"]
    d = c.mfa_get().expect(200).json()["data"]
    assert d["id"] == mfa_id and d["isVerified"] is False, d
    assert d["provisioningUrl"].startswith("otpauth://totp/"), d
    q = c.mfa_qr()
    q.expect(200)
    assert q.header("content-type", "").startswith("image/png") and q.body[:8] == b"\x89PNG\r\n\x1a\n", q.headers
    return mfa_id, c.mfa_secret()


def verify_code(secret):
    """A TOTP code for now, avoiding the last second of a 30 s step (a code read just before the
    step changes may be checked just after; the controllers accept a window, but the gate's
    resend must not be the one that crosses it)."""
    if time.time() % 30 > 28.5:
        time.sleep(30 - time.time() % 30 + 0.1)
    return totp_now(secret)


def all_members(cluster, iid, want):
    """Assert every member's isMfaEnabled is ``want`` right now (read from each management API)."""
    s = cluster.mfa_enabled(iid)
    assert s == {m: want for m in cluster.node_ids}, s
    return s
