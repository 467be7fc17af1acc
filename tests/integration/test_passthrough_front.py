"""The HTTP front says what it cannot do for certificate identities (issue
14, item 3): authenticate?method=cert, /oidc/login/cert and authentication
requests from a client that presents a certificate get an OpenZiti error
envelope that names the passthrough listener, and no controller is asked;
everything else is forwarded as before."""
import http.client
import ssl

from tests.integration.core_support import call, wait_leader_known
from tests.support.procs import wait_until


def _envelope(r):
    assert r.status == 400, (r.status, r.body)
    assert r.header("Content-Type").startswith("application/json")
    err = r.json()["error"]
    assert err["code"] == "PROXY_CERT_AUTH_UNSUPPORTED"
    return err["message"]


def test_cert_logins_are_refused_naming_the_passthrough_listener(quorumgate):
    qg = quorumgate({"passthrough": {"address": "127.0.0.1:0"}})
    wait_leader_known(qg)
    sim = qg.sim
    sim.control.reset_requests()
    for method, target in (("POST", "/edge/client/v1/authenticate?method=cert"),
                           ("POST", "/edge/management/v1/authenticate?method=cert"),
                           ("GET", "/oidc/login/cert?authRequestID=abc"),
                           ("POST", "/oidc/login/cert")):
        r = call(qg, method, target, body=b"{}" if method == "POST" else None,
                 headers={"Content-Type": "application/json"})
        msg = _envelope(r)
        assert "passthrough listener" in msg and qg.passthrough_address in msg, msg
        assert r.json()["error"]["requestId"] == r.header("X-Request-Id")
    # no controller saw any of them
    seen = [x for reqs in sim.control.requests().values() for x in reqs
            if not x["path"].startswith("/health-checks")]
    assert seen == [], seen
    # (each line is written after its answer was sent)
    lines = wait_until(lambda: (lambda ls: ls if len(ls) >= 4 else None)(
        [e for e in qg.access_log() if e.get("error") == "PROXY_CERT_AUTH_UNSUPPORTED"]),
        timeout=5, what="4 access-log lines")
    assert len(lines) == 4 and all(e["status"] == 400 and e["attempts"] == 0 for e in lines)
    # a password login is forwarded as before
    r = call(qg, "POST", "/edge/client/v1/authenticate?method=password",
             body=b'{"username":"alice","password":"alice-pw"}', headers={"Content-Type": "application/json"})
    assert r.status == 200, r.body


def test_without_a_passthrough_listener_the_message_says_so(quorumgate):
    qg = quorumgate()
    wait_leader_known(qg)
    r = call(qg, "POST", "/edge/client/v1/authenticate?method=cert", body=b"{}",
             headers={"Content-Type": "application/json"})
    msg = _envelope(r)
    assert "no passthrough listener" in msg and "passthrough.address" in msg, msg


def _https(qg, i, cert=None):
    host, port = qg.client_addresses[i].rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=qg.ca)
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    return http.client.HTTPSConnection("localhost", int(port), timeout=10, context=ctx)


def _req(conn, method, target, body=None):
    conn.request(method, target, body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    return r.status, r.read()


def test_a_client_presenting_a_certificate_gets_the_envelope_on_logins_only(quorumgate, certs):
    tls = {"cert": certs["cert"], "key": certs["key"], "client_ca": certs["ca"]}
    qg = quorumgate({"listeners": [{"address": "127.0.0.1:0", "tls": tls}],
                     "passthrough": {"address": "127.0.0.1:0"}})
    wait_leader_known(qg)
    pw = b'{"username":"alice","password":"alice-pw"}'
    with_cert = _https(qg, 0, cert=(certs["client_cert"], certs["client_key"]))
    status, body = _req(with_cert, "POST", "/edge/client/v1/authenticate?method=password", pw)
    assert status == 400 and b"PROXY_CERT_AUTH_UNSUPPORTED" in body, body
    status, body = _req(with_cert, "GET", "/oidc/authorize?client_id=openziti&response_type=code")
    assert status == 400 and b"PROXY_CERT_AUTH_UNSUPPORTED" in body, body
    status, body = _req(with_cert, "GET", "/edge/client/v1/version")
    assert status == 200, body
    with_cert.close()
    # the same listener, no certificate: a password login works
    plain = _https(qg, 0)
    status, body = _req(plain, "POST", "/edge/client/v1/authenticate?method=password", pw)
    assert status == 200, body
    plain.close()
