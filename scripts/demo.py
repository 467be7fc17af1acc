#!/usr/bin/env python3
"""quorumgate demo: a real redis-server, a 3-controller simulated OpenZiti HA
cluster (HTTPS, one follower lagging 2 s) and quorumgate in front of it.
One identity logs in with OIDC and enrolls in MFA through quorumgate; the
demo prints what each call did, what every controller holds at the moment
the verify answer arrives, and a few metrics.  Everything runs on loopback
ports in a temporary directory and is stopped by PID at the end.

With --real VERSION (v1.5.4 or v1.7.2) the cluster is a real OpenZiti HA
cluster instead: three `ziti` controllers built from ../shared/ziti
(tests/realcluster/cluster.py; a cold build takes ~8 minutes), no injected
lag, the identity created through the management API, and every
controller's isMfaEnabled read at the moment the verify answer arrives.

Usage: scripts/demo.py [--binary build/quorumgate] [--lag-ms 2000] [--real VERSION]
"""
import argparse
import os
import secrets
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.ctrlsim.client import ApiFailure, ZitiClient, totp_now  # noqa: E402
from tests.ctrlsim.control import SimProcess  # noqa: E402
from tests.support.procs import Quorumgate, RedisServer, make_certs  # noqa: E402


def say(msg=""):
    print(msg, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "quorumgate"))
    ap.add_argument("--lag-ms", type=int, default=2000)
    ap.add_argument("--real", metavar="VERSION", help="a real OpenZiti cluster of this version (v1.5.4, v1.7.2)")
    args = ap.parse_args()
    if args.real:
        return real_demo(args)
    work = tempfile.mkdtemp(prefix="quorumgate-demo-")
    redis = sim = qg = None
    failures = []
    try:
        certs = make_certs(os.path.join(work, "certs"))
        redis = RedisServer(os.path.join(work, "redis")).start()
        sim = SimProcess(["--nodes", "3", "--identity", "alice:alice-pw",
                          "--tls-cert", certs["cert"], "--tls-key", certs["key"],
                          "--events-dir", os.path.join(work, "events")],
                         workdir=work)
        sim.start()
        key = os.path.join(work, "hmac.key")
        with open(key, "w") as f:
            f.write(secrets.token_hex(32))
        cfg = {
            "workers": 2,
            "listeners": [{"address": "127.0.0.1:0"}],
            "admin": {"address": "127.0.0.1:0"},
            "controllers": [{"id": n, "url": sim.url(n)} for n in sim.node_ids],
            "upstream": {"tls": {"ca": certs["ca"]}},
            "health": {"interval": "200ms", "fast_interval": "50ms"},
            "redis": {"address": redis.address},
            "secrets": {"hmac_key_file": key},
            "log": {"level": "info", "access_log": os.path.join(work, "access.log"),
                    "error_log": "stderr"},
            "gate": {"mode": "healthy", "timeout": "10s",
                     "legacy_sessions": "unconfirmed"},   # the demo logs in with OIDC
        }
        qg = Quorumgate(args.binary, work, cfg, name="quorumgate").start()
        ctl = sim.control
        leader = ctl.wait_leader()
        lagging = [n for n in sim.node_ids if n != leader][0]
        ctl.set_lag(lagging, args.lag_ms)
        say("quorumgate    %s   (admin %s)" % (qg.url, qg.admin_url))
        say("controllers   %s" % ", ".join("%s %s" % (n, sim.url(n)) for n in sim.node_ids))
        say("leader        %s;  %s lags %d ms behind it" % (leader, lagging, args.lag_ms))
        say()

        c = ZitiClient(qg.url, ca_file=certs["ca"])
        c.oidc_login("alice", "alice-pw")
        say("1. alice logged in with OIDC through quorumgate (the whole login stayed on one controller)")

        t0 = time.monotonic()
        r = c.mfa_create().expect(201)
        say("2. POST /current-identity/mfa -> %d in %.0f ms, answered by %s, replication: %s"
            % (r.status, 1000 * (time.monotonic() - t0), r.header("Quorumgate-Controller"),
               r.header("Quorumgate-Replication")))
        secret = c.mfa_secret()
        say("   GET  /current-identity/mfa  -> provisioning URL received (secret not shown)")

        t0 = time.monotonic()
        r = c.mfa_verify(totp_now(secret)).expect(200)
        held = 1000 * (time.monotonic() - t0)
        state = ctl.state()
        say("3. POST /current-identity/mfa/verify -> %d after %.0f ms (held for the lagging follower)"
            % (r.status, held))
        say("   Quorumgate-Replication: %s" % r.header("Quorumgate-Replication"))
        if held < 0.9 * args.lag_ms:
            failures.append("the verify answer came after %.0f ms, before the %d ms lag: not held" % (held, args.lag_ms))
        say("   at that moment every controller holds:")
        unverified = []
        for node in state["nodes"]:
            mfas = list(node["mfas"].values())
            ok = bool(mfas and mfas[0]["isVerified"])
            if not ok:
                unverified.append(node["id"])
            say("     %-6s %-9s %s" % (node["id"], node["role"], "verified" if ok else "NOT verified"))
        if unverified:
            failures.append("verify answered while %s did not have it" % ", ".join(unverified))

        c2 = ZitiClient(qg.url, ca_file=certs["ca"])
        try:
            c2.oidc_login("alice", "alice-pw")
            failures.append("a login without TOTP succeeded after the verify")
            totp_asked = "NO"
        except ApiFailure as e:
            totp_asked = "yes" if "TOTP required" in str(e) else "NO (%s)" % e
        c2.oidc_login("alice", "alice-pw", totp_secret=secret)
        # the ID token names the login's methods (real access tokens carry no amr)
        amr = c2.claims(c2.id_token).get("amr", []) if c2.id_token else []
        if "totp" not in amr:
            failures.append("the login with TOTP carries amr=%s" % amr)
        say("4. a new OIDC login now needs TOTP: %s (with the code: amr=%s)" % (totp_asked, ",".join(amr)))
        say()

        m = qg.metrics()
        say("metrics (from %s/metrics):" % qg.admin_url)
        for name, labels in [
            ("quorumgate_replication_wait_seconds_count", {"call": "verify"}),
            ("quorumgate_replication_wait_seconds_sum", {"call": "verify"}),
            ("quorumgate_replication_acks_total", {"controller": lagging}),
            ("quorumgate_controller_leader", {"controller": leader}),
            ("quorumgate_routing_decisions_total", {"class": "mfa", "decision": "pinned"}),
            ("quorumgate_requests_total", {"class": "mfa", "method": "POST", "code": "2xx"}),
        ]:
            say("  %s{%s} %s" % (name, ",".join('%s="%s"' % kv for kv in labels.items()),
                                 m.value(name, **labels)))
        say()
        say("access log: %s" % os.path.join(work, "access.log"))
        if failures:
            for f in failures:
                say("DEMO FAILED: " + f)
            return 1
        say("demo: every step behaved as promised")
        return 0
    finally:
        for p in (qg, sim, redis):
            if p is not None:
                try:
                    p.stop()
                except Exception as e:  # keep stopping the others
                    print("stopping %r: %s" % (p, e), file=sys.stderr)


