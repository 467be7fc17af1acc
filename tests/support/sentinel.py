"""A Sentinel-managed Redis for tests: a master, a replica and three
sentinels (``redis-server --sentinel``), all real processes on free loopback
ports, stopped by PID.  Sentinel timings are short (down-after 500 ms) so a
failover takes a second or two."""
import os
import subprocess

from .procs import RedisServer, answered_by_pid, free_port, stop_pid, wait_until
from .resp import RedisClient

MASTER_NAME = "qgmaster"


def command(port, *args, timeout=2.0):
    """One command on a fresh connection; its reply (bulk strings decoded)."""
    c = RedisClient(port, timeout=timeout)
    try:
        return _decode(c(*args))
    finally:
        c.close()


def _decode(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


class SentinelProcess:
    def __init__(self, workdir, index, master_port, quorum=2):
        self.workdir = workdir
        self.index = index
        self.master_port = master_port
        self.quorum = quorum
        self.proc = None
        self.port = None
        self.conf = os.path.join(workdir, "sentinel%d.conf" % index)
        self.log_path = os.path.join(workdir, "sentinel%d.log" % index)

    def start(self, attempts=5):
        for _ in range(attempts):
            self.port = free_port()
            with open(self.conf, "w") as f:
                f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                        "sentinel monitor %s 127.0.0.1 %d %d\n"
                        "sentinel down-after-milliseconds %s 500\n"
                        "sentinel failover-timeout %s 3000\n"
                        "sentinel parallel-syncs %s 1\n"
                        % (self.port, self.workdir, MASTER_NAME, self.master_port,
                           self.quorum, MASTER_NAME, MASTER_NAME, MASTER_NAME))
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                ["redis-server", self.conf, "--sentinel", "--loglevel", "notice"],
                stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            try:
                wait_until(lambda: self.proc.poll() is not None or self.ping(), timeout=10,
                           what="sentinel ping")
            except TimeoutError:
                self.stop()
                raise
            if self.proc.poll() is None:
                return self
            self._log.close()
        raise RuntimeError("redis sentinel did not start: see %s" % self.log_path)

    def ping(self):
        """Answers, and it is our process (see RedisServer.ping)."""
        return answered_by_pid(self.port, self.proc.pid if self.proc else None)

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def master_addr(self):
        try:
            r = command(self.port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME)
        except (OSError, RuntimeError, ValueError):
            return None
        return "%s:%s" % (r[0], r[1]) if isinstance(r, list) and len(r) == 2 else None

    def stop(self):
        if self.proc is not None:
            stop_pid(self.proc, timeout=5)
            self._log.close()
            self.proc = None


class SentinelGroup:
    """master + replica + n sentinels.  ``servers`` maps "host:port" to the
    RedisServer there; ``master()`` is the one the sentinels name."""

    def __init__(self, workdir, sentinels=3):
        self.workdir = workdir
        self.n_sentinels = sentinels
        self.servers = {}
        self.sentinels = []
        self.master_name = MASTER_NAME

    def start(self):
        a = RedisServer(os.path.join(self.workdir, "redis-a")).start()
        self.servers[a.address] = a
        b = RedisServer(os.path.join(self.workdir, "redis-b")).start()
        self.servers[b.address] = b
        assert command(b.port, "REPLICAOF", "127.0.0.1", str(a.port)) == "OK"
        wait_until(lambda: self._link_up(b.port), timeout=15, what="replica in sync")
        for i in range(self.n_sentinels):
            self.sentinels.append(SentinelProcess(self.workdir, i, a.port).start())
        # every sentinel knows the replica and the other sentinels
        wait_until(lambda: all(self._sees_all(s) for s in self.sentinels), timeout=20,
                   what="sentinels discovered each other and the replica")
        return self

    @staticmethod
    def _link_up(port):
        try:
            info = command(port, "INFO", "replication")
        except (OSError, RuntimeError, ValueError):
            return False
        return "master_link_status:up" in info

    def _sees_all(self, s):
        try:
            m = command(s.port, "SENTINEL", "master", MASTER_NAME)
        except (OSError, RuntimeError, ValueError):
            return False
        d = dict(zip(m[::2], m[1::2])) if isinstance(m, list) else {}
        return (int(d.get("num-slaves", 0)) >= 1 and
                int(d.get("num-other-sentinels", 0)) >= self.n_sentinels - 1)

    def sentinel_addresses(self):
        return [s.address for s in self.sentinels]

    def master_address(self):
        """What the running sentinels agree on, or None."""
        seen = {s.master_addr() for s in self.sentinels if s.proc is not None}
        seen.discard(None)
        return seen.pop() if len(seen) == 1 else None

    def master(self):
        return self.servers[self.master_address()]

    @property
    def port(self):
        """The current master's port (for helpers that read Redis)."""
        return self.master().port

    def role(self, address):
        try:
            return command(self.servers[address].port, "ROLE")[0]
        except (OSError, RuntimeError, ValueError, TypeError):
            return None

    def failover(self, timeout=20):
        """SENTINEL FAILOVER; returns the new master's address once every
        sentinel names it and it says ROLE master."""
        old = self.master_address()
        r = command(self.sentinels[0].port, "SENTINEL", "failover", MASTER_NAME)
        assert r == "OK", r
        return self.wait_master_change(old, timeout)

    def wait_master_change(self, old, timeout=20):
        def moved():
            m = self.master_address()
            return m if m and m != old and self.role(m) == "master" else None
        return wait_until(moved, timeout=timeout, what="sentinels naming a new master")

    def config(self, **extra):
        """The redis: section for quorumgate."""
        cfg = {"sentinels": self.sentinel_addresses(), "master_name": MASTER_NAME,
               "key_prefix": "qg:", "connect_timeout": "500ms", "command_timeout": "1s"}
        cfg.update(extra)
        return cfg

    def stop(self):
        for s in self.sentinels:
            s.stop()
        for r in self.servers.values():
            r.stop()
