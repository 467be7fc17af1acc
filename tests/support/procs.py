"""Process helpers for the pytest harness: free ports, waiting, certificates
(openssl CLI), redis-server, and the quorumgate binary.  Every process is
started by us and stopped by its PID."""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from .resp import RedisClient, resp_encode
from .yamlout import dump_yaml


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    """Poll ``pred`` until it returns a truthy value (returned) or the
    deadline passes (TimeoutError)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise TimeoutError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def stop_pid(proc, sig=signal.SIGTERM, timeout=10.0):
    """Signal a child by PID; SIGKILL after ``timeout``.  Returns
    (returncode, killed_by_us)."""
    if proc.poll() is not None:
        return proc.returncode, False
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout)
        return proc.returncode, False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        return proc.returncode, True


# ---------------------------------------------------------------------------
# certificates

def make_certs(directory, names=("localhost", "ctrl.ziti.test"), ips=("127.0.0.1",)):
    """A CA, a server certificate and a client certificate signed by it
    (openssl CLI).  Returns a dict of paths: ca, ca_key, cert, key,
    client_cert, client_key."""
    os.makedirs(directory, exist_ok=True)
    p = {k: os.path.join(directory, v) for k, v in
         {"ca": "ca.pem", "ca_key": "ca.key", "cert": "server.pem", "key": "server.key",
          "csr": "server.csr", "ext": "server.ext"}.items()}

    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=60)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", p["ca_key"], "-out", p["ca"], "-days", "2", "-subj", "/CN=ctrlsim test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", p["key"], "-out", p["csr"], "-subj", "/CN=%s" % names[0])
    san = ",".join(["DNS:%s" % n for n in names] + ["IP:%s" % i for i in ips])
    with open(p["ext"], "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                "extendedKeyUsage=serverAuth\n" % san)
    run("x509", "-req", "-in", p["csr"], "-CA", p["ca"], "-CAkey", p["ca_key"], "-CAcreateserial",
        "-out", p["cert"], "-days", "2", "-extfile", p["ext"])
    # a client certificate (an identity's, as a Ziti CA issues them)
    p.update({k: os.path.join(directory, v) for k, v in
              {"client_cert": "client.pem", "client_key": "client.key",
               "client_csr": "client.csr", "client_ext": "client.ext"}.items()})
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", p["client_key"], "-out", p["client_csr"], "-subj", "/CN=test-identity")
    with open(p["client_ext"], "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                "extendedKeyUsage=clientAuth\n")
    run("x509", "-req", "-in", p["client_csr"], "-CA", p["ca"], "-CAkey", p["ca_key"],
        "-CAcreateserial", "-out", p["client_cert"], "-days", "2", "-extfile", p["client_ext"])
    return p


# ---------------------------------------------------------------------------
# redis

def answered_by_pid(port, pid):
    """A redis-server (or sentinel) on 127.0.0.1:port answers, and it is
    process pid (INFO server's process_id; any process when pid is None)."""
    try:
        c = RedisClient(port, timeout=2.0)
        try:
            info = c("INFO", "server")
        finally:
            c.close()
    except (OSError, RuntimeError):
        return False
    if not isinstance(info, bytes):
        return False
    return pid is None or ("\nprocess_id:%d\r" % pid).encode() in info

class RedisServer:
    """A throw-away redis-server on a free loopback port, no persistence."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.proc = None
        self.port = None
        self.log_path = os.path.join(workdir, "redis.log")

    def start(self, attempts=5, port=None):
        """port: listen on this one (a restart after stop()); default a free one."""
        os.makedirs(self.workdir, exist_ok=True)
        last = ""
        for _ in range(attempts):   # a free port can be taken between probe and bind
            self.port = port or free_port()
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.workdir, "--daemonize", "no",
                 "--protected-mode", "yes", "--loglevel", "warning"],
                stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                wait_until(lambda: self.proc.poll() is not None or self.ping(), timeout=10,
                           what="redis-server ping")
            except TimeoutError:
                self.stop()
                raise
            if self.proc.poll() is None:
                return self
            self._log.close()
            with open(self.log_path) as f:
                last = f.read()[-2000:]
        raise RuntimeError("redis-server did not start: %s" % last)

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def command(self, *args, timeout=2.0):
        """Send one command (RESP2) and return the raw reply bytes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(resp_encode(*args))
            data = b""
            while not data.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

    def ping(self):
        """This server answers: the redis-server on its port is our process.
        A free port can be taken by another redis-server (a concurrent test
        run) between free_port() and our bind; ours then exits at once, but
        a bare PING would have been answered by the other one meanwhile."""
        return answered_by_pid(self.port, self.proc.pid if self.proc else None)

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc, timeout=5)
            self._log.close()


