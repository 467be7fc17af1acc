"""The raft-like cluster model: nodes, leader, log, per-node apply, events.

What is modelled (openziti/ziti v1.5.4 unless said otherwise):

* Writes go through ``Cluster.dispatch`` (controller/raft/raft.go
  Controller.Dispatch):
  - on the leader: raft Apply (needs a quorum of live, connected members),
    then ``indexTracker.WaitForIndex(idx, 5s)`` so the *serving* node has
    applied the entry before it answers; if that wait expires the answer is
    ``errors.New("timed out")`` -> 500 UNHANDLED although the entry committed
    (controller/raft/index_tracker.go);
  - on a follower with no known leader: 503 CLUSTER_NO_LEADER
    (apierror.NewClusterHasNoLeaderError), nothing committed;
  - on a follower with a leader: forward over the mesh.  In v1.5.4 a failed
    dial (GetOrConnectPeer) and a reply timeout (SendForReply, 5 s) return the
    raw error -> 500 UNHANDLED.  From v1.8.0 (commit ffe6e16b7) both are
    429 SERVER_TOO_MANY_REQUESTS.  ``forward_errors`` selects "v1.5.4"
    (default) or "head".  Then the follower waits up to 5 s for its own apply.
  - FSM errors (MFA_EXISTS from MfaManager.ApplyCreate) are returned by the
    leader as the raft response and reach the client unchanged (both on the
    leader and decoded on a forwarding follower: raft.go decodeApiError).
  - raft.ErrNotLeader -> 503 CLUSTER_NO_LEADER with cause;
    leadership lost while the entry waits for a quorum -> 500 UNHANDLED
    "leadership lost while committing log" (hashicorp/raft ErrLeadershipLost);
    no quorum for ``apply_timeout`` -> 500 "timed out enqueuing operation"
    (ErrEnqueueTimeout is passed through raw by ApplyWithTimeout).
* Reads are served from the serving node's own applied state
  ("Reads are always done to the local bolt database", ziti-doc data-model).
* Each node applies committed entries in order, ``lag`` seconds after it
  received them (a lagging follower).  Raft commit = a majority persisted the
  entry, not that every node applied it.
* A follower learns that an entry committed only from the leader's next
  AppendEntries: the next entry, or, with no new entry, a timer of a random
  ``commit_timeout``..2x``commit_timeout`` (hashicorp/raft v1.7.3
  replication.go:169,495 ``randomTimeout(CommitTimeout)``, util.go:34-40;
  default 50 ms, config.go:321; ctrl.yaml ``cluster: commitTimeout``,
  controller/config/config.go:246-250, controller/raft/raft.go:646-648).  So on
  an idle real cluster the followers apply a change 50-100 ms after the
  leader answered (measured ~100 ms median, bench/gate_overhead.py).  The
  simulator's ``commit_timeout`` is 0 unless set (``--commit-timeout-ms``):
  followers then learn a commit at once, which keeps the suite fast; the
  tests that need a lagging follower set ``lag``.
* Elections: followers notice a lost leader after ``election_timeout``
  (hashicorp heartbeat timeout; real default 5 s, controller/config/config.go),
  become leaderless (503 window), and a connected majority elects a new leader
  ``election_delay`` later.  A leader that cannot reach a quorum steps down
  after ``election_timeout`` (leaderLeaseTimeout).
* Entity change events (controller/events/dispatcher_entity_change.go) are
  written by every node as its own FSM applies an entry -- the
  ``propagateAlways: true`` behaviour -- to one JSON-lines file per node.
"""
import copy
import datetime
import json
import os
import random
import secrets
import string
import threading
import time
import uuid

from . import ZITI_VERSION
from . import tokens

# --------------------------------------------------------------------------
# errors (foundation errorz, controller/apierror/messages.go)

META = {"apiEnrollmentVersion": "0.0.1", "apiVersion": "0.0.1"}


class ApiError(Exception):
    """An OpenZiti API error: status, code, message and an optional cause
    (already in its REST form: a dict)."""

    def __init__(self, status, code, message, cause=None):
        super().__init__("%s %s" % (status, code))
        self.status = status
        self.code = code
        self.message = message
        self.cause = cause

    def to_rest(self, request_id=None):
        # controller/response/responder.go EdgeResponseMapper.toRestModel
        out = {"code": self.code, "message": self.message}
        if request_id is not None:
            out["requestId"] = request_id
        if self.cause is not None:
            out["cause"] = self.cause
        return out


