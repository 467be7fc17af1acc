"""Redis behind Sentinel (issue 18, item 2): real redis-server processes (a
master and a replica) and three real sentinels (`redis-server --sentinel`)
with short timings.  quorumgate finds the master through the sentinels,
follows a failover (SENTINEL FAILOVER) while verifies are held and logins
run, and says which Redis it uses in /status (the address) and /metrics
(source, master known, switches: an address is never a label value).  While no master
is known it behaves as with Redis down: gated calls are refused up front."""
import json
import re
import subprocess
import urllib.error
import urllib.request

from tests.integration.gate_support import (MFA_PATH, Background, client, fence_of, last_seq, mfa_states, replication,
                                            requests_on, settled, start_enrollment,
                                            totp_now, wait_all_have, wait_fenced, wait_until)
from tests.integration.test_relay import EVENTS_GATE, relay  # noqa: F401  (the relay fixture)
from tests.support.procs import RedisServer
from tests.support.sentinel import command

FAST = {"initial": "20ms", "max": "100ms"}


def status(qg):
    with urllib.request.urlopen(qg.admin_request("/status"), timeout=5) as r:
        return json.loads(r.read())


def readyz(qg):
    try:
        with urllib.request.urlopen(qg.admin_request("/readyz"), timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def uses(qg, address):
    """quorumgate names address as its Redis master in /status, its metrics
    say the master comes from the sentinels and is reachable."""
    st = status(qg)["redis"]
    m = qg.metrics()
    return (st["source"] == "sentinel" and st["master"] == address and st["master_known"] and
            m.value("quorumgate_redis_source", source="sentinel") == 1 and
            m.value("quorumgate_redis_source", source="direct") == 0 and
            m.value("quorumgate_redis_master_known") == 1 and m.value("quorumgate_redis_up") == 1)


def gate_keys(group, address):
    keys = command(group.servers[address].port, "KEYS", "qg:gate:*")
    return keys or []


def test_master_found_through_the_sentinels(quorumgate, redis_sentinels):
    g = redis_sentinels
    master = g.master_address()
    qg = quorumgate({"gate": {"timeout": "5s", "probe": FAST}}, redis=g)
    wait_until(lambda: uses(qg, master), timeout=10, what="quorumgate to use %s" % master)
    st = status(qg)["redis"]
    assert st["master_name"] == g.master_name and st["master_switches"] == 0
    assert st["sentinel"] in g.sentinel_addresses()
    assert qg.metrics().value("quorumgate_redis_master_switches_total") == 0
    wait_until(lambda: readyz(qg)[0] == 200, timeout=10, what="/readyz 200")

    # a whole gated enrollment goes through the master the sentinels named
    c = client(qg)
    mfa_id, secret = start_enrollment(c)
    settled(qg, qg.sim, c.identity_id, mfa_id, verified=False)
    r = c.mfa_verify(totp_now(secret)).expect(200)
    assert replication(r)["pending"] == [] and sorted(replication(r)["acked"]) == sorted(qg.sim.node_ids)
    assert gate_keys(g, master), "no gate record on the master"

def test_failover_during_held_verifies_and_logins(quorumgate, redis_sentinels):
    g = redis_sentinels
    old = g.master_address()
    qg = quorumgate({"gate": {"timeout": "10s", "probe": FAST}}, redis=g)
    wait_until(lambda: uses(qg, old), timeout=10, what="quorumgate to use %s" % old)
    sim = qg.sim
    leader = sim.control.leader()
    followers = [n for n in sim.node_ids if n != leader]
    users = ["alice", "bob", "carol"]
    enrolled = {}
    for u in users:
        c = client(qg, u)
        mfa_id, secret = start_enrollment(c)
        settled(qg, sim, c.identity_id, mfa_id, verified=False)
        enrolled[u] = (c, mfa_id, secret)

    # the followers apply late: every verify is held (acks pending) ...
    for n in followers:
        sim.control.set_lag(n, 2500)
    held = {u: Background(lambda c=c, s=s: c.mfa_verify(totp_now(s)))
            for u, (c, _, s) in enrolled.items()}
    wait_until(lambda: status(qg)["pending_acknowledgements"] == len(users), timeout=5,
               what="every verify held")
    # ... and logins (OIDC: the auth request lives on one controller) run
    logins = [Background(lambda: client(qg, "admin").access_token) for _ in range(4)]

    new = g.failover()
    assert new != old

    for u, b in held.items():
        r = b.result(timeout=30)
        assert r.status == 200, (u, r.status, r.body)
        rep = replication(r)
        assert rep["pending"] == [] and sorted(rep["acked"]) == sorted(sim.node_ids), \
            (u, r.header("quorumgate-replication"))
        wait_all_have(sim, enrolled[u][0].identity_id, enrolled[u][1], verified=True)
    for b in logins:
        assert b.result(timeout=30)
    for n in followers:
        sim.control.set_lag(n, 0)

    # quorumgate follows the new master: /status, /metrics, its connections
    wait_until(lambda: uses(qg, new), timeout=10, what="quorumgate to use the new master %s" % new)
    assert status(qg)["redis"]["master_switches"] >= 1
    assert qg.metrics().value("quorumgate_redis_master_switches_total") >= 1

    # new gated calls are recorded on the new master
    before = set(gate_keys(g, new))
    c = client(qg, "alice", totp_secret=enrolled["alice"][2])
    c2 = client(qg, "bob", totp_secret=enrolled["bob"][2])
    assert c.access_token and c2.access_token
    d = client(qg, "admin")
    mfa_id, secret = start_enrollment(d)
    r = d.mfa_verify(totp_now(secret)).expect(200)
    assert replication(r)["pending"] == []
    assert set(gate_keys(g, new)) - before, "no new gate record on the new master"


def test_fence_survives_the_failover_and_is_lifted_on_the_new_master(quorumgate, redis_sentinels):
    g = redis_sentinels
    old = g.master_address()
    qg = quorumgate({"gate": {"mode": "majority", "timeout": "1s", "probe": FAST}}, redis=g)
    wait_until(lambda: uses(qg, old), timeout=10, what="quorumgate to use %s" % old)
    sim = qg.sim
    lagging = next(n for n in sim.node_ids if n != sim.control.leader())
    c = client(qg)
    mfa_id, secret = start_enrollment(c)
    settled(qg, sim, c.identity_id, mfa_id, verified=False)
    sim.control.set_lag(lagging, 60000)
    r = c.mfa_verify(totp_now(secret)).expect(200)
    assert replication(r)["pending"] == [lagging]
    wait_fenced(qg, c.identity_id, [lagging])   # on the old master
    wait_until(lambda: g._link_up(g.servers[next(a for a in g.servers if a != old)].port), timeout=5,
               what="replica in sync")

    new = g.failover()
    wait_until(lambda: uses(qg, new), timeout=10, what="quorumgate to use the new master %s" % new)
    assert sorted(fence_of(qg, c.identity_id)) == [lagging]     # g.port is the new master's
    assert status(qg)["fenced_identities"] == 1

    # the controller catches up: the fence is lifted through the new master
    sim.control.set_lag(lagging, 0)
    wait_all_have(sim, c.identity_id, mfa_id, verified=True)
    wait_until(lambda: fence_of(qg, c.identity_id) == {}, timeout=10,
               what="the fence to clear on the new master")
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 0, timeout=5,
               what="fenced_identities 0")


