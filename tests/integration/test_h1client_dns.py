"""Controllers configured by name on quorumgate's own upstream client
(io/h1client.c, io/h1addr.c, base/loop.c loop_resolve; issue 16): the name
is resolved on the worker's loop without blocking it, the forwarded
requests go on the own client's kept-alive connections (never libcurl:
quorumgate_upstream_client_attempts_total{client}), Host and TLS SNI and
certificate checks use the name, never the address; a name that does not
resolve is a connect failure of that controller (nothing was written: a
read goes to another controller; the client gets the OpenZiti envelope; the
log says why once, not per request).

Names: `localhost` (the hosts file) and the special-use domain `.invalid`
(RFC 6761), which quorumgate never hands to the resolver -- so nothing
here asks a DNS server (on some machines glibc would send a .invalid query
to the configured server)."""
import subprocess
import time

import pytest

from tests.integration.core_support import assert_envelope, call, status, wait_access, wait_leader_known
from tests.support.procs import make_certs, wait_until
from tests.support.scripted_upstream import ScriptedCluster

READ = "/edge/client/v1/version"
WRITE = "/edge/management/v1/services"


def named(up, host="localhost"):
    scheme = "https" if up.ssl_ctx else "http"
    return "%s://%s:%d" % (scheme, host, up.port)


def by_client(qg):
    m = qg.metrics()
    return {c: m.value("quorumgate_upstream_client_attempts_total", client=c) for c in ("own", "libcurl")}


def attempts(r):
    return int(r.header("Quorumgate-Attempts"))


def test_named_controller_forwards_on_own_client(quorumgate, scripted):
    cl = scripted(1)
    up = cl.upstreams[0]
    qg = quorumgate({"controllers": [{"id": "ctrl1", "url": named(up)}]}, sim=cl)
    wait_leader_known(qg)
    for _ in range(10):
        r = call(qg, "GET", READ)
        assert r.status == 200, (r.status, r.body)
    r = call(qg, "POST", WRITE, body=b'{"name":"s"}', headers={"Content-Type": "application/json"})
    assert r.status == 200 and attempts(r) == 1, (r.status, r.body)
    assert by_client(qg) == {"own": 11, "libcurl": 0}
    reqs = up.requests()
    assert len(reqs) == 11
    # the reads shared one kept-alive connection of the own client
    assert len({q["conn"] for q in reqs[:10]}) == 1, [q["conn"] for q in reqs]
    for q in reqs:
        h = {k.lower(): v for k, v in q["headers"]}
        assert h["host"] == "localhost:%d" % up.port, h


def test_named_controller_written_without_answer_not_resent(quorumgate, scripted):
    """The retry contract is the same by name: a POST the controller takes
    and drops is "written, no answer" (502, one arrival, reset); a POST to
    a controller that refuses connections is "nothing written" and goes to
    the other one."""
    cl = scripted(2, leaders=(0,))
    a, b = cl.upstreams
    qg = quorumgate({"controllers": [{"id": "ctrl1", "url": named(a)}, {"id": "ctrl2", "url": named(b)}],
                     "health": HEALTH_SLOW}, sim=cl)
    wait_leader_known(qg, "ctrl1")
    wait_until(lambda: all(c["last_probe_ms"] for c in status(qg)["controllers"]),
               timeout=10, what="both probed")
    a.script(("drop",))
    r = call(qg, "POST", WRITE, body=b'{"name":"s"}', headers={"Content-Type": "application/json"})
    assert r.status == 502 and attempts(r) == 1, (r.status, r.body)
    assert len(a.requests()) == 1 and len(b.requests()) == 0
    line = wait_access(qg, lambda e: e.get("request_id") == r.header("X-Request-Id"))
    assert [x["outcome"] for x in line["upstream"]] == ["reset"], line
    a.close_listener()
    r = call(qg, "POST", WRITE, body=b'{"name":"s"}', headers={"Content-Type": "application/json"})
    assert r.status == 200 and attempts(r) == 2, (r.status, r.body)
    assert len(a.requests()) == 1 and len(b.requests()) == 1
    line = wait_access(qg, lambda e: e.get("request_id") == r.header("X-Request-Id"))
    assert [x["outcome"] for x in line["upstream"]] == ["connect_error", "ok"], line
    assert by_client(qg) == {"own": 3, "libcurl": 0}


def test_named_controller_over_tls_checks_the_name(quorumgate, scripted, tmp_path):
    """A certificate for the name only (no IP in it): verification and
    SNI use the name from the URL, not the address it resolved to; TLS
    sessions are resumed as with an IP literal."""
    c = make_certs(str(tmp_path / "nameonly"), names=("localhost",), ips=())
    cl = scripted(1, tls=(c["cert"], c["key"]))
    up = cl.upstreams[0]
    qg = quorumgate({"controllers": [{"id": "ctrl1", "url": named(up)}],
                     "upstream": {"tls": {"ca": c["ca"], "verify": True}}}, sim=cl)
    wait_leader_known(qg)
    close = (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\n"
             b"Content-Length: 21\r\n\r\n{\"data\":{},\"meta\":{}}")
    up.script(*[("answer", close)] * 3)
    for _ in range(5):
        r = call(qg, "GET", READ)
        assert r.status == 200, (r.status, r.body)
    assert by_client(qg) == {"own": 5, "libcurl": 0}
    reqs = up.requests()
    conns = [q["conn"] for q in reqs]
    assert len(set(conns[:3])) == 3, conns
    assert any(up.resumed[n] for n in conns[1:3]), up.resumed
    assert up.sni and set(up.sni) == {"localhost"}, up.sni
    assert all(dict((k.lower(), v) for k, v in q["headers"])["host"] == "localhost:%d" % up.port
               for q in reqs)


