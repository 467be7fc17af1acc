"""A hard home that only looks down (issue 18, the soak's lost affinity): a
legacy session or an OIDC login lives on one controller; when that
controller fails its health probes (5xx, probe timeouts, the fall rule) but
still answers, its requests still go there and get its answers.  Only a
home that cannot be reached (refused, no connection) makes quorumgate
answer 401 UNAUTHORIZED itself.  Counted in affinity_home_down_total and
affinity_home_unreachable_total, logged once per episode.
"""
import os
import socket
import subprocess
import threading
import time

import pytest

from tests.integration.routing_support import (
    ZitiClient, assert_envelope, is_oidc_login, nodes_that_saw, oidc_login, redis_call, redis_dump, wait_view)
from tests.support.procs import wait_until

PROBE = "/health-checks/controller/raft"
DOWN_LOG = "is marked down by its health probes"
# the example's probe timeout and fall count (the suite's 500 ms / fall 1 flaps the view when the
# loaded machine stalls a moment; these tests mark a controller down on purpose)
STEADY = {"health": {"timeout": "1s", "fall": 2}}
UNREACHABLE_LOG = "cannot be reached (connect"


def _session_requests(r):
    return r["path"].startswith("/edge/client/v1/current-")


def _counter(qg, name, ctrl):
    return qg.metrics().value("quorumgate_" + name, controller=ctrl) or 0


def _fds_connected_to(pid, port):
    """Descriptor numbers of pid's TCP sockets whose peer port is port."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with open("/proc/%s/net/%s" % (pid, table)) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if int(cols[2].rsplit(":", 1)[1], 16) == port:
                    inodes.add(cols[9])
    out = []
    for fd in os.listdir("/proc/%s/fd" % pid):
        try:
            link = os.readlink("/proc/%s/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            out.append(int(fd))
    assert out, "no connection of quorumgate to port %d" % port
    return out


def _legacy_session_on(qg, sim, home):
    if sim.control.leader() != home:
        sim.control.transfer(home)
    wait_view(qg, leader=home)
    bob = ZitiClient(qg.url)
    bob.legacy_login("bob", "bob-pw").expect(200)       # /authenticate: the leader
    sim.control.transfer(next(n for n in sim.node_ids if n != home))   # home is a follower now
    wait_view(qg, leader=sim.control.leader())
    return bob


@pytest.mark.parametrize("probe_fault", ["500", "hang"])
def test_a_home_failing_its_health_probes_still_answers_its_sessions(quorumgate, sim, probe_fault):
    """The probes fail (a 500, or no answer within health.timeout: the fall
    rule marks the home down) while its API answers: the session's calls get
    the controller's 200, not quorumgate's 401."""
    qg = quorumgate(STEADY, sim=sim)
    home = "ctrl1"
    bob = _legacy_session_on(qg, sim, home)
    sim.control.inject(probe_fault, PROBE, node=home, count=1000000)
    wait_view(qg, up={home: False})
    sim.control.reset_requests()
    before = _counter(qg, "affinity_home_down_total", home)
    for _ in range(10):
        r = bob.current_identity()
        assert r.status == 200, (r.status, r.body[:300])
        assert r.header("quorumgate-controller") == home
        assert r.json()["data"]["name"] == "bob"
    assert nodes_that_saw(sim, _session_requests) == [home]
    assert _counter(qg, "affinity_home_down_total", home) - before == 10
    assert _counter(qg, "affinity_home_unreachable_total", home) == 0
    # said once for the episode, not once per request
    logged = qg.stderr_text().count(DOWN_LOG)
    assert logged == 1, qg.stderr_text()[-3000:]

    # probes pass again: up, no longer counted; the next episode is logged again
    sim.control.clear_injections()
    wait_view(qg, up={home: True})
    n = _counter(qg, "affinity_home_down_total", home)
    bob.current_identity().expect(200)
    assert _counter(qg, "affinity_home_down_total", home) == n
    sim.control.inject(probe_fault, PROBE, node=home, count=1000000)
    wait_view(qg, up={home: False})
    assert bob.current_identity().expect(200).header("quorumgate-controller") == home
    wait_until(lambda: qg.stderr_text().count(DOWN_LOG) == logged + 1, timeout=5, what="a second episode logged")
    sim.control.clear_injections()


def test_a_paused_home_marked_down_answers_when_it_resumes(quorumgate, sim):
    """The soak's case: a home too slow to answer its probes (paused here,
    every request waits) is marked down; a call of its session waits for
    its answer instead of getting quorumgate's 401."""
    qg = quorumgate(STEADY, sim=sim)
    home = "ctrl2"
    bob = _legacy_session_on(qg, sim, home)
    sim.control.pause(home)
    try:
        wait_view(qg, up={home: False})
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", bob.current_identity()), daemon=True)
        t.start()
        # the call reaches the paused home (the simulator logs it when it
        # resumes), so nothing answers it before the resume
        wait_until(lambda: _counter(qg, "affinity_home_down_total", home) >= 1, timeout=5,
                   what="the call sent to the home marked down")
        assert "r" not in out, out["r"].status
    finally:
        sim.control.resume(home)
    t.join(15)
    r = out["r"]
    assert r.status == 200, (r.status, r.body[:300])
    assert r.header("quorumgate-controller") == home
    assert _counter(qg, "affinity_home_unreachable_total", home) == 0


