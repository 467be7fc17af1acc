"""Proxy core, limits (issue 2): header size and count (431), body size
(413, Content-Length and chunked), slow clients (408 on plain HTTP, a closed
connection on HTTPS), too many concurrent requests (503 PROXY_OVERLOADED).
Every refused request must not reach a controller and must be logged."""
import json
import os
import socket
import ssl
import threading
import time

from tests.integration.core_support import (  # noqa: F401  (fixtures)
    assert_envelope, call, echo_factory, host_port, parse_responses, qg_over_echo, raw_request,
    metric, wait_access, wait_leader_known, wait_metric)
from tests.support.procs import wait_until


def _one_response(raw):
    rs = parse_responses(raw)
    assert len(rs) == 1, raw[:500]
    return rs[0]


def _check_local_error(qg, raw, closed, status_code, code):
    st, hdrs, body = _one_response(raw)
    assert st == status_code, raw[:300]
    assert hdrs.get("content-type", "").startswith("application/json")
    doc = json.loads(body)
    assert doc["error"]["code"] == code and "meta" in doc, doc
    assert doc["error"]["requestId"] == hdrs.get("x-request-id")
    assert closed, "the connection is closed after a %d" % status_code
    return doc


def test_too_many_headers_is_431(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, {"limits": {"max_headers": 10}})
    # Host + 8 + Connection = 10 fields: fine; Host + 10 = 11: too many
    ok = "GET /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n" + "".join(
        "X-H%d: v\r\n" % i for i in range(8)) + "Connection: close\r\n\r\n"
    raw, _ = raw_request(qg, ok.encode())
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    bad = "GET /edge/client/v1/version?n=11 HTTP/1.1\r\nHost: x\r\n" + "".join(
        "X-H%d: v\r\n" % i for i in range(10)) + "\r\n"
    raw, closed = raw_request(qg, bad.encode())
    _check_local_error(qg, raw, closed, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")
    assert [r["target"] for r in cl.upstreams[0].seen()] == ["/edge/client/v1/version"]
    line = wait_access(qg, lambda e: e.get("status") == 431)
    assert line["error"] == "REQUEST_HEADER_FIELDS_TOO_LARGE"


def test_headers_too_large_is_431(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, {"limits": {"max_header_bytes": "2KiB"}})
    ok = "GET /small HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\nConnection: close\r\n\r\n" % ("p" * 1500)
    raw, _ = raw_request(qg, ok.encode())
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    # a little over the limit: our own envelope
    bad = "GET /big HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % ("p" * 2100)
    raw, closed = raw_request(qg, bad.encode())
    _check_local_error(qg, raw, closed, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE")
    # far over the limit (more than the connection's buffer): still a 431
    huge = "GET /huge HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n" % ("p" * 200000)
    raw, closed = raw_request(qg, huge.encode())
    st, _, _ = _one_response(raw)
    assert st == 431 and closed, raw[:300]
    assert [r["target"] for r in cl.upstreams[0].seen()] == ["/small"]
    line = wait_access(qg, lambda e: e.get("status") == 431 and e.get("path") == "/huge",
                       what="an access-log line for the huge request")
    assert line["error"] == "REQUEST_HEADER_FIELDS_TOO_LARGE" and line["client"] == "127.0.0.1", line


def test_body_too_large_by_content_length_is_413_before_reading_it(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, {"limits": {"max_body_bytes": "1KiB"}})
    r = call(qg, "POST", "/fits", body=b"a" * 1024)
    assert r.status == 200
    # announced too large: answered at once, before any body byte is sent
    raw, closed = raw_request(qg, b"POST /edge/client/v1/authenticate HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Type: application/json\r\nContent-Length: 1025\r\n\r\n")
    _check_local_error(qg, raw, closed, 413, "REQUEST_ENTITY_TOO_LARGE")
    # Expect: 100-continue is refused the same way
    raw, closed = raw_request(qg, b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                                  b"Content-Length: 5000000\r\n\r\n")
    assert b"100 Continue" not in raw
    _check_local_error(qg, raw, closed, 413, "REQUEST_ENTITY_TOO_LARGE")
    assert [r["target"] for r in cl.upstreams[0].seen()] == ["/fits"]


def test_chunked_body_too_large_is_413(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, {"limits": {"max_body_bytes": "1KiB"}})
    chunk = b"a" * 600
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2)) + b"0\r\n\r\n"
    raw, closed = raw_request(qg, b"POST /edge/client/v1/x HTTP/1.1\r\nHost: x\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n" + body)
    _check_local_error(qg, raw, closed, 413, "REQUEST_ENTITY_TOO_LARGE")
    # just under: forwarded whole
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (1000, b"b" * 1000)
    raw, _ = raw_request(qg, b"POST /under HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                             b"Connection: close\r\n\r\n" + body)
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    assert [(r["target"], r["body"]) for r in cl.upstreams[0].seen()] == [("/under", b"b" * 1000)]
    line = wait_access(qg, lambda e: e.get("status") == 413)
    assert line["error"] == "REQUEST_ENTITY_TOO_LARGE"


def _timed_raw(qg, data, timeout=6.0):
    t0 = time.monotonic()
    raw, closed = raw_request(qg, data, timeout=timeout)
    return raw, closed, time.monotonic() - t0


SLOW = {"timeouts": {"client_header": "400ms", "client_body": "600ms", "client_idle": "20s"}}


def test_slow_request_line_is_408(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, SLOW)
    raw, closed, took = _timed_raw(qg, b"GET /edge/client/v1/vers")
    _check_local_error(qg, raw, closed, 408, "REQUEST_TIMEOUT")
    assert 0.3 < took < 3.0, took
    assert not cl.upstreams[0].seen()
    line = wait_access(qg, lambda e: e.get("status") == 408)
    assert line["error"] == "REQUEST_TIMEOUT" and line["client"] == "127.0.0.1"
    assert line["method"] == "-"
    # counted, but not as a GET nobody sent
    assert qg.metrics().value("quorumgate_requests_total", method="OTHER", code="4xx") == 1
    assert qg.metrics().value("quorumgate_requests_total", method="GET", code="4xx") == 0
    # a connection that sends nothing at all is bounded the same way
    raw, closed, took = _timed_raw(qg, b"")
    assert closed and took < 3.0, (raw, closed, took)


def test_slow_headers_is_408(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, SLOW)
    raw, closed, took = _timed_raw(qg, b"GET /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n")
    _check_local_error(qg, raw, closed, 408, "REQUEST_TIMEOUT")
    assert 0.3 < took < 3.0, took
    assert not cl.upstreams[0].seen()
    line = wait_access(qg, lambda e: e.get("status") == 408)
    assert line["error"] == "REQUEST_TIMEOUT"


def test_headers_trickled_slowly_are_408(quorumgate, echo_factory):
    # each byte arrives in time, the whole header does not: the deadline
    # covers request line and headers together
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, SLOW)
    host, port = host_port(qg.url)
    s = socket.create_connection((host, port), timeout=5)
    t0 = time.monotonic()
    got = b""
    try:
        for b in b"GET /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nX-Long: " + b"y" * 100:
            try:
                s.sendall(bytes([b]))
            except OSError:
                break
            time.sleep(0.02)
            if time.monotonic() - t0 > 4:
                break
        s.settimeout(3)
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    break
                got += c
        except OSError:
            pass
    finally:
        s.close()
    st, _, _ = _one_response(got)
    assert st == 408
    assert not cl.upstreams[0].seen()