def err_unhandled(cause_message):
    # errorz.NewUnhandled(err): a Go error that is not an ApiError becomes
    # 500 UNHANDLED with cause {code: UNHANDLED, message: err.Error()}
    return ApiError(500, "UNHANDLED", "An unhandled error occurred",
                    {"code": "UNHANDLED", "message": cause_message})


def err_not_found():
    return ApiError(404, "NOT_FOUND", "The resource requested was not found or is no longer available")


def err_unauthorized():
    return ApiError(401, "UNAUTHORIZED",
                    "The request could not be completed. The session is not authorized or the credentials are invalid")


def err_unauthenticated():
    # go-openapi's security check when a route's credential header is missing altogether
    # (errors.Unauthenticated("invalid credentials")); observed on v1.5.4 and v1.7.2
    return ApiError(401, "UNAUTHORIZED",
                    "The request could not be completed. The session is not authorized or the credentials are invalid",
                    {"code": "UNHANDLED", "message": "unauthenticated for invalid credentials"})


def err_unauthorized_token():
    # a bearer token present but not accepted (not parsed/verified): the security handler's
    # ApiError wrapped as the cause (observed)
    e = err_unauthorized()
    e.cause = {"code": "UNHANDLED", "message": "UNAUTHORIZED: " + e.message}
    return e


def err_path_not_found(path):
    # the default (client API) handler's 404 for a route it does not have (observed)
    return ApiError(404, "NOT_FOUND", "The resource requested was not found or is no longer available",
                    {"code": "UNHANDLED", "message": "path %s was not found" % path})


def err_validation(status, field, reason, value):
    # go-openapi parameter validation: its own status codes (602 required, 606 enum, ...), the
    # COULD_NOT_VALIDATE envelope (observed: POST /authenticate without/with a bad method)
    return ApiError(status, "COULD_NOT_VALIDATE",
                    "The supplied request contains an invalid document or no valid accept content were available, see cause",
                    {"field": field, "reason": reason, "value": value})


def err_invalid_auth():
    return ApiError(401, "INVALID_AUTH", "The authentication request failed")


def err_mfa_exists():
    return ApiError(409, "MFA_EXISTS", "An MFA record already exists, try removing it")


def err_mfa_invalid_token():
    return ApiError(400, "MFA_INVALID_TOKEN", "An invalid token/code was provided")


def err_mfa_not_enrolled():
    return ApiError(409, "MFA_NOT_ENROLLED", "The current identity is not enrolled in MFA")


def err_no_leader(cause=None):
    return ApiError(503, "CLUSTER_NO_LEADER", "Cluster has no leader, unable to make model updates.", cause)


def err_too_many(cause=None):
    return ApiError(429, "SERVER_TOO_MANY_REQUESTS",
                    "Too many requests to alter state have been issued. Please slow your request rate or try again later.",
                    cause)


# Go error texts used as causes
CAUSE_NOT_LEADER = "node is not the leader"                       # hashicorp/raft ErrNotLeader
CAUSE_LEADERSHIP_LOST = "leadership lost while committing log"    # hashicorp/raft ErrLeadershipLost
CAUSE_ENQUEUE_TIMEOUT = "timed out enqueuing operation"           # hashicorp/raft ErrEnqueueTimeout
CAUSE_APPLY_WAIT = "timed out"                                    # controller/raft/index_tracker.go
CAUSE_REPLY_TIMEOUT = "timeout waiting for message reply: context deadline exceeded"  # openziti/channel (text [I])
CAUSE_MFA_UPDATE = "could not update MFA status"                  # MfaManager.CompleteTotpEnrollment


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


_ID_ALPHABET = string.ascii_letters + string.digits


