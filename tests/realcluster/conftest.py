"""Fixtures for the real-cluster tier (real OpenZiti controllers built from ../shared/ziti).

  ziti_cluster   session-scoped, parametrized over $QG_ZITI_VERSIONS (default v1.5.4,v1.7.2):
                 one 3-controller ZitiCluster per version (health-checks bound, entity-change
                 event files), started once; pytest finishes one version before the next, so at
                 most three controllers run at a time
  cluster        the same cluster for one test: healed first (every member running and
                 connected, one leader) and back on the standard configuration
  identity       factory: identity(prefix="u") -> (name, password, id), a fresh User with a
                 password, known on every member
  rc_qg          factory: rc_qg(overrides=None) -> Quorumgate in front of the cluster (upstream TLS
                 verified against the quickstart root CA, gate.management = the admin), built on
                 tests/conftest.py's quorumgate factory (so sanitizer reports fail the test)
"""
import itertools
import os

import pytest

from tests.support.procs import deep_merge
from tests.realcluster.cluster import VERSIONS, ZitiCluster, events_file, health_checks, ziti_binary

STANDARD_EDITS = (health_checks, events_file)
_names = itertools.count(1)


def _versions():
    v = os.environ.get("QG_ZITI_VERSIONS")
    return [x.strip() for x in v.split(",") if x.strip()] if v else list(VERSIONS)


@pytest.fixture(scope="session", params=_versions())
def ziti_cluster(request, tmp_path_factory):
    version = request.param
    binary = ziti_binary(version)
    cl = ZitiCluster(binary, version, str(tmp_path_factory.mktemp("ziti-" + version)), edits=STANDARD_EDITS)
    cl.start()
    cl.current_edits = STANDARD_EDITS
    yield cl
    cl.stop()


@pytest.fixture
def cluster(ziti_cluster):
    cl = ziti_cluster
    if cl.current_edits != STANDARD_EDITS:
        cl.heal()
        cl.reconfigure(STANDARD_EDITS)
        cl.current_edits = STANDARD_EDITS
    else:
        cl.heal()
    return cl


@pytest.fixture
def identity(cluster):
    def make(prefix="u", password=None):
        name = "%s-%s-%d-%d" % (prefix, cluster.version, os.getpid(), next(_names))
        pw = password or "pw-" + name
        return name, pw, cluster.create_identity(name, pw)
    return make


@pytest.fixture
def rc_qg(quorumgate, cluster, tmp_path):
    def make(overrides=None, management=True, name=None):
        pw = tmp_path / "mgmt.password"
        pw.write_text("admin\n")
        base = {"upstream": {"tls": {"ca": cluster.ca, "verify": True}, "connect_timeout": "1s"},
                "gate": {"timeout": "5s"}}
        if management:
            base["gate"]["management"] = {"username": "admin", "password_file": str(pw)}
        return quorumgate(deep_merge(base, overrides or {}), sim=cluster, name=name)
    return make
