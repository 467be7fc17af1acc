"""Helpers and fixtures shared by the proxy-core integration tests
(test_core_*.py): scriptable echo controllers, raw HTTP over sockets,
/status and metrics reading, access-log waiting.

Fixtures are imported into each test module (``from
tests.integration.core_support import echo_factory``) rather than put in a
conftest, so other test files are not affected."""
import ctypes
import http.client
import json
import os
import socket
import ssl
import time
import urllib.request

import pytest

from tests.support.echo_upstream import EchoUpstream
from tests.support.procs import wait_until
from tests.support.prom import metric  # noqa: F401  (used by the core tests)


class EchoCluster:
    """Looks enough like a SimProcess for the quorumgate fixture: its
    default configuration lists these echo upstreams as the controllers."""

    def __init__(self, upstreams):
        self.upstreams = upstreams
        self.node_ids = ["ctrl%d" % (i + 1) for i in range(len(upstreams))]
        scheme = "https" if upstreams[0].ssl_ctx else "http"
        self.info = {"scheme": scheme}

    def url(self, nid):
        return self.upstreams[self.node_ids.index(nid)].url

    def by_id(self, nid):
        return self.upstreams[self.node_ids.index(nid)]


@pytest.fixture
def echo_factory(certs):
    started = []

    def make(n=1, tls=False, leaders=(0,)):
        ups = []
        for i in range(n):
            up = EchoUpstream(tls=(certs["cert"], certs["key"]) if tls else None, leader=i in leaders,
                              name="ctrl%d" % (i + 1)).start()
            started.append(up)
            ups.append(up)
        return EchoCluster(ups)

    yield make
    for up in started:
        up.stop()


@pytest.fixture(scope="module")
def shared_sim_qg(tmp_path_factory, certs):
    """One TLS simulator + redis + quorumgate (test defaults) for a whole
    module of tests that do not change them; stopped by PID at the end and
    checked for sanitizer reports like the per-test fixture."""
    from tests.conftest import FAST_SIM_ARGS, _identity_args, default_qg_config, quorumgate_binary
    from tests.ctrlsim.control import SimProcess
    from tests.support.procs import Quorumgate, RedisServer
    binary = quorumgate_binary()
    if not os.access(binary, os.X_OK):
        pytest.skip("quorumgate binary not found at %s" % binary)
    work = str(tmp_path_factory.mktemp("shared"))
    redis = sim = qg = None
    try:
        redis = RedisServer(os.path.join(work, "redis")).start()
        sim = SimProcess(["--nodes", "3"] + _identity_args() + FAST_SIM_ARGS +
                         ["--tls-cert", certs["cert"], "--tls-key", certs["key"]],
                         workdir=os.path.join(work, "sim"))
        os.makedirs(sim.workdir, exist_ok=True)
        sim.start()
        qg = Quorumgate(binary, work, default_qg_config(sim, redis, certs, work), name="qg-shared")
        qg.sim = sim
        qg.redis = redis
        qg.ca = certs["ca"]
        qg.start()
        wait_leader_known(qg)
        yield qg
    finally:
        problems = []
        if qg is not None and qg.proc is not None:
            qg.stop()
            problems = qg.problems()
        if sim is not None:
            sim.stop()
        if redis is not None:
            redis.stop()
        if problems:
            pytest.fail("quorumgate problems:\n" + "\n\n".join(problems), pytrace=False)


def qg_over_echo(quorumgate, cluster, overrides=None):
    """A quorumgate whose controllers are the echo upstreams of cluster."""
    over = {"controllers": [{"id": nid, "url": cluster.url(nid)} for nid in cluster.node_ids]}
    for k, v in (overrides or {}).items():
        over[k] = v
    qg = quorumgate(over, sim=cluster)
    wait_leader_known(qg)
    return qg


# ---- admin side -------------------------------------------------------------

def status(qg):
    with urllib.request.urlopen(qg.admin_url + "/status", timeout=5) as r:
        return json.loads(r.read())


def node_status(qg, nid):
    for c in status(qg)["controllers"]:
        if c["id"] == nid:
            return c
    raise KeyError(nid)


