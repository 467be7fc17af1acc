#!/usr/bin/env python3
"""The passthrough listener against HAProxy `mode tcp`, in the same run.

    bench/passthrough.sh [--duration 5] [--rounds 1] [--bin build-rel/quorumgate]

One upstream (nginx, one worker: a 21-byte JSON body on every path, a 1 MiB
file at /big.bin, the raft health path answering 200 "isLeader":true so that
quorumgate sees a leader) reached three ways, one after the other:
direct, quorumgate's passthrough listener (workers: 1, access log off), and
HAProxy 2.6 `mode tcp` (nbthread 1, no log).  Servers run on CPU 0, wrk on
CPU 1.  Four loads, each a warm-up and then `wrk -t1 --latency`:

  msgs   -c64 keep-alive, small answers: requests/s through the splice,
         p50/p99, proxy CPU per request
  lat1   -c1 keep-alive, small answers: latency a hop adds (vs direct)
  conns  -c64, `Connection: close`: every request a new TCP connection
         through the proxy, i.e. connections/s
  bulk   -c8 keep-alive, GET /big.bin (1 MiB): bytes/s

Reports each figure and the ratios quorumgate / HAProxy (target: >= 1.0 for
bytes/s and connections/s).  Every process is stopped by PID at exit.
Needs nginx, haproxy, wrk, taskset (scripts/install-deps.sh bench).
"""
import argparse
import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (bench/run.py: process, port and wrk helpers)

BIG = 1024 * 1024


def upstream_conf(tmp, port):
    head, t = run.nginx_common(tmp, "upstream")
    www = os.path.join(tmp, "www")
    os.makedirs(www, exist_ok=True)
    with open(os.path.join(www, "big.bin"), "wb") as f:
        f.write(os.urandom(BIG))
    return head + """http {{
{temps}    access_log off;
    sendfile on;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        default_type application/json;
        location = {hp} {{ return 200 '{hb}'; }}
        location = /big.bin {{ root {www}; default_type application/octet-stream; }}
        location / {{ return 200 '{body}'; }}
    }}
}}
""".format(temps=run.nginx_temp_paths(t), port=port, hp=run.HEALTH_PATH, hb=run.HEALTH_BODY,
           body=run.BODY, www=www)


def haproxy_tcp_conf(port, up_port):
    return """global
    nbthread 1
    maxconn 8000
defaults
    mode tcp
    no log
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server up 127.0.0.1:{up} maxconn 8000
""".format(port=port, up=up_port)


def quorumgate_conf(tmp, port, pt_port, admin_port, up_port):
    key = os.path.join(tmp, "hmac.key")
    with open(key, "w") as f:
        f.write("b3" * 32 + "\n")
    return """workers: 1
listeners:
  - address: "127.0.0.1:{port}"
admin:
  address: "127.0.0.1:{admin}"
controllers:
  - id: ctrl1
    url: "http://127.0.0.1:{up}"
health:
  interval: 500ms
secrets:
  hmac_key_file: {key}
log:
  level: warn
  access_log: "off"
passthrough:
  address: "127.0.0.1:{pt}"
  max_connections: 20000
""".format(port=port, pt=pt_port, admin=admin_port, up=up_port, key=key)


def start_upstream(tmp):
    port = run.free_port()
    conf = run.write(tmp, "upstream.conf", upstream_conf(tmp, port))
    p = run.start("upstream", ["nginx", "-p", tmp, "-e", os.path.join(tmp, "upstream", "boot.log"),
                               "-c", conf], tmp, cpu=0)
    run.wait_for(lambda: run.http_get(port)[0] == 200, 10, "the upstream", p)
    st, body = run.http_get(port, "/big.bin", timeout=5)
    assert st == 200 and len(body) == BIG, (st, len(body))
    return run.Server("upstream", p, port)


def start_quorumgate(tmp, args, up):
    port, pt, admin = run.free_port(), run.free_port(), run.free_port()
    conf = run.write(tmp, "quorumgate.yaml", quorumgate_conf(tmp, port, pt, admin, up.port))
    p = run.start("quorumgate", [args.bin, "-c", conf], tmp, cpu=0)
    # 200 through the splice = it listens and has seen the leader
    run.wait_for(lambda: run.http_get(pt)[0] == 200, 15, "quorumgate passthrough to the leader", p)
    return run.Server("quorumgate", p, pt, admin)


def start_haproxy(tmp, up):
    port = run.free_port()
    conf = run.write(tmp, "haproxy-tcp.cfg", haproxy_tcp_conf(port, up.port))
    p = run.start("haproxy", ["haproxy", "-db", "-f", conf], tmp, cpu=0)
    run.wait_for(lambda: run.http_get(port)[0] == 200, 10, "HAProxy", p)
    return run.Server("haproxy", p, port)


_BYTES = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}

