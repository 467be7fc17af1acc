"""The checks docker/test-stack.sh runs against the running compose stack.

    python3 -m tests.docker.stack_check --ca CA --password PWD \
        --controller ziti-controller1=CONTAINER ... --compose 'docker-compose -p ... -f ...'

Everything a client does goes through quorumgate's published port
(https://localhost:8443); the controllers are only read directly, each at
its container address on the stack's own network (certificate checked
against its advertised name), to see what each one has.  Exits non-zero on
the first failed check, with what was seen.

1. the cluster: three members, one leader, quorumgate's /readyz and /status
   agree with the controllers;
2. an MFA enrollment as a new user (legacy session): create 201 and verify
   200 answered by the leader, held until the others have it
   (Quorumgate-Replication names all three acked), and at that moment every
   controller shows the change; then a login asks for MFA and passes with a
   code;
3. Prometheus (scraping quorumgate over the compose network) returns
   quorumgate's series, including the enrollment's replication wait;
4. a second enrollment during which a follower's container is stopped
   (after the create) and started again (after the verify): the verify
   answers 200 with the running controllers acknowledged, and the restarted
   controller has the change once it is back;
5. /readyz still 200, every controller up again in /status.
"""
import argparse
import http.client
import json
import secrets
import shlex
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from tests.ctrlsim.client import ZitiClient, totp_now


class CheckFailed(Exception):
    pass


def check(cond, what, seen=None):
    if not cond:
        raise CheckFailed(what + ("" if seen is None else ": %r" % (seen,)))
    print("ok   " + what, flush=True)