def test_a_home_that_cannot_be_reached_gets_the_401_envelope(quorumgate, sim):
    """Killed (connection refused): whether or not the probes noticed yet,
    quorumgate answers 401 UNAUTHORIZED itself, after the retry policy's
    attempts at the home and nowhere else; counted and logged once."""
    qg = quorumgate(STEADY, sim=sim)
    home = "ctrl3"
    bob = _legacy_session_on(qg, sim, home)
    bob.current_identity().expect(200)
    sim.control.inject("500", PROBE, node=home, count=1000000)   # marked down first...
    wait_view(qg, up={home: False})
    sim.control.kill(home)                                        # ... then gone
    sim.control.reset_requests()
    t0 = time.monotonic()
    r = bob.current_identity()
    took = time.monotonic() - t0
    j = assert_envelope(r, 401, "UNAUTHORIZED")
    assert home in j["error"]["message"] and "cannot be reached" in j["error"]["message"], j
    assert r.header("quorumgate-controller") == home
    # the session policy's attempts, all at the home (never elsewhere)
    assert 1 <= int(r.header("quorumgate-attempts")) <= 3, r.header("quorumgate-attempts")
    assert nodes_that_saw(sim, _session_requests) == []
    for _ in range(4):
        assert_envelope(bob.current_identity(), 401, "UNAUTHORIZED")
    assert _counter(qg, "affinity_home_unreachable_total", home) == 5
    assert qg.stderr_text().count(UNREACHABLE_LOG) == 1, qg.stderr_text()[-3000:]
    print("401 after %.3f s" % took)
    sim.control.clear_injections()


def test_an_oidc_login_whose_home_fails_its_probes_completes_there(quorumgate, sim):
    """The same for an OIDC login: its auth request lives in one
    controller's memory; that controller marked down by its probes still
    gets the login's next steps and the login completes."""
    qg = quorumgate(STEADY, sim=sim)
    wait_view(qg, leader="ctrl1")
    c = ZitiClient(qg.url)
    box = {}

    class FirstStepThenFault:
        """The authorize step, then the home's probes start failing."""

        def request(self, *a, **kw):
            r = c.request(*a, **kw)
            home = r.header("quorumgate-controller")
            box["home"] = home
            sim.control.inject("500", PROBE, node=home, count=1000000)
            wait_view(qg, up={home: False})
            sim.control.reset_requests()
            return r

    lg = oidc_login(FirstStepThenFault(), c, "alice", "alice-pw")
    home = box["home"]
    assert lg.ok, lg.failed_step
    assert set(lg.controllers()) == {home}, lg.controllers()
    assert nodes_that_saw(sim, is_oidc_login) == [home]
    assert _counter(qg, "affinity_home_down_total", home) >= 2
    sim.control.clear_injections()


