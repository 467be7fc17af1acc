"""The soak's checker (bench/soak_check.py, issue 18) on synthetic histories: a clean history
passes, and for each property a history that violates it is flagged (and the documented or
known cases are classified, not flagged)."""
import copy
import datetime
import importlib.util
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("soak_check", os.path.join(ROOT, "bench", "soak_check.py"))
soak_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(soak_check)

T = 1_800_000_000.0
MEMBERS = ["ctrl1", "ctrl2", "ctrl3"]
U = "idU"
ALL = "acked=ctrl1,ctrl2,ctrl3"


def ts(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


class H:
    """A history under construction: one user enrolls (OIDC), logs in again with TOTP, deletes."""

    def __init__(self):
        self.recs = [{"type": "meta", "t": T, "version": "v-test", "members": MEMBERS, "qgs": ["qgA", "qgB"]},
                     {"type": "start", "t": T}]
        self.n = 0

    def op(self, t, step, status, flow="f1", qg="qgA", ctrl="ctrl1", cred=None, dur=0.05, **kw):
        self.n += 1
        method = {"oidc.password": "POST", "oidc.totp": "POST", "oidc.token": "POST", "legacy.auth": "POST",
                  "mfa.create": "POST", "mfa.verify": "POST", "mfa.delete": "DELETE"}.get(step, "GET")
        path = {"oidc.authorize": "/oidc/authorize?client_id", "oidc.page": "/oidc/login/username?authRequestID",
                "oidc.password": "/oidc/login/password", "oidc.totp": "/oidc/login/totp",
                "oidc.callback": "/oidc/auth/callback?id", "oidc.token": "/oidc/oauth/token",
                "legacy.auth": "/edge/client/v1/authenticate?method",
                "mfa.create": "/edge/client/v1/current-identity/mfa",
                "mfa.get": "/edge/client/v1/current-identity/mfa",
                "mfa.verify": "/edge/client/v1/current-identity/mfa/verify",
                "mfa.delete": "/edge/client/v1/current-identity/mfa"}.get(step, "/edge/client/v1/current-identity")
        headers = kw.pop("headers", {})
        if ctrl:
            headers.setdefault("quorumgate-controller", ctrl)
        rec = {"type": "op", "id": self.n, "user": U, "flow": flow, "qg": qg, "method": method, "path": path,
               "step": step, "cred": cred, "t0": T + t, "t1": T + t + dur, "status": status, "headers": headers}
        if status >= 400:
            rec.setdefault("envelope", True)
            rec.setdefault("err_code", "SOME_ERROR")
        rec.update(kw)
        self.recs.append(rec)
        return rec

    def oidc_login(self, t, flow, totp, ctrl="ctrl1", token=200):
        self.op(t, "oidc.authorize", 302, flow=flow, ctrl=ctrl)
        self.op(t + 0.1, "oidc.page", 200, flow=flow, ctrl=ctrl, qg="qgB")
        if totp:
            self.op(t + 0.2, "oidc.password", 200, flow=flow, ctrl=ctrl, headers={"totp-required": "true"})
            self.op(t + 0.3, "oidc.totp", 302, flow=flow, ctrl=ctrl, qg="qgB")
        else:
            self.op(t + 0.2, "oidc.password", 302, flow=flow, ctrl=ctrl)
        self.op(t + 0.4, "oidc.callback", 302, flow=flow, ctrl=ctrl)
        if token == 200:
            self.op(t + 0.5, "oidc.token", 200, flow=flow, ctrl=ctrl, qg="qgB")
        elif token is not None:
            self.op(t + 0.5, "oidc.token", token, flow=flow, ctrl=ctrl, qg="qgB",
                    err_code="REPLICATION_LOGIN_FENCED")

    def event(self, t, ev, mfa, verified=False, was=None, idx=1):
        for m in MEMBERS:
            self.recs.append({"type": "event", "member": m, "event": ev, "user": U, "mfa": mfa,
                              "was_verified": was, "verified": verified, "raft_index": idx, "ts": ts(T + t)})

    def direct(self, op, call, have=True, member=None):
        for m in ([member] if member else MEMBERS):
            self.recs.append({"type": "direct", "op": op["id"], "user": U, "call": call, "member": m,
                              "have": have, "t0": op["t1"], "t1": op["t1"] + 0.01})

    def fault(self, kind, t0, t1, target=None, ok=True):
        self.recs.append({"type": "fault", "kind": kind, "t0": T + t0, "t1": T + t1, "target": target, "ok": ok})

    def finish(self, enabled=False, stop=60.0):
        for m in MEMBERS:
            self.recs.append({"type": "final", "member": m, "t": T + stop, "mfa_enabled": {U: enabled}})
        for i, pid in enumerate((100, 100, 100, 200)):
            self.recs.append({"type": "sample", "qg": "qgA", "pid": pid, "t": T + 10 * i, "rss_kb": 10240 + i,
                              "fds": 30 + i})
        self.recs.append({"type": "stop", "t": T + stop})
        self.recs.append({"type": "end", "t": T + stop + 1})
        return self.recs


def clean(**over):
    """The enrollment of one user, as it should go; returns (H, {name: op})."""
    h = H()
    ops = {}
    h.oidc_login(1.0, "f1", totp=False)
    ops["create"] = h.op(2.0, "mfa.create", 201, cred="bearer", token_from="ctrl1",
                         headers={"quorumgate-replication": ALL})
    h.event(2.02, "created", "M1", idx=10)
    h.direct(ops["create"], "create")
    h.op(2.1, "mfa.get", 200, cred="bearer", data={"mfa": "M1", "isVerified": False})
    ops["verify"] = h.op(3.0, "mfa.verify", 200, cred="bearer", mfa="M1", headers={"quorumgate-replication": ALL})
    h.event(3.02, "updated", "M1", verified=True, was=False, idx=11)
    h.direct(ops["verify"], "verify")
    h.oidc_login(5.0, "f2", totp=True, ctrl="ctrl2")
    ops["delete"] = h.op(7.0, "mfa.delete", 200, flow="f2", cred="bearer", mfa="M1",
                         headers={"quorumgate-replication": ALL})
    h.event(7.02, "deleted", "M1", verified=True, idx=12)
    h.direct(ops["delete"], "delete")
    h.oidc_login(9.0, "f3", totp=False, ctrl="ctrl3")
    return h, ops


def run(recs, **kw):
    return soak_check.Checker(copy.deepcopy(recs), **kw).run()


def counts(c):
    return {k: len(v) for k, v in c.violations.items() if v}


def test_clean_history_has_no_violation():
    h, _ = clean()
    c = run(h.finish())
    assert counts(c) == {}
    assert c.report(open(os.devnull, "w")) == 0


def test_a_second_committed_create_is_flagged():
    h, _ = clean()
    h.event(2.5, "created", "M2", idx=13)
    assert counts(run(h.finish())) == {"duplicate_create": 1}


def test_a_committed_verify_answered_as_a_failure_is_flagged():
    h, ops = clean()
    ops["verify"].update(status=500, err_code="UNHANDLED", envelope=True, headers={"quorumgate-controller": "ctrl1"})
    assert counts(run(h.finish())) == {"verify_failed_but_committed": 1}


def test_a_committed_verify_with_no_answer_is_classified_not_flagged():
    h, ops = clean()
    ops["verify"].update(status=0, error="ConnectionResetError", headers={})
    c = run(h.finish())
    assert "verify_failed_but_committed" not in counts(c)
    assert c.notes["verify committed, the client got no answer"] == 1


def test_a_failed_verify_not_in_flight_when_it_committed_is_not_blamed():
    """A verify answered 400 (a wrong code), then one answered 200 that committed: fine."""
    h, ops = clean()
    h.op(2.5, "mfa.verify", 400, cred="bearer", mfa="M1", err_code="MFA_INVALID_TOKEN")
    assert counts(run(h.finish())) == {}


@pytest.mark.parametrize("call", ["create", "delete"])
def test_an_acked_member_lacking_the_change_is_flagged(call):
    h, ops = clean()
    h.direct(ops[call], call, have=False, member="ctrl3")
    c = run(h.finish())
    assert counts(c) == {"released_unreplicated": 1}
    assert c.violations["released_unreplicated"][0]["member"] == "ctrl3"


def test_a_member_named_pending_may_lack_the_change():
    h, ops = clean()
    ops["delete"]["headers"]["quorumgate-replication"] = "acked=ctrl1,ctrl2; pending=ctrl3"
    h.direct(ops["delete"], "delete", have=False, member="ctrl3")
    assert counts(run(h.finish())) == {}


def test_an_answer_without_the_replication_header_lacking_somewhere_is_flagged():
    h, ops = clean()
    del ops["delete"]["headers"]["quorumgate-replication"]
    h.direct(ops["delete"], "delete", have=False, member="ctrl2")
    assert counts(run(h.finish())) == {"released_unreplicated": 1}


def test_a_direct_login_without_mfa_after_the_verify_is_flagged():
    h, ops = clean()
    h.direct(ops["verify"], "verify", have=False, member="ctrl2")
    assert counts(run(h.finish())) == {"login_without_totp": 1}


def test_a_direct_mfa_query_from_another_enrollment_after_the_verify_is_flagged():
    """The member asks for MFA, but for an older enrollment it has not seen deleted: the verify's
    acknowledgement was wrong (30-minute v1.5.4 run, op 26354)."""
    h, ops = clean()
    h.direct(ops["verify"], "verify", have=False, member="ctrl3")
    h.recs[-1].update(other=True, held="M0")
    c = run(h.finish())
    assert counts(c) == {"released_unreplicated": 1}
    assert "M0" in c.violations["released_unreplicated"][0]["msg"]


def test_a_verify_answered_200_that_no_controller_applied_is_flagged():
    """30-minute v1.5.4 run, op 81382: answered from an older record, never sent."""
    h, _ = clean()
    h.recs = [r for r in h.recs if not (r["type"] == "event" and r["event"] == "updated")]
    c = run(h.finish())
    assert counts(c) == {"verify_never_applied": 1}
    assert c.violations["verify_never_applied"][0]["mfa"] == "M1"


def test_an_oidc_login_through_quorumgate_without_totp_after_the_verify_is_flagged():
    h, _ = clean()
    h.oidc_login(4.0, "f9", totp=False, ctrl="ctrl3")      # after verify (3.05), before delete (7.0)
    c = run(h.finish())
    assert counts(c) == {"login_without_totp": 1}
    assert "ctrl3" in c.violations["login_without_totp"][0]["msg"]


def test_an_oidc_login_whose_token_quorumgate_refused_is_no_login():
    """bench/soak.py, 30-minute v1.7.2 run (op 160078): a lagging member answered the password step
    without TOTP, and quorumgate refused the flow's token (503 REPLICATION_LOGIN_FENCED): nobody
    logged in, which is what the fence is for."""
    h, _ = clean()
    h.oidc_login(4.0, "f9", totp=False, ctrl="ctrl3", token=503)
    c = run(h.finish())
    assert counts(c) == {}
    assert c.notes["OIDC password step without TOTP; no token issued (REPLICATION_LOGIN_FENCED)"] == 1


def test_a_legacy_login_through_quorumgate_without_an_mfa_query_after_the_verify_is_flagged():
    h, _ = clean()
    h.op(4.0, "legacy.auth", 200, flow="f9", data={"authQueries": []})
    h.op(4.5, "legacy.auth", 200, flow="f10", data={"authQueries": ["MFA"]})     # this one is right
    assert counts(run(h.finish())) == {"login_without_totp": 1}


def test_a_login_without_totp_after_the_delete_was_sent_is_fine():
    h, _ = clean()
    h.oidc_login(7.01, "f9", totp=False)
    assert counts(run(h.finish())) == {}


def lost_oidc_step(h):
    h.op(20.0, "oidc.authorize", 302, flow="fx", ctrl="ctrl1", qg="qgA")
    h.op(20.2, "oidc.password", 404, flow="fx", ctrl="ctrl2", qg="qgB", err_code="NOT_FOUND")


def test_an_oidc_step_answered_by_another_controller_is_lost_affinity():
    h, _ = clean()
    lost_oidc_step(h)
    c = run(h.finish())
    assert counts(c) == {"lost_affinity": 1}
    assert "ctrl1" in c.violations["lost_affinity"][0]["msg"]


def test_a_legacy_session_call_answered_elsewhere_is_lost_affinity():
    h, _ = clean()
    h.op(20.0, "legacy.auth", 200, flow="fl", ctrl="ctrl1", data={"authQueries": []})
    h.op(20.5, "read", 200, flow="fl", ctrl="ctrl1", cred="session")
    h.op(21.0, "read", 401, flow="fl", ctrl="ctrl3", cred="session", err_code="UNAUTHORIZED")
    assert counts(run(h.finish())) == {"lost_affinity": 1}


QG_401 = "The controller holding this session or login (ctrl1) cannot be reached (connection refused); " \
         "authenticate again."
CTRL_401 = "The request could not be completed. The session is not authorized or the credentials are invalid"


def legacy_session_401(h, ctrl, msg, flow="fl"):
    h.op(20.0, "legacy.auth", 200, flow=flow, ctrl="ctrl1", data={"authQueries": []})
    h.op(20.5, "read", 200, flow=flow, ctrl="ctrl1", cred="session")
    h.op(21.0, "read", 401, flow=flow, ctrl=ctrl, cred="session", err_code="UNAUTHORIZED", envelope=True,
         err_msg=msg)


def test_quorumgates_own_401_while_the_home_was_only_slow_is_lost_affinity():
    """Issue 18: the home marked down by its probes but never killed or stopped still gets
    its session's calls, so quorumgate's own 401 (naming the home) is a violation; the home's
    own 401 (the session expired there) is not; neither is excused by a Redis restart."""
    h, _ = clean()
    legacy_session_401(h, "ctrl1", QG_401)
    c = run(h.finish())
    assert counts(c) == {"lost_affinity": 1}
    assert "quorumgate itself" in c.violations["lost_affinity"][0]["msg"]
    h, _ = clean()
    legacy_session_401(h, "ctrl1", QG_401)
    h.fault("redis_restart", 19.0, 21.0, target=6379)
    assert counts(run(h.finish())) == {"lost_affinity": 1}
    h, _ = clean()
    legacy_session_401(h, None, "The session's controller is unavailable; authenticate again.")
    assert counts(run(h.finish())) == {"lost_affinity": 1}
    h, _ = clean()
    legacy_session_401(h, "ctrl1", CTRL_401)
    assert counts(run(h.finish())) == {}


@pytest.mark.parametrize("kind", ["leader_kill", "follower_stop", "heal"])
def test_quorumgates_own_401_while_the_home_was_killed_or_stopped_is_documented(kind):
    h, _ = clean()
    legacy_session_401(h, "ctrl1", QG_401)
    h.fault(kind, 19.0, 21.0, target="ctrl1")
    c = run(h.finish())
    assert counts(c) == {}
    assert c.notes["affinity: home %s down (documented)" % kind] == 1


def test_quorumgates_own_401_to_an_oidc_login_step_is_lost_affinity():
    h, _ = clean()
    h.op(20.0, "oidc.authorize", 302, flow="fo", ctrl="ctrl2", qg="qgA")
    h.op(20.2, "oidc.password", 401, flow="fo", ctrl="ctrl2", qg="qgB", err_code="UNAUTHORIZED",
         envelope=True, err_msg=QG_401.replace("ctrl1", "ctrl2"))
    assert counts(run(h.finish())) == {"lost_affinity": 1}


@pytest.mark.parametrize("kind,target", [("follower_stop", "ctrl1"), ("leader_kill", "ctrl1"),
                                         ("redis_restart", 6379)])
def test_lost_affinity_in_the_documented_cases_is_classified(kind, target):
    h, _ = clean()
    lost_oidc_step(h)
    h.fault(kind, 19.0, 21.0, target=target)
    c = run(h.finish())
    assert counts(c) == {}
    assert any("documented" in k for k in c.notes)


def test_a_fault_on_another_controller_does_not_excuse_lost_affinity():
    h, _ = clean()
    lost_oidc_step(h)
    h.fault("follower_stop", 19.0, 21.0, target="ctrl3")
    assert counts(run(h.finish())) == {"lost_affinity": 1}


def test_an_error_without_the_envelope_is_flagged():
    h, _ = clean()
    h.op(30.0, "read", 502, ctrl=None, envelope=False, err_code=None, headers={"content-type": "text/plain"})
    assert counts(run(h.finish())) == {"not_enveloped": 1}


def test_an_oidc_error_relayed_from_a_controller_keeps_its_form_but_quorumgates_own_do_not():
    h, _ = clean()
    h.op(30.0, "oidc.totp", 400, flow="fo", ctrl="ctrl1", envelope=False, err_code=None)
    c = run(h.finish())
    assert counts(c) == {}
    h.op(31.0, "oidc.totp", 502, flow="fp", ctrl=None, envelope=False, err_code=None)
    assert counts(run(h.recs)) == {"not_enveloped": 1}


def test_a_final_state_that_disagrees_with_the_last_applied_change_is_flagged():
    h, _ = clean()
    recs = h.finish(enabled=False)
    recs[[i for i, r in enumerate(recs) if r["type"] == "final"][1]]["mfa_enabled"][U] = True
    c = run(recs)
    assert counts(c) == {"final_state": 1}
    assert c.violations["final_state"][0]["member"] == "ctrl2"


def test_a_quorumgate_that_died_unkilled_or_reported_a_sanitizer_error_is_flagged():
    h, _ = clean()
    h.recs.append({"type": "qg_died", "qg": "qgB", "pid": 7, "code": -11, "t": T + 5, "stderr": "boom"})
    h.recs.append({"type": "qg_problem", "qg": "qgA", "problem": "stderr matches 'AddressSanitizer'"})
    assert counts(run(h.finish())) == {"qg_crash": 2}


def test_each_fault_kind_must_run_when_required():
    h, _ = clean()
    for k in soak_check.FAULT_KINDS[:-1]:
        h.fault(k, 10, 11)
    h.fault("qg_kill", 12, 13, ok=False)
    recs = h.finish()
    assert counts(run(recs)) == {}
    c = run(recs, require_each_fault=True)
    assert counts(c) == {"fault_missing": 1} and c.violations["fault_missing"][0]["fault"] == "qg_kill"


def test_the_issue_12_token_refusal_is_a_known_cause_not_a_pass():
    h, _ = clean()
    h.op(40.0, "mfa.create", 401, cred="bearer", token_from="ctrl2", ctrl="ctrl1", err_code="UNAUTHORIZED")
    c = run(h.finish())
    assert counts(c) == {}
    per_outcome = c.tables()[0]
    assert [k for k in per_outcome if k.startswith("known:#12")] and \
        sum(v for k, v in per_outcome.items() if k.startswith("known:")) == 1


def test_counts_per_fault_and_curves():
    h, _ = clean()
    h.fault("transfer", 1.9, 2.05, target="ctrl1->ctrl2")
    c = run(h.finish())
    per_outcome, per_step, per_fault, faults = c.tables()
    assert faults["transfer"]["ran"] == 1
    assert per_fault["transfer"]["ok"] > 0 and per_fault["none"]["ok"] > 0
    curves = c.curves()
    assert [life["pid"] for life in curves["qgA"]] == [100, 200]
    assert curves["qgA"][0]["rss_mib"] == [10.0, 10.0, 10.0] and curves["qgA"][0]["fds"] == [30, 31, 32]
    assert curves["qgA"][0]["fds_max"] == 32


def test_event_timestamps_with_nanoseconds():
    assert soak_check.parse_ts("2026-12-02T01:46:48.583936698Z") == pytest.approx(
        datetime.datetime(2026, 12, 2, 1, 46, 48, 583937, tzinfo=datetime.timezone.utc).timestamp(), abs=1e-5)
    assert soak_check.parse_ts("2026-12-02T01:46:48Z") is not None
    assert soak_check.parse_ts("nonsense") is None


def test_the_command_line_exits_1_on_a_violation_and_0_otherwise(tmp_path):
    h, _ = clean()
    good = h.finish()
    bad = copy.deepcopy(good)
    bad.insert(5, dict(bad[3], id=999, status=503, envelope=False, err_code=None, headers={}, step="read",
                       path="/edge/client/v1/current-identity"))
    for name, recs, code in (("good", good, 0), ("bad", bad, 1)):
        p = tmp_path / (name + ".jsonl")
        p.write_text("\n".join(json.dumps(r) for r in recs) + "\n{\"type\": \"op\", \"torn")
        r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "soak_check.py"), str(p),
                            "--json", str(tmp_path / (name + ".json"))],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        assert r.returncode == code, r.stdout.decode()[-2000:]
        out = r.stdout.decode()
        assert "per fault" in out and "RSS (MiB)" in out and "violations: %d" % code in out
        assert json.loads((tmp_path / (name + ".json")).read_text())["per_outcome"]


