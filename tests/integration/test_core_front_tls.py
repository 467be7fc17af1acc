"""Proxy core, the HTTPS front (io/listener_native.c over io/h1tls.c, issue
16): TLS read ahead (pipelined requests in one record batch), answers larger
than one record, request bodies, 100-continue, session resumption, client
certificates verified against tls.client_ca, and connections that never
become TLS.  The real binary over real sockets in front of echo
controllers."""
import json
import socket
import ssl
import time

import pytest

from tests.integration.core_support import (  # noqa: F401  (fixtures)
    call, echo_factory, host_port, parse_responses, qg_over_echo, read_answers)
from tests.support import prom
from tests.support.procs import make_certs, wait_until

FAILED = "quorumgate_client_tls_handshake_failures_total"


def _failures(qg):
    return prom.metric(qg, FAILED, default=0.0)


def _failure_lines(qg):
    """The debug lines of failed handshakes: the peer and OpenSSL's reason."""
    return [e["msg"] for e in qg.error_log()
            if e.get("msg", "").startswith("client TLS handshake failed: ")]


@pytest.fixture
def tls_qg(quorumgate, echo_factory, certs):
    cl = echo_factory(1)
    tls = {"cert": certs["cert"], "key": certs["key"], "client_ca": certs["ca"]}
    qg = qg_over_echo(quorumgate, cl, {"listeners": [{"address": "127.0.0.1:0", "tls": tls}],
                                       "log": {"level": "debug"}})
    qg.echo = cl.upstreams[0]
    return qg


def _ctx(certs, cert=None):
    ctx = ssl.create_default_context(cafile=certs["ca"])
    if cert:
        ctx.load_cert_chain(*cert)
    return ctx


def _connect(qg, ctx, session=None):
    raw = socket.create_connection(host_port(qg.url), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost", session=session)


def _answers(s, n, timeout=5.0):
    return read_answers(s, n, timeout)[0]


def test_pipelined_requests_in_one_tls_write_are_all_answered(tls_qg, certs):
    # All three requests arrive in one read; TLS decrypts them ahead of the
    # exchange, and nothing on the socket will say they are there.
    s = _connect(tls_qg, _ctx(certs))
    try:
        s.sendall(b"".join(b"GET /p/%d HTTP/1.1\r\nHost: x\r\nX-Request-Id: tls-%d\r\n\r\n" % (i, i)
                           for i in range(3)))
        got = _answers(s, 3)
    finally:
        s.close()
    assert [st for st, _, _ in got] == [200, 200, 200], got
    assert [h["x-request-id"] for _, h, _ in got] == ["tls-0", "tls-1", "tls-2"]
    assert [json.loads(b)["target"] for _, _, b in got] == ["/p/0", "/p/1", "/p/2"]


def test_large_answers_and_bodies_cross_many_records(tls_qg, certs):
    big = bytes(range(256)) * 400                      # 100 KiB: 7 records
    tls_qg.echo.respond("/big", status=200, body=big)
    s = _connect(tls_qg, _ctx(certs))
    try:
        for _ in range(3):                              # and the connection is reused
            s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            got = _answers(s, 1)
            assert [st for st, _, _ in got] == [200]
            assert got[0][2] == big
        up = b"y" * 70000
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(up) + up)
        got = _answers(s, 1)
        assert [st for st, _, _ in got] == [200]
        assert json.loads(got[0][2])["body"] == up.decode()
    finally:
        s.close()


def test_expect_100_continue_over_tls(tls_qg, certs):
    s = _connect(tls_qg, _ctx(certs))
    try:
        s.sendall(b"POST /c HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        s.settimeout(5)
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), first
        s.sendall(b"hello")
        got = _answers(s, 1)
    finally:
        s.close()
    assert [st for st, _, _ in got] == [200]
    assert json.loads(got[0][2])["body"] == "hello"


