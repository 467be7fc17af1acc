"""Affinity and fences in Redis (issue 9): Redis never holds a raw token, id,
code or password; Redis going away mid-run degrades to the local cache with
a warning and a metric, never a crash; fences written to Redis (by hand,
in the ackstore format, or by the replication gate timing out on a lagging
follower) make an identity's requests skip the fenced controller.
"""
import json
import subprocess
import threading
import time

from tests.ctrlsim.client import totp_now
from tests.integration.routing_support import (
    ZitiClient, client_with_token, decisions, delta, hmac_hex, hmac_key_of, nodes_that_saw, oidc_login,
    redis_call, redis_dump, write_fence)
from tests.support.procs import wait_until

READ = "/edge/client/v1/current-identity"


def _secret_pieces(secret):
    """A secret and the parts of it that are secrets on their own (the
    segments of a JWT)."""
    out = {secret}
    if secret.count(".") == 2:
        out.update(p for p in secret.split(".") if len(p) >= 8)
    return out


def test_redis_holds_no_raw_token(quorumgate, sim):
    qg = quorumgate(sim=sim)
    # a little of everything: OIDC logins (some with the TOTP step), a
    # refresh, legacy logins and their sessions, an MFA enrollment held by
    # the replication gate, a fence
    forbidden = {"alice-pw", "bob-pw", "carol-pw", "admin-pw"}
    c = ZitiClient(qg.url)
    alice = None
    for i in range(10):
        lg = oidc_login(c, c, "alice", "alice-pw", id_in=("json", "form", "query")[i % 3])
        assert lg.ok, lg.failed_step
        for s in lg.secrets():
            forbidden |= _secret_pieces(s)
        alice = lg
    a = client_with_token(qg.url, None, alice.tokens["access_token"])
    a.refresh_token = alice.tokens["refresh_token"]
    a.mfa_create().expect(201)
    secret = a.mfa_secret()
    codes = a.mfa_get().json()["data"]["recoveryCodes"]
    r = a.mfa_verify(totp_now(secret)).expect(200)
    assert r.header("quorumgate-replication"), r.headers
    forbidden.add(secret)
    forbidden.update(codes)
    lg = oidc_login(c, c, "alice", "alice-pw", totp_secret=secret)
    assert lg.ok, lg.failed_step
    assert any(name == "totp" for name, _ in lg.steps)
    for s in lg.secrets():
        forbidden |= _secret_pieces(s)
    a.refresh().expect(200)
    forbidden |= _secret_pieces(a.access_token) | _secret_pieces(a.refresh_token)
    for _ in range(5):
        b = ZitiClient(qg.url)
        b.legacy_login("bob", "bob-pw").expect(200)
        b.current_identity().expect(200)
        forbidden.add(b.zt_session)
    # identities are keyed by HMAC too
    forbidden.add(alice_sub := a.claims()["sub"])
    forbidden.add(b.identity_id)

    dump = redis_dump(qg.redis)
    kinds = {k.split(b":")[1] for k in dump}
    assert {b"aff", b"gate"} <= kinds, sorted(dump)[:20]
    aff = [k for k in dump if k.startswith(b"qg:aff:")]
    assert {k.split(b":")[2] for k in aff} == {b"sess", b"oidc", b"code"}, aff
    hexdigits = set(b"0123456789abcdef")
    for k, (typ, vals, pttl) in dump.items():
        assert pttl > 0, "key %r has no TTL (%s)" % (k, pttl)
        if k.startswith(b"qg:aff:"):
            # <prefix>aff:<kind>:<64 hex> -> controller id
            h = k.split(b":")[3]
            assert len(h) == 64 and set(h) <= hexdigits, k
            assert vals[0].decode() in sim.node_ids, (k, vals)
        blob = k + b"\0" + b"\0".join(v if isinstance(v, bytes) else str(v).encode() for v in vals)
        for s in forbidden:
            assert s.encode() not in blob, "Redis key %r holds a raw secret (%s...)" % (k, s[:6])
    # nor in quorumgate's logs (access log and error log, debug level)
    logs = (qg.stdout_text() + qg.stderr_text()).encode()
    for s in forbidden - {alice_sub, b.identity_id}:
        assert s.encode() not in logs, "a raw secret (%s...) is in quorumgate's logs" % s[:6]