def wait_leader_known(qg, leader=None, timeout=10.0):
    def ok():
        s = status(qg)
        if leader is None:
            return s["leader"] or None
        return s["leader"] == leader
    return wait_until(ok, timeout=timeout, what="quorumgate to know the leader %s" % (leader or ""))


def wait_up(qg, nid, up, timeout=10.0):
    wait_until(lambda: node_status(qg, nid)["up"] == up, timeout=timeout,
               what="%s up=%s in /status" % (nid, up))


def wait_metric(qg, name, value, timeout=10.0, **labels):
    wait_until(lambda: metric(qg, name, **labels) == value, timeout=timeout,
               what="%s%s == %s (now %s)" % (name, labels, value, metric(qg, name, **labels)))


def sim_requests(sim, node=None):
    """What the simulator's nodes were asked, health probes left out."""
    return [r for reqs in sim.control.requests(node).values() for r in reqs
            if not r["path"].startswith("/health-checks")]


# ---- client side ------------------------------------------------------------

def host_port(url):
    hp = url.split("://", 1)[1]
    host, port = hp.rsplit(":", 1)
    return host, int(port)


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.header_list = headers
        self.body = body

    def header(self, name):
        for k, v in self.header_list:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.header_list if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def error_code(self):
        return self.json()["error"]["code"]


def call(qg_or_url, method, target, body=None, headers=None, ca=None, timeout=15.0, conn=None):
    """One HTTP request (http.client); returns a Reply.  Pass conn to reuse
    a connection."""
    url = qg_or_url if isinstance(qg_or_url, str) else qg_or_url.url
    host, port = host_port(url)
    own = conn is None
    if own:
        if url.startswith("https"):
            ctx = ssl.create_default_context(cafile=ca)
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Reply(r.status, r.getheaders(), data)
    finally:
        if own:
            conn.close()


def assert_envelope(reply, status, code):
    """quorumgate's own error: the OpenZiti envelope with a JSON type."""
    assert reply.status == status, (reply.status, reply.body[:300])
    assert (reply.header("Content-Type") or "").startswith("application/json"), reply.header_list
    doc = reply.json()
    assert doc["error"]["code"] == code, doc
    assert doc["error"]["message"], doc
    assert "meta" in doc and isinstance(doc["meta"], dict), doc
    rid = reply.header("X-Request-Id")
    assert rid and doc["error"]["requestId"] == rid, (rid, doc)
    return doc


def parse_responses(raw):
    """Split raw HTTP/1.1 response bytes into [(status, headers dict(lower), body)]
    (Content-Length framing only)."""
    out = []
    rest = raw
    while rest.startswith(b"HTTP/"):
        head, sep, rest = rest.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs.setdefault(k.strip().lower(), v.strip())
        n = int(hdrs.get("content-length", "0"))
        out.append((status, hdrs, rest[:n]))
        rest = rest[n:]
    return out


def read_answers(s, n, timeout=5.0):
    """Read from s (a socket, plain or TLS) until n whole answers (Content-
    Length framed) are in; returns (parse_responses(raw), raw)."""
    raw = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = parse_responses(raw)
        if len(got) >= n and all(len(b) == int(h.get("content-length", "0")) for _, h, b in got):
            return got, raw
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        raw += chunk
    return parse_responses(raw), raw


def raw_request(qg, data, timeout=5.0):
    """Send raw bytes to quorumgate's first listener; read until it closes.
    Returns (bytes, closed_by_server)."""
    host, port = host_port(qg.url)
    s = socket.create_connection((host, port), timeout=timeout)
    out = b""
    closed = False
    try:
        s.sendall(data)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    finally:
        s.close()
    return out, closed


def wait_access(qg, pred, timeout=5.0, what="an access-log line"):
    """The first access-log line for which pred(line) is true."""
    def find():
        for e in qg.access_log():
            if pred(e):
                return e
        return None
    return wait_until(find, timeout=timeout, what=what)


def io_uring_allowed():
    """What quorumgate's uring_new() meets on this machine: io_uring_setup(2)
    allowed or refused (kernel.io_uring_disabled, seccomp, no io_uring)."""
    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    fd = libc.syscall(425, 4, params)  # SYS_io_uring_setup (x86-64, arm64: 425)
    if fd >= 0:
        os.close(fd)
    return fd >= 0