def test_a_second_connection_resumes_the_tls_session(tls_qg, certs):
    ctx = _ctx(certs)
    s = _connect(tls_qg, ctx)
    s.sendall(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [st for st, _, _ in _answers(s, 1)] == [200]   # the ticket came with it
    session = s.session
    s.close()
    assert session is not None
    s = _connect(tls_qg, ctx, session=session)
    try:
        s.sendall(b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n")
        assert [st for st, _, _ in _answers(s, 1)] == [200]
        assert s.session_reused
    finally:
        s.close()


def test_client_certificates_are_verified_against_the_client_ca(tls_qg, certs, tmp_path):
    # one of the client CA: served (and recognised: a certificate login is
    # refused with the envelope); one of another CA: refused at the handshake
    good = _connect(tls_qg, _ctx(certs, (certs["client_cert"], certs["client_key"])))
    try:
        # an OIDC login is a certificate login only when a certificate came
        good.sendall(b"GET /oidc/authorize?client_id=openziti HTTP/1.1\r\nHost: x\r\n\r\n")
        got = _answers(good, 1)
    finally:
        good.close()
    assert got[0][0] == 400 and json.loads(got[0][2])["error"]["code"] == "PROXY_CERT_AUTH_UNSUPPORTED", got
    assert _failures(tls_qg) == 0
    other = make_certs(str(tmp_path / "other"))
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        s = _connect(tls_qg, _ctx(certs, (other["client_cert"], other["client_key"])))
        try:
            # TLS 1.3: the server's refusal arrives after the client's side
            # of the handshake is done, with the first read
            s.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            s.settimeout(5)
            s.recv(100)
        finally:
            s.close()
    assert not [r for r in tls_qg.echo.seen() if r["target"] == "/x"]
    # the refusal is counted, once
    wait_until(lambda: _failures(tls_qg) == 1, timeout=5, what=FAILED + " == 1")
    lines = _failure_lines(tls_qg)
    assert len(lines) == 1 and "127.0.0.1 port " in lines[0] and "certificate" in lines[0], lines
    # no certificate at all: served, and not a failure
    assert call(tls_qg, "GET", "/nocert", ca=certs["ca"]).status == 200
    assert _failures(tls_qg) == 1


def test_plain_http_on_the_tls_port_is_closed_and_others_served(tls_qg, certs):
    assert _failures(tls_qg) == 0
    with socket.create_connection(host_port(tls_qg.url), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        try:
            got = s.recv(100)
        except ConnectionResetError:
            got = b""
        assert not got.startswith(b"HTTP/"), got
    wait_until(lambda: _failures(tls_qg) == 1, timeout=5, what=FAILED + " == 1")
    lines = _failure_lines(tls_qg)
    assert len(lines) == 1 and "127.0.0.1 port " in lines[0] and "http request" in lines[0], lines
    assert call(tls_qg, "GET", "/after", ca=certs["ca"]).status == 200
    assert _failures(tls_qg) == 1


def test_sessions_resume_on_every_worker(quorumgate, echo_factory, certs):
    # SO_REUSEPORT spreads connections over the workers: each has its own
    # TLS context, and the ticket keys they share let any of them resume a
    # session another one issued.
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, {"workers": 2, "listeners": [
        {"address": "127.0.0.1:0", "tls": {"cert": certs["cert"], "key": certs["key"]}}]})
    ctx = _ctx(certs)
    s = _connect(qg, ctx)
    s.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [st for st, _, _ in _answers(s, 1)] == [200]
    session = s.session
    s.close()
    reused = []
    for i in range(12):
        s = _connect(qg, ctx, session=session)
        try:
            s.sendall(b"GET /again/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            assert [st for st, _, _ in _answers(s, 1)] == [200]
            reused.append(s.session_reused)
        finally:
            s.close()
    assert all(reused), reused


def test_a_key_that_is_not_the_certificates_is_refused(quorumgate, echo_factory, certs, tmp_path):
    # -t names the line; a start with it fails with the listener's reason
    # instead of serving clients a handshake that cannot complete.
    import subprocess
    import yaml
    from tests.conftest import quorumgate_binary
    other = make_certs(str(tmp_path / "other"))
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl)
    with open(qg.config_path) as f:
        cfg = yaml.safe_load(f)
    cfg["listeners"] = [{"address": "127.0.0.1:0", "tls": {"cert": certs["cert"], "key": other["key"]}}]
    bad = str(tmp_path / "mismatch.yaml")
    with open(bad, "w") as f:
        yaml.safe_dump(cfg, f)
    p = subprocess.run([quorumgate_binary(), "-t", "-c", bad], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert any(line.startswith(bad + ":") and "listeners[0].tls.key" in line and "is not the key" in line
               for line in p.stderr.splitlines()), p.stderr


def _tls_over_bio(qg, ctx):
    """A TLS client over memory BIOs on a raw socket, so that the socket can
    be shut without a close_notify.  Returns (raw socket, SSLObject, pump)."""
    raw = socket.create_connection(host_port(qg.url), timeout=5)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")

    def flush():
        data = out.read()
        if data:
            raw.sendall(data)

    def pump(step):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                r = step()
                flush()
                return r
            except ssl.SSLWantReadError:
                flush()
                data = raw.recv(65536)
                if not data:
                    inc.write_eof()
                    return step()
                inc.write(data)
        raise AssertionError("TLS exchange did not finish")
    pump(obj.do_handshake)
    return raw, obj, pump


def test_a_client_that_shuts_its_side_without_close_notify_gets_its_answer(tls_qg, certs):
    # as on plain HTTP (test_core_front.py): a request whole, then the
    # client's half of TCP shut (no TLS close_notify); the answer still goes
    raw, obj, pump = _tls_over_bio(tls_qg, _ctx(certs))
    got = b""
    try:
        obj.write(b"GET /half HTTP/1.1\r\nHost: x\r\n\r\n")
        pump(lambda: None)
        raw.shutdown(socket.SHUT_WR)
        while True:
            try:
                chunk = pump(lambda: obj.read(65536))
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                break
            if not chunk:
                break
            got += chunk
            rs = parse_responses(got)
            if rs and len(rs[0][2]) == int(rs[0][1].get("content-length", "-1")):
                break
    finally:
        raw.close()
    assert [st for st, _, _ in parse_responses(got)] == [200], got[:300]
    assert [r["target"] for r in tls_qg.echo.seen()] == ["/half"]
