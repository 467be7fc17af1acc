"""quorumgate's own upstream client (io/h1client.c, issue 16) against a
controller that answers byte by byte (tests/support/scripted_upstream.py):
an answer cut at every byte, a request written with no answer (reported,
never resent), nothing written (resent elsewhere, even a POST), pooled
connections (reused, closed by the controller while idle, bounded by
upstream.max_connections) and TLS session resumption.  Every plain-HTTP
test runs twice: with the requests of a loop turn written in one io_uring
submission (upstream.batch_sends, the default; over TLS their records,
encrypted first) and one send() each."""
import os
import sys
import threading
import time

import pytest

from tests.integration.core_support import call, io_uring_allowed, status, wait_access, wait_leader_known
from tests.support.procs import wait_until
from tests.support.scripted_upstream import OK

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WRITE = "/edge/management/v1/services"
READ = "/edge/client/v1/version"

CREATED_BODY = b'{"data":{"id":"s"},"meta":{}}'
CREATED_LENGTH = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(CREATED_BODY), CREATED_BODY))
CREATED_CHUNKED = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n"
                   b"10;ext=1\r\n{\"data\":{\"id\":\"s\r\n"
                   b"d\r\n\"},\"meta\":{}}\r\n0\r\nTrailer: t\r\n\r\n")


@pytest.fixture(params=[True, False], ids=["batched", "one-send-each"])
def batch(request):
    return request.param


def qg_over(quorumgate, cluster, overrides=None, batch=True):
    over = {"controllers": [{"id": nid, "url": cluster.url(nid)} for nid in cluster.node_ids]}
    over.update(overrides or {})
    over.setdefault("upstream", {})["batch_sends"] = batch
    qg = quorumgate(over, sim=cluster)
    wait_leader_known(qg)
    return qg


def batched_sends(qg):
    return qg.metrics().value("quorumgate_upstream_batched_sends_total")


