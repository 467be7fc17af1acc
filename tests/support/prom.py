"""Prometheus helpers for the integration tests: an HTTP GET on the admin
listener (optionally from another loopback source address, with basic
auth), a strict parser of the text exposition 0.0.4, `promtool check
metrics`, and a real Prometheus server started on a free loopback port and
stopped by its PID.

    status, headers, body = admin_get(qg.admin_url, "/metrics",
                                      auth=("prom", "pw"), source="127.0.0.2")
    expo = parse_exposition(body)        # families, HELP/TYPE, samples
    rc, out = promtool_check_metrics(body)

    prom = PrometheusServer(workdir, [qg.admin_address], interval="1s").start()
    prom.wait_up()
    prom.wait_value('sum(quorumgate_requests_total)', 5)
    prom.stop()
"""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse

import yaml

from .procs import free_port, stop_pid, wait_until


# ---------------------------------------------------------------------------
# admin requests

def admin_get(base_url, path, auth=None, source=None, method="GET", headers=None,
              timeout=5.0):
    """One request to the admin listener.  auth = (user, password) or a raw
    Authorization value; source = local address to connect from (e.g.
    "127.0.0.2").  Returns (status, {lower-case header: value}, text)."""
    u = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout,
                                      source_address=(source, 0) if source else None)
    h = dict(headers or {})
    if isinstance(auth, tuple):
        h["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()
    elif auth is not None:
        h["Authorization"] = auth
    try:
        conn.request(method, path, headers=h)
        r = conn.getresponse()
        body = r.read().decode("utf-8")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        conn.close()


def admin_json(base_url, path, **kw):
    status, _h, body = admin_get(base_url, path, **kw)
    return status, json.loads(body)


# ---------------------------------------------------------------------------
# the text exposition

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(r"^(%s)(?:\{(.*)\})? (\S+)$" % _NAME)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def _unescape(v):
    return re.sub(r'\\(["\\n])', lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


class Family:
    def __init__(self, name):
        self.name = name
        self.help = None
        self.type = None
        self.samples = []           # (series name, labels dict, value)

    def __repr__(self):
        return "Family(%s %s, %d samples)" % (self.name, self.type, len(self.samples))


class Exposition:
    """families: {metric name: Family} in exposition order."""

    def __init__(self, families):
        self.families = families

    def samples(self, series=None):
        for f in self.families.values():
            for s in f.samples:
                if series is None or s[0] == series:
                    yield s

    def value(self, series, **labels):
        """Sum of the samples of `series` whose labels include `labels`;
        None when there is none."""
        want = {k: str(v) for k, v in labels.items()}
        hits = [v for n, lab, v in self.samples(series)
                if all(lab.get(k) == x for k, x in want.items())]
        return sum(hits) if hits else None

    # read like the {series: [(labels, value)]} dict the tests once had
    def _series(self):
        out = {}
        for n, lab, v in self.samples():
            out.setdefault(n, []).append((lab, v))
        return out

    def __iter__(self):
        return iter(self._series())

    def __getitem__(self, series):
        return self._series()[series]

    def __contains__(self, series):
        return any(True for _s in self.samples(series))

    def __len__(self):
        return len(self._series())

    def keys(self):
        return self._series().keys()

    def items(self):
        return self._series().items()

    def get(self, series, default=None):
        """[(labels, value)] of `series`, or default when it has none."""
        out = [(lab, v) for _n, lab, v in self.samples(series)]
        return out if out else default

    def series_keys(self):
        return {(n, tuple(sorted(lab.items()))) for n, lab, _v in self.samples()}


def parse_exposition(text):
    """Parses Prometheus text 0.0.4 strictly enough for these tests: every
    sample belongs to the family of the last # TYPE line (with histogram
    suffixes), HELP and TYPE come once per family, label values are
    unescaped.  Raises ValueError on anything it does not understand."""
    families = {}
    cur = None
    for ln, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, rest = line[2:6], line[7:]
            name, _, arg = rest.partition(" ")
            f = families.get(name)
            if f is None:
                f = families[name] = Family(name)
            if kind == "HELP":
                if f.help is not None:
                    raise ValueError("line %d: second HELP for %s" % (ln, name))
                f.help = arg
            else:
                if f.type is not None:
                    raise ValueError("line %d: second TYPE for %s" % (ln, name))
                f.type = arg
            cur = f
            continue
        if line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            raise ValueError("line %d: not a sample: %r" % (ln, line))
        series, labels_text, value = m.groups()
        labels = {}
        rest = labels_text or ""
        while rest:
            lm = _LABEL.match(rest)
            if not lm:
                raise ValueError("line %d: bad labels %r" % (ln, labels_text))
            if lm.group(1) in labels:
                raise ValueError("line %d: label %s twice" % (ln, lm.group(1)))
            labels[lm.group(1)] = _unescape(lm.group(2))
            rest = rest[lm.end():]
        if cur is None:
            raise ValueError("line %d: sample before any TYPE: %r" % (ln, line))
        ok_names = {cur.name}
        if cur.type == "histogram":
            ok_names |= {cur.name + s for s in ("_bucket", "_sum", "_count")}
        if series not in ok_names:
            raise ValueError("line %d: %s outside its family (%s)" % (ln, series, cur.name))
        cur.samples.append((series, labels, float(value)))
    return Exposition(families)


def metric(qg, series, default=None, **labels):
    """The value of series{labels} on qg's /metrics, summed over the labels
    not named; default when there is no such sample."""
    v = qg.metrics().value(series, **labels)
    return default if v is None else v


def histogram_problems(expo, family):
    """Structural problems of one histogram family: per label set, buckets
    strictly increasing in le, cumulative counts never decreasing, +Inf last
    and equal to _count, a _sum.  Returns a list of strings (empty = fine)."""
    f = expo.families[family]
    by = {}
    for name, lab, v in f.samples:
        key = tuple(sorted((k, x) for k, x in lab.items() if k != "le"))
        d = by.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if name.endswith("_bucket"):
            d["buckets"].append((lab["le"], v))
        elif name.endswith("_sum"):
            d["sum"] = v
        elif name.endswith("_count"):
            d["count"] = v
    out = []
    for key, d in by.items():
        les = [le for le, _ in d["buckets"]]
        if not les or les[-1] != "+Inf":
            out.append("%s%s: last bucket is not +Inf: %s" % (family, key, les))
            continue
        bounds = [float(x) for x in les]
        if any(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:])):
            out.append("%s%s: le not increasing: %s" % (family, key, les))
        counts = [v for _, v in d["buckets"]]
        if any(c2 < c1 for c1, c2 in zip(counts, counts[1:])):
            out.append("%s%s: buckets not cumulative: %s" % (family, key, counts))
        if d["count"] is None or d["sum"] is None:
            out.append("%s%s: _sum or _count missing" % (family, key))
        elif counts[-1] != d["count"]:
            out.append("%s%s: +Inf %s != _count %s" % (family, key, counts[-1], d["count"]))
        elif d["count"] == 0 and d["sum"] != 0:
            out.append("%s%s: _sum %s with no observation" % (family, key, d["sum"]))
        elif d["sum"] < 0:
            out.append("%s%s: negative _sum" % (family, key))
    return out


