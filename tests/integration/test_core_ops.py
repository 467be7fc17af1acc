"""Proxy core, operations (issue 2): the access log, SIGTERM draining an
in-flight request, SIGHUP with a good file, a broken file and a file that
changes restart-only keys, and the command line (-t, --version, --help)."""
import copy
import json
import os
import re
import socket
import subprocess
import threading
import time

from tests.integration.core_support import (  # noqa: F401  (fixtures)
    assert_envelope, call, echo_factory, host_port, metric, qg_over_echo, status, wait_access,
    wait_leader_known, wait_metric)
from tests.support.procs import wait_until


# ---- access log ---------------------------------------------------------------

def test_one_access_log_line_per_request_with_the_documented_fields(quorumgate, echo_factory):
    cl = echo_factory(1)
    up = cl.upstreams[0]
    up.respond("/edge/client/v1/services", status=200, body=b'{"data":[],"meta":{}}')
    qg = qg_over_echo(quorumgate, cl)
    before = len(qg.access_log())
    r = call(qg, "GET", "/edge/client/v1/services?token=secret-token-1&limit=5&filter=name%3D%22x%22"
             "&code=c0de-secret&method=password", headers={"X-Request-Id": "log-test-1"})
    assert r.status == 200
    r2 = call(qg, "POST", "/edge/management/v1/identities", body=b'{"name":"n"}',
              headers={"Content-Type": "application/json", "X-Request-Id": "log-test-2"})
    assert r2.status == 200
    wait_until(lambda: len(qg.access_log()) >= before + 2, timeout=5, what="two access-log lines")
    lines = qg.access_log()[before:]
    assert len(lines) == 2, lines
    a, b = lines
    for key in ("ts", "request_id", "client", "client_port", "tls", "method", "path", "status", "bytes_in",
                "bytes_out", "duration_ms", "class", "call", "decision", "controller", "attempts", "upstream",
                "upstream_ms"):
        assert key in a, (key, a)
    assert a["request_id"] == "log-test-1" and a["method"] == "GET" and a["status"] == 200
    assert a["client"] == "127.0.0.1" and a["tls"] is False
    assert a["class"] == "read" and a["controller"] == "ctrl1" and a["attempts"] == 1
    assert a["bytes_out"] == len(b'{"data":[],"meta":{}}')
    assert a["upstream"] == [{"controller": "ctrl1", "outcome": "ok", "status": 200, "ms": a["upstream"][0]["ms"]}]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", a["ts"])
    assert isinstance(a["duration_ms"], (int, float)) and a["duration_ms"] >= 0
    # query values are redacted unless known harmless; names stay
    assert a["path"].startswith("/edge/client/v1/services?")
    assert "token=REDACTED" in a["path"] and "code=REDACTED" in a["path"]
    assert "limit=5" in a["path"] and "method=password" in a["path"]
    out = qg.stdout_text() + qg.stderr_text()
    assert "secret-token-1" not in out and "c0de-secret" not in out
    # the upstream still got the query as it was
    assert "token=secret-token-1" in up.seen("/edge/client/v1/services")[0]["target"]
    assert b["request_id"] == "log-test-2" and b["method"] == "POST" and b["class"] == "write"
    assert b["bytes_in"] == len(b'{"name":"n"}')


def test_access_log_off_and_to_a_file(quorumgate, echo_factory, tmp_path):
    cl = echo_factory(1)
    path = str(tmp_path / "access.log")
    qg = qg_over_echo(quorumgate, cl, {"log": {"level": "info", "error_log": "stderr", "access_log": path}})
    call(qg, "GET", "/x?password=hunter2")
    wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0, timeout=5, what="the access log file")
    lines = [json.loads(x) for x in open(path).read().splitlines()]
    assert [e["path"] for e in lines] == ["/x?password=REDACTED"]
    assert qg.access_log() == []


# ---- SIGTERM ------------------------------------------------------------------

def test_sigterm_drains_an_in_flight_request_and_exits_0(quorumgate):
    qg = quorumgate({"timeouts": {"drain": "5s"}})
    sim = qg.sim
    wait_leader_known(qg)
    sim.control.inject("delay", "/edge/client/v1/version", count=10, delay_ms=1500)
    result = {}

    def slow():
        result["r"] = call(qg, "GET", "/edge/client/v1/version", ca=qg.ca, timeout=10)
        result["t"] = time.monotonic()
    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: status(qg)["requests_in_flight"] == 1, timeout=5, what="the request in flight")
    t0 = time.monotonic()
    qg.sigterm()
    # no new connections once the signal is handled
    host, port = host_port(qg.url)

    def refused():
        try:
            socket.create_connection((host, port), timeout=1).close()
            return False
        except OSError:
            return True
    wait_until(refused, timeout=3, what="the listener to stop accepting")
    t.join(10)
    r = result["r"]
    assert r.status == 200 and r.json()["data"]["version"], r.body
    code = qg.proc.wait(10)
    t_exit = time.monotonic()
    assert code == 0
    # the answer (200 above) came before the exit, within the drain bound
    assert result["t"] <= t_exit
    assert t_exit - t0 < 5.0, t_exit - t0
    msgs = [e.get("msg", "") for e in qg.error_log()]
    assert any("draining 1 request" in m for m in msgs), msgs
    assert any("drained, exiting" in m for m in msgs), msgs
    line = wait_access(qg, lambda e: e.get("path") == "/edge/client/v1/version")
    assert line["status"] == 200