def test_a_history_without_the_final_state_or_the_controllers_changes_is_incomplete_not_passed():
    h, _ = clean()
    recs = [r for r in h.finish() if r["type"] != "final"]
    assert counts(run(recs)) == {"incomplete": 1}
    recs = [r for r in h.finish() if r["type"] != "event"]
    assert "incomplete" in counts(run(recs))
    h, _ = clean()
    recs = h.finish()
    next(r for r in recs if r["type"] == "final")["complete"] = False
    assert counts(run(recs)) == {"incomplete": 1}


def test_a_member_restarted_by_the_heal_action_excuses_its_lost_affinity():
    h, _ = clean()
    lost_oidc_step(h)
    h.fault("heal", 19.0, 21.0, target="ctrl1 (wedged: SIGQUIT, restarted)")
    assert counts(run(h.finish())) == {}


def test_a_committed_verify_answered_with_a_timeout_is_counted_apart_not_flagged():
    h, ops = clean()
    ops["verify"].update(status=504, err_code="PROXY_UPSTREAM_TIMEOUT", envelope=True)
    c = run(h.finish())
    assert counts(c) == {}
    assert any("timeout answer" in k for k in c.notes)


def test_a_verify_quorumgate_refused_before_sending_is_not_blamed_for_a_commit():
    h, ops = clean()
    ops["verify"].update(status=0, error="RemoteDisconnected", headers={})
    h.op(3.01, "mfa.verify", 503, cred="bearer", mfa="M1", err_code="REPLICATION_TRACKING_UNAVAILABLE",
         ctrl=None, headers={"quorumgate-attempts": "0"})
    c = run(h.finish())
    assert counts(c) == {} and c.notes["verify committed, the client got no answer"] == 1


def test_a_commit_after_an_earlier_timed_out_try_is_counted_apart():
    h, ops = clean()
    ops["verify"].update(status=500, err_code="UNHANDLED", envelope=True)
    h.op(1.5, "mfa.verify", 504, cred="bearer", mfa="M1", err_code="PROXY_UPSTREAM_TIMEOUT")
    c = run(h.finish())
    assert counts(c) == {} and any("earlier try" in k for k in c.notes)


def test_the_soak_reads_the_rotated_event_files_too(tmp_path):
    """A 30-minute run rotates each controller's event file (10 MB): the backups, named
    events-<time>.json beside it, hold the run's early changes."""
    spec = importlib.util.spec_from_file_location("soak", os.path.join(ROOT, "bench", "soak.py"))
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    for n in ("events-2026-12-02T15-10-00.000.json", "events-2026-12-02T15-01-00.000.json", "events.json",
              "ctrl.yaml", "events.json.lock"):
        (tmp_path / n).write_text("")
    got = [os.path.basename(p) for p in soak.events_files(str(tmp_path / "events.json"))]
    assert got == ["events-2026-12-02T15-01-00.000.json", "events-2026-12-02T15-10-00.000.json", "events.json"]
