"""/metrics of the real binary (issue 5): the exposition a busy quorumgate
serves passes `promtool check metrics` with no finding at all, every series
exists from the first scrape, label values come only from the bounded sets
declared in metrics/metrics.def, histograms are well formed, and every
metric the issue asks for is really updated by the code paths that own it.

"Busy" = reads, writes, legacy and OIDC logins, 4xx answers, MFA enrollment
and removal through the replication gate, simulator injections (503, 429,
500, delay) that cause retries, a controller killed and restarted, a failed
and a successful SIGHUP reload -- while a background thread keeps sending
reads and the test scrapes.
"""
import os
import re
import subprocess
import threading
import time

import pytest

from tests.conftest import quorumgate_binary
from tests.ctrlsim.client import ZitiClient, totp_now
from tests.integration.test_prometheus_files import parse_def
from tests.support.procs import wait_until
from tests.support.yamlout import dump_yaml
from tests.support.prom import (admin_get, histogram_problems, parse_exposition,
                                promtool_check_metrics)

PREFIX = "quorumgate_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DECLARED = parse_def()


def scrape(qg, **kw):
    status, headers, body = admin_get(qg.admin_url, "/metrics", **kw)
    assert status == 200, (status, body[:300])
    return headers, body


def assert_promtool_clean(text, what):
    rc, out = promtool_check_metrics(text)
    assert rc == 0 and out == "", "promtool check metrics on %s: exit %d\n%s" % (what, rc, out)


def series_of(expo):
    """{(series, sorted labels)} without values."""
    return expo.series_keys()


# ---------------------------------------------------------------------------
# the workload

class Background:
    """Reads (GET /version) in a loop until stopped; counts answers."""

    def __init__(self, qg):
        self.qg = qg
        self.stop_ev = threading.Event()
        self.sent = 0
        self.errors = []
        self.t = threading.Thread(target=self.run, daemon=True)

    def run(self):
        c = ZitiClient(self.qg.url, ca_file=self.qg.ca, keep_alive=True, timeout=10)
        while not self.stop_ev.is_set():
            try:
                c.version()
                self.sent += 1
            except Exception as e:       # noqa: BLE001 - reported by the test
                self.errors.append(repr(e))
                c.close()
                time.sleep(0.01)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.t.join(15)


def busy_workload(qg, scrapes):
    """Everything a deployment does in a day, in a few seconds.  Appends the
    exposition text of a scrape after each phase to `scrapes`."""
    sim, ctl = qg.sim, qg.sim.control
    c = ZitiClient(qg.url, ca_file=qg.ca, keep_alive=True)

    for _ in range(10):                                 # reads
        c.version().expect(200)
    c.request("GET", "/edge/client/v1/no-such-thing")   # 4xx from a controller
    c.current_identity().expect(401)                    # 401, no session
    scrapes.append(scrape(qg)[1])

    legacy = ZitiClient(qg.url, ca_file=qg.ca)          # write class, then session class
    legacy.legacy_login("bob", "bob-pw").expect(200)
    for _ in range(3):
        legacy.current_identity().expect(200)

    alice = ZitiClient(qg.url, ca_file=qg.ca)           # OIDC, then MFA through the gate
    alice.oidc_login("alice", "alice-pw").expect(200)
    secret = alice.enroll_mfa()
    alice.mfa_delete(totp_now(secret)).expect(200)
    scrapes.append(scrape(qg)[1])

    for mode in ("503", "429", "500"):                  # retried failures
        ctl.inject(mode, "/version", method="GET", count=1)
        c.version().expect(200)
    ctl.inject("delay", "/version", method="GET", count=1, delay_ms=150)
    c.version().expect(200)
    scrapes.append(scrape(qg)[1])

    leader = ctl.leader()                               # a follower dies and returns
    follower = [n for n in sim.node_ids if n != leader][0]
    ctl.kill(follower)
    wait_until(lambda: qg.metrics().value("quorumgate_controller_up", controller=follower) == 0,
               timeout=10, what="controller_up 0 for the killed follower")
    for _ in range(6):
        c.version().expect(200)
    scrapes.append(scrape(qg)[1])
    ctl.restart(follower)
    wait_until(lambda: qg.metrics().value("quorumgate_controller_up", controller=follower) == 1,
               timeout=10, what="controller_up 1 again")

    good = dict(qg.config)                              # a failed, then a successful reload
    with open(qg.config_path, "w") as f:
        f.write("workers: [this is not a number\n")
    qg.sighup()
    wait_until(lambda: qg.metrics().value("quorumgate_config_reloads_total", result="failure") == 1,
               timeout=10, what="failed reload counted")
    scrapes.append(scrape(qg)[1])
    qg.write_config(good)
    qg.sighup()
    wait_until(lambda: qg.metrics().value("quorumgate_config_reloads_total", result="success") == 1,
               timeout=10, what="successful reload counted")
    scrapes.append(scrape(qg)[1])


