#!/usr/bin/env python3
"""A stand-in for the quorumgate binary that follows the harness contract
only: `fake_quorumgate.py -c FILE`, one JSON "listening" line per socket on
stderr, GET /healthz and /metrics on the admin listener, and a naive
pass-through to the first controller on the client listener (JSON access log
on stdout).  It exists to test the pytest harness itself, not quorumgate.

FAKE_QG_MODE: ok (default) | asan (prints an AddressSanitizer report) |
crash (dies by SIGSEGV on SIGTERM) | ignore_term (ignores SIGTERM).
"""
import http.client
import http.server
import json
import os
import re
import signal
import ssl
import sys
import threading
import time
import urllib.parse


def log(**kv):
    sys.stderr.write(json.dumps(dict({"level": "info"}, **kv)) + "\n")
    sys.stderr.flush()


def main():
    cfg_path = sys.argv[sys.argv.index("-c") + 1]
    text = open(cfg_path).read()
    addresses = re.findall(r'address:\s*"?([^"\s]+)"?', text)
    urls = re.findall(r'url:\s*"?([^"\s]+)"?', text)
    ids = re.findall(r'-\s*id:\s*"?([^"\s]+)"?', text)
    ca = re.search(r'ca:\s*"?([^"\s]+)"?', text)
    mode = os.environ.get("FAKE_QG_MODE", "ok")
    client_addr, admin_addr = addresses[0], addresses[1]   # listeners come before admin

    class Admin(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path == "/healthz":
                body, ctype = b"ok\n", "text/plain"
            elif self.path == "/metrics":
                body = (b"# HELP quorumgate_build_info Build information.\n# TYPE quorumgate_build_info gauge\n"
                        b'quorumgate_build_info{version="fake"} 1\n')
                ctype = "text/plain; version=0.0.4"
            else:
                body, ctype = b"", "text/plain"
                self.send_response(404)
            if body:
                self.send_response(200)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Client(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            u = urllib.parse.urlsplit(urls[0])
            if u.scheme == "https":
                ctx = ssl.create_default_context(cafile=ca.group(1) if ca else None)
                conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=10)
            else:
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            t0 = time.time()
            conn.request("GET", self.path)
            r = conn.getresponse()
            body = r.read()
            self.send_response(r.status)
            self.send_header("content-type", r.getheader("content-type") or "application/json")
            self.send_header("content-length", str(len(body)))
            self.send_header("quorumgate-controller", ids[0])
            self.end_headers()
            self.wfile.write(body)
            sys.stdout.write(json.dumps({"path": self.path, "method": "GET", "status": r.status,
                                         "upstream": ids[0], "attempts": 1,
                                         "duration": time.time() - t0}) + "\n")
            sys.stdout.flush()

    # before the first "listening" line: the harness may send SIGTERM as
    # soon as it has read them (the default action would kill us, -15)
    done = []   # not an Event: set() from a handler deadlocks against the main thread's wait()

    def on_term(signum, frame):
        if mode == "crash":
            signal.signal(signal.SIGSEGV, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGSEGV)
        if mode != "ignore_term":
            done.append(1)

    signal.signal(signal.SIGTERM, on_term)

    servers = []
    for kind, addr, h in (("client", client_addr, Client), ("admin", admin_addr, Admin)):
        host, port = addr.rsplit(":", 1)
        s = http.server.ThreadingHTTPServer((host, int(port)), h)
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
        servers.append(s)
        log(msg="listening", kind=kind, address="%s:%d" % s.server_address[:2])
    if mode == "asan":
        sys.stderr.write("==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000000010\n")
        sys.stderr.flush()

    while not done:
        time.sleep(0.1)
    for s in servers:
        s.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
