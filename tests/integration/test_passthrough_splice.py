"""The passthrough listener (issue 14), byte level, against raw TCP echo
controllers: every byte arrives untouched both ways, half-closes are passed
on, the limits hold (max connections, idle timeout, connect failure and
timeout), metrics and one access-log line per connection."""
import os
import socket
import threading

from tests.integration.core_support import metric, wait_metric  # noqa: F401
from tests.integration.pt_support import (  # noqa: F401  (fixture)
    closed_by_peer, pt_addr, pt_connect, pt_lines, qg_passthrough, recv_exactly, recv_until_eof,
    tcp_echo_factory, wait_pt_lines)
from tests.support.procs import wait_until


def test_bytes_pass_untouched_both_ways_with_half_close(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(2, leader=0)
    qg = qg_passthrough(quorumgate, cl)
    data = os.urandom(3 * 1024 * 1024 + 17)     # every byte value, odd size
    s = pt_connect(qg)
    received = []

    def reader():
        received.append(recv_until_eof(s, timeout=30))
    t = threading.Thread(target=reader)
    t.start()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)            # half-close: the echo must still come back
    t.join(30)
    s.close()
    assert received and received[0] == data
    assert cl.node("ctrl1").connections == 1 and cl.node("ctrl2").connections == 0
    lines = wait_pt_lines(qg, 1)
    e = lines[-1]
    assert e["controller"] == "ctrl1" and e["result"] == "client_closed"   # its FIN came first
    assert e["bytes_to_controller"] == len(data) and e["bytes_to_client"] == len(data)
    assert e["client"] == "127.0.0.1" and e["duration_ms"] >= 0 and e["connect_ms"] >= 0
    m = qg.metrics()
    assert m.value("quorumgate_passthrough_bytes_total", controller="ctrl1", direction="to_controller") == len(data)
    assert m.value("quorumgate_passthrough_bytes_total", controller="ctrl1", direction="to_client") == len(data)
    assert m.value("quorumgate_passthrough_connections_total", controller="ctrl1") == 1
    assert m.value("quorumgate_passthrough_connections_total", controller="ctrl2") == 0
    assert m.value("quorumgate_passthrough_open_connections", controller="ctrl1") == 0
    assert m.value("quorumgate_passthrough_closes_total", reason="client_closed") == 1
    assert m.value("quorumgate_passthrough_connection_duration_seconds_count") == 1


