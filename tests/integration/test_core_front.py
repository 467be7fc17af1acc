"""Proxy core, the HTTP front of plain-HTTP listeners (io/listener_native.c,
issue 16): connection reuse, pipelining, HTTP/1.0, half-closed clients, and
the statuses of requests it cannot read (414, 417, 505) in the OpenZiti
envelope.  Raw sockets against the real binary in front of the simulator."""
import json
import socket

import pytest

from tests.integration.core_support import (  # noqa: F401  (fixtures)
    host_port, parse_responses, raw_request, read_answers, shared_sim_qg, sim_requests, wait_access)

VERSION = b"/edge/client/v1/version"


@pytest.fixture
def qg_sim(shared_sim_qg):
    shared_sim_qg.sim.control.reset_requests()
    return shared_sim_qg


def connect(qg):
    return socket.create_connection(host_port(qg.url), timeout=5)


def test_one_connection_carries_many_requests(qg_sim):
    s = connect(qg_sim)
    try:
        for i in range(5):
            s.sendall(b"GET " + VERSION + b"?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            got, raw = read_answers(s, 1)
            assert [st for st, _, _ in got] == [200], raw[:300]
            assert "close" not in got[0][1].get("connection", "").lower()
            assert json.loads(got[0][2])["data"]["apiVersions"]
    finally:
        s.close()
    seen = [r["path"] for r in sim_requests(qg_sim.sim)]
    assert len([p for p in seen if p.startswith("/edge/client/v1/version")]) == 5, seen


def test_pipelined_requests_are_answered_in_order(qg_sim):
    s = connect(qg_sim)
    try:
        s.sendall(b"".join(b"GET " + VERSION + b"?p=%d HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipe-%d\r\n\r\n"
                           % (i, i) for i in range(3)))
        got, raw = read_answers(s, 3)
    finally:
        s.close()
    assert [st for st, _, _ in got] == [200, 200, 200], raw[:500]
    assert [h["x-request-id"] for _, h, _ in got] == ["pipe-0", "pipe-1", "pipe-2"]


def test_http10_closes_unless_kept_alive(qg_sim):
    raw, closed = raw_request(qg_sim, b"GET " + VERSION + b" HTTP/1.0\r\n\r\n")
    got = parse_responses(raw)
    assert [st for st, _, _ in got] == [200] and closed, raw[:300]
    s = connect(qg_sim)
    try:
        for _ in range(2):
            s.sendall(b"GET " + VERSION + b" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            got, raw = read_answers(s, 1)
            assert [st for st, _, _ in got] == [200], raw[:300]
            assert got[0][1].get("connection", "").lower() == "keep-alive", got[0][1]
    finally:
        s.close()


def test_a_half_closed_client_still_gets_its_answer(qg_sim):
    s = connect(qg_sim)
    try:
        s.sendall(b"GET " + VERSION + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        got, raw = read_answers(s, 1)
        assert [st for st, _, _ in got] == [200], raw[:300]
        s.settimeout(3)
        assert s.recv(100) == b"", "closed after the answer"
    finally:
        s.close()


@pytest.mark.parametrize("data,status,code", [
    (b"GET " + VERSION + b" HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP_VERSION_NOT_SUPPORTED"),
    (b"POST " + VERSION + b" HTTP/1.1\r\nHost: x\r\nExpect: tea\r\nContent-Length: 1\r\n\r\nx", 417,
     "EXPECTATION_FAILED"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "URI_TOO_LONG"),
], ids=["version", "expect", "long_line"])
def test_unreadable_requests_are_refused_in_the_envelope_and_closed(qg_sim, data, status, code):
    raw, closed = raw_request(qg_sim, data)
    got = parse_responses(raw)
    assert len(got) == 1, raw[:300]
    st, hdrs, body = got[0]
    assert st == status, raw[:300]
    assert closed and hdrs.get("connection", "").lower() == "close"
    doc = json.loads(body)
    assert doc["error"]["code"] == code
    assert doc["error"]["requestId"] == hdrs["x-request-id"]
    assert sim_requests(qg_sim.sim) == []
    line = wait_access(qg_sim, lambda e: e.get("request_id") == hdrs["x-request-id"])
    assert line["status"] == status and not line.get("upstream"), line


def test_expect_100_continue_is_answered_before_the_body(qg_sim):
    s = connect(qg_sim)
    try:
        s.sendall(b"POST " + VERSION + b" HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 2\r\n\r\n")
        s.settimeout(5)
        first = s.recv(100)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), first
        s.sendall(b"{}")
        got, raw = read_answers(s, 1)
        assert len(got) == 1 and got[0][0] != 100, raw[:300]
    finally:
        s.close()