def new_entity_id():
    """Entity ids look like the controller's short ids (eid.New)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(10))


def new_recovery_codes():
    # MfaManager.generateRecoveryCodes: 20 codes, base32 of 8 random bytes,
    # '=' removed, first 6 characters
    import base64
    return [base64.b32encode(secrets.token_bytes(8)).decode().replace("=", "")[:6] for _ in range(20)]


def new_totp_secret():
    # MfaManager.CreateForIdentity: 10 random bytes, base32.StdEncoding
    import base64
    return base64.b32encode(secrets.token_bytes(10)).decode()


# --------------------------------------------------------------------------
# the replicated state machine

class Fsm:
    """One node's applied state (its local bolt database)."""

    def __init__(self):
        self.identities = {}   # id -> identity dict (seeded on every node)
        self.mfas = {}         # mfa id -> db.Mfa-like dict
        self.applied = 0

    def mfa_for_identity(self, identity_id):
        # MfaManager.ReadOneByIdentityId (`identity = "<id>"`)
        for m in self.mfas.values():
            if m["identityId"] == identity_id:
                return m
        return None

    def identity_by_name(self, name):
        for i in self.identities.values():
            if i["name"] == name:
                return i
        return None


def apply_command(fsm, cmd):
    """Apply one log entry to ``fsm``.  Returns (error or None, [(eventType,
    initialState, finalState)]).  Deterministic: every node gets the same
    result for the same entry.  A failed apply changes nothing."""
    op = cmd["op"]
    ts = cmd["ts"]
    if op == "mfa.create":
        ent = cmd["entity"]
        # MfaManager.ApplyCreate: the exists check and the insert run in one
        # transaction inside the raft apply
        if fsm.mfa_for_identity(ent["identityId"]) is not None:
            return err_mfa_exists(), []
        if ent["identityId"] not in fsm.identities:
            return err_not_found(), []
        m = copy.deepcopy(ent)
        m["createdAt"] = ts
        m["updatedAt"] = ts
        fsm.mfas[m["id"]] = m
        return None, [("created", None, copy.deepcopy(m))]
    if op == "mfa.update":
        ent = cmd["entity"]
        cur = fsm.mfas.get(ent["id"])
        if cur is None:
            return err_not_found(), []
        before = copy.deepcopy(cur)
        # MfaManager.IsUpdated: only isVerified and recoveryCodes change
        for f in cmd["fields"]:
            cur[f] = copy.deepcopy(ent[f])
        cur["updatedAt"] = ts
        return None, [("updated", before, copy.deepcopy(cur))]
    if op == "mfa.delete":
        cur = fsm.mfas.pop(cmd["id"], None)
        if cur is None:
            return err_not_found(), []
        return None, [("deleted", cur, None)]
    if op == "noop":
        return None, []
    raise ValueError("unknown op %r" % op)


# --------------------------------------------------------------------------
# nodes

class Node:
    def __init__(self, cluster, idx):
        self.cluster = cluster
        self.idx = idx
        self.id = "ctrl%d" % idx
        self.port = 0
        self.alive = True
        self.paused = False
        self.role = "follower"
        self.known_leader = None
        self.last_contact = time.monotonic()
        self.leaderless_since = time.monotonic()
        self.quorum_lost_at = None
        self.fsm = Fsm()
        self.lag = 0.0
        self.match_index = 0
        self.recv_times = {}
        self.known_commit = 0    # the commit index this follower was told
        self.commit_notify_at = 0.0
        # legacy API sessions: written to the local bolt DB, not raft
        # (controller/model/api_session_manager.go ApiSessionManager.Create)
        self.sessions = {}       # token -> session dict
        # OIDC auth requests and codes: in-memory cmaps
        # (controller/oidc_auth/storage.go HybridStorage)
        self.auth_requests = {}  # id -> auth request dict
        self.codes = {}          # code -> auth request id
        self.instance_id = new_entity_id()   # ziti-instance-id, per process start
        self.kid = tokens.new_kid()
        self.key = tokens.new_key()
        self.misrecorded = False  # its tokens refused by the others (keys())
        self.request_log = []
        self.request_seq = 0
        self.log_lock = threading.Lock()
        self.server = None       # set by the HTTP layer
        self.events_path = None
        self.events_file = None
        self.apply_thread = None

    @property
    def up(self):
        return self.alive and not self.paused

    def log_request(self, method, path, query, status, injected=None):
        with self.log_lock:
            self.request_seq += 1
            self.request_log.append({"seq": self.request_seq, "method": method, "path": path,
                                     "query": query, "status": status, "injected": injected,
                                     "time": time.time()})
            if len(self.request_log) > 100000:
                del self.request_log[:50000]

    def emit_events(self, index, cmd, events):
        if not events or self.events_file is None:
            return
        event_id = str(uuid.uuid4())
        meta = {
            # change.Context.PopulateMetadata + dispatcher global "version"
            "author": cmd.get("author") or {"type": "", "id": "", "name": ""},
            "source": cmd.get("source") or {"type": "", "auth": "", "localAddr": "", "remoteAddr": "", "method": ""},
            "raft_index": index,
            "version": ZITI_VERSION,
        }
        lines = []
        for etype, initial, final in events:
            ev = {"namespace": "entityChange", "event_src_id": self.id, "timestamp": now_iso(),
                  "eventId": event_id, "eventType": etype, "metadata": meta, "entityType": "mfas"}
            if initial is not None:
                ev["initialState"] = _db_mfa(initial)
            if final is not None:
                ev["finalState"] = _db_mfa(final)
            lines.append(ev)
        # the committed event closes the transaction; it carries no metadata
        lines.append({"namespace": "entityChange", "event_src_id": self.id, "timestamp": now_iso(),
                      "eventId": event_id, "eventType": "committed"})
        try:
            for ev in lines:
                self.events_file.write(json.dumps(ev, separators=(",", ":")) + "\n")
            self.events_file.flush()
        except (OSError, ValueError):
            pass

    def snapshot(self):
        c = self.cluster
        return {
            "id": self.id,
            "url": c.node_url(self),
            "port": self.port,
            "alive": self.alive,
            "paused": self.paused,
            "isolated": c.groups.get(self.id) is not None and
                        sum(1 for g in c.groups.values() if g == c.groups.get(self.id)) == 1,
            "group": c.groups.get(self.id),
            "role": self.role,
            "leader": self.role == "leader",
            "knownLeader": self.known_leader,
            "appliedIndex": self.fsm.applied,
            "matchIndex": self.match_index,
            "lagMs": int(self.lag * 1000),
            "instanceId": self.instance_id,
            "eventsPath": self.events_path,
            "sessions": len(self.sessions),
            "authRequests": len(self.auth_requests),
            "mfas": {m["identityId"]: {"id": m["id"], "isVerified": m["isVerified"]}
                     for m in self.fsm.mfas.values()},
        }


