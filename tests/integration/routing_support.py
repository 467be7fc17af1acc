"""Helpers for the routing tests (issue 9): an OIDC login driven step by step
(so that each step can go through a different quorumgate and every secret
it produced is known to the test), the simulator's per-node request log, a
Redis dump, and a client that round-robins over the controllers directly
(what a balancer without stickiness does).

Nothing here sleeps blindly: waits go through ``wait_until`` with a deadline.
"""
import base64
import hashlib
import hmac
import http.client
import itertools
import secrets
import socket
import threading
import time
import urllib.parse

from tests.ctrlsim.client import ZitiClient, totp_now
from tests.support.procs import wait_until
from tests.support.resp import RedisClient

REDIRECT_URI = "http://127.0.0.1:20202/auth/callback"

# the requests of one OIDC login, as the simulator logs them
OIDC_LOGIN_PATHS = ("/oidc/authorize", "/oidc/login/username", "/oidc/login/password", "/oidc/login/totp",
                    "/oidc/authorize/callback", "/oidc/oauth/token")


def path_of(url):
    s = urllib.parse.urlsplit(url)
    return (s.path or "/") + ("?" + s.query if s.query else "")


class Login:
    """What one OIDC login produced: every secret and every answer."""

    def __init__(self):
        self.auth_request_id = None
        self.code = None
        self.tokens = {}
        self.steps = []          # (name, Resp)
        self.ok = False
        self.failed_step = None

    def controllers(self):
        """Quorumgate-Controller of every step that went through quorumgate."""
        return [r.header("quorumgate-controller") for _, r in self.steps]

    def secrets(self):
        out = [self.auth_request_id, self.code]
        out += [v for v in self.tokens.values() if v]
        return [s for s in out if s]


def oidc_login(first, rest, username, password, totp_secret=None, id_in="json", after_authorize=None,
               before_token=None):
    """An OIDC authorization-code + PKCE login whose first step
    (``/oidc/authorize``) goes through client ``first`` and every later step
    through ``rest``.  ``id_in`` says how the password step names the auth
    request: "json" (body), "form" (form body) or "query" (authRequestID).
    ``after_authorize(resp)`` returning false stops the login there (failed
    step "stopped after authorize"); ``before_token(lg)`` runs right before
    the token step.  Never raises for a failed step: ``Login.ok`` /
    ``failed_step`` say."""
    lg = Login()
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_hex(8)
    q = urllib.parse.urlencode({"client_id": "openziti", "response_type": "code", "scope": "openid offline_access",
                                "redirect_uri": REDIRECT_URI, "code_challenge": challenge,
                                "code_challenge_method": "S256", "state": state})

    def step(name, client, *a, want=(200,), **kw):
        r = client.request(*a, auth=False, **kw)
        lg.steps.append((name, r))
        if r.status not in want:
            lg.failed_step = "%s -> %d %s" % (name, r.status, r.body[:200])
            return None
        return r

    r = step("authorize", first, "GET", "/oidc/authorize?" + q, want=(302,))
    if r is None:
        return lg
    if after_authorize is not None and not after_authorize(r):
        lg.failed_step = "stopped after authorize"
        return lg
    loc = r.header("location") or ""
    lg.auth_request_id = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query).get("authRequestID", [None])[0]
    if not lg.auth_request_id:
        lg.failed_step = "authorize: no authRequestID in %r" % loc
        return lg
    rid = lg.auth_request_id
    r = step("login-page", rest, "GET", path_of(loc), headers={"accept": "text/html"})
    if r is None:
        return lg
    if id_in == "json":
        r = step("password", rest, "POST", "/oidc/login/password",
                 body={"username": username, "password": password, "id": rid}, want=(200, 302))
    elif id_in == "form":
        r = step("password", rest, "POST", "/oidc/login/password",
                 form={"username": username, "password": password, "id": rid}, want=(200, 302))
    else:
        r = step("password", rest, "POST", "/oidc/login/password?authRequestID=" + urllib.parse.quote(rid),
                 body={"username": username, "password": password}, want=(200, 302))
    if r is None:
        return lg
    if r.status == 200:
        if r.header("totp-required") != "true":
            lg.failed_step = "password: 200 without a redirect or totp-required (the login page: wrong controller)"
            return lg
        if not totp_secret:
            lg.failed_step = "password: TOTP required but no secret"
            return lg
        r = step("totp", rest, "POST", "/oidc/login/totp", body={"id": rid, "code": totp_now(totp_secret)},
                 want=(302,))
        if r is None:
            return lg
    r = step("callback", rest, "GET", path_of(r.header("location") or "/"), want=(302,))
    if r is None:
        return lg
    back = urllib.parse.urlsplit(r.header("location") or "")
    bq = urllib.parse.parse_qs(back.query)
    if bq.get("state", [None])[0] != state or "code" not in bq:
        lg.failed_step = "callback: no code/state in %r" % r.header("location")
        return lg
    lg.code = bq["code"][0]
    if before_token is not None:
        before_token(lg)
    r = step("token", rest, "POST", "/oidc/oauth/token",
             form={"grant_type": "authorization_code", "code": lg.code, "code_verifier": verifier,
                   "client_id": "openziti", "redirect_uri": REDIRECT_URI})
    if r is None:
        return lg
    t = r.json()
    lg.tokens = {k: t.get(k) for k in ("access_token", "refresh_token", "id_token")}
    lg.ok = True
    return lg


