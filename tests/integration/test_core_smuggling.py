"""Proxy core, request smuggling (issue 2): messages whose framing two
parsers could read differently are refused with 400 and the connection is
closed, nothing reaches a controller, and a second request hidden in the
same bytes is never processed.  Raw sockets against the real binary in
front of the simulator (its request log is the witness)."""
import json

import pytest

from tests.integration.core_support import (  # noqa: F401  (fixtures)
    parse_responses, raw_request, shared_sim_qg, sim_requests, wait_access)

SMUGGLED = b"GET /edge/client/v1/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

CASES = {
    "cl_and_te": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_and_cl": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 b"Content-Length: 60\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "duplicate_differing_cl": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                              b"Content-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED,
    "cl_list": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nContent-Length: 0, %d\r\n\r\n"
               % len(SMUGGLED) + SMUGGLED,
    "cl_signed": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nContent-Length: +0\r\n\r\n" + SMUGGLED,
    "cl_negative": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n" + SMUGGLED,
    "cl_hex": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nContent-Length: 0x10\r\n\r\n" + SMUGGLED,
    "te_gzip": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" + SMUGGLED,
    "te_gzip_chunked": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n"
                       b"\r\n0\r\n\r\n" + SMUGGLED,
    "te_chunked_chunked": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
                          b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_twice": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_http10": b"POST /edge/client/v1/version HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0\r\n\r\n" + SMUGGLED,
    "te_xchunked": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"
                   b"0\r\n\r\n" + SMUGGLED,
    "te_identity": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n"
                   b"\r\n" + SMUGGLED,
    "te_empty": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n\r\n" + SMUGGLED,
    "te_space_before_colon": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
                             b"Transfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te_obs_fold": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n"
                   b"Content-Length: 3\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "bad_chunk_size": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"zz\r\n\r\n" + SMUGGLED,
    "bare_lf_in_headers": b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\nContent-Length: 0\r\n"
                          b"X-A: b\rContent-Length: 5\r\n\r\n" + SMUGGLED,
    "duplicate_host": b"GET /edge/client/v1/version HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + SMUGGLED,
    "nul_in_target": b"GET /edge/client/v1/version\x00/../../x HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED,
    "ctl_in_target": b"GET /edge/client/v1/version\x01 HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED,
    "bare_cr_in_target": b"GET /edge/client/v1/version\rX HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED,
    "fragment_in_target": b"POST /edge/client/v1/version#x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
                          + SMUGGLED,
    "absolute_form_target": b"GET http://evil.example/edge/client/v1/version HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED,
    "asterisk_target": b"GET * HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED,
}


@pytest.fixture
def qg_sim(shared_sim_qg):
    shared_sim_qg.sim.control.reset_requests()
    return shared_sim_qg


@pytest.mark.parametrize("case", sorted(CASES))
def test_ambiguous_framing_is_400_and_nothing_reaches_the_controllers(qg_sim, case):
    qg = qg_sim
    sim = qg.sim
    # a path of its own, to find its access-log line
    data = CASES[case].replace(b"/edge/client/v1/version", b"/edge/client/v1/version-" + case.encode(), 1)
    raw, closed = raw_request(qg, data)
    responses = parse_responses(raw)
    assert len(responses) == 1, (case, raw[:600])
    st, hdrs, body = responses[0]
    assert st == 400, (case, raw[:400])
    assert closed, "the connection is closed after the 400 (%s)" % case
    assert hdrs.get("connection", "").lower() == "close", (case, hdrs)
    assert b"smuggled" not in raw
    # the simulator saw nothing at all: neither the request nor the hidden one
    assert sim_requests(sim) == [], case
    # every refusal is our envelope, with its request id in the access log
    line = wait_access(qg, lambda e: case in e.get("path", "") or (case == "asterisk_target" and e.get("path") == "*"),
                       what="the 400 in the access log (%s)" % case)
    assert line["status"] == 400 and not line.get("upstream"), line
    assert line["request_id"] == hdrs["x-request-id"], (case, hdrs)


def test_our_own_400_uses_the_envelope(qg_sim):
    raw, closed = raw_request(qg_sim, CASES["cl_and_te"])
    st, hdrs, body = parse_responses(raw)[0]
    doc = json.loads(body)
    assert doc["error"]["code"] == "BAD_REQUEST"
    assert "Transfer-Encoding" in doc["error"]["message"]
    assert doc["error"]["requestId"] == hdrs["x-request-id"]


def test_well_framed_pipelined_requests_are_each_processed_once(qg_sim):
    # the control: the same connection with clean framing serves both
    qg = qg_sim
    sim = qg.sim
    body = b'{"x":1}'
    data = (b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body)) + b"GET /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw, closed = raw_request(qg, data)
    statuses = [r[0] for r in parse_responses(raw)]
    assert len(statuses) == 2, raw[:500]
    assert closed
    seen = sim_requests(sim)
    assert sorted(r["method"] for r in seen) == ["GET", "POST"]
    # chunked with a chunk extension and trailers is fine too
    data = (b"POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n")
    raw, closed = raw_request(qg, data)
    assert [r[0] for r in parse_responses(raw)] in ([404], [200], [405]), raw[:300]


def test_trace_is_refused(qg_sim):
    qg = qg_sim
    raw, closed = raw_request(qg, b"TRACE /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
                                  b"Authorization: Bearer secret\r\nConnection: close\r\n\r\n")
    st, hdrs, body = parse_responses(raw)[0]
    assert st == 405, raw[:300]
    assert "GET" in hdrs.get("allow", "")
    assert json.loads(body)["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert b"secret" not in raw
    assert sim_requests(qg.sim) == []


def test_raw_utf8_in_the_path_is_forwarded(qg_sim):
    qg = qg_sim
    raw, closed = raw_request(qg, "GET /edge/client/v1/caf\u00e9 HTTP/1.1\r\nHost: x\r\n"
                                  "Connection: close\r\n\r\n".encode("utf-8"))
    assert parse_responses(raw)[0][0] == 404, raw[:300]
    assert [r["method"] for r in sim_requests(qg.sim)] == ["GET"]
