"""Smoke test for the real quorumgate binary in front of the simulator.

Skipped while the binary does not exist (set QG_REQUIRE_BINARY=1 to make that
a failure).  Run: python3 -m pytest tests/integration -q
"""
import json

from tests.ctrlsim.client import ZitiClient
from tests.support.procs import wait_until


def test_version_through_quorumgate_lands_on_the_simulator(quorumgate):
    qg = quorumgate()
    sim = qg.sim
    sim.control.reset_requests()
    c = ZitiClient(qg.url, ca_file=qg.ca)
    r = c.version().expect(200)
    body = r.json()
    assert body["data"]["version"] == "v1.5.4"
    assert "HA_CONTROLLER" in body["data"]["capabilities"]
    # exactly one controller saw exactly one GET /version
    seen = {nid: [x for x in reqs if x["path"] == "/version"] for nid, reqs in sim.control.requests().items()}
    hits = [nid for nid, xs in seen.items() if xs]
    assert len(hits) == 1, seen
    assert len(seen[hits[0]]) == 1 and seen[hits[0]][0]["status"] == 200
    # the answer names the controller that served it (DESIGN: Quorumgate-Controller)
    assert r.header("quorumgate-controller") == hits[0]
    # and the access log has a line for it (written once the answer is out,
    # so it may follow the answer by a moment)
    wait_until(lambda: [e for e in qg.access_log() if "/version" in json.dumps(e)], timeout=5,
               what="the access-log line of GET /version")


def test_metrics_exposed(quorumgate):
    qg = quorumgate()
    m = qg.metrics()
    assert any(name.startswith("quorumgate_") for name in m), list(m)[:20]
