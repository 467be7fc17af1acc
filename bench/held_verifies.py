#!/usr/bin/env python3
"""Held MFA answers at scale (issue 7): N identities enrolled, then N
verifies sent at once through quorumgate while one follower lags, so every
answer is held by the replication gate until that follower applied it; then
the same with N deletes.  Reports quorumgate's RSS before / during (peak) /
after each round, how many answers were held at once, completion times and
errors, and checks every answer and the simulator's final state.

    python3 bench/held_verifies.py                  # 1000 identities, lag 3 s
    python3 bench/held_verifies.py -n 200 --lag-ms 2000 --json out.json
    QUORUMGATE_BIN=build-asan/quorumgate python3 bench/held_verifies.py -n 300

Everything runs on loopback: a redis-server, the controller simulator
(tests/ctrlsim, HTTP) and quorumgate (build/quorumgate or $QUORUMGATE_BIN),
each started here and stopped by PID.  The simulator is a Python process:
its throughput, not quorumgate's, bounds how fast the N writes commit.
"""
import argparse
import asyncio
import concurrent.futures
import json
import os
import resource
import secrets
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.ctrlsim.client import ZitiClient, totp_now  # noqa: E402
from tests.ctrlsim.control import SimProcess  # noqa: E402
from tests.support.procs import Quorumgate, RedisServer, wait_until  # noqa: E402

MFA = "/edge/client/v1/current-identity/mfa"


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def status(qg):
    with urllib.request.urlopen(qg.admin_url + "/status", timeout=5) as r:
        return json.loads(r.read())


class Sampler:
    """Samples quorumgate's RSS and held answers every `every` seconds."""

    def __init__(self, qg, every=0.05):
        self.qg = qg
        self.every = every
        self.peak_rss = 0
        self.peak_held = 0
        self.stop_ev = threading.Event()
        self.th = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop_ev.is_set():
            self.peak_rss = max(self.peak_rss, rss_kib(self.qg.proc.pid))
            try:
                self.peak_held = max(self.peak_held, status(self.qg)["pending_acknowledgements"])
            except OSError:
                pass
            self.stop_ev.wait(self.every)

    def __enter__(self):
        self.th.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.th.join()


async def http_call(host, port, method, path, token, body=None, extra=None, timeout=60.0):
    """One request on its own connection; returns (status, headers, seconds)."""
    t0 = time.monotonic()
    data = json.dumps(body).encode() if body is not None else b""
    head = ["%s %s HTTP/1.1" % (method, path), "Host: %s:%d" % (host, port),
            "Authorization: Bearer %s" % token, "Accept: application/json", "Connection: close",
            "Content-Length: %d" % len(data)]
    if body is not None:
        head.append("Content-Type: application/json")
    for k, v in (extra or {}).items():
        head.append("%s: %s" % (k, v))
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)   # Connection: close
    finally:
        writer.close()
    head, _, _ = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return code, headers, time.monotonic() - t0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))] if xs else float("nan")


async def burst(qg, calls):
    host, port = qg.client_addresses[0].rsplit(":", 1)
    port = int(port)
    tasks = [http_call(host, port, *c) for c in calls]
    return await asyncio.gather(*tasks, return_exceptions=True)


def run_round(name, qg, calls, lag_s, all_nodes):
    before = rss_kib(qg.proc.pid)
    t0 = time.monotonic()
    with Sampler(qg) as s:
        results = asyncio.run(burst(qg, calls))
        wall = time.monotonic() - t0
        # the waits finish, then a moment to settle
        wait_until(lambda: status(qg)["pending_acknowledgements"] == 0, timeout=30, what="no held answer")
    time.sleep(1.0)
    after = rss_kib(qg.proc.pid)
    errors, times, bad_header = [], [], []
    for r in results:
        if isinstance(r, Exception):
            errors.append(repr(r))
            continue
        code, headers, secs = r
        times.append(secs)
        if code != 200:
            errors.append("HTTP %d" % code)
            continue
        rep = headers.get("quorumgate-replication", "")
        acked = rep.split(";")[0].replace("acked=", "").split(",")
        if sorted(acked) != sorted(all_nodes) or "pending" in rep:
            bad_header.append(rep)
    out = {
        "round": name, "calls": len(calls), "errors": len(errors), "error_samples": errors[:5],
        "not_fully_acknowledged": len(bad_header), "header_samples": bad_header[:3],
        "wall_s": round(wall, 3),
        "completion_s": {"min": round(min(times), 3) if times else None,
                         "p50": round(pct(times, 50), 3), "p90": round(pct(times, 90), 3),
                         "p99": round(pct(times, 99), 3), "max": round(max(times), 3) if times else None,
                         "mean": round(statistics.mean(times), 3) if times else None},
        "answered_before_lag": sum(1 for t in times if t < lag_s),
        "peak_held_at_once": s.peak_held,
        "rss_kib": {"before": before, "peak": s.peak_rss, "after": after,
                    "peak_minus_before": s.peak_rss - before, "after_minus_before": after - before},
    }
    return out