def client_with_token(base_url, ca, token):
    c = ZitiClient(base_url, ca_file=ca)
    c.access_token = token
    return c


# ---- the simulator's request log ------------------------------------------------

def requests_by_node(sim, pred=lambda r: True):
    """{node id: [request]} of the logged requests that match pred."""
    return {nid: [r for r in reqs if pred(r)] for nid, reqs in sim.control.requests().items()}


def nodes_that_saw(sim, pred):
    return sorted(nid for nid, reqs in requests_by_node(sim, pred).items() if reqs)


def is_oidc_login(r):
    return r["path"] in OIDC_LOGIN_PATHS


def is_probe(r):
    return r["path"].startswith("/health-checks")


# ---- a balancer without stickiness ------------------------------------------------

class RoundRobinClient(ZitiClient):
    """A ZitiClient that sends each request to the next controller in turn,
    like a load balancer without stickiness (the control experiment)."""

    def __init__(self, urls, ca_file=None):
        super().__init__(urls[0], ca_file=ca_file)
        self._targets = itertools.cycle([urllib.parse.urlsplit(u) for u in urls])

    def _new_conn(self):
        u = next(self._targets)
        if u.scheme == "https":
            return http.client.HTTPSConnection(u.hostname, u.port, timeout=self.timeout, context=self.ssl_ctx)
        return http.client.HTTPConnection(u.hostname, u.port, timeout=self.timeout)


# ---- Redis ------------------------------------------------------------------------

def redis_call(redis, *args, timeout=3.0):
    """One command, the reply decoded (RESP2): str/bytes, int, list, None;
    an error reply raises RuntimeError."""
    c = RedisClient(redis.port, timeout=timeout)
    try:
        return c(*args)
    finally:
        c.close()


def redis_dump(redis):
    """Every key and everything stored under it: {key: (type, [bytes...], pttl)}."""
    out = {}
    cursor = b"0"
    while True:
        cursor, keys = redis_call(redis, "SCAN", cursor, "COUNT", "1000")
        for k in keys:
            typ = redis_call(redis, "TYPE", k)
            if typ == "string":
                vals = [redis_call(redis, "GET", k)]
            elif typ == "hash":
                vals = redis_call(redis, "HGETALL", k)
            elif typ == "set":
                vals = redis_call(redis, "SMEMBERS", k)
            elif typ == "list":
                vals = redis_call(redis, "LRANGE", k, 0, -1)
            elif typ == "zset":
                vals = redis_call(redis, "ZRANGE", k, 0, -1, "WITHSCORES")
            elif typ == "none":
                continue        # expired between SCAN and TYPE
            else:
                vals = [("<%s>" % typ).encode()]
            out[k] = (typ, [v for v in vals if v is not None], redis_call(redis, "PTTL", k))
        if cursor in (b"0", "0"):
            return out


