"""Proxy core, forwarding (issue 2): what goes up and what comes back.

Against scriptable echo controllers (tests/support/echo_upstream.py) that
record every header, body, TCP connection and TLS SNI they receive, and
against the TLS simulator for CA verification."""
import http.client
import json
import re
import socket
import ssl
import time

import pytest

from tests.integration.core_support import (  # noqa: F401  (fixtures)
    assert_envelope, call, echo_factory, host_port, qg_over_echo, status, wait_access)
from tests.support.echo_upstream import header_values
from tests.support.procs import make_certs, wait_until


def read_head(s):
    """Bytes from s up to the end of a response head (a closed connection
    ends it early: the caller's assertions say what was missing)."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_status_body_and_headers_pass_through(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    body = json.dumps({"data": {"id": "x1"}, "meta": {}}).encode()
    up.respond("/edge/management/v1/services", status=201,
               headers=[("Content-Type", "application/json"), ("X-Custom", "v1"),
                        ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/"),
                        ("Cache-Control", "no-store"), ("ETag", '"abc"')], body=body)
    up.respond("/teapot", status=418, headers=[("Content-Type", "text/plain")], body=b"short and stout")
    up.respond("/empty", status=204, headers=[])
    qg = qg_over_echo(quorumgate, cl)

    r = call(qg, "POST", "/edge/management/v1/services", body=b'{"name":"s"}',
             headers={"Content-Type": "application/json"})
    assert r.status == 201
    assert r.body == body
    assert r.header("X-Custom") == "v1"
    assert r.header("ETag") == '"abc"'
    assert r.header("Cache-Control") == "no-store"
    assert sorted(r.header_all("Set-Cookie")) == ["a=1; Path=/", "b=2; Path=/"]
    assert r.header("Content-Type") == "application/json"
    assert r.header("Quorumgate-Controller") == "ctrl1"
    assert r.header("Quorumgate-Attempts") == "1"

    r = call(qg, "GET", "/teapot")
    assert (r.status, r.body, r.header("Content-Type")) == (418, b"short and stout", "text/plain")
    r = call(qg, "GET", "/empty")
    assert (r.status, r.body) == (204, b"")


def test_query_string_and_path_reach_the_controller_unchanged(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl)
    targets = [
        "/edge/client/v1/services?filter=name%3D%22a%20b%22&limit=5&offset=0",
        "/edge/client/v1/x?b=2&a=1&a=3&empty=&flag&sl=%2F&plus=a+b&utf=%C3%A9",
        "/edge/client/v1/odd%2Fpath/%7Euser",
        "/a//b/./c/../d",
    ]
    for t in targets:
        r = call(qg, "GET", t)
        assert r.status == 200, (t, r.body)
        assert cl.upstreams[0].last()["target"] == t
        assert r.json()["target"] == t


def test_head_answers_like_get_without_body(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    up.respond("/thing", status=200, headers=[("Content-Type", "application/json"), ("X-A", "1")],
               body=b'{"data":"0123456789"}')
    qg = qg_over_echo(quorumgate, cl)
    g = call(qg, "GET", "/thing")
    h = call(qg, "HEAD", "/thing")
    assert (g.status, h.status) == (200, 200)
    assert h.body == b""
    assert up.last()["method"] == "HEAD"
    assert h.header("X-A") == "1"
    # RFC 9110 8.6: a Content-Length on a HEAD answer must be the GET length
    assert h.header("Content-Length") in (None, g.header("Content-Length")), h.header_list
    assert g.header("Content-Length") == str(len(g.body))
    # on one keep-alive connection: HEAD then GET; the HEAD answer has no
    # body, a single length, and the GET after it is framed right
    host, port = qg.url.split("://")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"HEAD /thing HTTP/1.1\r\nHost: x\r\n\r\n")
        got = read_head(s)
        head, _, rest = got.partition(b"\r\n\r\n")
        assert rest == b""
        assert head.lower().count(b"\r\ncontent-length:") <= 1, head
        s.sendall(b"GET /thing HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while not got.endswith(b'{"data":"0123456789"}'):
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        assert got.startswith(b"HTTP/1.1 200"), got


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_request_bodies_are_forwarded(quorumgate, echo_factory, method):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    qg = qg_over_echo(quorumgate, cl)
    payload = json.dumps({"method": method, "blob": "x" * 3000}).encode()
    r = call(qg, method, "/edge/management/v1/things/1?x=1", body=payload,
             headers={"Content-Type": "application/json"})
    assert r.status == 200, r.body
    rec = up.last()
    assert rec["method"] == method
    assert rec["target"] == "/edge/management/v1/things/1?x=1"
    assert rec["body"] == payload
    assert header_values(rec, "Content-Length") == [str(len(payload))]
    assert header_values(rec, "Content-Type") == ["application/json"]
    # no body: none is invented, and no form Content-Type either
    r = call(qg, method, "/edge/management/v1/things/2")
    assert r.status == 200
    rec = up.last()
    assert rec["method"] == method and rec["body"] == b""
    assert header_values(rec, "Content-Type") == []
    assert header_values(rec, "Transfer-Encoding") == []
    assert header_values(rec, "Expect") == []


def test_chunked_request_body_is_forwarded_whole(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    qg = qg_over_echo(quorumgate, cl)

    def chunks():
        yield b'{"part":1,'
        yield b'"part2":"' + b"y" * 5000 + b'"}'
    # a generator without a length: http.client sends it chunked
    r = call(qg, "POST", "/edge/client/v1/authenticate?method=password", body=chunks(),
             headers={"Content-Type": "application/json"})
    assert r.status == 200
    rec = up.last()
    assert rec["body"] == b'{"part":1,"part2":"' + b"y" * 5000 + b'"}'
    assert header_values(rec, "Transfer-Encoding") == []
    assert header_values(rec, "Content-Length") == [str(len(rec["body"]))]


def test_hop_by_hop_request_headers_are_dropped(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    qg = qg_over_echo(quorumgate, cl)
    # Connection may come as several field lines (RFC 9110 5.3): every
    # field named in any of them is hop-by-hop
    raw = ("GET /edge/client/v1/version HTTP/1.1\r\nHost: proxy.example:1280\r\n"
           "Connection: keep-alive, X-Hop-A\r\nConnection: x-hop-b\r\n"
           "X-Hop-A: a\r\nX-Hop-B: b\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
           "TE: trailers\r\nTrailer: X-T\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n"
           "X-Stays: yes\r\nAuthorization: Bearer tok\r\nAccept: application/json\r\n"
           "User-Agent: tester/1\r\n\r\n")
    host, port = qg.url.split("://")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(raw.encode())
        got = read_head(s)
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    rec = wait_until(up.last, timeout=5, what="the request at the echo controller")
    names = [k.lower() for k, _ in rec["headers"]]
    for hop in ("x-hop-a", "x-hop-b", "keep-alive", "proxy-connection", "te", "trailer",
                "proxy-authorization", "upgrade"):
        assert hop not in names, (hop, rec["headers"])
    # the Connection header upstream is the proxy's own business, never the client's list
    for v in header_values(rec, "Connection"):
        assert "x-hop" not in v.lower(), rec["headers"]
    assert header_values(rec, "X-Stays") == ["yes"]
    assert header_values(rec, "Authorization") == ["Bearer tok"]
    assert header_values(rec, "Accept") == ["application/json"]
    assert header_values(rec, "User-Agent") == ["tester/1"]


def test_hop_by_hop_response_headers_are_dropped(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    up.respond("/hop", status=200, headers=[
        ("Content-Type", "application/json"), ("Connection", "X-Internal"), ("Connection", "x-internal-2"),
        ("X-Internal", "secret"), ("X-Internal-2", "secret2"), ("Keep-Alive", "timeout=5, max=100"),
        ("Proxy-Authenticate", "Basic"), ("Trailer", "X-T"), ("Upgrade", "h2c"), ("X-Kept", "1")],
        body=b'{"ok":true}')
    up.respond("/chunked", status=200, headers=[("Content-Type", "application/json")],
               body=b'{"big":"' + b"z" * 20000 + b'"}', chunked=True)
    qg = qg_over_echo(quorumgate, cl)
    r = call(qg, "GET", "/hop")
    assert r.status == 200 and r.body == b'{"ok":true}'
    names = [k.lower() for k, _ in r.header_list]
    for hop in ("x-internal", "x-internal-2", "keep-alive", "proxy-authenticate", "trailer", "upgrade"):
        assert hop not in names, (hop, r.header_list)
    for v in r.header_all("Connection"):
        assert "internal" not in v.lower(), r.header_list
    assert r.header("X-Kept") == "1"
    r = call(qg, "GET", "/chunked")
    assert r.status == 200 and r.body == b'{"big":"' + b"z" * 20000 + b'"}'
    assert r.header("Transfer-Encoding") in (None, "chunked")   # re-framed by quorumgate, once
    assert len(r.header_all("Transfer-Encoding")) <= 1


def test_forwarded_headers(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    qg = qg_over_echo(quorumgate, cl)
    r = call(qg, "GET", "/edge/client/v1/version",
             headers={"Host": "ziti.example.test:8443", "X-Forwarded-For": "6.6.6.6",
                      "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
                      "Forwarded": "for=6.6.6.6;proto=https"})
    assert r.status == 200
    rec = up.last()
    assert header_values(rec, "X-Forwarded-For") == ["127.0.0.1"]
    assert header_values(rec, "X-Forwarded-Proto") == ["http"]
    assert header_values(rec, "X-Forwarded-Host") == ["ziti.example.test:8443"]
    assert header_values(rec, "Forwarded") == ['for=127.0.0.1;proto=http;host="ziti.example.test:8443"']
    # the controller gets its own Host, not the client's
    assert header_values(rec, "Host") == ["127.0.0.1:%d" % up.port]


def test_forwarded_headers_appended_when_trusted_and_proto_https(quorumgate, echo_factory, certs):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    qg = qg_over_echo(quorumgate, cl, {
        "headers": {"trust_forwarded": ["10.0.0.0/8", "127.0.0.1"]},
        "listeners": [{"address": "127.0.0.1:0", "tls": {"cert": certs["cert"], "key": certs["key"]}}]})
    assert qg.url.startswith("https://")
    r = call(qg, "GET", "/x", ca=certs["ca"],
             headers={"X-Forwarded-For": "10.1.2.3", "Forwarded": "for=10.1.2.3;proto=https"})
    assert r.status == 200
    rec = up.last()
    assert header_values(rec, "X-Forwarded-For") == ["10.1.2.3, 127.0.0.1"]
    assert header_values(rec, "X-Forwarded-Proto") == ["https"]
    fwd = header_values(rec, "Forwarded")
    assert len(fwd) == 1 and fwd[0].startswith("for=10.1.2.3;proto=https, for=127.0.0.1;proto=https"), fwd


def test_forwarded_headers_of_a_peer_outside_the_trusted_networks_are_replaced(quorumgate, echo_factory):
    """trust_forwarded lists the proxies' networks: a client outside them
    (here 127.0.0.1 with only 127.0.0.2/32 and ::1 trusted) cannot choose
    the address the controller sees, while a peer inside them can."""
    cl = echo_factory(1)
    up = cl.upstreams[0]
    qg = qg_over_echo(quorumgate, cl, {"headers": {"trust_forwarded": ["127.0.0.2/32", "::1"]}})
    forged = {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6"}
    r = call(qg, "GET", "/x", headers=forged)
    assert r.status == 200
    assert header_values(up.last(), "X-Forwarded-For") == ["127.0.0.1"]
    assert header_values(up.last(), "Forwarded") == ["for=127.0.0.1;proto=http;host=\"%s\"" %
                                                     qg.url.split("://", 1)[1]]
    # the same request from 127.0.0.2, a trusted proxy: its chain is kept
    host, port = host_port(qg.url)
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=("127.0.0.2", 0))
    try:
        r = call(qg, "GET", "/y", headers=forged, conn=conn)
    finally:
        conn.close()
    assert r.status == 200
    assert header_values(up.last(), "X-Forwarded-For") == ["6.6.6.6, 127.0.0.2"]
    assert header_values(up.last(), "Forwarded")[0].startswith("for=6.6.6.6, for=127.0.0.2;")


def test_request_id_passed_through_or_generated(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    up.respond("/own-id", status=200, headers=[("X-Request-Id", "from-the-controller")], body=b"{}")
    qg = qg_over_echo(quorumgate, cl)

    r = call(qg, "GET", "/a", headers={"X-Request-Id": "client-id-42.a_b:c"})
    assert r.header_all("X-Request-Id") == ["client-id-42.a_b:c"]
    assert header_values(up.last(), "X-Request-Id") == ["client-id-42.a_b:c"]

    for bad in ("has space", "x" * 65, "quote\"d", "semi;colon", "new%0aline"):
        r = call(qg, "GET", "/b", headers={"X-Request-Id": bad})
        ids = r.header_all("X-Request-Id")
        assert len(ids) == 1 and re.fullmatch(r"[0-9a-f]{32}", ids[0]), (bad, ids)
        assert header_values(up.last(), "X-Request-Id") == ids

    r = call(qg, "GET", "/c")
    gen = r.header_all("X-Request-Id")
    assert len(gen) == 1 and re.fullmatch(r"[0-9a-f]{32}", gen[0])
    assert header_values(up.last(), "X-Request-Id") == gen
    # the controller's own id does not replace ours
    r = call(qg, "GET", "/own-id", headers={"X-Request-Id": "mine"})
    assert r.header_all("X-Request-Id") == ["mine"]
    # and the access log carries it
    line = wait_access(qg, lambda e: e.get("path") == "/c")
    assert line["request_id"] == gen[0]
    # generated ids differ
    ids = {call(qg, "GET", "/d").header("X-Request-Id") for _ in range(20)}
    assert len(ids) == 20


def test_request_id_header_name_is_configurable(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    qg = qg_over_echo(quorumgate, cl, {"headers": {"request_id": "X-Correlation-Id"}})
    r = call(qg, "GET", "/a", headers={"X-Correlation-Id": "corr-1"})
    assert r.header("X-Correlation-Id") == "corr-1"
    assert header_values(up.last(), "X-Correlation-Id") == ["corr-1"]


def test_answer_larger_than_max_response_bytes_is_a_502(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    up.respond("/fits", status=200, headers=[("Content-Type", "application/json")], body=b"f" * 4096)
    up.respond("/big", status=200, headers=[("Content-Type", "application/json")], body=b"b" * 4097)
    up.respond("/big-chunked", status=200, headers=[("Content-Type", "application/json")],
               body=b"c" * 50000, chunked=True)
    qg = qg_over_echo(quorumgate, cl, {"limits": {"max_response_bytes": "4KiB"}})
    r = call(qg, "GET", "/fits")
    assert r.status == 200 and r.body == b"f" * 4096
    for path in ("/big", "/big-chunked"):
        up.reset()
        r = call(qg, "GET", path)
        doc = assert_envelope(r, 502, "PROXY_UPSTREAM_ERROR")
        assert "max_response_bytes" in doc["error"]["message"]
        assert b"bbbb" not in r.body and b"cccc" not in r.body
        assert len(up.seen(path)) == 1, "a too-large answer is not retried"
    m = qg.metrics()
    assert m.value("quorumgate_upstream_attempts_total", controller="ctrl1", outcome="response_too_large") == 2


def test_keep_alive_connections_to_the_controller_are_reused(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    qg = qg_over_echo(quorumgate, cl)
    for i in range(20):
        assert call(qg, "GET", "/edge/client/v1/services?i=%d" % i).status == 200
    reads = {r["port"] for r in up.seen()}
    assert len(up.seen()) == 20
    assert len(reads) == 1, "20 sequential reads used %d connections" % len(reads)
    # writes never ride a kept-alive connection (libcurl would resend one
    # silently if it died under it: retry.policies.*.fresh_connection)
    up.reset()
    for i in range(5):
        assert call(qg, "PUT", "/edge/management/v1/things/%d" % i, body=b"{}").status == 200
    writes = [r["port"] for r in up.seen()]
    assert len(writes) == 5 and len(set(writes)) == 5, writes
    assert not set(writes) & reads


def test_upstream_tls_uses_server_name_for_host_and_sni(quorumgate, echo_factory, certs):
    cl = echo_factory(2, tls=True)
    qg = qg_over_echo(quorumgate, cl, {"upstream": {"tls": {"ca": certs["ca"], "verify": True,
                                                            "server_name": "ctrl.ziti.test"}}})
    for _ in range(30):
        assert call(qg, "GET", "/edge/client/v1/version").status == 200
        if all(u.seen() for u in cl.upstreams):
            break
    for up in cl.upstreams:
        recs = up.seen()
        assert recs, "every controller is reached at its own address"
        for rec in recs:
            assert rec["sni"] == "ctrl.ziti.test"
            assert header_values(rec, "Host") == ["ctrl.ziti.test:%d" % up.port]
    s = status(qg)
    assert all(c["up"] for c in s["controllers"]), s


def test_upstream_tls_without_server_name_verifies_the_address(quorumgate, echo_factory, certs):
    cl = echo_factory(1, tls=True)
    up = cl.upstreams[0]
    qg = qg_over_echo(quorumgate, cl, {"upstream": {"tls": {"ca": certs["ca"], "verify": True}}})
    assert call(qg, "GET", "/x").status == 200
    assert header_values(up.last(), "Host") == ["127.0.0.1:%d" % up.port]


def test_wrong_ca_marks_every_controller_down_and_nothing_is_sent(quorumgate, tmp_path, certs, sim_factory):
    sim = sim_factory(tls=True)
    other = make_certs(str(tmp_path / "other-ca"))
    qg = quorumgate({"upstream": {"tls": {"ca": other["ca"], "verify": True}}}, sim=sim)
    sim.control.reset_requests()
    wait_until(lambda: all(not c["up"] and c["last_probe_ms"] for c in status(qg)["controllers"]),
               timeout=10, what="every controller down after failed TLS verification")
    for c in status(qg)["controllers"]:
        assert "tls" in c["last_error"].lower() or "certificate" in c["last_error"].lower(), c
    r = call(qg, "GET", "/edge/client/v1/version")
    assert_envelope(r, 503, "PROXY_NO_HEALTHY_CONTROLLER")
    assert sim.control.count() == 0


def test_certificate_from_another_ca_on_the_request_path_is_a_502(quorumgate, echo_factory, certs, tmp_path):
    # the probes saw a good certificate; then the controller presents one the
    # configured CA did not sign: the request is never sent, every controller
    # is tried, and the client gets the 502 envelope
    other = make_certs(str(tmp_path / "other-ca"))
    cl = echo_factory(2, tls=True)
    qg = qg_over_echo(quorumgate, cl, {"upstream": {"tls": {"ca": certs["ca"], "verify": True}},
                                       "health": {"interval": "60s", "fast_interval": "60s"}})
    wait_until(lambda: all(c["up"] and c["last_probe_ms"] for c in status(qg)["controllers"]), timeout=10,
               what="both controllers probed up")
    for up in cl.upstreams:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(other["cert"], other["key"])
        up.ssl_ctx = ctx
    r = call(qg, "GET", "/edge/client/v1/version")
    doc = assert_envelope(r, 502, "PROXY_UPSTREAM_ERROR")
    assert "tls" in doc["error"]["message"].lower(), doc
    assert all(not u.seen() for u in cl.upstreams)
    line = wait_access(qg, lambda e: e.get("path") == "/edge/client/v1/version")
    assert line["status"] == 502
    assert {a["controller"] for a in line["upstream"]} == {"ctrl1", "ctrl2"}
    assert all(a["outcome"] == "tls_error" for a in line["upstream"]), line


def test_controller_too_slow_is_a_504(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    up.respond("/slow", status=200, body=b"{}", delay=3)
    qg = qg_over_echo(quorumgate, cl, {"retry": {"policies": {"read": {
        "per_try_timeout": "300ms", "max_attempts": 2, "deadline": "2s"}}}})
    t0 = time.monotonic()
    r = call(qg, "GET", "/slow")
    took = time.monotonic() - t0
    doc = assert_envelope(r, 504, "PROXY_UPSTREAM_TIMEOUT")
    assert "ctrl1" in doc["error"]["message"]
    assert took < 2.5, took
    assert len(up.seen("/slow")) == 2        # tried twice, each cut at 300 ms
    line = wait_access(qg, lambda e: e.get("path") == "/slow")
    assert [a["outcome"] for a in line["upstream"]] == ["timeout", "timeout"]


@pytest.mark.parametrize("raw", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part of it",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    b"",
], ids=["garbage", "short_body", "short_chunk", "nothing"])
def test_broken_answers_are_a_502_not_passed_on(quorumgate, echo_factory, raw):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    up.respond("/broken", raw=raw)
    qg = qg_over_echo(quorumgate, cl)
    r = call(qg, "GET", "/broken")
    assert_envelope(r, 502, "PROXY_UPSTREAM_ERROR")
    assert b"only part" not in r.body
    # the connection to the client is still good for the next request
    assert call(qg, "GET", "/fine").status == 200


def test_expect_100_continue_gets_the_body_through(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    qg = qg_over_echo(quorumgate, cl)
    host, port = qg.url.split("://")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        assert s.recv(1000).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"hello")
        got = read_head(s)
        assert got.startswith(b"HTTP/1.1 200")
    rec = up.last()
    assert rec["body"] == b"hello"
    assert header_values(rec, "Expect") == []     # the proxy's own business


def test_several_workers_serve_concurrent_clients(quorumgate, echo_factory):
    import concurrent.futures
    cl = echo_factory(2)
    for up in cl.upstreams:
        up.respond("/work", status=200, body=b'{"ok":1}', delay=0.05)
    qg = qg_over_echo(quorumgate, cl, {"workers": 2})
    assert status(qg)["workers"] == 2

    def one(i):
        r = call(qg, "GET", "/work?i=%d" % i, headers={"X-Request-Id": "w-%d" % i})
        return r.status, r.header("X-Request-Id")
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as ex:
        results = list(ex.map(one, range(120)))
    assert results == [(200, "w-%d" % i) for i in range(120)]
    seen = sorted(int(r["target"].split("=")[1]) for up in cl.upstreams for r in up.seen("/work"))
    assert seen == list(range(120))
    assert all(up.seen("/work") for up in cl.upstreams)
    wait_until(lambda: status(qg)["requests_in_flight"] == 0, timeout=5, what="nothing in flight")