class _PinnedConn(http.client.HTTPSConnection):
    """Connects to an address, verifies the certificate for a name."""

    def __init__(self, addr, name, port, **kw):
        super().__init__(name, port, **kw)
        self._addr = addr

    def connect(self):
        sock = socket.create_connection((self._addr, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class ControllerClient(ZitiClient):
    """A client of one controller, reached at its container address."""

    def __init__(self, name, addr, ca_file, port=1280):
        super().__init__("https://%s:%d" % (name, port), ca_file=ca_file)
        self.addr = addr

    def _new_conn(self):
        return _PinnedConn(self.addr, self.host, self.port, timeout=self.timeout, context=self.ssl_ctx)


def http_get(url, timeout=5.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_until(what, pred, timeout, interval=0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = pred()
        if ok:
            return last
        time.sleep(interval)
    raise CheckFailed("timed out after %.0f s waiting for %s; last seen: %r" % (timeout, what, last))


class Stack:
    def __init__(self, args):
        self.args = args
        self.containers = {}
        for spec in args.controller:
            name, container = spec.split("=", 1)
            self.containers[name] = container
        self.ctrls = {}
        for name in self.containers:
            self.refresh_address(name)
        self.admins = {}

    def refresh_address(self, name):
        """A container's address on the project network (a restarted
        container gets a new one)."""
        r = subprocess.run(["podman", "inspect", "--format",
                            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                            self.containers[name]], capture_output=True, text=True, timeout=60)
        if r.returncode != 0 or not r.stdout.strip():
            raise CheckFailed("no address for %s: %s" % (self.containers[name], r.stderr.strip()))
        self.ctrls[name] = r.stdout.strip()

    def qg(self):
        return ZitiClient(self.args.quorumgate, ca_file=self.args.ca)

    def ctrl(self, name):
        return ControllerClient(name, self.ctrls[name], self.args.ca)

    def status(self):
        code, body = http_get(self.args.admin + "/status")
        return json.loads(body) if code == 200 else {"http": code, "body": body}

    def leader_by_controllers(self):
        """The node whose health-checks API answers 200 (429 on followers)."""
        codes = {}
        for name in self.ctrls:
            try:
                codes[name] = self.ctrl(name).raft_health().status
            except OSError as e:
                codes[name] = str(e)
        leaders = [n for n, c in codes.items() if c == 200]
        return (leaders[0] if len(leaders) == 1 else None), codes

    def admin_on(self, name):
        """A management session on one controller (legacy sessions belong
        to the controller that issued them)."""
        c = self.ctrl(name)
        c.legacy_login("admin", self.args.password, api="management").expect(200)
        return c

    def mfa_enabled(self, name, identity_id):
        c = self.admins.get(name)
        if c is None:
            c = self.admins[name] = self.admin_on(name)
        r = c.request("GET", "/edge/management/v1/identities/%s" % identity_id).expect(200)
        return r.data.get("isMfaEnabled")

    def compose(self, *words):
        cmd = shlex.split(self.args.compose) + list(words)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise CheckFailed("%s failed: %s" % (" ".join(cmd), r.stderr[-2000:]))

    def new_user(self, admin):
        name = "qg-stack-%s" % secrets.token_hex(4)
        password = "Pw-" + secrets.token_urlsafe(12)
        r = admin.request("POST", "/edge/management/v1/identities",
                          body={"name": name, "type": "User", "isAdmin": False}).expect(201)
        ident = r.data["id"]
        admin.request("POST", "/edge/management/v1/authenticators",
                      body={"method": "updb", "identityId": ident, "username": name,
                            "password": password}).expect(201)
        return name, password, ident


def acked_of(header):
    """The controllers a Quorumgate-Replication header names as acked."""
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == "acked":
            return sorted(x for x in v.split(",") if x)
    return []


def enroll(stack, admin, leader, between=None, after_verify=None):
    """One MFA enrollment through quorumgate.  Returns (identity id, secret,
    the verify's Quorumgate-Replication header)."""
    name, password, ident = stack.new_user(admin)
    c = stack.qg()
    c.legacy_login(name, password).expect(200)
    r = c.mfa_create().expect(201)
    check(r.header("quorumgate-controller") == leader, "MFA create answered by the leader %s" % leader,
          r.header("quorumgate-controller"))
    rep = r.header("quorumgate-replication") or ""
    # a legacy session's create is confirmed where the session lives only
    # (the management API does not show an unverified enrollment):
    # consistency/gate.c
    check(acked_of(rep) == [leader], "the create was gated (Quorumgate-Replication: %s)" % rep, rep)
    secret = c.mfa_secret()
    if between:
        between()
    r = c.mfa_verify(totp_now(secret)).expect(200)
    rep = r.header("quorumgate-replication") or ""
    check(r.header("quorumgate-controller") == leader, "MFA verify answered by the leader", r.header_list)
    if after_verify is None:
        seen = {n: stack.mfa_enabled(n, ident) for n in stack.ctrls}
        check(all(seen.values()), "when verify answered, every controller has MFA enabled", seen)
        check(acked_of(rep) == sorted(stack.ctrls), "Quorumgate-Replication: %s" % rep, rep)
    else:
        after_verify(ident, rep)
    # the next login asks for the second factor, and passes with it
    c2 = stack.qg()
    r = c2.legacy_login(name, password).expect(200)
    queries = [q.get("typeId") for q in r.data.get("authQueries") or []]
    check("MFA" in queries, "the next login asks for MFA", r.data.get("authQueries"))
    c2.authenticate_mfa(totp_now(secret)).expect(200)
    r = c2.current_identity().expect(200)
    check(r.data.get("isMfaEnabled") is True, "after the MFA answer the session works (current-identity)",
          r.data.get("isMfaEnabled"))
    return ident, secret, rep


def run(args):
    stack = Stack(args)
    check(len(stack.ctrls) == 3, "three controllers given", stack.ctrls)

    def ready():
        code, body = http_get(args.admin + "/readyz")
        return code == 200, (code, body)
    wait_until("quorumgate /readyz 200", ready, args.timeout)
    check(True, "/readyz 200")

    def one_leader():
        leader, codes = stack.leader_by_controllers()
        st = stack.status()
        return leader is not None and st.get("leader") == leader, (codes, st.get("leader"))
    wait_until("one leader, the same in quorumgate's /status", one_leader, args.timeout)
    leader, codes = stack.leader_by_controllers()
    check(sorted(codes.values()) == [200, 429, 429], "health-checks: leader 200, followers 429", codes)
    st = stack.status()
    check(all(c["up"] for c in st["controllers"]), "/status: every controller up", st["controllers"])

    admin = stack.qg()
    admin.legacy_login("admin", args.password, api="management").expect(200)
    r = admin.request("GET", "/fabric/v1/cluster/list-members")
    r.expect(200)
    members = r.data
    check(isinstance(members, list) and len(members) == 3,
          "raft: three members (/fabric/v1/cluster/list-members through quorumgate)", r.json())

    # 1. a whole MFA enrollment
    ident, _, rep = enroll(stack, admin, leader)

    # 2. Prometheus has quorumgate's series
    def prom():
        q = urllib.parse.urlencode({"query": 'quorumgate_replication_wait_seconds_count{job="quorumgate"}'})
        code, body = http_get(args.prometheus + "/api/v1/query?" + q)
        if code != 200:
            return False, (code, body[:300])
        res = json.loads(body)["data"]["result"]
        return any(float(x["value"][1]) > 0 for x in res), res
    res = wait_until("Prometheus to return quorumgate's replication waits", prom, args.timeout, 2.0)
    check(True, "Prometheus query quorumgate_replication_wait_seconds_count: %s" %
          ", ".join("%s=%s" % (x["metric"].get("call", "?"), x["value"][1]) for x in res))
    code, body = http_get(args.prometheus + "/api/v1/targets")
    targets = json.loads(body)["data"]["activeTargets"]
    check(any(t["labels"].get("job") == "quorumgate" and t["health"] == "up" for t in targets),
          "Prometheus target quorumgate:9901 up", [(t["scrapeUrl"], t["health"]) for t in targets])

    # 3. a second enrollment with a follower stopped and started again
    follower = sorted(n for n in stack.ctrls if n != leader)[-1]

    def stop_follower():
        stack.compose("stop", follower)
        check(True, "stopped %s after the create" % follower)

        def seen_down():
            st = stack.status()
            up = {c["id"]: c["up"] for c in st.get("controllers", [])}
            return up.get(follower) is False, up
        wait_until("quorumgate to see %s down" % follower, seen_down, args.timeout)
        check(True, "/status shows %s down" % follower)

    def after_verify(ident2, rep2):
        running = [n for n in stack.ctrls if n != follower]
        seen = {n: stack.mfa_enabled(n, ident2) for n in running}
        check(all(seen.values()), "when verify answered, the running controllers have MFA enabled", seen)
        check(acked_of(rep2) == sorted(running), "Quorumgate-Replication: %s" % rep2, rep2)
        stack.compose("start", follower)
        check(True, "started %s again" % follower)
        stack.admins.pop(follower, None)

        def caught_up():
            try:
                stack.refresh_address(follower)
                return stack.mfa_enabled(follower, ident2) is True, "isMfaEnabled false"
            except (OSError, AssertionError, CheckFailed) as e:
                stack.admins.pop(follower, None)
                return False, str(e)[:200]
        wait_until("%s to have the change after its restart" % follower, caught_up, args.timeout, 1.0)
        check(True, "%s has MFA enabled after its restart" % follower)

    enroll(stack, admin, leader, between=stop_follower, after_verify=after_verify)

    def all_up():
        st = stack.status()
        return all(c["up"] for c in st.get("controllers", [])) and bool(st.get("leader")), st
    wait_until("every controller up in /status", all_up, args.timeout)
    check(True, "/status: every controller up again")
    check(http_get(args.admin + "/readyz")[0] == 200, "/readyz 200 at the end")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quorumgate", default="https://localhost:8443")
    p.add_argument("--admin", default="http://127.0.0.1:9901")
    p.add_argument("--prometheus", default="http://127.0.0.1:9090")
    p.add_argument("--ca", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--controller", action="append", required=True,
                   help="NAME=CONTAINER (its address is read with podman inspect)")
    p.add_argument("--compose", required=True, help="the compose command line, before the subcommand")
    p.add_argument("--timeout", type=float, default=90.0)
    args = p.parse_args(argv)
    try:
        return run(args)
    except (CheckFailed, AssertionError) as e:   # ApiFailure is an AssertionError
        print("FAIL " + str(e), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
