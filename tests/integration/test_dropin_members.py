"""Controllers without the health-checks API (issue 13, item 1), against the
simulator in --no-health-checks mode (404 for /health-checks/*, as the
default ctrl.yaml of `ziti create config controller` does): the leader is
found through GET /fabric/v1/cluster/list-members with the management
credential, by the same rise/fall rules; without a credential quorumgate
refuses to start (and `-t` refuses the file) naming both fixes; a read-only
cluster gets a clear 503 for writes.  The same points against real
controllers live in tests/realcluster/."""
import os
import subprocess

import pytest

from tests.integration.core_support import status, wait_leader_known
from tests.integration.gate_support import client, start_enrollment, wait_all_have
from tests.integration.routing_support import assert_envelope, wait_view
from tests.support.procs import Quorumgate, wait_until


def _mgmt(tmp_path):
    pw = tmp_path / "mgmt.password"
    pw.write_text("admin-pw\n")
    return {"gate": {"management": {"username": "admin", "password_file": str(pw)}}}


def _no_hc_sim(sim_factory):
    return sim_factory(tls=True, args=["--no-health-checks"])


def test_leader_found_by_list_members(tmp_path, sim_factory, quorumgate):
    sim = _no_hc_sim(sim_factory)
    qg = quorumgate(_mgmt(tmp_path), sim=sim)
    wait_until(lambda: all(c["method"] == "list-members" and c["last_probe_ms"] for c in status(qg)["controllers"]),
               timeout=5, what="every controller watched by list-members")
    wait_leader_known(qg)
    st = status(qg)
    assert st["leader"] == sim.control.leader()
    for c in st["controllers"]:
        assert c["method"] == "list-members", c
        assert c["up"] and not c["read_only"] and c["version"] == "v1.5.4", c
    events = [e for e in qg.error_log() if e.get("method") == "list-members"]
    assert {e["controller"] for e in events} == set(sim.node_ids)
    # the whole enrollment works, held until every controller has it
    c = client(qg)
    mfa_id, _secret = start_enrollment(c)
    wait_all_have(sim, c.current_identity().json()["data"]["id"], mfa_id, verified=False, timeout=0.5)


def test_leader_change_followed(tmp_path, sim_factory, quorumgate):
    sim = _no_hc_sim(sim_factory)
    qg = quorumgate(_mgmt(tmp_path), sim=sim)
    wait_leader_known(qg)
    old = sim.control.leader()
    new = [n for n in sim.node_ids if n != old][0]
    sim.control.transfer(new)
    wait_view(qg, leader=new, timeout=5)
    sim.control.kill(new)
    wait_until(lambda: not [c for c in status(qg)["controllers"] if c["id"] == new][0]["up"],
               timeout=5, what="the killed leader marked down")
    wait_until(lambda: status(qg)["leader"] not in ("", new), timeout=10, what="a new leader known")


def test_session_refused_then_relogin(tmp_path, sim_factory, quorumgate):
    """A session the controller forgets (restart) is replaced by one new
    login; the controller is not marked down for it."""
    sim = _no_hc_sim(sim_factory)
    qg = quorumgate(_mgmt(tmp_path), sim=sim)
    wait_leader_known(qg)
    follower = [n for n in sim.node_ids if n != sim.control.leader()][0]
    sim.control.restart(follower)   # its sessions are gone
    wait_until(lambda: any(c["id"] == follower and c["up"] and c["last_error"] == ""
                           for c in status(qg)["controllers"]), timeout=10,
               what="the restarted follower watched again")


def test_no_credential_refuses_to_start(tmp_path, sim_factory, quorumgate):
    sim = _no_hc_sim(sim_factory)
    qg = quorumgate(sim=sim, start=False)
    qg.write_config()
    # the fixture checks both files for sanitizer reports
    with open(qg.stderr_path, "w") as err, open(qg.stdout_path, "w") as out:
        p = subprocess.run([qg.binary, "-c", qg.config_path], stdout=out, stderr=err, timeout=20)
    text = qg.stderr_text()
    assert p.returncode == 1, (p.returncode, text[-2000:])
    assert "binding: health-checks" in text and "gate.management" in text, text[-2000:]
    # -t says the same before anything runs
    t = subprocess.run([qg.binary, "-t", "-c", qg.config_path], capture_output=True, text=True, timeout=20)
    assert t.returncode == 1, (t.returncode, t.stdout, t.stderr)
    assert "binding: health-checks" in t.stderr and "gate.management" in t.stderr, t.stderr
    # with a credential, -t accepts the file
    qg2 = quorumgate(_mgmt(tmp_path), sim=sim, start=False, name="qg-cred")
    qg2.write_config()
    open(qg2.stderr_path, "w").close()
    open(qg2.stdout_path, "w").close()
    t = subprocess.run([qg2.binary, "-t", "-c", qg2.config_path], capture_output=True, text=True, timeout=20)
    assert t.returncode == 0, (t.stdout, t.stderr)


def test_read_only_cluster_writes_503(tmp_path, sim_factory, quorumgate):
    sim = _no_hc_sim(sim_factory)
    qg = quorumgate(_mgmt(tmp_path), sim=sim)
    wait_leader_known(qg)
    c = client(qg)
    sim.control.config(readOnly=list(sim.node_ids))
    wait_until(lambda: all(x["read_only"] for x in status(qg)["controllers"]), timeout=5,
               what="read-only shown in /status")
    r = c.mfa_create()
    assert_envelope(r, 503, "CLUSTER_READ_ONLY")
    assert "different versions" in r.json()["error"]["message"]
    after = [x for v in sim.control.requests().values() for x in v if x["path"].endswith("/current-identity/mfa")
             and x["method"] == "POST"]
    assert after == [], "a write was sent to a read-only cluster"
    # reads still pass
    c.mfa_get().expect(404)
    sim.control.config(readOnly=[])
    wait_until(lambda: not any(x["read_only"] for x in status(qg)["controllers"]), timeout=5,
               what="read-only cleared")
    c.mfa_create().expect(201)