# ---------------------------------------------------------------------------
# tests

def test_busy_scrapes_pass_promtool_with_no_findings(quorumgate):
    qg = quorumgate()
    first = scrape(qg)[1]
    assert_promtool_clean(first, "the first scrape")
    scrapes = []
    with Background(qg) as bg:
        busy_workload(qg, scrapes)
        # and a few scrapes racing the background reads
        for _ in range(5):
            scrapes.append(scrape(qg)[1])
    assert bg.sent > 20 and not bg.errors, (bg.sent, bg.errors[:5])
    for i, text in enumerate(scrapes):
        assert_promtool_clean(text, "scrape %d of the busy run" % i)
    last = scrapes[-1]
    # promtool really looked at something busy
    expo = parse_exposition(last)
    assert expo.value("quorumgate_requests_total") >= 40
    assert expo.value("quorumgate_retries_total") >= 3
    assert expo.value("quorumgate_replication_wait_seconds_count") >= 3
    # and promtool would have complained about a broken exposition
    rc, out = promtool_check_metrics(last.replace("quorumgate_requests_total{", "quorumgate_requests{", 1))
    assert rc != 0 or out, "promtool accepted a counter without _total"


def test_content_type_names_text_format_0_0_4(quorumgate):
    qg = quorumgate()
    headers, body = scrape(qg)
    assert headers["content-type"] == CONTENT_TYPE
    assert body.endswith("\n")
    status, headers, body = admin_get(qg.admin_url, "/metrics", method="HEAD")
    assert status == 200 and headers["content-type"] == CONTENT_TYPE and body == ""
    # a query string does not matter (Prometheus params, cache busters)
    assert admin_get(qg.admin_url, "/metrics?name[]=up")[0] == 200


def test_every_declared_metric_is_exposed_with_help_type_and_prefix(quorumgate):
    qg = quorumgate()
    expo = parse_exposition(scrape(qg)[1])
    exposed = {n[len(PREFIX):]: f for n, f in expo.families.items()}
    assert all(n.startswith(PREFIX) for n in expo.families), list(expo.families)
    assert set(exposed) == set(DECLARED), set(exposed) ^ set(DECLARED)
    for name, fam in exposed.items():
        assert fam.help, name
        assert fam.type == DECLARED[name]["type"], (name, fam.type)
        assert fam.samples, "%s has no series at start" % name
        assert (fam.type == "counter") == name.endswith("_total"), name
        if fam.type == "histogram":
            assert name.endswith("_seconds"), name


