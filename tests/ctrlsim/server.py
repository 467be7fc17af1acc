"""The per-node HTTP(S) servers: paths, status codes, headers and bodies of a
controller's client, management, health-check and OIDC APIs (v1.5.4).

Each node is a ThreadingHTTPServer (one thread per connection, HTTP/1.1
keep-alive, Content-Length on every answer, idle connections closed after
``idle_timeout`` -- xweb's default idleTimeout is 5000ms, etc/ctrl.with.edge.yml).
"""
import base64
import email.utils
import hashlib
import http
import http.server
import json
import select
import socket
import ssl
import struct
import threading
import time
import urllib.parse
import uuid

from . import ZITI_VERSION
from . import cluster as cl
from . import png
from . import tokens
from . import totp
from .cluster import ApiError

MAX_BODY = 4 * 1024 * 1024
HANG_MAX = 600.0


class Resp:
    def __init__(self, status, body=b"", ctype="application/json", headers=None):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.headers = []
        if ctype:
            self.headers.append(("content-type", ctype))
        for h in headers or []:
            self.headers.append(h)


def jbody(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def go_path_clean(p):
    """Go's path.Clean for a rooted path: repeated slashes, "." and ".."
    resolved, no trailing slash."""
    out = []
    for seg in p.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    return "/" + "/".join(out)


def edge_ok(data, status=200, meta=None, headers=None):
    # controller/response: envelopes {"data":...,"meta":{}}
    return Resp(status, jbody({"data": data, "meta": meta if meta is not None else {}}), headers=headers)


def edge_error(err, request_id):
    # EdgeResponseMapper.MapApiError: {"error":{code,message,requestId,cause},"meta":{...}}
    return Resp(err.status, jbody({"error": err.to_rest(request_id), "meta": cl.META}))


def oidc_error(err):
    # controller/oidc_auth/render.go errorToRestApiError: the bare APIError
    # {"code","message","cause"} without the envelope
    return Resp(err.status, jbody(err.to_rest()))


def discovery(iss, alg="RS256"):
    # zitadel/oidc v2 op discovery document as a v1.5.4 controller serves it (observed)
    algs = [alg]
    auth_methods = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]
    return {"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/oauth/token",
            "introspection_endpoint": iss + "/oauth/introspect", "userinfo_endpoint": iss + "/userinfo",
            "revocation_endpoint": iss + "/revoke", "end_session_endpoint": iss + "/end_session",
            "device_authorization_endpoint": iss + "/device_authorization", "jwks_uri": iss + "/keys",
            "scopes_supported": ["openid", "profile", "email", "phone", "address", "offline_access"],
            "response_types_supported": ["code", "id_token", "id_token token"],
            "grant_types_supported": ["authorization_code", "implicit", "refresh_token", "client_credentials",
                                      "urn:ietf:params:oauth:grant-type:token-exchange",
                                      "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                      "urn:ietf:params:oauth:grant-type:device_code"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": algs,
            "request_object_signing_alg_values_supported": algs,
            "token_endpoint_auth_methods_supported": auth_methods,
            "token_endpoint_auth_signing_alg_values_supported": algs,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_signing_alg_values_supported": algs,
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            "introspection_endpoint_auth_signing_alg_values_supported": algs,
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "auth_time", "nonce", "acr", "amr", "c_hash",
                                 "at_hash", "act", "scopes", "client_id", "azp", "preferred_username", "name",
                                 "family_name", "given_name", "locale", "email", "email_verified", "phone_number",
                                 "phone_number_verified"],
            "code_challenge_methods_supported": ["S256"], "ui_locales_supported": ["en"],
            "request_parameter_supported": True, "request_uri_parameter_supported": False}


class Principal:
    def __init__(self, identity, kind, session=None, claims=None, partial=False):
        self.identity = identity
        self.kind = kind          # "legacy" | "jwt"
        self.session = session
        self.claims = claims
        self.partial = partial

    @property
    def is_admin(self):
        return bool(self.identity.get("isAdmin"))


class Req:
    def __init__(self, handler, node, method, path, query, headers, body):
        self.handler = handler
        self.node = node
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.request_id = str(uuid.uuid4())
        self._json = None

    def q(self, name, default=None):
        v = self.query.get(name)
        return v[0] if v else default

    def json(self):
        if self._json is None:
            if not self.body:
                self._json = {}
            else:
                try:
                    self._json = json.loads(self.body)
                except ValueError:
                    raise ApiError(400, "COULD_NOT_PARSE_BODY", "The body of the request could not be parsed")
                if not isinstance(self._json, dict):
                    raise ApiError(400, "COULD_NOT_PARSE_BODY", "The body of the request could not be parsed")
        return self._json

    def form_or_json(self):
        """controller/oidc_auth/parse.go parsePayload: form or JSON body."""
        ctype = (self.headers.get("content-type") or "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            f = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)
            return {k: v[0] for k, v in f.items()}
        if ctype == "application/json" or ctype == "":
            try:
                d = json.loads(self.body or b"{}")
            except ValueError as e:
                raise ApiError(500, "UNHANDLED", str(e))
            return d if isinstance(d, dict) else {}
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       "the content type: %s, is not supported (supported: application/x-www-form-urlencoded, application/json)" % ctype)

    def host(self):
        return self.headers.get("host") or "%s:%d" % (self.node.cluster.advertise_host, self.node.port)


# ---------------------------------------------------------------------------
# the controller's API

