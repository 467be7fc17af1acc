#!/usr/bin/env python3
"""quorumgate load benchmark: one upstream, four ways to reach it.

    bench/run.sh [--duration 10] [--rounds 1] [--access-log off|on]
                 [--only compare,idle,soak] [--soak-duration 60]
                 [--idle-connections 10000] [--bin build-rel/quorumgate]

compare  starts one small upstream (nginx, a 21-byte JSON body, keep-alive,
         the raft health path answering 200 "isLeader":true) and measures
         direct / quorumgate / nginx (proxy) / HAProxy with
         `wrk -t1 -c64 -d10s --latency` after a warm-up.  Servers (upstream
         and proxy) run on CPU 0, wrk on CPU 1.  Prints req/s, p50, p99,
         proxy CPU time per request (utime+stime of the proxy process from
         /proc/PID/stat, before/after) and ratios against nginx and HAProxy.
idle     holds N idle client connections to quorumgate (default 10,000),
         checks it still serves (fresh connections and a sample of the idle
         ones) and reports its RSS before, while held and after closing.
soak     runs wrk against quorumgate for --soak-duration seconds and
         samples its RSS along the way: memory must stay flat.

Everything runs on free loopback ports in a temporary directory and is
stopped by PID at exit (also on errors and ^C), with bounded waits.  Only
Debian packages are used: nginx, haproxy, wrk, util-linux (taskset).
"""
import argparse
import atexit
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

BODY = '{"data":{},"meta":{}}'  # 21 bytes
HEALTH_BODY = '{"data":{},"meta":{},"raft":{"isLeader":true,"isRaftEnabled":true}}'
HEALTH_PATH = "/health-checks/controller/raft"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# --------------------------------------------------------------------------
# processes: everything we start is recorded and stopped by PID at exit

_procs = []


def _stop(p, timeout=5.0):
    if p.poll() is not None:
        return
    try:
        os.kill(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            pass


def stop_all():
    while _procs:
        _stop(_procs.pop())


def _on_signal(signum, frame):
    stop_all()
    sys.exit(128 + signum)


def start(name, argv, tmp, cpu=None, env=None):
    if cpu is not None and CPUS:
        argv = ["taskset", "-c", str(cpu)] + argv
    out = open(os.path.join(tmp, name + ".out"), "wb")
    err = open(os.path.join(tmp, name + ".err"), "wb")
    p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                         cwd=tmp, env=env)
    out.close()
    err.close()
    p.bench_name = name
    _procs.append(p)
    return p