def test_a_home_no_longer_configured_gets_the_401_envelope(quorumgate, sim):
    """The shared Redis names a home this process does not have (removed from
    its configuration): the session is out of reach, quorumgate answers 401
    itself and asks nobody."""
    qa = quorumgate(sim=sim, name="qa")
    wait_view(qa, leader="ctrl1")
    bob = ZitiClient(qa.url)
    bob.legacy_login("bob", "bob-pw").expect(200)
    keys = [k for k in redis_dump(qa.redis) if k.startswith(b"qg:aff:sess:")]
    assert len(keys) == 1, keys
    redis_call(qa.redis, "SET", keys[0], "ctrl-retired", "PX", "60000")
    qb = quorumgate(sim=sim, name="qb")      # no local entry: reads Redis
    wait_view(qb, leader="ctrl1")
    other = ZitiClient(qb.url)
    other.zt_session = bob.zt_session
    sim.control.reset_requests()
    j = assert_envelope(other.current_identity(), 401, "UNAUTHORIZED")
    assert "not configured" in j["error"]["message"], j
    assert nodes_that_saw(sim, _session_requests) == []


def test_a_call_waiting_for_a_connection_to_a_busy_home_is_not_told_the_session_is_gone(quorumgate, sim):
    """A slow home holds every pooled connection (upstream.max_connections):
    a call that times out waiting for one never reached the controller, but
    the controller is there -- the answer is quorumgate's 504 (the class's
    retries spent), never the 401 that would end the session."""
    qg = quorumgate({"upstream": {"max_connections": 1}, "health": STEADY["health"],
                     "retry": {"policies": {"session": {"per_try_timeout": "400ms", "deadline": "3s"}}}},
                    sim=sim)
    home = "ctrl1"
    bob = _legacy_session_on(qg, sim, home)
    sim.control.inject("500", PROBE, node=home, count=1000000)
    wait_view(qg, up={home: False})
    # an MFA read of the session (class mfa: per-try timeout 6 s) holds the
    # only connection for 5 s (the other call's tries end within 3 s)
    sim.control.inject("delay", "/edge/client/v1/current-identity/mfa", node=home, count=1, delay_ms=5000)
    first = {}
    before = _counter(qg, "affinity_home_down_total", home)
    t = threading.Thread(target=lambda: first.setdefault("r", bob.mfa_get()), daemon=True)
    t.start()
    # routed (and so started: the attempt begins in the same step) to the home
    wait_until(lambda: _counter(qg, "affinity_home_down_total", home) > before, timeout=5,
               what="the first call sent")
    other = ZitiClient(qg.url)
    other.zt_session = bob.zt_session
    r = other.request("GET", "/edge/client/v1/current-api-session")
    # the session class's 3 tries of 400 ms, each waiting for the connection
    assert_envelope(r, 504, "PROXY_UPSTREAM_TIMEOUT")
    t.join(10)
    # the controller's own answer (no enrollment yet), from the home
    assert first["r"].status == 404, first["r"].status
    assert first["r"].header("quorumgate-controller") == home
    assert _counter(qg, "affinity_home_unreachable_total", home) == 0
    # the home still has the session: once it is free, the session works
    assert bob.current_identity().expect(200).header("quorumgate-controller") == home
    sim.control.clear_injections()


def test_an_oidc_login_whose_home_is_killed_gets_the_401_envelope(quorumgate, sim):
    """The auth request lived in the killed controller's memory: the next
    step of the login is answered 401 UNAUTHORIZED by quorumgate (naming the
    home; the client starts the login again), never sent elsewhere."""
    qg = quorumgate(STEADY, sim=sim)
    wait_view(qg, leader="ctrl1")
    c = ZitiClient(qg.url)
    box = {}

    class FirstStepThenKill:
        def request(self, *a, **kw):
            r = c.request(*a, **kw)
            box["home"] = home = r.header("quorumgate-controller")
            sim.control.kill(home)
            sim.control.reset_requests()
            return r

    lg = oidc_login(FirstStepThenKill(), c, "alice", "alice-pw")
    home = box["home"]
    assert not lg.ok
    name, r = lg.steps[-1]
    assert name == "login-page", lg.steps
    j = assert_envelope(r, 401, "UNAUTHORIZED")
    assert home in j["error"]["message"] and "cannot be reached" in j["error"]["message"], j
    assert nodes_that_saw(sim, is_oidc_login) == []
    assert _counter(qg, "affinity_home_unreachable_total", home) == 1


