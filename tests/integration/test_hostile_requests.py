"""Hostile clients (issue 17): request shapes refused before anything goes
upstream -- methods outside the controllers' APIs (501, CONNECT included)
and control characters, NUL among them, in header values (400, RFC 9110
5.5).  The simulator's request log shows nothing arrived."""
import json
import socket

import pytest


def raw(qg, data):
    host, port = qg.url.split("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                clen = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if clen and len(body) >= clen[0]:
                    break
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head, body


@pytest.mark.parametrize("method", [b"CONNECT", b"FOO", b"PROPFIND", b"get"])
def test_unknown_methods_are_501(quorumgate, method):
    qg = quorumgate()
    before = qg.sim.control.count(path="/edge/client/v1/version")
    target = b"ctrl.example:443" if method == b"CONNECT" else b"/edge/client/v1/version"
    status, head, body = raw(qg, method + b" " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 501 or (method == b"CONNECT" and status == 400), (status, head)
    if status == 501:
        assert json.loads(body)["error"]["code"] == "NOT_IMPLEMENTED"
    assert qg.sim.control.count(path="/edge/client/v1/version") == before


@pytest.mark.parametrize("value", [b"a\x00b", b"a\x01b", b"a\x7fb", b"a\rb"])
def test_control_characters_in_header_values_are_400(quorumgate, value):
    qg = quorumgate()
    before = qg.sim.control.count(path="/edge/client/v1/version")
    status, head, body = raw(qg, b"GET /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nX-Note: " + value +
                             b"\r\nConnection: close\r\n\r\n")
    assert status == 400, (status, head, body)
    assert qg.sim.control.count(path="/edge/client/v1/version") == before


def test_connections_per_client_are_limited(quorumgate):
    """limits.max_connections_per_client: a third idle connection from the
    same address is closed at accept; the first two still work, and once
    one closes a new one is accepted."""
    import time
    qg = quorumgate({"limits": {"max_connections_per_client": 2}, "workers": 1})
    host, port = qg.url.split("//", 1)[1].rsplit(":", 1)
    a = socket.create_connection((host, int(port)), timeout=5)
    b = socket.create_connection((host, int(port)), timeout=5)
    time.sleep(0.2)
    c = socket.create_connection((host, int(port)), timeout=5)
    c.sendall(b"GET /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        got = c.recv(100)
    except (ConnectionResetError, socket.timeout):
        got = b""
    assert got == b"", got
    c.close()
    for s in (a, b):
        s.sendall(b"GET /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(12).startswith(b"HTTP/1.1 200")
    a.close()
    time.sleep(0.2)
    status, _, _ = raw(qg, b"GET /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 200
    b.close()


def _open(url):
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _served(s):
    """One request on s: True when answered 200, False when closed unanswered."""
    from tests.integration.core_support import read_answers
    try:
        s.sendall(b"GET /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n\r\n")
        got, raw = read_answers(s, 1)
    except (ConnectionResetError, BrokenPipeError):
        return False
    assert [st for st, _, _ in got] in ([], [200]), raw
    return bool(got)


def _refused(qg):
    from tests.support import prom
    return prom.metric(qg, "quorumgate_client_connections_refused_total", default=0.0,
                       reason="max_connections_per_client")


def test_connections_per_client_count_across_listeners_and_workers(quorumgate):
    """The limit is per client address for the whole process: connections
    to two listeners, spread over two workers by SO_REUSEPORT, count
    together (before, each worker and each listener counted its own)."""
    from tests.support.procs import wait_until
    qg = quorumgate({"limits": {"max_connections_per_client": 3}, "workers": 2,
                     "listeners": [{"address": "127.0.0.1:0"}, {"address": "127.0.0.1:0"}]})
    held = [_open(qg.url_of(0)), _open(qg.url_of(1)), _open(qg.url_of(0))]
    try:
        assert all(_served(s) for s in held)
        for i in (0, 1):
            extra = _open(qg.url_of(i))
            try:
                assert not _served(extra), "a fourth connection was served on listener %d" % i
            finally:
                extra.close()
        wait_until(lambda: _refused(qg) == 2, timeout=5, what="2 refusals counted")
        held.pop(1).close()

        def fresh_served():
            # the close is counted once a worker sees it
            s = _open(qg.url_of(1))
            try:
                return _served(s)
            finally:
                s.close()
        wait_until(fresh_served, timeout=5, what="a connection served after one closed")
        assert all(_served(s) for s in held)
    finally:
        for s in held:
            s.close()


def test_max_connections_closes_more_at_accept_and_counts_them(quorumgate):
    """limits.max_connections (divided among the workers): with two open, a
    third is closed before anything is read, counted by reason; once one
    closes, a new one is served."""
    from tests.support import prom
    from tests.support.procs import wait_until
    qg = quorumgate({"limits": {"max_connections": 2}, "workers": 1})
    held = [_open(qg.url), _open(qg.url)]
    try:
        assert all(_served(s) for s in held)
        extra = _open(qg.url)
        try:
            assert not _served(extra)
        finally:
            extra.close()
        wait_until(lambda: prom.metric(qg, "quorumgate_client_connections_refused_total",
                                       default=0.0, reason="max_connections") == 1,
                   timeout=5, what="the refusal counted")
        assert _refused(qg) == 0   # not the per-client limit
        held.pop().close()

        def fresh_served():
            s = _open(qg.url)
            try:
                return _served(s)
            finally:
                s.close()
        wait_until(fresh_served, timeout=5, what="a connection served after one closed")
    finally:
        for s in held:
            s.close()
