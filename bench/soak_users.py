"""The simulated users of bench/soak.py and the history they write.

Every HTTP call a user makes through quorumgate is one ``op`` line of the JSONL history:
start and end (wall clock, time.time()), which quorumgate (``qg``), method, path (query
values dropped), the step it belongs to (``oidc.password``, ``mfa.verify``, ...), the
credential kind, the answer status (0 = no answer: ``error`` says why), the headers that matter
(``quorumgate-*``, ``x-request-id``, ``content-type``, ``totp-required``, a ``location`` path),
the error envelope's code and whether the error body was an envelope, and a few data fields
(an enrollment id, ``isVerified``, the types of ``authQueries``).  Never a token, a password, a
TOTP secret or code, or a recovery code.

A user (``user_loop``) logs in (OIDC or legacy, chosen per login), enrolls (create, detail, QR
code, verify), logs in again (each login must ask for TOTP), sometimes deletes the enrollment
and enrolls again.  After each gated answer it reads every controller directly at once
(``direct`` lines): after a verify a legacy login on each member (must ask for MFA), after a
delete the member's ``isMfaEnabled`` (admin), after an OIDC create the enrollment with the
user's own token.  Readers (``reader_loop``) make background reads at a set rate.
"""
import http.client
import itertools
import json
import random
import ssl
import threading
import time
import urllib.parse

from tests.ctrlsim.client import ApiFailure, Resp, ZitiClient, totp_now
from tests.ctrlsim.totp import secret_from_url

KEEP_HEADERS = ("quorumgate-controller", "quorumgate-replication", "quorumgate-attempts", "x-request-id",
                "content-type", "totp-required")


class History:
    """Thread-safe JSONL writer (the soak's only output the checker needs)."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1 << 16)
        self.lock = threading.Lock()
        self.ids = itertools.count(1)

    def write(self, rec):
        line = json.dumps(rec, separators=(",", ":"), default=str)
        with self.lock:
            self.f.write(line + "\n")

    def next_id(self):
        with self.lock:
            return next(self.ids)

    def close(self):
        with self.lock:
            self.f.flush()
            self.f.close()


def step_of(method, path):
    p = path.split("?", 1)[0]
    if p.startswith("/oidc/"):
        if p.startswith("/oidc/authorize"):
            return "oidc.authorize"
        if p.startswith("/oidc/login/password"):
            return "oidc.password"
        if p.startswith("/oidc/login/totp"):
            return "oidc.totp"
        if p.startswith("/oidc/oauth/token"):
            return "oidc.token"
        if p.startswith("/oidc/login/"):
            return "oidc.page"
        return "oidc.callback"
    if p.endswith("/authenticate"):
        return "legacy.auth"
    if p.endswith("/authenticate/mfa"):
        return "legacy.mfa"
    if "/current-identity/mfa" in p:
        tail = p.split("/current-identity/mfa", 1)[1]
        if tail == "":
            return {"POST": "mfa.create", "GET": "mfa.get", "DELETE": "mfa.delete"}.get(method, "mfa.other")
        if tail == "/verify":
            return "mfa.verify"
        if tail == "/qr-code":
            return "mfa.qr"
        if tail.startswith("/recovery-codes"):
            return "mfa.recovery"
        return "mfa.other"
    return "read"


def redact_path(path):
    """The path with the query's keys only (values can be login handles or codes)."""
    base, _, q = path.partition("?")
    if not q:
        return base
    return base + "?" + "&".join(sorted(k for k in urllib.parse.parse_qs(q, keep_blank_values=True)))


def summarize_body(resp):
    """(error code, envelope ok, data summary) of an answer, nothing secret."""
    code, envelope, data = None, None, {}
    try:
        j = json.loads(resp.body) if resp.body else None
    except ValueError:
        j = None
    if resp.status >= 400:
        err = j.get("error") if isinstance(j, dict) else None
        envelope = isinstance(err, dict) and isinstance(err.get("code"), str) and "message" in err
        code = err.get("code") if isinstance(err, dict) else (j.get("error") if isinstance(j, dict) else None)
        if not isinstance(code, str):
            code = None
    elif isinstance(j, dict) and isinstance(j.get("data"), dict):
        d = j["data"]
        if "isVerified" in d:
            data["isVerified"] = d.get("isVerified")
        if isinstance(d.get("id"), str) and "isVerified" in d:
            data["mfa"] = d["id"]
        if "authQueries" in d:
            data["authQueries"] = [q.get("typeId") for q in (d.get("authQueries") or []) if isinstance(q, dict)]
        if "identityId" in d and "token" in d:
            data["identityId"] = d["identityId"]
    return code, envelope, data