def hmac_hex(key_bytes, text):
    return hmac.new(key_bytes, text.encode(), hashlib.sha256).hexdigest()


def hmac_key_of(qg):
    with open(qg.config["secrets"]["hmac_key_file"], "rb") as f:
        return f.read()


def write_fence(qg, sub, nodes, ttl_ms=60000, index=True):
    """A fence of identity sub on nodes, written the way consistency/ackstore.c
    writes it (and published); returns the identity's HMAC."""
    idhex = hmac_hex(hmac_key_of(qg), "identity|" + sub)
    key = "qg:fence:" + idhex
    for node in nodes:
        redis_call(qg.redis, "HSET", key, node, str(int(time.time() * 1000) + ttl_ms))
    redis_call(qg.redis, "PEXPIRE", key, str(ttl_ms + 60000))
    if index:
        redis_call(qg.redis, "SADD", "qg:fence-index", idhex)
    redis_call(qg.redis, "PUBLISH", "qg:fences", idhex)
    return idhex


def lift_fence(qg, idhex):
    """The fence of write_fence gone (every controller acknowledged)."""
    redis_call(qg.redis, "DEL", "qg:fence:" + idhex)
    redis_call(qg.redis, "SREM", "qg:fence-index", idhex)
    redis_call(qg.redis, "PUBLISH", "qg:fences", idhex)


# ---- quorumgate -------------------------------------------------------------------

def wait_view(qg, leader=None, up=None, timeout=10.0):
    """Wait until quorumgate's cluster view (controller_leader/controller_up
    gauges) shows ``leader`` (an id, or "none") and the controllers in
    ``up`` as up."""
    def ok():
        m = qg.metrics()
        if leader is not None:
            leaders = [lab["controller"] for lab, v in m.get("quorumgate_controller_leader", []) if v == 1]
            if leader == "none":
                if leaders:
                    return False
            elif leaders != [leader]:
                return False
        if up is not None:
            ups = {lab["controller"]: v for lab, v in m.get("quorumgate_controller_up", [])}
            for nid, want in up.items():
                if ups.get(nid) != (1 if want else 0):
                    return False
        return True
    wait_until(ok, timeout=timeout, what="quorumgate sees leader=%s up=%s" % (leader, up))


def decisions(qg):
    """{(class, decision): count} of quorumgate_routing_decisions_total."""
    return {(lab["class"], lab["decision"]): v for lab, v in
            qg.metrics().get("quorumgate_routing_decisions_total", [])}


def delta(after, before):
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def assert_envelope(resp, status, code):
    assert resp.status == status, (resp.status, resp.body[:300])
    assert (resp.header("content-type") or "").startswith("application/json"), resp.header("content-type")
    j = resp.json()
    assert isinstance(j.get("error"), dict), j
    assert j["error"]["code"] == code, j
    assert j["error"].get("requestId"), j
    assert j["error"]["requestId"] == resp.header("x-request-id"), (j, resp.header("x-request-id"))
    assert "meta" in j, j
    return j



# ---- a slow network path -----------------------------------------------------------

class DelayProxy:
    """A TCP relay on a free loopback port that delays what the client
    sends by ``delay`` seconds (answers flow back at once): a quorumgate
    whose link to Redis is slower than its peers'.  Order is kept; chunks
    are not delayed cumulatively.  Stop with ``stop()``."""

    def __init__(self, target_port, delay):
        self.target_port = target_port
        self.delay = delay
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.socks = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def _accept(self):
        while not self.stopped.is_set():
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                c.close()
                continue
            self.socks += [c, u]
            threading.Thread(target=self._pump, args=(c, u, self.delay), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, 0), daemon=True).start()

    def _pump(self, src, dst, delay):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if delay:
                    due = time.monotonic() + delay
                    while not self.stopped.is_set() and time.monotonic() < due:
                        self.stopped.wait(min(0.005, max(0.0, due - time.monotonic())))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        self.stopped.set()
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