def test_no_master_known_behaves_like_redis_down(quorumgate, redis_sentinels):
    g = redis_sentinels
    # the sentinels answer, but know no master by this name
    qg = quorumgate({"gate": {"timeout": "3s", "probe": FAST},
                     "redis": {"master_name": "nosuchmaster"}}, redis=g)
    wait_until(lambda: "does not know" in status(qg)["redis"]["sentinel_error"], timeout=10,
               what="the sentinels' answer in /status")
    st = status(qg)
    assert st["redis"]["master_known"] is False and st["redis"]["master"] == "" and st["redis_ok"] is False
    m = qg.metrics()
    assert m.value("quorumgate_redis_master_known") == 0 and m.value("quorumgate_redis_up") == 0
    assert m.value("quorumgate_redis_source", source="sentinel") == 1
    code, body = readyz(qg)
    assert code == 503 and "Redis does not answer" in body["reasons"]

    # gated calls refused up front (nothing committed), plain traffic passes
    c = client(qg)
    r = c.mfa_create()
    assert r.status == 503 and r.error_code == "REPLICATION_TRACKING_UNAVAILABLE", (r.status, r.body)
    assert all(v is None for v in mfa_states(qg.sim, c.identity_id).values())
    c.current_identity().expect(200)


def run(qg, *args):
    """quorumgate check / -t on qg's configuration; its output also goes
    where the fixture looks for sanitizer reports."""
    qg.write_config()
    r = subprocess.run([qg.binary] + list(args) + ["-c", qg.config_path], capture_output=True, text=True,
                       timeout=60)
    with open(qg.stdout_path, "a") as f:
        f.write(r.stdout)
    with open(qg.stderr_path, "a") as f:
        f.write(r.stderr)
    return r


