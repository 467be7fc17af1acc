"""A controller stand-in that answers at the byte level, for the tests of
quorumgate's own upstream client (io/h1client.c): each request (health
checks aside) takes the next scripted action -- answer these exact bytes,
answer only the first k bytes and close, close without answering, answer
and close the idle connection a little later -- and every request is
recorded with the number of the TCP connection it came on.

Health checks (/health-checks/...) are answered like a controller (200 and
isLeader for a leader, 429 for a follower) and are not recorded.  Standard
library only; a thread per connection on a free loopback port.

    up = ScriptedUpstream(leader=True).start()
    up.script(("cut", raw_answer, 10))
    ... one request through quorumgate ...
    up.requests()     # [{"conn", "method", "target", "headers", "body"}]
    up.stop()
"""
import collections
import json
import socket
import ssl
import threading
import time

OK = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
      b"Content-Length: 21\r\n\r\n{\"data\":{},\"meta\":{}}")


class ScriptedUpstream:
    def __init__(self, leader=True, tls=None, name="ctrl", host="127.0.0.1", port=0):
        self.leader = leader
        self.name = name
        self.ssl_ctx = None
        if tls:
            self.ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ssl_ctx.load_cert_chain(tls[0], tls[1])
            self.ssl_ctx.sni_callback = self._on_sni
        self.lock = threading.Lock()
        self.actions = collections.deque()
        self.records = []
        self.conn_seq = 0
        self.open_conns = 0
        self.max_open = 0
        self.resumed = {}          # conn number -> TLS session reused
        self.sni = []              # the server name of every TLS handshake
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.url = "%s://%s:%d" % ("https" if tls else "http", host, self.port)
        self.stopping = False
        self.threads = []
        self.client_socks = []

    def start(self):
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def stop(self):
        self.stopping = True
        self.close_listener()
        with self.lock:
            socks = list(self.client_socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    def close_listener(self):
        """From now on connections are refused."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes the accept()
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def script(self, *actions):
        with self.lock:
            self.actions.extend(actions)

    def requests(self):
        with self.lock:
            return list(self.records)

    # ---- server side ---------------------------------------------------

    def _accept(self):
        while not self.stopping:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conn_seq += 1
                n = self.conn_seq
                self.client_socks.append(s)
            t = threading.Thread(target=self._serve, args=(s, n), daemon=True)
            t.start()

    def _read_request(self, s, buf):
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return None, buf
            buf += chunk
            if len(buf) > 1 << 20:
                return None, buf
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        n = 0
        for k, v in headers:
            if k.lower() == "content-length":
                n = int(v)
        while len(rest) < n:
            chunk = s.recv(65536)
            if not chunk:
                return None, b""
            rest += chunk
        req = {"method": method, "target": target, "headers": headers, "body": rest[:n]}
        return req, rest[n:]

    def _on_sni(self, sslsock, server_name, ctx):
        with self.lock:
            self.sni.append(server_name)
        return None

    def _health(self, s):
        status = 200 if self.leader else 429
        body = json.dumps({"data": {"healthy": True}, "meta": {},
                           "raft": {"isRaftEnabled": True, "isLeader": self.leader}}).encode()
        s.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))

    def _serve(self, s, n):
        with self.lock:
            self.open_conns += 1
            self.max_open = max(self.max_open, self.open_conns)
        try:
            s.settimeout(10)
            if self.ssl_ctx is not None:
                s = self.ssl_ctx.wrap_socket(s, server_side=True)
                with self.lock:
                    self.client_socks.append(s)
            buf = b""
            while not self.stopping:
                req, buf = self._read_request(s, buf)
                if req is None:
                    return
                if self.ssl_ctx is not None:
                    with self.lock:
                        self.resumed[n] = s.session_reused
                if req["target"].startswith("/health-checks"):
                    self._health(s)
                    continue
                req["conn"] = n
                with self.lock:
                    self.records.append(req)
                    action = self.actions.popleft() if self.actions else ("answer", OK)
                if not self._act(s, action):
                    return
        except (OSError, ssl.SSLError, ValueError):
            return
        finally:
            with self.lock:
                self.open_conns -= 1
            try:
                s.close()
            except OSError:
                pass

    def _act(self, s, action):
        """Runs one scripted action; False = the connection is over."""
        kind = action[0]
        if kind == "answer":                      # ("answer", raw)
            s.sendall(action[1])
            return True
        if kind == "slow":                        # ("slow", raw, seconds)
            time.sleep(action[2])
            s.sendall(action[1])
            return True
        if kind == "answer_then_close":           # ("answer_then_close", raw, seconds idle)
            s.sendall(action[1])
            time.sleep(action[2])
            return False
        if kind == "cut":                         # ("cut", raw, k): k bytes, then the end
            if action[2]:
                s.sendall(action[1][:action[2]])
            return False
        if kind == "drop":                        # ("drop",): no answer at all
            return False
        raise ValueError(kind)


class ScriptedCluster:
    """Looks enough like a SimProcess for the quorumgate fixture."""

    def __init__(self, upstreams):
        self.upstreams = upstreams
        self.node_ids = ["ctrl%d" % (i + 1) for i in range(len(upstreams))]
        self.info = {"scheme": "https" if upstreams[0].ssl_ctx else "http"}

    def url(self, nid):
        return self.upstreams[self.node_ids.index(nid)].url
