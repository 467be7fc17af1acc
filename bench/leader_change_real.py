#!/usr/bin/env python3
"""Leader-change detection on a real OpenZiti cluster (issue 12): how long after a leadership
transfer (POST /fabric/v1/cluster/transfer-leadership answered) quorumgate names the new leader
(its controller_leader gauge, read every 5 ms from /metrics), for controllers with the
health-checks API (probes) and, with --default-config, without it (list-members).

    python3 bench/leader_change_real.py --version v1.5.4 -n 6
    python3 bench/leader_change_real.py --version v1.7.2 --default-config --json out.json

Reports every transfer and the median/max.  The /metrics poll adds up to 5 ms plus a loopback
round trip, so the numbers are upper bounds by that much.
"""
import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.realcluster.cluster import ADMIN, ZitiCluster, events_file, health_checks, ziti_binary  # noqa: E402
from tests.support.procs import Quorumgate, RedisServer, wait_until  # noqa: E402


def qg_leader(qg):
    m = qg.metrics()
    leaders = [lab["controller"] for lab, v in m.get("quorumgate_controller_leader", []) if v == 1]
    return leaders[0] if len(leaders) == 1 else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", default="v1.5.4")
    ap.add_argument("-n", type=int, default=6, help="transfers (default 6)")
    ap.add_argument("--default-config", action="store_true", help="no health-checks API: list-members")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    binary = os.environ.get("QUORUMGATE_BIN") or os.path.join(ROOT, "build", "quorumgate")
    work = tempfile.mkdtemp(prefix="qg-leader-change-")
    edits = [events_file] if a.default_config else [health_checks, events_file]
    cluster = ZitiCluster(ziti_binary(a.version), a.version, os.path.join(work, "ziti"), edits=edits)
    redis = qg = None
    try:
        cluster.start()
        redis = RedisServer(os.path.join(work, "redis")).start()
        key, pw = os.path.join(work, "hmac.key"), os.path.join(work, "mgmt.pw")
        with open(key, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        with open(pw, "w") as f:
            f.write(ADMIN[1] + "\n")
        cfg = {"workers": 1, "listeners": [{"address": "127.0.0.1:0"}], "admin": {"address": "127.0.0.1:0"},
               "controllers": [{"id": m, "url": cluster.url(m)} for m in cluster.node_ids],
               "upstream": {"tls": {"ca": cluster.ca}}, "redis": {"address": redis.address},
               "secrets": {"hmac_key_file": key}, "log": {"level": "info", "access_log": "off"},
               "gate": {"management": {"username": ADMIN[0], "password_file": pw}}}
        qg = Quorumgate(binary, work, cfg).start()
        wait_until(lambda: qg_leader(qg) == cluster.wait_leader(), timeout=30, what="quorumgate to know the leader")
        rows = []
        for i in range(a.n):
            old = cluster.wait_leader()
            to = [m for m in cluster.node_ids if m != old][i % 2]
            r = cluster.admin_call(old, "POST", "/fabric/v1/cluster/transfer-leadership", body={"newLeaderId": to})
            t0 = time.monotonic()
            assert r.status == 200, (r.status, r.body[:200])
            wait_until(lambda: qg_leader(qg) == to, timeout=30, interval=0.005, what="quorumgate to see " + to)
            rows.append({"from": old, "to": to, "detected_ms": round(1000 * (time.monotonic() - t0), 1)})
            print(json.dumps(rows[-1]), flush=True)
            cluster.wait_leader()
        ms = [x["detected_ms"] for x in rows]
        summary = {"version": a.version, "method": "list-members" if a.default_config else "health-checks",
                   "transfers": len(ms), "median_ms": statistics.median(ms), "max_ms": max(ms)}
        print(json.dumps(summary))
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"summary": summary, "rows": rows}, f, indent=1)
        return 0
    finally:
        for p in (qg, redis, cluster):
            if p is not None:
                p.stop()


if __name__ == "__main__":
    sys.exit(main())
