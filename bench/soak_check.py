#!/usr/bin/env python3
"""The soak's checker (issue 18): reads a JSONL history written by bench/soak.py and verifies,
against the history and the controllers' final state and applied changes recorded in it:

  duplicate_create         no enrollment created twice: the enrollments the controllers
                           created for an identity (their entity-change events) are no more
                           than the create calls that identity sent
  verify_failed_but_committed
                           no verify that committed answered as a failure (an HTTP error
                           answer to the call in flight when the controllers applied it,
                           and no verify of that enrollment answered 200; a timeout answer,
                           504 or 503 TIMEOUT, says the outcome is unknown: counted apart)
  verify_never_applied     no verify answered 200 that no controller ever applied (its
                           enrollment has no verify in any controller's event files, rotated
                           ones included)
  released_unreplicated    no answer released as replicated while a required controller did
                           not have it (a controller read directly right after a gated create
                           or delete lacked the change and was not named pending; after a
                           verify, a member whose MFA query came from another enrollment than
                           the one verified)
  login_without_totp       no login without TOTP after a verified enrollment was answered:
                           through quorumgate (an OIDC password step answered 302, or a
                           legacy login without an MFA query, after a verify answered 200 and
                           before the next delete was sent), and directly on each controller
                           right after the verify answered (unless named pending)
  lost_affinity            an OIDC login step, or a call of a legacy session, answered by
                           another controller than the one holding the login or session, or
                           answered 401 UNAUTHORIZED by quorumgate itself (its home cannot be
                           reached), beyond the documented cases (README "Operating notes":
                           that controller killed, stopped or restarted in between; for an
                           answer from another controller also Redis restarted in between).
                           A home only marked down by its health probes (slow) is no excuse:
                           quorumgate still sends it the session's calls
  not_enveloped            every error quorumgate answers is in the OpenZiti envelope (an
                           /oidc error relayed from a controller keeps the controller's form)
  final_state              each controller's final isMfaEnabled agrees with the last change
                           the controllers applied (their event files)
  qg_crash                 a quorumgate died without being killed by the soak, or wrote a
                           sanitizer report or assertion failure
  fault_missing            (--require-each-fault) a fault kind of the schedule never ran
  incomplete               the history lacks what the checks need (the final state of a
                           member, the controllers' applied changes): never a silent pass

It prints counts per fault and per outcome, each quorumgate's RSS and open-descriptor curve,
every violation (up to --show of each kind), and exits 1 on any violation.

Known cause (counted, not a violation, named in the output): a 401 to a bearer-token call
answered by another controller than the one that minted the token — the controller bug of
issue 12 (the leader records a peer's client certificate as its signing key,
tests/realcluster/OBSERVATIONS.md).

    python3 bench/soak_check.py HISTORY [--json OUT] [--require-each-fault]
    python3 bench/soak.py check HISTORY
"""
import argparse
import collections
import datetime
import json
import sys

VIOLATION_KINDS = ("duplicate_create", "verify_failed_but_committed", "verify_never_applied", "released_unreplicated",
                   "login_without_totp", "lost_affinity", "not_enveloped", "final_state", "qg_crash",
                   "fault_missing", "incomplete")
FAULT_KINDS = ("transfer", "follower_stop", "leader_kill", "redis_restart", "qg_hup", "qg_kill")
SETTLE = 5.0      # seconds after a fault's end during which an operation still counts under it
SLACK = 0.5       # clock slack between the client's and the controllers' timestamps (same host)