# ---------------------------------------------------------------------------
# quorumgate

SANITIZER_PATTERNS = [
    re.compile(r"AddressSanitizer"), re.compile(r"LeakSanitizer"), re.compile(r"UndefinedBehaviorSanitizer"),
    re.compile(r"ThreadSanitizer"), re.compile(r"runtime error:"), re.compile(r"Assertion .* failed"),
    re.compile(r"assertion failed", re.I), re.compile(r"\bSegmentation fault\b"), re.compile(r"\bAborted\b"),
    re.compile(r"stack smashing detected"), re.compile(r"double free"), re.compile(r"free\(\): invalid"),
]


def deep_merge(base, over):
    """``over`` merged into a copy of ``base``; a None value deletes the key;
    lists are replaced."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"raw": line})
    return out


def resolve_binary(path):
    """The absolute path of an executable given as an absolute path, a path
    relative to the current directory, or a bare name on PATH.  Processes are
    started from their own work directory, so a relative path must be made
    absolute before that; a missing binary is an error that says what to do."""
    if os.sep not in path:
        found = shutil.which(path)
        if found:
            return os.path.abspath(found)
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise FileNotFoundError(
            "binary %r not found (resolved to %s from %s); build it first "
            "(cmake -S . -B build && cmake --build build) or pass its path"
            % (path, full, os.getcwd()))
    if not os.access(full, os.X_OK):
        raise PermissionError("binary %s is not executable" % full)
    return full


class Quorumgate:
    """One quorumgate process built from a config dict (written as YAML)."""

    def __init__(self, binary, workdir, config, name="qg"):
        self.binary = resolve_binary(binary)
        self.workdir = workdir
        self.config = config
        self.name = name
        self.config_path = os.path.join(workdir, name + ".yaml")
        self.stdout_path = os.path.join(workdir, name + ".stdout")
        self.stderr_path = os.path.join(workdir, name + ".stderr")
        self.proc = None
        self.client_addresses = []
        self.admin_address = None
        self.passthrough_address = None
        self.exit_code = None
        self.killed_by_us = False
        # argv put before the binary; it must exec it in the same process
        # (so that the PID stays quorumgate's), e.g. unshare without --fork
        self.prefix = []

    def write_config(self, config=None):
        if config is not None:
            self.config = config
        with open(self.config_path + ".tmp", "w") as f:
            f.write(dump_yaml(self.config))
        os.replace(self.config_path + ".tmp", self.config_path)

    def start(self, timeout=15.0):
        self.write_config()
        self._out = open(self.stdout_path, "ab")
        self._err = open(self.stderr_path, "ab")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen(self.prefix + [self.binary, "-c", self.config_path], stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir, env=env)

        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError("quorumgate exited with %s during start:\n%s" % (
                    self.proc.returncode, self.stderr_text()[-3000:]))
            kinds = {}
            for ev in self.error_log():
                if ev.get("msg") == "listening":
                    kinds.setdefault(ev.get("kind"), []).append(ev.get("address"))
            n_listeners = len(self.config.get("listeners") or [])
            want_pt = bool((self.config.get("passthrough") or {}).get("address"))
            if want_pt and not kinds.get("passthrough"):
                return False
            if kinds.get("admin") and len(kinds.get("client", [])) >= max(1, n_listeners):
                self.client_addresses = kinds["client"]
                self.admin_address = kinds["admin"][0]
                self.passthrough_address = (kinds.get("passthrough") or [None])[0]
                return True
            return False

        wait_until(listening, timeout=timeout, what="quorumgate 'listening' log lines")
        wait_until(lambda: self._healthz_ok(), timeout=timeout, what="quorumgate /healthz 200")
        return self

    def _healthz_ok(self):
        if self.proc.poll() is not None:
            raise RuntimeError("quorumgate exited with %s:\n%s" % (self.proc.returncode, self.stderr_text()[-3000:]))
        try:
            with urllib.request.urlopen(self.admin_request("/healthz"), timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    # ---- addresses ---------------------------------------------------------
    def _scheme_of(self, i):
        lst = self.config.get("listeners") or []
        return "https" if i < len(lst) and lst[i].get("tls") else "http"

    @property
    def url(self):
        return "%s://%s" % (self._scheme_of(0), self.client_addresses[0])

    def url_of(self, i):
        return "%s://%s" % (self._scheme_of(i), self.client_addresses[i])

    @property
    def admin_url(self):
        return "http://%s" % self.admin_address

    def admin_request(self, path):
        """A request for the admin listener, with the configured basic auth
        (admin.basic_auth) when there is one."""
        req = urllib.request.Request(self.admin_url + path)
        auth = (self.config.get("admin") or {}).get("basic_auth")
        if auth:
            with open(auth["password_file"]) as f:
                pw = f.read().rstrip("\r\n")
            token = base64.b64encode(("%s:%s" % (auth["username"], pw)).encode()).decode()
            req.add_header("Authorization", "Basic " + token)
        return req

    # ---- signals -----------------------------------------------------------
    def sighup(self):
        os.kill(self.proc.pid, signal.SIGHUP)

    def sigterm(self):
        os.kill(self.proc.pid, signal.SIGTERM)

    def stop(self, timeout=20.0):
        if self.proc is None:
            return None
        if self.exit_code is None:
            self.exit_code, self.killed_by_us = stop_pid(self.proc, signal.SIGTERM, timeout)
            self._out.close()
            self._err.close()
        return self.exit_code

    # ---- output --------------------------------------------------------------
    def stdout_text(self):
        with open(self.stdout_path, errors="replace") as f:
            return f.read()

    def stderr_text(self):
        with open(self.stderr_path, errors="replace") as f:
            return f.read()

    def access_log(self):
        return [e for e in parse_json_lines(self.stdout_text()) if "raw" not in e]

    def error_log(self):
        return parse_json_lines(self.stderr_text())

    def metrics_text(self):
        with urllib.request.urlopen(self.admin_request("/metrics"), timeout=5) as r:
            return r.read().decode()

    def metrics(self):
        """/metrics parsed (tests.support.prom.parse_exposition)."""
        from .prom import parse_exposition  # prom imports this module
        return parse_exposition(self.metrics_text())

    def problems(self):
        """Sanitizer reports, assertion failures and crashes found in the
        output and the exit status."""
        found = []
        for label, text in (("stderr", self.stderr_text()), ("stdout", self.stdout_text())):
            for pat in SANITIZER_PATTERNS:
                m = pat.search(text)
                if m:
                    start = max(0, m.start() - 200)
                    found.append("%s matches %r: ...%s..." % (label, pat.pattern, text[start:m.end() + 800]))
        if self.exit_code is not None and self.exit_code < 0 and not self.killed_by_us:
            found.append("quorumgate died by signal %d" % -self.exit_code)
        if self.killed_by_us:
            found.append("quorumgate did not exit within the SIGTERM drain timeout (SIGKILLed)")
        return found
