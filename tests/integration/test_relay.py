"""`quorumgate relay` (issue 7, acknowledgement source "events"): it follows
controllers' entity-change event files (propagateAlways: true), writes
acknowledgements for `mfas` changes to Redis, feeds the gate with them,
never copies the TOTP secret, salt or recovery codes out of the events,
survives rotation (rename + new file) and truncation, and keeps what Redis
did not take."""
import contextlib
import copy
import json
import os
import re
import signal

import pytest

from tests.conftest import quorumgate_binary
from tests.integration.gate_support import (MFA_PATH, Background, Relay, change_id, client, mfa_states,
                                            redis_client, replication, requests_on, restart_redis_same_port,
                                            timed, totp_now, wait_all_have, wait_until)
from tests.support.prom import parse_exposition

EVENTS_GATE = {"gate": {"source": "events", "timeout": "6s", "probe": {"initial": "20ms", "max": "100ms"}}}


@pytest.fixture
def relay(tmp_path):
    made = []

    def make(qg, sources, poll="50ms", name=None):
        cfg = copy.deepcopy(qg.config)
        cfg["relay"] = {"poll": poll, "metrics_address": "127.0.0.1:0",
                        "sources": [{"controller": c, "path": p} for c, p in sources.items()]}
        r = Relay(quorumgate_binary(), str(tmp_path), cfg, name=name or "relay%d" % (len(made) + 1))
        made.append(r)
        return r.start()

    yield make
    problems = []
    for r in made:
        r.stop()
        problems += r.problems()
    if problems:
        pytest.fail("relay problems:\n" + "\n".join(problems), pytrace=False)