def real_demo(args):
    from tests.realcluster.cluster import ZitiCluster, events_file, health_checks, ziti_binary
    work = tempfile.mkdtemp(prefix="quorumgate-demo-real-")
    redis = cluster = qg = None
    try:
        say("building/finding ziti %s (../shared/ziti/build.sh, cached) ..." % args.real)
        cluster = ZitiCluster(ziti_binary(args.real), args.real, os.path.join(work, "ziti"),
                              edits=[health_checks, events_file])
        t0 = time.monotonic()
        cluster.start()
        say("3 controllers up in %.0f s (quickstart ha + join, then health-checks bound)" % (time.monotonic() - t0))
        redis = RedisServer(os.path.join(work, "redis")).start()
        key = os.path.join(work, "hmac.key")
        with open(key, "w") as f:
            f.write(secrets.token_hex(32))
        pw = os.path.join(work, "mgmt.password")
        with open(pw, "w") as f:
            f.write("admin\n")
        cfg = {
            "workers": 2,
            "listeners": [{"address": "127.0.0.1:0"}],
            "admin": {"address": "127.0.0.1:0"},
            "controllers": [{"id": n, "url": cluster.url(n)} for n in cluster.node_ids],
            "upstream": {"tls": {"ca": cluster.ca}},
            "health": {"interval": "200ms", "fast_interval": "50ms"},
            "redis": {"address": redis.address},
            "secrets": {"hmac_key_file": key},
            "log": {"level": "info", "access_log": os.path.join(work, "access.log"), "error_log": "stderr"},
            "gate": {"mode": "healthy", "timeout": "10s",
                     "management": {"username": "admin", "password_file": pw}},
        }
        qg = Quorumgate(args.binary, work, cfg, name="quorumgate").start()
        leader = cluster.wait_leader()
        say("quorumgate    %s   (admin %s)" % (qg.url, qg.admin_url))
        say("controllers   %s" % ", ".join("%s %s" % (n, cluster.url(n)) for n in cluster.node_ids))
        say("leader        %s (ziti %s)" % (leader, args.real))
        say()
        for label, base in (("straight to the leader (no quorumgate)", cluster.url(leader)),
                            ("through quorumgate", qg.url)):
            name = "demo-%s" % secrets.token_hex(3)
            iid = cluster.create_identity(name, name + "-pw")
            c = ZitiClient(base, ca_file=cluster.ca)
            c.oidc_login(name, name + "-pw").expect(200)
            c.mfa_create().expect(201)
            secret = c.mfa_secret()
            t0 = time.monotonic()
            r = c.mfa_verify(totp_now(secret))
            took = 1000 * (time.monotonic() - t0)
            states = cluster.mfa_enabled(iid)
            r.expect(200)
            say("%s: verify -> %d after %.0f ms%s" % (label, r.status, took,
                ("; Quorumgate-Replication: %s" % r.header("Quorumgate-Replication"))
                if r.header("Quorumgate-Replication") else ""))
            say("   isMfaEnabled on each controller at that moment: %s" % ", ".join(
                "%s=%s" % kv for kv in sorted(states.items())))
        say()
        say("access log: %s" % os.path.join(work, "access.log"))
        return 0
    finally:
        for p in (qg, redis, cluster):
            if p is not None:
                try:
                    p.stop()
                except Exception as e:  # keep stopping the others
                    print("stopping %r: %s" % (p, e), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
