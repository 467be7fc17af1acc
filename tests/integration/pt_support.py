"""Helpers for the passthrough listener's tests (test_passthrough_*.py):
raw TCP echo controllers, a quorumgate in front of them with a passthrough
listener, and socket helpers."""
import socket
import time

import pytest

from tests.integration.core_support import status, wait_leader_known
from tests.support.procs import wait_until
from tests.support.tcp_echo import TcpEchoController


class TcpEchoCluster:
    """Looks enough like a SimProcess for the quorumgate fixture."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.node_ids = [n.name for n in nodes]
        self.info = {"scheme": "http"}

    def url(self, nid):
        return self.nodes[self.node_ids.index(nid)].url

    def node(self, nid):
        return self.nodes[self.node_ids.index(nid)]

    def make_leader(self, nid):
        for n in self.nodes:
            n.set_leader(n.name == nid)


@pytest.fixture
def tcp_echo_factory():
    started = []

    def make(n=2, leader=0):
        nodes = [TcpEchoController(leader=(i == leader), name="ctrl%d" % (i + 1)).start() for i in range(n)]
        started.extend(nodes)
        return TcpEchoCluster(nodes)

    yield make
    for n in started:
        n.stop()


def qg_passthrough(quorumgate, cluster, pt=None, **over):
    """A quorumgate with a passthrough listener in front of cluster."""
    cfg = {"controllers": [{"id": nid, "url": cluster.url(nid)} for nid in cluster.node_ids],
           "passthrough": dict({"address": "127.0.0.1:0"}, **(pt or {}))}
    cfg.update(over)
    qg = quorumgate(cfg, sim=cluster)
    wait_leader_known(qg)
    return qg


def pt_addr(qg):
    host, port = qg.passthrough_address.rsplit(":", 1)
    return host, int(port)


def pt_connect(qg, timeout=10.0):
    return socket.create_connection(pt_addr(qg), timeout=timeout)


def recv_exactly(s, n, timeout=10.0):
    s.settimeout(timeout)
    out = bytearray()
    while len(out) < n:
        chunk = s.recv(min(65536, n - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def recv_until_eof(s, timeout=10.0):
    s.settimeout(timeout)
    out = bytearray()
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return bytes(out)
        out += chunk


def closed_by_peer(s, timeout=5.0):
    """True when the peer closes s (EOF or reset) within timeout."""
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def pt_lines(qg):
    return [e for e in qg.access_log() if e.get("kind") == "passthrough"]


def wait_pt_lines(qg, n, timeout=10.0):
    return wait_until(lambda: pt_lines(qg) if len(pt_lines(qg)) >= n else None, timeout=timeout,
                      what="%d passthrough access-log lines" % n)


def wait_leader(qg, nid, timeout=10.0):
    wait_leader_known(qg, leader=nid, timeout=timeout)


def leader_of(qg):
    return status(qg)["leader"]


def elapsed(t0):
    return time.monotonic() - t0
