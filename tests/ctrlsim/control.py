"""Python wrappers: ``SimControl`` talks to a running simulator's control API;
``SimProcess`` starts the simulator as a child process and stops it by PID."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SimControl:
    def __init__(self, url, timeout=10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError("control %s %s -> %d %s" % (method, path, e.code, e.read()[:300]))

    # ---- reading -----------------------------------------------------------
    def state(self):
        return self.call("GET", "/state")

    def node(self, nid):
        return self.call("GET", "/nodes/" + nid)

    def leader(self):
        return self.state()["leader"]

    def requests(self, node=None):
        return self.call("GET", "/requests" + ("?node=" + node if node else ""))

    def reset_requests(self, node=None):
        return self.call("DELETE", "/requests" + ("?node=" + node if node else ""))

    def count(self, method=None, path=None, node=None, status=None):
        """How many requests the simulator saw that match."""
        n = 0
        for nid, reqs in self.requests(node).items():
            for r in reqs:
                if (method is None or r["method"] == method) and (path is None or r["path"] == path) \
                        and (status is None or r["status"] == status):
                    n += 1
        return n

    def mfa_on(self, nid, identity_id):
        """The MFA record (id, isVerified) that node nid holds for the identity, or None."""
        return self.node(nid)["mfas"].get(identity_id)

    # ---- changing ------------------------------------------------------------
    def kill(self, nid):
        return self.call("POST", "/nodes/%s/kill" % nid)

    def restart(self, nid):
        return self.call("POST", "/nodes/%s/restart" % nid)

    def pause(self, nid):
        return self.call("POST", "/nodes/%s/pause" % nid)

    def resume(self, nid):
        return self.call("POST", "/nodes/%s/resume" % nid)

    def isolate(self, nid):
        return self.call("POST", "/nodes/%s/isolate" % nid)

    def heal(self, nid=None):
        return self.call("POST", "/nodes/%s/heal" % nid if nid else "/heal")

    def partition(self, *groups):
        return self.call("POST", "/partition", {"groups": [list(g) for g in groups]})

    def rotate_key(self, nid):
        """Node nid gets a new token-signing key (and kid)."""
        return self.call("POST", "/nodes/%s/rotate-key" % nid)

    def misrecord_key(self, nid, misrecorded=True):
        """The others refuse nid's tokens (401), as a real member that dialed the leader."""
        return self.call("POST", "/nodes/%s/misrecord-key" % nid, {"misrecorded": misrecorded})

    def set_lag(self, nid, ms):
        return self.call("POST", "/nodes/%s/lag" % nid, {"ms": ms})

    def force_election(self):
        return self.call("POST", "/election")

    def transfer(self, to=None):
        return self.call("POST", "/transfer", {"to": to} if to else {})

    def inject(self, mode, path, method=None, node=None, count=1, delay_ms=0):
        return self.call("POST", "/injections", {"mode": mode, "path": path, "method": method, "node": node,
                                                 "count": count, "delayMs": delay_ms})

    def clear_injections(self):
        return self.call("DELETE", "/injections")

    def injections(self):
        return self.call("GET", "/injections")["injections"]

    def create_identity(self, name, password, admin=False):
        return self.call("POST", "/identities", {"name": name, "password": password, "admin": admin})

    def config(self, **cfg):
        return self.call("POST", "/config", cfg) if cfg else self.call("GET", "/config")

    # ---- waiting -----------------------------------------------------------
    def wait_for(self, pred, timeout=10.0, interval=0.02, what="condition"):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.state()
            v = pred(last)
            if v:
                return v
            time.sleep(interval)
        raise TimeoutError("timed out after %.1fs waiting for %s; last state: leader=%s nodes=%s" % (
            timeout, what, last and last["leader"],
            last and [(n["id"], n["role"], n["alive"], n["appliedIndex"]) for n in last["nodes"]]))

    def wait_leader(self, not_in=(), timeout=10.0):
        return self.wait_for(lambda s: s["leader"] if s["leader"] and s["leader"] not in not_in else None,
                             timeout=timeout, what="a leader not in %s" % (list(not_in),))

    def wait_applied(self, index=None, nodes=None, timeout=10.0):
        """Every (alive) node in ``nodes`` has applied up to ``index`` (default: the commit index)."""
        def ok(s):
            want = s["commitIndex"] if index is None else index
            return all(n["appliedIndex"] >= want for n in s["nodes"]
                       if (nodes is None and n["alive"]) or (nodes is not None and n["id"] in nodes))
        return self.wait_for(ok, timeout=timeout, what="apply of index %s" % index)


class SimProcess:
    """The simulator as a child process (``python3 -m tests.ctrlsim``)."""

    def __init__(self, args=(), workdir=None, python=sys.executable):
        self.workdir = workdir or tempfile.mkdtemp(prefix="ctrlsim-")
        self.ready_file = os.path.join(self.workdir, "ready.json")
        self.stdout_path = os.path.join(self.workdir, "ctrlsim.stdout")
        self.stderr_path = os.path.join(self.workdir, "ctrlsim.stderr")
        self.args = list(args)
        self.python = python
        self.proc = None
        self.info = None

    def start(self, timeout=15.0):
        cmd = [self.python, "-m", "tests.ctrlsim", "--ready-file", self.ready_file] + self.args
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ctrlsim exited with %s: %s" % (self.proc.returncode, self.stderr()))
            if os.path.exists(self.ready_file):
                with open(self.ready_file) as f:
                    self.info = json.loads(f.read())
                self.control = SimControl(self.info["control"])
                return self
            time.sleep(0.02)
        self.stop()
        raise TimeoutError("ctrlsim not ready in %.0fs: %s" % (timeout, self.stderr()))

    def stderr(self):
        try:
            with open(self.stderr_path) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def url(self, nid):
        for n in self.info["nodes"]:
            if n["id"] == nid:
                return n["url"]
        raise KeyError(nid)

    def port(self, nid):
        return int(self.url(nid).rsplit(":", 1)[1])

    @property
    def node_ids(self):
        return [n["id"] for n in self.info["nodes"]]

    def events_path(self, nid):
        for n in self.info["nodes"]:
            if n["id"] == nid:
                return n["events"]
        raise KeyError(nid)

    def stop(self, timeout=10.0):
        """SIGTERM the simulator by PID; SIGKILL if it does not exit in time.
        Returns the exit code."""
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGUSR1)   # faulthandler: every thread's stack to stderr
                time.sleep(0.5)
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        for f in (getattr(self, "_out", None), getattr(self, "_err", None)):
            if f:
                f.close()
        return p.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
