"""A raw TCP stand-in for a controller, for the passthrough listener's
byte-level tests: it answers the raft health check like a controller
(``GET /health-checks...`` -> 200 + isLeader on the leader, 429 on a
follower, then closes), and on every other connection echoes each byte
back untouched, passing a half-close on (EOF from the client -> shutdown of
its own sending side once everything is echoed).

A connection whose first bytes are ``SLOW <ms>\\n`` has its echo delayed by
that many milliseconds (an exchange that is still in flight).  Standard
library only; runs in threads of the test process on a free loopback port.

    node = TcpEchoController(leader=True).start()
    ... connections through quorumgate's passthrough listener ...
    node.connections   # echo connections accepted (health probes excluded)
    node.set_leader(False); node.stop()
"""
import json
import socket
import threading
import time

HEALTH = b"GET /health-checks"


class TcpEchoController:
    def __init__(self, leader=True, name="echo"):
        self.name = name
        self.leader = leader
        self.lock = threading.Lock()
        self.connections = 0
        self.bytes_in = 0
        self.open = 0
        self.sock = None
        self.threads = []
        self.running = False

    # ---- control -----------------------------------------------------------
    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.running = True
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.running = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes the blocked accept()
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def set_leader(self, leader):
        with self.lock:
            self.leader = leader

    # ---- serving -----------------------------------------------------------
    def _accept(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()

    def _serve(self, c):
        c.settimeout(30)
        try:
            first = b""
            # enough to tell a health probe from spliced bytes
            while len(first) < len(HEALTH) and HEALTH.startswith(first):
                chunk = c.recv(4096)
                if not chunk:
                    break
                first += chunk
            if first.startswith(HEALTH):
                self._health(c, first)
                return
            with self.lock:
                self.connections += 1
                self.open += 1
            try:
                self._echo(c, first)
            finally:
                with self.lock:
                    self.open -= 1
        except OSError:
            pass
        finally:
            c.close()

    def _health(self, c, data):
        while b"\r\n\r\n" not in data:
            chunk = c.recv(4096)
            if not chunk:
                return
            data += chunk
        with self.lock:
            leader = self.leader
        body = json.dumps({"data": {}, "meta": {}, "raft": {"isLeader": leader}}).encode()
        status = b"200 OK" if leader else b"429 Too Many Requests"
        c.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: " +
                  str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    def _echo(self, c, data):
        if data.startswith(b"SLOW "):
            line, _, rest = data.partition(b"\n")
            time.sleep(int(line[5:]) / 1000.0)
        while True:
            if data:
                with self.lock:
                    self.bytes_in += len(data)
                c.sendall(data)
            data = c.recv(65536)
            if not data:
                c.shutdown(socket.SHUT_WR)
                return
