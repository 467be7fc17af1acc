"""The Grafana dashboard metrics/grafana/quorumgate.json (issue 19).

Every panel's PromQL goes to a real Prometheus that scrapes a running
quorumgate in front of the controller simulator, after some traffic (plain
reads and retried ones): /api/v1/query must accept each expression and
return series that carry every label the panel's legend names.  Statically:
the metrics and labels of each expression are declared in
metrics/metrics.def, the layout is sound, the only variables are the
dashboard's own and Grafana's, and the docker stack provisions the same file.
"""
import json
import os
import re

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.ctrlsim.client import ZitiClient
from tests.integration.test_prometheus_files import TARGET_LABELS, parse_def
from tests.support.procs import wait_until

DASHBOARD = os.path.join(REPO_ROOT, "metrics", "grafana", "quorumgate.json")
DOCKER = os.path.join(REPO_ROOT, "docker")
# Grafana's variables, as a query over the last minutes would see them.
SUBST = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s",
         "$job": ".+", "$instance": ".+"}
HIST_SUFFIXES = ("_bucket", "_sum", "_count")


def load():
    with open(DASHBOARD) as f:
        return json.load(f)


def panels(dash):
    for p in dash["panels"]:
        if p["type"] == "row":
            yield from p.get("panels", [])
        else:
            yield p


def targets(dash):
    for p in panels(dash):
        for t in p.get("targets", []):
            yield p, t


def concrete(expr):
    for k in sorted(SUBST, key=len, reverse=True):
        expr = expr.replace(k, SUBST[k])
    assert "$" not in expr, "unknown variable in %r" % expr
    return expr


def legend_labels(t):
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")))


