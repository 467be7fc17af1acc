"""The passthrough listener (issue 14) when the raft leader moves and on
SIGTERM, against raw TCP echo controllers whose health checks say who
leads: new connections go to the new leader at once; existing ones to the
old leader are closed once their exchange is done (at the latest after the
grace), or kept with action: keep; SIGTERM stops accepting and closes
connections as their exchanges finish."""
import socket
import threading
import time

from tests.integration.core_support import metric, wait_metric
from tests.integration.pt_support import (  # noqa: F401  (fixture)
    closed_by_peer, pt_addr, pt_connect, pt_lines, qg_passthrough, recv_exactly, recv_until_eof,
    tcp_echo_factory, wait_leader, wait_pt_lines)
from tests.support.procs import wait_until


def exchange(s, data=b"ping"):
    s.sendall(data)
    return recv_exactly(s, len(data), timeout=5) == data


def test_leader_change_new_connections_to_new_leader_old_ones_closed_after_their_exchange(
        quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(2, leader=0)
    qg = qg_passthrough(quorumgate, cl, pt={"leader_change": {"grace": "4s", "quiet": "200ms"}})
    idle = pt_connect(qg)
    assert exchange(idle)
    busy = pt_connect(qg)
    busy.sendall(b"SLOW 1500\nin-flight")          # its answer comes 1.5 s later
    answer = {}

    def read_busy():
        answer["data"] = recv_until_eof(busy, timeout=10)
        answer["t"] = time.monotonic()
    t = threading.Thread(target=read_busy)
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    cl.make_leader("ctrl2")
    wait_leader(qg, "ctrl2")
    # new connections: to the new leader at once
    new = pt_connect(qg)
    assert exchange(new)
    assert cl.node("ctrl2").connections == 1
    # the idle one to the old leader: closed once quiet (no exchange in flight)
    assert closed_by_peer(idle, timeout=3)
    assert time.monotonic() - t0 < 2.0
    # the busy one: its answer arrives whole, then it is closed
    t.join(10)
    assert answer["data"] == b"SLOW 1500\nin-flight"
    assert answer["t"] - t0 >= 1.3
    # the new leader's connection stays
    time.sleep(0.5)
    assert exchange(new, b"still here")
    wait_metric(qg, "quorumgate_passthrough_closes_total", 2, reason="leader_change")
    wait_pt_lines(qg, 2)   # a line is written after its counter moved
    results = sorted((e["controller"], e["result"]) for e in pt_lines(qg))
    assert results == [("ctrl1", "leader_change"), ("ctrl1", "leader_change")], results
    new.close()
    idle.close()
    busy.close()
    wait_pt_lines(qg, 3)
    assert metric(qg, "quorumgate_passthrough_connections_total", controller="ctrl2") == 1


def test_leader_change_grace_bounds_an_exchange_that_does_not_finish(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(2, leader=0)
    qg = qg_passthrough(quorumgate, cl, pt={"leader_change": {"grace": "500ms"}})
    busy = pt_connect(qg)
    busy.sendall(b"SLOW 4000\nnever answered in time")
    time.sleep(0.1)
    t0 = time.monotonic()
    cl.make_leader("ctrl2")
    wait_leader(qg, "ctrl2")
    data = recv_until_eof(busy, timeout=10)
    took = time.monotonic() - t0
    assert data == b""                         # closed before the answer
    assert 0.4 <= took < 3.0, took
    busy.close()
    e = wait_pt_lines(qg, 1)[-1]
    assert e["result"] == "leader_change" and e["bytes_to_client"] == 0


def test_a_leader_that_comes_back_keeps_its_connections(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(2, leader=0)
    qg = qg_passthrough(quorumgate, cl, pt={"leader_change": {"grace": "5s"}})
    busy = pt_connect(qg)
    busy.sendall(b"SLOW 2500\nback")            # in flight across both changes
    time.sleep(0.1)
    cl.make_leader("ctrl2")
    wait_leader(qg, "ctrl2")
    cl.make_leader("ctrl1")
    wait_leader(qg, "ctrl1")
    assert recv_exactly(busy, len(b"SLOW 2500\nback"), timeout=10) == b"SLOW 2500\nback"
    time.sleep(0.6)                             # past quiet: it would have been closed
    assert exchange(busy, b"still open")
    busy.close()
    assert metric(qg, "quorumgate_passthrough_closes_total", reason="leader_change") == 0


def test_leader_change_keep_leaves_existing_connections(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(2, leader=0)
    qg = qg_passthrough(quorumgate, cl, pt={"leader_change": {"action": "keep"}})
    old = pt_connect(qg)
    assert exchange(old)
    cl.make_leader("ctrl2")
    wait_leader(qg, "ctrl2")
    time.sleep(0.8)                            # well past quiet
    assert exchange(old, b"kept")
    new = pt_connect(qg)
    assert exchange(new)
    assert cl.node("ctrl1").connections == 1 and cl.node("ctrl2").connections == 1
    assert metric(qg, "quorumgate_passthrough_closes_total", reason="leader_change") == 0
    old.close()
    new.close()


def test_no_leader_refuses_new_connections(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(2, leader=0)
    qg = qg_passthrough(quorumgate, cl)
    cl.make_leader(None)
    wait_until(lambda: qg.metrics().value("quorumgate_controller_leader", controller="ctrl1") == 0,
               timeout=5, what="no leader")
    s = pt_connect(qg)
    assert closed_by_peer(s, timeout=5)
    s.close()
    wait_metric(qg, "quorumgate_passthrough_refused_total", 1, reason="no_leader")
    assert cl.node("ctrl1").connections == 0 and cl.node("ctrl2").connections == 0
    e = wait_pt_lines(qg, 1)[-1]
    assert e["result"] == "refused_no_leader" and e["controller"] == ""


def test_controllers_list_limits_where_passthrough_goes(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(2, leader=1)
    qg = qg_passthrough(quorumgate, cl, pt={"controllers": ["ctrl1"]})
    wait_leader(qg, "ctrl2")
    s = pt_connect(qg)
    assert closed_by_peer(s, timeout=5)
    s.close()
    wait_metric(qg, "quorumgate_passthrough_refused_total", 1, reason="leader_not_allowed")
    cl.make_leader("ctrl1")
    wait_leader(qg, "ctrl1")
    s = pt_connect(qg)
    assert exchange(s)
    s.close()
    assert cl.node("ctrl2").connections == 0


def test_sigterm_stops_accepting_and_closes_connections_as_their_exchanges_finish(
        quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(1)
    qg = qg_passthrough(quorumgate, cl, timeouts={"drain": "5s"})
    idle = pt_connect(qg)
    assert exchange(idle)
    busy = pt_connect(qg)
    busy.sendall(b"SLOW 1000\nlast answer")
    time.sleep(0.1)
    t0 = time.monotonic()
    qg.sigterm()

    def refused():
        try:
            socket.create_connection(pt_addr(qg), timeout=1).close()
            return False
        except OSError:
            return True
    wait_until(refused, timeout=3, what="the passthrough listener to stop accepting")
    assert closed_by_peer(idle, timeout=3)
    assert recv_until_eof(busy, timeout=10) == b"SLOW 1000\nlast answer"
    code = qg.proc.wait(10)
    assert code == 0
    assert time.monotonic() - t0 < 5.0
    ours = {idle.getsockname()[1], busy.getsockname()[1]}   # not refused()'s probes
    lines = [e for e in pt_lines(qg) if e["client_port"] in ours]
    assert sorted(e["result"] for e in lines) == ["drain", "drain"], lines
    idle.close()
    busy.close()


def test_sigterm_drain_bound_closes_what_is_left(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(1)
    qg = qg_passthrough(quorumgate, cl, timeouts={"drain": "500ms"})
    busy = pt_connect(qg)
    busy.sendall(b"SLOW 5000\ntoo late")
    time.sleep(0.1)
    t0 = time.monotonic()
    qg.sigterm()
    assert recv_until_eof(busy, timeout=10) == b""
    assert qg.proc.wait(10) == 0
    assert time.monotonic() - t0 < 3.0
    busy.close()
    e = pt_lines(qg)
    assert len(e) == 1 and e[0]["result"] in ("drain", "shutdown"), e
