"""The sample Prometheus files in metrics/prometheus/.

promtool must accept the scrape configuration and the alerting rules, the
rules' own unit tests (alerts_test.yml) must pass, and every quorumgate
metric, label and label value an alert refers to must be declared in
metrics/metrics.def.  promtool is required: CI installs it, so a missing one
fails these tests instead of skipping them.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "metrics" / "prometheus"
DEF_FILE = ROOT / "metrics" / "metrics.def"
PREFIX = "quorumgate_"
# Labels Prometheus itself attaches to every scraped series (job, instance)
# and the target labels set in prometheus.yml.
TARGET_LABELS = {"job", "instance", "cluster"}


def parse_def(path=DEF_FILE):
    """Returns {name: {"type": ..., "labels": {label: set(values) or None}}}.

    None as a value set means the values are not known statically (the
    controller ids, the build version)."""
    text = path.read_text()
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = text.replace("\\\n", " ")

    value_lists = {}
    for m in re.finditer(r"#define\s+(METRICS_VALUES_\w+)\(X\)(.*)", text):
        values = re.findall(r'X\(\s*\w+\s*,\s*"([^"]*)"\s*\)', m.group(2))
        value_lists[m.group(1)] = set(values) if values else None

    dims = {}
    for m in re.finditer(
        r'METRICS_LABEL_(?:EXTERN|ENUM)\(\s*(\w+)\s*,\s*"([^"]+)"[^"]*?'
        r"(METRICS_VALUES_\w+)\s*\)",
        text,
    ):
        dims[m.group(1)] = (m.group(2), value_lists[m.group(3)])
    for m in re.finditer(r'METRICS_LABEL_DYNAMIC\(\s*(\w+)\s*,\s*"([^"]+)"\s*\)',
                         text):
        dims[m.group(1)] = (m.group(2), None)

    metrics = {}
    for m in re.finditer(
        r'METRIC([0-3])\(\s*(\w+)\s*,\s*"([^"]+)"\s*,\s*'
        r"(COUNTER|GAUGE|HISTOGRAM)\s*,\s*(\w+)\s*((?:,\s*\w+\s*)*),\s*\"",
        text,
    ):
        n, _ident, name, mtype, _buckets, rest = m.groups()
        label_dims = re.findall(r"\w+", rest)
        assert len(label_dims) == int(n), f"{name}: METRIC{n} with {label_dims}"
        assert name not in metrics, f"{name} declared twice"
        metrics[name] = {
            "type": mtype.lower(),
            "labels": {dims[d][0]: dims[d][1] for d in label_dims},
        }
    rows = len(re.findall(r"^\s*METRIC[0-3]\(\s*\w+\s*,\s*\"", text, flags=re.M))
    assert rows == len(metrics), "a METRIC row in metrics.def was not parsed"
    return metrics


def resolve(name, metrics):
    """Maps an exposed series name to its declared metric, or None."""
    if not name.startswith(PREFIX):
        return None
    base = name[len(PREFIX):]
    if base in metrics:
        return base
    for suffix in ("_bucket", "_sum", "_count"):
        stem = base[: -len(suffix)]
        if base.endswith(suffix) and metrics.get(stem, {}).get("type") == "histogram":
            return stem
    return None


def promtool(*args):
    exe = shutil.which("promtool")
    assert exe, "promtool is not installed (apt-get install prometheus)"
    return subprocess.run([exe, *args], cwd=PROM_DIR, capture_output=True,
                          text=True, timeout=60)


def load_rules():
    doc = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_def_parses():
    metrics = parse_def()
    # The interface promised in DESIGN.md (names and label sets).
    promised = {
        "requests_total": {"class", "method", "code"},
        "request_duration_seconds": {"class"},
        "upstream_attempts_total": {"controller", "outcome"},
        "upstream_duration_seconds": {"controller"},
        "retries_total": {"class", "reason"},
        "retry_outcomes_total": {"class", "outcome"},
        "retry_budget_exhausted_total": {"class"},
        "reconciled_total": {"call", "result"},
        "controller_up": {"controller"},
        "controller_leader": {"controller"},
        "leader_changes_total": set(),
        "health_probes_total": {"controller", "result"},
        "routing_decisions_total": {"class", "decision"},
        "affinity_entries": {"kind"},
        "replication_wait_seconds": {"call"},
        "replication_acks_total": {"controller"},
        "replication_timeouts_total": {"call"},
        "replication_probes_total": {"controller"},
        "replication_probes_deferred_total": {"controller"},
        "replication_probes_coalesced_total": {"controller"},
        "replication_held_refused_total": set(),
        "token_resends_total": {"controller"},
        "logins_steered_total": {"controller"},
        "login_tokens_refused_total": {"controller"},
        "replication_unconfirmed_total": {"call"},
        "replication_tracking_unavailable_total": set(),
        "fenced_identities": set(),
        "redis_operations_total": {"op", "result"},
        "redis_up": set(),
        "client_connections": set(),
        "requests_in_flight": set(),
        "config_reloads_total": {"result"},
        "config_last_reload_success_timestamp_seconds": set(),
        "relay_lag_seconds": {"controller"},
        "relay_events_total": {"controller", "result"},
        "build_info": {"version"},
    }
    for name, labels in promised.items():
        assert name in metrics, name
        assert set(metrics[name]["labels"]) == labels, name
    assert metrics["requests_total"]["labels"]["code"] == {
        "1xx", "2xx", "3xx", "4xx", "5xx"}
    assert metrics["upstream_attempts_total"]["labels"]["controller"] is None
    assert metrics["replication_wait_seconds"]["type"] == "histogram"


def test_promtool_check_config():
    r = promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_check_rules():
    r = promtool("check", "rules", "alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_rule_unit_tests():
    r = promtool("test", "rules", "alerts_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_scrape_config_points_at_metrics():
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    for rf in cfg["rule_files"]:
        assert (PROM_DIR / rf).is_file(), rf
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["quorumgate"]["metrics_path"] == "/metrics"


SELECTOR = re.compile(r"\b(quorumgate_\w+)\s*(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


@pytest.mark.parametrize("rule", load_rules(), ids=lambda r: r["alert"])
def test_alert_refers_to_declared_metrics(rule):
    metrics = parse_def()
    expr = rule["expr"]
    for m in SELECTOR.finditer(expr):
        series, matchers = m.group(1), m.group(2) or ""
        metric = resolve(series, metrics)
        assert metric, f"{rule['alert']}: {series} is not declared in metrics.def"
        labels = dict(metrics[metric]["labels"])
        if metrics[metric]["type"] == "histogram" and series.endswith("_bucket"):
            labels["le"] = None
        for label, op, value in MATCHER.findall(matchers):
            if label in TARGET_LABELS:
                continue
            assert label in labels, f"{rule['alert']}: {metric} has no label {label}"
            allowed = labels[label]
            if op in ("=", "!=") and allowed is not None:
                assert value in allowed, (
                    f"{rule['alert']}: {label}={value!r} is not a value of {metric}")


@pytest.mark.parametrize("rule", load_rules(), ids=lambda r: r["alert"])
def test_alert_is_complete(rule):
    assert rule["alert"].startswith("Quorumgate")
    assert "for" in rule
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert rule["annotations"]["summary"]
    assert rule["annotations"]["description"]


def test_required_alerts_present():
    names = {r["alert"] for r in load_rules()}
    required = {
        "QuorumgateNoLeader",
        "QuorumgateReplicationTimeouts",
        "QuorumgateRetryBudgetExhausted",
        "QuorumgateControllerDown",
        "QuorumgateRedisDown",
        "QuorumgateConfigReloadFailing",
    }
    assert required <= names, required - names


def test_checker_catches_undeclared_names():
    metrics = parse_def()
    assert resolve("quorumgate_requests_total", metrics) == "requests_total"
    assert resolve("quorumgate_request_duration_seconds_bucket", metrics)
    assert resolve("quorumgate_requests_total_bucket", metrics) is None
    assert resolve("quorumgate_no_such_metric", metrics) is None
    assert resolve("up", metrics) is None


def test_readme_lists_every_metric():
    readme = (ROOT / "metrics" / "README.md").read_text()
    listed = set(re.findall(r"^\| `(\w+)` \|", readme, flags=re.M))
    assert listed == set(parse_def()), "metrics/README.md table out of date"