def test_every_series_exists_from_the_first_scrape(quorumgate):
    """The full cross product of every declared label set, with the
    configured controller ids, from the start; and the busy run adds none."""
    qg = quorumgate()
    ids = list(qg.sim.node_ids)
    first = parse_exposition(scrape(qg)[1])
    for name, d in DECLARED.items():
        fam = first.families[PREFIX + name]
        want = 1
        for label, values in d["labels"].items():
            if label == "controller":
                want *= len(ids)
            elif values is not None:
                want *= len(values)
        samples = [s for s in fam.samples if s[0] == PREFIX + name or s[0].endswith("_count")]
        assert len(samples) == want, "%s: %d series, expected %d" % (name, len(samples), want)
    # nothing happened yet on the request path: those start at 0
    for zero in ("requests_total", "retries_total", "upstream_attempts_total",
                 "retry_budget_exhausted_total", "replication_timeouts_total",
                 "replication_acks_total", "config_reloads_total", "reconciled_total",
                 "request_duration_seconds_count", "replication_wait_seconds_count"):
        assert first.value(PREFIX + zero) == 0, zero
    assert first.value("quorumgate_requests_in_flight") == 0
    assert first.value("quorumgate_client_connections") == 0
    assert first.value("quorumgate_config_last_reload_successful") == 1
    assert first.value("quorumgate_build_info") == 1

    scrapes = []
    busy_workload(qg, scrapes)
    for text in scrapes:
        assert series_of(parse_exposition(text)) == series_of(first)


def test_label_values_are_bounded_and_declared(quorumgate):
    """After the busy run, every label value is one metrics.def lists (or a
    configured controller id, or the version): no token, path, identity,
    address or request id ever becomes a label."""
    qg = quorumgate()
    scrapes = []
    busy_workload(qg, scrapes)
    expo = parse_exposition(scrapes[-1])
    ids = set(qg.sim.node_ids)
    secrets_seen = set()
    for fam in expo.families.values():
        d = DECLARED[fam.name[len(PREFIX):]]
        for series, labels, _v in fam.samples:
            for k, v in labels.items():
                if k == "le":
                    assert series.endswith("_bucket")
                    continue
                assert k in d["labels"], (series, k)
                allowed = d["labels"][k]
                if k == "controller":
                    assert v in ids, (series, k, v)
                elif k == "version":
                    assert v and "/" not in v and len(v) < 64, v
                else:
                    assert v in allowed, (series, k, v)
                secrets_seen |= {v for s in ("alice", "bob", "/", "Bearer", "127.0.0.1") if s in v}
    assert not secrets_seen, secrets_seen


def test_histograms_are_cumulative_and_consistent(quorumgate):
    qg = quorumgate()
    scrapes = []
    busy_workload(qg, scrapes)
    for text in scrapes:
        expo = parse_exposition(text)
        for name, fam in expo.families.items():
            if fam.type == "histogram":
                assert histogram_problems(expo, name) == [], name
    expo = parse_exposition(scrapes[-1])
    # bounds suit a 1 ms pass-through and a 5 s replication wait
    les = {lab["le"] for _n, lab, _v in expo.samples("quorumgate_request_duration_seconds_bucket")}
    for le in ("0.0005", "0.001", "0.0025", "0.005", "1", "2.5", "5", "10", "+Inf"):
        assert le in les, (le, sorted(les))
    assert expo.value("quorumgate_request_duration_seconds_count") == \
        expo.value("quorumgate_requests_total")


def wait_metric(qg, series, pred, what, timeout=10.0, **labels):
    def ok():
        v = qg.metrics().value(series, **labels)
        return v is not None and pred(v)
    wait_until(ok, timeout=timeout, what=what)


