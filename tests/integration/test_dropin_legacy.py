"""Legacy-session MFA without a way to confirm it (issue 13, item 2): the
configuration is refused (file:line, naming the three ways out) unless the
operator opts out with gate.legacy_sessions: unconfirmed; then such answers
pass unheld, marked Quorumgate-Replication: unconfirmed and counted."""
import re
import subprocess

from tests.ctrlsim.client import ZitiClient
from tests.integration.gate_support import metric, totp_now, wait_leader_known


def test_refused_without_credential_events_or_opt_out(quorumgate):
    qg = quorumgate(start=False)
    del qg.config["gate"]["legacy_sessions"]
    qg.write_config()
    t = subprocess.run([qg.binary, "-t", "-c", qg.config_path], capture_output=True, text=True, timeout=30)
    assert t.returncode == 1, (t.stdout, t.stderr)
    assert re.search(re.escape(qg.config_path) + r":\d+: gate: MFA calls made with a legacy zt-session "
                     r"cannot be confirmed", t.stderr), t.stderr
    for way in ("gate.management", "gate.source: events", "gate.legacy_sessions: unconfirmed"):
        assert way in t.stderr, (way, t.stderr)
    # the events source is a way too
    qg.config["gate"]["source"] = "events"
    qg.write_config()
    t = subprocess.run([qg.binary, "-t", "-c", qg.config_path], capture_output=True, text=True, timeout=30)
    assert t.returncode == 0, t.stderr
    open(qg.stderr_path, "w").close()
    open(qg.stdout_path, "w").close()


def test_opt_out_marks_and_counts(quorumgate):
    qg = quorumgate()          # the test default: legacy_sessions: unconfirmed
    wait_leader_known(qg)
    c = ZitiClient(qg.url, ca_file=qg.ca)
    c.legacy_login("bob", "bob-pw").expect(200)
    before = metric(qg, "quorumgate_replication_unconfirmed_total", call="verify")
    c.mfa_create().expect(201)
    secret = c.mfa_secret()
    bad = c.mfa_verify("000000")
    assert bad.status == 400 and bad.header("quorumgate-replication") is None
    r = c.mfa_verify(totp_now(secret)).expect(200)
    assert r.header("quorumgate-replication") == "unconfirmed"
    assert metric(qg, "quorumgate_replication_unconfirmed_total", call="verify") == before + 1