class RecClient(ZitiClient):
    """A ZitiClient that sends each request to one of the quorumgates (a load balancer's
    choice: random, the other one when the first refuses the connection) and records it."""

    def __init__(self, soak, user, flow, timeout=30.0):
        super().__init__(soak.qg_urls()[0], timeout=timeout)
        self.soak = soak
        self.user = user
        self.flow = flow
        self.ctx = {}
        self._qg = None

    def _new_conn(self):
        return http.client.HTTPConnection("127.0.0.1", self._port, timeout=self.timeout)

    def request(self, method, path, body=None, headers=None, auth=True, form=None):
        names = self.soak.qg_names()
        first = random.choice(names)
        order = [first] + [n for n in names if n != first]
        resp = None
        for i, name in enumerate(order):
            self._qg = name
            self._port = self.soak.qg_port(name)
            cred = "bearer" if (auth and self.access_token and not self.zt_session) else \
                ("session" if auth and self.zt_session else None)
            rec = {"type": "op", "id": self.soak.history.next_id(), "user": self.user, "flow": self.flow,
                   "qg": name, "method": method, "path": redact_path(path), "step": step_of(method, path),
                   "cred": cred, "t0": time.time()}
            rec.update(self.ctx)
            try:
                resp = ZitiClient.request(self, method, path, body=body, headers=headers, auth=auth, form=form)
            except (OSError, http.client.HTTPException, ssl.SSLError) as e:
                rec["t1"] = time.time()
                rec["status"] = 0
                rec["error"] = type(e).__name__
                refused = isinstance(e, ConnectionRefusedError)
                rec["sent"] = not refused
                self.soak.history.write(rec)
                resp = Resp(method, path, 0, [], b"")
                if refused and i + 1 < len(order):
                    continue          # nothing was sent: the balancer tries the other quorumgate
                return resp
            rec["t1"] = time.time()
            rec["status"] = resp.status
            h = {k: resp.header(k) for k in KEEP_HEADERS if resp.header(k) is not None}
            loc = resp.header("location")
            if loc is not None:
                h["location"] = redact_path(urllib.parse.urlsplit(loc).path or "/")
            rec["headers"] = h
            code, envelope, data = summarize_body(resp)
            if resp.status >= 400:
                rec["err_code"] = code
                rec["envelope"] = bool(envelope)
            if resp.status == 401 and envelope:
                # quorumgate's own 401 (a session's home that cannot be
                # reached) and a controller's read alike but for the message
                # (static text, a controller id at most: nothing secret)
                rec["err_msg"] = str(json.loads(resp.body)["error"]["message"])[:160]
            if data:
                rec["data"] = data
            self.soak.history.write(rec)
            self.last_op = rec["id"]
            return resp
        return resp


# ---------------------------------------------------------------------------
# one user

class Stop(Exception):
    pass


