"""The passthrough listener (issue 14) in front of the HTTPS simulator: the
client's TLS session is the controller's own (quorumgate holds no
certificate for it), a whole OIDC login + MFA enrollment runs on the leader
only, and after a leadership transfer new connections reach the new leader
while a kept-alive connection to the old one is closed and reopened."""
import socket
import ssl
import time

from tests.ctrlsim.client import ZitiClient
from tests.integration.core_support import wait_leader_known
from tests.integration.pt_support import pt_addr, pt_lines, wait_pt_lines
from tests.support.procs import wait_until


def _pt(quorumgate, **pt):
    qg = quorumgate({"passthrough": dict({"address": "127.0.0.1:0"}, **pt)})
    wait_leader_known(qg)
    return qg


def _client(qg, keep_alive=False):
    host, port = pt_addr(qg)
    return ZitiClient("https://%s:%d" % (host, port), ca_file=qg.ca, keep_alive=keep_alive)


def test_tls_is_end_to_end_and_an_mfa_enrollment_runs_on_the_leader_only(quorumgate):
    qg = _pt(quorumgate)
    sim = qg.sim
    leader = sim.control.leader()
    # quorumgate's own listener has no TLS: a verified TLS session through
    # the passthrough port can only be the controller's
    assert not qg.config["listeners"][0].get("tls")
    host, port = pt_addr(qg)
    ctx = ssl.create_default_context(cafile=qg.ca)
    with socket.create_connection((host, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="ctrl.ziti.test") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.getpeercert()["subjectAltName"]
    sim.control.reset_requests()
    c = _client(qg)
    assert c.raft_health().status == 200          # only the leader answers 200
    c.oidc_login("alice", "alice-pw")
    secret = c.enroll_mfa()
    assert secret
    seen = {n: [r for r in reqs if not r["path"].startswith("/health-checks")]   # quorumgate's probes
            for n, reqs in sim.control.requests().items()}
    on_others = {n: r for n, r in seen.items() if n != leader and r}
    assert not on_others, on_others
    assert any(r["path"].endswith("/current-identity/mfa/verify") for r in seen[leader])
    lines = wait_pt_lines(qg, 3)
    assert {e["controller"] for e in lines} == {leader}


def test_leadership_transfer_new_connections_go_to_the_new_leader(quorumgate):
    qg = _pt(quorumgate, leader_change={"quiet": "100ms", "grace": "2s"})
    sim = qg.sim
    old = sim.control.leader()
    c = _client(qg, keep_alive=True)
    assert c.raft_health().status == 200
    sim.control.transfer()
    new = sim.control.wait_leader(not_in=(old,))
    wait_leader_known(qg, leader=new)
    # a fresh connection: the new leader (it answers the raft check with 200)
    fresh = _client(qg)
    assert fresh.raft_health().status == 200
    # the kept-alive connection to the old leader is closed (quiet: nothing
    # in flight); the client reconnects and lands on the new leader
    wait_until(lambda: any(e["result"] == "leader_change" for e in pt_lines(qg)), timeout=5,
               what="the old leader's connection closed")
    time.sleep(0.05)
    c.close()
    assert c.raft_health().status == 200
    ctrls = [e["controller"] for e in pt_lines(qg) if e["result"] == "leader_change"]
    assert ctrls == [old]
