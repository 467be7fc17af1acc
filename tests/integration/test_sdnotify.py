"""Type=notify (issue 19): quorumgate and the relay tell the service manager
READY=1 once they serve, RELOADING=1 (with MONOTONIC_USEC) then READY=1
around a SIGHUP reload, and STOPPING=1 when SIGTERM starts the drain -- over
a real datagram socket named by $NOTIFY_SOCKET, as systemd sets it (a path,
or "@name" for an abstract socket).  Without $NOTIFY_SOCKET nothing is sent
and nothing breaks (every other test)."""
import copy
import os
import signal
import socket
import time

import pytest

from tests.conftest import quorumgate_binary
from tests.integration.gate_support import Relay


class Listener:
    """The service manager's side: one SOCK_DGRAM socket."""

    def __init__(self, address):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(15)

    def next(self):
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.split("\n") if line)

    def nothing_more(self, wait=0.5):
        self.sock.settimeout(wait)
        try:
            extra = self.sock.recv(4096)
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(15)
        raise AssertionError("unexpected notification %r" % extra)

    def close(self):
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def notify(request, tmp_path, monkeypatch):
    if request.param == "path":
        addr = str(tmp_path / "notify.sock")
        env = addr
    else:
        name = "qg-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
        addr = "\0" + name
        env = "@" + name
    lst = Listener(addr)
    monkeypatch.setenv("NOTIFY_SOCKET", env)
    yield lst
    lst.close()


def monotonic_usec():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def test_ready_reloading_stopping(quorumgate, notify):
    qg = quorumgate()                    # returns once /healthz answers
    msg = notify.next()
    assert msg.get("READY") == "1" and msg.get("STATUS") == "serving", msg
    notify.nothing_more()

    # a good reload
    before = monotonic_usec()
    os.kill(qg.proc.pid, signal.SIGHUP)
    msg = notify.next()
    after = monotonic_usec()
    assert msg.get("RELOADING") == "1", msg
    assert before <= int(msg["MONOTONIC_USEC"]) <= after, (before, msg, after)
    msg = notify.next()
    assert msg == {"READY": "1", "STATUS": "configuration reloaded"}, msg

    # a broken file: refused, still ready, and it says so
    good = open(qg.config_path).read()
    with open(qg.config_path, "w") as f:
        f.write(good + "\nno_such_key: 1\n")
    os.kill(qg.proc.pid, signal.SIGHUP)
    assert notify.next().get("RELOADING") == "1"
    msg = notify.next()
    assert msg.get("READY") == "1" and "refused" in msg.get("STATUS", ""), msg
    with open(qg.config_path, "w") as f:
        f.write(good)

    os.kill(qg.proc.pid, signal.SIGTERM)
    msg = notify.next()
    assert msg.get("STOPPING") == "1", msg
    assert qg.proc.wait(20) == 0
    notify.nothing_more()


def test_relay_ready_and_stopping(quorumgate, notify, tmp_path):
    qg = quorumgate()
    assert notify.next().get("READY") == "1"      # the proxy's
    events = tmp_path / "ctrl1-events.json"
    events.write_text("")
    cfg = copy.deepcopy(qg.config)
    cfg["relay"] = {"poll": "50ms", "metrics_address": "127.0.0.1:0",
                    "sources": [{"controller": cfg["controllers"][0]["id"], "path": str(events)}]}
    r = Relay(quorumgate_binary(), str(tmp_path), cfg, name="relay").start()
    try:
        msg = notify.next()
        assert msg.get("READY") == "1" and "event files" in msg.get("STATUS", ""), msg
        os.kill(r.proc.pid, signal.SIGTERM)
        assert notify.next() == {"STOPPING": "1"}
        assert r.proc.wait(15) == 0
    finally:
        r.stop()
    assert not r.problems(), r.problems()