def test_layout_and_variables():
    dash = load()
    assert dash["uid"] == "quorumgate" and dash["title"]
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "job", "instance"], names
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), ids
    cells = set()
    for p in dash["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, "%s overlaps another panel" % p["title"]
                cells.add((x, y))
    ps = list(panels(dash))
    assert len(ps) >= 25
    for p in ps:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and p.get("description"), p["title"]
        for t in p["targets"]:
            concrete(t["expr"])
            assert legend_labels(t), "%s: a legend names its series" % p["title"]
    # the list of views
    titles = " | ".join(p["title"].lower() for p in ps)
    for want in ("leader", "controllers up", "leader changes", "request rate", "errors", "latency",
                 "retries by failure class", "retry outcomes", "budget", "reconciliations",
                 "held calls", "acknowledgement latency", "fenced", "redis"):
        assert want in titles, want


def test_every_metric_and_label_is_declared():
    decl = parse_def()
    used = set()
    for p, t in targets(load()):
        expr = t["expr"]
        names = set(re.findall(r"\bquorumgate_(\w+)", expr))
        assert names, "%s: no quorumgate metric in %r" % (p["title"], expr)
        for n in names:
            base = n
            for s in HIST_SUFFIXES:
                if n.endswith(s) and n[: -len(s)] in decl and decl[n[: -len(s)]]["type"] == "histogram":
                    base = n[: -len(s)]
            assert base in decl, "%s: quorumgate_%s is not in metrics.def" % (p["title"], n)
            used.add(base)
            labels = set(decl[base]["labels"]) | TARGET_LABELS
            if base != n and n.endswith("_bucket"):
                labels.add("le")
            for by in re.findall(r"by \(([^)]*)\)", expr):
                for lab in (x.strip() for x in by.split(",")):
                    assert lab in labels, "%s: %s has no label %s" % (p["title"], base, lab)
            for lab in re.findall(r'(\w+)=~?"', expr):
                assert lab in labels, "%s: %s has no label %s" % (p["title"], base, lab)
    # the views the issue asks for rest on these series
    for m in ("controller_leader", "controller_up", "leader_changes_total", "requests_total",
              "request_duration_seconds", "upstream_attempts_total", "retries_total",
              "retry_outcomes_total", "retry_budget_exhausted_total", "reconciled_total",
              "replication_wait_seconds", "replication_acks_total", "fenced_identities",
              "redis_up", "redis_operations_total"):
        assert m in used, m


def test_every_panel_query_returns_its_series(quorumgate, prometheus):
    qg = quorumgate()
    prom = prometheus([qg.admin_address], interval="1s")
    prom.wait_up()
    # traffic: plain reads, and reads whose first attempt meets a 503 / 429
    c = ZitiClient(qg.url, ca_file=qg.ca, keep_alive=True)
    for _ in range(10):
        c.version().expect(200)
    for mode in ("503", "429"):
        qg.sim.control.inject(mode, "/version", method="GET", count=1)
        assert c.version().expect(200).header("quorumgate-attempts") == "2"
    prom.wait_value("sum(quorumgate_requests_total)", 12)
    prom.wait_value("sum(quorumgate_retries_total)", 2)
    dash = load()
    # rate() over the traffic: at least two scrapes after it
    rate_expr = concrete(next(t["expr"] for p, t in targets(dash)
                              if p["title"] == "Request rate by route class"))
    wait_until(lambda: any(lab.get("class") == "read" and v > 0 for lab, v in prom.query(rate_expr)),
               timeout=20, what="the read request rate is seen")

    # the variables' queries (label_values) as Grafana asks Prometheus
    assert prom.api("label/job/values", **{"match[]": "quorumgate_build_info"}) == ["quorumgate"]
    assert prom.api("label/instance/values", **{"match[]": 'quorumgate_build_info{job=~".+"}'}) \
        == [qg.admin_address]

    checked = 0
    for p, t in targets(dash):
        expr = concrete(t["expr"])
        res = prom.query(expr)          # raises unless /api/v1/query accepts it
        assert res, "%s: %r returned no series" % (p["title"], expr)
        for lab in legend_labels(t):
            missing = [r for r, _v in res if lab not in r]
            assert not missing, "%s: series without %s: %s" % (p["title"], lab, missing)
        checked += 1
    assert checked >= 30, checked

    # values that the traffic fixes
    def by(title, ref="A"):
        t = next(t for p, t in targets(dash) if p["title"] == title and t["refId"] == ref)
        return prom.query(concrete(t["expr"]))

    ctrls = {c["id"] for c in qg.config["controllers"]}
    up = by("Controllers up")
    assert {r["controller"] for r, _ in up} == ctrls and all(v == 1 for _, v in up), up
    leaders = [r["controller"] for r, v in by("Raft leader") if v == 1]
    assert leaders == [qg.sim.control.leader()], leaders
    reasons = {r["reason"] for r, v in by("Retries by failure class") if v > 0}
    assert reasons <= {"no_leader", "too_many"} and reasons, reasons
    assert [v for r, v in by("Redis up")] == [1]
    p99 = {r["class"]: v for r, v in by("Latency by route class", "B")}
    assert 0 < p99["read"] <= 10, p99


def test_the_docker_stack_provisions_the_dashboard():
    with open(os.path.join(DOCKER, "compose.yml")) as f:
        compose = yaml.safe_load(f)
    g = compose["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in g["volumes"]}
    prov_dir = os.path.normpath(os.path.join(DOCKER, mounts["/etc/grafana/provisioning"]))
    with open(os.path.join(prov_dir, "dashboards", "quorumgate.yml")) as f:
        dashboards = yaml.safe_load(f)
    path = dashboards["providers"][0]["options"]["path"]
    assert os.path.normpath(os.path.join(DOCKER, mounts[path])) == os.path.dirname(DASHBOARD)
    with open(os.path.join(prov_dir, "datasources", "prometheus.yml")) as f:
        ds = yaml.safe_load(f)["datasources"]
    assert [d["type"] for d in ds] == ["prometheus"]
    assert ds[0]["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    assert g["depends_on"]["prometheus"]["condition"] == "service_healthy"