@contextlib.contextmanager
def stopped(r):
    """The relay process frozen (SIGSTOP) for the block, by its PID."""
    os.kill(r.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(r.proc.pid, signal.SIGCONT)


def relay_metrics(r):
    return parse_exposition(r.metrics_text())


def leader_of(sim):
    leader = sim.control.leader()
    return leader, [n for n in sim.node_ids if n != leader]


def read_lines(path):
    with open(path, "rb") as f:
        return f.read().splitlines(keepends=True)


def event_copies(sim, tmp_path, prefix):
    """Empty event files the test owns, one per node -> (files, pump): pump(n) appends what the
    simulator wrote for n since the last pump."""
    files = {n: str(tmp_path / ("%s-%s.json" % (prefix, n))) for n in sim.node_ids}
    copied = {n: 0 for n in sim.node_ids}

    def pump(n):
        lines = read_lines(sim.events_path(n))
        with open(files[n], "ab") as f:
            f.writelines(lines[copied[n]:])
        copied[n] = len(lines)

    for n in sim.node_ids:
        open(files[n], "wb").close()
    return files, pump


# ---------------------------------------------------------------------------

def test_relay_feeds_the_gate_from_the_controllers_event_files(quorumgate, relay):
    qg = quorumgate(EVENTS_GATE)
    sim = qg.sim
    leader, (lagging, other) = leader_of(sim)
    rl = relay(qg, {n: sim.events_path(n) for n in sim.node_ids})
    c = client(qg)

    # create: held until the relay saw it in every file
    r = c.mfa_create().expect(201)
    mfa_id = r.json()["data"]["id"]
    assert sorted(replication(r)["acked"]) == sorted(sim.node_ids)
    d = c.mfa_get().expect(200).json()["data"]
    secret, codes = c.mfa_secret(), d["recoveryCodes"]

    # verify, with a lagging follower: held until its event was written
    sim.control.set_lag(lagging, 1500)
    r, took = timed(c.mfa_verify, totp_now(secret))
    states = mfa_states(sim, c.identity_id)
    r.expect(200)
    assert states == {n: {"id": mfa_id, "isVerified": True} for n in sim.node_ids}, states
    assert took >= 1.5, took
    assert replication(r)["pending"] == []

    # nobody probed the followers: the acknowledgements came from the events
    for n in (lagging, other):
        assert requests_on(sim, n, "GET", MFA_PATH) == [], n

    # the events carry the secrets (like the real ones) ...
    sim_events = b"".join(b"".join(read_lines(sim.events_path(n))) for n in sim.node_ids)
    assert secret.encode() in sim_events and codes[0].encode() in sim_events
    # ... Redis does not, nor any token or password
    dump = redis_client(qg.redis).dump()
    assert any(k.endswith(b":acks") for k in dump)
    blob = b"\n".join(list(dump) + [v for e in dump.values() for v in e["values"] if v])
    salts = set(re.findall(rb'"salt":"([^"]+)"', sim_events))
    assert salts
    for s in [secret.encode(), c.access_token.encode(), b"alice-pw", c.identity_id.encode(),
              mfa_id.encode()] + [x.encode() for x in codes] + list(salts):
        assert s not in blob, s
    for k, e in dump.items():
        assert e["ttl"] > 0, k

    m = relay_metrics(rl)
    for n in sim.node_ids:
        assert m.value("quorumgate_relay_events_total", controller=n, result="acked") >= 2, n
        lag = m.value("quorumgate_relay_lag_seconds", controller=n)
        assert lag is not None and 0 <= lag < 60, (n, lag)
    assert m.value("quorumgate_redis_operations_total", op="ack_write", result="ok") >= 6
    # and nothing secret in the relay's own log either
    assert secret not in rl.stderr_text()


def test_relay_survives_rotation_and_truncation(quorumgate, relay, tmp_path):
    """The relay follows files the test owns; the test copies the
    simulator's event lines into them, rotating one file (rename + new
    file, with the change still unread in the old one) and truncating
    another before the change arrives."""
    qg = quorumgate(EVENTS_GATE)
    sim = qg.sim
    ids = sim.node_ids
    leader, (rot, trunc) = leader_of(sim)
    files, pump = event_copies(sim, tmp_path, "relay")
    rl = relay(qg, files)
    c = client(qg)

    # create: the relay reads all three files as they are
    bg = Background(c.mfa_create)
    wait_until(lambda: all(sim.control.mfa_on(n, c.identity_id) for n in ids), timeout=5,
               what="the create on every node")
    assert not bg.done(), "create released before any event was relayed: %r" % (bg.value,)
    for n in ids:
        pump(n)
    r = bg.result(timeout=5)
    assert r.status == 201 and replication(r)["pending"] == [], (r.status, r.header("quorumgate-replication"))
    mfa_id = r.json()["data"]["id"]
    secret = c.mfa_secret()
    wait_until(lambda: rl.healthz()["pending"] == 0, timeout=5, what="relay queue empty")

    # truncate one file; wait until the relay noticed
    with open(files[trunc], "r+b") as f:
        f.truncate(0)
    wait_until(lambda: "truncated" in rl.stderr_text(), timeout=5, what="the relay to notice the truncation")

    # verify: the rotated controller's event lands in the old file, which is
    # renamed away (a new, empty file takes its place) before the relay
    # reads it -- the relay is stopped (SIGSTOP) meanwhile, so it cannot
    # have read the line early
    bg = Background(c.mfa_verify, totp_now(secret))
    wait_all_have(sim, c.identity_id, mfa_id, verified=True, timeout=5)
    with stopped(rl):
        pump(leader)
        pump(trunc)
        pump(rot)
        os.rename(files[rot], files[rot] + ".1")
        open(files[rot], "wb").close()
    r = bg.result(timeout=5)
    assert r.status == 200, (r.status, r.body)
    assert replication(r)["pending"] == [], r.header("quorumgate-replication")
    wait_until(lambda: "rotated" in rl.stderr_text(), timeout=5, what="the relay to log the rotation")

    # delete: rotated again, and the event is already in the new file when
    # the relay notices
    bg = Background(c.mfa_delete, totp_now(secret))
    wait_until(lambda: all(sim.control.mfa_on(n, c.identity_id) is None for n in ids), timeout=5,
               what="the delete on every node")
    with stopped(rl):
        os.rename(files[rot], files[rot] + ".2")
        for n in ids:
            pump(n)
    r = bg.result(timeout=5)
    assert r.status == 200 and replication(r)["pending"] == [], (r.status, r.header("quorumgate-replication"))
    m = relay_metrics(rl)
    assert m.value("quorumgate_relay_events_total", controller=rot, result="acked") >= 3


def test_relay_reads_a_write_at_once_not_at_its_next_poll(quorumgate, relay, tmp_path):
    """The relay watches the event files' directories (inotify), so a controller's event is
    acknowledged as soon as it is written, not up to relay.poll later (issue 13: the gate should
    cost no more than replication).  With a poll of an hour, only the watch can bring the
    changes in time: the write into a file, then a file created after a rotation."""
    qg = quorumgate(EVENTS_GATE)
    sim = qg.sim
    ids = sim.node_ids
    leader, (rot, other) = leader_of(sim)
    files, pump = event_copies(sim, tmp_path, "watched")
    rl = relay(qg, files, poll="1h")
    wait_until(lambda: rl.healthz()["pending"] == 0, timeout=5, what="the relay's first poll")
    c = client(qg)

    bg = Background(c.mfa_create)
    wait_until(lambda: all(sim.control.mfa_on(n, c.identity_id) for n in ids), timeout=5,
               what="the create on every node")
    for n in ids:
        pump(n)
    r = bg.result(timeout=10)
    assert r.status == 201 and replication(r)["pending"] == [], (r.status, r.header("quorumgate-replication"))
    mfa_id = r.json()["data"]["id"]
    secret = c.mfa_secret()

    # rotated: the old file renamed away, the event written into a new file at the path
    bg = Background(c.mfa_verify, totp_now(secret))
    wait_all_have(sim, c.identity_id, mfa_id, verified=True, timeout=5)
    os.rename(files[rot], files[rot] + ".1")
    for n in ids:
        pump(n)
    r = bg.result(timeout=10)
    assert r.status == 200 and replication(r)["pending"] == [], (r.status, r.header("quorumgate-replication"))
    m = relay_metrics(rl)
    assert m.value("quorumgate_relay_events_total", controller=rot, result="acked") >= 2


def test_relay_skips_malformed_and_unrelated_lines(quorumgate, relay, tmp_path):
    qg = quorumgate(EVENTS_GATE)
    path = str(tmp_path / "ctrl2.json")
    cid = change_id(qg, "idX", "mfaX", "verify")
    good = {"namespace": "entityChange", "event_src_id": "ctrl2", "timestamp": _now(), "eventId": "e1",
            "eventType": "updated", "entityType": "mfas", "metadata": {"raft_index": 42},
            "initialState": {"id": "mfaX", "identityId": "idX", "isVerified": False, "secret": "S3CR3T",
                             "salt": "SALTY", "recoveryCodes": ["RC1"]},
            "finalState": {"id": "mfaX", "identityId": "idX", "isVerified": True, "secret": "S3CR3T",
                           "salt": "SALTY", "recoveryCodes": ["RC1"]}}
    with open(path, "wb") as f:
        f.write(b"not json at all\n")
        f.write(b'{"namespace":"entityChange","entityType":"identities","eventType":"created"}\n')
        f.write(b'{"namespace":"entityChange","entityType":"mfas","eventType":"updated"}\n')   # no state
        f.write(b"\n")
        f.write(json.dumps(dict(good, eventType="committed")).encode() + b"\n")
        f.write(json.dumps(good).encode()[:40])                                        # a partial line...
    rl = relay(qg, {"ctrl2": path})
    wait_until(lambda: (relay_metrics(rl).value("quorumgate_relay_events_total", controller="ctrl2",
                                                result="malformed") or 0) >= 2, timeout=5,
               what="malformed lines counted")
    rc = redis_client(qg.redis)
    assert rc("SMEMBERS", "qg:gate:%s:acks" % cid) == []
    with open(path, "ab") as f:                                                        # ... completed
        f.write(json.dumps(good).encode()[40:] + b"\n")
    wait_until(lambda: rc("SMEMBERS", "qg:gate:%s:acks" % cid) == [b"ctrl2"], timeout=5,
               what="the completed line acknowledged")
    assert rc("PTTL", "qg:gate:%s:acks" % cid) > 0
    dump = rc.dump()
    blob = b"\n".join(list(dump) + [v for e in dump.values() for v in e["values"] if v])
    for s in (b"S3CR3T", b"SALTY", b"RC1", b"idX", b"mfaX"):
        assert s not in blob
    m = relay_metrics(rl)
    assert m.value("quorumgate_relay_events_total", controller="ctrl2", result="acked") == 1
    assert m.value("quorumgate_relay_events_total", controller="ctrl2", result="ignored") >= 2
    assert rl.proc.poll() is None


def test_relay_keeps_acknowledgements_while_redis_is_down(quorumgate, relay, tmp_path):
    qg = quorumgate(EVENTS_GATE)
    path = str(tmp_path / "ctrl3.json")
    open(path, "wb").close()
    rl = relay(qg, {"ctrl3": path})
    qg.redis.stop()
    wait_until(lambda: rl.healthz()["redis"] is False, timeout=5, what="the relay to see Redis down")
    ev = {"namespace": "entityChange", "event_src_id": "ctrl3", "timestamp": _now(), "eventId": "e2",
          "eventType": "created", "entityType": "mfas", "metadata": {"raft_index": 7},
          "finalState": {"id": "mfaY", "identityId": "idY", "isVerified": False, "secret": "S",
                         "salt": "s", "recoveryCodes": []}}
    with open(path, "ab") as f:
        f.write(json.dumps(ev).encode() + b"\n")
    wait_until(lambda: rl.healthz()["pending"] == 1, timeout=5, what="the acknowledgement queued")
    restart_redis_same_port(qg.redis)
    cid = change_id(qg, "idY", "mfaY", "create")
    rc = redis_client(qg.redis)
    wait_until(lambda: rc("SMEMBERS", "qg:gate:%s:acks" % cid) == [b"ctrl3"], timeout=10,
               what="the queued acknowledgement written once Redis is back")
    wait_until(lambda: rl.healthz()["pending"] == 0, timeout=5, what="the queue drained")


def _now():
    import datetime
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_relay_finishes_a_rotated_file_however_much_is_left_in_it(quorumgate, relay, tmp_path):
    """A busy controller's file is rotated while the relay is behind by more
    than it reads in one poll: everything left in the old file is still
    read before the relay moves to the new one."""
    qg = quorumgate(EVENTS_GATE)
    path = str(tmp_path / "ctrl1.json")
    open(path, "wb").close()
    rl = relay(qg, {"ctrl1": path})
    filler = json.dumps({"namespace": "entityChange", "event_src_id": "ctrl1", "timestamp": _now(),
                         "eventId": "f", "eventType": "updated", "entityType": "identities",
                         "metadata": {"raft_index": 1}, "finalState": {"id": "x", "name": "y" * 900}}).encode()
    ev = {"namespace": "entityChange", "event_src_id": "ctrl1", "timestamp": _now(), "eventId": "e3",
          "eventType": "created", "entityType": "mfas", "metadata": {"raft_index": 9},
          "finalState": {"id": "mfaZ", "identityId": "idZ", "isVerified": False, "secret": "S",
                         "salt": "s", "recoveryCodes": []}}
    with open(path, "ab") as f:                             # the relay has the file open
        f.write(filler + b"\n")
    wait_until(lambda: relay_metrics(rl).value("quorumgate_relay_events_total", controller="ctrl1",
                                               result="ignored") == 1, timeout=5, what="the first line read")
    with stopped(rl):
        with open(path, "ab") as f:
            for _ in range(5 * 1024):                       # ~5 MiB the relay has not read yet
                f.write(filler + b"\n")
            f.write(json.dumps(ev).encode() + b"\n")
        os.rename(path, path + ".1")
        open(path, "wb").close()
    cid = change_id(qg, "idZ", "mfaZ", "create")
    rc = redis_client(qg.redis)
    wait_until(lambda: rc("SMEMBERS", "qg:gate:%s:acks" % cid) == [b"ctrl1"], timeout=10,
               what="the event at the end of the rotated file acknowledged")
    m = relay_metrics(rl)
    assert m.value("quorumgate_relay_events_total", controller="ctrl1", result="ignored") >= 5 * 1024
