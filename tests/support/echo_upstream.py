"""A scriptable stand-in for a controller, for tests that must see exactly
what quorumgate sent upstream (every header, the body, which TCP connection,
the TLS SNI) and must control exactly what comes back (hop-by-hop headers,
Location, sizes, chunked framing, delays).

It answers the raft health check like a controller (200 + isLeader for a
leader, 429 for a follower) so quorumgate's probes see it as healthy, and
keeps those probes out of ``requests``.  Standard library only; runs in a
thread of the test process on a free loopback port.

    up = EchoUpstream(tls=(cert, key)).start()
    up.respond("/big", status=200, body=b"x" * 100000)
    ... requests through quorumgate ...
    r = up.last()            # {"method","target","headers",[(k, v)],"body","port","sni"}
    up.stop()
"""
import http.server
import json
import ssl
import threading
import time

HEALTH_PREFIX = "/health-checks"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        up = self.server.upstream
        if up.ssl_ctx is not None:
            try:
                self.request = up.ssl_ctx.wrap_socket(self.request, server_side=True)
            except (OSError, ssl.SSLError) as e:
                with up.lock:
                    up.tls_failures.append(repr(e))
                raise
        self.request.settimeout(10)
        with up.lock:
            up.connections += 1
        super().setup()

    def handle(self):
        try:
            super().handle()
        except (OSError, ssl.SSLError, ValueError):
            pass

    def _read_body(self):
        te = (self.headers.get("transfer-encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(8)
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def _serve(self):
        up = self.server.upstream
        body = self._read_body()
        path = self.path.split("?", 1)[0]
        sni = getattr(self.request, "qg_sni", None)
        if path.startswith(HEALTH_PREFIX):
            with up.lock:
                up.health_hits += 1
                status = up.health_status
            doc = {"data": {"healthy": True, "checks": []}, "meta": {},
                   "raft": {"isRaftEnabled": True, "isLeader": status == 200}}
            return self._write(status, [("Content-Type", "application/json")], json.dumps(doc).encode())
        rec = {"method": self.command, "target": self.path, "version": self.request_version,
               "headers": list(self.headers.items()), "body": body,
               "port": self.client_address[1], "sni": sni, "time": time.monotonic()}
        with up.lock:
            up.requests.append(rec)
            spec = None
            for prefix, s in up.routes:
                if path == prefix or (prefix.endswith("*") and path.startswith(prefix[:-1])):
                    spec = s
                    break
        if spec is None:
            doc = {"method": self.command, "target": self.path,
                   "headers": [[k, v] for k, v in self.headers.items()],
                   "body": body.decode("latin-1")}
            return self._write(200, [("Content-Type", "application/json")], json.dumps(doc).encode())
        if callable(spec):
            spec = spec(rec)
        if spec.get("delay"):
            time.sleep(spec["delay"])
        if "raw" in spec:                 # exactly these bytes, then close
            self.close_connection = True
            self.wfile.write(spec["raw"])
            self.wfile.flush()
            return
        status = spec.get("status", 200)
        headers = list(spec.get("headers", []))
        out = spec.get("body", b"")
        if isinstance(out, str):
            out = out.encode()
        if spec.get("close"):
            self.close_connection = True
        self._write(status, headers, out, chunked=spec.get("chunked", False),
                    raw_framing=spec.get("raw_framing", False))

    def _write(self, status, headers, body, chunked=False, raw_framing=False):
        lines = ["HTTP/1.1 %d %s" % (status, http.HTTPStatus(status).phrase if status in
                                      http.HTTPStatus._value2member_map_ else "Status")]
        for k, v in headers:
            lines.append("%s: %s" % (k, v))
        if not raw_framing:
            if chunked:
                lines.append("Transfer-Encoding: chunked")
            elif not (self.command == "HEAD" and any(k.lower() == "content-length" for k, _ in headers)):
                lines.append("Content-Length: %d" % len(body))
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if self.command == "HEAD":
            payload = b""
        elif chunked:
            payload = b""
            for i in range(0, len(body), 4096):
                part = body[i:i + 4096]
                payload += b"%x\r\n%s\r\n" % (len(part), part)
            payload += b"0\r\n\r\n"
        else:
            payload = body
        self.wfile.write(head + payload)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class EchoUpstream:
    def __init__(self, tls=None, leader=True, name="echo"):
        self.name = name
        self.lock = threading.Lock()
        self.requests = []
        self.routes = []                 # [(path or prefix*, spec dict or callable)]
        self.health_status = 200 if leader else 429
        self.health_hits = 0
        self.connections = 0
        self.tls_failures = []
        self.sni_seen = []
        self.ssl_ctx = None
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])

            def on_sni(sslsock, name, _ctx):
                sslsock.qg_sni = name
                with self.lock:
                    self.sni_seen.append(name)
            ctx.sni_callback = on_sni
            self.ssl_ctx = ctx
        self.server = None
        self.thread = None

    def start(self):
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.upstream = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="echo-" + self.name, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.ssl_ctx else "http", self.port)

    def respond(self, path, spec=None, **kw):
        """Answer requests for path (exact, or a prefix ending in '*') with
        spec: {status, headers [(k, v)], body, delay, chunked, close}, or
        {raw: bytes} (sent as they are, then the connection is closed), or a
        callable(record) returning such a dict."""
        with self.lock:
            self.routes.insert(0, (path, spec if spec is not None else kw))

    def set_leader(self, leader):
        with self.lock:
            self.health_status = 200 if leader else 429

    def set_health(self, status):
        with self.lock:
            self.health_status = status

    def seen(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r["target"].split("?", 1)[0] == path]

    def last(self):
        with self.lock:
            return self.requests[-1] if self.requests else None

    def reset(self):
        with self.lock:
            self.requests.clear()


def header_values(rec, name):
    return [v for k, v in rec["headers"] if k.lower() == name.lower()]