class User:
    def __init__(self, soak, idx, name, password, iid, rng):
        self.soak = soak
        self.idx = idx
        self.name = name
        self.password = password
        self.iid = iid
        self.rng = rng
        self.secret = None          # TOTP secret of the current enrollment
        self.mfa = None             # its id
        self.enrolled = False       # verified (as far as this user knows)
        self.flows = itertools.count(1)
        self.c = None
        self.kind = None

    # ---- helpers -------------------------------------------------------------
    def pause(self, scale=1.0):
        t = self.rng.expovariate(1.0 / max(0.01, self.soak.think * scale))
        if self.soak.stop.wait(min(t, 5 * self.soak.think * scale)):
            raise Stop()

    def new_flow(self):
        return "%s/%d" % (self.name, next(self.flows))

    def code(self):
        if time.time() % 30 > 28.5:            # not the last moment of a 30 s step
            if self.soak.stop.wait(30 - time.time() % 30 + 0.1):
                raise Stop()
        return totp_now(self.secret)

    def log(self, what, **kw):
        rec = {"type": "user", "user": self.iid, "t": time.time(), "what": what}
        rec.update(kw)
        self.soak.history.write(rec)

    # ---- login ---------------------------------------------------------------
    def login(self):
        """A fresh client logged in through quorumgate; None when the login failed (recorded)."""
        self.kind = self.rng.choice(self.soak.kinds)
        c = RecClient(self.soak, self.iid, self.new_flow())
        c.ctx = {"kind": self.kind}
        try:
            if self.kind == "oidc":
                try:
                    r = c.oidc_login(self.name, self.password, totp_secret=self.secret)
                except ApiFailure:
                    if getattr(c, "last_totp_required", False) and not self.secret:
                        return self.resync_after_unexpected_mfa()
                    return None
                if r.status != 200:
                    return None
                if c.last_totp_required and not self.enrolled:
                    self.enrolled = True                 # a verify committed unseen
                    self.log("enrolled_unseen", mfa=self.mfa)
            else:
                r = c.legacy_login(self.name, self.password)
                if r.status != 200:
                    return None
                queries = r.json()["data"].get("authQueries") or []
                if queries:
                    if not self.secret:
                        return self.resync_after_unexpected_mfa()
                    if not self.enrolled:
                        self.enrolled = True
                        self.log("enrolled_unseen", mfa=self.mfa)
                    if c.authenticate_mfa(self.code()).status != 200:
                        return None
            c.ctx["token_from"] = r.header("quorumgate-controller")
        except ApiFailure:
            return None
        except (ValueError, KeyError):
            return None
        return c

    def resync_after_unexpected_mfa(self):
        """The controllers say this identity has MFA while the user thinks it has not: an
        earlier call with no answer committed.  Without the secret the user cannot log in: the
        soak's admin removes the enrollment (recorded) and the user starts over."""
        self.soak.admin_reset_mfa(self.iid, "mfa asked at login, secret unknown")
        self.secret = self.mfa = None
        self.enrolled = False
        return None

    # ---- enrollment --------------------------------------------------------------
    def state(self, c):
        """(exists, verified, mfa id, secret or None) read through quorumgate; None: unknown."""
        r = c.mfa_get()
        if r.status == 404:
            return (False, False, None, None)
        if r.status != 200:
            return None
        d = r.json()["data"]
        url = d.get("provisioningUrl")
        return (True, bool(d.get("isVerified")), d.get("id"), secret_from_url(url) if url else None)

    def enroll(self, c):
        """create (or find), detail, QR, verify; True when verified (answer 200 seen)."""
        r = c.mfa_create()
        if r.status == 201:
            self.mfa = r.json()["data"]["id"]
            self.soak.direct_after(self, c, "create", r)
        elif r.status == 0 or r.status >= 400:
            self.pause(0.3)
        st = self.state(c)
        if st is None:
            return False
        exists, verified, mfa, secret = st
        if not exists:
            return False
        if verified:
            if not self.secret:                      # verified by a call we saw fail: unknown secret
                self.soak.admin_reset_mfa(self.iid, "verified, secret unknown")
                self.mfa = None
                return False
            self.enrolled, self.mfa = True, mfa
            return True
        self.mfa, self.secret = mfa, secret
        c.ctx["mfa"] = mfa
        c.mfa_qr()
        self.pause(0.5)
        for _ in range(4):
            r = c.mfa_verify(self.code())
            if r.status == 200:
                self.enrolled = True
                self.soak.direct_after(self, c, "verify", r)
                return True
            self.pause(0.3)
            st = self.state(c)
            if st is None:
                continue
            exists, verified, mfa, _ = st
            if not exists or mfa != self.mfa:
                return False
            if verified:
                self.enrolled = True                 # committed, answered as a failure (the checker says)
                return True
        return False

    def delete(self, c):
        c.ctx["mfa"] = self.mfa
        for _ in range(3):
            r = c.mfa_delete(self.code())
            if r.status == 200:
                self.soak.direct_after(self, c, "delete", r)
                self.enrolled, self.mfa, self.secret = False, None, None
                return True
            self.pause(0.3)
            st = self.state(c)
            if st is not None and not st[0]:
                self.enrolled, self.mfa, self.secret = False, None, None
                return True
        return False

    def reads(self, c, n):
        for _ in range(n):
            c.request("GET", self.rng.choice(("/edge/client/v1/current-identity", "/edge/client/v1/services",
                                               "/edge/client/v1/controllers")))
            self.pause(0.5)

    def cycle(self):
        c = self.login()
        if c is None:
            self.pause(2.0)
            return
        self.reads(c, self.rng.randint(0, 2))
        if not self.enrolled:
            self.enroll(c)
            return
        if self.rng.random() < self.soak.delete_prob:
            self.pause()
            self.delete(c)


def user_loop(soak, user):
    while not soak.stop.is_set():
        try:
            user.pause()
            user.cycle()
        except Stop:
            return
        except Exception as e:          # a bug in the soak itself: recorded, the user goes on
            soak.history.write({"type": "user", "user": user.iid, "t": time.time(), "what": "exception",
                                "error": "%s: %s" % (type(e).__name__, str(e)[:300])})
            if soak.stop.wait(2.0):
                return


def reader_loop(soak, reader, rate):
    """Background reads through quorumgate at ``rate`` per second (this reader's share)."""
    c = None
    paths = ("/edge/client/v1/current-identity", "/edge/client/v1/services", "/edge/client/v1/controllers",
             "/version", "/edge/client/v1/current-api-session")
    nxt = time.monotonic()
    while not soak.stop.is_set():
        nxt += reader.rng.expovariate(rate)
        delay = nxt - time.monotonic()
        if delay > 0 and soak.stop.wait(delay):
            return
        if c is None:
            c = reader.login()
            if c is None:
                soak.stop.wait(1.0)
                continue
        r = c.request("GET", reader.rng.choice(paths))
        if r.status == 401:
            c = None
