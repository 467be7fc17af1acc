"""Certificate identities and quorumgate, on real controllers (issue 14).

- What a controller does with a proxied certificate (X-Client-CertPem +
  X-Edge-Router-Proxy-Request): the same certificate that logs in when it is
  the TLS peer is refused when it arrives in the header (OBSERVATIONS.md).
- An identity enrolled with `ziti edge create identity` + `ziti edge enroll`
  logs in with its certificate through the passthrough listener (legacy
  `authenticate?method=cert` and OIDC, where the controller itself sends the
  login to /oidc/login/cert because it sees the certificate), enrolls MFA over
  it, and every controller has the change; the HTTP front refuses the same
  login with PROXY_CERT_AUTH_UNSUPPORTED.
- The SNI split on a real cluster: the controllers' name spliced, quorumgate's own name served.
- Leadership transferred, or the leader killed, in the middle of an
  enrollment: the client's connection to the old leader is closed, it
  reconnects (to the new leader) and finishes.
"""
import base64
import hashlib
import http.client
import itertools
import json
import os
import re
import secrets
import select
import socket
import ssl
import subprocess
import urllib.parse

import pytest

from tests.ctrlsim.client import ZitiClient, totp_now
from tests.integration.core_support import call, wait_leader_known
from tests.support.procs import wait_until


_names = itertools.count(1)


class CertIdentity:
    def __init__(self, name, iid, cert, key, ca):
        self.name, self.id, self.cert, self.key, self.ca = name, iid, cert, key, ca


def _ziti(cluster, *args, timeout=90):
    p = subprocess.run([cluster.binary] + list(args), capture_output=True, text=True, timeout=timeout,
                       cwd=cluster.workdir, env=cluster.env)
    assert p.returncode == 0, "ziti %s -> %d\n%s\n%s" % (" ".join(args), p.returncode, p.stdout, p.stderr)
    return p.stdout + p.stderr


def _pem(v):
    return v[4:] if v.startswith("pem:") else v


@pytest.fixture
def cert_identity(cluster, tmp_path):
    """factory: an identity created with the CLI on the leader and enrolled with `ziti edge enroll`
    (a key and a certificate of its own), known on every member."""
    def make(prefix="cert"):
        name = "%s-%s-%d-%d" % (prefix, cluster.version, os.getpid(), next(_names))
        d = tmp_path / name
        d.mkdir()
        leader = cluster.leader()
        _ziti(cluster, "edge", "login", "127.0.0.1:%d" % cluster.port(leader), "-u", "admin", "-p", "admin",
              "--ca", cluster.ca, "-y")
        out = _ziti(cluster, "edge", "create", "identity", name, "-o", str(d / "id.jwt"))
        m = re.search(r"created with id: (\S+)", out)
        assert m, out
        iid = m.group(1)
        _ziti(cluster, "edge", "enroll", "--jwt", str(d / "id.jwt"), "--out", str(d / "id.json"))
        ident = json.loads((d / "id.json").read_text())["id"]
        for k in ("cert", "key", "ca"):
            (d / (k + ".pem")).write_text(_pem(ident[k]))
        wait_until(lambda: all(cluster.identity(mid, iid) for mid in cluster.node_ids), timeout=20,
                   what="identity %s on every member" % name)
        return CertIdentity(name, iid, str(d / "cert.pem"), str(d / "key.pem"), str(d / "ca.pem"))
    return make


def _cert_client(base_url, cluster, ident, keep_alive=False):
    c = ZitiClient(base_url, ca_file=cluster.ca, keep_alive=keep_alive)
    c.ssl_ctx.load_cert_chain(ident.cert, ident.key)
    return c


def _pt_client(qg, cluster, ident, keep_alive=False):
    return _cert_client("https://%s" % qg.passthrough_address, cluster, ident, keep_alive)


def _cert_legacy_login(c):
    r = c.request("POST", "/edge/client/v1/authenticate?method=cert", body={}, auth=False)
    if r.status == 200:
        c.zt_session = r.json()["data"]["token"]
        c.identity_id = r.json()["data"]["identityId"]
        c.access_token = None
    return r