def test_check_and_dash_t_ask_the_sentinels(quorumgate, redis_sentinels):
    g = redis_sentinels
    master = g.master_address()
    qg = quorumgate(redis=g, start=False)
    r = run(qg, "check")
    assert r.returncode == 0, r.stdout + r.stderr
    for s in g.sentinel_addresses():
        assert re.search(r"^ok +sentinel +%s: master '%s' is %s$" % (re.escape(s), g.master_name,
                                                                    re.escape(master)), r.stdout, re.M), r.stdout
    assert re.search(r"^ok +redis +%s says ROLE master$" % re.escape(master), r.stdout, re.M), r.stdout
    assert re.search(r"^ok +redis +maxmemory-policy noeviction$", r.stdout, re.M), r.stdout
    t = run(qg, "-t")
    assert t.returncode == 0 and "configuration is valid" in t.stdout, t.stdout + t.stderr
    assert "sentinel" not in t.stderr, t.stderr

    # one sentinel down: a warning; the master evicting: a failure (check),
    # a warning (-t)
    g.sentinels[2].stop()
    assert command(g.master().port, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru") == "OK"
    r = run(qg, "check")
    assert r.returncode == 1, r.stdout
    assert re.search(r"^WARN +sentinel +%s not reachable" % re.escape(g.sentinels[2].address), r.stdout, re.M), \
        r.stdout
    assert re.search(r"^FAIL +redis +maxmemory-policy allkeys-lru", r.stdout, re.M), r.stdout
    t = run(qg, "-t")
    assert t.returncode == 0, t.stderr
    assert "warning: sentinel %s not reached" % g.sentinels[2].address in t.stderr, t.stderr
    assert "maxmemory-policy allkeys-lru (must be noeviction" in t.stderr, t.stderr

    # a master name the sentinels do not know: an error of the file
    qg.config["redis"]["master_name"] = "nosuchmaster"
    t = run(qg, "-t")
    assert t.returncode == 1, t.stdout + t.stderr
    assert "redis.master_name: sentinel %s knows no master named 'nosuchmaster'" % g.sentinels[0].address \
        in t.stderr, t.stderr
    r = run(qg, "check")
    assert r.returncode == 1
    assert re.search(r"^FAIL +sentinel +no sentinel names master 'nosuchmaster'$", r.stdout, re.M), r.stdout


def test_master_killed_during_a_held_verify_sessions_keep_their_home(quorumgate, sim, redis_sentinels):
    """The master dies (SIGKILL) while a verify is held and while legacy
    sessions are in use: the verify is answered from the controllers
    themselves (Redis lost during the wait), and a second quorumgate finds
    the sessions' homes in the new master (replicated before the kill)."""
    g = redis_sentinels
    old = g.master_address()
    gate = {"gate": {"timeout": "10s", "probe": FAST}}
    qa = quorumgate(gate, sim=sim, redis=g, name="qa")
    qb = quorumgate(gate, sim=sim, redis=g, name="qb")
    for q in (qa, qb):
        wait_until(lambda q=q: uses(q, old), timeout=10, what="%s to use %s" % (q.name, old))
    sessions = []
    for leader in ("ctrl1", "ctrl2", "ctrl3"):
        if sim.control.leader() != leader:
            sim.control.transfer(leader)
        wait_until(lambda: qa.metrics().value("quorumgate_controller_leader", controller=leader) == 1,
                   timeout=10, what="qa to see leader %s" % leader)
        a = client(qa, login=False)
        a.legacy_login("alice", "alice-pw").expect(200)
        sessions.append((a.zt_session, leader))
    leader = sim.control.leader()
    c = client(qa, "bob")
    mfa_id, secret = start_enrollment(c)
    settled(qa, sim, c.identity_id, mfa_id, verified=False)
    replica = next(a for a in g.servers if a != old)
    wait_until(lambda: g._link_up(g.servers[replica].port), timeout=5, what="replica in sync")

    for n in sim.node_ids:
        if n != leader:
            sim.control.set_lag(n, 2000)
    held = Background(lambda: c.mfa_verify(totp_now(secret)))
    wait_until(lambda: status(qa)["pending_acknowledgements"] == 1, timeout=5, what="the verify held")
    g.servers[old].proc.kill()          # SIGKILL: no goodbye to anyone
    g.servers[old].proc.wait(5)
    new = g.wait_master_change(old)
    assert new == replica

    r = held.result(timeout=30)
    assert r.status == 200, (r.status, r.body)
    rep = replication(r)
    assert rep["pending"] == [] and sorted(rep["acked"]) == sorted(sim.node_ids), r.header("quorumgate-replication")
    wait_all_have(sim, c.identity_id, mfa_id, verified=True)
    for q in (qa, qb):
        wait_until(lambda q=q: uses(q, new), timeout=15, what="%s to use the new master %s" % (q.name, new))

    # qb never saw these sessions: their homes come from the new master
    for token, home in sessions:
        b = client(qb, login=False)
        b.zt_session = token
        for _ in range(2):
            assert b.current_identity().expect(200).header("quorumgate-controller") == home


def test_a_direct_address_is_named_as_such(quorumgate):
    qg = quorumgate()
    st = status(qg)["redis"]
    assert st == {"source": "direct", "master": qg.redis.address}, st
    m = qg.metrics()
    assert m.value("quorumgate_redis_source", source="direct") == 1
    assert m.value("quorumgate_redis_source", source="sentinel") == 0
    assert m.value("quorumgate_redis_master_known") == 1
    assert m.value("quorumgate_redis_master_switches_total") == 0


def test_a_master_demoted_behind_the_sentinels_back_is_not_used(quorumgate, redis_sentinels, tmp_path):
    """The master the sentinels name becomes a replica (REPLICAOF another
    server) and the sentinels cannot fail over (the replica has
    replica-priority 0): quorumgate checks ROLE, stops using it (as with
    Redis down: gated calls refused up front, not ready), and uses it again
    once it is a master again.  A call that met the change on its way is
    answered from the controllers, nothing lost."""
    g = redis_sentinels
    x = g.master_address()
    y = next(a for a in g.servers if a != x)
    assert command(g.servers[y].port, "CONFIG", "SET", "replica-priority", "0") == "OK"
    qg = quorumgate({"gate": {"timeout": "5s", "probe": FAST}}, redis=g)
    wait_until(lambda: uses(qg, x), timeout=10, what="quorumgate to use %s" % x)
    wait_until(lambda: readyz(qg)[0] == 200, timeout=10, what="/readyz 200")
    z = RedisServer(str(tmp_path / "redis-z")).start()
    try:
        assert command(g.servers[x].port, "REPLICAOF", "127.0.0.1", str(z.port)) == "OK"
        wait_until(lambda: g.role(x) == "slave", timeout=5, what="%s a replica" % x)

        # a create on its way: answered, and as the controllers have it
        alice = client(qg)
        r = alice.mfa_create()
        assert r.status in (201, 503), (r.status, r.body)
        have = {v["id"] if v else None for v in mfa_states(qg.sim, alice.identity_id).values()}
        if r.status == 201:
            wait_all_have(qg.sim, alice.identity_id, r.json()["data"]["id"], verified=False)
        else:
            assert r.error_code == "REPLICATION_TRACKING_UNAVAILABLE" and have == {None}

        # quorumgate stops using it: not ready, gated calls refused
        wait_until(lambda: status(qg)["redis"]["master_known"] is False, timeout=5,
                   what="the master no longer known")
        assert "says ROLE slave" in status(qg)["redis"]["sentinel_error"]
        wait_until(lambda: readyz(qg)[0] == 503, timeout=5, what="/readyz 503")
        bob = client(qg, "bob")
        r = bob.mfa_create()
        assert r.status == 503 and r.error_code == "REPLICATION_TRACKING_UNAVAILABLE", (r.status, r.body)
        assert all(v is None for v in mfa_states(qg.sim, bob.identity_id).values())
        assert qg.metrics().value("quorumgate_redis_master_known") == 0

        # a master again: used again
        assert command(g.servers[x].port, "REPLICAOF", "NO", "ONE") == "OK"
        wait_until(lambda: uses(qg, x), timeout=10, what="quorumgate to use %s again" % x)
        wait_until(lambda: readyz(qg)[0] == 200, timeout=10, what="/readyz 200 again")
        r = bob.mfa_create()
        assert r.status == 201, (r.status, r.body)
        assert status(qg)["redis"]["master_switches"] == 0
    finally:
        z.stop()


def test_the_relay_follows_the_master_too(quorumgate, relay, redis_sentinels):
    """`quorumgate relay` with the same redis: section finds the master
    through the sentinels and writes its acknowledgements to the new one
    after a failover (the followers are never probed: the acks came from
    the events, through Redis)."""
    g = redis_sentinels
    old = g.master_address()
    qg = quorumgate(EVENTS_GATE, redis=g)
    wait_until(lambda: uses(qg, old), timeout=10, what="quorumgate to use %s" % old)
    sim = qg.sim
    rl = relay(qg, {n: sim.events_path(n) for n in sim.node_ids})
    wait_until(lambda: rl.healthz().get("redis") is True, timeout=10, what="the relay's Redis")
    c = client(qg)
    r = c.mfa_create().expect(201)
    mfa_id = r.json()["data"]["id"]
    assert sorted(replication(r)["acked"]) == sorted(sim.node_ids)
    secret = c.mfa_secret()

    new = g.failover()
    wait_until(lambda: uses(qg, new), timeout=10, what="quorumgate to use %s" % new)
    wait_until(lambda: any("master '%s' moved" % g.master_name in e.get("msg", "") or
                           ("master '%s' is %s" % (g.master_name, new)) in e.get("msg", "")
                           for e in rl.log()), timeout=10, what="the relay to follow the master")
    leader = sim.control.leader()
    followers = [n for n in sim.node_ids if n != leader]
    seq = {n: last_seq(sim, n) for n in followers}
    sim.control.set_lag(followers[0], 800)
    r = c.mfa_verify(totp_now(secret)).expect(200)
    assert replication(r)["pending"] == [] and sorted(replication(r)["acked"]) == sorted(sim.node_ids)
    wait_all_have(sim, c.identity_id, mfa_id, verified=True)
    for n in followers:
        assert requests_on(sim, n, "GET", MFA_PATH, since_seq=seq[n]) == [], n
    acks = command(g.servers[new].port, "KEYS", "qg:gate:*:acks")
    assert acks, "no acknowledgement set on the new master"