def test_slow_body_is_408(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, SLOW)
    raw, closed, took = _timed_raw(qg, b"POST /edge/client/v1/authenticate HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Length: 100\r\n\r\n0123456789")
    _check_local_error(qg, raw, closed, 408, "REQUEST_TIMEOUT")
    assert 0.5 < took < 3.0, took
    raw, closed, took = _timed_raw(qg, b"POST /edge/client/v1/authenticate HTTP/1.1\r\nHost: x\r\n"
                                       b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    _check_local_error(qg, raw, closed, 408, "REQUEST_TIMEOUT")
    assert not cl.upstreams[0].seen()


def test_slow_client_on_https_is_disconnected(quorumgate, echo_factory, certs):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, dict(SLOW, listeners=[
        {"address": "127.0.0.1:0", "tls": {"cert": certs["cert"], "key": certs["key"]}}]))
    host, port = host_port(qg.url)
    ctx = ssl.create_default_context(cafile=certs["ca"])
    for partial in (b"GET /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n",
                    b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nabc"):
        raw = socket.create_connection((host, port), timeout=5)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        t0 = time.monotonic()
        s.sendall(partial)
        got = b""
        closed = False
        s.settimeout(5)
        try:
            while True:
                c = s.recv(65536)
                if not c:
                    closed = True
                    break
                got += c
        except (ssl.SSLError, ConnectionResetError):
            closed = True
        except socket.timeout:
            pass
        took = time.monotonic() - t0
        s.close()
        assert closed and took < 3.0, (closed, took, got[:200])
        assert not got.startswith(b"HTTP/1.1 200")
    # a TLS handshake that never starts is bounded too
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=5) as raw:
        raw.settimeout(5)
        try:
            assert raw.recv(100) == b""
        except ConnectionResetError:
            pass
    assert time.monotonic() - t0 < 3.0
    assert not cl.upstreams[0].seen()
    # a handshake stalled half-way does not hold up other clients
    with socket.create_connection((host, port), timeout=5) as stalled:
        stalled.sendall(b"\x16\x03\x01")
        time.sleep(0.1)
        t0 = time.monotonic()
        assert call(qg, "GET", "/other", ca=certs["ca"], timeout=3).status == 200
        assert time.monotonic() - t0 < 1.0
    # and a normal request still works
    assert call(qg, "GET", "/ok", ca=certs["ca"]).status == 200