def load(path):
    recs = []
    with open(path, errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                recs.append(json.loads(line))
            except ValueError:
                if n > 1:          # a torn last line of a killed run is tolerated
                    continue
                raise
    return recs


def parse_ts(s):
    """RFC 3339 (the controllers' event timestamps, nanoseconds allowed) -> unix seconds."""
    if not isinstance(s, str):
        return None
    try:
        s = s.strip().replace("Z", "+00:00")
        main, _, rest = s.partition(".")
        frac, tz = "", ""
        if rest:
            i = 0
            while i < len(rest) and rest[i].isdigit():
                i += 1
            frac, tz = rest[:i], rest[i:]
        else:
            for sep in ("+", "-"):
                if sep in main[10:]:
                    k = main.rindex(sep)
                    main, tz = main[:k], main[k:]
                    break
        dt = datetime.datetime.fromisoformat(main + (tz or "+00:00"))
        return dt.timestamp() + (float("0." + frac) if frac else 0.0)
    except ValueError:
        return None


def replication(op):
    """(acked set, pending set) from Quorumgate-Replication, or None when absent."""
    v = (op.get("headers") or {}).get("quorumgate-replication")
    if v is None:
        return None
    acked, pending = set(), set()
    for part in v.split(";"):
        k, _, ids = part.strip().partition("=")
        if k == "acked":
            acked = {x for x in ids.split(",") if x}
        elif k == "pending":
            pending = {x for x in ids.split(",") if x}
    return acked, pending


def ambiguous(op):
    """A timeout answer says the outcome is unknown (504 from quorumgate, the controllers' own 503
    TIMEOUT), not that the call failed."""
    return op.get("status") == 504 or (op.get("status") == 503 and op.get("err_code") == "TIMEOUT")


def controller_of(op):
    return (op.get("headers") or {}).get("quorumgate-controller")


# quorumgate's own 401 UNAUTHORIZED (base/errcodes.def, proxy/request_answer.c, proxy/request.c;
# the last one: answers of quorumgate before issue 18's fix), told from a controller's by its message
QG_OWN_401 = ("cannot be reached", "is not configured any more", "The session's controller is unavailable")


def qg_own_401(op):
    if op.get("status") != 401 or op.get("err_code") != "UNAUTHORIZED":
        return False
    # without a controller header nobody was asked: quorumgate answered
    return controller_of(op) is None or any(p in (op.get("err_msg") or "") for p in QG_OWN_401)


def known_cause(op):
    """The issue-12 controller bug: a bearer token refused (401) by a member that did not mint it."""
    if op.get("status") != 401 or op.get("cred") != "bearer":
        return None
    ans, mint = controller_of(op), op.get("token_from")
    if ans and mint and ans != mint:
        return "known:#12 token refused by a member that did not mint it"
    return None


def outcome(op):
    k = known_cause(op)
    if k:
        return k
    s = op.get("status", 0)
    if s == 0:
        return "no answer (%s%s)" % (op.get("error"), "" if op.get("sent", True) else ", not sent")
    if s < 400:
        return "%dxx" % (s // 100)
    return "%d %s" % (s, op.get("err_code") or "-")


def coarse(o):
    if o.startswith("known:"):
        return "known"
    if o.startswith("no answer"):
        return "no_answer"
    if o[0] in "23":
        return "ok"
    return o[0] + "xx"


class Checker:
    def __init__(self, recs, require_each_fault=False, show=10):
        self.recs = recs
        self.show = show
        self.require_each_fault = require_each_fault
        self.violations = collections.defaultdict(list)
        self.notes = collections.Counter()
        by = collections.defaultdict(list)
        for r in recs:
            by[r.get("type")].append(r)
        self.by = by
        self.ops = sorted(by["op"], key=lambda o: (o.get("t0", 0), o.get("id", 0)))
        self.op_by_id = {o.get("id"): o for o in self.ops}
        self.faults = sorted(by["fault"], key=lambda f: f.get("t0", 0))
        self.meta = (by["meta"] or [{}])[0]

    def flag(self, kind, msg, **ctx):
        self.violations[kind].append(dict(ctx, msg=msg))

    # ---- fault windows ---------------------------------------------------------
    def windows(self, kinds=None, target=None):
        for f in self.faults:
            if kinds and f.get("kind") not in kinds:
                continue
            if target is not None and target not in str(f.get("target", "")):
                continue
            yield f

    def overlaps(self, a0, a1, kinds=None, target=None, settle=SETTLE):
        for f in self.windows(kinds, target):
            if f.get("t0", 0) <= a1 and a0 <= f.get("t1", f.get("t0", 0)) + settle:
                return f
        return None

    # ---- properties ------------------------------------------------------------
    def events_by_user(self):
        """{user: {(event, mfa): first timestamp}} merged over the members (each member writes
        its own applies of the same raft entries)."""
        out = collections.defaultdict(dict)
        for e in self.by["event"]:
            ev = e.get("event")
            if ev == "updated":
                if not (e.get("verified") and not e.get("was_verified")):
                    continue
                ev = "verified"
            if ev not in ("created", "verified", "deleted"):
                continue
            key = (ev, e.get("mfa"))
            ts = parse_ts(e.get("ts"))
            cur = out[e.get("user")].get(key)
            if cur is None or (ts is not None and (cur[0] is None or ts < cur[0])):
                out[e.get("user")][key] = (ts, e.get("raft_index"))
        return out

    def check_creates(self, events):
        sent = collections.Counter(o.get("user") for o in self.ops
                                   if o.get("step") == "mfa.create" and (o.get("status") or o.get("sent", True)))
        for user, evs in events.items():
            created = [k for k in evs if k[0] == "created"]
            if len(created) > sent[user]:
                self.flag("duplicate_create", "%d enrollments created, %d create calls sent"
                          % (len(created), sent[user]), user=user, mfas=[k[1] for k in created])

    def check_verifies(self, events):
        ops = collections.defaultdict(list)
        for o in self.ops:
            if o.get("step") == "mfa.verify":
                ops[(o.get("user"), o.get("mfa"))].append(o)
        for user, evs in events.items():
            for (ev, mfa), (ts, idx) in evs.items():
                if ev != "verified":
                    continue
                calls = ops.get((user, mfa), [])
                if any(o.get("status") == 200 for o in calls):
                    continue
                # a call quorumgate answered itself before sending anything (Quorumgate-Attempts: 0,
                # e.g. 503 REPLICATION_TRACKING_UNAVAILABLE) cannot be the one that committed
                calls = [o for o in calls if (o.get("headers") or {}).get("quorumgate-attempts") != "0"]
                if ts is not None:
                    inflight = [o for o in calls if o["t0"] - SLACK <= ts <= o.get("t1", o["t0"]) + SLACK]
                else:
                    inflight = calls
                if any(o.get("status") == 0 for o in inflight):
                    self.notes["verify committed, the client got no answer"] += 1
                    continue
                if any(ambiguous(o) for o in inflight):
                    self.notes["verify committed after a timeout answer (504, 503 TIMEOUT: outcome unknown)"] += 1
                    continue
                # an earlier try with an unknown outcome may be the one that committed: a raft entry
                # appended before the controller's API timed out still commits, seconds later on a
                # loaded cluster
                if any((ambiguous(o) or o.get("status") == 0) and o["t0"] <= ts for o in calls
                       if ts is not None):
                    self.notes["verify committed; an earlier try of it had an unknown outcome (timeout, "
                               "no answer)"] += 1
                    continue
                failed = [o for o in inflight if (o.get("status") or 0) >= 400]
                if failed:
                    o = failed[-1]
                    self.flag("verify_failed_but_committed", "verify answered %s %s, the controllers applied it"
                              % (o.get("status"), o.get("err_code")), user=user, mfa=mfa, op=o.get("id"),
                              qg=o.get("qg"))
                elif not calls:
                    self.notes["verify committed with no verify call recorded for that enrollment"] += 1
                else:
                    self.notes["verify committed outside any recorded call's window"] += 1
        # the other way round: an answer of success for a verify no controller applied (30-minute
        # v1.5.4 run, op 81382: a verify read on a lagging new leader was taken for a repeat and
        # answered from the record of the enrollment before it, never sent)
        for (user, mfa), calls in ops.items():
            ok = [o for o in calls if o.get("status") == 200]
            if mfa and ok and ("verified", mfa) not in events.get(user, {}):
                o = ok[0]
                self.flag("verify_never_applied", "verify answered 200 (%s), no controller applied it" % (
                    (o.get("headers") or {}).get("quorumgate-replication")), user=user, mfa=mfa, op=o.get("id"),
                    qg=o.get("qg"))

    def check_direct(self):
        for d in self.by["direct"]:
            if d.get("have") is not False:
                if d.get("have") is None:
                    self.notes["direct read after a gated answer: member not readable"] += 1
                continue
            op = self.op_by_id.get(d.get("op"))
            if op is None:
                continue
            rep = replication(op)
            member = d.get("member")
            if rep is not None and member in rep[1]:
                self.notes["direct read: a member named pending lacked the change (allowed)"] += 1
                continue
            what = ("released_unreplicated" if d.get("call") != "verify" or d.get("other") else
                    "login_without_totp")
            if d.get("call") != "verify":
                saw = "lacked the change"
            elif d.get("other"):
                saw = "its MFA query came from enrollment %s, not the one verified" % d.get("held")
            else:
                saw = "a legacy login there did not ask for MFA"
            msg = ("%s answered %s with Quorumgate-Replication %r; %s read directly right after: %s" % (
                d.get("call"), op.get("status"), (op.get("headers") or {}).get("quorumgate-replication"), member,
                saw))
            self.flag(what, msg, user=d.get("user"), op=op.get("id"), member=member, qg=op.get("qg"))

    def check_logins(self):
        per_user = collections.defaultdict(list)
        tokens = collections.defaultdict(list)  # flow -> its oidc.token steps
        for o in self.ops:
            per_user[o.get("user")].append(("op", o["t0"], o))
            if o.get("step") == "oidc.token":
                tokens[o.get("flow")].append(o)
        for a in self.by["admin"]:
            per_user[a.get("user")].append(("admin", a.get("t0", 0), a))
        for user, items in per_user.items():
            items.sort(key=lambda x: x[1])
            enrolled_since = None
            for kind, t, o in items:
                if kind == "admin" or o.get("step") == "mfa.delete":
                    enrolled_since = None
                    continue
                if o.get("step") == "mfa.verify" and o.get("status") == 200:
                    enrolled_since = o.get("t1", t)
                    continue
                if enrolled_since is None or t < enrolled_since:
                    continue
                no_totp = (o.get("step") == "oidc.password" and o.get("status") == 302) or \
                          (o.get("step") == "legacy.auth" and o.get("status") == 200 and
                           "MFA" not in ((o.get("data") or {}).get("authQueries") or []))
                if no_totp and o.get("step") == "oidc.password":
                    # an OIDC login is made by its token: quorumgate refuses the token of a login
                    # whose password step a fenced member answered (README "Logins and fences")
                    tok = next((x for x in sorted(tokens.get(o.get("flow"), []), key=lambda x: x["t0"])
                                if x["t0"] >= t), None)
                    if tok is None or tok.get("status") != 200:
                        self.notes["OIDC password step without TOTP; no token issued (%s)" % (
                            "none asked" if tok is None else tok.get("err_code") or tok.get("status"))] += 1
                        continue
                if no_totp:
                    self.flag("login_without_totp", "%s login through %s answered by %s without TOTP %.3f s after "
                              "the verify answered" % (o.get("kind"), o.get("qg"), controller_of(o),
                                                       t - enrolled_since),
                              user=user, op=o.get("id"))

    def check_affinity(self):
        flows = collections.defaultdict(list)
        for o in self.ops:
            flows[o.get("flow")].append(o)
        for flow, ops in flows.items():
            home = learn = None
            for o in ops:
                step = o.get("step", "")
                if step == "oidc.authorize" and o.get("status") == 302:
                    home, learn, what = controller_of(o), o, "OIDC login"
                    continue
                if step == "legacy.auth" and o.get("status") == 200:
                    home, learn, what = controller_of(o), o, "legacy session"
                    continue
                if learn is None or home is None:
                    continue
                bound = (what == "OIDC login" and step.startswith("oidc.")) or \
                        (what == "legacy session" and o.get("cred") == "session")
                if not bound:
                    continue
                ans = controller_of(o)
                own = qg_own_401(o)
                lost = own or (ans is not None and ans != home)
                if not lost:
                    continue
                t0, t1 = learn.get("t1", learn["t0"]), o.get("t1", o["t0"])
                f = self.overlaps(t0, t1, kinds=("leader_kill", "follower_stop", "heal"), target=home)
                if f is not None:
                    self.notes["affinity: home %s down (documented)" % f["kind"]] += 1
                    continue
                # quorumgate reconnects with backoff (redis: 100 ms doubling, at most 5 s): until then
                # it keeps affinity in its own table (README "Operating notes": Redis down), so a
                # call may reach another controller; never a reason for quorumgate's own 401
                if not own and self.overlaps(t0, t1, kinds=("redis_restart",), settle=SETTLE):
                    self.notes["affinity: Redis restarted in between (documented)"] += 1
                    continue
                killed = self.overlaps(t0, t1, kinds=("qg_kill",), settle=1.0)
                self.flag("lost_affinity", "%s held by %s (learned through %s) answered by %s through %s (%s %s)%s"
                          % (what, home, learn.get("qg"), "quorumgate itself" if own else ans, o.get("qg"), step,
                             o.get("status"), "; a quorumgate was SIGKILLed in between" if killed else ""),
                          user=o.get("user"), op=o.get("id"), flow=flow)

    def check_envelopes(self):
        for o in self.ops:
            s = o.get("status") or 0
            if s < 400 or o.get("envelope"):
                continue
            if o.get("path", "").startswith("/oidc/") and controller_of(o):
                self.notes["/oidc error relayed in the controller's own form"] += 1
                continue
            self.flag("not_enveloped", "%s %s answered %d (%s) without the OpenZiti envelope" % (
                o.get("method"), o.get("path"), s, (o.get("headers") or {}).get("content-type")),
                op=o.get("id"), qg=o.get("qg"), controller=controller_of(o))

    def check_final(self, events):
        finals = self.by["final"]
        if not finals:
            self.flag("incomplete", "no final state of the controllers recorded (the run did not finish)")
            return
        for f in finals:
            if f.get("complete") is False:
                self.flag("incomplete", "%s did not answer every final read" % f.get("member"), member=f.get("member"))
        for user, evs in events.items():
            last = None
            for (ev, mfa), (ts, idx) in evs.items():
                k = (idx if isinstance(idx, (int, float)) else -1, ts or 0)
                if last is None or k > last[0]:
                    last = (k, ev)
            if last is None:
                continue
            want = last[1] == "verified"
            for f in finals:
                have = (f.get("mfa_enabled") or {}).get(user)
                if have is None:
                    continue
                if have != want:
                    self.flag("final_state", "%s says isMfaEnabled=%s, the last applied change was %r" % (
                        f.get("member"), have, last[1]), user=user, member=f.get("member"))

    def check_processes(self):
        for d in self.by["qg_died"]:
            self.flag("qg_crash", "%s (pid %s) exited with %s without being killed" % (
                d.get("qg"), d.get("pid"), d.get("code")), qg=d.get("qg"), tail=(d.get("stderr") or "")[-500:])
        for p in self.by["qg_problem"]:
            self.flag("qg_crash", p.get("problem", "")[:500], qg=p.get("qg"))

    def check_fault_schedule(self):
        if not self.require_each_fault:
            return
        ran = collections.Counter(f.get("kind") for f in self.faults if f.get("ok"))
        for k in FAULT_KINDS:
            if not ran[k]:
                self.flag("fault_missing", "fault %s never ran successfully" % k, fault=k)

    def run(self):
        events = self.events_by_user()
        if not self.by["event"] and any(o.get("step") == "mfa.create" and o.get("status") == 201 for o in self.ops):
            self.flag("incomplete", "no controller events recorded: creates and verifies cannot be checked")
        self.check_creates(events)
        self.check_verifies(events)
        self.check_direct()
        self.check_logins()
        self.check_affinity()
        self.check_envelopes()
        self.check_final(events)
        self.check_processes()
        self.check_fault_schedule()
        return self

    # ---- tables --------------------------------------------------------------------
    def tables(self):
        per_outcome = collections.Counter()
        per_step = collections.defaultdict(collections.Counter)
        per_fault = collections.defaultdict(collections.Counter)
        for o in self.ops:
            oc = outcome(o)
            per_outcome[oc] += 1
            per_step[o.get("step")][coarse(oc)] += 1
            t0, t1 = o.get("t0", 0), o.get("t1", o.get("t0", 0))
            active = {f["kind"] for f in self.faults if f.get("t0", 0) <= t1 and t0 <= f.get("t1", 0) + SETTLE}
            for k in active or {"none"}:
                per_fault[k][coarse(oc)] += 1
        faults = collections.defaultdict(collections.Counter)
        for f in self.faults:
            faults[f.get("kind")]["ran" if f.get("ok") else "failed"] += 1
        return per_outcome, per_step, per_fault, faults

    def curves(self, points=12):
        out = {}
        for s in self.by["sample"]:
            out.setdefault(s.get("qg"), []).append(s)
        res = {}
        for qg, ss in sorted(out.items()):
            lives = collections.OrderedDict()
            for s in ss:
                lives.setdefault(s.get("pid"), []).append(s)
            res[qg] = []
            for pid, xs in lives.items():
                xs = [x for x in xs if x.get("rss_kb") is not None]
                if not xs:
                    continue
                step = max(1, len(xs) // points)
                pick = xs[::step]
                if pick[-1] is not xs[-1]:
                    pick.append(xs[-1])
                span = max(1e-9, xs[-1]["t"] - xs[0]["t"])
                # growth after the first quarter of the process's life (warm-up: pools, caches)
                q = xs[len(xs) // 4]
                late = max(1e-9, xs[-1]["t"] - q["t"])
                res[qg].append({"pid": pid, "samples": len(xs), "seconds": round(span),
                                "rss_mib": [round(x["rss_kb"] / 1024.0, 1) for x in pick],
                                "fds": [x.get("fds") for x in pick],
                                "rss_growth_mib_per_h": round((xs[-1]["rss_kb"] - q["rss_kb"]) / 1024.0
                                                              * 3600 / late, 1) if late > 60 else None,
                                "fds_max": max((x.get("fds") or 0) for x in xs)})
        return res

    def report(self, out=sys.stdout):
        per_outcome, per_step, per_fault, faults = self.tables()
        w = out.write
        m = self.meta
        n_users = len({o.get("user") for o in self.ops})
        w("soak check: version %s, %d operations by %d identities, %.0f s of load\n" % (
            m.get("version"), len(self.ops), n_users, self.duration()))
        w("faults: %s\n" % ", ".join("%s %d%s" % (k, faults[k]["ran"], " (+%d failed)" % faults[k]["failed"]
                                                  if faults[k]["failed"] else "") for k in FAULT_KINDS))
        cols = ("ok", "4xx", "5xx", "no_answer", "known")
        w("\nper fault (an operation counts under every fault active during it or %.0f s after):\n" % SETTLE)
        w("  %-14s %8s" % ("fault", "total") + "".join(" %9s" % c for c in cols) + "\n")
        for k in FAULT_KINDS + ("none",):
            c = per_fault.get(k)
            if c:
                w("  %-14s %8d" % (k, sum(c.values())) + "".join(" %9d" % c[x] for x in cols) + "\n")
        w("\nper step:\n")
        for k in sorted(per_step):
            c = per_step[k]
            w("  %-14s %8d" % (k, sum(c.values())) + "".join(" %9d" % c[x] for x in cols) + "\n")
        w("\nper outcome:\n")
        for k, v in per_outcome.most_common():
            w("  %8d  %s\n" % (v, k))
        if self.notes:
            w("\nclassified (not violations):\n")
            for k, v in self.notes.most_common():
                w("  %8d  %s\n" % (v, k))
        w("\nRSS (MiB) and open descriptors of each quorumgate process (evenly spaced samples):\n")
        for qg, lives in self.curves().items():
            for life in lives:
                w("  %s pid %s, %d samples over %d s, RSS growth after the first quarter %s MiB/h, "
                  "fds max %s\n    rss %s\n    fds %s\n" % (
                      qg, life["pid"], life["samples"], life["seconds"], life["rss_growth_mib_per_h"],
                      life["fds_max"], life["rss_mib"], life["fds"]))
        total = sum(len(v) for v in self.violations.values())
        w("\nviolations: %d\n" % total)
        for k in VIOLATION_KINDS:
            vs = self.violations.get(k, [])
            w("  %-28s %d\n" % (k, len(vs)))
            for v in vs[:self.show]:
                w("      %s\n" % json.dumps(v, sort_keys=True)[:600])
        return total

    def duration(self):
        st = self.by["start"]
        sp = self.by["stop"]
        if st and sp:
            return sp[0]["t"] - st[0]["t"]
        if self.ops:
            return self.ops[-1].get("t1", 0) - self.ops[0].get("t0", 0)
        return 0.0

    def summary(self):
        per_outcome, per_step, per_fault, faults = self.tables()
        return {"violations": {k: v for k, v in self.violations.items()}, "notes": dict(self.notes),
                "per_outcome": dict(per_outcome), "per_fault": {k: dict(v) for k, v in per_fault.items()},
                "faults": {k: dict(v) for k, v in faults.items()}, "curves": self.curves()}


def check(recs, require_each_fault=False):
    return Checker(recs, require_each_fault=require_each_fault).run()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Check a bench/soak.py history (issue 18).")
    ap.add_argument("history")
    ap.add_argument("--json", help="write the summary (violations, counts, curves) here")
    ap.add_argument("--require-each-fault", action="store_true",
                    help="a fault kind that never ran is a violation (the CI variant)")
    ap.add_argument("--show", type=int, default=10, help="violations shown per kind")
    a = ap.parse_args(argv)
    try:
        recs = load(a.history)
    except (OSError, ValueError) as e:
        print("soak check: cannot read %s: %s" % (a.history, e), file=sys.stderr)
        return 2
    c = Checker(recs, require_each_fault=a.require_each_fault, show=a.show).run()
    total = c.report()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(c.summary(), f, indent=1, default=str)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