def test_quorumgate_out_of_descriptors_does_not_end_the_session(quorumgate, sim):
    """quorumgate itself out of file descriptors (socket() fails with
    EMFILE) cannot open a connection to the home: that says nothing about
    the controller, so the answer is an upstream error, never the 401 that
    would end a session the home still has."""
    qg = quorumgate(STEADY, sim=sim)
    home = "ctrl3"
    bob = _legacy_session_on(qg, sim, home)
    bob.keep_alive = True
    bob.current_identity().expect(200)          # the front connection stays open
    pid = str(qg.proc.pid)
    # every pooled connection to the home is reset when used: each retry
    # must open a new one
    sim.control.inject("reset", "/edge/client/v1/current-identity", node=home, count=1000)
    # The kernel hands out the lowest free descriptor: a limit at or below
    # the lowest one connected to the home refuses every new descriptor,
    # also after the reset closed a pooled connection (its number is not
    # below the limit).
    limit = min(_fds_connected_to(pid, sim.port(home)))
    old = subprocess.run(["prlimit", "--pid", pid, "--nofile", "--raw", "--noheadings", "--output=SOFT,HARD"],
                         capture_output=True, text=True, check=True).stdout.split()
    subprocess.run(["prlimit", "--pid", pid, "--nofile=%d:%s" % (limit, old[1])], check=True)
    try:
        r = bob.current_identity()
    finally:
        subprocess.run(["prlimit", "--pid", pid, "--nofile=%s:%s" % (old[0], old[1])], check=True)
        sim.control.clear_injections()
    assert r.status != 401, (r.status, r.body)
    assert r.status in (502, 503, 504), (r.status, r.body)
    # the retries could not get a descriptor (the pooled connection the
    # reset closed had a number at or above the limit)
    assert "Too many open files" in r.json()["error"]["message"], r.body
    assert _counter(qg, "affinity_home_unreachable_total", home) == 0
    assert UNREACHABLE_LOG not in qg.stderr_text()
    # the home still has the session
    again = ZitiClient(qg.url)
    again.zt_session = bob.zt_session
    assert again.current_identity().expect(200).header("quorumgate-controller") == home


class HoldingRelay:
    """A TCP relay to a controller's port; after hold(), new connections are accepted (by the
    kernel and by this relay) and then left silent: a TLS handshake over them never completes."""

    def __init__(self, port):
        self.target = port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.holding = threading.Event()
        self.stopping = threading.Event()
        self.socks = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.lsock.accept()
            except OSError:
                return
            self.socks.append(conn)
            if self.stopping.is_set():
                return
            if self.holding.is_set():
                continue
            up = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            up.settimeout(None)
            self.socks.append(up)
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def hold(self):
        self.holding.set()

    def blackhole(self):
        """New connections never complete TCP, as to a host that is gone: nobody accepts any more,
        the backlog is 0 and one connection waits in the queue, so the kernel drops every further
        SYN (its accept queue is full)."""
        self.holding.set()
        self.stopping.set()
        wake = socket.create_connection(("127.0.0.1", self.port), timeout=5)   # the last accept
        self.socks.append(wake)
        self.acceptor.join(5)
        assert not self.acceptor.is_alive()
        self.lsock.listen(0)
        self.socks.append(socket.create_connection(("127.0.0.1", self.port), timeout=5))
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            with pytest.raises(socket.timeout):
                probe.connect(("127.0.0.1", self.port))
        finally:
            probe.close()

    def close(self):
        self.lsock.close()
        for s in self.socks:
            s.close()


def _bob_behind_a_relay(quorumgate, sim_factory, upstream, retry):
    """An HTTPS simulator whose ctrl2 quorumgate reaches through a HoldingRelay, quorumgate (gate
    off) and bob's legacy session on ctrl2 -> (relay, qg, bob); the caller closes the relay."""
    sim = sim_factory(tls=True)   # HTTPS, as real controllers: the handshake is what waits
    home = "ctrl2"
    relay = HoldingRelay(sim.port(home))
    url = sim.url(home).rsplit(":", 1)[0] + ":%d" % relay.port
    try:
        qg = quorumgate({"controllers": [{"id": n, "url": url if n == home else sim.url(n)}
                                         for n in sim.node_ids],
                         "upstream": upstream, "health": STEADY["health"], "gate": {"enabled": False},
                         "retry": retry}, sim=sim)
        bob = _legacy_session_on(qg, sim, home)
        bob.current_identity().expect(200)
    except BaseException:
        relay.close()
        raise
    return relay, qg, bob