def test_idle_keep_alive_connection_is_closed_silently(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, {"timeouts": {"client_header": "5s", "client_idle": "1s"}})
    host, port = host_port(qg.url)
    with socket.create_connection((host, port), timeout=6) as s:
        s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        t0 = time.monotonic()
        while True:
            c = s.recv(65536)
            if not c:
                break
            got += c
        took = time.monotonic() - t0
    rs = parse_responses(got)
    assert [r[0] for r in rs] == [200], got[:300]
    assert 0.5 < took < 4.0, took


def test_too_many_concurrent_requests_is_503_overloaded(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    up.respond("/slow", status=200, body=b'{"slow":true}', delay=1.5)
    qg = qg_over_echo(quorumgate, cl, {"limits": {"max_concurrent_requests": 2}})
    results = []

    def slow():
        results.append(call(qg, "GET", "/slow"))
    ts = [threading.Thread(target=slow) for _ in range(2)]
    for t in ts:
        t.start()
    wait_until(lambda: len(up.seen("/slow")) == 2, timeout=5, what="two slow requests upstream")
    r = call(qg, "GET", "/edge/client/v1/version")
    doc = assert_envelope(r, 503, "PROXY_OVERLOADED")
    assert doc["meta"] == {"apiEnrollmentVersion": "0.0.1", "apiVersion": "0.0.1"}
    for t in ts:
        t.join(10)
    assert [x.status for x in results] == [200, 200]
    assert not up.seen("/edge/client/v1/version")
    # capacity is back
    assert call(qg, "GET", "/edge/client/v1/version").status == 200
    m = qg.metrics()
    assert m.value("quorumgate_requests_total", code="5xx") == 1
    # the gauge drops once the last answer is written out
    wait_metric(qg, "quorumgate_requests_in_flight", 0, timeout=5)


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_pauses_accepting_and_recovers(quorumgate, echo_factory):
    # accept() failing with EMFILE leaves the connection queued and the
    # listening socket readable: polling on would spin a core.  quorumgate
    # pauses accepting (100 ms at a time), counts it, warns, and takes the
    # queued clients once descriptors are free again.
    cl = echo_factory(1)
    limit = 200
    qg = quorumgate({"controllers": [{"id": "ctrl1", "url": cl.url("ctrl1")}],
                     "health": {"interval": "1s", "fast_interval": "1s"}}, sim=cl, start=False)
    qg.prefix = ["prlimit", "--nofile=%d:%d" % (limit, limit), "--"]
    qg.start()
    wait_leader_known(qg)
    pid = qg.proc.pid
    host, port = host_port(qg.url)
    held = []
    try:
        spare = limit - len(os.listdir("/proc/%d/fd" % pid))
        for _ in range(spare + 10):               # more than it can take
            held.append(socket.create_connection((host, port), timeout=5))
        wait_until(lambda: len(os.listdir("/proc/%d/fd" % pid)) >= limit - 2, timeout=5,
                   what="quorumgate's descriptors used up")
        time.sleep(0.3)
        before = _cpu_seconds(pid)
        time.sleep(2.0)
        spent = _cpu_seconds(pid) - before
        assert spent < 0.5, "%.2f s of CPU in 2 s while out of descriptors" % spent
        for s in held[:30]:
            s.close()
        del held[:30]
        # the clients that waited in the backlog are taken, and answered
        late = held[-1]
        late.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
        late.settimeout(5)
        assert late.recv(100).startswith(b"HTTP/1.1 200"), "a queued client is served"
    finally:
        for s in held:
            s.close()
    assert call(qg, "GET", "/after").status == 200
    assert metric(qg, "quorumgate_client_accept_errors_total") >= 1
    wait_until(lambda: any("cannot accept client connections" in e.get("msg", "")
                           for e in qg.error_log()), timeout=5, what="the warning")