def test_connect_to_override_still_wins(quorumgate, scripted, tmp_path):
    """upstream.tls.server_name: the URL carries the name (Host, SNI,
    certificate) and quorumgate connects to each controller's own host --
    here a name too, resolved; the name in server_name is never looked up
    (it is in .invalid: looking it up would fail)."""
    c = make_certs(str(tmp_path / "srv"), names=("ctrl.quorumgate.invalid",), ips=())
    cl = scripted(1, tls=(c["cert"], c["key"]))
    up = cl.upstreams[0]
    qg = quorumgate({"controllers": [{"id": "ctrl1", "url": named(up)}],
                     "upstream": {"tls": {"ca": c["ca"], "verify": True,
                                          "server_name": "ctrl.quorumgate.invalid"}}}, sim=cl)
    wait_leader_known(qg)
    for _ in range(3):
        r = call(qg, "GET", READ)
        assert r.status == 200, (r.status, r.body)
    assert by_client(qg) == {"own": 3, "libcurl": 0}
    assert set(up.sni) == {"ctrl.quorumgate.invalid"}, up.sni
    h = {k.lower(): v for k, v in up.requests()[0]["headers"]}
    assert h["host"] == "ctrl.quorumgate.invalid:%d" % up.port


HEALTH_SLOW = {"interval": "60s", "fast_interval": "60s", "timeout": "1s", "rise": 1, "fall": 100}


def resolve_warnings(qg):
    return [e for e in qg.error_log() if "does not resolve" in e.get("msg", "")]


def own_hosts(qg, tmp_path, lines):
    """quorumgate sees its own /etc/hosts (lines) and looks names up in it
    only (nsswitch "hosts: files"): a user and mount namespace with both
    files bound over the system's (unshare -rm execs it in place: the PID
    stays quorumgate's).  Nothing is asked of a DNS server.  Returns the
    hosts file, which the test may rewrite in place."""
    hosts = tmp_path / "hosts"
    nss = tmp_path / "nsswitch.conf"
    hosts.write_text("".join(l + "\n" for l in lines))
    nss.write_text("hosts: files\n")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=10)
    assert probe.returncode == 0, \
        "this test needs unprivileged user namespaces (unshare -rm): %r" % probe.stderr
    qg.prefix = ["unshare", "-rm", "sh", "-c",
                 'mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/nsswitch.conf && '
                 'shift && exec "$@"', str(hosts), str(nss)]
    return hosts


def test_unresolvable_name_read_goes_elsewhere(quorumgate, scripted, tmp_path):
    """ctrl1's name resolves while the probes start, then no longer: the
    worker's first resolution of it fails, so a read sent there is a
    connect error (nothing written) and is retried on ctrl2, on the own
    client.  ctrl2's name resolves to ::1 first, where nothing listens,
    then to 127.0.0.1, where it does: a new connection tries both."""
    cl = scripted(2, leaders=(1,))
    a, b = cl.upstreams
    qg = quorumgate({"controllers": [{"id": "ctrl1", "url": named(a, "ctrl1.test")},
                                     {"id": "ctrl2", "url": named(b, "ctrl2.test")}],
                     "health": HEALTH_SLOW}, sim=cl, start=False)
    hosts = own_hosts(qg, tmp_path, ["127.0.0.1 localhost", "127.0.0.1 ctrl1.test",
                                     "::1 ctrl2.test", "127.0.0.1 ctrl2.test"])
    qg.start()
    wait_leader_known(qg, "ctrl2")
    wait_until(lambda: all(c["up"] and c["last_probe_ms"] for c in status(qg)["controllers"]),
               timeout=10, what="both probed up")
    # rewritten in place: the bound file is the same inode
    with open(hosts, "r+") as f:
        f.truncate(0)
        f.write("127.0.0.1 localhost\n::1 ctrl2.test\n127.0.0.1 ctrl2.test\n")
    retried = []
    for _ in range(60):
        r = call(qg, "GET", READ)
        assert r.status == 200, (r.status, r.body)
        line = wait_access(qg, lambda e: e.get("request_id") == r.header("X-Request-Id"))
        outcomes = [(x["controller"], x["outcome"]) for x in line["upstream"]]
        assert outcomes in ([("ctrl2", "ok")], [("ctrl1", "connect_error"), ("ctrl2", "ok")]), outcomes
        if len(outcomes) == 2:
            retried.append(r)
            if len(retried) == 3:
                break
    assert len(retried) == 3, "no read was balanced to ctrl1"
    assert len(a.requests()) == 0
    m = by_client(qg)
    assert m["libcurl"] == 0 and m["own"] >= 6, m
    warn = resolve_warnings(qg)
    assert len(warn) == 1 and "ctrl1.test" in warn[0]["msg"], warn