LOADS = {
    # name: (connections, path, extra wrk args)
    "msgs": (64, "/", []),
    "lat1": (1, "/", []),
    "conns": (64, "/", ["-H", "Connection: close"]),
    "bulk": (8, "/big.bin", []),
}


def wrk(port, seconds, load):
    conns, path, extra = LOADS[load]
    argv = ["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--latency"] + extra + \
        ["http://127.0.0.1:%d%s" % (port, path)]
    if run.CPUS:
        argv = ["taskset", "-c", "1"] + argv
    p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode != 0:
        raise RuntimeError("wrk failed: %s" % p.stderr)
    r = run.parse_wrk(p.stdout)
    m = re.search(r"Transfer/sec:\s+([\d.]+)(B|KB|MB|GB|TB)", p.stdout)
    r["bytes_s"] = float(m.group(1)) * _BYTES[m.group(2)] if m else 0.0
    return r


def measure(target, up, load, args):
    wrk(target.port, args.warmup, load)
    before = run.cpu_seconds(target.proc.pid)
    r = wrk(target.port, args.duration, load)
    after = run.cpu_seconds(target.proc.pid)
    n = max(r["requests"], 1)
    r["cpu_us"] = (after - before) * 1e6 / n if target.proc is not up.proc else None
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(run.ROOT, "build-rel", "quorumgate"))
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--loads", default="msgs,lat1,conns,bulk")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    for tool in ("nginx", "haproxy", "wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit("bench: '%s' is missing (scripts/install-deps.sh bench)" % tool)
    if not os.access(args.bin, os.X_OK):
        sys.exit("bench: no quorumgate binary at %s (see bench/README.md)" % args.bin)
    run.CPUS = len(os.sched_getaffinity(0)) >= 2 and {0, 1} <= os.sched_getaffinity(0)
    if not run.CPUS:
        print("bench: WARNING fewer than 2 CPUs: nothing is pinned, numbers mean little")
    tmp = tempfile.mkdtemp(prefix="qg-bench-pt-")
    atexit.register(lambda: shutil.rmtree(tmp, ignore_errors=True))
    atexit.register(run.stop_all)
    signal.signal(signal.SIGTERM, run._on_signal)
    signal.signal(signal.SIGINT, run._on_signal)
    print("bench passthrough: %s; load average %s"
          % (args.bin, " ".join("%.2f" % x for x in os.getloadavg())))
    up = start_upstream(tmp)
    direct = run.Server("direct", up.proc, up.port)
    qg = start_quorumgate(tmp, args, up)
    hap = start_haproxy(tmp, up)
    targets = [direct, qg, hap]
    loads = args.loads.split(",")
    res = {(t.name, ld): [] for t in targets for ld in loads}
    for _ in range(args.rounds):
        for ld in loads:
            for t in targets:
                res[(t.name, ld)].append(measure(t, up, ld, args))

    def med(name, ld, key):
        xs = [r[key] for r in res[(name, ld)] if r[key] is not None]
        return run.median(xs) if xs else None

    print("\n%-6s %-11s %12s %10s %10s %12s %9s %6s" % (
        "load", "target", "req/s", "p50 ms", "p99 ms", "MiB/s", "cpu us/rq", "errors"))
    for ld in loads:
        for t in targets:
            rs = res[(t.name, ld)]
            cpu = med(t.name, ld, "cpu_us")
            print("%-6s %-11s %12.0f %10.3f %10.3f %12.1f %9s %6d" % (
                ld, t.name, med(t.name, ld, "rps"), med(t.name, ld, "p50"), med(t.name, ld, "p99"),
                med(t.name, ld, "bytes_s") / 2 ** 20, "%.1f" % cpu if cpu is not None else "-",
                sum(r["errors"] + r["non2xx"] for r in rs)))
    print("\nquorumgate / HAProxy:")
    for ld in loads:
        key = "bytes_s" if ld == "bulk" else "rps"
        q, h = med("quorumgate", ld, key), med("haproxy", ld, key)
        what = {"msgs": "requests/s", "lat1": "requests/s at 1 connection", "conns": "connections/s",
                "bulk": "bytes/s"}[ld]
        line = "  %-6s %s %s" % (ld, what, run.fmt_ratio(q, h))
        qc, hc = med("quorumgate", ld, "cpu_us"), med("haproxy", ld, "cpu_us")
        line += "; CPU per request %s" % run.fmt_ratio(qc, hc)
        print(line)
    for ld in ("lat1", "msgs"):
        if ld in loads:
            d = med("direct", ld, "p50")
            print("  %s added p50 latency: quorumgate %+.3f ms, HAProxy %+.3f ms (direct %.3f ms)" % (
                ld, med("quorumgate", ld, "p50") - d, med("haproxy", ld, "p50") - d, d))
    run.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