def _db_mfa(m):
    # db.Mfa JSON (controller/db/mfa_store.go) = boltz.BaseExtEntity
    # {id, createdAt, updatedAt, tags, isSystem} + identityId, isVerified,
    # secret, salt, recoveryCodes.  Secrets included, like the real events.
    return {"id": m["id"], "createdAt": m["createdAt"], "updatedAt": m["updatedAt"],
            "tags": m.get("tags") or {}, "isSystem": False, "identityId": m["identityId"],
            "isVerified": m["isVerified"], "secret": m["secret"], "salt": m["salt"],
            "recoveryCodes": list(m["recoveryCodes"])}


# --------------------------------------------------------------------------
# the cluster

class Cluster:
    def __init__(self, n_nodes=3, election_timeout=1.0, election_delay=0.2,
                 forward_timeout=5.0, apply_wait_timeout=5.0, apply_timeout=5.0,
                 forward_errors="v1.5.4", events_dir=None, scheme="http",
                 advertise_host="127.0.0.1", new_address=None, totp_issuer="openziti.io",
                 access_token_ttl=1800, refresh_token_ttl=86400, idle_timeout=5.0,
                 health_checks=True):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.nodes = [Node(self, i + 1) for i in range(n_nodes)]
        self.by_id = {n.id: n for n in self.nodes}
        self.log = []            # entries: {"index","term","cmd"}
        self.commit_index = 0
        self.commit_timeout = 0.0   # seconds; 0: followers learn commits at once
        self.term = 0
        self.leader = None
        self.leader_changes = 0
        self.groups = {}         # node id -> partition group name; absent = default group
        self.election_timeout = election_timeout
        self.election_delay = election_delay
        self.forward_timeout = forward_timeout
        self.forwards_waiting = 0   # writes forwarded to a leader that does not reply, now
        self.apply_wait_timeout = apply_wait_timeout
        self.apply_timeout = apply_timeout
        self.forward_errors = forward_errors
        self.scheme = scheme
        self.advertise_host = advertise_host
        self.new_address = new_address
        self.totp_issuer = totp_issuer   # edge.totp.hostname default (config_edge.go DefaultTotpDomain)
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.idle_timeout = idle_timeout
        # the health-checks API is bound (the default ctrl.yaml of `ziti
        # create config controller` binds none: every path under it is 404)
        self.health_checks = health_checks
        self.san_hosts = ["localhost", "127.0.0.1"]   # the server certificate's SANs (Simulator sets them)
        self.read_only = set()   # node ids whose mesh is read-only (mixed versions)
        self.canon = Fsm()       # the committed state, used for raft responses
        self.injections = []
        self.inj_seq = 0
        self.stopping = threading.Event()
        self.events_dir = events_dir
        if events_dir:
            os.makedirs(events_dir, exist_ok=True)
            for n in self.nodes:
                n.events_path = os.path.join(events_dir, "%s-events.json" % n.id)
                n.events_file = open(n.events_path, "a", encoding="utf-8")
        self.monitor_thread = None

    # ---- helpers -------------------------------------------------------
    def node_url(self, node):
        return "%s://%s:%d" % (self.scheme, self.advertise_host, node.port)

    def issuer_hosts(self, node):
        """Hosts the OIDC issuer interceptor accepts (webapis/oidc-api.go getPossibleIssuers):
        the bind address and every DNS/IP SAN of the server certificate, with the bind port."""
        names = [self.advertise_host] + list(self.san_hosts)
        out = {("%s:%d" % (n, node.port)).lower() for n in names}
        if node.port == 443:
            out |= {n.lower() for n in names}
        return out

    def keys(self, at=None):
        """The keys a member verifies tokens with, by kid: every member's signing key (the
        controllers table), except the keys of members the cluster recorded wrong
        (``misrecorded``: the leader took the member's raft client certificate for its signing
        certificate, v1.5.4 controller/raft/mesh/mesh.go:822; OBSERVATIONS.md): those only the
        member itself knows under its tokens' kid."""
        return {n.kid: n.key for n in self.nodes if not n.misrecorded or n is at}

    def quorum(self):
        return len(self.nodes) // 2 + 1

    def reachable(self, a, b):
        if a is b:
            return a.up
        return a.up and b.up and self.groups.get(a.id) == self.groups.get(b.id)

    def has_quorum(self, node):
        return sum(1 for o in self.nodes if self.reachable(node, o)) >= self.quorum()

    def leader_node(self):
        return self.by_id[self.leader] if self.leader else None

    # ---- lifecycle -----------------------------------------------------
    def start(self, initial_leader="ctrl1"):
        with self.cond:
            if initial_leader:
                self._become_leader(self.by_id[initial_leader])
        for n in self.nodes:
            self._start_apply_thread(n)
        self.monitor_thread = threading.Thread(target=self._monitor, name="raft-monitor", daemon=True)
        self.monitor_thread.start()

    def stop(self):
        self.stopping.set()
        with self.cond:
            self.cond.notify_all()
        for n in self.nodes:
            if n.events_file:
                try:
                    n.events_file.close()
                except OSError:
                    pass

    def _start_apply_thread(self, node):
        t = threading.Thread(target=self._apply_loop, args=(node,), name="apply-" + node.id, daemon=True)
        node.apply_thread = t
        t.start()

    def _become_leader(self, node):
        old = self.leader_node()
        if old is not None and old is not node:
            old.role = "follower"
            old.known_leader = None
        self.term += 1
        self.leader = node.id
        self.leader_changes += 1
        node.role = "leader"
        node.known_leader = node.id
        node.quorum_lost_at = None
        node.match_index = len(self.log)
        t = time.monotonic()
        for o in self.nodes:
            if o is not node and self.reachable(node, o):
                o.known_leader = node.id
                o.last_contact = t
        self._replicate()
        self.cond.notify_all()

    def _step_down(self, node):
        node.role = "follower"
        node.known_leader = None
        node.leaderless_since = time.monotonic()
        if self.leader == node.id:
            self.leader = None
        self.cond.notify_all()

    def _replicate(self):
        """Send the log from the leader to every member it can reach."""
        L = self.leader_node()
        if L is None or not L.up:
            return
        last = len(self.log)
        t = time.monotonic()
        for n in self.nodes:
            if self.reachable(L, n) and n.match_index < last:
                for i in range(n.match_index + 1, last + 1):
                    n.recv_times[i] = t
                n.match_index = last
                # this AppendEntries carries the commit index from before
                # its own entries; the next one comes with the timer
                n.known_commit = max(n.known_commit, self.commit_index - 1)
                n.commit_notify_at = t + self.commit_timeout * (1 + random.random())
        self.cond.notify_all()

    def _notify_commits(self, L, t):
        """The leader's CommitTimeout timer per follower (see the module doc)."""
        for n in self.nodes:
            if n is L or not self.reachable(L, n) or t < n.commit_notify_at:
                continue
            n.commit_notify_at = t + self.commit_timeout * (1 + random.random())
            if n.known_commit < self.commit_index:
                n.known_commit = self.commit_index
                self.cond.notify_all()

    def _monitor(self):
        while not self.stopping.is_set():
            with self.cond:
                self._tick()
            time.sleep(0.01)

    def _tick(self):
        t = time.monotonic()
        et = self.election_timeout
        L = self.leader_node()
        if L is not None:
            if not L.alive:
                # the process is gone: nobody leads; followers notice after et
                L.role = "follower"
                self.leader = None
                self.cond.notify_all()
            elif L.paused:
                pass  # a frozen leader neither steps down nor answers
            elif not self.has_quorum(L):
                if L.quorum_lost_at is None:
                    L.quorum_lost_at = t
                elif t - L.quorum_lost_at >= et:
                    self._step_down(L)      # leaderLeaseTimeout
            else:
                L.quorum_lost_at = None
                if self.commit_timeout > 0:
                    self._notify_commits(L, t)
        L = self.leader_node()
        for n in self.nodes:
            if not n.up:
                continue
            if n.role == "leader" and n.id != self.leader:
                # a resumed stale leader learns of the newer term
                self._step_down(n)
            if n.role == "leader":
                continue
            if L is not None and self.reachable(n, L):
                n.known_leader = L.id
                n.last_contact = t
            elif n.known_leader is not None and t - n.last_contact >= et:
                n.known_leader = None
                n.leaderless_since = t
        self._replicate()
        L = self.leader_node()
        if L is None or not L.up:
            # a frozen (paused) leader does not stop the others from electing
            self._maybe_elect(t)

    def _maybe_elect(self, t):
        q = self.quorum()
        cands = [n for n in self.nodes
                 if n.up and n.known_leader is None and t - n.leaderless_since >= self.election_delay]
        # raft: the winner's log must be at least as up to date as a majority
        cands.sort(key=lambda n: (-n.match_index, n.idx))
        for c in cands:
            voters = [o for o in self.nodes if self.reachable(c, o) and o.known_leader is None
                      and o.match_index <= c.match_index]
            if len(voters) >= q:
                self._become_leader(c)
                return

    def _apply_loop(self, node):
        while not self.stopping.is_set():
            with self.cond:
                nxt = node.fsm.applied + 1
                told = (self.commit_index if self.commit_timeout <= 0 or node.role == "leader"
                        else node.known_commit)
                if not node.up or nxt > min(self.commit_index, told, node.match_index):
                    self.cond.wait(0.05)
                    continue
                due = node.recv_times.get(nxt, 0.0) + node.lag
                wait = due - time.monotonic()
                if wait > 0:
                    self.cond.wait(min(wait, 0.05))
                    continue
                entry = self.log[nxt - 1]
                _, events = apply_command(node.fsm, entry["cmd"])
                node.fsm.applied = nxt
                node.recv_times.pop(nxt, None)
                node.emit_events(nxt, entry["cmd"], events)
                self.cond.notify_all()

    # ---- writes ----------------------------------------------------------
    def dispatch(self, node, cmd):
        """Controller.Dispatch on ``node``.  Returns the raft index; raises
        ApiError.  See the module doc for each outcome."""
        cmd = dict(cmd)
        cmd.setdefault("ts", now_iso())
        with self.cond:
            if node.id in self.read_only:
                # raft/raft.go Dispatch (v1.5.4): a plain error, 500 UNHANDLED
                raise err_unhandled("unable to execute command. In a readonly state: "
                                    "different versions detected in cluster")
            if node.role == "leader":
                idx = self._leader_apply(node, cmd)
                self._wait_applied(node, idx)
                return idx
            leader_id = node.known_leader
            if leader_id is None:
                raise err_no_leader()
            L = self.by_id[leader_id]
            if not L.alive:
                # GetOrConnectPeer fails at once: the peer's listener is gone
                raise self._forward_error("error dialing peer %s: dial tcp 127.0.0.1:6262: connect: connection refused" % L.id, dial=True)
            if not self.reachable(node, L):
                reason = "timeout"
            else:
                reason = None
        if reason == "timeout":
            # the message goes out and no reply comes within 5 s
            with self.cond:
                self.forwards_waiting += 1
            try:
                self.stopping.wait(self.forward_timeout)
            finally:
                with self.cond:
                    self.forwards_waiting -= 1
            raise self._forward_error(CAUSE_REPLY_TIMEOUT, dial=False)
        with self.cond:
            if L.role != "leader":
                # the leader lost leadership since: it answers ErrNotLeader
                raise err_no_leader({"code": "UNHANDLED", "message": CAUSE_NOT_LEADER})
            idx = self._leader_apply(L, cmd)
            self._wait_applied(node, idx)
            return idx

    def _forward_error(self, cause, dial):
        if self.forward_errors == "head":
            return err_too_many({"code": "UNHANDLED", "message": cause})
        return err_unhandled(cause)

    def _leader_apply(self, L, cmd):
        """raft Apply on the leader (the caller then waits for the serving
        node's own apply).  Called with the lock held."""
        if L.role != "leader" or not L.up:
            raise err_no_leader({"code": "UNHANDLED", "message": CAUSE_NOT_LEADER})
        deadline = time.monotonic() + self.apply_timeout
        while not self.has_quorum(L):
            if L.role != "leader" or not L.alive:
                raise err_unhandled(CAUSE_LEADERSHIP_LOST)
            left = deadline - time.monotonic()
            if left <= 0 or self.stopping.is_set():
                raise err_unhandled(CAUSE_ENQUEUE_TIMEOUT)
            self.cond.wait(min(left, 0.05))
        if L.role != "leader" or not L.alive:
            raise err_unhandled(CAUSE_LEADERSHIP_LOST)
        idx = len(self.log) + 1
        self.log.append({"index": idx, "term": self.term, "cmd": cmd})
        self.commit_index = idx
        err, _ = apply_command(self.canon, cmd)
        self.canon.applied = idx
        self._replicate()
        if err is not None:
            # ApplyEncodedCommand: the FSM's error is the raft response
            raise err
        return idx

    def _wait_applied(self, node, idx):
        deadline = time.monotonic() + self.apply_wait_timeout
        while node.fsm.applied < idx:
            left = deadline - time.monotonic()
            if left <= 0 or self.stopping.is_set():
                raise err_unhandled(CAUSE_APPLY_WAIT)
            self.cond.wait(min(left, 0.05))

    # ---- control ---------------------------------------------------------
    def kill(self, node):
        with self.cond:
            node.alive = False
            node.paused = False
            if node.role == "leader":
                node.role = "follower"
                if self.leader == node.id:
                    self.leader = None
            node.known_leader = None
            # OIDC auth requests and codes live in memory only
            node.auth_requests.clear()
            node.codes.clear()
            self.cond.notify_all()

    def restart(self, node):
        with self.cond:
            node.alive = True
            node.paused = False
            node.role = "follower"
            node.known_leader = None
            node.leaderless_since = time.monotonic()
            node.instance_id = new_entity_id()
            self.cond.notify_all()

    def pause(self, node, paused=True):
        with self.cond:
            node.paused = paused
            if not paused:
                node.last_contact = time.monotonic()
            self.cond.notify_all()

    def set_groups(self, groups):
        with self.cond:
            self.groups = {}
            for gi, g in enumerate(groups):
                for nid in g:
                    if nid not in self.by_id:
                        raise KeyError(nid)
                    self.groups[nid] = "g%d" % gi
            self.cond.notify_all()

    def isolate(self, node):
        with self.cond:
            self.groups[node.id] = "iso-" + node.id
            self.cond.notify_all()

    def heal(self, node=None):
        with self.cond:
            if node is None:
                self.groups = {}
            else:
                self.groups.pop(node.id, None)
            self.cond.notify_all()

    def force_election(self):
        """The leader steps down; a new election follows the usual timeline
        (followers leaderless at once, a leader ``election_delay`` later)."""
        with self.cond:
            L = self.leader_node()
            t = time.monotonic()
            if L is not None:
                self._step_down(L)
            for n in self.nodes:
                if n.up:
                    n.known_leader = None
                    n.leaderless_since = t
            self.cond.notify_all()

    def transfer_leadership(self, target=None):
        """ziti agent cluster transfer-leadership: immediate hand-over."""
        with self.cond:
            L = self.leader_node()
            if target is None:
                opts = [n for n in self.nodes if n is not L and n.up and (L is None or self.reachable(L, n))]
                if not opts:
                    raise ValueError("no eligible target")
                target = opts[0]
            if not target.up:
                raise ValueError("target %s is not up" % target.id)
            if L is not None and not self.reachable(L, target):
                raise ValueError("target %s is not reachable from the leader" % target.id)
            if L is target:
                return
            self._become_leader(target)

    def seed_identity(self, name, password, is_admin=False, identity_id=None):
        """Identities are seeded on every node at once (not through the log),
        like a cluster that was initialised with them."""
        with self.cond:
            for n in self.nodes:
                if n.fsm.identity_by_name(name):
                    raise ValueError("identity %r exists" % name)
            ident = {"id": identity_id or new_entity_id(), "name": name, "password": password,
                     "isAdmin": bool(is_admin), "createdAt": now_iso(), "updatedAt": now_iso()}
            for fsm in [self.canon] + [n.fsm for n in self.nodes]:
                fsm.identities[ident["id"]] = dict(ident)
            return dict(ident)

    # ---- injections --------------------------------------------------------
    def add_injection(self, mode, path, method=None, node=None, count=1, delay_ms=0):
        with self.cond:
            self.inj_seq += 1
            inj = {"id": self.inj_seq, "mode": mode, "path": path, "method": method.upper() if method else None,
                   "node": node, "count": int(count), "delayMs": int(delay_ms), "hits": 0}
            self.injections.append(inj)
            return dict(inj)

    def take_injection(self, node_id, method, path):
        with self.cond:
            for inj in self.injections:
                if inj["count"] <= 0:
                    continue
                if inj["node"] and inj["node"] != node_id:
                    continue
                if inj["method"] and inj["method"] != method:
                    continue
                p = inj["path"]
                if p.endswith("*"):
                    if not path.startswith(p[:-1]):
                        continue
                elif p != path:
                    continue
                inj["count"] -= 1
                inj["hits"] += 1
                return dict(inj)
            return None

    def state(self):
        with self.cond:
            return {"leader": self.leader, "term": self.term, "commitIndex": self.commit_index,
                    "leaderChanges": self.leader_changes,
                    "forwardsWaiting": self.forwards_waiting,
                    "config": self.config(),
                    "nodes": [n.snapshot() for n in self.nodes],
                    "identities": [{k: v for k, v in i.items() if k != "password"}
                                   for i in self.canon.identities.values()]}

    def config(self):
        return {"electionTimeoutMs": int(self.election_timeout * 1000),
                "electionDelayMs": int(self.election_delay * 1000),
                "forwardTimeoutMs": int(self.forward_timeout * 1000),
                "applyWaitTimeoutMs": int(self.apply_wait_timeout * 1000),
                "applyTimeoutMs": int(self.apply_timeout * 1000),
                "idleTimeoutMs": int(self.idle_timeout * 1000),
                "forwardErrors": self.forward_errors,
                "newAddress": self.new_address,
                "accessTokenTtl": self.access_token_ttl,
                "healthChecks": self.health_checks,
                "readOnly": sorted(self.read_only)}

    def set_config(self, cfg):
        with self.cond:
            ms = {"electionTimeoutMs": "election_timeout", "electionDelayMs": "election_delay",
                  "forwardTimeoutMs": "forward_timeout", "applyWaitTimeoutMs": "apply_wait_timeout",
                  "applyTimeoutMs": "apply_timeout", "idleTimeoutMs": "idle_timeout"}
            for k, v in cfg.items():
                if k in ms:
                    setattr(self, ms[k], float(v) / 1000.0)
                elif k == "forwardErrors":
                    if v not in ("v1.5.4", "head"):
                        raise ValueError("forwardErrors must be v1.5.4 or head")
                    self.forward_errors = v
                elif k == "newAddress":
                    self.new_address = v
                elif k == "accessTokenTtl":
                    self.access_token_ttl = int(v)
                elif k == "healthChecks":
                    self.health_checks = bool(v)
                elif k == "readOnly":
                    if not isinstance(v, list) or any(i not in self.by_id for i in v):
                        raise ValueError("readOnly must be a list of node ids")
                    self.read_only = set(v)
                else:
                    raise KeyError(k)
            self.cond.notify_all()
            return self.config()