def together(qg, n, big):
    """n requests at once (every 4th a POST of big); [(i, status, attempts)]."""
    results = []

    def one(i):
        if i % 4 == 0:
            r = call(qg, "POST", WRITE, body=big, headers={"Content-Type": "text/plain"})
        else:
            r = call(qg, "GET", READ + "?i=%d" % i)
        results.append((i, r.status, attempts(r)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return sorted(results)


def attempts(r):
    return int(r.header("Quorumgate-Attempts"))


@pytest.mark.parametrize("answer", [CREATED_LENGTH, CREATED_CHUNKED], ids=["length", "chunked"])
def test_answer_cut_at_every_byte(quorumgate, scripted, answer, batch):
    """A POST whose answer stops after k bytes: complete answers pass (the
    end of the stream after a complete one is fine), every shorter one is
    a 502 -- the request was written, so it is never resent."""
    cl = scripted(1)
    up = cl.upstreams[0]
    qg = qg_over(quorumgate, cl, batch=batch)
    for k in range(len(answer) + 1):
        before = len(up.requests())
        up.script(("cut", answer, k))
        r = call(qg, "POST", WRITE, body=b'{"name":"s"}',
                 headers={"Content-Type": "application/json"})
        if k == len(answer):
            assert r.status == 201, (k, r.status, r.body)
            assert r.json() == {"data": {"id": "s"}, "meta": {}}
        else:
            assert r.status == 502, (k, r.status, r.body)
            assert r.error_code() == "PROXY_UPSTREAM_ERROR"
        assert attempts(r) == 1, k
        assert len(up.requests()) == before + 1, "sent once (cut at %d)" % k
    # and the next exchange is a normal one
    r = call(qg, "GET", READ)
    assert r.status == 200 and r.body == b'{"data":{},"meta":{}}'


def test_written_without_answer_is_reported_not_resent(quorumgate, scripted, batch):
    """The controller takes the request and closes: a POST is ambiguous
    (502, one arrival, outcome reset); a GET is resent to the other
    controller by the retry rules, not by the client."""
    cl = scripted(2, leaders=(0, 1))
    a, b = cl.upstreams
    qg = qg_over(quorumgate, cl, batch=batch)
    a.script(*[("drop",)] * 4)
    b.script(*[("drop",)] * 4)
    r = call(qg, "POST", WRITE, body=b'{"name":"s"}', headers={"Content-Type": "application/json"})
    assert r.status == 502 and attempts(r) == 1, (r.status, r.body)
    assert len(a.requests()) + len(b.requests()) == 1
    line = wait_access(qg, lambda e: e.get("request_id") == r.header("X-Request-Id"))
    assert [x["outcome"] for x in line["upstream"]] == ["reset"], line
    a.actions.clear()
    b.actions.clear()
    # a GET dropped twice: the retry rules send it again (sent_failed),
    # and every arrival is one the access log shows
    a.script(("drop",))
    b.script(("drop",))
    n = len(a.requests()) + len(b.requests())
    r = call(qg, "GET", READ)
    assert r.status == 200, (r.status, r.body)
    assert attempts(r) == 3
    assert len(a.requests()) + len(b.requests()) == n + 3
    line = wait_access(qg, lambda e: e.get("request_id") == r.header("X-Request-Id"))
    assert [x["outcome"] for x in line["upstream"]] == ["reset", "reset", "ok"], line


def test_nothing_written_goes_elsewhere_even_a_post(quorumgate, scripted, batch):
    """The leader refuses connections (quorumgate has not probed it since):
    nothing was written, so the POST is sent to the other controller, once."""
    cl = scripted(2, leaders=(0,))
    a, b = cl.upstreams
    qg = qg_over(quorumgate, cl, {"health": {"interval": "60s", "fast_interval": "60s",
                                             "timeout": "1s", "rise": 1, "fall": 5}}, batch)
    wait_until(lambda: all(c["last_probe_ms"] for c in status(qg)["controllers"]),
               timeout=10, what="both probed")
    a.close_listener()
    r = call(qg, "POST", WRITE, body=b'{"name":"s"}', headers={"Content-Type": "application/json"})
    assert r.status == 200, (r.status, r.body)
    assert attempts(r) == 2
    assert len(a.requests()) == 0 and len(b.requests()) == 1
    line = wait_access(qg, lambda e: e.get("request_id") == r.header("X-Request-Id"))
    assert [x["outcome"] for x in line["upstream"]] == ["connect_error", "ok"], line


def test_kept_alive_connection_reused_and_closed_while_idle(quorumgate, scripted, batch):
    cl = scripted(1)
    up = cl.upstreams[0]
    qg = qg_over(quorumgate, cl, batch=batch)
    for _ in range(10):
        assert call(qg, "GET", READ).status == 200
    conns = {q["conn"] for q in up.requests()}
    assert len(conns) == 1, conns
    # the controller closes the pooled connection while it is idle: the
    # next request goes on a new one, first time, nothing resent
    up.script(("answer_then_close", OK, 0.2))
    assert call(qg, "GET", READ).status == 200
    time.sleep(0.6)
    r = call(qg, "GET", READ)
    assert r.status == 200 and attempts(r) == 1
    reqs = up.requests()
    assert len(reqs) == 12
    assert reqs[-1]["conn"] != reqs[-2]["conn"]


def test_pool_bounded_by_max_connections(quorumgate, scripted, batch):
    cl = scripted(1)
    up = cl.upstreams[0]
    qg = qg_over(quorumgate, cl, {"upstream": {"max_connections": 2}}, batch)
    up.script(*[("slow", OK, 0.3)] * 6)
    results = []

    def one():
        results.append(call(qg, "GET", READ).status)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [200] * 6
    assert len({q["conn"] for q in up.requests()}) <= 2
    assert up.max_open <= 2 + 1  # + the health probes' own connection


def test_request_as_written_upstream(quorumgate, scripted, batch):
    """Host, framing and the fields libcurl was told to leave out."""
    cl = scripted(1)
    up = cl.upstreams[0]
    qg = qg_over(quorumgate, cl, batch=batch)
    assert call(qg, "PUT", WRITE + "/x", body=b"abc", headers={"Content-Type": "text/plain"}).status == 200
    assert call(qg, "DELETE", WRITE + "/x").status == 200
    assert call(qg, "GET", READ + "?a=1&b=%20").status == 200
    put, delete, get = up.requests()
    h = {k.lower(): v for k, v in put["headers"]}
    assert put["method"] == "PUT" and put["body"] == b"abc" and h["content-length"] == "3"
    assert h["host"] == "127.0.0.1:%d" % up.port
    assert h["content-type"] == "text/plain"
    assert "expect" not in h and "accept" not in h and "transfer-encoding" not in h
    assert "content-length" not in {k.lower() for k, _ in delete["headers"]}
    assert get["target"] == READ + "?a=1&b=%20"


def test_tls_sessions_resumed(quorumgate, scripted, certs, batch):
    cl = scripted(1, tls=True)
    up = cl.upstreams[0]
    qg = qg_over(quorumgate, cl, {"upstream": {"tls": {"ca": certs["ca"], "verify": True}}}, batch)
    close = OK.replace(b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nConnection: close\r\n")
    up.script(*[("answer", close)] * 3)
    for _ in range(3):
        assert call(qg, "GET", READ).status == 200
    conns = [q["conn"] for q in up.requests()]
    assert len(set(conns)) == 3, conns
    assert any(up.resumed[c] for c in conns[1:]), up.resumed


def test_batched_sends_counted(quorumgate, scripted, batch):
    """upstream_batched_sends_total says which way the requests went: every
    plain-HTTP attempt through io_uring where the kernel allows it (and
    quorumgate says at level info when it does not), none with
    batch_sends: false."""
    cl = scripted(1)
    up = cl.upstreams[0]
    qg = qg_over(quorumgate, cl, {"log": {"level": "info"}}, batch)
    for _ in range(5):
        assert call(qg, "GET", READ).status == 200
    assert call(qg, "POST", WRITE, body=b'{"name":"s"}',
                headers={"Content-Type": "application/json"}).status == 200
    own = qg.metrics().value("quorumgate_upstream_client_attempts_total", client="own")
    assert own == 6
    allowed = io_uring_allowed()
    assert batched_sends(qg) == (6 if batch and allowed else 0)
    said = "upstream.batch_sends:" in qg.stderr_text()
    assert said == (batch and not allowed), qg.stderr_text()[-2000:]
    assert len(up.requests()) == 6


def test_concurrent_requests_each_once(quorumgate, scripted, batch):
    """Requests arriving together go out together (one batch when batched)
    and each arrives once, on its own connection, with its own answer; a
    body larger than the part written with the head follows it."""
    cl = scripted(1)
    up = cl.upstreams[0]
    qg = qg_over(quorumgate, cl, batch=batch)
    up.script(*[("slow", OK, 0.2)] * 12)
    big = b"x" * (64 * 1024)
    assert together(qg, 12, big) == [(i, 200, 1) for i in range(12)]
    reqs = up.requests()
    assert len(reqs) == 12
    gets = sorted(q["target"] for q in reqs if q["method"] == "GET")
    assert gets == sorted(READ + "?i=%d" % i for i in range(12) if i % 4)
    assert [q["body"] for q in reqs if q["method"] == "POST"] == [big] * 3


def test_tls_batched(quorumgate, scripted, certs, batch):
    """Over TLS, a batch carries each request's records: answers come back
    on kept-alive connections, concurrent requests and a large body arrive
    once each, an answer cut short is reported and never resent, and the
    count says which way they went."""
    cl = scripted(1, tls=True)
    up = cl.upstreams[0]
    qg = qg_over(quorumgate, cl, {"upstream": {"tls": {"ca": certs["ca"], "verify": True}}}, batch)
    for _ in range(4):
        assert call(qg, "GET", READ).status == 200
    assert len({q["conn"] for q in up.requests()}) == 1
    up.script(*[("slow", OK, 0.2)] * 8)
    big = b"y" * (100 * 1024)
    assert together(qg, 8, big) == [(i, 200, 1) for i in range(8)]
    reqs = up.requests()
    assert len(reqs) == 12
    assert [q["body"] for q in reqs if q["method"] == "POST"] == [big] * 2
    up.script(("cut", CREATED_LENGTH, 20))
    r = call(qg, "POST", WRITE, body=b'{"name":"s"}', headers={"Content-Type": "application/json"})
    assert r.status == 502 and attempts(r) == 1, (r.status, r.body)
    assert len(up.requests()) == 13
    assert call(qg, "GET", READ).status == 200
    assert batched_sends(qg) == (14 if batch and io_uring_allowed() else 0)


def test_io_uring_refused_sends_one_by_one(quorumgate, scripted):
    """Where io_uring is refused (a seccomp filter answers io_uring_setup
    with EPERM, as Docker's default profile does), batch_sends falls back
    to one send per request: quorumgate says why at level info, forwards
    every request, counts none as batched."""
    cl = scripted(1)
    up = cl.upstreams[0]
    over = {"controllers": [{"id": nid, "url": cl.url(nid)} for nid in cl.node_ids],
            "log": {"level": "info"}}
    qg = quorumgate(over, sim=cl, start=False)
    qg.prefix = [sys.executable, os.path.join(ROOT, "tests", "support", "no_io_uring.py")]
    qg.start()
    wait_leader_known(qg)
    for _ in range(3):
        assert call(qg, "GET", READ).status == 200
    assert call(qg, "POST", WRITE, body=b'{"name":"s"}',
                headers={"Content-Type": "application/json"}).status == 200
    assert len(up.requests()) == 4
    assert batched_sends(qg) == 0
    assert qg.metrics().value("quorumgate_upstream_client_attempts_total", client="own") == 4
    assert "upstream.batch_sends: io_uring is not permitted here" in qg.stderr_text()
