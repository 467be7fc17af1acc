"""Hostile clients, exhaustion (issue 17): a slow reader is closed once its
answer has not been taken within timeouts.client_send (and counted), and
the bytes held for all clients together are bounded by
limits.max_buffered_bytes (503 PROXY_BUFFER_BUDGET when spent).  Real
binary, echo controllers, real sockets."""
import json
import socket
import ssl

import pytest

from tests.integration.core_support import (  # noqa: F401  (fixtures)
    assert_envelope, call, echo_factory, host_port, metric, qg_over_echo, wait_access,
    wait_metric)
from tests.support.procs import wait_until

BIG = 4 << 20          # an answer far larger than what the sockets buffer


def slow_reader(qg, target, ca=None):
    """Asks for target and never reads: a small receive buffer, so the
    answer stays in quorumgate until the client takes it."""
    host, port = host_port(qg.url)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((host, port))
    if ca:
        s = ssl.create_default_context(cafile=ca).wrap_socket(s, server_hostname=host)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target).encode())
    return s


def drain(s, limit):
    """Reads until the server closes (or limit bytes); returns the count."""
    n = 0
    s.settimeout(10)
    try:
        while n < limit:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            n += len(chunk)
    except (ConnectionResetError, ssl.SSLError):
        pass
    return n


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_slow_reader_is_closed_after_the_send_timeout(quorumgate, echo_factory, certs, tls):
    cl = echo_factory(1)
    cl.upstreams[0].respond("/edge/client/v1/big", status=200, body=b"x" * BIG,
                            headers=[("Content-Type", "application/octet-stream")])
    over = {"timeouts": {"client_send": "1s"}}
    if tls:
        over["listeners"] = [{"address": "127.0.0.1:0",
                              "tls": {"cert": certs["cert"], "key": certs["key"]}}]
    qg = qg_over_echo(quorumgate, cl, over)
    s = slow_reader(qg, "/edge/client/v1/big", ca=certs["ca"] if tls else None)
    try:
        # the request is answered, the answer is not taken: after the send
        # timeout the connection is closed, the slot and memory given back
        wait_metric(qg, "quorumgate_client_send_timeouts_total", 1, timeout=10)
        wait_metric(qg, "quorumgate_requests_in_flight", 0, timeout=5)
        line = wait_access(qg, lambda e: e.get("path") == "/edge/client/v1/big")
        assert line["status"] == 200 and line.get("send_timeout") is True, line
        got = drain(s, BIG + 65536)
        assert got < BIG, "the whole answer went out: %d bytes" % got
    finally:
        s.close()
    # a client that reads is not affected
    r = call(qg, "GET", "/edge/client/v1/big", ca=certs["ca"] if tls else None)
    assert r.status == 200 and len(r.body) == BIG
    assert metric(qg, "quorumgate_client_send_timeouts_total") == 1


def test_the_buffer_budget_refuses_with_503_while_spent(quorumgate, echo_factory):
    cl = echo_factory(1)
    cl.upstreams[0].respond("/edge/client/v1/big", status=200, body=b"x" * BIG,
                            headers=[("Content-Type", "application/octet-stream")])
    qg = qg_over_echo(quorumgate, cl, {"limits": {"max_buffered_bytes": "1MiB"},
                                       "timeouts": {"client_send": "60s"}})
    assert call(qg, "GET", "/edge/client/v1/version").status == 200
    s = slow_reader(qg, "/edge/client/v1/big")
    try:
        # the unread answer is held for the slow reader and counted
        wait_until(lambda: metric(qg, "quorumgate_buffered_bytes") >= BIG, timeout=10,
                   what="the slow reader's answer counted in buffered_bytes")
        r = call(qg, "GET", "/edge/client/v1/version")
        doc = assert_envelope(r, 503, "PROXY_BUFFER_BUDGET")
        assert "max_buffered_bytes" in doc["error"]["message"]
        # a body that would not fit is refused before it is read
        r = call(qg, "POST", "/edge/client/v1/things", body=b"{}" * 100,
                 headers={"Content-Type": "application/json"})
        assert_envelope(r, 503, "PROXY_BUFFER_BUDGET")
        assert metric(qg, "quorumgate_buffer_budget_refused_total") == 2
        assert [x["target"] for x in cl.upstreams[0].seen()
                if x["target"].startswith("/edge/client/v1/things")] == []
        line = wait_access(qg, lambda e: e.get("error") == "PROXY_BUFFER_BUDGET")
        assert line["status"] == 503
    finally:
        s.close()
    # the slow reader gone, its bytes are given back and requests pass again
    wait_until(lambda: metric(qg, "quorumgate_buffered_bytes") == 0, timeout=10,
               what="buffered_bytes back to 0")
    assert call(qg, "GET", "/edge/client/v1/version").status == 200


def test_a_trickled_body_over_the_budget_is_refused(quorumgate, echo_factory):
    """A chunked body announces no length: it is counted as it arrives, and
    when it would go over the budget nothing more is kept; the answer is 503
    once the body ends (the controller never sees it)."""
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, {"limits": {"max_buffered_bytes": "64KiB",
                                                  "max_body_bytes": "1MiB"}})
    host, port = host_port(qg.url)
    s = socket.create_connection((host, port), timeout=10)
    try:
        s.sendall(b"POST /edge/client/v1/things HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        part = b"a" * 16384
        for _ in range(8):                        # 128 KiB in all
            s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        s.sendall(b"0\r\n\r\n")
        raw = b""
        while b"\r\n\r\n" not in raw or len(raw) < 200:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    finally:
        s.close()
    assert raw.startswith(b"HTTP/1.1 503"), raw[:200]
    body = raw.split(b"\r\n\r\n", 1)[1]
    assert json.loads(body[:body.rindex(b"}") + 1])["error"]["code"] == "PROXY_BUFFER_BUDGET"
    assert cl.upstreams[0].seen("/edge/client/v1/things") == []
    wait_until(lambda: metric(qg, "quorumgate_buffered_bytes") == 0, timeout=10,
               what="buffered_bytes back to 0")
    assert metric(qg, "quorumgate_buffer_budget_refused_total") == 1