def test_sigterm_drain_bound_answers_what_is_left_and_exits(quorumgate):
    qg = quorumgate({"timeouts": {"drain": "500ms"}})
    sim = qg.sim
    wait_leader_known(qg)
    sim.control.inject("delay", "/edge/client/v1/version", count=10, delay_ms=4000)
    result = {}

    def slow():
        try:
            result["r"] = call(qg, "GET", "/edge/client/v1/version", ca=qg.ca, timeout=10)
        except Exception as e:      # noqa: BLE001 - recorded and asserted below
            result["e"] = e
    t = threading.Thread(target=slow)
    t.start()
    wait_until(lambda: status(qg)["requests_in_flight"] == 1, timeout=5, what="the request in flight")
    t0 = time.monotonic()
    qg.sigterm()
    code = qg.proc.wait(10)
    took = time.monotonic() - t0
    t.join(10)
    assert code == 0
    assert took < 3.5, took          # the request itself would take 4 s
    assert "r" in result, result
    assert_envelope(result["r"], 503, "PROXY_SHUTTING_DOWN")
    msgs = [e.get("msg", "") for e in qg.error_log()]
    assert any("drain time is up" in m for m in msgs), msgs


def test_sigterm_when_idle_exits_at_once(quorumgate):
    qg = quorumgate({"timeouts": {"drain": "10s"}})
    t0 = time.monotonic()
    qg.sigterm()
    assert qg.proc.wait(10) == 0
    assert time.monotonic() - t0 < 2.0


# ---- SIGHUP -------------------------------------------------------------------

def _reloads(qg, result):
    return metric(qg, "quorumgate_config_reloads_total", result=result) or 0


def test_sighup_with_a_good_file_applies_it(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl)
    assert call(qg, "POST", "/x", body=b"a" * 500).status == 200
    cfg = copy.deepcopy(qg.config)
    cfg["limits"] = dict(cfg.get("limits") or {}, max_body_bytes="100")
    cfg["headers"] = {"expose_controller": False}
    qg.write_config(cfg)
    qg.sighup()
    wait_metric(qg, "quorumgate_config_reloads_total", 1, result="success")
    assert _reloads(qg, "failure") == 0
    assert metric(qg, "quorumgate_config_last_reload_successful") == 1
    r = call(qg, "POST", "/x", body=b"a" * 500)
    assert_envelope(r, 413, "REQUEST_ENTITY_TOO_LARGE")
    r = call(qg, "GET", "/y")
    assert r.status == 200 and r.header("Quorumgate-Controller") is None
    assert status(qg)["config_reloads"] == {"success": 1, "failure": 0}
    assert any("configuration reloaded" in e.get("msg", "") for e in qg.error_log())


def test_requests_in_flight_across_reloads_finish_on_their_configuration(quorumgate, echo_factory):
    # each request keeps the configuration it started with (the worker
    # counts its users; the last one frees a replaced configuration): two
    # reloads while three requests wait on a slow controller
    cl = echo_factory(1)
    cl.upstreams[0].respond("/slow", status=200, body=b"{}", delay=1.5)
    qg = qg_over_echo(quorumgate, cl)
    results = []

    def slow(i):
        results.append((i, call(qg, "GET", "/slow", timeout=10)))

    def reload(n, expose):
        cfg = copy.deepcopy(qg.config)
        cfg["headers"] = {"expose_controller": expose}
        qg.write_config(cfg)
        qg.sighup()
        wait_metric(qg, "quorumgate_config_reloads_total", n, result="success")

    threads = [threading.Thread(target=slow, args=(0,))]
    threads[0].start()
    wait_until(lambda: status(qg)["requests_in_flight"] == 1, timeout=5, what="request 0 in flight")
    reload(1, False)            # request 0 started with expose_controller on
    threads.append(threading.Thread(target=slow, args=(1,)))
    threads[1].start()
    wait_until(lambda: status(qg)["requests_in_flight"] == 2, timeout=5, what="request 1 in flight")
    reload(2, True)             # request 1 started with it off
    threads.append(threading.Thread(target=slow, args=(2,)))
    threads[2].start()
    for t in threads:
        t.join(15)
    got = {i: r for i, r in results}
    assert sorted(got) == [0, 1, 2] and all(r.status == 200 for r in got.values()), got
    assert got[0].header("Quorumgate-Controller") is not None
    assert got[1].header("Quorumgate-Controller") is None
    assert got[2].header("Quorumgate-Controller") is not None
    assert status(qg)["requests_in_flight"] == 0
    assert call(qg, "GET", "/after").header("Quorumgate-Controller") is not None


