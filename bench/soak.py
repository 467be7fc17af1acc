#!/usr/bin/env python3
"""Faults under load on a real cluster (issue 18): a soak with a history checker.

A real 3-controller OpenZiti cluster (tests/realcluster/cluster.py), a real redis-server, TWO
quorumgate processes sharing it (a client picks one at random per request, the other when the
first refuses the connection), N simulated users (threads) each doing whole MFA enrollments
(OIDC or legacy login, create, detail, QR code, verify, logins that must ask for TOTP,
sometimes delete and enroll again) plus background reads at a set rate, while the fault
schedule runs:

    transfer      leadership transferred to another member          every --transfer-every (20 s)
    follower_stop a follower SIGSTOPped for --follower-stop-for (5 s) every --follower-every (30 s)
    leader_kill   the leader SIGKILLed, restarted --leader-down later  every --leader-every (120 s)
    redis_restart redis-server stopped, started again on its port     every --redis-every (120 s)
    qg_hup        SIGHUP to one quorumgate                          every --hup-every (60 s)
    qg_kill       SIGKILL to one quorumgate, started again            every --qg-kill-every (300 s)

The controller faults (the first three) take one lock, so two of them never overlap (a
follower stopped while the leader is dead leaves no quorum); Redis and quorumgate faults run
on their own schedules and overlap with anything.

Every client operation and fault goes to a JSONL history (WORKDIR/history.jsonl), with each
quorumgate's RSS and open descriptors sampled from /proc, and at the end each controller's
final state (read directly with the admin credential) and the MFA changes each controller
applied (its own entity-change event file).  The checker (bench/soak_check.py) then verifies
the properties of issue 18 and exits 1 on any violation.

    python3 bench/soak.py --version v1.7.2 --duration 1800            # the 30-minute run
    python3 bench/soak.py --ci --version v1.7.2                       # CI: 3 minutes, 30 users
    python3 bench/soak.py check WORKDIR/history.jsonl                 # the checker on a saved run

QUORUMGATE_BIN selects the binary (default build/quorumgate).
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import soak_check  # noqa: E402
from soak_users import History, User, reader_loop, user_loop  # noqa: E402
from tests.conftest import default_qg_config  # noqa: E402
from tests.realcluster.cluster import ADMIN, ZitiCluster, events_file, health_checks, ziti_binary  # noqa: E402
from tests.support.procs import Quorumgate, RedisServer, deep_merge, free_port, wait_until  # noqa: E402

FAULTS = ("transfer", "follower_stop", "leader_kill", "redis_restart", "qg_hup", "qg_kill")
CLUSTER_FAULTS = ("transfer", "follower_stop", "leader_kill")


def events_files(path):
    """The controller's event file and its rotated backups, oldest first: the file handler
    rotates at 10 MB into events-<time>.json beside it and keeps every backup
    (controller/events/file_logger.go:62-101, v1.7.2: lumberjack, maxsizemb 10, maxbackups 0);
    a 30-minute run fills several."""
    d, base = os.path.split(path)
    stem, ext = os.path.splitext(base)
    try:
        names = os.listdir(d)
    except OSError:
        return [path]
    rotated = sorted(n for n in names if n.startswith(stem + "-") and n.endswith(ext))
    return [os.path.join(d, n) for n in rotated] + [path]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", default="v1.7.2")
    ap.add_argument("--duration", type=float, default=1800.0, help="seconds of load and faults")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--readers", type=int, default=4, help="reader identities for the background reads")
    ap.add_argument("--read-rate", type=float, default=10.0, help="background reads per second, all readers")
    ap.add_argument("--think", type=float, default=4.0, help="mean pause of a user between steps (s)")
    ap.add_argument("--delete-prob", type=float, default=0.5, help="an enrolled user deletes and re-enrolls")
    ap.add_argument("--kinds", default="oidc,legacy")
    ap.add_argument("--transfer-every", type=float, default=20.0)
    ap.add_argument("--follower-every", type=float, default=30.0)
    ap.add_argument("--follower-stop-for", type=float, default=5.0)
    ap.add_argument("--leader-every", type=float, default=120.0)
    ap.add_argument("--leader-down", type=float, default=3.0)
    ap.add_argument("--redis-every", type=float, default=120.0)
    ap.add_argument("--redis-down", type=float, default=1.0)
    ap.add_argument("--hup-every", type=float, default=60.0)
    ap.add_argument("--qg-kill-every", type=float, default=300.0)
    ap.add_argument("--qg-down", type=float, default=1.0)
    ap.add_argument("--no-faults", action="store_true")
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=1, help="quorumgate workers per process")
    ap.add_argument("--workdir", help="default: a new directory under /tmp")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--cleanup", action="store_true", help="remove the work directory when the check passes")
    ap.add_argument("--ci", action="store_true",
                    help="the CI variant: 180 s, 30 users, think 1 s, every fault kind at least once")
    a = ap.parse_args(argv)
    if a.ci:
        a.duration, a.users, a.readers, a.read_rate, a.think = 180.0, 30, 2, 5.0, 1.0
        a.transfer_every, a.follower_every, a.leader_every = 20.0, 35.0, 70.0
        a.redis_every, a.hup_every, a.qg_kill_every, a.sample_every = 55.0, 30.0, 80.0, 2.0
    a.kinds = [k for k in a.kinds.split(",") if k]
    return a


class Soak:
    """Owns the cluster, Redis, both quorumgates and every thread it starts."""

    def __init__(self, args):
        self.args = args
        self.workdir = os.path.abspath(args.workdir or tempfile.mkdtemp(prefix="qg-soak-"))
        os.makedirs(self.workdir, exist_ok=True)
        self.history = History(os.path.join(self.workdir, "history.jsonl"))
        self.stop = threading.Event()
        self.faults_stop = threading.Event()
        self.think = args.think
        self.delete_prob = args.delete_prob
        self.kinds = args.kinds
        self.cluster = self.redis = None
        self.qgs = {}
        self.qg_ports = {}
        self.qg_locks = {}
        self.expected_down = set()
        self.cluster_lock = threading.Lock()
        self.users = []
        self.threads = []

    # ---- what the users need -----------------------------------------------------
    def qg_names(self):
        return sorted(self.qgs)

    def qg_port(self, name):
        return self.qg_ports[name]

    def qg_urls(self):
        return ["http://127.0.0.1:%d" % self.qg_ports[n] for n in self.qg_names()]

    def member_up(self, mid):
        m = self.cluster.members[mid]
        return m.running and not m.paused

    def admin_reset_mfa(self, iid, why):
        """The operator removes an identity's MFA: DELETE .../identities/{id}/mfa on every member.
        That call is not replicated in v1.5.4 and v1.7.2 (MfaManager.DeleteAllForIdentity writes
        the member's own bolt database, controller/model/mfa_manager.go:312-316 v1.7.2; openziti/ziti
        #4291): sent to the leader alone, the other members kept the enrollment, the identity's
        next create failed there with MFA_EXISTS while it succeeded on the leader, and the members
        diverged for good (30-minute v1.7.2 run, 2026-12-02: two final_state violations).
        Recorded, so the checker knows the enrollment ended here."""
        rec = {"type": "admin", "what": "reset_mfa", "user": iid, "why": why, "t0": time.time(), "members": {}}
        for mid in self.cluster.node_ids:
            try:
                r = self.cluster.admin_call(mid, "DELETE", "/edge/management/v1/identities/%s/mfa" % iid,
                                            timeout=5.0)
                rec["members"][mid] = r.status
            except (OSError, AssertionError) as e:
                rec["members"][mid] = type(e).__name__
        rec["status"] = 200 if all(v == 200 for v in rec["members"].values()) else 0
        rec["t1"] = time.time()
        self.history.write(rec)

    def direct_after(self, user, c, call, resp):
        """Each controller read directly right after a gated answer (all at once): verify: a
        legacy login there must ask for MFA; delete: isMfaEnabled false (admin); create with a
        bearer token: the enrollment readable there with the user's own token."""
        if call == "create" and not c.access_token:
            return                   # a legacy session lives on its home only: nothing to read elsewhere
        out = {}

        def read(mid):
            rec = {"type": "direct", "op": c.last_op, "user": user.iid, "call": call, "member": mid,
                   "t0": time.time()}
            have = None
            try:
                if not self.member_up(mid):
                    rec["skip"] = "member down"
                elif call == "verify":
                    d = self.cluster.client(mid, timeout=3.0)
                    r = d.legacy_login(user.name, user.password)
                    rec["status"] = r.status
                    if r.status == 200:
                        q = [x.get("typeId") for x in (r.json()["data"].get("authQueries") or [])]
                        rec["authQueries"] = q
                        have = "MFA" in q
                        if have:
                            # which enrollment asks: a member still holding an older verified one
                            # asks too (a partly authenticated session may read it:
                            # controller/internal/routes/current_identity_router.go:61, v1.5.4 and v1.7.2)
                            m = d.mfa_get()
                            if m.status == 200:
                                md = m.json()["data"]
                                rec["held"] = md.get("id")
                                if md.get("id") != user.mfa or not md.get("isVerified"):
                                    rec["other"] = True
                                    have = False
                elif call == "delete":
                    r = self.cluster.admin_call(mid, "GET", "/edge/management/v1/identities/" + user.iid,
                                                timeout=3.0)
                    rec["status"] = r.status
                    if r.status == 200:
                        have = not r.json()["data"].get("isMfaEnabled")
                else:
                    d = self.cluster.client(mid, timeout=3.0)
                    d.access_token = c.access_token
                    r = d.mfa_get()
                    rec["status"] = r.status
                    if r.status == 200:
                        have = r.json()["data"].get("id") == user.mfa
                    elif r.status == 404:
                        have = False
            except (OSError, AssertionError, ValueError, KeyError) as e:
                rec["error"] = type(e).__name__
            rec["t1"] = time.time()
            rec["have"] = have
            out[mid] = rec
        ts = [threading.Thread(target=read, args=(m,)) for m in self.cluster.node_ids]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        for rec in out.values():
            self.history.write(rec)

    # ---- setup ---------------------------------------------------------------
    def qg_config(self, name):
        certs = {"ca": self.cluster.ca}
        base = default_qg_config(self.cluster, self.redis, certs, self.workdir)
        with open(os.path.join(self.workdir, "mgmt.password"), "w") as f:
            f.write(ADMIN[1] + "\n")
        return deep_merge(base, {
            "workers": self.args.workers,
            "listeners": [{"address": "127.0.0.1:%d" % self.qg_ports[name]}],
            "admin": {"address": "127.0.0.1:%d" % self.admin_ports[name], "allow": ["127.0.0.0/8"]},
            "upstream": {"tls": {"ca": self.cluster.ca, "verify": True}, "connect_timeout": "1s"},
            "log": {"level": "info"},
            # the documented defaults (examples/quorumgate.yaml), not the test suite's fast probes
            # (fall 1, 500 ms), which mark a slow controller down on a loaded machine
            "health": None,
            "gate": {"timeout": "5s", "legacy_sessions": None,
                     "management": {"username": ADMIN[0],
                                    "password_file": os.path.join(self.workdir, "mgmt.password")}},
        })

    def setup(self):
        a = self.args
        binary = os.environ.get("QUORUMGATE_BIN") or os.path.join(ROOT, "build", "quorumgate")
        t0 = time.time()
        self.cluster = ZitiCluster(ziti_binary(a.version), a.version, os.path.join(self.workdir, "ziti"),
                                   edits=[health_checks, events_file]).start()
        self.redis = RedisServer(os.path.join(self.workdir, "redis")).start()
        self.admin_ports = {}
        for name in ("qgA", "qgB"):
            self.qg_ports[name] = free_port()
            self.admin_ports[name] = free_port()
            self.qg_locks[name] = threading.Lock()
        for name in ("qgA", "qgB"):
            self.qgs[name] = Quorumgate(binary, self.workdir, self.qg_config(name), name=name).start(timeout=30)
        lead = self.cluster.wait_leader()
        for qg in self.qgs.values():
            wait_until(lambda: qg.metrics().value("quorumgate_controller_leader", controller=lead) == 1,
                       timeout=30, what="quorumgate to know the leader")
        self.history.write({"type": "meta", "t": time.time(), "version": a.version, "members": self.cluster.node_ids,
                            "qgs": self.qg_names(), "args": {k: v for k, v in vars(a).items()},
                            "setup_s": round(time.time() - t0, 1), "key_refusals": self.cluster.key_refusals})
        print("soak: cluster %s up (%.0f s), leader %s, quorumgates %s, workdir %s" % (
            a.version, time.time() - t0, lead, self.qg_urls(), self.workdir), flush=True)

    def make_users(self):
        a = self.args
        specs = [("soak-u%03d" % i, "pw-soak-u%03d-%d" % (i, os.getpid())) for i in range(a.users)]
        specs += [("soak-r%02d" % i, "pw-soak-r%02d-%d" % (i, os.getpid())) for i in range(a.readers)]
        ids = {}
        lock = threading.Lock()
        todo = list(specs)

        def worker():
            while True:
                with lock:
                    if not todo:
                        return
                    name, pw = todo.pop()
                for attempt in range(5):
                    try:
                        iid = self.cluster.create_identity(name, pw)
                        break
                    except (OSError, AssertionError, TimeoutError):
                        if attempt == 4:
                            raise
                        time.sleep(1)
                with lock:
                    ids[name] = iid
        ts = [threading.Thread(target=worker) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        rng = random.Random(a.seed)
        for i, (name, pw) in enumerate(specs):
            u = User(self, i, name, pw, ids[name], random.Random(rng.random()))
            self.history.write({"type": "identity", "user": u.iid, "name": name,
                                "role": "reader" if name.startswith("soak-r") else "user"})
            self.users.append(u)

    # ---- faults ------------------------------------------------------------------
    def fault(self, kind, fn):
        rec = {"type": "fault", "kind": kind, "t0": time.time()}
        try:
            rec["target"] = fn()
            rec["ok"] = True
        except Exception as e:          # the fault's own failure is recorded; the schedule goes on
            rec["ok"] = False
            rec["error"] = "%s: %s" % (type(e).__name__, str(e)[:300])
        rec["t1"] = time.time()
        self.history.write(rec)
        print("soak: %6.0fs fault %-13s %s %s" % (rec["t0"] - self.t_start, kind, rec.get("target"),
                                                   "" if rec["ok"] else rec["error"]), flush=True)
        if not rec["ok"] and kind in CLUSTER_FAULTS and "waiting for one agreed leader" in rec["error"]:
            self.fault("heal", self.heal_wedged)
        return rec["ok"]

    def wedged(self, mid, checks=2):
        """The member answers, but with its own API timeout (503 TIMEOUT after 10 s,
        controller/api/timeouts.go), ``checks`` times in a row: its handlers are stuck.  A member
        that is only slow (no answer within 15 s on a loaded machine) is not wedged."""
        for _ in range(checks):
            try:
                r = self.cluster.admin_call(mid, "GET", "/fabric/v1/cluster/list-members", timeout=15.0)
                if not (r.status == 503 and r.error_code == "TIMEOUT"):
                    return False
            except AssertionError as e:           # the admin login itself answered
                if "-> 503" not in str(e) or "TIMEOUT" not in str(e):
                    return False
            except OSError:
                return False
        return True

    def heal_wedged(self):
        """What an operator does when the cluster has had no agreed leader for 30 s: every
        member running again, and a member whose API answers only its own timeout (seen: a v1.7.2
        leader whose every API call waited on its bbolt database, OBSERVATIONS.md) sent SIGQUIT
        (Go writes every goroutine's stack to its log) and started again."""
        healed = []
        with self.cluster_lock:
            for mid, m in self.cluster.members.items():
                if m.paused:
                    self.cluster.resume(mid)
                if not m.running:
                    self.cluster.restart(mid, wait=False)
                    healed.append(mid + " (was down)")
                    continue
                if not self.wedged(mid):
                    continue
                try:
                    os.kill(m.proc.pid, signal.SIGQUIT)
                    m.proc.wait(10)
                except (OSError, subprocess.TimeoutExpired):
                    pass
                self.cluster.kill(mid)
                self.cluster.restart(mid, wait=False)
                healed.append(mid + " (wedged: SIGQUIT, restarted)")
            self.cluster.wait_cluster(timeout=120)
        return ", ".join(healed) or "nothing to heal"

    def do_transfer(self):
        with self.cluster_lock:
            lead = self.cluster.wait_leader()
            to = random.choice([m for m in self.cluster.node_ids if m != lead])
            self.cluster.transfer_leadership(to)
            return "%s->%s" % (lead, to)

    def do_follower_stop(self):
        with self.cluster_lock:
            lead = self.cluster.wait_leader()
            f = random.choice([m for m in self.cluster.node_ids if m != lead])
            self.cluster.pause(f)
            try:
                time.sleep(self.args.follower_stop_for)
            finally:
                self.cluster.resume(f)
            return f

    def do_leader_kill(self):
        with self.cluster_lock:
            lead = self.cluster.wait_leader()
            self.cluster.kill(lead)
            time.sleep(self.args.leader_down)
            self.cluster.restart(lead)
            self.cluster.wait_cluster(timeout=60)
            return lead

    def do_redis_restart(self):
        port = self.redis.port
        self.redis.stop()
        time.sleep(self.args.redis_down)
        self.redis.start(port=port)
        return port

    def do_qg_hup(self):
        name = random.choice(self.qg_names())
        with self.qg_locks[name]:
            self.qgs[name].sighup()
        return name

    def do_qg_kill(self):
        name = random.choice(self.qg_names())
        with self.qg_locks[name]:
            qg = self.qgs[name]
            self.expected_down.add(name)
            try:
                os.kill(qg.proc.pid, signal.SIGKILL)
                qg.proc.wait(10)
                qg._out.close()
                qg._err.close()
                time.sleep(self.args.qg_down)
                qg.start(timeout=30)
            finally:
                self.expected_down.discard(name)
        return name

    def fault_loop(self, kind, every, offset):
        fn = getattr(self, "do_" + kind)
        nxt = self.t_start + offset
        while not self.faults_stop.is_set():
            if self.faults_stop.wait(max(0.0, nxt - time.time())):
                return
            self.fault(kind, fn)
            nxt = max(nxt + every, time.time() + 1.0)     # a fault that overran its period: no catch-up burst

    # ---- sampling ----------------------------------------------------------------
    def sample_loop(self):
        while not self.stop.wait(self.args.sample_every):
            self.sample()

    def sample(self):
        now = time.time()
        for name in self.qg_names():
            qg = self.qgs[name]
            with self.qg_locks[name]:
                pid = qg.proc.pid
                if qg.proc.poll() is not None and name not in self.expected_down:
                    self.history.write({"type": "qg_died", "qg": name, "pid": pid, "t": now,
                                        "code": qg.proc.returncode, "stderr": qg.stderr_text()[-2000:]})
                    qg._out.close()
                    qg._err.close()
                    qg.start(timeout=30)
                    continue
                rss = fds = None
                try:
                    with open("/proc/%d/status" % pid) as f:
                        for line in f:
                            if line.startswith("VmRSS:"):
                                rss = int(line.split()[1])
                    fds = len(os.listdir("/proc/%d/fd" % pid))
                except OSError:
                    pass
            self.history.write({"type": "sample", "qg": name, "pid": pid, "t": now, "rss_kb": rss, "fds": fds,
                                "load": os.getloadavg()[0]})

    # ---- the run -------------------------------------------------------------------
    def run(self):
        a = self.args
        self.make_users()
        print("soak: %d users, %d readers created; running %.0f s" % (a.users, a.readers, a.duration), flush=True)
        self.t_start = time.time()
        self.history.write({"type": "start", "t": self.t_start})
        users = [u for u in self.users if not u.name.startswith("soak-r")]
        readers = [u for u in self.users if u.name.startswith("soak-r")]
        for u in users:
            self.threads.append(threading.Thread(target=user_loop, args=(self, u), daemon=True))
        for r in readers:
            self.threads.append(threading.Thread(target=reader_loop, args=(self, r, a.read_rate / max(1, len(readers))),
                                                 daemon=True))
        self.threads.append(threading.Thread(target=self.sample_loop, daemon=True))
        faults = []
        if not a.no_faults:
            sched = {"transfer": a.transfer_every, "follower_stop": a.follower_every, "leader_kill": a.leader_every,
                     "redis_restart": a.redis_every, "qg_hup": a.hup_every, "qg_kill": a.qg_kill_every}
            for i, kind in enumerate(FAULTS):
                # staggered first occurrences, so each kind also happens in a short run
                offset = min(sched[kind], a.duration / 2) * (0.35 + 0.1 * i)
                faults.append(threading.Thread(target=self.fault_loop, args=(kind, sched[kind], offset),
                                               daemon=True))
        for t in self.threads + faults:
            t.start()
        self.stop.wait(a.duration)
        self.faults_stop.set()
        for t in faults:
            t.join(120)
        self.stop.set()
        deadline = time.time() + 90
        for t in self.threads:
            t.join(max(0.1, deadline - time.time()))
        self.history.write({"type": "stop", "t": time.time()})
        print("soak: load stopped; reading the final state", flush=True)
        self.final_state()

    def final_state(self):
        cl = self.cluster
        try:
            cl.wait_cluster(timeout=30)
        except (TimeoutError, RuntimeError):
            self.fault("heal", self.heal_wedged)
        ids = [u.iid for u in self.users]
        states = {mid: {} for mid in cl.node_ids}
        todo, deadline = list(ids), time.time() + 60
        while todo:
            time.sleep(2.0)   # the last applies reach every member (a member back from a fault catches up)
            for mid in cl.node_ids:
                for iid in todo:
                    try:
                        d = cl.identity(mid, iid, timeout=10.0)
                    except (OSError, AssertionError):
                        break     # the member does not answer: its states stay unknown
                    states[mid][iid] = None if d is None else bool(d.get("isMfaEnabled"))
            # members that still disagree on an identity: read again (bounded)
            todo = [i for i in todo if len({states[m].get(i) for m in cl.node_ids}) > 1]
            if time.time() > deadline:
                break
        for mid in cl.node_ids:
            self.history.write({"type": "final", "member": mid, "t": time.time(), "mfa_enabled": states[mid],
                                "complete": len(states[mid]) == len(ids)})
        for mid in cl.node_ids:
            lines = []
            for path in events_files(cl.events_path(mid)):
                try:
                    with open(path, errors="replace") as f:
                        lines += f.readlines()
                except OSError:
                    pass
            for line in lines:
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e.get("namespace") != "entityChange" or e.get("entityType") != "mfas":
                    continue
                st = e.get("finalState") if isinstance(e.get("finalState"), dict) else (e.get("initialState") or {})
                ini = e.get("initialState") if isinstance(e.get("initialState"), dict) else {}
                fin = e.get("finalState") if isinstance(e.get("finalState"), dict) else {}
                self.history.write({"type": "event", "member": mid, "event": e.get("eventType"),
                                    "user": st.get("identityId"), "mfa": st.get("id"),
                                    "was_verified": ini.get("isVerified"), "verified": fin.get("isVerified"),
                                    "raft_index": (e.get("metadata") or {}).get("raft_index"),
                                    "ts": e.get("timestamp")})

    def teardown(self):
        self.stop.set()
        self.faults_stop.set()
        for name, qg in self.qgs.items():
            qg.stop()
            for p in qg.problems():
                self.history.write({"type": "qg_problem", "qg": name, "problem": p[:3000]})
        if self.redis is not None:
            self.redis.stop()
        if self.cluster is not None:
            self.cluster.stop()
        self.history.write({"type": "end", "t": time.time()})
        self.history.close()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:
        return soak_check.main(argv[1:])
    a = parse_args(argv)
    random.seed(a.seed)
    soak = Soak(a)
    # The handler must not call soak.stop.set() itself: it runs on the main
    # thread, which may be inside soak.stop.wait() holding the Event's lock.
    # It wakes a thread that sets it instead (a semaphore release takes no
    # lock the main thread can hold).
    term = threading.Semaphore(0)
    signal.signal(signal.SIGTERM, lambda *_: term.release())
    threading.Thread(target=lambda: (term.acquire(), soak.stop.set()), daemon=True,
                     name="sigterm").start()
    try:
        soak.setup()
        soak.run()
    finally:
        soak.teardown()
    path = os.path.join(soak.workdir, "history.jsonl")
    print("soak: history %s" % path, flush=True)
    code = soak_check.main([path, "--json", os.path.join(soak.workdir, "check.json")] +
                           (["--require-each-fault"] if a.ci else []))
    if code == 0 and a.cleanup:
        shutil.rmtree(soak.workdir, ignore_errors=True)
    elif code:
        print("soak: kept %s (history, quorumgate and controller logs)" % soak.workdir, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
