"""bench/gate_overhead.py --real VERSION: a real 3-controller cluster (cluster.py) behind the
interface the benchmark's simulator target has."""
import os

from tests.realcluster.cluster import ADMIN, ZitiCluster, events_file, health_checks, ziti_binary


class RealTarget:
    def __init__(self, work, version):
        self.cluster = ZitiCluster(ziti_binary(version), version, os.path.join(work, "ziti-" + version),
                                   edits=[health_checks, events_file]).start()
        self.ca = self.cluster.ca
        self._pw = {"admin": ADMIN[1]}

    def controllers(self):
        return [{"id": m, "url": self.cluster.url(m)} for m in self.cluster.node_ids]

    def direct_urls(self):
        return {m: self.cluster.url(m) for m in self.cluster.node_ids}

    def leader(self):
        return self.cluster.wait_leader()

    def new_identity(self, i):
        name = "bench-%d-%d" % (os.getpid(), i)
        self._pw[name] = "pw-" + name
        self.cluster.create_identity(name, self._pw[name])
        return name

    def password(self, name):
        return self._pw.get(name, "pw-" + name)

    def stop(self):
        self.cluster.stop()
