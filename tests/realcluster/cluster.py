"""A real OpenZiti HA cluster (3 controllers, raft) for tests, built from source.

    from tests.realcluster.cluster import ZitiCluster, ziti_binary

    bin = ziti_binary("v1.7.2")             # ../shared/ziti/build.sh (cached); $QG_ZITI_BIN_<ver> overrides
    cl = ZitiCluster(bin, "v1.7.2", workdir, edits=[health_checks, events_file])
    cl.start()                               # quickstart `ha` + 2 x `join` (--no-router), then the
                                             # edited ctrl.yaml run with `ziti controller run`
    cl.node_ids                              # ["ctrl1", "ctrl2", "ctrl3"] (raft member ids)
    cl.url("ctrl2"), cl.port("ctrl2"), cl.ca # https://127.0.0.1:P, the quickstart root CA
    cl.leader()                              # member id, from /fabric/v1/cluster/list-members
    cl.members_view()                        # {id: {"leader","connected","voter","version"}}
    cl.pause("ctrl3"); cl.resume("ctrl3")    # SIGSTOP / SIGCONT by PID
    cl.kill("ctrl1"); cl.restart("ctrl1")    # SIGKILL by PID; `ziti controller run HOME/ctrl1/ctrl.yaml`
    cl.terminate("ctrl1")                    # SIGTERM by PID (then restart() to bring it back)
    cl.transfer_leadership("ctrl2")          # POST /fabric/v1/cluster/transfer-leadership; waits
    cl.reconfigure([edits])                  # every member stopped, ctrl.yaml edited, all started again
    cl.heal()                                # every member running, answering, one leader (test teardown)
    cl.admin("ctrl2")                        # ZitiClient with an admin zt-session on that member
    cl.create_identity(name, pw)             # User + updb authenticator, known on every member; -> id
    cl.mfa_enabled(identity_id)              # {member: isMfaEnabled, or None when it does not answer}
    cl.wait_mfa(identity_id, True)           # every member agrees (bounded)
    cl.events_path("ctrl1")                  # its entity-change JSON file (edit events_file)
    cl.stop()                                # every process, by PID

Edits are functions taking the member id and the parsed ctrl.yaml (a dict) and changing it:
``health_checks`` adds ``- binding: health-checks`` to the web listener, ``events_file`` adds an
``events:`` handler writing entity-change events (propagateAlways) as JSON lines.  Without edits
the members keep the quickstart's configuration (no health-checks API: the default).

Readiness is an admin login answering 200 on every member and a leader that sees all members
connected; every wait is bounded.  Logs: WORKDIR/logs/ctrlN.log (appended across restarts).
Run by hand: ``python3 -m tests.realcluster.cluster --version v1.5.4 --workdir /tmp/zc``
prints one JSON line (members, urls, CA) and serves until SIGTERM/SIGINT.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

import yaml

from tests.ctrlsim.client import ZitiClient
from tests.support.procs import free_port, stop_pid, wait_until

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _build_sh():
    """../shared/ziti/build.sh beside the repository (CI's layout); a worktree one level deeper
    finds it one level up; $QG_ZITI_BUILD_SH overrides."""
    if os.environ.get("QG_ZITI_BUILD_SH"):
        return os.environ["QG_ZITI_BUILD_SH"]
    up = os.path.dirname(REPO_ROOT)
    for base in (up, os.path.dirname(up)):
        path = os.path.join(base, "shared", "ziti", "build.sh")
        if os.path.exists(path):
            return path
    return os.path.join(up, "shared", "ziti", "build.sh")


BUILD_SH = _build_sh()
VERSIONS = ("v1.5.4", "v1.7.2")
ADMIN = ("admin", "admin")


def ziti_binary(version):
    """The path of a `ziti` binary of ``version``: $QG_ZITI_BIN_v1_5_4 style override, else
    build.sh (which reuses its cached build at once)."""
    env_name = "QG_ZITI_BIN_" + version.replace(".", "_")
    if os.environ.get(env_name):
        return os.environ[env_name]
    if not os.path.exists(BUILD_SH):
        raise RuntimeError("no %s: the OpenZiti sources are expected in ../shared/ziti" % BUILD_SH)
    out = subprocess.run([BUILD_SH, version], check=True, stdout=subprocess.PIPE, timeout=1800)
    return out.stdout.decode().strip().splitlines()[-1]


# ---------------------------------------------------------------------------
# ctrl.yaml edits

def health_checks(member_id, cfg):
    """Bind the health-checks API (GET /health-checks/controller/raft: 200 leader, 429 follower)."""
    for web in cfg.get("web", []):
        apis = web.setdefault("apis", [])
        if not any(a.get("binding") == "health-checks" for a in apis):
            apis.append({"binding": "health-checks", "options": {}})


def events_file(member_id, cfg, directory=None):
    """Entity-change events (propagateAlways: every member writes its own applies) as JSON lines
    to HOME/<member>/events.json."""
    path = os.path.join(directory or os.path.dirname(cfg["cluster"]["dataDir"]), "events.json")
    cfg["events"] = {"qg": {"subscriptions": [{"type": "entityChange", "propagateAlways": True}],
                            "handler": {"type": "file", "format": "json", "path": path}}}


class Member:
    """One controller: its port, home directory and the process running it (owned here)."""

    def __init__(self, member_id, port, home):
        self.id = member_id
        self.port = port
        self.home = home
        self.dir = os.path.join(home, member_id)
        self.yaml = os.path.join(self.dir, "ctrl.yaml")
        self.proc = None
        self.paused = False
        self.log = None

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None


class ZitiCluster:
    """Owns every controller process it starts; stop() ends them by PID."""

    def __init__(self, binary, version, workdir, members=3, edits=(), trust_domain="qg-test",
                 ready_timeout=90.0, heal_keys=True):
        self.binary = binary
        self.version = version
        self.workdir = os.path.abspath(workdir)
        self.home = os.path.join(self.workdir, "home")
        self.logdir = os.path.join(self.workdir, "logs")
        self.edits = list(edits)
        self.trust_domain = trust_domain
        self.ready_timeout = ready_timeout
        self.members = {}
        for i in range(members):
            mid = "ctrl%d" % (i + 1)
            self.members[mid] = Member(mid, free_port(), self.home)
        self.info = {"scheme": "https"}          # what tests/conftest.py's quorumgate factory reads
        self._admins = {}
        self.key_refusals = []                   # token refusals seen (and healed) at the last start
        self.heal_keys = heal_keys               # False: leave refused signing keys as they are
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ZITI_")}
        self.env["HOME"] = os.path.join(self.workdir, "userhome")   # the CLI's own config stays here

    # ---- addresses -----------------------------------------------------------
    @property
    def node_ids(self):
        return list(self.members)

    def url(self, mid):
        return self.members[mid].url

    def port(self, mid):
        return self.members[mid].port

    @property
    def ca(self):
        return os.path.join(self.home, "pki", "root-ca", "certs", "root-ca.cert")

    def events_path(self, mid):
        return os.path.join(self.members[mid].dir, "events.json")

    def pid(self, mid):
        return self.members[mid].proc.pid

    def log_text(self, mid):
        with open(os.path.join(self.logdir, mid + ".log"), errors="replace") as f:
            return f.read()

    # ---- processes -------------------------------------------------------------
    def _spawn(self, m, args):
        os.makedirs(self.logdir, exist_ok=True)
        os.makedirs(self.env["HOME"], exist_ok=True)
        if m.log is None:
            m.log = open(os.path.join(self.logdir, m.id + ".log"), "ab")
        m.log.write(("\n==== %s %s\n" % (time.strftime("%H:%M:%S"), " ".join(args))).encode())
        m.log.flush()
        m.proc = subprocess.Popen([self.binary] + args, stdout=m.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, cwd=self.workdir, env=self.env)
        m.paused = False

    def _quickstart(self, m, join=None):
        args = ["edge", "quickstart", "join" if join else "ha", "--home", self.home, "--instance-id", m.id,
                "--trust-domain", self.trust_domain, "--ctrl-address", "127.0.0.1", "--ctrl-port", str(m.port),
                "--no-router", "--username", ADMIN[0], "--password", ADMIN[1]]
        if join:
            args += ["--cluster-member", "tls:127.0.0.1:%d" % join.port]
        self._spawn(m, args)

    def _run(self, m):
        verbose = ["--verbose"] if os.environ.get("QG_ZITI_VERBOSE") == "1" else []   # debug logs
        self._spawn(m, ["controller", "run"] + verbose + [m.yaml])

    def start(self):
        """quickstart `ha` for ctrl1 and `join` for the others, one after the other (raft takes one
        configuration change at a time); then, with edits, every member restarted on its edited
        ctrl.yaml.  Raises (after stopping everything) when a member does not come up."""
        os.makedirs(self.home, exist_ok=True)
        try:
            ids = self.node_ids
            first = self.members[ids[0]]
            self._quickstart(first)
            self.wait_member(first.id)
            for mid in ids[1:]:
                self._quickstart(self.members[mid], join=first)
                self.wait_member(mid)
            self.wait_cluster()
            if self.edits:
                self.reconfigure(self.edits)
            else:
                self.key_refusals = self.make_signing_keys_known()
        except BaseException:
            self.stop()
            raise
        return self

    def _edit(self, m, edits):
        with open(m.yaml) as f:
            cfg = yaml.safe_load(f)
        for e in edits:
            e(m.id, cfg)
        with open(m.yaml + ".tmp", "w") as f:
            yaml.safe_dump(cfg, f, sort_keys=False)
        os.replace(m.yaml + ".tmp", m.yaml)

    def reconfigure(self, edits):
        """Stop every member, apply ``edits`` to each ctrl.yaml, start them all again with
        `ziti controller run` and wait for the cluster."""
        for m in self.members.values():
            self._halt(m, signal.SIGTERM)
        for m in self.members.values():
            self._edit(m, edits)
        for m in self.members.values():
            self._run(m)
        for m in self.members.values():
            self.wait_member(m.id)
        self.wait_cluster()
        self.key_refusals = self.make_signing_keys_known()

    def _halt(self, m, sig):
        if m.proc is None:
            return
        if m.paused:
            os.kill(m.proc.pid, signal.SIGCONT)
            m.paused = False
        stop_pid(m.proc, sig, timeout=15)
        self._admins.pop(m.id, None)

    def pause(self, mid):
        """SIGSTOP: the member keeps its sockets and answers nothing."""
        m = self.members[mid]
        os.kill(m.proc.pid, signal.SIGSTOP)
        m.paused = True

    def resume(self, mid):
        m = self.members[mid]
        os.kill(m.proc.pid, signal.SIGCONT)
        m.paused = False

    def kill(self, mid):
        """SIGKILL by PID (no raft goodbye)."""
        self._halt(self.members[mid], signal.SIGKILL)

    def terminate(self, mid):
        self._halt(self.members[mid], signal.SIGTERM)

    def restart(self, mid, wait=True):
        """Run a stopped/killed member again from its ctrl.yaml (`ziti controller run`)."""
        m = self.members[mid]
        self._halt(m, signal.SIGTERM)
        self._run(m)
        if wait:
            self.wait_member(mid)
        return m

    def stop(self):
        for m in self.members.values():
            self._halt(m, signal.SIGTERM)
            if m.log is not None:
                m.log.close()
                m.log = None

    # ---- API -----------------------------------------------------------------
    def client(self, mid, timeout=10.0):
        return ZitiClient(self.url(mid), ca_file=self.ca, timeout=timeout)

    def admin(self, mid, timeout=10.0):
        """A ZitiClient with an admin zt-session issued by that member (legacy sessions are only
        honoured by their issuer); cached, re-created after a restart."""
        c = self._admins.get(mid)
        if c is None:
            c = self.client(mid, timeout=timeout)
            c.legacy_login(*ADMIN, api="management").expect(200)
            self._admins[mid] = c
        return c

    def admin_call(self, mid, method, path, body=None, timeout=10.0):
        """One management/fabric call as admin on a member; a 401 (session gone with a restart)
        logs in again once."""
        for attempt in (0, 1):
            c = self.admin(mid, timeout=timeout)
            # the cached session's client keeps the timeout of the call that made it (3 s from
            # a readiness check): a transfer-leadership on a loaded cluster outlived that and
            # ended bench/leader_change_real.py with a read timeout
            c.timeout = timeout
            r = c.request(method, path, body=body)
            if r.status != 401 or attempt:
                return r
            self._admins.pop(mid, None)
        return r

    def _admin_login_ok(self, mid):
        m = self.members[mid]
        if m.proc is not None and m.proc.poll() is not None:
            raise RuntimeError("%s exited with %s; log tail:\n%s" % (mid, m.proc.returncode,
                                                                     self.log_text(mid)[-3000:]))
        try:
            self._admins.pop(mid, None)
            self.admin(mid, timeout=3.0)
            return True
        except (OSError, AssertionError):
            return False

    def wait_member(self, mid, timeout=None):
        """Until an admin login on ``mid`` answers 200 (never a fixed sleep)."""
        wait_until(lambda: self._admin_login_ok(mid), timeout=timeout or self.ready_timeout, interval=0.2,
                   what="an admin login on %s (%s)" % (mid, self.version))

    def members_view(self, via=None):
        """{id: {"leader", "connected", "voter", "version", "address"}} as one member sees it."""
        for mid in ([via] if via else self.running_ids()):
            try:
                r = self.admin_call(mid, "GET", "/fabric/v1/cluster/list-members", timeout=3.0)
            except (OSError, AssertionError):
                continue
            if r.status == 200:
                return {d["id"]: {"leader": d.get("leader"), "connected": d.get("connected"),
                                  "voter": d.get("voter"), "version": d.get("version"),
                                  "address": d.get("address")} for d in r.json()["data"]}
        return None

    def running_ids(self):
        return [mid for mid, m in self.members.items() if m.running and not m.paused]

    def leader(self, via=None):
        view = self.members_view(via)
        if not view:
            return None
        leaders = [mid for mid, v in view.items() if v["leader"]]
        return leaders[0] if len(leaders) == 1 else None

    def wait_leader(self, exclude=(), timeout=30.0):
        """A leader every running member agrees on (and not in ``exclude``)."""
        def agreed():
            seen = set()
            for mid in self.running_ids():
                seen.add(self.leader(via=mid))
            if len(seen) == 1 and None not in seen and not seen & set(exclude):
                return seen.pop()
            return None
        return wait_until(agreed, timeout=timeout, interval=0.1, what="one agreed leader (%s)" % self.version)

    def wait_cluster(self, timeout=None):
        """Every member answering an admin login, one leader, every member connected."""
        for mid in self.node_ids:
            self.wait_member(mid, timeout=timeout)

        def whole():
            lead = self.leader()
            if lead is None:
                return None
            view = self.members_view(via=lead)
            return lead if view and len(view) == len(self.members) and all(
                v["connected"] for v in view.values()) else None
        return wait_until(whole, timeout=timeout or self.ready_timeout, interval=0.2,
                          what="a leader connected to every member (%s)" % self.version)

    def rejected_tokens(self, name, password):
        """[(issuer, member)]: OIDC access tokens minted by `issuer` that `member` does not accept.
        A member records a peer's signing key from the certificate the peer presented on the
        raft connection; a peer that dialed in presented its CLIENT certificate, so its kid (the
        fingerprint of its server certificate, which signs its tokens) is unknown to the others
        (v1.5.4 controller/raft/mesh/mesh.go:504,822; OBSERVATIONS.md)."""
        tokens = {}
        for mid in self.running_ids():
            c = self.client(mid)
            c.oidc_login(name, password).expect(200)
            tokens[mid] = c.access_token
        out = []
        for issuer, tok in tokens.items():
            for mid in self.running_ids():
                c = self.client(mid)
                c.access_token = tok
                if c.current_identity().status == 401:
                    out.append((issuer, mid))
        return out

    def make_signing_keys_known(self, attempts=6):
        """Until every member accepts every member's tokens: leadership moved to a member whose
        tokens are refused (a new leader records itself with its server certificate).  Returns
        the refusals seen first (empty: none).  With heal_keys False: only says what is refused."""
        name, pw = "keycheck-%d" % os.getpid(), "keycheck-pw"
        try:
            self.create_identity(name, pw)
        except AssertionError:
            pass            # exists from an earlier call
        if not self.heal_keys:
            return self.rejected_tokens(name, pw)
        first = None
        for _ in range(attempts):
            bad = self.rejected_tokens(name, pw)
            if first is None:
                first = bad
            if not bad:
                if first:
                    self.wait_cluster()
                return first
            # to the member whose tokens are refused (it records its signing key as leader); when
            # it leads already, away from it first (a transfer to itself is refused: 500
            # "cannot transfer leadership to itself", seen in CI on v1.5.4), then back next round
            target = bad[0][0]
            self.transfer_leadership(None if target == self.wait_leader() else target)
        raise AssertionError("members still refuse each other's tokens: %s" % bad)

    def transfer_leadership(self, to=None, timeout=30.0):
        """POST /fabric/v1/cluster/transfer-leadership on the leader; waits until every running
        member names the new leader; returns (new leader, the HTTP answer)."""
        old = self.wait_leader()
        body = {"newLeaderId": to} if to else {}
        for attempt in range(10):
            r = self.admin_call(old, "POST", "/fabric/v1/cluster/transfer-leadership", body=body)
            # a transfer while a write is replicating is refused: 500 TRANSFER_LEADERSHIP_ERROR,
            # "replication failed" (OBSERVATIONS.md); it works a moment later
            if r.status != 500 or r.error_code != "TRANSFER_LEADERSHIP_ERROR":
                break
            time.sleep(0.1)
        if r.status != 200:
            raise AssertionError("transfer-leadership on %s -> %d %s" % (old, r.status, r.body[:300]))
        new = self.wait_leader(exclude=(old,), timeout=timeout)
        if to and new != to:
            raise AssertionError("leadership went to %s, not %s" % (new, to))
        return new, r

    def heal(self):
        """Bring every member back (SIGCONT, restart what is dead) and wait for a whole cluster
        whose members accept each other's tokens."""
        for mid, m in self.members.items():
            if m.paused:
                self.resume(mid)
            if not m.running:
                self.restart(mid, wait=False)
        self.wait_cluster()
        self.key_refusals = self.make_signing_keys_known()

    # ---- identities and what each member holds ---------------------------------
    def create_identity(self, name, password, timeout=20.0):
        """A User identity with a password (updb) authenticator, created through the leader and
        readable on every member before this returns; -> identity id."""
        lead = self.wait_leader()
        r = self.admin_call(lead, "POST", "/edge/management/v1/identities",
                            body={"name": name, "type": "User", "isAdmin": False})
        if r.status != 201:
            raise AssertionError("create identity -> %d %s" % (r.status, r.body[:300]))
        iid = r.json()["data"]["id"]
        r = self.admin_call(lead, "POST", "/edge/management/v1/authenticators",
                            body={"method": "updb", "identityId": iid, "username": name, "password": password})
        if r.status != 201:
            raise AssertionError("create authenticator -> %d %s" % (r.status, r.body[:300]))
        aid = r.json()["data"]["id"]

        def everywhere():
            for mid in self.running_ids():
                if self.admin_call(mid, "GET", "/edge/management/v1/authenticators/" + aid).status != 200:
                    return False
            return True
        wait_until(everywhere, timeout=timeout, interval=0.05, what="identity %s on every member" % name)
        return iid

    def identity(self, mid, iid, timeout=3.0):
        r = self.admin_call(mid, "GET", "/edge/management/v1/identities/" + iid, timeout=timeout)
        return r.json()["data"] if r.status == 200 else None

    def mfa_enabled(self, iid, members=None, timeout=3.0):
        """{member: isMfaEnabled} read now from each member's management API, all members at
        once (one thread each, so the reads are as close to "now" as they can be); None: the
        member does not answer."""
        ids = list(members or self.node_ids)
        out = {}

        def read(mid):
            m = self.members[mid]
            d = None
            if m.running and not m.paused:
                try:
                    d = self.identity(mid, iid, timeout=timeout)
                except (OSError, AssertionError):
                    d = None
            out[mid] = None if d is None else bool(d.get("isMfaEnabled"))
        for mid in ids:                      # sessions first, so the reads themselves are quick
            if self.members[mid].running and not self.members[mid].paused:
                try:
                    self.admin(mid, timeout=timeout)
                except (OSError, AssertionError):
                    pass
        threads = [threading.Thread(target=read, args=(mid,)) for mid in ids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {mid: out.get(mid) for mid in ids}

    def wait_mfa(self, iid, enabled, members=None, timeout=15.0):
        def agreed():
            s = self.mfa_enabled(iid, members)
            return s if all(v is enabled for v in s.values()) else None
        return wait_until(agreed, timeout=timeout, interval=0.05, what="isMfaEnabled=%s on every member" % enabled)

def main(argv=None):
    ap = argparse.ArgumentParser(description="Start a real 3-controller OpenZiti HA cluster (until SIGTERM).")
    ap.add_argument("--version", default=VERSIONS[0], choices=VERSIONS)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--default-config", action="store_true", help="no health-checks binding, no events file")
    args = ap.parse_args(argv)
    edits = [] if args.default_config else [health_checks, events_file]
    cl = ZitiCluster(ziti_binary(args.version), args.version, args.workdir, edits=edits)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    cl.start()
    try:
        print(json.dumps({"event": "ready", "version": args.version, "ca": cl.ca, "leader": cl.leader(),
                          "members": [{"id": m, "url": cl.url(m), "pid": cl.pid(m),
                                       "events": cl.events_path(m)} for m in cl.node_ids]}), flush=True)
        while not stop:
            time.sleep(0.2)
    finally:
        cl.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