def stop(p):
    _stop(p)
    if p in _procs:
        _procs.remove(p)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/", timeout=1.0, tls=None):
    """(status, body) of a GET over a fresh connection, or (0, b'')."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            s = raw
            if tls is None and TLS:
                tls = True
            if tls:
                ctx = ssl.create_default_context(cafile=TLS["ca"])
                s = ctx.wrap_socket(raw, server_hostname="localhost")
            s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                       % path).encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body
    except (OSError, ValueError, IndexError):
        return 0, b""


def wait_for(pred, timeout, what, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s exited (%s) while waiting for %s; see %s.err"
                               % (proc.bench_name, proc.returncode, what, proc.bench_name))
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out after %.0fs waiting for %s" % (timeout, what))


def _stat(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def _family(pid):
    """pid and its live children (nginx's workers under --workers)."""
    out = [pid]
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == pid:
            continue
        try:
            if int(_stat(int(d))[1]) == pid:
                out.append(int(d))
        except (OSError, IndexError):
            continue
    return out


def sched_totals(pid):
    """(CPU seconds, context switches) of the whole process (every thread)
    and its live children, from /proc/PID/task/TID/schedstat (the
    scheduler's own nanoseconds, exact, where /proc/PID/stat counts clock
    ticks) and .../status (voluntary + involuntary switches).  None when
    the kernel keeps no schedstat."""
    ns = switches = 0
    try:
        for p in _family(pid):
            for tid in os.listdir("/proc/%d/task" % p):
                base = "/proc/%d/task/%s/" % (p, tid)
                try:
                    with open(base + "schedstat") as f:
                        ns += int(f.read().split()[0])
                    with open(base + "status") as f:
                        for line in f:
                            if "ctxt_switches:" in line:
                                switches += int(line.split()[1])
                except (OSError, ValueError, IndexError):
                    continue  # a thread that just ended
    except OSError:
        return None
    return ns / 1e9, switches


def cpu_seconds(pid):
    """utime+stime of the whole process (all threads) and of its live
    children (nginx's workers under --workers), in seconds."""
    fields = _stat(pid)
    total = int(fields[11]) + int(fields[12])
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == pid:
            continue
        try:
            f = _stat(int(d))
        except (OSError, IndexError):
            continue
        if int(f[1]) == pid:
            total += int(f[11]) + int(f[12])
    return total / CLK_TCK


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --------------------------------------------------------------------------
# generated configurations

def nginx_common(tmp, name):
    t = os.path.join(tmp, name)
    os.makedirs(t, exist_ok=True)
    return """daemon off;
master_process {master};
worker_processes {workers};
worker_rlimit_nofile 30000;
pid {t}/nginx.pid;
error_log {t}/error.log warn;
events {{ worker_connections 20000; }}
""".format(t=t, master="on" if WORKERS > 1 else "off", workers=WORKERS), t


def nginx_temp_paths(t):
    return "".join("    %s_temp_path %s/%s;\n" % (k, t, k)
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def nginx_ssl():
    """The listen suffix and certificate lines of a TLS server (--tls)."""
    if not TLS:
        return ""
    return (" ssl;\n        ssl_certificate %s;\n        ssl_certificate_key %s;\n"
            "        ssl_protocols TLSv1.3;\n        ssl_session_tickets on"
            % (TLS["cert"], TLS["key"]))


def make_tls(tmp):
    """A CA and a certificate for localhost / 127.0.0.1 (openssl CLI)."""
    d = os.path.join(tmp, "tls")
    os.makedirs(d, exist_ok=True)
    p = {k: os.path.join(d, k + ".pem") for k in ("ca", "ca_key", "cert", "key")}

    def run(*a):
        subprocess.run(["openssl"] + list(a), check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", p["ca_key"], "-out", p["ca"], "-days", "2", "-subj", "/CN=bench CA")
    csr, ext = os.path.join(d, "server.csr"), os.path.join(d, "server.ext")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", p["key"], "-out", csr, "-subj", "/CN=localhost")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", csr, "-CA", p["ca"], "-CAkey", p["ca_key"], "-CAcreateserial",
        "-out", p["cert"], "-days", "2", "-extfile", ext)
    return p


def upstream_conf(tmp, port):
    head, t = nginx_common(tmp, "upstream")
    return head + """http {{
{temps}    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096{ssl};
        default_type application/json;
        location = {hp} {{ return 200 '{hb}'; }}
        location / {{ return 200 '{body}'; }}
    }}
}}
""".format(temps=nginx_temp_paths(t), port=port, hp=HEALTH_PATH, hb=HEALTH_BODY, body=BODY,
           ssl=nginx_ssl())


# --peer-fields on: nginx and HAProxy set the fields quorumgate sets on every
# forwarded request (X-Forwarded-For/-Proto/-Host, Forwarded, a request id sent
# up and back), as a configuration in front of controllers would
NGINX_FIELDS = """\
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header Forwarded "for=$remote_addr;proto=$scheme;host=\\"$http_host\\"";
            proxy_set_header X-Request-Id $request_id;
            add_header X-Request-Id $request_id always;
"""
HAPROXY_FIELDS = """\
    option forwardfor
    unique-id-format %[rand,hex]%[rand,hex]
    unique-id-header X-Request-Id
    http-request set-header X-Forwarded-Proto PROTO
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header Forwarded for=%[src];proto=PROTO;host=\\"%[req.hdr(host)]\\"
    http-response set-header X-Request-Id %[unique-id]
"""
PEER_FIELDS = False  # --peer-fields
BATCH_SENDS = True  # --batch-sends


def nginx_proxy_conf(tmp, port, up_port, access_log):
    head, t = nginx_common(tmp, "nginx-proxy")
    log = ("access_log %s/access.log combined buffer=64k flush=1s;" % t
           if access_log else "access_log off;")
    return head + """http {{
{temps}    {log}
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream up {{
        server 127.0.0.1:{up};
        keepalive 64;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096{ssl};
        location / {{
            proxy_pass {scheme}://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
{fields}{pssl}        }}
    }}
}}
""".format(temps=nginx_temp_paths(t), log=log, port=port, up=up_port, ssl=nginx_ssl(),
           scheme="https" if TLS else "http", fields=NGINX_FIELDS if PEER_FIELDS else "",
           pssl=("            proxy_ssl_verify on;\n"
                 "            proxy_ssl_protocols TLSv1.3;\n"
                 "            proxy_ssl_trusted_certificate %s;\n"
                 "            proxy_ssl_name localhost;\n"
                 "            proxy_ssl_server_name on;\n"
                 "            proxy_ssl_session_reuse on;\n" % TLS["ca"]) if TLS else "")


def haproxy_pem():
    """HAProxy wants the certificate and its key in one file."""
    path = TLS["cert"] + ".haproxy"
    with open(path, "w") as f:
        f.write(open(TLS["cert"]).read() + open(TLS["key"]).read())
    return path


def haproxy_conf(tmp, port, up_port, access_log):
    log = ("    log stdout format raw local0 info\n" if access_log else "")
    opt = ("    option httplog\n    log global\n" if access_log else "    no log\n")
    return """global
    nbthread {workers}
    maxconn {maxconn}
{log}defaults
    mode http
{opt}    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
frontend fe
    bind 127.0.0.1:{port}{bssl}
{fields}    default_backend be
backend be
    server up 127.0.0.1:{up} maxconn 1000{sssl}
""".format(log=log, opt=opt, port=port, up=up_port, workers=WORKERS,
           fields=(HAPROXY_FIELDS.replace("PROTO", "https" if TLS else "http")
                   if PEER_FIELDS else ""),
           maxconn=HAPROXY_MAXCONN,
           bssl=(" ssl crt %s ssl-min-ver TLSv1.3" % haproxy_pem()) if TLS else "",
           sssl=(" ssl verify required ca-file %s sni str(localhost) verifyhost localhost"
                 % TLS["ca"]) if TLS else "")


def quorumgate_conf(tmp, port, admin_port, up_port, access_log):
    key = os.path.join(tmp, "hmac.key")
    with open(key, "w") as f:
        f.write("b3" * 32 + "\n")
    tls_listen = tls_up = ""
    if TLS:
        tls_listen = '    tls:\n      cert: "%s"\n      key: "%s"\n' % (TLS["cert"], TLS["key"])
        tls_up = ('  tls:\n    ca: "%s"\n    verify: true\n    server_name: localhost\n'
                  % TLS["ca"])
    return """workers: {workers}
listeners:
  - address: "127.0.0.1:{port}"
{tls_listen}admin:
  address: "127.0.0.1:{admin}"
controllers:
  - id: ctrl1
    url: "{scheme}://{uphost}:{up}"
upstream:
  max_connections: 64
  batch_sends: {batch}
{tls_up}health:
  interval: 500ms
limits:
  max_connections: 20000
secrets:
  hmac_key_file: {key}
log:
  level: warn
  access_log: {alog}
""".format(port=port, admin=admin_port, up=up_port, key=key, tls_listen=tls_listen,
           workers=WORKERS, uphost=UPSTREAM_HOST,
           batch="true" if BATCH_SENDS else "false",
           tls_up=tls_up, scheme="https" if TLS else "http",
           alog=os.path.join(tmp, "quorumgate-access.log") if access_log else "off")


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# --------------------------------------------------------------------------
# servers

class Server:
    def __init__(self, name, proc, port, admin_port=None):
        self.name, self.proc, self.port, self.admin_port = name, proc, port, admin_port


def start_upstream(tmp):
    port = free_port()
    conf = write(tmp, "upstream.conf", upstream_conf(tmp, port))
    p = start("upstream", ["nginx", "-p", tmp, "-e", os.path.join(tmp, "upstream", "boot.log"),
                           "-c", conf], tmp, cpu=0)
    wait_for(lambda: http_get(port)[0] == 200, 10, "the upstream", p)
    st, body = http_get(port, HEALTH_PATH)
    assert st == 200 and body.decode() == HEALTH_BODY, (st, body)
    assert http_get(port)[1].decode() == BODY
    return Server("upstream", p, port)


def start_quorumgate(tmp, args, up, wrap=(), wait=15):
    port, admin = free_port(), free_port()
    conf = write(tmp, "quorumgate.yaml",
                 quorumgate_conf(tmp, port, admin, up.port, args.access_log == "on"))
    p = start("quorumgate", list(wrap) + [args.bin, "-c", conf], tmp, cpu=0)
    # 200 through the proxy = it listens and has seen the leader
    wait_for(lambda: http_get(port)[0] == 200, wait, "quorumgate to route to the leader", p)
    return Server("quorumgate", p, port, admin)


def start_nginx_proxy(tmp, args, up, wrap=(), wait=10):
    port = free_port()
    conf = write(tmp, "nginx-proxy.conf",
                 nginx_proxy_conf(tmp, port, up.port, args.access_log == "on"))
    p = start("nginx-proxy", list(wrap) + ["nginx", "-p", tmp, "-e",
                                           os.path.join(tmp, "nginx-proxy", "boot.log"),
                                           "-c", conf],
              tmp, cpu=0)
    wait_for(lambda: http_get(port)[0] == 200, wait, "the nginx proxy", p)
    return Server("nginx", p, port)


def start_haproxy(tmp, args, up, wrap=(), wait=10):
    port = free_port()
    conf = write(tmp, "haproxy.cfg", haproxy_conf(tmp, port, up.port, args.access_log == "on"))
    p = start("haproxy", list(wrap) + ["haproxy", "-db", "-f", conf], tmp, cpu=0)
    wait_for(lambda: http_get(port)[0] == 200, wait, "HAProxy", p)
    return Server("haproxy", p, port)


# --------------------------------------------------------------------------
# wrk

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out):
    r = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
         "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for pct in ("50", "99"):
        r["p" + pct] = _ms(re.search(r"^\s+%s%%\s+(\S+)" % pct, out, re.M).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["errors"] = sum(map(int, m.groups())) if m else 0
    return r


def wrk(port, seconds, conns, path="/"):
    argv = ["wrk", "-t%d" % WORKERS, "-c%d" % conns, "-d%ds" % seconds, "--latency",
            "%s://127.0.0.1:%d%s" % ("https" if TLS else "http", port, path)]
    if CPUS:
        argv = ["taskset", "-c", "1"] + argv
    p = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if p.returncode != 0:
        raise RuntimeError("wrk failed: %s" % p.stderr)
    return parse_wrk(p.stdout)


def measure(target, up, args):
    """Warm-up, then one measured wrk run; CPU of the proxy and upstream."""
    wrk(target.port, args.warmup, args.connections, args.path)
    procs = {"proxy": target.proc, "upstream": up.proc}
    before = {k: sched_totals(p.pid) or (cpu_seconds(p.pid), None) for k, p in procs.items()}
    r = wrk(target.port, args.duration, args.connections, args.path)
    after = {k: sched_totals(p.pid) or (cpu_seconds(p.pid), None) for k, p in procs.items()}
    n = max(r["requests"], 1)
    r["up_us"] = (after["upstream"][0] - before["upstream"][0]) * 1e6 / n
    proxy = target.proc is not up.proc
    r["cpu_us"] = (after["proxy"][0] - before["proxy"][0]) * 1e6 / n if proxy else None
    # context switches of the proxy per request: on one CPU with the
    # upstream, each is a wake-up of the other side (bench/RESULTS.md)
    r["cs"] = ((after["proxy"][1] - before["proxy"][1]) / n
               if proxy and after["proxy"][1] is not None else None)
    return r


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def fmt_ratio(a, b):
    return "%.2f" % (a / b) if a is not None and b else "-"


def compare(tmp, args):
    print("== compare: wrk -t%d -c%d -d%ds --latency %s (after a %ds warm-up); %s; "
          "access logs %s for every proxy%s; the proxies' order rotates each round"
          % (WORKERS, args.connections, args.duration, args.path, args.warmup,
             "servers on CPU 0, wrk on CPU 1" if CPUS else "nothing pinned",
             args.access_log, ("; TLS end to end" if TLS else "") +
             ("; nginx and HAProxy set the forwarded fields and a request id too"
              if PEER_FIELDS else "") +
             ("" if BATCH_SENDS else "; quorumgate sends one request per system call "
              "(batch_sends off)")),
          flush=True)
    up = start_upstream(tmp)
    starters = {"quorumgate": start_quorumgate, "nginx": start_nginx_proxy,
                "haproxy": start_haproxy}
    names = ["direct", "quorumgate", "nginx", "haproxy"]
    runs = {n: [] for n in names}
    proxies = names[1:]
    for rnd in range(args.rounds):
        # the proxies take turns at each place in the round: the machine's
        # speed drifts over minutes, and a fixed order would hand one of
        # them the same part of every round
        k = rnd % len(proxies)
        for name in ["direct"] + proxies[k:] + proxies[:k]:
            srv = up if name == "direct" else starters[name](tmp, args, up)
            try:
                r = measure(srv, up, args)
            finally:
                if srv is not up:
                    stop(srv.proc)
            runs[name].append(r)
            print("   round %d %-10s %9.0f req/s  p50 %.3f ms  p99 %.3f ms  cpu %s us/req  "
                  "switches %s/req  errors %d non-2xx %d"
                  % (rnd + 1, name, r["rps"], r["p50"], r["p99"],
                     "%.2f" % r["cpu_us"] if r["cpu_us"] is not None else "-",
                     "%.3f" % r["cs"] if r["cs"] is not None else "-",
                     r["errors"], r["non2xx"]), flush=True)
    stop(up.proc)

    res = {}
    for n in names:
        rs = runs[n]
        res[n] = {k: (median([x[k] for x in rs]) if rs[0][k] is not None else None)
                  for k in ("rps", "p50", "p99", "cpu_us", "up_us", "cs")}
        res[n]["bad"] = sum(x["errors"] + x["non2xx"] for x in rs)
    print()
    hdr = ("%-11s %10s %9s %9s %11s %10s | %9s %9s | %9s %9s | %9s %9s | %6s"
           % ("target", "req/s", "p50 ms", "p99 ms", "proxy us/rq", "upstr us/rq",
              "rps/ngx", "rps/hap", "p99/ngx", "p99/hap", "cpu/ngx", "cpu/hap", "errors"))
    print(hdr)
    print("-" * len(hdr))
    ngx, hap = res["nginx"], res["haproxy"]
    for n in names:
        r = res[n]
        print("%-11s %10.0f %9.3f %9.3f %11s %10.2f | %9s %9s | %9s %9s | %9s %9s | %6d"
              % (n, r["rps"], r["p50"], r["p99"],
                 "%.2f" % r["cpu_us"] if r["cpu_us"] is not None else "-", r["up_us"],
                 fmt_ratio(r["rps"], ngx["rps"]), fmt_ratio(r["rps"], hap["rps"]),
                 fmt_ratio(r["p99"], ngx["p99"]), fmt_ratio(r["p99"], hap["p99"]),
                 fmt_ratio(r["cpu_us"], ngx["cpu_us"]), fmt_ratio(r["cpu_us"], hap["cpu_us"]),
                 r["bad"]))
    print("(medians of %d round(s); ratios > 1 mean more req/s, a worse p99, more CPU; "
          "CPU from /proc/PID/task/*/schedstat)" % args.rounds)
    print("context switches per request (proxy, median): %s"
          % ", ".join("%s %.3f" % (n, res[n]["cs"]) for n in proxies
                      if res[n]["cs"] is not None))
    q = res["quorumgate"]
    # issue 16's goal: >= 1.10x nginx and >= 1.15x HAProxy req/s, p99 and
    # CPU per request no more than nginx's; over TLS >= 1.0x both
    want_ngx, want_hap = (1.0, 1.0) if TLS else (1.10, 1.15)
    parts = [("req/s >= %.2fx nginx" % want_ngx, q["rps"] >= want_ngx * ngx["rps"]),
             ("req/s >= %.2fx HAProxy" % want_hap, q["rps"] >= want_hap * hap["rps"])]
    if not TLS:
        parts += [("p99 <= nginx's", q["p99"] <= ngx["p99"]),
                  ("CPU/request <= nginx's", q["cpu_us"] <= ngx["cpu_us"])]
    missed = [what for what, ok in parts if not ok]
    print("issue 16 goal (%s): %s" % ("; ".join(w for w, _ in parts),
                                      "met" if not missed else
                                      "NOT met: " + "; ".join(missed)))
    return res


def ab(tmp, args):
    """Several quorumgate binaries, interleaved round by round on the same
    upstream (before/after numbers for one change on a noisy machine)."""
    bins = [os.path.abspath(b) for b in args.ab.split(",")]
    print("== A/B: %s; %d interleaved rounds of wrk -c%d -d%ds"
          % (", ".join(bins), args.rounds, args.connections, args.duration), flush=True)
    up = start_upstream(tmp)
    runs = {b: [] for b in bins}
    for rnd in range(args.rounds):
        for b in bins:
            args.bin = b
            srv = start_quorumgate(tmp, args, up)
            try:
                runs[b].append(measure(srv, up, args))
            finally:
                stop(srv.proc)
    stop(up.proc)
    for b in bins:
        rs = runs[b]
        print("   %-40s req/s %8.0f  p50 %6.3f ms  p99 %7.3f ms  cpu %6.2f us/req   "
              "(req/s per round: %s)"
              % (b, median([r["rps"] for r in rs]), median([r["p50"] for r in rs]),
                 median([r["p99"] for r in rs]), median([r["cpu_us"] for r in rs]),
                 " ".join("%.0f" % r["rps"] for r in rs)))
    return runs


# --------------------------------------------------------------------------
# idle connections

def rss_tree_kib(pid):
    """RSS of pid and its children (nginx's master and workers)."""
    kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                          text=True).stdout.split()
    return rss_kib(pid) + sum(rss_kib(int(k)) for k in kids)


def idle_one(tmp, args, up, name, starter):
    """n idle client connections (TLS ones with --tls: handshake done) held
    open to one proxy; RSS of its processes before, while held, after."""
    n = args.idle_connections
    srv = starter(tmp, args, up)
    pid = srv.proc.pid
    rss0 = rss_tree_kib(pid)
    ctx = ssl.create_default_context(cafile=TLS["ca"]) if TLS else None
    socks, failed = [], 0
    t0 = time.monotonic()
    for i in range(n):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", srv.port))
            if ctx:
                s = ctx.wrap_socket(s, server_hostname="localhost")
            socks.append(s)
        except OSError:
            failed += 1
            s.close()
    t_conn = time.monotonic() - t0

    def gauge():
        st, body = http_get(srv.admin_port, "/metrics", timeout=5, tls=False)
        m = re.search(rb"^quorumgate_client_connections(?:\{[^}]*\})? (\S+)", body, re.M)
        return int(float(m.group(1))) if st == 200 and m else -1
    seen = None
    if name == "quorumgate":
        # quorumgate has accepted them all when its gauge says so
        try:
            wait_for(lambda: gauge() >= len(socks), 30, "quorumgate to accept every connection",
                     srv.proc)
        except RuntimeError as e:
            print("   " + str(e))
        seen = gauge()
    time.sleep(args.idle_hold)
    rss_held = rss_tree_kib(pid)
    fresh_ok = sum(http_get(srv.port)[0] == 200 for _ in range(20))
    # a request on every 100th idle connection
    sample = socks[::100]
    used_ok = 0
    for s in sample:
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(BODY.encode()):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            used_ok += data.startswith(b"HTTP/1.1 200")
        except OSError:
            pass
    alive = srv.proc.poll() is None
    for s in socks:
        s.close()
    if name == "quorumgate":
        wait_for(lambda: gauge() == 0, 30, "quorumgate to see the connections close", srv.proc)
    time.sleep(0.5)
    rss_after = rss_tree_kib(pid)
    ok = (alive and failed == 0 and (seen is None or seen >= n) and fresh_ok == 20
          and used_ok == len(sample))
    per = (rss_held - rss0) / max(len(socks), 1)
    print("   %-10s connected %d/%d in %.1fs (failed %d)%s; %d/20 fresh and %d/%d idle-connection "
          "requests ok; RSS before %.1f MiB, held %.1f MiB (%.1f KiB each), after close %.1f MiB"
          % (name, len(socks), n, t_conn, failed,
             "; quorumgate_client_connections %d" % seen if seen is not None else "",
             fresh_ok, used_ok, len(sample), rss0 / 1024, rss_held / 1024, per,
             rss_after / 1024), flush=True)
    stop(srv.proc)
    return ok, per


def idle(tmp, args):
    n = args.idle_connections
    print("\n== idle: %d idle %sclient connections held %ds%s" % (
        n, "TLS " if TLS else "", args.idle_hold,
        "; quorumgate, nginx, HAProxy" if args.idle_peers == "on" else ""), flush=True)
    up = start_upstream(tmp)
    targets = [("quorumgate", start_quorumgate)]
    if args.idle_peers == "on":
        targets += [("nginx", start_nginx_proxy), ("haproxy", start_haproxy)]
    res = {name: idle_one(tmp, args, up, name, starter) for name, starter in targets}
    stop(up.proc)
    ok = res["quorumgate"][0]
    if args.idle_peers == "on":
        q = res["quorumgate"][1]
        print("   KiB per idle connection: quorumgate %.1f, nginx %.1f, HAProxy %.1f"
              % (q, res["nginx"][1], res["haproxy"][1]))
    print("   idle connections: %s" % ("OK" if ok else "FAILED"))
    return ok


# --------------------------------------------------------------------------
# memory under load

def soak(tmp, args):
    secs = args.soak_duration
    print("\n== soak: quorumgate RSS under load (wrk -c%d for %ds)" % (args.connections, secs),
          flush=True)
    up = start_upstream(tmp)
    qg = start_quorumgate(tmp, args, up)
    pid = qg.proc.pid
    rss_idle = rss_kib(pid)
    wrk(qg.port, args.warmup, args.connections, args.path)
    argv = ["wrk", "-t1", "-c%d" % args.connections, "-d%ds" % secs, "--latency",
            "http://127.0.0.1:%d%s" % (qg.port, args.path)]
    if CPUS:
        argv = ["taskset", "-c", "1"] + argv
    w = start("wrk-soak", argv, tmp)
    samples = []
    t0 = time.monotonic()
    step = max(1.0, secs / 12.0)
    time.sleep(step / 2)
    while time.monotonic() - t0 < secs - step / 2 and w.poll() is None:
        samples.append((time.monotonic() - t0, rss_kib(pid)))
        time.sleep(step)
    w.wait(secs + 30)
    _procs.remove(w)
    with open(os.path.join(tmp, "wrk-soak.out")) as f:
        r = parse_wrk(f.read())
    rss_end = rss_kib(pid)
    first, last = samples[0][1], samples[-1][1]
    peak = max(kb for _, kb in samples)
    growth = last - first
    flat = growth <= max(1024, first * 0.05)
    print("   %.0f req/s, p99 %.3f ms, %d requests, errors %d, non-2xx %d"
          % (r["rps"], r["p99"], r["requests"], r["errors"], r["non2xx"]))
    print("   RSS idle %.1f MiB; under load every %.0fs: %s MiB (peak %.1f); after the load "
          "%.1f MiB" % (rss_idle / 1024, step,
                        " ".join("%.1f" % (kb / 1024) for _, kb in samples),
                        peak / 1024, rss_end / 1024))
    print("   first to last sample under load: %+.2f MiB -> %s"
          % (growth / 1024, "flat" if flat else "GROWING"))
    stop(qg.proc)
    stop(up.proc)
    return flat and r["errors"] == 0 and r["non2xx"] == 0


# --------------------------------------------------------------------------
# cost: instructions and system calls per request (deterministic, for A/B)

def drive(port, total, conns=8):
    """Exactly `total` keep-alive GETs over `conns` connections, each
    connection one request at a time; returns the number answered 200."""
    import selectors
    sel = selectors.DefaultSelector()
    req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    state, sent, ok = {}, 0, 0
    for i in range(min(conns, total)):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        state[s] = b""
        s.sendall(req)
        sent += 1
    deadline = time.monotonic() + 600
    while state and time.monotonic() < deadline:
        for key, _ in sel.select(5):
            s = key.fileobj
            data = s.recv(65536)
            if not data:
                sel.unregister(s)
                s.close()
                del state[s]
                continue
            state[s] += data
            buf = state[s]
            if b"\r\n\r\n" in buf and buf.endswith(BODY.encode()):
                ok += buf.startswith(b"HTTP/1.1 200")
                state[s] = b""
                if sent < total:
                    s.sendall(req)
                    sent += 1
                else:
                    sel.unregister(s)
                    s.close()
                    del state[s]
    return ok


def cost_memset(dump):
    """Instructions callgrind counted inside memset (self cost).  glibc
    clears large areas with `rep stosb`, which callgrind counts once per
    byte: libmicrohttpd's per-request pool clearing shows up here as about
    one instruction per byte cleared, far above its cost on the CPU."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", dump],
                         capture_output=True, text=True, timeout=120).stdout
    return sum(int(m.group(1).replace(",", "")) for m in
               re.finditer(r"^\s*([\d,]+) \([ \d.]+%\)\s+\S*memset\S*", out, re.M))


def cost_one(tmp, args, up, name, starter):
    """System calls and user-space instructions per request of one proxy
    (its own process only; the upstream is not counted)."""
    n = args.cost_requests
    res = {}
    if shutil.which("strace"):
        srv = starter(tmp, args, up)
        drive(srv.port, 2000)
        out = os.path.join(tmp, "strace-%s.txt" % name)
        st = start("strace", ["strace", "-c", "-f", "-o", out, "-p", str(srv.proc.pid)], tmp)
        time.sleep(1.0)
        ok = drive(srv.port, n)
        os.kill(st.pid, signal.SIGINT)
        st.wait(30)
        _procs.remove(st)
        calls = {}
        with open(out) as f:
            for line in f:
                m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)$", line)
                if m and m.group(3) != "total":
                    calls[m.group(3)] = int(m.group(1))
        res["syscalls"] = sum(calls.values()) / n
        top = sorted(calls.items(), key=lambda kv: -kv[1])[:8]
        print("   %-10s system calls per request: %.2f (%s); %d/%d answered 200"
              % (name, res["syscalls"], ", ".join("%s %.2f" % (k, v / n) for k, v in top), ok, n),
              flush=True)
        stop(srv.proc)
    if shutil.which("valgrind"):
        cg = os.path.join(tmp, "callgrind-%s.out" % name)
        srv = starter(tmp, args, up, wrap=["valgrind", "--tool=callgrind",
                                           "--callgrind-out-file=" + cg + ".%p",
                                           "--dump-instr=no",
                                           # every dump names its functions in full
                                           # (callgrind_annotate reads each alone)
                                           "--compress-strings=no"], wait=60)
        p = srv.proc
        drive(srv.port, 1000)
        # every dump restarts the counters: the second one holds the n requests
        subprocess.run(["callgrind_control", "--dump=warmup", str(p.pid)],
                       capture_output=True, timeout=60, cwd=tmp)
        ok = drive(srv.port, n)
        subprocess.run(["callgrind_control", "--dump=bench", str(p.pid)], capture_output=True,
                       timeout=60, cwd=tmp)
        stop(p)
        dumps = sorted(f for f in os.listdir(tmp) if f.startswith("callgrind-%s.out." % name)
                       and not f.endswith(".txt"))
        total = memset = 0
        for d in dumps:
            with open(os.path.join(tmp, d)) as f:
                text = f.read()
            m = re.search(r"^totals: (\d+)", text, re.M)
            if m and re.search(r"^desc: Trigger: .*bench", text, re.M):
                total += int(m.group(1))
                memset += cost_memset(os.path.join(tmp, d))
        res["instructions"] = total / n
        res["memset"] = memset / n
        print("   %-10s instructions per request (user space, callgrind): %.0f, of which memset %.0f;"
              " %d/%d answered 200" % (name, res["instructions"], res["memset"], ok, n), flush=True)
        if args.profile_dir:
            for d in dumps:
                shutil.copy(os.path.join(tmp, d), args.profile_dir)
    return res


def cost(tmp, args):
    """Per-request cost that does not depend on how busy the machine is:
    instructions (valgrind callgrind, user space only) and system calls
    (strace -c), over a fixed number of requests, for quorumgate and (with
    --cost-peers, the default) nginx and HAProxy in front of the same upstream."""
    n = args.cost_requests
    print("\n== cost: %d requests over 8 connections (after a warm-up)" % n, flush=True)
    up = start_upstream(tmp)
    targets = [("quorumgate", start_quorumgate)]
    if args.cost_peers == "on":
        targets += [("nginx", start_nginx_proxy), ("haproxy", start_haproxy)]
    res = {}
    for name, starter in targets:
        if name != "quorumgate" and not shutil.which(name):
            print("   %-10s not installed: skipped" % name)
            continue
        res[name] = cost_one(tmp, args, up, name, starter)
    if len(res) > 1 and "quorumgate" in res:
        q = res["quorumgate"]
        for name, r in res.items():
            if name == "quorumgate":
                continue
            print("   quorumgate / %s: system calls %s, instructions %s" % (
                name,
                "%.2fx" % (q["syscalls"] / r["syscalls"]) if r.get("syscalls") else "-",
                "%.2fx" % (q["instructions"] / r["instructions"]) if r.get("instructions") else "-"))
    stop(up.proc)
    return res.get("quorumgate", {})


# --------------------------------------------------------------------------
# profile (not part of the default run)

def flame_tools():
    """inferno's collapse and flamegraph commands (cargo install inferno), or None."""
    found = []
    for tool in ("inferno-collapse-perf", "inferno-flamegraph"):
        path = shutil.which(tool) or next(
            (p for p in (os.path.expanduser("~/.cargo/bin/" + tool),)
             if os.access(p, os.X_OK)), None)
        if not path:
            return None
        found.append(path)
    return found


def perf_profile(tmp, args, up, name, starter, out):
    """perf record (cpu-clock) of one proxy -- every process of it -- under
    wrk; its report by dso and symbol (returned), and with inferno installed
    the folded stacks, a flame graph (SVG) and CPU per request split into
    user space and kernel."""
    srv = starter(tmp, args, up)
    pids = [srv.proc.pid] + [int(x) for x in subprocess.run(
        ["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True).stdout.split()]
    wrk(srv.port, args.warmup, args.connections, args.path)
    data = out + ".perf.data"
    rec = start("perf", ["perf", "record", "-e", "cpu-clock", "-F", "2999",
                         "--call-graph", args.call_graph, "-o", data,
                         "-p", ",".join(map(str, pids))], tmp)
    time.sleep(0.5)
    r = wrk(srv.port, args.duration, args.connections, args.path)
    os.kill(rec.pid, signal.SIGINT)
    rec.wait(60)
    _procs.remove(rec)
    stop(srv.proc)
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children", "--stdio", "-g", "none",
                          "--percent-limit", "0.5", "--sort", "dso,symbol"],
                         capture_output=True, text=True, timeout=600).stdout
    with open(out + ".perf.txt", "w") as f:
        f.write(rep)
    tools = flame_tools()
    svg, split = None, ""
    if tools:
        script = subprocess.run(["perf", "script", "-i", data], capture_output=True,
                                timeout=600).stdout
        # --all: kernel frames end in _[k], so the user/kernel split can be read
        folded = subprocess.run([tools[0], "--all"], input=script, capture_output=True,
                                timeout=600).stdout
        with open(out + ".folded", "wb") as f:
            f.write(folded)
        total = kernel = 0
        for line in folded.decode(errors="replace").splitlines():
            stack, _, weight = line.rpartition(" ")
            total += int(weight)
            kernel += int(weight) if stack.endswith("_[k]") else 0
        n = max(r["requests"], 1)
        # cpu-clock weights are nanoseconds of CPU
        split = ("; %.2f us of CPU per request sampled: user %.2f, kernel %.2f"
                 % (total / 1e3 / n, (total - kernel) / 1e3 / n, kernel / 1e3 / n))
        svg = out + ".svg"
        with open(svg, "wb") as f:
            f.write(subprocess.run([tools[1], "--title", "%s under wrk -t%d -c%d, %.0f req/s "
                                    "(perf cpu-clock)%s" % (name, WORKERS, args.connections,
                                                            r["rps"], split),
                                    "--minwidth", "0.2"],
                                   input=folded, capture_output=True, timeout=600).stdout)
    print("   %-10s %.0f req/s under perf%s; report %s.perf.txt%s"
          % (name, r["rps"], split, out, "; flame graph " + svg if svg else
             " (no flame graph: cargo install inferno)"), flush=True)
    return rep


def profile(tmp, args):
    """perf (software cpu-clock event) on quorumgate -- and with
    --profile-peers on, nginx and HAProxy -- while wrk loads it; flame graphs
    with inferno; callgrind when perf cannot sample."""
    print("\n== profile: under wrk -t%d -c%d" % (WORKERS, args.connections), flush=True)
    up = start_upstream(tmp)
    outdir = args.profile_dir or tmp
    os.makedirs(outdir, exist_ok=True)
    perf_ok = shutil.which("perf") and subprocess.run(
        ["perf", "record", "-e", "cpu-clock", "-o", os.devnull, "true"],
        capture_output=True).returncode == 0
    if perf_ok:
        targets = [("quorumgate", start_quorumgate)]
        if args.profile_peers == "on":
            targets += [("nginx", start_nginx_proxy), ("haproxy", start_haproxy)]
        for name, starter in targets:
            rep = perf_profile(tmp, args, up, name, starter, os.path.join(outdir, name))
            if name == "quorumgate":
                print("\n".join(l for l in rep.splitlines()
                                if l and not l.startswith("#"))[:6000])
        stop(up.proc)
        return True
    qg = Server("quorumgate", None, free_port(), free_port())
    out = os.path.join(outdir, "quorumgate")
    conf = write(tmp, "quorumgate.yaml",
                 quorumgate_conf(tmp, qg.port, qg.admin_port, up.port, False))
    qg.proc = start("quorumgate", ["valgrind", "--tool=callgrind",
                                   "--callgrind-out-file=" + out + ".callgrind",
                                   args.bin, "-c", conf], tmp, cpu=0)
    wait_for(lambda: http_get(qg.port)[0] == 200, 60, "quorumgate under valgrind", qg.proc)
    argv = ["wrk", "-t1", "-c8", "-d%ds" % args.duration, "http://127.0.0.1:%d%s"
            % (qg.port, args.path)]
    subprocess.run(argv, capture_output=True, timeout=args.duration + 60)
    stop(qg.proc)
    rep = subprocess.run(["callgrind_annotate", "--inclusive=no", out + ".callgrind"],
                         capture_output=True, text=True).stdout
    with open(out + ".callgrind.txt", "w") as f:
        f.write(rep)
    print(rep[:6000])
    stop(up.proc)
    return True


# --------------------------------------------------------------------------

CPUS = False
TLS = None     # --tls: {"ca", "cert", "key"} for every server and proxy
WORKERS = 1    # --workers: processes/threads of every server and proxy
UPSTREAM_HOST = "127.0.0.1"  # --upstream-host: the host of quorumgate's controller URL
HAPROXY_MAXCONN = 8000  # --only idle raises it (HAProxy wants 2 descriptors per connection)


def main():
    global CPUS, TLS, WORKERS, UPSTREAM_HOST, HAPROXY_MAXCONN, PEER_FIELDS, BATCH_SENDS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build-rel", "quorumgate"))
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every target this many times (interleaved); medians")
    ap.add_argument("--path", default="/")
    ap.add_argument("--access-log", choices=("off", "on"), default="off",
                    help="access logs for every proxy (files in the temp dir)")
    ap.add_argument("--peer-fields", choices=("off", "on"), default="off",
                    help="nginx and HAProxy also set X-Forwarded-For/-Proto/-Host, Forwarded "
                    "and a request id, as quorumgate does")
    ap.add_argument("--batch-sends", choices=("on", "off"), default="on",
                    help="quorumgate's upstream.batch_sends (off: one send per request, "
                    "as where io_uring is refused)")
    ap.add_argument("--only", default="compare,idle,soak")
    ap.add_argument("--idle-connections", type=int, default=10000)
    ap.add_argument("--idle-hold", type=int, default=5)
    ap.add_argument("--idle-peers", choices=("on", "off"), default="off",
                    help="--only idle also holds the connections to nginx and HAProxy")
    ap.add_argument("--soak-duration", type=int, default=60)
    ap.add_argument("--cost-requests", type=int, default=5000)
    ap.add_argument("--cost-peers", choices=("on", "off"), default="on",
                    help="--only cost also measures nginx and HAProxy (same upstream)")
    ap.add_argument("--ab", help="comma-separated quorumgate binaries to compare "
                    "(interleaved --rounds; use with --only none)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--workers", type=int, default=1,
                    help="workers of quorumgate, nginx worker_processes, HAProxy nbthread, wrk "
                    "threads; above 1 nothing is pinned")
    ap.add_argument("--tls", action="store_true",
                    help="compare over TLS: clients to every proxy and every proxy to the "
                    "upstream over HTTPS (TLS 1.3, one certificate, upstream verified)")
    ap.add_argument("--upstream-host", default="127.0.0.1",
                    help="the host in quorumgate's controller URL: a name (localhost) is "
                    "resolved by quorumgate itself; nginx and HAProxy keep 127.0.0.1")
    ap.add_argument("--profile-dir", help="where --only profile writes its report")
    ap.add_argument("--call-graph", default="fp", help="perf --call-graph mode (fp, dwarf)")
    ap.add_argument("--profile-peers", choices=("on", "off"), default="off",
                    help="--only profile also records nginx and HAProxy")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    parts = set(args.only.split(","))

    for tool in ("nginx", "haproxy", "wrk", "taskset"):
        if not shutil.which(tool):
            sys.exit("bench: '%s' is missing (scripts/install-deps.sh bench)" % tool)
    if not os.access(args.bin, os.X_OK):
        sys.exit("bench: no quorumgate binary at %s; build it with\n  cmake -S . -B build-rel "
                 "-G Ninja -DCMAKE_BUILD_TYPE=Release -DQG_TESTS=OFF && ninja -C build-rel"
                 % args.bin)
    CPUS = len(os.sched_getaffinity(0)) >= 2 and {0, 1} <= os.sched_getaffinity(0)
    WORKERS = max(1, args.workers)
    PEER_FIELDS = args.peer_fields == "on"
    BATCH_SENDS = args.batch_sends == "on"
    UPSTREAM_HOST = args.upstream_host
    if WORKERS > 1:
        CPUS = False  # PIN=none: the kernel spreads every server's workers
    if WORKERS > 1:
        print("bench: %d workers each, nothing pinned (PIN=none)" % WORKERS)
    elif not CPUS:
        print("bench: WARNING fewer than 2 CPUs: nothing is pinned, numbers mean little")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle_connections + 2000
    if "idle" in parts and args.idle_peers == "on":
        HAPROXY_MAXCONN = max(HAPROXY_MAXCONN, args.idle_connections + 500)
        need = max(need, 2 * HAPROXY_MAXCONN + 1000)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    if "idle" in parts and hard < need:
        print("bench: WARNING RLIMIT_NOFILE hard limit %d < %d" % (hard, need))

    tmp = tempfile.mkdtemp(prefix="qg-bench-")
    atexit.register(lambda: None if args.keep else shutil.rmtree(tmp, ignore_errors=True))
    if args.tls:
        TLS = make_tls(tmp)
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    print("bench: %s, %s; temp dir %s; load average %s"
          % (args.bin, subprocess.run([args.bin, "--version"], capture_output=True,
                                      text=True).stdout.strip(), tmp,
             " ".join("%.2f" % x for x in os.getloadavg())))
    ok = True
    if "compare" in parts:
        compare(tmp, args)
    if "idle" in parts:
        ok &= idle(tmp, args)
    if "soak" in parts:
        ok &= soak(tmp, args)
    if args.ab:
        ab(tmp, args)
    if "cost" in parts:
        cost(tmp, args)
    if "profile" in parts:
        profile(tmp, args)
    stop_all()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