class Api:
    def __init__(self, cluster):
        self.c = cluster

    # ---- shared pieces -------------------------------------------------
    def principal(self, req):
        """AppEnv.FillRequestContext: a zt-session header wins; otherwise the
        first controller-issued bearer token (common/security_tokens.go)."""
        node = req.node
        zt = req.headers.get("zt-session")
        if zt:
            try:
                uuid.UUID(zt)
            except ValueError:
                return None
            with self.c.lock:
                sess = node.sessions.get(zt)   # ApiSessionManager.ReadByToken: local DB
                if sess is None:
                    return None
                ident = node.fsm.identities.get(sess["identityId"])
            if ident is None:
                raise cl.err_unauthorized()
            partial = sess["mfaRequired"] and not sess["mfaComplete"]   # ProcessAuthQueries
            return Principal(ident, "legacy", session=sess, partial=partial)
        for value in req.handler.headers.get_all("authorization") or []:
            parts = value.split(None, 1)
            if len(parts) != 2 or parts[0].lower() != "bearer":
                continue
            claims = tokens.verify(parts[1].strip(), self.c.keys(node))
            if claims is None:
                continue
            if claims.get("z_t") != "a":
                raise cl.err_unauthorized()   # ProcessJwt: "invalid token"
            with self.c.lock:
                ident = node.fsm.identities.get(claims.get("sub"))
            if ident is None:
                raise cl.err_unauthorized()
            # ProcessJwt always grants AuthenticatedPermission (v1.5.4)
            return Principal(ident, "jwt", claims=claims, partial=False)
        return None

    def need(self, req, allow_partial):
        p = self.principal(req)
        if p is None:
            if not req.headers.get("zt-session") and not any(
                    v.split(None, 1)[0].lower() == "bearer" for v in req.handler.headers.get_all("authorization") or []
                    if v.strip()):
                raise cl.err_unauthenticated()
            if not req.headers.get("zt-session"):
                raise cl.err_unauthorized_token()
            raise cl.err_unauthorized()
        if p.partial and not allow_partial:
            raise cl.err_unauthorized()
        return p

    def change_meta(self, req, p):
        author = {"type": "identity", "id": p.identity["id"], "name": p.identity["name"]} if p else None
        peer = req.handler.client_address
        source = {"type": "rest", "auth": "edge", "localAddr": req.host(),
                  "remoteAddr": "%s:%d" % (peer[0], peer[1]), "method": req.method}
        return {"author": author, "source": source}

    def local_mfa(self, node, identity_id):
        with self.c.lock:
            m = node.fsm.mfa_for_identity(identity_id)
            return dict(m, recoveryCodes=list(m["recoveryCodes"])) if m else None

    def mfa_verify_any(self, req, p, mfa, code):
        """MfaManager.Verify: a recovery code is consumed through raft
        (Update), else TOTP."""
        if code in mfa["recoveryCodes"]:
            codes = list(mfa["recoveryCodes"])
            codes.remove(code)
            ent = dict(mfa, recoveryCodes=codes)
            self.c.dispatch(req.node, dict(self.change_meta(req, p), op="mfa.update", entity=ent,
                                           fields=["recoveryCodes"]))
            return True
        return totp.verify(mfa["secret"], code)

    def provisioning_url(self, mfa, ident):
        # MfaManager.GetProvisioningUrl: ProvisionURIWithIssuer(identity name, edge.totp.hostname)
        return totp.provisioning_url(mfa["secret"], ident["name"], self.c.totp_issuer)

    # ---- routing -------------------------------------------------------
    def handle(self, req):
        path = req.path
        if path.startswith("/health-checks"):
            if not self.c.health_checks:
                return Resp(404, "404 page not found\n", ctype="text/plain; charset=utf-8")
            return self.health(req)
        if path.startswith("/fabric/v1/"):
            try:
                r = self.fabric(req, path[len("/fabric/v1"):])
            except ApiError as e:
                r = edge_error(e, req.request_id)
            r.headers.append(("ziti-instance-id", req.node.instance_id))
            r.headers.append(("server", "ziti-controller/" + ZITI_VERSION))
            return r
        if path.startswith("/oidc"):
            if not self.issuer_host_ok(req):
                # the issuer interceptor: a Host that is not one of the controller's issuers
                # (bind address, certificate SANs with the bind port) -> mux 404 (observed)
                return Resp(404, "404 page not found\n", ctype="text/plain; charset=utf-8")
            try:
                return self.oidc(req)
            except ApiError as e:
                return oidc_error(e)
        # client API handler (controller/webapis/client-api.go newHandler,
        # v1.5.4): the default handler; a path outside /edge, /fabric and
        # /.well-known goes under /edge/client/v1, the first /edge/v1
        # becomes /edge/client/v1, / and /version serve the version; the
        # router then matches path.Clean(path) of the path as sent:
        # percent-escapes are not decoded for routing (observed on v1.5.4,
        # tests/realcluster/OBSERVATIONS.md: 404 "path ... was not found")
        if path in ("/", "/version"):
            path = "/edge/client/v1/version"
        if not path.startswith(("/edge", "/fabric", "/.well-known")):
            path = "/edge/client/v1" + path
        path = path.replace("/edge/v1", "/edge/client/v1", 1)
        path = go_path_clean(path)
        for api, prefix in (("client", "/edge/client/v1"), ("management", "/edge/management/v1")):
            if path == prefix or path.startswith(prefix + "/"):
                sub = path[len(prefix):] or "/"
                try:
                    r = self.edge(req, api, sub)
                except ApiError as e:
                    r = edge_error(e, req.request_id)
                r.headers.append(("ziti-instance-id", req.node.instance_id))
                r.headers.append(("server", "ziti-controller/" + ZITI_VERSION))  # response.AddHeaders
                return r
        r = edge_error(cl.err_path_not_found(path), req.request_id)
        r.headers.append(("ziti-instance-id", req.node.instance_id))
        r.headers.append(("server", "ziti-controller/" + ZITI_VERSION))
        return r

    def issuer_host_ok(self, req):
        host = req.headers.get("host")
        if not host:
            return True
        return host.lower() in self.c.issuer_hosts(req.node)

    # ---- health checks (controller/webapis/controller-health.go) ---------
    def health(self, req):
        node = req.node
        short = req.q("type") == "short"
        check = {"id": "bolt.read", "healthy": True}
        if not short:
            check["lastCheckDuration"] = "0s"
            check["lastCheckTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        out = {"data": {"healthy": True, "checks": [check]}, "meta": {}}
        status = 200
        if req.path.endswith("/controller/raft"):
            with self.c.lock:
                is_leader = node.role == "leader"
            if not is_leader:
                status = 429   # "to be consistent with Vault"
            out["raft"] = {"isRaftEnabled": True, "isLeader": is_leader}
        # json.Encoder with SetIndent("", "    "); map keys sorted
        return Resp(status, json.dumps(out, indent=4, sort_keys=True) + "\n")

    # ---- fabric API (controller/webapis/fabric-api-wrapper.go) -------------
    def fabric(self, req, sub):
        # fabricWrapper.WrapRequest: every operation needs admin
        p = self.need(req, allow_partial=False)
        if not p.is_admin:
            raise cl.err_unauthorized()
        if sub == "/cluster/list-members" and req.method == "GET":
            return edge_ok(self.list_members(req.node))
        raise cl.err_not_found()

    def list_members(self, node):
        """api_impl/cluster_router.go listMembers + raft/member.go
        ListMembers (v1.5.4): this member's raft configuration, `leader`
        from its own view (LeaderWithID), `version`/`connected` from its mesh
        peers, `readOnly` its own mesh state (the same on every row)."""
        with self.c.lock:
            leader = node.id if node.role == "leader" else node.known_leader
            read_only = node.id in self.c.read_only
            out = []
            for o in self.c.nodes:
                connected = o is node or self.c.reachable(node, o)
                out.append({"address": "tls:%s:%d" % (self.c.advertise_host, o.port),
                            "connected": connected, "id": o.id, "leader": o.id == leader,
                            "readOnly": read_only,
                            "version": ZITI_VERSION if connected else "<not connected>",
                            "voter": True})
        return out

    # ---- edge client / management APIs -------------------------------------
    def edge(self, req, api, sub):
        m = req.method
        parts = [p for p in sub.split("/") if p]
        if sub == "/version" and m == "GET":
            return edge_ok(self.version_data(req))
        if sub == "/authenticate":
            if m != "POST":
                raise ApiError(405, "METHOD_NOT_ALLOWED", "The resource requested does not support this HTTP verb")
            return self.authenticate(req)
        if sub == "/authenticate/mfa" and m == "POST":
            return self.authenticate_mfa(req)
        if sub == "/current-identity" and m == "GET":
            p = self.need(req, allow_partial=False)
            return edge_ok(self.identity_detail(req.node, p.identity, current=True))
        if sub == "/current-api-session" and m == "GET":
            return self.current_api_session(req)
        if sub.startswith("/current-identity/mfa"):
            return self.mfa(req, sub[len("/current-identity/mfa"):])
        if sub == "/controllers" and m == "GET":
            self.need(req, allow_partial=False)
            return self.controllers(req, api)
        if api == "management" and len(parts) == 2 and parts[0] == "identities" and m == "GET":
            p = self.need(req, allow_partial=False)
            if not p.is_admin:
                raise cl.err_unauthorized()
            with self.c.lock:
                ident = req.node.fsm.identities.get(parts[1])
            if ident is None:
                raise cl.err_not_found()
            return edge_ok(self.identity_detail(req.node, ident))
        if api == "management" and len(parts) == 3 and parts[0] == "identities" and parts[2] == "mfa" \
                and m == "DELETE":
            # MfaManager.DeleteAllForIdentity writes straight to the local
            # bolt DB in v1.5.4: only the serving controller loses the MFA
            # (openziti/ziti #4291; HEAD still does this on main).
            p = self.need(req, allow_partial=False)
            if not p.is_admin:
                raise cl.err_unauthorized()
            with self.c.lock:
                if parts[1] not in req.node.fsm.identities:
                    raise cl.err_not_found()
                for mid in [k for k, v in req.node.fsm.mfas.items() if v["identityId"] == parts[1]]:
                    req.node.fsm.mfas.pop(mid)
            return edge_ok({})
        raise cl.err_path_not_found("/edge/%s/v1%s" % (api, sub))

    def version_data(self, req):
        # controller/internal/routes/version_router.go VersionRouter.List
        base = self.c.node_url(req.node)
        bindings = {
            "edge-client": ("/edge/client/v1", [base + "/edge/client/v1"]),
            "edge-management": ("/edge/management/v1", [base + "/edge/management/v1"]),
            # apiBindingToPath returns "" for these: the base URL is the address
            "health-checks": ("/health-checks/v1", [base]),
            "edge-oidc": ("/oidc", []),
        }
        api_versions = {k: {"v1": {"path": p, "apiBaseUrls": urls}} for k, (p, urls) in bindings.items()}
        api_versions["edge"] = api_versions["edge-client"]   # LegacyClientApiBinding
        return {"apiVersions": api_versions, "buildDate": "2025-01-01T00:00:00Z",
                "revision": "ctrlsim", "runtimeVersion": "go1.23.4", "version": ZITI_VERSION,
                "capabilities": ["OIDC_AUTH", "HA_CONTROLLER"]}

    def identity_detail(self, node, ident, current=False):
        with self.c.lock:
            mfa = node.fsm.mfa_for_identity(ident["id"])
        is_mfa = bool(mfa and mfa["isVerified"])   # identity_api_model.go isMfaEnabled
        links = {"self": {"href": ("./current-identity" if current else "./identities/" + ident["id"])}}
        return {"id": ident["id"], "name": ident["name"], "createdAt": ident["createdAt"],
                "updatedAt": ident["updatedAt"], "tags": {}, "_links": links,
                "type": {"id": "Default", "name": "Default", "entity": "identity-types",
                         "_links": {"self": {"href": "./identity-types/Default"}}},
                "typeId": "Default", "isAdmin": ident["isAdmin"], "isDefaultAdmin": False,
                "isMfaEnabled": is_mfa, "authPolicyId": "default", "roleAttributes": [],
                "authenticators": {"updb": {"id": "updb-" + ident["id"], "username": ident["name"]}},
                "disabled": False, "externalId": None}

    def controllers(self, req, api):
        # controller_api_model.go: management keeps every binding and
        # ctrlAddress; the client API only edge-client and edge-oidc.  No
        # leader flag (HEAD adds isPreferredLeader).
        out = []
        with self.c.lock:
            for n in self.c.nodes:
                url = self.c.node_url(n)
                addrs = {"edge-client": [{"url": url + "/edge/client/v1", "version": "v1"}],
                         "edge-oidc": [{"url": url + "/oidc", "version": "v1"}]}
                item = {"id": n.id, "name": n.id, "createdAt": "2025-01-01T00:00:00.000Z",
                        "updatedAt": "2025-01-01T00:00:00.000Z", "tags": {},
                        "_links": {"self": {"href": "./controllers/" + n.id}},
                        "apiAddresses": addrs,
                        "certPem": "-----BEGIN CERTIFICATE-----\nctrlsim-%s\n-----END CERTIFICATE-----\n" % n.id,
                        "fingerprint": n.kid, "isOnline": n.up and self.c.reachable(req.node, n),
                        "lastJoinedAt": "2025-01-01T00:00:00.000Z"}
                if api == "management":
                    addrs["edge-management"] = [{"url": url + "/edge/management/v1", "version": "v1"}]
                    addrs["health-checks"] = [{"url": url + "/health-checks", "version": "v1"}]
                    addrs["fabric"] = [{"url": url + "/fabric/v1", "version": "v1"}]
                    item["ctrlAddress"] = "tls:%s:%d" % (self.c.advertise_host, n.port)
                out.append(item)
        return edge_ok(out, meta={"filterableFields": [], "pagination":
                                  {"limit": 10, "offset": 0, "totalCount": len(out)}})

    # ---- legacy authentication (authenticate_router.go) ---------------------
    def session_model(self, node, sess, ident):
        auth_queries = []
        if sess["mfaRequired"] and not sess["mfaComplete"]:
            # env.NewAuthQueryZitiMfa
            auth_queries.append({"format": "alphaNumeric", "httpMethod": "POST", "httpUrl": "./authenticate/mfa",
                                 "maxLength": 6, "minLength": 4, "provider": "ziti", "typeId": "MFA"})
        return {"id": sess["id"], "createdAt": sess["createdAt"], "updatedAt": sess["updatedAt"], "tags": {},
                "_links": {"self": {"href": "./api-sessions/" + sess["id"]}},
                "authQueries": auth_queries, "authenticatorId": "updb-" + ident["id"],
                "cachedLastActivityAt": sess["createdAt"], "configTypes": [],
                "identity": {"_links": {"self": {"href": "./identities/" + ident["id"]}},
                             "entity": "identities", "id": ident["id"], "name": ident["name"]},
                "identityId": ident["id"], "ipAddress": sess["ipAddress"], "isCertExtendable": False,
                "isMfaComplete": sess["mfaComplete"], "isMfaRequired": sess["mfaRequired"],
                "lastActivityAt": sess["createdAt"], "token": sess["token"],
                "expiresAt": sess["expiresAt"], "expirationSeconds": 1800}

    def authenticate(self, req):
        method = req.q("method")
        if method is None:
            raise cl.err_validation(602, "method", "method in query is required", "[]")
        if method not in ("password", "cert", "ext-jwt"):
            raise cl.err_validation(606, "method", "method in query should be one of [password cert ext-jwt]", method)
        if method != "password":
            raise ApiError(400, "INVALID_AUTH_METHOD", "The supplied authentication method is not valid")
        body = req.json()
        username, password = body.get("username"), body.get("password")
        if not username or not password:
            # AuthModuleUpdb.Process
            raise ApiError(400, "COULD_NOT_VALIDATE",
                           "The supplied request contains an invalid document or no valid accept content were available, see cause",
                           {"field": "", "reason": "username and password fields are required", "value": ""})
        node = req.node
        with self.c.lock:
            ident = node.fsm.identity_by_name(username)
            if ident is None or ident["password"] != password:
                raise cl.err_invalid_auth()
            mfa = node.fsm.mfa_for_identity(ident["id"])
            # TotpRequired is decided from the LOCAL mfa row: a lagging node
            # can issue a session without the TOTP requirement.
            need = bool(mfa and mfa["isVerified"])
            token = str(uuid.uuid4())
            ts = cl.now_iso()
            sess = {"id": cl.new_entity_id(), "token": token, "identityId": ident["id"],
                    "mfaRequired": need, "mfaComplete": False, "createdAt": ts, "updatedAt": ts,
                    "expiresAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1800)),
                    "ipAddress": req.handler.client_address[0]}
            # ApiSessionManager.Create: env.GetDb().Update -- local, not raft
            node.sessions[token] = sess
        data = self.session_model(node, sess, ident)
        return edge_ok(data, headers=[("zt-session", token), ("expiration-seconds", "1800"),
                                      ("expires-at", sess["expiresAt"])])

    def current_api_session(self, req):
        p = self.need(req, allow_partial=True)
        if p.kind != "legacy":
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            return edge_ok({"id": p.claims.get("z_asid"), "identityId": p.identity["id"], "authQueries": [],
                            "isMfaComplete": False, "isMfaRequired": False,   # TotpComplete() of an access
                            # token, which has no amr (appenv.go: MfaComplete from the claims)
                            "authenticatorId": "oidc", "lastActivityAt": now, "createdAt": now, "updatedAt": now})
        return edge_ok(self.session_model(req.node, p.session, p.identity))

    def authenticate_mfa(self, req):
        # AuthRouter.authMfa
        p = self.need(req, allow_partial=True)
        code = str(req.json().get("code") or "")
        mfa = self.local_mfa(req.node, p.identity["id"])
        if mfa is None:
            raise cl.err_mfa_not_enrolled()
        if not self.mfa_verify_any(req, p, mfa, code):
            raise cl.err_mfa_invalid_token()
        if p.kind != "legacy":
            # ApiSessionManager.MfaCompleted reads the stored API-session row; a JWT session has
            # none: 404 (observed on v1.5.4 and v1.7.2)
            e = cl.err_not_found()
            e.cause = {"code": "UNHANDLED", "message": "apiSession with id %s not found" % p.claims.get("z_asid")}
            raise e
        with self.c.lock:
            p.session["mfaComplete"] = True   # local update, not raft
        return edge_ok({})

    # ---- MFA enrollment (current_identity_router.go + mfa_manager.go) -------
    def mfa(self, req, rest):
        m = req.method
        node = req.node
        if rest == "" and m == "POST":                      # createMfa
            p = self.need(req, allow_partial=True)
            ent = {"id": cl.new_entity_id(), "identityId": p.identity["id"], "isVerified": False,
                   "secret": cl.new_totp_secret(), "salt": str(uuid.uuid4()),
                   "recoveryCodes": cl.new_recovery_codes(), "tags": {}}
            self.c.dispatch(node, dict(self.change_meta(req, p), op="mfa.create", entity=ent))
            return edge_ok({"id": ent["id"], "_links": {"self": {"href": "./current-identity/mfa"}}}, status=201)
        if rest == "" and m == "GET":                       # detailMfa
            p = self.need(req, allow_partial=True)
            mfa = self.local_mfa(node, p.identity["id"])
            if mfa is None:
                raise cl.err_not_found()
            data = {"id": mfa["id"], "createdAt": mfa["createdAt"], "updatedAt": mfa["updatedAt"],
                    "tags": mfa.get("tags") or {},
                    "_links": {"self": {"href": "./current-identity/mfa"},
                               "current-identity": {"href": "./current-identity"}},
                    "isVerified": mfa["isVerified"], "recoveryCodes": None}
            if not mfa["isVerified"]:                        # MapMfaToRestModel
                data["recoveryCodes"] = mfa["recoveryCodes"]
                data["provisioningUrl"] = self.provisioning_url(mfa, p.identity)
                data["_links"]["qr"] = {"href": "./current-identity/mfa/qr-code"}
                data["_links"]["verify"] = {"href": "./current-identity/mfa/verify"}
            else:
                data["_links"]["recovery-codes"] = {"href": "./current-identity/mfa/recovery-codes"}
            return edge_ok(data)
        if rest == "" and m == "DELETE":                    # removeMfa -> DeleteForIdentity
            p = self.need(req, allow_partial=False)
            code = req.headers.get("mfa-validation-code") or ""
            mfa = self.local_mfa(node, p.identity["id"])
            if mfa is None:
                raise cl.err_not_found()
            if mfa["isVerified"]:
                try:
                    ok = self.mfa_verify_any(req, p, mfa, code)
                except ApiError:
                    ok = False
                if not ok:
                    raise cl.err_mfa_invalid_token()
            self.c.dispatch(node, dict(self.change_meta(req, p), op="mfa.delete", id=mfa["id"]))
            return edge_ok({})
        if rest == "/qr-code" and m == "GET":               # detailMfaQrCode
            p = self.need(req, allow_partial=True)
            mfa = self.local_mfa(node, p.identity["id"])
            if mfa is None or mfa["isVerified"]:
                raise cl.err_not_found()
            return Resp(200, png.pattern_png(self.provisioning_url(mfa, p.identity)), ctype="image/png")
        if rest == "/verify" and m == "POST":               # verifyMfa -> CompleteTotpEnrollment
            p = self.need(req, allow_partial=True)
            code = req.json().get("code")
            if not isinstance(code, str):
                raise ApiError(400, "COULD_NOT_VALIDATE",
                               "The supplied request contains an invalid document or no valid accept content were available, see cause",
                               {"field": "code", "reason": "code in body is required", "value": ""})
            mfa = self.local_mfa(node, p.identity["id"])
            if mfa is None or mfa["isVerified"]:
                raise cl.err_not_found()
            if not totp.verify(mfa["secret"], code):
                raise cl.err_mfa_invalid_token()
            ent = dict(mfa, isVerified=True)
            try:
                self.c.dispatch(node, dict(self.change_meta(req, p), op="mfa.update", entity=ent,
                                           fields=["isVerified"]))
            except ApiError:
                # every Update error is replaced by this text -> 500 UNHANDLED
                raise cl.err_unhandled(cl.CAUSE_MFA_UPDATE)
            if p.kind == "legacy":
                with self.c.lock:   # ApiSession.SetMfaPassed: local
                    p.session["mfaRequired"] = True
                    p.session["mfaComplete"] = True
            return edge_ok({})
        if rest == "/recovery-codes" and m == "GET":        # detailMfaRecoveryCodes
            p = self.need(req, allow_partial=False)
            mfa = self.local_mfa(node, p.identity["id"])
            if mfa is None or not mfa["isVerified"]:
                raise cl.err_not_found()
            code = ""
            try:
                body = req.json()
            except ApiError:
                body = {}
            if isinstance(body.get("code"), str):
                code = body["code"]
            elif req.headers.get("mfa-validation-code") is not None:
                code = req.headers.get("mfa-validation-code")
            if code == "" or not totp.verify(mfa["secret"], code):
                raise cl.err_mfa_invalid_token()
            return edge_ok({"id": mfa["id"], "createdAt": mfa["createdAt"], "updatedAt": mfa["updatedAt"],
                            "tags": {}, "_links": {"self": {"href": "./current-identity/mfa"}},
                            "recoveryCodes": mfa["recoveryCodes"]})
        if rest == "/recovery-codes" and m == "POST":       # createMfaRecoveryCodes
            p = self.need(req, allow_partial=False)
            mfa = self.local_mfa(node, p.identity["id"])
            if mfa is None or not mfa["isVerified"]:
                raise cl.err_not_found()
            code = str(req.json().get("code") or "")
            try:
                ok = self.mfa_verify_any(req, p, mfa, code)
            except ApiError:
                ok = False
            if not ok:
                raise cl.err_mfa_invalid_token()
            cur = self.local_mfa(node, p.identity["id"]) or mfa
            ent = dict(cur, recoveryCodes=cl.new_recovery_codes())
            self.c.dispatch(node, dict(self.change_meta(req, p), op="mfa.update", entity=ent,
                                       fields=["recoveryCodes"]))
            return edge_ok({})
        if rest in ("", "/qr-code", "/verify", "/recovery-codes"):
            raise ApiError(405, "METHOD_NOT_ALLOWED", "The resource requested does not support this HTTP verb")
        raise cl.err_not_found()

    # ---- OIDC (controller/oidc_auth, zitadel/oidc v2 op) ---------------------
    def issuer(self, req):
        return "%s://%s/oidc" % (self.c.scheme, req.host())

    def oidc(self, req):
        path, m, node = req.path, req.method, req.node
        if path == "/oidc/.well-known/openid-configuration" and m == "GET":
            # the simulator signs with ES256 (tokens.py); the real v1.5.4 says RS256
            return Resp(200, jbody(discovery(self.issuer(req), alg="ES256")))
        if path == "/oidc/keys" and m == "GET":
            return self.oidc_keys(req)
        if path == "/oidc/authorize" and m == "GET":
            return self.oidc_authorize(req)
        if path == "/oidc/authorize/callback" and m == "GET":
            return self.oidc_callback(req)
        if path == "/oidc/oauth/token" and m == "POST":
            return self.oidc_token(req)
        if path in ("/oidc/login/password", "/oidc/login/username", "/oidc/login/cert", "/oidc/login/ext-jwt") \
                and m == "GET":
            # login.loginHandler / genericHandler: echo the id in a header
            rid = req.q("authRequestID") or ""
            body = "please POST to this URL" if path.endswith(("cert", "ext-jwt")) else self.login_page(rid, None)
            return Resp(200, body, ctype="text/html; charset=utf-8", headers=[("auth-request-id", rid)])
        if path in ("/oidc/login/password", "/oidc/login/username") and m == "POST":
            return self.oidc_password(req)
        if path == "/oidc/login/totp" and m == "POST":
            return self.oidc_totp(req)
        if path == "/oidc/login/auth-queries" and m == "GET":
            with self.c.lock:
                ar = node.auth_requests.get(req.q("id") or "")
            if ar is None:
                return Resp(401, "The authentication request failed\n", ctype="text/plain; charset=utf-8")
            hdrs = [("totp-required", "true")] if self._needs_totp(ar) else []
            return Resp(200, jbody({"authQueries": self._auth_queries(ar)}), headers=hdrs)
        return Resp(404, "404 page not found\n", ctype="text/plain; charset=utf-8")

    @staticmethod
    def login_page(rid, err):
        msg = "" if err is None else err
        return ("<!DOCTYPE html><html><body><form method=\"post\"><input type=\"hidden\" name=\"id\" value=\"%s\">"
                "<div class=\"error\">%s</div></form></body></html>" % (rid, msg))

    @staticmethod
    def _needs_totp(ar):
        return ar["totpRequired"] and "totp" not in ar["amr"]   # AuthRequest.NeedsTotp

    def _auth_queries(self, ar):
        if not self._needs_totp(ar):
            return []
        # AuthRequest.GetAuthQueries
        return [{"format": "numeric", "httpMethod": "POST", "httpUrl": "./oidc/login/totp",
                 "maxLength": 8, "minLength": 6, "provider": "ziti", "typeId": "TOTP"}]

    def _redirect_error(self, redirect_uri, state, error, desc):
        q = {"error": error, "error_description": desc}
        if state:
            q["state"] = state
        sep = "&" if "?" in redirect_uri else "?"
        return Resp(302, b"", ctype=None, headers=[("location", redirect_uri + sep + urllib.parse.urlencode(q))])

    @staticmethod
    def redirect_uri_ok(uri):
        # defaults accepted for the openziti/native clients (oidc_auth
        # provider config): openziti://auth/callback and
        # http(s)://{127.0.0.1,localhost}:*/auth/callback
        if uri == "openziti://auth/callback":
            return True
        u = urllib.parse.urlparse(uri)
        return u.scheme in ("http", "https") and u.hostname in ("127.0.0.1", "localhost") \
            and u.path == "/auth/callback"

    def oidc_keys(self, req):
        """The JWKS (storage.go KeySet): this controller's own signing key
        under its hex kid, then the peers' keys under v1.5.4's raw-bytes kid
        (tokens.peer_kid) -- only a controller's own document names its key
        the way its tokens do."""
        with self.c.lock:
            node = req.node
            keys = [node.key.jwk(node.kid)]
            keys += [n.key.jwk(tokens.peer_kid(n.kid)) for n in self.c.nodes if n is not node]
        return Resp(200, jbody({"keys": keys}))

    def oidc_authorize(self, req):
        client_id = req.q("client_id") or ""
        redirect_uri = req.q("redirect_uri") or ""
        state = req.q("state") or ""
        if client_id not in ("openziti", "native"):   # ClaimClientIdOpenZiti, ClaimLegacyNative
            return Resp(400, jbody({"error": "invalid_request", "error_description": "unknown client id"}))
        if not self.redirect_uri_ok(redirect_uri):
            return Resp(400, jbody({"error": "invalid_request",
                                    "error_description": "The requested redirect_uri is missing in the client configuration."}))
        if req.q("response_type") != "code":
            return self._redirect_error(redirect_uri, state, "unsupported_response_type", "response_type must be code")
        if "openid" not in (req.q("scope") or "").split():
            return self._redirect_error(redirect_uri, state, "invalid_scope", "The scope openid is missing in your request.")
        if not req.q("code_challenge") or req.q("code_challenge_method") != "S256":
            return self._redirect_error(redirect_uri, state, "invalid_request",
                                        "code_challenge with code_challenge_method S256 is required")
        rid = str(uuid.uuid4())
        ar = {"id": rid, "clientId": client_id, "redirectUri": redirect_uri, "state": state,
              "codeChallenge": req.q("code_challenge"), "scopes": (req.q("scope") or "").split(),
              "identityId": None, "amr": [], "totpRequired": False, "created": time.time(),
              "authTime": None}
        with self.c.lock:
            req.node.auth_requests[rid] = ar    # in memory of THIS node only
        # op.Authorize -> client LoginURL: /oidc/login/username?authRequestID=; http.Redirect's
        # body and content type (observed)
        loc = "/oidc/login/username?authRequestID=" + rid
        return Resp(302, '<a href="%s">Found</a>.\n\n' % loc, ctype="text/html; charset=utf-8",
                    headers=[("location", loc)])

    def _callback_url(self, req, rid):
        # op.AuthCallbackURL: the authorization endpoint made absolute with
        # the issuer of this request (its Host) + "/callback?id="
        return self.issuer(req) + "/authorize/callback?id=" + urllib.parse.quote(rid)

    def oidc_password(self, req):
        # login.authenticate
        accept = (req.headers.get("accept") or "").lower()
        want_html = accept != "" and "json" not in accept and "html" in accept
        creds = req.form_or_json()
        rid = creds.get("id") or req.q("authRequestID") or req.q("id") or ""
        node = req.node
        with self.c.lock:
            ar = node.auth_requests.get(rid)
            ident = node.fsm.identity_by_name(creds.get("username") or "")
            ok = ar is not None and ident is not None and ident["password"] == creds.get("password")
            if ok:
                ar["identityId"] = ident["id"]
                if "password" not in ar["amr"]:
                    ar["amr"].append("password")
                mfa = node.fsm.mfa_for_identity(ident["id"])
                # HybridStorage.Authenticate: from the LOCAL mfa row
                ar["totpRequired"] = bool(mfa and mfa["isVerified"])
                ar["authTime"] = time.time()
        if not ok:
            # renderLogin writes the page (implicit 200) before
            # w.WriteHeader(401), so v1.5.4 answers 200 with the login page
            # and the error text in it.
            return Resp(200, self.login_page(rid, "The authentication request failed"),
                        ctype="text/html; charset=utf-8")
        queries = self._auth_queries(ar)
        hdrs = [("totp-required", "true")] if self._needs_totp(ar) else []
        if queries:
            if want_html:
                return Resp(200, "<html><body>totp</body></html>", ctype="text/html; charset=utf-8", headers=hdrs)
            return Resp(200, jbody({"authQueries": queries}), headers=hdrs)
        return Resp(302, b"", ctype=None, headers=hdrs + [("location", self._callback_url(req, rid))])

    def oidc_totp(self, req):
        # login.checkTotp -> HybridStorage.VerifyTotp
        d = req.form_or_json()
        rid = str(d.get("id") or "").strip()
        code = str(d.get("code") or "").strip()
        node = req.node
        bad = ApiError(400, "INVALID TOTP CODE", "an invalid TOTP code was supplied")
        if len(code) > 13 or len(rid) > 40 or not code or not rid:
            return oidc_error(bad)
        with self.c.lock:
            ar = node.auth_requests.get(rid)
        if ar is None or not ar["amr"] or ar["identityId"] is None:
            return oidc_error(bad)
        mfa = self.local_mfa(node, ar["identityId"])
        if mfa is None:
            return oidc_error(bad)
        with self.c.lock:
            ident = node.fsm.identities.get(ar["identityId"])
        p = Principal(ident, "oidc")
        try:
            ok = self.mfa_verify_any(req, p, mfa, code)
        except ApiError:
            ok = False
        if not ok:
            return oidc_error(bad)
        with self.c.lock:
            if "totp" not in ar["amr"]:
                ar["amr"].append("totp")
        return Resp(302, b"", ctype=None, headers=[("location", self._callback_url(req, rid))])

    def oidc_callback(self, req):
        rid = req.q("id") or ""
        node = req.node
        with self.c.lock:
            ar = node.auth_requests.get(rid)
            if ar is None:
                return Resp(400, jbody({"error": "invalid_request", "error_description": "auth request not found"}))
            done = ar["identityId"] is not None and not self._needs_totp(ar)
            if not done:
                return self._redirect_error(ar["redirectUri"], ar["state"], "server_error",
                                            "auth request not done")
            code = base64.urlsafe_b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).rstrip(b"=").decode()
            node.codes[code] = rid    # in memory of THIS node only
        q = {"code": code}
        if ar["state"]:
            q["state"] = ar["state"]
        sep = "&" if "?" in ar["redirectUri"] else "?"
        return Resp(302, b"", ctype=None, headers=[("location", ar["redirectUri"] + sep + urllib.parse.urlencode(q))])

    def _issue(self, req, identity, amr, asid, client_id, scopes):
        now = int(time.time())
        node = req.node
        iss = self.issuer(req)
        custom = {"z_asid": asid, "z_ia": bool(identity["isAdmin"]), "z_cfs": None, "z_ra": req.handler.client_address[0],
                  "z_ice": False, "z_sdk": None, "z_env": None}
        # the real access token carries no amr (seen on v1.5.4 and v1.7.2: storage.go sets it on the
        # claims, but it is not in the token; tests/realcluster/OBSERVATIONS.md), the ID token does
        access = dict(custom, iss=iss, sub=identity["id"], aud=["openziti"], exp=now + self.c.access_token_ttl,
                      iat=now, nbf=now, jti=str(uuid.uuid4()), client_id=client_id,
                      scopes=scopes, z_t="a")
        # (the simulator keeps the login's amr in its refresh token, to issue the ID token again)
        refresh = dict(access, exp=now + self.c.refresh_token_ttl, jti=str(uuid.uuid4()), z_t="r", amr=list(amr))
        idt = {"iss": iss, "sub": identity["id"], "aud": [client_id], "exp": now + self.c.access_token_ttl,
               "iat": now, "auth_time": now, "amr": list(amr), "azp": client_id, "z_asid": asid}
        return Resp(200, jbody({"access_token": tokens.sign(access, node.kid, node.key), "token_type": "Bearer",
                                "refresh_token": tokens.sign(refresh, node.kid, node.key),
                                "expires_in": self.c.access_token_ttl,
                                "id_token": tokens.sign(idt, node.kid, node.key)}),
                    headers=[("cache-control", "no-store"), ("pragma", "no-cache")])

    def oidc_token(self, req):
        f = urllib.parse.parse_qs(req.body.decode("utf-8", "replace"))
        g = {k: v[0] for k, v in f.items()}

        def bad(err, desc, status=400):
            return Resp(status, jbody({"error": err, "error_description": desc}))

        node = req.node
        grant = g.get("grant_type")
        if grant == "authorization_code":
            with self.c.lock:
                rid = node.codes.pop(g.get("code") or "", None)
                ar = node.auth_requests.pop(rid, None) if rid else None
            if ar is None:
                return bad("invalid_grant", "invalid code")
            if g.get("client_id") != ar["clientId"]:
                return bad("invalid_client", "client_id does not match")
            if g.get("redirect_uri") != ar["redirectUri"]:
                return bad("invalid_grant", "redirect_uri does not correspond")
            verifier = g.get("code_verifier") or ""
            want = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if want != ar["codeChallenge"]:
                return bad("invalid_grant", "invalid code challenge")
            with self.c.lock:
                ident = node.fsm.identities.get(ar["identityId"])
            return self._issue(req, ident, ar["amr"], str(uuid.uuid4()), ar["clientId"], ar["scopes"])
        if grant == "refresh_token":
            claims = tokens.verify(g.get("refresh_token") or "", self.c.keys())
            if claims is None or claims.get("z_t") != "r":
                return bad("invalid_grant", "invalid refresh token")
            with self.c.lock:
                ident = node.fsm.identities.get(claims["sub"])
            if ident is None:
                return bad("invalid_grant", "identity not found")
            return self._issue(req, ident, claims.get("amr") or [], claims.get("z_asid"),
                               claims.get("client_id") or "openziti", claims.get("scopes") or ["openid"])
        return bad("unsupported_grant_type", "grant_type is not supported")