def test_connect_failure_resolves_the_name_again(quorumgate, scripted, tmp_path):
    """The controller moves to another address and its name says so: the
    old address refuses, and quorumgate resolves the name again at once --
    not after the 30 s the addresses are otherwise kept -- and forwards to
    the new one."""
    a = scripted(1).upstreams[0]                                   # 127.0.0.1:P
    b = scripted(1, host="127.0.0.2", port=a.port).upstreams[0]    # 127.0.0.2:P
    cl = ScriptedCluster([a])
    qg = quorumgate({"controllers": [{"id": "ctrl1", "url": named(a, "ctrl1.test")}],
                     "health": HEALTH_SLOW}, sim=cl, start=False)
    hosts = own_hosts(qg, tmp_path, ["127.0.0.1 localhost", "127.0.0.1 ctrl1.test"])
    qg.start()
    wait_leader_known(qg, "ctrl1")
    assert call(qg, "GET", READ).status == 200
    assert len(a.requests()) == 1 and len(b.requests()) == 0
    with open(hosts, "r+") as f:
        f.truncate(0)
        f.write("127.0.0.1 localhost\n127.0.0.2 ctrl1.test\n")
    a.stop()   # refuses, and closes the kept-alive connection
    # a name is resolved again after a connect failure at most once a second
    time.sleep(1.1)
    wait_until(lambda: call(qg, "GET", READ).status == 200, timeout=10,
               what="forwarded to the controller's new address")
    assert len(b.requests()) >= 1 and len(a.requests()) == 1
    # the access-log line is written after the answer was sent: the one with
    # the refused attempt may be that of the call that just got its 200
    wait_access(qg, lambda e: any(x["outcome"] == "connect_error" for x in e.get("upstream") or []),
                what="an attempt refused at the old address")
    assert by_client(qg)["libcurl"] == 0


def test_unresolvable_only_controller_answers_envelope(quorumgate, scripted, tmp_path):
    """The only controller's name stops resolving (after the probes found
    it up): a read is a connect error on every attempt, the client gets
    quorumgate's OpenZiti error envelope, and the error log says why once,
    not once per request."""
    cl = scripted(1)
    up = cl.upstreams[0]
    qg = quorumgate({"controllers": [{"id": "ctrl1", "url": named(up, "ctrl1.test")}],
                     "health": HEALTH_SLOW}, sim=cl, start=False)
    hosts = own_hosts(qg, tmp_path, ["127.0.0.1 localhost", "127.0.0.1 ctrl1.test"])
    qg.start()
    wait_leader_known(qg, "ctrl1")
    with open(hosts, "r+") as f:
        f.truncate(0)
        f.write("127.0.0.1 localhost\n")
    for _ in range(3):
        r = call(qg, "GET", READ)
        assert_envelope(r, 502, "PROXY_UPSTREAM_ERROR")
        line = wait_access(qg, lambda e: e.get("request_id") == r.header("X-Request-Id"))
        assert line["upstream"] and all(x["outcome"] == "connect_error" for x in line["upstream"]), line
    first = resolve_warnings(qg)
    assert len(first) == 1 and "ctrl1.test" in first[0]["msg"], first
    for _ in range(10):
        call(qg, "GET", READ)
    assert resolve_warnings(qg) == first
    assert by_client(qg)["libcurl"] == 0
    assert len(up.requests()) == 0
    # it resolves again: forwarded, and the log says so
    with open(hosts, "r+") as f:
        f.truncate(0)
        f.write("127.0.0.1 localhost\n127.0.0.1 ctrl1.test\n")
    wait_until(lambda: call(qg, "GET", READ).status == 200, timeout=10,
               what="ctrl1.test to resolve again")
    assert any("ctrl1.test resolves again" in e.get("msg", "") for e in qg.error_log())


def test_invalid_domain_never_resolved(quorumgate, scripted):
    """A controller in the special-use domain .invalid (RFC 6761): neither
    the probes nor the forwarding client ask the resolver; the controller is
    down and a read gets the envelope."""
    cl = scripted(1)
    up = cl.upstreams[0]
    qg = quorumgate({"controllers": [{"id": "ctrl1", "url": named(up, "ctrl1.quorumgate.invalid")}],
                     "health": HEALTH_SLOW}, sim=cl)
    wait_until(lambda: status(qg)["controllers"][0]["last_probe_ms"], timeout=10, what="probed")
    c = status(qg)["controllers"][0]
    assert not c["up"] and "resolve ctrl1.quorumgate.invalid: RFC 6761" in c["last_error"], c
    r = call(qg, "GET", READ)
    assert r.status in (502, 503), (r.status, r.body)
    assert_envelope(r, r.status, r.json()["error"]["code"])
    warn = resolve_warnings(qg)
    assert warn and "ctrl1.quorumgate.invalid" in warn[0]["msg"] and "RFC 6761" in warn[0]["msg"], warn
    assert len(up.requests()) == 0