def login_all(sim, node, names, password_of, workers=16):
    def one(n):
        c = ZitiClient(sim.url(node), timeout=30)
        c.oidc_login(n, password_of[n]).expect(200)
        return c
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, names))


def enroll_all(sim, leader, clients, workers=16):
    def one(c):
        c2 = ZitiClient(sim.url(leader), timeout=30)
        c2.access_token = c.access_token
        c2.mfa_create().expect(201)
        return c2.mfa_secret()
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, clients))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000, help="identities / concurrent held calls (default 1000)")
    ap.add_argument("--lag-ms", type=int, default=20000,
                    help="lag of one follower (default 20000: longer than the simulator needs to commit "
                         "the N writes, so that all N answers are held at once)")
    ap.add_argument("--source", choices=("probe", "events"), default="probe",
                    help="gate.source: probe (default) or events (a `quorumgate relay` follows the "
                         "simulator's event files)")
    ap.add_argument("--workers", type=int, default=2, help="quorumgate worker threads (default 2)")
    ap.add_argument("--gate-timeout", default="120s")
    ap.add_argument("--health", default="200ms,1s,2",
                    help="health interval,timeout,fall (default 200ms,1s,2; a short timeout makes the "
                         "busy simulator flap, which exercises fencing in mode healthy)")
    ap.add_argument("--json", help="also write the report here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    raise_fd_limit()
    binary = os.environ.get("QUORUMGATE_BIN") or os.path.join(ROOT, "build", "quorumgate")
    workdir = tempfile.mkdtemp(prefix="qg-bench-held-")
    names = ["u%04d" % i for i in range(args.n)]
    password_of = {n: "pw-" + n for n in names}
    redis = sim = qg = relay = None
    report = {"n": args.n, "lag_ms": args.lag_ms, "workers": args.workers, "source": args.source,
              "binary": binary}
    try:
        redis = RedisServer(os.path.join(workdir, "redis"))
        redis.start()
        # a Python process answering N writes and the gate's probes is slow:
        # give its raft applies time rather than 500s (real controllers
        # commit such a load in well under their 5 s)
        sim_args = ["--nodes", "3", "--events-dir", os.path.join(workdir, "events"),
                    "--apply-timeout-ms", "120000", "--apply-wait-timeout-ms", "120000",
                    "--forward-timeout-ms", "120000"]
        for n in names:
            sim_args += ["--identity", "%s:%s" % (n, password_of[n])]
        os.makedirs(os.path.join(workdir, "sim"))
        sim = SimProcess(sim_args, workdir=os.path.join(workdir, "sim"))
        sim.start(timeout=60)
        key = os.path.join(workdir, "hmac.key")
        with open(key, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        cfg = {
            "workers": args.workers,
            "listeners": [{"address": "127.0.0.1:0"}],
            "admin": {"address": "127.0.0.1:0", "allow": ["127.0.0.0/8"]},
            "controllers": [{"id": n, "url": sim.url(n)} for n in sim.node_ids],
            "health": {"interval": args.health.split(",")[0], "fast_interval": "100ms",
                       "timeout": args.health.split(",")[1], "rise": 1, "fall": int(args.health.split(",")[2])},
            "redis": {"address": redis.address},
            "secrets": {"hmac_key_file": key},
            "log": {"level": "info", "error_log": "stderr", "access_log": os.path.join(workdir, "access.log")},
            "gate": {"timeout": args.gate_timeout, "source": args.source,
                     "legacy_sessions": "unconfirmed"},   # OIDC clients only
            "limits": {"max_concurrent_requests": max(4096, 4 * args.n)},
            # the simulator (one Python process) commits the N writes slowly:
            # let them queue there, not in quorumgate's pool or its retry policy
            "upstream": {"max_connections": max(64, args.n)},
            "retry": {"policies": {"mfa": {"per_try_timeout": "60s", "deadline": "60s"}}},
        }
        qg = Quorumgate(binary, workdir, cfg, name="quorumgate")   # assigned first: stopped even
        qg.start()                                                  # when the start fails
        if args.source == "events":
            from tests.integration.gate_support import Relay
            rcfg = dict(cfg, relay={"poll": "50ms", "metrics_address": "127.0.0.1:0",
                                    "sources": [{"controller": n, "path": sim.events_path(n)}
                                                for n in sim.node_ids]})
            relay = Relay(binary, workdir, rcfg)
            relay.start()
        leader = sim.control.leader()
        wait_until(lambda: qg.metrics().value("quorumgate_controller_leader", controller=leader) == 1,
                   timeout=10, what="quorumgate to know the leader")
        lagging = [n for n in sim.node_ids if n != leader][0]
        report["leader"], report["lagging"] = leader, lagging
        report["rss_kib_at_start"] = rss_kib(qg.proc.pid)

        t = time.monotonic()
        clients = login_all(sim, leader, names, password_of)
        secrets_ = enroll_all(sim, leader, clients)
        sim.control.wait_applied(timeout=60)
        report["setup_s"] = round(time.monotonic() - t, 1)
        print("enrolled %d identities in %.1fs" % (args.n, report["setup_s"]), file=sys.stderr)

        sim.control.set_lag(lagging, args.lag_ms)
        verifies = [("POST", MFA + "/verify", c.access_token, {"code": totp_now(s)}) for c, s in
                    zip(clients, secrets_)]
        r1 = run_round("verify", qg, verifies, args.lag_ms / 1000.0, sim.node_ids)
        print(json.dumps(r1), file=sys.stderr)
        st = sim.control.state()
        ids = [c.identity_id for c in clients]
        r1["all_nodes_verified_all"] = all(
            (node["mfas"].get(i) or {}).get("isVerified") is True for node in st["nodes"] for i in ids)

        deletes = [("DELETE", MFA, c.access_token, None, {"mfa-validation-code": totp_now(s)}) for c, s in
                   zip(clients, secrets_)]
        r2 = run_round("delete", qg, deletes, args.lag_ms / 1000.0, sim.node_ids)
        print(json.dumps(r2), file=sys.stderr)
        st = sim.control.state()
        r2["no_node_has_any"] = all(node["mfas"].get(i) is None for node in st["nodes"] for i in ids)

        # again, to show memory has settled: re-enrol (directly on the
        # leader) and verify through quorumgate once more
        secrets_ = enroll_all(sim, leader, clients)
        verifies = [("POST", MFA + "/verify", c.access_token, {"code": totp_now(s)}) for c, s in
                    zip(clients, secrets_)]
        r3 = run_round("verify-again", qg, verifies, args.lag_ms / 1000.0, sim.node_ids)
        print(json.dumps(r3), file=sys.stderr)

        m = qg.metrics()
        report["rounds"] = [r1, r2, r3]
        report["follower_state_reads"] = {
            n: sum(1 for x in sim.control.requests(n).get(n, []) if x["method"] == "GET" and x["path"] == MFA)
            for n in sim.node_ids if n != leader}
        report["metrics"] = {
            "replication_wait_seconds_count": {c: m.value("quorumgate_replication_wait_seconds_count", call=c)
                                               for c in ("verify", "delete")},
            "replication_wait_seconds_sum": {c: m.value("quorumgate_replication_wait_seconds_sum", call=c)
                                             for c in ("verify", "delete")},
            "replication_timeouts_total": m.value("quorumgate_replication_timeouts_total"),
            "replication_acks_total": {n: m.value("quorumgate_replication_acks_total", controller=n)
                                       for n in sim.node_ids},
            "redis_errors": {"%s" % lab["op"]: v for lab, v in m.get("quorumgate_redis_operations_total", [])
                             if lab["result"] == "error" and v},
            "fenced_identities": m.value("quorumgate_fenced_identities"),
        }
        report["rss_kib_at_end"] = rss_kib(qg.proc.pid)
        qg.stop()
        report["quorumgate_problems"] = qg.problems()
        # with another health setting the cluster view may flap: mode
        # healthy then answers without a follower it holds down (and fences
        # it), so only errors and quorumgate's own soundness are checked
        flapping = args.health != ap.get_default("health")
        ok = (all(r["errors"] == 0 for r in (r1, r2, r3)) and not report["quorumgate_problems"]
              and (flapping or (all(r["not_fully_acknowledged"] == 0 and r["answered_before_lag"] == 0
                                    for r in (r1, r2, r3))
                                and r1["all_nodes_verified_all"] and r2["no_node_has_any"])))
        report["ok"] = ok
    except Exception as e:  # noqa: BLE001 - reported, with what quorumgate said
        report["ok"] = False
        report["failure"] = repr(e)
        if qg is not None and qg.proc is not None:
            report["quorumgate_exit"] = qg.proc.poll()
            report["quorumgate_stderr_tail"] = qg.stderr_text()[-3000:]
    finally:
        for p in (qg, relay, sim, redis):
            if p is not None:
                p.stop()
        if not args.keep:
            import shutil
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            report["workdir"] = workdir
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0 if report.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
