"""The simulator process: the cluster, its node servers and the control API."""
import http.server
import json
import os
import ssl
import threading
import urllib.parse

from . import cluster as cl
from . import tokens
from .server import Api, NodeRunner

MODES = ("reset", "hang", "401", "429", "429_after_commit", "500", "500_before_commit", "500_after_commit",
         "503", "reset_after_commit", "delay")


def cert_san_hosts(path):
    """DNS and IP subjectAltNames of a PEM certificate (the OIDC issuers a controller accepts)."""
    try:
        info = ssl._ssl._test_decode_cert(path)   # stdlib only; no public API for this
    except (AttributeError, ssl.SSLError, OSError):
        return ["localhost", "127.0.0.1"]
    return [v for k, v in info.get("subjectAltName", ()) if k in ("DNS", "IP Address")]


class Simulator:
    def __init__(self, nodes=3, host="127.0.0.1", ports=None, tls_cert=None, tls_key=None, **cfg):
        self.host = host
        ssl_ctx = None
        if tls_cert:
            ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ssl_ctx.load_cert_chain(tls_cert, tls_key)
        scheme = "https" if ssl_ctx else "http"
        self.cluster = cl.Cluster(n_nodes=nodes, scheme=scheme, **cfg)
        if tls_cert:
            self.cluster.san_hosts = cert_san_hosts(tls_cert)
        self.api = Api(self.cluster)
        ports = ports or [0] * nodes
        self.runners = {n.id: NodeRunner(n, self.api, host, ports[i], ssl_ctx)
                        for i, n in enumerate(self.cluster.nodes)}
        self.control = None
        self.control_thread = None
        self.stopped = threading.Event()

    def start(self, control_port=0, initial_leader="ctrl1"):
        for r in self.runners.values():
            r.start()
        self.cluster.start(initial_leader=initial_leader)
        self.control = ControlServer((self.host, control_port), ControlHandler, self)
        self.control_thread = threading.Thread(target=self.control.serve_forever, kwargs={"poll_interval": 0.05},
                                               name="control", daemon=True)
        self.control_thread.start()

    def info(self):
        return {"event": "ready", "pid": os.getpid(),
                "control": "http://%s:%d" % (self.host, self.control.server_address[1]),
                "controlPort": self.control.server_address[1],
                "scheme": self.cluster.scheme,
                "nodes": [{"id": n.id, "url": self.cluster.node_url(n), "port": n.port,
                           "events": n.events_path} for n in self.cluster.nodes]}

    def stop(self):
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.cluster.stop()
        for r in self.runners.values():
            try:
                r.stop()
            except Exception:
                pass
        if self.control:
            self.control.shutdown()
            self.control.server_close()

    # ---- control operations ------------------------------------------------
    def node(self, nid):
        n = self.cluster.by_id.get(nid)
        if n is None:
            raise LookupError("no node %r" % nid)
        return n

    def kill(self, nid):
        n = self.node(nid)
        if not n.alive:
            return
        self.cluster.kill(n)
        self.runners[nid].stop()

    def restart(self, nid):
        n = self.node(nid)
        if n.alive:
            return
        self.runners[nid].start()
        self.cluster.restart(n)


class ControlServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, sim):
        self.sim = sim
        super().__init__(addr, handler)


class ControlHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, obj):
        body = (json.dumps(obj, indent=1) + "\n").encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("content-length") or 0)
        if not n:
            return {}
        d = json.loads(self.rfile.read(n))
        if not isinstance(d, dict):
            raise ValueError("body must be a JSON object")
        return d

    def _do(self):
        sim = self.server.sim
        c = sim.cluster
        split = urllib.parse.urlsplit(self.path)
        parts = [p for p in split.path.split("/") if p]
        q = {k: v[0] for k, v in urllib.parse.parse_qs(split.query).items()}
        m = self.command
        try:
            body = self._body() if m in ("POST", "PUT", "DELETE") else {}
            result = self._route(sim, c, m, parts, q, body)
            if result is None:
                self._send(404, {"error": "no such control endpoint: %s %s" % (m, split.path)})
            else:
                self._send(200, result)
        except LookupError as e:
            self._send(404, {"error": str(e)})
        except (ValueError, KeyError, TypeError) as e:
            self._send(400, {"error": "%s: %s" % (type(e).__name__, e)})

    do_GET = do_POST = do_PUT = do_DELETE = _do

    def _route(self, sim, c, m, parts, q, body):
        if parts == ["state"] and m == "GET":
            return c.state()
        if len(parts) == 2 and parts[0] == "nodes" and m == "GET":
            with c.lock:
                return sim.node(parts[1]).snapshot()
        if len(parts) == 3 and parts[0] == "nodes" and m == "POST":
            nid, op = parts[1], parts[2]
            n = sim.node(nid)
            if op == "kill":
                sim.kill(nid)
            elif op == "restart":
                sim.restart(nid)
            elif op == "pause":
                c.pause(n, True)
            elif op == "resume":
                c.pause(n, False)
            elif op in ("isolate", "partition"):
                c.isolate(n)
            elif op == "heal":
                c.heal(n)
            elif op == "rotate-key":
                # a new server certificate: a new signing key and kid; tokens
                # signed with the old key are no longer accepted anywhere
                with c.lock:
                    n.kid = tokens.new_kid()
                    n.key = tokens.new_key()
            elif op == "misrecord-key":
                # the cluster records this member's raft client certificate as its
                # signing key: the others refuse its tokens (cluster.keys)
                with c.lock:
                    n.misrecorded = bool(body.get("misrecorded", True)) if body else True
            elif op == "lag":
                with c.cond:
                    n.lag = float(body["ms"]) / 1000.0
                    c.cond.notify_all()
            else:
                return None
            with c.lock:
                return n.snapshot()
        if parts == ["partition"] and m == "POST":
            c.set_groups(body["groups"])
            return c.state()
        if parts == ["heal"] and m == "POST":
            c.heal()
            return c.state()
        if parts == ["lag"] and m == "POST":
            with c.cond:
                for nid, ms in body.items():
                    sim.node(nid).lag = float(ms) / 1000.0
                c.cond.notify_all()
            return c.state()
        if parts == ["election"] and m == "POST":
            c.force_election()
            return c.state()
        if parts == ["transfer"] and m == "POST":
            to = body.get("to")
            c.transfer_leadership(sim.node(to) if to else None)
            return c.state()
        if parts == ["injections"]:
            if m == "GET":
                with c.lock:
                    return {"injections": [dict(i) for i in c.injections]}
            if m == "POST":
                mode = body["mode"]
                if mode not in MODES:
                    raise ValueError("mode must be one of %s" % (MODES,))
                if body.get("node"):
                    sim.node(body["node"])
                return c.add_injection(mode, body["path"], body.get("method"), body.get("node"),
                                       body.get("count", 1), body.get("delayMs", 0))
            if m == "DELETE":
                with c.lock:
                    c.injections = []
                return {"injections": []}
        if parts == ["requests"]:
            ids = [q["node"]] if q.get("node") else [n.id for n in c.nodes]
            out = {}
            for nid in ids:
                n = sim.node(nid)
                with n.log_lock:
                    out[nid] = list(n.request_log)
                    if m == "DELETE":
                        n.request_log = []
            return out if m in ("GET", "DELETE") else None
        if parts == ["identities"]:
            if m == "GET":
                return c.state()["identities"]
            if m == "POST":
                ident = c.seed_identity(body["name"], body["password"], body.get("admin", False), body.get("id"))
                ident.pop("password", None)
                return ident
        if parts == ["config"]:
            if m == "GET":
                return c.config()
            if m == "POST":
                return c.set_config(body)
        if parts == ["shutdown"] and m == "POST":
            threading.Thread(target=sim.stop, daemon=True).start()
            return {"stopping": True}
        return None