def test_a_connection_cut_short_by_the_attempts_own_time_is_not_a_gone_home(quorumgate, sim_factory):
    """bench/soak.py, 30-minute run: legacy sessions got quorumgate's 401 "cannot be reached"
    while their home answered everything else -- the last attempt had only the few ms left of the
    request's deadline, and the connection it opened was not complete when that ran out.  Only the
    connection's own connect timeout (upstream.connect_timeout) is evidence that the controller is
    gone; an attempt's time running out while connecting is a 504.  Here new connections to the
    home are accepted and left silent (the TLS handshake waits), and the attempts (400 ms each)
    end well before the 5 s connect timeout (an MFA create: a write, on a new connection)."""
    home = "ctrl2"
    relay, qg, bob = _bob_behind_a_relay(quorumgate, sim_factory, {"connect_timeout": "5s"},
                                         {"policies": {"mfa": {"per_try_timeout": "400ms",
                                                               "deadline": "1500ms"}}})
    try:
        relay.hold()
        r = bob.mfa_create()   # a write: a new connection (fresh_connection)
        assert_envelope(r, 504, "PROXY_UPSTREAM_TIMEOUT")
        assert r.header("quorumgate-controller") == home
        assert _counter(qg, "affinity_home_unreachable_total", home) == 0
    finally:
        relay.close()


def test_one_connect_timeout_whose_retries_the_budget_refused_is_not_a_gone_home(quorumgate, sim_factory):
    """The same soak, three more of its 401s: the home missed one connect timeout (1 s, an
    overloaded machine) and the retry budget (retry.budget) refused the retries the class would
    have made -- the README promises the 401 only after the class's retries.  Without them, one
    connect timeout is a slow home: 504."""
    home = "ctrl2"
    relay, qg, bob = _bob_behind_a_relay(quorumgate, sim_factory, {"connect_timeout": "300ms"},
                                         {"budget": {"ratio": 0, "min": 0},
                                          "policies": {"mfa": {"per_try_timeout": "2s", "deadline": "3s"}}})
    try:
        relay.hold()
        r = bob.mfa_create()
        assert_envelope(r, 504, "PROXY_UPSTREAM_TIMEOUT")
        assert r.header("quorumgate-attempts") == "1", r.header("quorumgate-attempts")
        assert _counter(qg, "affinity_home_unreachable_total", home) == 0
    finally:
        relay.close()


def test_full_connect_timeouts_of_a_handshake_the_home_never_answers_are_not_a_gone_home(quorumgate, sim_factory):
    """bench/soak.py, 30-minute v1.5.4 run: four 401s "cannot be reached (connect timeout)" after two
    or three full connect timeouts of a home that answered everything else on an overloaded
    machine.  Its kernel had accepted each connection: the TLS handshake was what the controller
    was slow to answer -- a live process, so 504, retries made, the session kept."""
    home = "ctrl2"
    relay, qg, bob = _bob_behind_a_relay(quorumgate, sim_factory, {"connect_timeout": "300ms"},
                                         {"policies": {"mfa": {"per_try_timeout": "2s", "deadline": "4s"}}})
    try:
        relay.hold()
        r = bob.mfa_create()   # a write: a new connection, whose handshake never ends
        assert_envelope(r, 504, "PROXY_UPSTREAM_TIMEOUT")
        assert int(r.header("quorumgate-attempts")) >= 2, r.header("quorumgate-attempts")
        assert r.header("quorumgate-controller") == home
        assert _counter(qg, "affinity_home_unreachable_total", home) == 0
    finally:
        relay.close()


def test_a_home_whose_connections_never_complete_tcp_is_gone(quorumgate, sim_factory):
    """The other side of the rule above: no TCP connection at all within the connect timeout,
    after the class's retries, is a controller that cannot be reached (a host that is gone): 401."""
    home = "ctrl2"
    relay, qg, bob = _bob_behind_a_relay(quorumgate, sim_factory, {"connect_timeout": "300ms"},
                                         {"policies": {"mfa": {"per_try_timeout": "2s", "deadline": "4s"}}})
    try:
        relay.blackhole()
        r = bob.mfa_create()
        j = assert_envelope(r, 401, "UNAUTHORIZED")
        assert "cannot be reached (connect timeout)" in j["error"]["message"], j
        assert r.header("quorumgate-controller") == home
        assert _counter(qg, "affinity_home_unreachable_total", home) == 1
    finally:
        relay.close()
