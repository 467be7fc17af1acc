/* check_run.c - `quorumgate check -c FILE`: what an operator needs to know
 * before going live, one line per check, from the controllers, Redis and
 * the event files themselves (see check.h). */
#include "proxy/check.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/crypto.h"
#include "base/json.h"
#include "base/loop.h"
#include "base/uring.h"
#include "base/util.h"
#include "consistency/mgmt.h"
#include "io/redis.h"
#include "io/upstream.h"
#include "proxy/check_sentinel.h"
#include "proxy/oneshot.h"
#include "routing/cluster.h"

#define CHECK_MAX CONFIG_MAX_CONTROLLERS

/* One controller's answers; owned by check_run. */
struct check_node {
    char *base, *conn;
    char *version_url, *health_url, *login_url, *members_url;
    char *login_body;             /* secret: wiped */
    char *auth;                   /* "zt-session: ..." (secret: wiped) */
    struct upstream_req version, health, login, members;
    const char *hdrs[3];
    char leader[CONFIG_ID_MAX];
    char members_seen[256];
};

struct check_report {
    FILE *out;
    int failed;
};

static void check_line(struct check_report *rep, const char *verdict,
                       const char *who, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void check_line(struct check_report *rep, const char *verdict,
                       const char *who, const char *fmt, ...)
{
    va_list ap;
    fprintf(rep->out, "%-4s %-10s ", verdict, who);
    va_start(ap, fmt);
    vfprintf(rep->out, fmt, ap);
    va_end(ap);
    fputc('\n', rep->out);
    if (strcmp(verdict, "FAIL") == 0)
        rep->failed++;
}

static void check_wipe(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = 0;
    free(s);
}

static void check_get(struct upstream_req *r, const char *url,
                      const char *conn, const char *const *hdrs, int n)
{
    r->method = HTTP_GET;
    r->url = url;
    r->connect_to = conn;
    r->headers = hdrs;
    r->n_headers = n;
    r->max_response = 256 * 1024;
}

static const char *const check_json[] = {"Accept: application/json",
                                         "Content-Type: application/json"};

/* Step 1: version (TLS, server name, Date), health path. */
static void check_basics(const struct config *cfg, struct check_node *nd,
                         int n, struct check_report *rep)
{
    struct upstream_req *ptrs[2 * CHECK_MAX];
    for (int i = 0; i < n; i++) {
        nd[i].version_url = xasprintf("%s/edge/client/v1/version", nd[i].base);
        nd[i].health_url = xasprintf("%s%s", nd[i].base, cfg->health.path);
        check_get(&nd[i].version, nd[i].version_url, nd[i].conn, check_json, 1);
        check_get(&nd[i].health, nd[i].health_url, nd[i].conn, check_json, 1);
        ptrs[2 * i] = &nd[i].version;
        ptrs[2 * i + 1] = &nd[i].health;
    }
    oneshot_run(cfg, ptrs, 2 * n);
    for (int i = 0; i < n; i++) {
        const char *id = cfg->controllers[i].id;
        struct upstream_req *v = &nd[i].version;
        const char *name = cfg->upstream.server_name ? cfg->upstream.server_name
                                                     : cfg->controllers[i].host;
        if (v->result != UPSTREAM_OK) {
            check_line(rep, "FAIL", id, "%s: %s: %s", nd[i].base,
                       upstream_result_name(v->result), v->error);
            continue;
        }
        if (!strncmp(nd[i].base, "https", 5))
            check_line(rep, cfg->upstream.verify ? "ok" : "WARN", id,
                       "tls: %s, server name %s",
                       cfg->upstream.verify ? "certificate verified"
                                            : "verification OFF "
                                              "(upstream.tls.verify)",
                       name);
        else
            check_line(rep, "WARN", id, "plain http: nothing verified");
        struct json *j = json_parse(v->resp_body.data, v->resp_body.len);
        const char *ver = json_path_string(j, "data.version");
        check_line(rep, ver ? "ok" : "FAIL", id, "version: %s (status %d)",
                   ver ? ver : "not in the answer", v->status);
        json_free(j);
        const char *date;
        size_t dlen;
        if (upstream_resp_header(v, "Date", &date, &dlen) && dlen < 64) {
            char d[64];
            struct tm tm;
            memcpy(d, date, dlen);
            d[dlen] = '\0';
            memset(&tm, 0, sizeof(tm));
            if (strptime(d, "%a, %d %b %Y %H:%M:%S GMT", &tm)) {
                long skew = (long)(timegm(&tm) - time(NULL));
                check_line(rep, labs(skew) <= 2 ? "ok" : "FAIL", id,
                           "clock skew: %+lds (from its Date header)", skew);
            }
        }
        int hs = nd[i].health.result == UPSTREAM_OK ? nd[i].health.status : 0;
        if (hs == 200 || hs == 429)
            check_line(rep, "ok", id, "health-checks API bound (%s: %d)",
                       cfg->health.path, hs);
        else if (hs == 404)
            check_line(rep, mgmt_config_has_credential(cfg) ? "ok" : "FAIL",
                       id, "health-checks API not bound (404): %s",
                       mgmt_config_has_credential(cfg)
                           ? "the leader is found by list-members"
                           : "add '- binding: health-checks' to its ctrl.yaml "
                             "or configure gate.management");
        else
            check_line(rep, "FAIL", id, "health path answered %d", hs);
    }
}

/* Step 2: the management credential on every controller, and the raft
 * members as each one sees them. */
static void check_members(const struct config *cfg, struct check_node *nd,
                          int n, struct check_report *rep)
{
    struct upstream_req *ptrs[CHECK_MAX];
    if (!mgmt_config_has_credential(cfg)) {
        check_line(rep, "WARN", "gate", "no management credential: legacy "
                   "sessions and raft members not checked");
        return;
    }
    struct buf b = {0};
    buf_puts(&b, "{\"username\":\"");
    buf_json_escape(&b, cfg->gate.mgmt_username, strlen(cfg->gate.mgmt_username));
    buf_puts(&b, "\",\"password\":\"");
    buf_json_escape(&b, cfg->gate.mgmt_password, strlen(cfg->gate.mgmt_password));
    buf_puts(&b, "\"}");
    for (int i = 0; i < n; i++) {
        struct upstream_req *r = &nd[i].login;
        nd[i].login_url = xasprintf("%s/edge/management/v1/authenticate?"
                                    "method=password", nd[i].base);
        nd[i].login_body = xstrdup(b.data);
        check_get(r, nd[i].login_url, nd[i].conn, check_json, 2);
        r->method = HTTP_POST;
        r->body = nd[i].login_body;
        r->body_len = strlen(nd[i].login_body);
        ptrs[i] = r;
    }
    check_wipe(buf_steal(&b, NULL));
    oneshot_run(cfg, ptrs, n);
    int m = 0;
    for (int i = 0; i < n; i++) {
        const char *id = cfg->controllers[i].id;
        struct upstream_req *r = &nd[i].login;
        struct json *j = json_parse(r->resp_body.data, r->resp_body.len);
        const char *tok = json_path_string(j, "data.token");
        if (r->result == UPSTREAM_OK && r->status == 200 && tok) {
            nd[i].auth = xasprintf("zt-session: %s", tok);
            nd[i].hdrs[0] = check_json[0];
            nd[i].hdrs[1] = nd[i].auth;
            nd[i].members_url = xasprintf("%s/fabric/v1/cluster/list-members",
                                          nd[i].base);
            check_get(&nd[i].members, nd[i].members_url, nd[i].conn,
                      nd[i].hdrs, 2);
            ptrs[m++] = &nd[i].members;
        } else {
            check_line(rep, "FAIL", id, "management login as %s: status %d",
                       cfg->gate.mgmt_username, r->status);
        }
        json_free(j);
        buf_reset(&r->resp_body); /* the token */
    }
    oneshot_run(cfg, ptrs, m);
    const char *first = NULL;
    bool agree = true;
    for (int i = 0; i < n; i++) {
        const char *id = cfg->controllers[i].id;
        struct upstream_req *r = &nd[i].members;
        if (!nd[i].auth)
            continue;
        if (r->result != UPSTREAM_OK || r->status != 200) {
            check_line(rep, "FAIL", id, "list-members: status %d (%s is "
                       "not an admin?)", r->status, cfg->gate.mgmt_username);
            continue;
        }
        struct json *j = json_parse(r->resp_body.data, r->resp_body.len);
        struct buf seen = {0};
        bool ro = false;
        for (struct json *e = json_first(json_get(j, "data")); e;
             e = json_next(e)) {
            const char *mid = json_string(json_get(e, "id"));
            bool lead = false, conn = false, r_o = false;
            json_bool(json_get(e, "leader"), &lead);
            json_bool(json_get(e, "connected"), &conn);
            if (json_bool(json_get(e, "readOnly"), &r_o) && r_o)
                ro = true;
            if (lead && mid)
                snprintf(nd[i].leader, sizeof(nd[i].leader), "%s", mid);
            buf_printf(&seen, "%s%s%s", seen.len ? "," : "", mid ? mid : "?",
                       conn ? "" : "(not connected)");
        }
        snprintf(nd[i].members_seen, sizeof(nd[i].members_seen), "%s",
                 seen.data ? seen.data : "");
        check_line(rep, nd[i].leader[0] && !ro ? "ok" : "FAIL", id,
                   "management credential works (admin); raft members %s; "
                   "leader %s%s", nd[i].members_seen,
                   nd[i].leader[0] ? nd[i].leader : "NONE",
                   ro ? "; READ-ONLY (members of different versions)" : "");
        if (!first)
            first = nd[i].leader;
        else if (strcmp(first, nd[i].leader) != 0)
            agree = false;
        buf_free(&seen);
        json_free(j);
    }
    if (first)
        check_line(rep, agree ? "ok" : "FAIL", "cluster",
                   agree ? "every controller names the same leader (%s)"
                         : "controllers disagree on the leader (first: %s)",
                   first);
}

/* Step 3: Redis: reachable, maxmemory-policy noeviction, HMAC key shared. */
struct check_redis {
    struct loop *loop;
    struct redis *r;
    const struct config *cfg;
    struct check_report *rep;
    int step;
    bool up;
    char fingerprint[CRYPTO_HMAC_HEX_LEN + 1];
    struct loop_timer *timer;
};

static void check_redis_next(struct check_redis *cr);

static void check_redis_reply(void *arg, enum redis_status st,
                              const struct redis_reply *rep)
{
    struct check_redis *cr = arg;
    bool ok = st == REDIS_STATUS_OK && rep->type != REDIS_TYPE_ERROR;
    if (cr->step == 0) {
        const char *pol = ok && rep->n_elements == 2 ? rep->elements[1].str
                                                      : NULL;
        if (!ok)
            check_line(cr->rep, "WARN", "redis", "CONFIG GET "
                       "maxmemory-policy refused (%s): check it is "
                       "noeviction", ok ? "" : rep->str ? rep->str : "error");
        else
            check_line(cr->rep, pol && !strcmp(pol, "noeviction") ? "ok"
                                                                 : "FAIL",
                       "redis", "maxmemory-policy %s%s", pol ? pol : "?",
                       pol && !strcmp(pol, "noeviction")
                           ? ""
                           : " (must be noeviction: quorumgate's keys must "
                             "not be evicted)");
    } else if (cr->step == 1) {
        (void)ok; /* SET NX: the GET decides */
    } else {
        bool same = ok && rep->str &&
                    strcmp(rep->str, cr->fingerprint) == 0;
        check_line(cr->rep, same ? "ok" : "FAIL", "redis",
                   same ? "HMAC key: the same as every quorumgate that "
                          "checked in before (%.12s...)"
                        : "HMAC key differs from the one another quorumgate "
                          "checked in (%.12s...): secrets.hmac_key_file "
                          "must be the same everywhere",
                   cr->fingerprint);
    }
    cr->step++;
    check_redis_next(cr);
}

static void check_redis_next(struct check_redis *cr)
{
    const char *pfx = cr->cfg->redis.key_prefix;
    if (cr->step == 0)
        redis_command(cr->r, check_redis_reply, cr,
                      "CONFIG GET maxmemory-policy");
    else if (cr->step == 1)
        redis_command(cr->r, check_redis_reply, cr, "SET %scheck:hmac %s NX",
                      pfx, cr->fingerprint);
    else if (cr->step == 2)
        redis_command(cr->r, check_redis_reply, cr, "GET %scheck:hmac", pfx);
    else
        loop_stop(cr->loop);
}

/* What the Redis connection connects to, for messages. */
static const char *check_redis_where(const struct config *cfg, char *buf,
                                     size_t size)
{
    if (cfg->redis.n_sentinels > 0)
        snprintf(buf, size, "master '%s' (through the sentinels)",
                 cfg->redis.master_name);
    else
        snprintf(buf, size, "%s",
                 cfg->redis.addr.text ? cfg->redis.addr.text : "");
    return buf;
}

static void check_redis_state(void *arg, bool up)
{
    struct check_redis *cr = arg;
    char where[CONFIG_ID_MAX + 64];
    if (up && !cr->up) {
        cr->up = true;
        check_line(cr->rep, "ok", "redis", "reachable at %s",
                   check_redis_where(cr->cfg, where, sizeof(where)));
        check_redis_next(cr);
    }
}

static void check_redis_timeout(void *arg)
{
    struct check_redis *cr = arg;
    char where[CONFIG_ID_MAX + 64];
    check_line(cr->rep, "FAIL", "redis", "%s: %s",
               cr->up ? "no answer in time" : "not reachable",
               check_redis_where(cr->cfg, where, sizeof(where)));
    loop_stop(cr->loop);
}

/* Redis behind sentinels: each sentinel, and the master they name. */
static void check_sentinels(const struct config *cfg,
                            struct check_report *rep)
{
    struct check_sentinel_report sr;
    const char *name = cfg->redis.master_name;
    check_sentinel_ask(cfg, &sr);
    for (int i = 0; i < sr.n; i++) {
        const char *at = cfg->redis.sentinels[i].text;
        switch (sr.state[i]) {
        case CHECK_SENTINEL_NAMED:
            check_line(rep, "ok", "sentinel", "%s: master '%s' is %s", at,
                       name, sr.detail[i]);
            break;
        case CHECK_SENTINEL_UNKNOWN:
            check_line(rep, "FAIL", "sentinel", "%s knows no master named "
                       "'%s' (redis.master_name must be the name of its "
                       "'sentinel monitor' line)", at, name);
            break;
        case CHECK_SENTINEL_ERROR:
            check_line(rep, "FAIL", "sentinel", "%s: %s", at, sr.detail[i]);
            break;
        default:
            check_line(rep, sr.named ? "WARN" : "FAIL", "sentinel",
                       "%s not reachable (%s)", at, sr.detail[i]);
        }
    }
    if (!sr.named) {
        check_line(rep, "FAIL", "sentinel", "no sentinel names master '%s'",
                   name);
        return;
    }
    if (!sr.agree)
        check_line(rep, "WARN", "sentinel", "the sentinels name different "
                   "masters (a failover in progress?)");
    if (!sr.master_reached)
        check_line(rep, "FAIL", "redis", "master %s (named by the "
                   "sentinels) not reachable: %s", sr.master,
                   sr.master_error);
    else
        check_line(rep, strcmp(sr.role, "master") == 0 ? "ok" : "FAIL",
                   "redis", "%s says ROLE %s", sr.master,
                   sr.role[0] ? sr.role : "?");
}

static void check_redis(const struct config *cfg, struct check_report *rep)
{
    struct check_redis cr = {.cfg = cfg, .rep = rep, .loop = loop_new()};
    crypto_hmac_hex(cfg->hmac_key, cfg->hmac_key_len, "quorumgate-check", 16,
                    cr.fingerprint);
    struct redis_options opt = {.name = "check", .on_state = check_redis_state,
                                .state_arg = &cr};
    cr.r = redis_new(cr.loop, &cfg->redis, &opt);
    cr.timer = loop_timer_new(cr.loop, check_redis_timeout, &cr);
    loop_timer_start(cr.timer, cfg->redis.connect_timeout_ms +
                                   3 * cfg->redis.command_timeout_ms, 0);
    loop_run(cr.loop);
    redis_free(cr.r);
    loop_timer_free(cr.timer);
    loop_free(cr.loop);
}

/* A client certificate on quorumgate's own connections to the controllers
 * (upstream.tls.cert) is shown on behalf of every client (issue 14). */
static void check_upstream_cert(const struct config *cfg,
                                struct check_report *rep)
{
    if (!cfg->upstream.cert_file) {
        check_line(rep, "ok", "upstream", "no client certificate presented "
                   "to the controllers");
        return;
    }
    check_line(rep, "WARN", "upstream",
               "tls.cert %s is presented to the controllers on behalf of "
               "EVERY client: each client's request reaches the controller "
               "over a TLS connection carrying this certificate, so the "
               "controllers treat every client as having shown it "
               "(OpenZiti v1.5.4 sends every /oidc/authorize that names no "
               "login method to /oidc/login/cert, so such OIDC logins "
               "through quorumgate stop working; a certificate login would "
               "authenticate the client as this certificate's identity). "
               "Leave upstream.tls.cert out unless the controllers demand a "
               "client certificate on this API; certificate identities "
               "belong on the passthrough listener",
               cfg->upstream.cert_file);
}

/* upstream.batch_sends needs io_uring, which a kernel or a seccomp profile
 * (Docker's default) may refuse: quorumgate then sends one by one. */
static void check_upstream_batch(const struct config *cfg,
                                 struct check_report *rep)
{
    if (!cfg->upstream.batch_sends) {
        check_line(rep, "ok", "upstream", "batch_sends off: one send per "
                   "request");
        return;
    }
    const char *why = NULL;
    struct uring *u = uring_new(4, &why);
    if (u)
        check_line(rep, "ok", "upstream", "batch_sends: io_uring available");
    else
        check_line(rep, "WARN", "upstream", "batch_sends: %s: quorumgate "
                   "will send one request per system call (it works, with "
                   "more CPU per request)", why);
    uring_free(u);
}

int check_run(const struct config *cfg, FILE *out)
{
    struct check_report rep = {.out = out};
    int n = cfg->n_controllers < CHECK_MAX ? cfg->n_controllers : CHECK_MAX;
    struct check_node *nd = xcalloc((size_t)n, sizeof(*nd));
    for (int i = 0; i < n; i++)
        cluster_controller_urls(cfg, i, &nd[i].base, &nd[i].conn);
    check_basics(cfg, nd, n, &rep);
    check_members(cfg, nd, n, &rep);
    check_upstream_cert(cfg, &rep);
    check_upstream_batch(cfg, &rep);
    if (cfg->redis.n_sentinels > 0)
        check_sentinels(cfg, &rep);
    check_redis(cfg, &rep);
    for (int i = 0; i < cfg->relay.n_sources; i++) {
        const struct config_relay_source *s = &cfg->relay.sources[i];
        bool ok = access(s->path, R_OK) == 0;
        check_line(&rep, ok ? "ok" : "FAIL", s->id, "event file %s %s",
                   s->path, ok ? "readable" : "NOT readable");
    }
    for (int i = 0; i < n; i++) {
        free(nd[i].base);
        free(nd[i].conn);
        free(nd[i].version_url);
        free(nd[i].health_url);
        free(nd[i].login_url);
        free(nd[i].members_url);
        check_wipe(nd[i].login_body);
        check_wipe(nd[i].auth);
        upstream_req_free(&nd[i].version);
        upstream_req_free(&nd[i].health);
        upstream_req_free(&nd[i].login);
        upstream_req_free(&nd[i].members);
    }
    free(nd);
    fprintf(out, "%s: %s\n", cfg->path,
            rep.failed ? "NOT ready" : "ready: every check passed");
    return rep.failed ? 1 : 0;
}
