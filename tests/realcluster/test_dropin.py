"""Drop-in in front of real controllers (issue 13), on v1.5.4 and v1.7.2:

- controllers with their default configuration (no health-checks API: 404): the leader is found
  through GET /fabric/v1/cluster/list-members with gate.management, /status says so, an
  enrollment is held and a leadership transfer is followed; without a credential quorumgate
  refuses to start and `-t` refuses the file, naming both fixes;
- every spelling of an MFA verify (no /edge/client/v1 prefix, /edge/v1, percent-escapes, dot
  segments) is held until every member has it;
- legacy sessions without a management credential: refused by `-t` unless
  gate.legacy_sessions: unconfirmed, whose answers are then marked."""
import re
import subprocess

import pytest

from tests.integration.core_support import status
from tests.realcluster.cluster import events_file
from tests.realcluster.support import all_members, enroll, login, qg_client, verify_code, wait_leader_known
from tests.support.procs import wait_until


def enroll_fresh(c, cluster, iid, name, pw):
    """enroll() after an OIDC login.  The first create after a fresh login is sometimes refused
    401 by the real leader (issue 12's open finding, not about what these tests check): then one
    new login and one more try, said in the output."""
    try:
        return enroll(c, cluster, iid)
    except Exception as e:  # noqa: BLE001 - ApiFailure; re-raised unless it is that 401
        if " -> 401 " not in str(e):
            raise
        print("first create after login refused 401 (issue 12 finding): logging in again")
        login(c, "oidc", name, pw)
        return enroll(c, cluster, iid)


def no_health_checks(member_id, cfg):
    """The default of `ziti create config controller`: no health-checks binding."""
    for web in cfg.get("web", []):
        web["apis"] = [a for a in web.get("apis", []) if a.get("binding") != "health-checks"]


DEFAULT_EDITS = (no_health_checks, events_file)


@pytest.fixture
def default_cluster(cluster):
    cluster.reconfigure(DEFAULT_EDITS)
    cluster.current_edits = DEFAULT_EDITS   # the `cluster` fixture restores the standard one
    r = cluster.client(cluster.wait_leader()).raft_health()
    assert r.status == 404, "the health-checks API should be unbound: %d" % r.status
    return cluster


def test_default_config_leader_by_list_members(default_cluster, rc_qg, identity):
    cl = default_cluster
    qg = rc_qg()
    wait_until(lambda: all(c["method"] == "list-members" and c["up"] and c["version"]
                           for c in status(qg)["controllers"]),
               timeout=15, what="every member watched through list-members")
    lead = wait_leader_known(qg, cl)
    st = status(qg)
    assert st["leader"] == lead
    assert all(not c["read_only"] for c in st["controllers"]), st
    assert {c["version"] for c in st["controllers"]} == {cl.version}, st
    # a whole enrollment through quorumgate, held until every member has it
    name, pw, iid = identity("lm")
    c = qg_client(qg)
    login(c, "oidc", name, pw)
    _mfa_id, secret = enroll_fresh(c, cl, iid, name, pw)
    c.mfa_verify(verify_code(secret)).expect(200)
    all_members(cl, iid, True)
    # a leadership transfer is followed
    to = [m for m in cl.node_ids if m != lead][0]
    cl.transfer_leadership(to)
    wait_until(lambda: status(qg)["leader"] == to, timeout=10, what="the new leader in /status")


def test_default_config_without_credential_fails_clearly(default_cluster, quorumgate, tmp_path):
    cl = default_cluster
    qg = quorumgate({"upstream": {"tls": {"ca": cl.ca, "verify": True}},
                     "gate": {"legacy_sessions": "unconfirmed"}}, sim=cl, start=False, name="nocred")
    qg.write_config()
    t = subprocess.run([qg.binary, "-t", "-c", qg.config_path], capture_output=True, text=True, timeout=60)
    assert t.returncode == 1, (t.stdout, t.stderr)
    assert "binding: health-checks" in t.stderr and "gate.management" in t.stderr, t.stderr
    with open(qg.stderr_path, "w") as err, open(qg.stdout_path, "w") as out:
        p = subprocess.run([qg.binary, "-c", qg.config_path], stdout=out, stderr=err, timeout=60)
    text = qg.stderr_text()
    assert p.returncode == 1, text[-2000:]
    assert "binding: health-checks" in text and "gate.management" in text, text[-2000:]