def test_sighup_applies_client_timeouts_to_new_connections(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, {"timeouts": {"client_header": "10s", "client_idle": "30s"}})
    cfg = copy.deepcopy(qg.config)
    cfg["timeouts"] = {"client_header": "500ms", "client_idle": "1s"}
    qg.write_config(cfg)
    qg.sighup()
    wait_metric(qg, "quorumgate_config_reloads_total", 1, result="success")
    host, port = host_port(qg.url)
    # an idle kept-alive connection is closed after the new client_idle
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        got = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            got += c
        took = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 200")
    assert took < 3.5, took
    # and a slow request line gets the new header timeout
    t0 = time.monotonic()
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"GET /a")
        got = s.recv(65536)
    assert got.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 3.0


def test_sighup_with_a_broken_file_keeps_the_running_one(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl, {"limits": {"max_body_bytes": "1KiB"}})
    good = open(qg.config_path).read()
    lines = good.splitlines()
    # an unknown key on a known line, and a bad duration further down
    broken = lines + ["no_such_key: 1", "timeouts:", "  drain: 15"]
    broken = [x for x in broken]
    with open(qg.config_path, "w") as f:
        f.write("\n".join(broken) + "\n")
    qg.sighup()
    wait_metric(qg, "quorumgate_config_reloads_total", 1, result="failure")
    assert _reloads(qg, "success") == 0
    assert metric(qg, "quorumgate_config_last_reload_successful") == 0
    problems = [e.get("problem", "") for e in qg.error_log() if "reload refused" in e.get("msg", "")]
    assert problems, qg.stderr_text()[-2000:]
    n = len(lines)
    assert any(p.startswith("%s:%d: " % (qg.config_path, n + 1)) and "no_such_key" in p for p in problems), problems
    # the running configuration is untouched
    assert call(qg, "POST", "/x", body=b"a" * 1000).status == 200
    assert_envelope(call(qg, "POST", "/x", body=b"a" * 2000), 413, "REQUEST_ENTITY_TOO_LARGE")
    # and fixing the file makes the next SIGHUP work
    with open(qg.config_path, "w") as f:
        f.write(good)
    qg.sighup()
    wait_metric(qg, "quorumgate_config_reloads_total", 1, result="success")
    assert metric(qg, "quorumgate_config_last_reload_successful") == 1


def test_sighup_refuses_restart_only_changes(quorumgate, echo_factory):
    cl = echo_factory(2)
    qg = qg_over_echo(quorumgate, cl, {"limits": {"max_body_bytes": "1KiB"}})
    for change in ("controllers", "listeners"):
        cfg = copy.deepcopy(qg.config)
        if change == "controllers":
            cfg["controllers"] = cfg["controllers"][:1]
        else:
            cfg["listeners"] = cfg["listeners"] + [{"address": "127.0.0.1:0"}]
        cfg["limits"] = {"max_body_bytes": "10"}    # would apply if the reload were taken
        qg.write_config(cfg)
        failures = _reloads(qg, "failure")
        qg.sighup()
        wait_metric(qg, "quorumgate_config_reloads_total", failures + 1, result="failure")
        msgs = [e.get("msg", "") for e in qg.error_log() if "reload refused" in e.get("msg", "")]
        assert any(change in m and "restart" in m for m in msgs), msgs
        assert call(qg, "POST", "/x", body=b"a" * 100).status == 200
    assert _reloads(qg, "success") == 0
    assert [c["id"] for c in status(qg)["controllers"]] == ["ctrl1", "ctrl2"]


# ---- command line ---------------------------------------------------------------

def _bin():
    from tests.conftest import quorumgate_binary
    return quorumgate_binary()


def test_check_mode_accepts_a_valid_file(quorumgate, echo_factory):
    cl = echo_factory(1)
    qg = qg_over_echo(quorumgate, cl)
    p = subprocess.run([_bin(), "-t", "-c", qg.config_path], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "valid" in p.stdout


def test_check_mode_reports_file_line_problems(tmp_path):
    path = str(tmp_path / "bad.yaml")
    with open(path, "w") as f:
        f.write("workers: 1\nlisteners:\n  - address: \"127.0.0.1:0\"\ntimeouts:\n  drain: 15\n"
                "no_such_key: true\n")
    p = subprocess.run([_bin(), "-t", "-c", path], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    lines = [x for x in p.stderr.splitlines() if x.startswith(path + ":")]
    assert any(re.match(re.escape(path) + r":5: .*drain", x) for x in lines), p.stderr
    assert any(re.match(re.escape(path) + r":6: .*no_such_key", x) for x in lines), p.stderr
    assert p.stdout == ""


def test_check_mode_with_a_missing_file(tmp_path):
    p = subprocess.run([_bin(), "-t", "-c", str(tmp_path / "nope.yaml")], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0 and "nope.yaml" in p.stderr


def test_version_help_and_bad_arguments():
    p = subprocess.run([_bin(), "--version"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and re.fullmatch(r"quorumgate \d+\.\d+\.\d+\n", p.stdout), p.stdout
    p = subprocess.run([_bin(), "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "usage:" in p.stdout and "-t -c FILE" in p.stdout
    p = subprocess.run([_bin(), "--bogus"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "unknown argument" in p.stderr
    p = subprocess.run([_bin()], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "-c FILE is required" in p.stderr