def _restart_redis_on_same_port(redis):
    """Start a new redis-server on the port the stopped one had."""
    log = open(redis.log_path, "ab")
    redis.proc = subprocess.Popen(
        ["redis-server", "--port", str(redis.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", redis.workdir, "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    redis._log = log
    wait_until(redis.ping, timeout=10, what="redis-server back on its port")


def test_redis_lost_mid_run_degrades_to_the_local_cache(quorumgate, sim):
    qg = quorumgate(sim=sim)
    results = []
    stop = threading.Event()

    def logins():
        c = ZitiClient(qg.url)
        s = ZitiClient(qg.url)
        s.legacy_login("bob", "bob-pw").expect(200)
        home = None
        i = 0
        while not stop.is_set():
            lg = oidc_login(c, c, "alice", "alice-pw", id_in=("json", "form", "query")[i % 3])
            r = s.current_identity()
            home = home or r.header("quorumgate-controller")
            results.append((lg.ok, lg.failed_step, r.status, r.header("quorumgate-controller") == home))
            i += 1

    t = threading.Thread(target=logins)
    t.start()
    try:
        wait_until(lambda: len(results) >= 10, timeout=30, what="logins before Redis goes")
        qg.redis.stop()                                   # Redis dies mid-run
        n = len(results)
        wait_until(lambda: len(results) >= n + 30, timeout=60, what="logins without Redis")
        m = qg.metrics()
        assert m.value("quorumgate_redis_up") == 0
        # new logins still learn (the local cache) and say Redis failed
        errs = (m.value("quorumgate_redis_operations_total", op="affinity_set", result="error") or 0) + \
               (m.value("quorumgate_redis_operations_total", op="affinity_get", result="error") or 0)
        assert errs >= 1, m.get("quorumgate_redis_operations_total")
        assert m.value("quorumgate_affinity_entries", kind="oidc") >= 1
        warnings = [e for e in qg.error_log() if e.get("level") in ("warn", "warning")
                    and "redis" in json.dumps(e).lower()]
        assert warnings, qg.stderr_text()[-2000:]
        # Redis comes back: affinity is written there again
        _restart_redis_on_same_port(qg.redis)
        n = len(results)
        wait_until(lambda: len(results) >= n + 10, timeout=60, what="logins after Redis is back")
        wait_until(lambda: any(k.startswith(b"qg:aff:oidc:") for k in redis_dump(qg.redis)), timeout=10,
                   what="affinity entries in the new Redis")
    finally:
        stop.set()
        t.join(timeout=30)
    assert not t.is_alive()
    failed = [r for r in results if not (r[0] and r[2] == 200 and r[3])]
    assert not failed, "%d of %d rounds failed: %s" % (len(failed), len(results), failed[:5])
    assert qg.proc.poll() is None


def _fence(qg, sub, node, ttl_ms):
    return write_fence(qg, sub, [node], ttl_ms, index=False)


def _reads(sim, client, n=30):
    sim.control.reset_requests()
    for _ in range(n):
        client.current_identity().expect(200)
    return nodes_that_saw(sim, lambda r: r["path"] == READ)


def test_fence_from_redis_skips_the_fenced_controller(quorumgate, sim):
    qg = quorumgate(sim=sim)
    c = ZitiClient(qg.url)
    la, lb = oidc_login(c, c, "alice", "alice-pw"), oidc_login(c, c, "bob", "bob-pw")
    assert la.ok and lb.ok
    alice = client_with_token(qg.url, None, la.tokens["access_token"])
    bob = client_with_token(qg.url, None, lb.tokens["access_token"])
    assert _reads(sim, alice) == ["ctrl1", "ctrl2", "ctrl3"]

    idhex = _fence(qg, alice.claims()["sub"], "ctrl2", 60000)
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 1, timeout=5,
               what="the fence reaching quorumgate")
    before = decisions(qg)
    assert _reads(sim, alice) == ["ctrl1", "ctrl3"]
    assert _reads(sim, bob) == ["ctrl1", "ctrl2", "ctrl3"]      # only alice is fenced
    d = delta(decisions(qg), before)
    assert d.get(("read", "fenced_skip"), 0) == 30, d
    assert d.get(("read", "balanced"), 0) == 30, d
    # alice's fence does not keep other identities' logins away from ctrl2
    # (issue 17): carol, from an address alice never used, still logs in
    # there
    sim.control.reset_requests()
    carol = ZitiClient(qg.url)
    carol.source_address = "127.0.0.2"
    for _ in range(30):
        assert oidc_login(carol, carol, "carol", "carol-pw").ok
    assert "ctrl2" in nodes_that_saw(sim, lambda r: r["path"] == "/oidc/authorize")

    # the controller acknowledges: the fence goes (HDEL + publish)
    redis_call(qg.redis, "HDEL", "qg:fence:" + idhex, "ctrl2")
    redis_call(qg.redis, "PUBLISH", "qg:fences", idhex)
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 0, timeout=5,
               what="the fence lifted")
    assert _reads(sim, alice) == ["ctrl1", "ctrl2", "ctrl3"]

    # a fence also ends at its deadline
    _fence(qg, alice.claims()["sub"], "ctrl3", 1500)
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 1, timeout=5, what="fence 2")
    assert _reads(sim, alice, 20) == ["ctrl1", "ctrl2"]
    wait_until(lambda: "ctrl3" in _reads(sim, alice, 20), timeout=10, what="the fence expiring")


def test_fence_from_a_replication_timeout_skips_the_lagging_controller(quorumgate, sim):
    qg = quorumgate({"gate": {"timeout": "1s", "on_timeout": "succeed"}}, sim=sim)
    c = ZitiClient(qg.url)
    la = oidc_login(c, c, "alice", "alice-pw")
    assert la.ok
    alice = client_with_token(qg.url, None, la.tokens["access_token"])
    sim.control.set_lag("ctrl3", 60000)          # ctrl3 will not have the change in time
    r = alice.mfa_create().expect(201)
    rep = r.header("quorumgate-replication") or ""
    assert "pending=ctrl3" in rep.replace(" ", ""), rep
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 1, timeout=5, what="the gate's fence")
    idhex = hmac_hex(hmac_key_of(qg), "identity|" + alice.claims()["sub"])
    assert b"qg:fence:" + idhex.encode() in redis_dump(qg.redis)
    # alice's reads avoid ctrl3 (which would 404 her enrollment) ...
    sim.control.reset_requests()
    for _ in range(20):
        alice.mfa_get().expect(200)                         # MFA class: the leader
        alice.current_identity().expect(200)
    assert "ctrl3" not in nodes_that_saw(sim, lambda x: x["path"] == READ)
    sim.control.set_lag("ctrl3", 0)