def bucket(expo, family, le, **labels):
    """Cumulative count of the bucket le (a string as exposed, e.g. "0.25")."""
    return expo.value(family + "_bucket", le=le, **labels)


# ---------------------------------------------------------------------------
# promtool

def promtool_check_metrics(text):
    """`promtool check metrics` on text: (exit status, stdout + stderr).
    Exit 0 with no output = no error and no lint finding."""
    exe = shutil.which("promtool")
    assert exe, "promtool is not installed (apt-get install prometheus)"
    r = subprocess.run([exe, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    return r.returncode, (r.stdout + r.stderr).strip()


# ---------------------------------------------------------------------------
# a real Prometheus server

class PrometheusServer:
    """prometheus on a free 127.0.0.1 port scraping `targets` (host:port of
    admin listeners) every `interval`, with a throw-away TSDB in workdir.
    basic_auth = (user, password) is written to a password file and used for
    the scrape.  rule_files are copied next to the generated configuration."""

    def __init__(self, workdir, targets, interval="1s", basic_auth=None, rule_files=(),
                 job="quorumgate"):
        self.workdir = workdir
        self.targets = list(targets)
        self.interval = interval
        self.basic_auth = basic_auth
        self.rule_files = list(rule_files)
        self.job = job
        self.proc = None
        self.port = None
        self.config_path = os.path.join(workdir, "prometheus.yml")
        self.log_path = os.path.join(workdir, "prometheus.log")

    def _write_config(self):
        os.makedirs(self.workdir, exist_ok=True)
        job = {"job_name": self.job, "metrics_path": "/metrics", "scheme": "http",
               "scrape_interval": self.interval, "scrape_timeout": self.interval,
               "static_configs": [{"targets": self.targets}]}
        if self.basic_auth:
            pw = os.path.join(self.workdir, "scrape.password")
            with open(pw, "w") as f:
                f.write(self.basic_auth[1])
            job["basic_auth"] = {"username": self.basic_auth[0], "password_file": pw}
        rules = []
        for i, src in enumerate(self.rule_files):
            dst = os.path.join(self.workdir, "rules%d.yml" % i)
            shutil.copy(src, dst)
            rules.append(dst)
        cfg = {"global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
               "rule_files": rules, "scrape_configs": [job]}
        with open(self.config_path, "w") as f:
            yaml.safe_dump(cfg, f)

    def start(self, attempts=3):
        exe = shutil.which("prometheus")
        assert exe, "prometheus is not installed (apt-get install prometheus)"
        self._write_config()
        for _ in range(attempts):
            self.port = free_port()
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [exe, "--config.file=" + self.config_path,
                 "--storage.tsdb.path=" + os.path.join(self.workdir, "tsdb"),
                 "--web.listen-address=127.0.0.1:%d" % self.port,
                 "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir)
            try:
                wait_until(lambda: self.proc.poll() is not None or self._ready(), timeout=20,
                           interval=0.1, what="prometheus /-/ready")
            except TimeoutError:
                self.stop()
                raise
            if self.proc.poll() is None:
                return self
            self._log.close()
        raise RuntimeError("prometheus did not start:\n" + self.log()[-3000:])

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def _get(self, path, timeout=5.0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def _ready(self):
        """Ready, and it is ours: the free port may have been taken by another
        Prometheus (a concurrent run) before ours bound it (ours then exits,
        but the other one says ready meanwhile)."""
        try:
            if self._get("/-/ready")[0] != 200:
                return False
            status, body = self._get("/api/v1/status/flags")
        except OSError:
            return False
        if status != 200:
            return False
        try:
            flags = json.loads(body)["data"]
        except (ValueError, KeyError, TypeError):
            return False
        return flags.get("config.file") == self.config_path

    def api(self, path, **params):
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        status, body = self._get("/api/v1/" + path + q)
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise AssertionError("prometheus %s%s -> %d %s" % (path, q, status, body[:500]))
        return doc["data"]

    def query(self, expr):
        """Instant query: [(labels, float value)]."""
        data = self.api("query", query=expr)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def scalar(self, expr):
        """The single value of expr, or None when the result is empty."""
        res = self.query(expr)
        if not res:
            return None
        assert len(res) == 1, "%s: %d series: %s" % (expr, len(res), res)
        return res[0][1]

    def wait_value(self, expr, expected, timeout=20.0):
        """Waits until expr evaluates to exactly `expected` (the scrape after
        the last change may take an interval); returns the value or raises
        AssertionError with the last value seen."""
        seen = []

        def ok():
            v = self.scalar(expr)
            seen.append(v)
            return v == expected

        try:
            wait_until(ok, timeout=timeout, interval=0.25, what=expr)
        except TimeoutError:
            raise AssertionError("%s: expected %r, last value %r" % (
                expr, expected, seen[-1] if seen else None)) from None
        return expected

    def wait_up(self, timeout=20.0):
        """Waits for a successful scrape of every target; returns
        /api/v1/targets' active targets."""
        def up():
            targets = self.api("targets")["activeTargets"]
            if len(targets) == len(self.targets) and all(t["health"] == "up" for t in targets):
                return targets
            return None
        try:
            return wait_until(up, timeout=timeout, interval=0.25, what="prometheus targets up")
        except TimeoutError:
            raise AssertionError("targets not up: %s\n%s" % (
                self.api("targets")["activeTargets"], self.log()[-2000:])) from None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            stop_pid(self.proc, signal.SIGTERM, timeout=15)
        if self.proc is not None:
            self._log.close()
            self.proc = None
