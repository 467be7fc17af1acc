"""A small OpenZiti API client (standard library only).

Works against the simulator, against quorumgate and against a real
controller: legacy password login, OIDC login with PKCE (including the TOTP
step), MFA create/get/qr-code/verify/delete, recovery codes, and TOTP from the
otpauth:// provisioning URL.  HTTP errors are returned, not raised: every call
gives a ``Resp`` whose status, headers and JSON the caller checks.

    c = ZitiClient("https://127.0.0.1:8443", ca_file="ca.pem")
    c.oidc_login("alice", "pw")
    r = c.mfa_create(); r.expect(201)
    url = c.mfa_get().json()["data"]["provisioningUrl"]
    c.mfa_verify(totp_now(secret_from_url(url))).expect(200)
"""
import base64
import hashlib
import http.client
import json
import secrets
import ssl
import urllib.parse

from .totp import secret_from_url, totp as _totp


def totp_now(secret, offset_steps=0):
    return _totp(secret, offset_steps=offset_steps)


class ApiFailure(AssertionError):
    pass


class Resp:
    def __init__(self, method, url, status, headers, body):
        self.method = method
        self.url = url
        self.status = status
        self.header_list = headers               # [(name, value)] as received
        self.headers = {}
        for k, v in headers:
            self.headers.setdefault(k.lower(), v)
        self.body = body

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def header_all(self, name):
        return [v for k, v in self.header_list if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    @property
    def data(self):
        return self.json().get("data")

    @property
    def error_code(self):
        try:
            j = self.json()
        except ValueError:
            return None
        if isinstance(j.get("error"), dict):
            return j["error"].get("code")
        return j.get("code") if isinstance(j.get("code"), str) else None

    def expect(self, *statuses):
        if self.status not in statuses:
            raise ApiFailure("%s %s -> %d (wanted %s): %s" % (self.method, self.url, self.status, statuses,
                                                              self.body[:500]))
        return self

    def __repr__(self):
        return "<Resp %s %s %d>" % (self.method, self.url, self.status)


class ZitiClient:
    def __init__(self, base_url, ca_file=None, verify=True, timeout=15.0, server_hostname=None,
                 keep_alive=False):
        u = urllib.parse.urlsplit(base_url.rstrip("/"))
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.server_hostname = server_hostname
        self.keep_alive = keep_alive
        self._conn = None
        self.ssl_ctx = None
        if self.scheme == "https":
            self.ssl_ctx = ssl.create_default_context(cafile=ca_file)
            if not verify:
                self.ssl_ctx.check_hostname = False
                self.ssl_ctx.verify_mode = ssl.CERT_NONE
        self.host_header = None        # an explicit Host (e.g. a controller's issuer through a TCP relay)
        self.zt_session = None
        self.access_token = None
        self.refresh_token = None
        self.id_token = None
        self.identity_id = None
        self.source_address = None     # connect from this loopback address (e.g. "127.0.0.2")

    # ---- transport -----------------------------------------------------
    def _new_conn(self):
        src = (self.source_address, 0) if self.source_address else None
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.ssl_ctx,
                                               source_address=src)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout, source_address=src)

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def auth_headers(self):
        if self.zt_session:
            return {"zt-session": self.zt_session}
        if self.access_token:
            return {"authorization": "Bearer " + self.access_token}
        return {}

    def request(self, method, path, body=None, headers=None, auth=True, form=None):
        """One request; ``path`` may carry a query.  ``body`` (dict) is sent
        as JSON, ``form`` (dict) as x-www-form-urlencoded."""
        h = {"accept": "application/json"}
        if auth:
            h.update(self.auth_headers())
        data = None
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            h["content-type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode() if not isinstance(body, bytes) else body
            h["content-type"] = "application/json"
        if headers:
            h.update({k.lower(): v for k, v in headers.items()})
        if self.host_header:
            h.setdefault("host", self.host_header)
        elif self.server_hostname:
            h.setdefault("host", "%s:%d" % (self.server_hostname, self.port))
        conn = self._conn if self.keep_alive and self._conn is not None else self._new_conn()
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            payload = r.read()
            resp = Resp(method, self.base + path, r.status, r.getheaders(), payload)
        except Exception:
            conn.close()
            self._conn = None
            raise
        if self.keep_alive and not r.will_close:
            self._conn = conn
        else:
            conn.close()
            self._conn = None
        return resp

    # ---- informational -----------------------------------------------------
    def version(self):
        return self.request("GET", "/version", auth=False)

    def controllers(self, api="client"):
        return self.request("GET", "/edge/%s/v1/controllers" % api)

    def current_identity(self, api="client"):
        return self.request("GET", "/edge/%s/v1/current-identity" % api)

    def raft_health(self):
        return self.request("GET", "/health-checks/controller/raft", auth=False)

    # ---- legacy API sessions -------------------------------------------------
    def legacy_login(self, username, password, api="client"):
        r = self.request("POST", "/edge/%s/v1/authenticate?method=password" % api,
                         body={"username": username, "password": password}, auth=False)
        if r.status == 200:
            self.zt_session = r.header("zt-session") or r.json()["data"]["token"]
            self.identity_id = r.json()["data"]["identityId"]
            self.access_token = None
        return r

    def authenticate_mfa(self, code, api="client"):
        return self.request("POST", "/edge/%s/v1/authenticate/mfa" % api, body={"code": code})

    # ---- OIDC ------------------------------------------------------------------
    def oidc_login(self, username, password, totp_secret=None, totp_code=None,
                   redirect_uri="http://127.0.0.1:20202/auth/callback", client_id="openziti"):
        """The whole OIDC authorization-code + PKCE login.  Returns the token
        response (a Resp); on success the access token is used from then on.
        Raises ApiFailure with the failing step when a step goes wrong."""
        verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_hex(8)
        q = urllib.parse.urlencode({"client_id": client_id, "response_type": "code", "scope": "openid offline_access",
                                    "redirect_uri": redirect_uri, "code_challenge": challenge,
                                    "code_challenge_method": "S256", "state": state})
        r = self.request("GET", "/oidc/authorize?" + q, auth=False).expect(302)
        loc = r.header("location")
        rid = urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query).get("authRequestID", [None])[0]
        if not rid:
            raise ApiFailure("no authRequestID in %r" % loc)
        self.last_auth_request_id = rid
        r = self.request("GET", _path_of(loc), auth=False, headers={"accept": "text/html"}).expect(200)
        if r.header("auth-request-id") != rid:
            raise ApiFailure("auth-request-id header %r != %r" % (r.header("auth-request-id"), rid))
        r = self.request("POST", "/oidc/login/password",
                         body={"username": username, "password": password, "id": rid}, auth=False)
        self.last_totp_required = r.status == 200 and r.header("totp-required") == "true"
        if r.status == 200 and r.header("totp-required") == "true":
            code = totp_code if totp_code is not None else (totp_now(totp_secret) if totp_secret else None)
            if code is None:
                raise ApiFailure("TOTP required but no secret or code given")
            r = self.request("POST", "/oidc/login/totp", body={"id": rid, "code": code}, auth=False)
            if r.status != 302:
                raise ApiFailure("TOTP step -> %d %s" % (r.status, r.body[:300]))
        elif r.status != 302:
            raise ApiFailure("password step -> %d (login failed) %s" % (r.status, r.body[:200]))
        cb = r.header("location")
        r = self.request("GET", _path_of(cb), auth=False).expect(302)
        back = urllib.parse.urlsplit(r.header("location"))
        bq = urllib.parse.parse_qs(back.query)
        if bq.get("state", [None])[0] != state:
            raise ApiFailure("state mismatch in %r" % r.header("location"))
        if "code" not in bq:
            raise ApiFailure("no code in %r" % r.header("location"))
        tr = self.request("POST", "/oidc/oauth/token", auth=False,
                          form={"grant_type": "authorization_code", "code": bq["code"][0],
                                "code_verifier": verifier, "client_id": client_id,
                                "redirect_uri": redirect_uri})
        if tr.status == 200:
            self._take_tokens(tr.json())
        return tr

    def _take_tokens(self, t):
        self.access_token = t["access_token"]
        self.refresh_token = t.get("refresh_token")
        self.id_token = t.get("id_token")
        self.zt_session = None
        self.identity_id = self.claims()["sub"]

    def refresh(self, client_id="openziti"):
        tr = self.request("POST", "/oidc/oauth/token", auth=False,
                          form={"grant_type": "refresh_token", "refresh_token": self.refresh_token,
                                "client_id": client_id})
        if tr.status == 200:
            self._take_tokens(tr.json())
        return tr

    def claims(self, token=None):
        tok = token or self.access_token
        payload = tok.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    # ---- MFA -----------------------------------------------------------------
    def _mfa(self, api, suffix=""):
        return "/edge/%s/v1/current-identity/mfa%s" % (api, suffix)

    def mfa_create(self, api="client"):
        return self.request("POST", self._mfa(api))

    def mfa_get(self, api="client"):
        return self.request("GET", self._mfa(api))

    def mfa_qr(self, api="client"):
        return self.request("GET", self._mfa(api, "/qr-code"), headers={"accept": "image/png, application/json"})

    def mfa_verify(self, code, api="client"):
        return self.request("POST", self._mfa(api, "/verify"), body={"code": code})

    def mfa_delete(self, code="", api="client"):
        return self.request("DELETE", self._mfa(api), headers={"mfa-validation-code": code})

    def recovery_codes(self, code, api="client"):
        return self.request("GET", self._mfa(api, "/recovery-codes"), headers={"mfa-validation-code": code})

    def new_recovery_codes(self, code, api="client"):
        return self.request("POST", self._mfa(api, "/recovery-codes"), body={"code": code})

    def mfa_secret(self, api="client"):
        """The TOTP secret of a started (unverified) enrollment."""
        r = self.mfa_get(api).expect(200)
        return secret_from_url(r.json()["data"]["provisioningUrl"])

    def enroll_mfa(self, api="client"):
        """create + read secret + verify; returns the secret."""
        self.mfa_create(api).expect(201)
        secret = self.mfa_secret(api)
        self.mfa_verify(totp_now(secret), api).expect(200)
        return secret


def _path_of(url):
    """Path and query of a (possibly absolute) URL: the client keeps talking
    to its own base URL, as a client behind a proxy does."""
    s = urllib.parse.urlsplit(url)
    return (s.path or "/") + ("?" + s.query if s.query else "")
