"""Tests of the harness itself: redis fixture, YAML writer, metrics parser,
and the Quorumgate process wrapper driven with a contract-following fake."""
import os
import signal

import pytest

from tests.conftest import default_qg_config
from tests.ctrlsim.client import ZitiClient
from tests.support.procs import Quorumgate, deep_merge, wait_until
from tests.support.prom import parse_exposition
from tests.support.resp import RedisClient, _Incomplete, resp_parse
from tests.support.yamlout import dump_yaml

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_quorumgate.py")


def test_resp_client(redis_server):
    c = RedisClient(redis_server.port)
    try:
        assert c("SET", "k", "v") == "OK"
        assert c("GET", "k") == b"v"
        assert c("GET", "nope") is None
        assert c("SADD", "s", "a", "b") == 2
        assert sorted(c("SMEMBERS", "s")) == [b"a", b"b"]
        big = b"x" * 300000  # more than one recv
        c("SET", "big", big)
        assert c("GET", "big") == big
        with pytest.raises(RuntimeError):
            c("INCR", "k")  # an error reply
        d = c.dump()
        assert d[b"s"]["type"] == "set" and d[b"k"]["values"] == [b"v"]
    finally:
        c.close()
    with pytest.raises(_Incomplete):
        resp_parse(b"$5\r\nab")


def test_redis_fixture(redis_server):
    assert redis_server.ping()
    assert redis_server.command("SET", "k", "v") == b"+OK\r\n"
    assert redis_server.command("GET", "k") == b"$1\r\nv\r\n"
    assert redis_server.command("CONFIG", "GET", "save").endswith(b"$4\r\nsave\r\n$0\r\n\r\n")
    pid = redis_server.proc.pid
    redis_server.stop()
    assert redis_server.proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_yaml_writer_round_trip(tmp_path, sim, redis_server, certs):
    yaml = pytest.importorskip("yaml")
    cfg = deep_merge(default_qg_config(sim, redis_server, certs, str(tmp_path)),
                     {"weird": ["yes", "0", "a: b", "", None, "-x", "80%", {"k": []}], "gate": {"mode": "2"},
                      "log": None})
    assert "log" not in cfg
    assert yaml.safe_load(dump_yaml(cfg)) == cfg


def test_metrics_parser():
    m = parse_exposition('# HELP a_total x\n# TYPE a_total counter\na_total{c="x",d="y"} 3\n'
                         'a_total{c="z"} 4\n# TYPE b gauge\nb 1.5e3\n')
    assert m.value("a_total", c="x") == 3 and m.value("a_total") == 7 and m.value("b") == 1500
    assert m.value("nope") is None
    assert m.get("a_total") == [({"c": "x", "d": "y"}, 3.0), ({"c": "z"}, 4.0)]
    assert m.get("nope", []) == []
    assert list(m) == ["a_total", "b"] and "b" in m and "nope" not in m and len(m) == 2
    assert dict(m.items())["b"] == m["b"] == [({}, 1500.0)]
    with pytest.raises(ValueError):
        parse_exposition("bad line here\n")


def make(tmp_path, sim, redis_server, certs, name="fake"):
    return Quorumgate(FAKE, str(tmp_path), default_qg_config(sim, redis_server, certs, str(tmp_path)), name=name)


def test_quorumgate_wrapper_with_fake_binary(tmp_path, sim, redis_server, certs):
    qg = make(tmp_path, sim, redis_server, certs).start()
    try:
        assert qg.url.startswith("http://127.0.0.1:") and qg.admin_url.startswith("http://127.0.0.1:")
        assert qg.url != qg.admin_url
        r = ZitiClient(qg.url).version().expect(200)
        assert r.json()["data"]["version"] == "v1.5.4"
        # the line is written after the answer was sent (as quorumgate does)
        wait_until(lambda: qg.access_log(), timeout=5, what="the access-log line")
        assert qg.access_log()[-1]["path"] == "/version"
        assert qg.metrics().value("quorumgate_build_info", version="fake") == 1
        assert [e["kind"] for e in qg.error_log() if e.get("msg") == "listening"] == ["client", "admin"]
    finally:
        code = qg.stop()
    assert code == 0 and qg.problems() == []


@pytest.mark.parametrize("mode,needle", [("asan", "AddressSanitizer"), ("crash", "died by signal %d" % signal.SIGSEGV),
                                         ("ignore_term", "did not exit")])
def test_problems_are_detected(tmp_path, sim, redis_server, certs, monkeypatch, mode, needle):
    monkeypatch.setenv("FAKE_QG_MODE", mode)
    qg = make(tmp_path, sim, redis_server, certs).start()
    qg.stop(timeout=2)
    problems = qg.problems()
    assert any(needle in p for p in problems), problems


def test_start_reports_an_early_exit(tmp_path, sim, redis_server, certs):
    qg = Quorumgate("/bin/false", str(tmp_path), default_qg_config(sim, redis_server, certs, str(tmp_path)))
    with pytest.raises(RuntimeError, match="exited"):
        qg.start(timeout=5)
    qg.stop()


def test_relative_binary_path_is_resolved_before_the_workdir_change(tmp_path, sim, redis_server, certs,
                                                                    monkeypatch):
    # The process starts in its own work directory: a path relative to the caller's
    # directory (what scripts/demo.sh passes) must still find the binary (issue 20).
    monkeypatch.chdir(os.path.dirname(FAKE))
    work = tmp_path / "work"
    work.mkdir()
    qg = Quorumgate("./" + os.path.basename(FAKE), str(work), default_qg_config(sim, redis_server, certs, str(work)))
    assert qg.binary == FAKE
    qg.start()
    try:
        ZitiClient(qg.url).version().expect(200)
    finally:
        assert qg.stop() == 0


def test_missing_binary_is_a_clear_error(tmp_path, sim, redis_server, certs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"'build/quorumgate' not found \(resolved to .*build/quorumgate"):
        Quorumgate("build/quorumgate", str(tmp_path), default_qg_config(sim, redis_server, certs, str(tmp_path)))