def _cert_oidc_login(c, host, totp_secret=None, redirect_uri="http://127.0.0.1:20202/auth/callback"):
    """The OIDC authorization-code + PKCE login with the TLS client certificate as the primary
    credential.  Returns (login location the controller chose, token Resp).

    host: the Host header of the /oidc calls.  A controller serves /oidc only for the host:port
    pairs it knows itself by (its bind address, its certificate's names with its bind port;
    controller/webapis/oidc-api.go getPossibleIssuers, oidc_auth/provider.go: otherwise 404).
    In production the passthrough listener has the controllers' own name and port; here every
    controller has its own port, so the client names the leader's."""
    h = {"host": host}
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    q = urllib.parse.urlencode({"client_id": "openziti", "response_type": "code", "scope": "openid offline_access",
                                "redirect_uri": redirect_uri, "code_challenge": challenge,
                                "code_challenge_method": "S256", "state": "s1"})
    r = c.request("GET", "/oidc/authorize?" + q, auth=False, headers=h).expect(302)
    loc = r.header("location")
    rid = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query)["authRequestID"][0]
    r = c.request("POST", "/oidc/login/cert", body={"id": rid}, auth=False, headers=h)
    if r.status == 200 and r.header("totp-required") == "true":
        assert totp_secret, "TOTP required"
        r = c.request("POST", "/oidc/login/totp", body={"id": rid, "code": totp_now(totp_secret)}, auth=False,
                      headers=h)
    assert r.status == 302, (r.status, r.body[:300])
    cb = urllib.parse.urlsplit(r.header("location"))
    r = c.request("GET", cb.path + "?" + cb.query, auth=False, headers=h).expect(302)
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(r.header("location")).query)["code"][0]
    tr = c.request("POST", "/oidc/oauth/token", auth=False, headers=h,
                   form={"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                         "client_id": "openziti", "redirect_uri": redirect_uri})
    if tr.status == 200:
        c._take_tokens(tr.json())
    return loc, tr


def _closed_under(tls_sock, timeout):
    """True when the peer closes this TLS connection (EOF or reset) within timeout, reading
    nothing else from it."""
    r, _, _ = select.select([tls_sock], [], [], timeout)
    if not r:
        return False
    try:
        return tls_sock.recv(1) == b""
    except (ssl.SSLError, OSError):
        return True


def _pt_qg(rc_qg, **pt):
    qg = rc_qg({"passthrough": dict({"address": "127.0.0.1:0"}, **pt)})
    wait_leader_known(qg, timeout=20)
    return qg


def _pt_lines(qg):
    return [e for e in qg.access_log() if e.get("kind") == "passthrough"]


# ---- item 1: a proxied certificate ------------------------------------------------------

def test_proxied_client_certificate_header_is_refused(cluster, cert_identity):
    ident = cert_identity("proxied")
    leader = cluster.leader()
    base = cluster.url(leader)
    # the certificate as the TLS peer: logs in
    c = _cert_client(base, cluster, ident)
    assert _cert_legacy_login(c).status == 200
    # the same certificate as the TLS peer, and announced as a router's proxied request with the
    # certificate (base64 DER, as an edge router sends it) in X-Client-CertPem: refused, because
    # the controller looks the header up as "X-Client-CertPem" in a map keyed by Go's canonical
    # spelling ("X-Client-Certpem") and never finds it
    pem = open(ident.cert).read()           # the identity's certificate, then its chain
    first = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n?", pem, re.S).group(0)
    der = ssl.PEM_cert_to_DER_cert(first)
    hdr = {"X-Edge-Router-Proxy-Request": "true", "X-Client-CertPem": base64.b64encode(der).decode()}
    r = c.request("POST", "/edge/client/v1/authenticate?method=cert", body={}, auth=False, headers=hdr)
    assert r.status == 401 and r.error_code == "INVALID_AUTH", (r.status, r.body[:300])
    # the header alone, without a TLS client certificate: refused
    plain = ZitiClient(base, ca_file=cluster.ca)
    r = plain.request("POST", "/edge/client/v1/authenticate?method=cert", body={}, auth=False, headers=hdr)
    assert r.status == 401 and r.error_code == "INVALID_AUTH", (r.status, r.body[:300])


# ---- items 2-4: through the passthrough listener ------------------------------------------

def test_certificate_login_and_mfa_enrollment_through_passthrough(cluster, rc_qg, cert_identity):
    ident = cert_identity("ptmfa")
    qg = _pt_qg(rc_qg)
    leader = cluster.leader()
    # the HTTP front cannot carry the certificate: it says so, naming the passthrough listener
    r = call(qg, "POST", "/edge/client/v1/authenticate?method=cert", body=b"{}",
             headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json()["error"]["code"] == "PROXY_CERT_AUTH_UNSUPPORTED", r.body
    assert qg.passthrough_address in r.json()["error"]["message"]
    # legacy: a certificate login through the passthrough listener
    c = _pt_client(qg, cluster, ident)
    r = _cert_legacy_login(c)
    assert r.status == 200, r.body[:300]
    assert c.identity_id == ident.id
    assert c.current_identity().expect(200).json()["data"]["name"] == ident.name
    # MFA enrolled over it; the verify's answer comes from the leader, so it holds there at once
    secret = c.enroll_mfa()
    assert cluster.mfa_enabled(ident.id, members=[leader])[leader] is True
    cluster.wait_mfa(ident.id, True)
    # a new certificate login now needs the TOTP as a second factor, over the same listener
    c2 = _pt_client(qg, cluster, ident)
    r = _cert_legacy_login(c2)
    assert r.status == 200 and r.json()["data"].get("authQueries"), r.body[:300]
    c2.authenticate_mfa(totp_now(secret)).expect(200)
    c2.current_identity().expect(200)
    # OIDC: the controller sees the certificate itself and sends the login to /oidc/login/cert
    c3 = _pt_client(qg, cluster, ident)
    loc, tr = _cert_oidc_login(c3, "127.0.0.1:%d" % cluster.port(leader), totp_secret=secret)
    assert "/oidc/login/cert" in loc, loc
    assert tr.status == 200, tr.body[:300]
    assert c3.claims()["sub"] == ident.id
    c3.current_identity().expect(200)
    # every connection went to the leader
    lines = _pt_lines(qg)
    assert lines and {e["controller"] for e in lines} == {leader}, lines


@pytest.mark.parametrize("how", ["transfer", "kill"])
def test_leader_change_in_the_middle_of_an_enrollment(cluster, rc_qg, cert_identity, how):
    ident = cert_identity("ptmove")
    qg = _pt_qg(rc_qg, leader_change={"quiet": "200ms", "grace": "5s"})
    old = cluster.leader()
    c = _pt_client(qg, cluster, ident, keep_alive=True)
    loc, tr = _cert_oidc_login(c, "127.0.0.1:%d" % cluster.port(old))
    assert tr.status == 200 and "/oidc/login/cert" in loc
    c.mfa_create().expect(201)
    # the leader moves while the enrollment is half done
    if how == "transfer":
        new = [m for m in cluster.node_ids if m != old][0]
        cluster.transfer_leadership(new)
    else:
        cluster.kill(old)
        new = cluster.wait_leader(exclude=(old,))
    wait_leader_known(qg, leader=new, timeout=30)
    # what the client sees: its connection to the old leader is closed by quorumgate (transfer:
    # once nothing is in flight on it) or by the dying controller (kill)
    wait_until(lambda: any(e["controller"] == old for e in _pt_lines(qg)), timeout=10,
               what="the connection to the old leader closed")
    seen = [e["result"] for e in _pt_lines(qg) if e["controller"] == old]
    if how == "transfer":
        assert seen == ["leader_change"], seen
    assert _closed_under(c._conn.sock, 15)         # closed under the client
    c.close()
    # reconnect: the new leader has the started enrollment (raft); the token is valid there too
    secret = c.mfa_secret()
    c.mfa_verify(totp_now(secret)).expect(200)
    wait_until(lambda: all(v is True for k, v in cluster.mfa_enabled(ident.id).items()
                           if how == "transfer" or k != old), timeout=20,
               what="every running controller has the verified enrollment")
    c.close()
    wait_until(lambda: [e for e in _pt_lines(qg) if e["controller"] == new], timeout=10,
               what="the reconnected client's connection, to the new leader, in the access log")
    if how == "kill":
        cluster.restart(old)
        cluster.wait_mfa(ident.id, True)


def test_sni_split_on_the_https_port(cluster, rc_qg, cert_identity, identity, certs):
    """One TLS port: the name the controllers' certificates carry (localhost) is spliced to the
    leader, quorumgate's own name (ctrl.ziti.test, the test certificate) is its HTTPS front."""
    ident = cert_identity("ptsni")
    name, pw, _ = identity("ptsni-pw")
    qg = rc_qg({"listeners": [{"address": "127.0.0.1:0", "tls": {"cert": certs["cert"], "key": certs["key"]}}],
                "passthrough": {"sni": {"listener": 0, "names": ["localhost"]}}})
    wait_leader_known(qg, timeout=20)
    leader = cluster.leader()
    port = int(qg.client_addresses[0].rsplit(":", 1)[1])
    # SNI localhost: the controller's own TLS (verified with the cluster's CA), certificate login
    c = _cert_client("https://localhost:%d" % port, cluster, ident)
    r = _cert_legacy_login(c)
    assert r.status == 200 and c.identity_id == ident.id, r.body[:300]
    assert c.current_identity().expect(200).json()["data"]["name"] == ident.name
    # each call above had its own connection; its access-log line is written when quorumgate
    # closes it, which can come after the client has read its answer: count once none is open
    wait_until(lambda: qg.metrics().value("quorumgate_passthrough_open_connections") == 0, timeout=10,
               what="the spliced connections closed")
    # and the lines written: a line follows its counters (the access log is written in batches)
    n = qg.metrics().value("quorumgate_passthrough_connections_total") or 0
    lines = wait_until(lambda: (lambda ls: ls if len(ls) >= n else None)(_pt_lines(qg)), timeout=10,
                       what="%d passthrough access-log lines" % n)
    assert lines and {e["controller"] for e in lines} == {leader}, lines
    # SNI ctrl.ziti.test: quorumgate's HTTPS front (its certificate, the test CA)
    ctx = ssl.create_default_context(cafile=certs["ca"])

    def front(method, path, body=None):
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=15, context=ctx)
        conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=15),
                                    server_hostname="ctrl.ziti.test")
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
        finally:
            conn.close()
    status, headers, body = front("POST", "/edge/client/v1/authenticate?method=password",
                                  json.dumps({"username": name, "password": pw}).encode())
    assert status == 200 and headers.get("quorumgate-controller"), (status, body[:300])
    status, _, body = front("POST", "/edge/client/v1/authenticate?method=cert", b"{}")
    assert status == 400 and b"PROXY_CERT_AUTH_UNSUPPORTED" in body, body[:300]
    assert qg.metrics().value("quorumgate_passthrough_open_connections") == 0
    assert len(_pt_lines(qg)) == len(lines)