def test_every_required_metric_is_updated_by_its_code_path(quorumgate):
    """Each metric the issue requires moves when the thing it counts
    happens (not just declared)."""
    qg = quorumgate()
    scrapes = []
    busy_workload(qg, scrapes)
    m = parse_exposition(scrapes[-1])
    nonzero = [
        ("quorumgate_requests_total", dict(**{"class": "read"}, method="GET", code="2xx")),
        ("quorumgate_requests_total", dict(**{"class": "read"}, method="GET", code="4xx")),
        ("quorumgate_requests_total", dict(**{"class": "mfa"}, method="POST", code="2xx")),
        ("quorumgate_requests_total", dict(**{"class": "mfa"}, method="DELETE", code="2xx")),
        ("quorumgate_requests_total", dict(**{"class": "oidc"})),
        ("quorumgate_requests_total", dict(**{"class": "session"}, method="GET", code="2xx")),
        ("quorumgate_requests_total", dict(**{"class": "write"}, method="POST", code="2xx")),
        ("quorumgate_request_duration_seconds_count", {"class": "read"}),
        ("quorumgate_upstream_attempts_total", dict(outcome="ok")),
        ("quorumgate_upstream_attempts_total", dict(outcome="no_leader")),
        ("quorumgate_upstream_attempts_total", dict(outcome="too_many_requests")),
        ("quorumgate_upstream_attempts_total", dict(outcome="server_error")),
        ("quorumgate_upstream_duration_seconds_count", {}),
        ("quorumgate_retries_total", dict(**{"class": "read"}, reason="no_leader")),
        ("quorumgate_retries_total", dict(**{"class": "read"}, reason="too_many")),
        ("quorumgate_retries_total", dict(**{"class": "read"}, reason="sent_failed")),
        ("quorumgate_retry_outcomes_total", dict(**{"class": "read"}, outcome="retried_success")),
        ("quorumgate_controller_leader", {}),
        ("quorumgate_leader_changes_total", {}),
        ("quorumgate_health_probes_total", dict(result="leader")),
        ("quorumgate_health_probes_total", dict(result="follower")),
        ("quorumgate_health_probes_total", dict(result="error")),
        ("quorumgate_routing_decisions_total", dict(decision="pinned")),
        ("quorumgate_routing_decisions_total", dict(decision="balanced")),
        ("quorumgate_routing_decisions_total", dict(decision="sticky_hit")),
        ("quorumgate_affinity_entries", dict(kind="sess")),
        ("quorumgate_replication_wait_seconds_count", dict(call="create")),
        ("quorumgate_replication_wait_seconds_count", dict(call="verify")),
        ("quorumgate_replication_wait_seconds_count", dict(call="delete")),
        ("quorumgate_replication_acks_total", {}),
        ("quorumgate_redis_operations_total", dict(op="ping", result="ok")),
        ("quorumgate_redis_operations_total", dict(op="connect", result="ok")),
        ("quorumgate_redis_operations_total", dict(op="subscribe", result="ok")),
        ("quorumgate_redis_operations_total", dict(op="affinity_set", result="ok")),
        ("quorumgate_redis_operations_total", dict(op="gate_write", result="ok")),
        ("quorumgate_redis_operations_total", dict(op="ack_write", result="ok")),
        ("quorumgate_redis_operations_total", dict(op="fence_read", result="ok")),
        ("quorumgate_redis_up", {}),
        ("quorumgate_config_reloads_total", dict(result="success")),
        ("quorumgate_config_reloads_total", dict(result="failure")),
        ("quorumgate_config_last_reload_successful", {}),
        ("quorumgate_config_last_reload_success_timestamp_seconds", {}),
        ("quorumgate_build_info", {}),
    ]
    missing = [(s, lab) for s, lab in nonzero if not m.value(s, **lab)]
    assert not missing, "still 0 after the busy run: %s" % missing
    # the killed follower was seen down, and is up again
    assert m.value("quorumgate_controller_up") == len(qg.sim.node_ids)
    # the leader changes counter agrees with /status
    st = admin_get(qg.admin_url, "/status")
    import json
    assert m.value("quorumgate_leader_changes_total") >= json.loads(st[2])["leader_changes"] >= 1
    # gauges back to rest once the work is done
    wait_metric(qg, "quorumgate_requests_in_flight", lambda v: v == 0, "no request in flight")
    wait_metric(qg, "quorumgate_client_connections", lambda v: v == 0, "connections closed",
                timeout=15)