def test_many_concurrent_connections_each_get_their_own_bytes(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(1)
    qg = qg_passthrough(quorumgate, cl, workers=2)
    n = 40
    results = [None] * n

    def one(i):
        s = pt_connect(qg)
        try:
            payload = (b"%04d:" % i) + os.urandom(20000 + i * 97)
            for k in range(0, len(payload), 4096):   # many small writes
                s.sendall(payload[k:k + 4096])
            got = recv_exactly(s, len(payload), timeout=30)
            results[i] = got == payload
        finally:
            s.close()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert all(results), results
    wait_pt_lines(qg, n)
    assert cl.node("ctrl1").connections == n
    assert all(e["result"] == "client_closed" for e in pt_lines(qg))
    wait_metric(qg, "quorumgate_passthrough_open_connections", 0, controller="ctrl1")


def test_client_half_close_reaches_the_controller_and_the_answer_still_comes(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(1)
    qg = qg_passthrough(quorumgate, cl)
    s = pt_connect(qg)
    s.sendall(b"SLOW 300\nhello")        # echoed after 300 ms, after our FIN
    s.shutdown(socket.SHUT_WR)
    assert recv_until_eof(s) == b"SLOW 300\nhello"
    s.close()


def test_max_connections_refuses_the_next_one(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(1)
    qg = qg_passthrough(quorumgate, cl, pt={"max_connections": 2})
    a, b = pt_connect(qg), pt_connect(qg)
    for s in (a, b):
        s.sendall(b"x")
        assert recv_exactly(s, 1) == b"x"
    c = pt_connect(qg)
    assert closed_by_peer(c, timeout=5)
    wait_metric(qg, "quorumgate_passthrough_refused_total", 1, reason="max_connections")
    e = wait_until(lambda: [x for x in pt_lines(qg) if x["result"] == "refused_max_connections"], timeout=5,
                   what="the refused_max_connections access-log line")
    assert len(e) == 1 and e[0]["controller"] == "" and e[0]["bytes_to_controller"] == 0
    a.close()
    wait_metric(qg, "quorumgate_passthrough_open_connections", 1, controller="ctrl1")
    d = pt_connect(qg)                     # room again
    d.sendall(b"y")
    assert recv_exactly(d, 1) == b"y"
    for s in (b, c, d):
        s.close()
    assert cl.node("ctrl1").connections == 3


def test_idle_connection_is_closed_after_idle_timeout(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(1)
    qg = qg_passthrough(quorumgate, cl, pt={"idle_timeout": "400ms"})
    busy, idle = pt_connect(qg), pt_connect(qg)
    idle.sendall(b"i")
    assert recv_exactly(idle, 1) == b"i"
    echoed = []

    def keep_busy():      # a byte every 100 ms for 1.5 s: never idle for 400 ms
        for _ in range(15):
            busy.sendall(b"b")
            echoed.append(recv_exactly(busy, 1, timeout=2))
            threading.Event().wait(0.1)
    t = threading.Thread(target=keep_busy)
    t.start()
    assert closed_by_peer(idle, timeout=5)
    t.join(10)
    busy.close()          # before it could idle out
    idle.close()
    assert echoed == [b"b"] * 15
    wait_pt_lines(qg, 2)
    by = {e["result"]: e for e in pt_lines(qg)}
    assert set(by) == {"idle_timeout", "client_closed"}, by
    assert by["idle_timeout"]["bytes_to_controller"] == 1
    assert 350 <= by["idle_timeout"]["duration_ms"] < 3000
    assert by["client_closed"]["bytes_to_controller"] == 15
    assert metric(qg, "quorumgate_passthrough_closes_total", reason="idle_timeout") == 1


def test_no_leader_refuses_and_a_dead_leader_is_a_connect_failure(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(2, leader=0)
    qg = qg_passthrough(quorumgate, cl, health={"interval": "30s", "fast_interval": "30s"})
    # the leader's port stops listening; the cluster view has not noticed yet
    cl.node("ctrl1").stop()
    s = pt_connect(qg)
    assert closed_by_peer(s, timeout=5)
    s.close()
    wait_metric(qg, "quorumgate_passthrough_closes_total", 1, reason="connect_failed")
    e = wait_until(lambda: [x for x in pt_lines(qg) if x["result"] == "connect_failed"], timeout=5,
                   what="the connect_failed access-log line")
    assert e and e[0]["controller"] == "ctrl1" and e[0]["error"]


def test_connect_timeout(quorumgate, tcp_echo_factory):
    cl = tcp_echo_factory(1)
    qg = qg_passthrough(quorumgate, cl, pt={"connect_timeout": "300ms"},
                        health={"interval": "30s", "fast_interval": "30s"})
    # a controller that accepts no more connections: fill its backlog
    node = cl.node("ctrl1")
    node.stop()
    hold = socket.socket()
    hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hold.bind(("127.0.0.1", node.port))
    hold.listen(0)
    fillers = []
    try:
        for _ in range(8):           # backlog full: further SYNs are dropped
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", node.port))
            fillers.append(f)
        s = pt_connect(qg)
        assert closed_by_peer(s, timeout=5)
        s.close()
        wait_metric(qg, "quorumgate_passthrough_closes_total", 1, reason="connect_timeout")
        e = wait_until(lambda: [x for x in pt_lines(qg) if x["result"] == "connect_timeout"], timeout=5,
                       what="the connect_timeout access-log line")
        assert e and 250 <= e[0]["duration_ms"] < 3000
    finally:
        for f in fillers:
            f.close()
        hold.close()


def test_listening_line_and_config_errors(quorumgate, tcp_echo_factory, tmp_path):
    cl = tcp_echo_factory(1)
    qg = qg_passthrough(quorumgate, cl)
    host, port = pt_addr(qg)
    assert host == "127.0.0.1" and port > 0
    ev = [e for e in qg.error_log() if e.get("msg") == "listening" and e.get("kind") == "passthrough"]
    assert len(ev) == 1 and ev[0]["tls"] is False