# ---------------------------------------------------------------------------
# the HTTP plumbing

class NodeHTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, addr, handler, node, api, ssl_ctx):
        self.node = node
        self.api = api
        self.ssl_ctx = ssl_ctx
        self.conns = set()
        self.conns_lock = threading.Lock()
        self.dead = False
        super().__init__(addr, handler)
        if ssl_ctx is not None:
            self.socket = ssl_ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request, client_address):
        pass   # broken connections are normal here (resets, kills)

    def kill_connections(self):
        with self.conns_lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _rst_close(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        if isinstance(sock, ssl.SSLSocket):
            raw = socket.socket(fileno=sock.detach())
            raw.close()
        else:
            sock.close()
    except OSError:
        pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        srv = self.server
        with srv.conns_lock:
            srv.conns.add(self.request)
        self.request.settimeout(srv.node.cluster.idle_timeout)
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.settimeout(10)
                self.request.do_handshake()
                self.request.settimeout(srv.node.cluster.idle_timeout)
            except (OSError, ssl.SSLError):
                self.close_connection = True
                self.rfile = self.request.makefile("rb", 0)
                self.wfile = self.request.makefile("wb", 0)
                self._bad_tls = True
                return
        self._bad_tls = False
        super().setup()

    def handle(self):
        if getattr(self, "_bad_tls", False):
            return
        try:
            super().handle()
        except (OSError, ssl.SSLError, ValueError):
            pass

    def finish(self):
        try:
            super().finish()
        except (OSError, ValueError):
            pass
        with self.server.conns_lock:
            self.server.conns.discard(self.request)

    def log_message(self, fmt, *args):
        pass

    def send_error(self, code, message=None, explain=None):
        # malformed requests: a plain answer with Content-Length, then close
        self.close_connection = True
        body = ("%d %s\n" % (code, message or "")).encode()
        try:
            self._write(code, [("content-type", "text/plain; charset=utf-8")], body)
        except OSError:
            pass

    def _read_body(self):
        te = (self.headers.get("transfer-encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise OSError("eof in chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:   # trailers
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(8)
                if len(out) > MAX_BODY:
                    raise OSError("body too large")
        n = int(self.headers.get("content-length") or 0)
        if n > MAX_BODY:
            raise OSError("body too large")
        return self.rfile.read(n) if n else b""

    def _write(self, status, headers, body):
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        out = ["HTTP/1.1 %d %s" % (status, reason), "date: " + email.utils.formatdate(usegmt=True)]
        for k, v in headers:
            out.append("%s: %s" % (k, v))
        out.append("content-length: %d" % len(body))
        if self.close_connection:
            out.append("connection: close")
        self.wfile.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
        self.wfile.flush()

    def _wait_while_paused(self, node):
        deadline = time.monotonic() + HANG_MAX
        while node.paused and node.alive and not node.cluster.stopping.is_set():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return node.alive

    def _hang(self, node):
        """Read nothing more, answer nothing, until the client goes away, the
        node dies, the simulator stops, or HANG_MAX passes."""
        deadline = time.monotonic() + HANG_MAX
        sock = self.request
        while time.monotonic() < deadline and node.alive and not node.cluster.stopping.is_set() \
                and not self.server.dead:
            try:
                r, _, _ = select.select([sock], [], [], 0.05)
                if r:
                    data = sock.recv(1, socket.MSG_PEEK) if not isinstance(sock, ssl.SSLSocket) else sock.recv(1)
                    if not data:
                        return
            except (OSError, ValueError):
                return

    def _serve(self):
        srv = self.server
        node = srv.node
        c = node.cluster
        method = self.command
        split = urllib.parse.urlsplit(self.path)
        path = split.path or "/"
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        if not node.alive or srv.dead:
            self.close_connection = True
            return
        if node.paused and not self._wait_while_paused(node):
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Req(self, node, method, path, query, headers, body)
        inj = c.take_injection(node.id, method, path)
        mode = inj["mode"] if inj else None
        if mode == "delay":
            time.sleep(inj["delayMs"] / 1000.0)
            mode = None
        if mode in ("reset", "hang"):
            node.log_request(method, path, split.query, 0, mode)
            if mode == "hang":
                self._hang(node)
            self.close_connection = True
            _rst_close(self.request)
            return
        is_verify = path.endswith("/current-identity/mfa/verify")
        if mode in ("401", "429", "500", "500_before_commit", "503"):
            if mode == "401":
                # a controller that refuses the credential (e.g. it does not
                # know the signer yet: token_provider_cache.go)
                err = cl.err_unauthorized()
            elif mode == "429":
                err = cl.err_too_many({"code": "UNHANDLED", "message": cl.CAUSE_REPLY_TIMEOUT})
            elif mode == "503":
                err = cl.err_no_leader()
            else:
                err = cl.err_unhandled(cl.CAUSE_MFA_UPDATE if is_verify else cl.CAUSE_LEADERSHIP_LOST)
            resp = edge_error(err, req.request_id)
            resp.headers += [("ziti-instance-id", node.instance_id), ("server", "ziti-controller/" + ZITI_VERSION)]
        else:
            try:
                resp = srv.api.handle(req)
            except ApiError as e:
                resp = edge_error(e, req.request_id)
            except Exception as e:  # a simulator bug must still answer
                resp = edge_error(cl.err_unhandled("ctrlsim internal error: %r" % (e,)), req.request_id)
            if mode in ("500_after_commit", "429_after_commit"):
                if mode == "429_after_commit":
                    err = cl.err_too_many({"code": "UNHANDLED", "message": cl.CAUSE_REPLY_TIMEOUT})
                else:
                    err = cl.err_unhandled(cl.CAUSE_MFA_UPDATE if is_verify else cl.CAUSE_APPLY_WAIT)
                resp = edge_error(err, req.request_id)
                resp.headers += [("ziti-instance-id", node.instance_id),
                                 ("server", "ziti-controller/" + ZITI_VERSION)]
            elif mode == "reset_after_commit":
                node.log_request(method, path, split.query, 0, mode)
                self.close_connection = True
                _rst_close(self.request)
                return
        if not node.alive or srv.dead:
            self.close_connection = True
            _rst_close(self.request)
            return
        if c.new_address:
            # xweb: every response of a bind point with newAddress
            resp.headers.append(("ziti-ctrl-address", c.new_address.replace("{port}", str(node.port))
                                 .replace("{id}", node.id)))
        node.log_request(method, path, split.query, resp.status, mode)
        body_out = resp.body if method != "HEAD" else b""
        self._write(resp.status, resp.headers, body_out)

    def do_GET(self):
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET


class NodeRunner:
    """Starts and stops one node's HTTP(S) server (kill/restart keep the port)."""

    def __init__(self, node, api, host="127.0.0.1", port=0, ssl_ctx=None):
        self.node = node
        self.api = api
        self.host = host
        self.port = port
        self.ssl_ctx = ssl_ctx
        self.server = None
        self.thread = None

    def start(self):
        srv = NodeHTTPServer((self.host, self.port), Handler, self.node, self.api, self.ssl_ctx)
        self.port = srv.server_address[1]
        self.node.port = self.port
        self.server = srv
        self.node.server = srv
        self.thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="http-" + self.node.id, daemon=True)
        self.thread.start()

    def stop(self):
        srv = self.server
        if srv is None:
            return
        srv.dead = True
        srv.shutdown()
        srv.server_close()
        srv.kill_connections()
        self.server = None