def test_client_connections_and_in_flight_track_open_work(quorumgate):
    qg = quorumgate()
    ctl = qg.sim.control
    clients = [ZitiClient(qg.url, ca_file=qg.ca, keep_alive=True) for _ in range(3)]
    for c in clients:
        c.version().expect(200)
    wait_metric(qg, "quorumgate_client_connections", lambda v: v == 3, "3 open connections")
    ctl.inject("delay", "/version", method="GET", count=1, delay_ms=1500)
    t = threading.Thread(target=lambda: clients[0].version())
    t.start()
    try:
        wait_metric(qg, "quorumgate_requests_in_flight", lambda v: v == 1, "1 request in flight")
    finally:
        t.join(10)
    wait_metric(qg, "quorumgate_requests_in_flight", lambda v: v == 0, "0 in flight")
    for c in clients:
        c.close()
    wait_metric(qg, "quorumgate_client_connections", lambda v: v == 0, "connections closed")


def check_config(tmp_path, controller_ids):
    """`quorumgate -t` on a minimal configuration with these controller ids."""
    key = tmp_path / "hmac.key"
    key.write_text("k" * 64)
    cfg = {
        "listeners": [{"address": "127.0.0.1:0"}],
        "admin": {"address": "127.0.0.1:0"},
        "controllers": [{"id": cid, "url": "http://127.0.0.1:%d" % (1281 + i)}
                        for i, cid in enumerate(controller_ids)],
        "redis": {"address": "127.0.0.1:6379"},
        "secrets": {"hmac_key_file": str(key)},
        "gate": {"legacy_sessions": "unconfirmed"},
    }
    path = tmp_path / "q.yaml"
    path.write_text(dump_yaml(cfg))
    r = subprocess.run([quorumgate_binary(), "-t", "-c", str(path)], capture_output=True,
                       text=True, timeout=30)
    return str(path), r


@pytest.mark.parametrize("bad_id", ['ctrl"1', "ctrl\\1", "ctrl\n1", "ctrl 1", "ctrl{1}", "ctrl=1,x"])
def test_controller_ids_needing_escapes_are_refused_by_the_config(tmp_path, bad_id):
    """Controller ids become `controller` label values.  The configuration
    only admits letters, digits and . _ : - so a value needing an escape in
    the exposition (\\, ", newline) or breaking a label set cannot reach it:
    `-t` says which file and line."""
    if not os.access(quorumgate_binary(), os.X_OK):
        pytest.skip("no quorumgate binary")
    path, r = check_config(tmp_path, ["ctrl0", bad_id, "ctrl2"])
    assert r.returncode != 0, r.stdout
    assert re.search(re.escape(path) + r":\d+: controllers\[1\]\.id: .* is not a valid id",
                     r.stderr, re.S), r.stderr
    # the same file with an admitted id passes: the id was the only problem
    path, r = check_config(tmp_path, ["ctrl0", "ctrl.1:a-b_C", "ctrl2"])
    assert r.returncode == 0, r.stderr


def test_controller_ids_with_every_admitted_character_are_exposed_verbatim(quorumgate, sim_factory):
    sim = sim_factory(tls=True)
    odd = ["ctrl.1:a-b_C", "2-x.y", "Z:9_"]
    cfg = {"controllers": [{"id": i, "url": sim.url(n)} for i, n in zip(odd, sim.node_ids)]}
    qg = quorumgate(cfg, sim=sim)
    c = ZitiClient(qg.url, ca_file=qg.ca)
    c.version().expect(200)
    text = scrape(qg)[1]
    assert_promtool_clean(text, "a scrape with unusual controller ids")
    expo = parse_exposition(text)
    seen = {lab["controller"] for _n, lab, _v in expo.samples("quorumgate_controller_up")}
    assert seen == set(odd)
    for i in odd:
        assert 'controller="%s"' % i in text
    wait_until(lambda: qg.metrics().value("quorumgate_controller_leader") == 1, timeout=10,
               what="a leader among the odd ids")