SPELLINGS = [
    "/current-identity/mfa/verify",
    "/edge/v1/current-identity/mfa/verify",
    "/edge/client/v1/x/../current-identity/./mfa/verify",
    "/edge/client/v1/" + "a/../" * 300 + "current-identity/mfa/verify",
]


@pytest.mark.parametrize("path", SPELLINGS, ids=["noprefix", "edge-v1", "dots", "long"])
def test_every_spelling_of_verify_is_held(cluster, rc_qg, identity, path):
    # mode all: a member that a slow probe marks down for a moment on this loaded machine is
    # waited for too, so "every member has it" is what the answer promises here
    qg = rc_qg({"gate": {"mode": "all"}})
    wait_leader_known(qg, cluster)
    name, pw, iid = identity("sp")
    c = qg_client(qg)
    login(c, "oidc", name, pw)
    _mfa_id, secret = enroll_fresh(c, cluster, iid, name, pw)
    r = c.request("POST", path, body={"code": verify_code(secret)})
    r.expect(200)
    rep = r.header("quorumgate-replication", "")
    assert rep.startswith("acked=") and "pending" not in rep, r.headers
    # at the moment the answer arrives every member has it (read straight from each)
    all_members(cluster, iid, True)


def test_escaped_verify_is_not_routed(cluster, rc_qg, identity):
    """The controller routes the path as sent: percent-escapes are not decoded (404 "path ...
    was not found"); nothing is enabled anywhere."""
    qg = rc_qg()
    wait_leader_known(qg, cluster)
    name, pw, iid = identity("esc")
    c = qg_client(qg)
    login(c, "oidc", name, pw)
    _mfa_id, secret = enroll_fresh(c, cluster, iid, name, pw)
    r = c.request("POST", "/edge/client/v1/current-identity/%6D%66%61/verify",
                  body={"code": verify_code(secret)})
    assert r.status == 404, r
    assert "was not found" in r.body.decode(), r.body
    all_members(cluster, iid, False)


def test_legacy_sessions_need_a_way_to_be_confirmed(cluster, rc_qg, identity, quorumgate):
    # without credential nor opt-out: refused with file:line
    qg = quorumgate({"upstream": {"tls": {"ca": cluster.ca, "verify": True}}}, sim=cluster, start=False,
                    name="legacy-refused")
    del qg.config["gate"]["legacy_sessions"]
    qg.write_config()
    open(qg.stderr_path, "w").close()
    open(qg.stdout_path, "w").close()
    t = subprocess.run([qg.binary, "-t", "-c", qg.config_path], capture_output=True, text=True, timeout=60)
    assert t.returncode == 1, (t.stdout, t.stderr)
    assert re.search(re.escape(qg.config_path) + r":\d+: gate: MFA calls made with a legacy", t.stderr), t.stderr
    # opted out: a legacy verify passes unheld, marked and counted
    qg = rc_qg(management=False, overrides={"gate": {"legacy_sessions": "unconfirmed"}})
    wait_leader_known(qg, cluster)
    name, pw, iid = identity("lg")
    c = qg_client(qg)
    login(c, "legacy", name, pw)
    _mfa_id, secret = enroll(c, cluster, iid)
    r = c.mfa_verify(verify_code(secret)).expect(200)
    assert r.header("quorumgate-replication") == "unconfirmed", r.headers
    assert qg.metrics().value("quorumgate_replication_unconfirmed_total", call="verify") == 1
