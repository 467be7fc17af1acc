/* gate_before.c - see gate_before.h: every controller's state of an
 * enrollment, read before its delete is sent. */
#include "consistency/gate_before.h"

#include <stdlib.h>
#include <string.h>

#include "base/http.h"
#include "base/loop.h"
#include "base/nodeset.h"
#include "base/util.h"
#include "config/config.h"
#include "consistency/gate.h"
#include "consistency/gate_impl.h"
#include "consistency/mgmt.h"
#include "io/upstream.h"
#include "metrics/metrics.h"
#include "routing/cluster.h"

/* One controller's read; owned by its struct gate_before. */
struct gate_before_read {
    struct gate_before *b;        /* borrowed: the owner */
    int node;
    bool mgmt;                    /* through the management API */
    bool out;                     /* a login or the request is running */
    struct upstream_req req;      /* owned response buffers */
    char *url;                    /* owned */
    char *session;                /* owned: "zt-session: ..." (mgmt) */
    const char *hdr_lines[2];     /* [1] borrowed: auth or session */
};

struct gate_before {
    struct gate *g;               /* borrowed */
    gate_before_cb done;
    void *arg;
    struct gate_before_result res;
    char *identity, *mfa_id;      /* owned copies */
    char *auth;                   /* owned: "Authorization: ..." or NULL */
    int pending;                  /* reads still out */
    uint64_t asked;               /* the controllers read */
    struct loop_timer *timer;     /* owned: the bound, then the finish */
    int n;
    struct gate_before_read reads[CONFIG_MAX_CONTROLLERS];
};

/* How long the reads may take: twice gate.probe.max, at least a second (a
 * controller not read in time counts as stale, which a busy one should not
 * be for want of a few hundred milliseconds). */
static uint64_t gate_before_bound(const struct config *cfg)
{
    uint64_t b = 2 * cfg->gate.probe_max_ms;
    return b < 1000 ? 1000 : b;
}

static void gate_before_free(struct gate_before *b)
{
    struct upstream *up = b->g->env.up;
    for (int i = 0; i < b->n; i++) {
        struct gate_before_read *rd = &b->reads[i];
        if (rd->req.priv)
            upstream_cancel(up, &rd->req);
        mgmt_cancel(b->g->mgmt, rd);
        upstream_req_free(&rd->req);
        free(rd->url);
        if (rd->session)
            explicit_bzero(rd->session, strlen(rd->session));
        free(rd->session);
    }
    loop_timer_free(b->timer);
    if (b->auth)
        explicit_bzero(b->auth, strlen(b->auth));
    free(b->auth);
    free(b->identity);
    free(b->mfa_id);
    free(b);
}

/* The bound passed, or every read is in: report and go. */
static void gate_before_finish(void *arg)
{
    struct gate_before *b = arg;
    struct gate_before_result res = b->res;
    res.unread = b->asked & ~(res.holding | res.gone | res.enabled |
                              res.disabled);
    gate_before_cb done = b->done;
    void *done_arg = b->arg;
    gate_before_free(b);
    done(done_arg, &res);
}

static void gate_before_read_end(struct gate_before_read *rd)
{
    struct gate_before *b = rd->b;
    rd->out = false;
    if (--b->pending == 0)
        loop_timer_start(b->timer, 0, 0); /* from the loop, never inside */
}

static void gate_before_answer(struct upstream_req *r, void *arg)
{
    struct gate_before_read *rd = arg;
    struct gate_before *b = rd->b;
    uint64_t bit = nodeset_of(rd->node);
    if (r->result == UPSTREAM_OK && rd->mgmt) {
        if (r->status == 401 && rd->session)
            mgmt_invalidate(b->g->mgmt, rd->node,
                            rd->session + strlen("zt-session: "));
        if (gate_acknowledges_mgmt(GATE_VERIFY, r->status, r->resp_body.data,
                                   r->resp_body.len))
            b->res.enabled |= bit;
        else if (gate_acknowledges_mgmt(GATE_DELETE, r->status,
                                        r->resp_body.data, r->resp_body.len))
            b->res.disabled |= bit;
    } else if (r->result == UPSTREAM_OK) {
        if (gate_acknowledges(GATE_CREATE, b->mfa_id, r->status,
                              r->resp_body.data, r->resp_body.len))
            b->res.holding |= bit;
        else if (gate_acknowledges(GATE_DELETE, b->mfa_id, r->status,
                                   r->resp_body.data, r->resp_body.len))
            b->res.gone |= bit;
    }
    gate_before_read_end(rd);
}

static void gate_before_send(struct gate_before_read *rd, const char *auth)
{
    struct gate_before *b = rd->b;
    const struct gate_env *env = &b->g->env;
    uint64_t bound = gate_before_bound(gate_cfg(b->g));
    rd->hdr_lines[0] = "Accept: application/json";
    rd->hdr_lines[1] = auth;
    rd->req.method = HTTP_GET;
    rd->req.url = rd->url;
    rd->req.connect_to = env->cluster->nodes[rd->node].connect_to;
    rd->req.headers = rd->hdr_lines;
    rd->req.n_headers = 2;
    rd->req.timeout_ms = bound;
    rd->req.max_response = 256 * 1024;
    rd->req.done = gate_before_answer;
    rd->req.arg = rd;
    metrics_inc(env->metrics, M_REPLICATION_PROBES_TOTAL, rd->node);
    upstream_start(env->up, &rd->req);
}

/* A management session for rd's controller (or none). */
static void gate_before_session(void *arg, const char *token)
{
    struct gate_before_read *rd = arg;
    struct gate_before *b = rd->b;
    if (!token) {
        gate_before_read_end(rd);
        return;
    }
    rd->session = xasprintf("zt-session: %s", token);
    rd->url = xasprintf("%s/edge/management/v1/identities/%s",
                        b->g->env.cluster->nodes[rd->node].base_url,
                        b->identity);
    gate_before_send(rd, rd->session);
}

struct gate_before *gate_before_start(struct gate *g,
                                      const struct gate_before_args *a)
{
    const struct cluster *c = g->env.cluster;
    /* a delete's isMfaEnabled says something only of a verified
     * enrollment; a verify's client-API reads name the enrollment: no
     * doubt there */
    bool can_mgmt = (a->call == GATE_VERIFY || a->verified) && a->identity &&
                    a->identity[0] && mgmt_configured(g->mgmt);
    bool can_token = a->call == GATE_DELETE && !a->legacy &&
                     a->authorization && a->state_path && a->mfa_id &&
                     a->mfa_id[0];
    if (c->n < 2 || (!can_mgmt && !can_token))
        return NULL;
    struct gate_before *b = xcalloc(1, sizeof(*b));
    b->g = g;
    b->done = a->done;
    b->arg = a->arg;
    b->n = c->n;
    b->identity = xstrdup(a->identity ? a->identity : "");
    b->mfa_id = xstrdup(a->mfa_id ? a->mfa_id : "");
    if (can_token)
        b->auth = xasprintf("Authorization: %s", a->authorization);
    b->timer = loop_timer_new(g->env.loop, gate_before_finish, b);
    /* counted first: a session callback may end a read at once */
    for (int i = 0; i < c->n; i++) {
        struct gate_before_read *rd = &b->reads[i];
        rd->b = b;
        rd->node = i;
        rd->mgmt = a->legacy || nodeset_has(a->refused, i);
        if (rd->mgmt ? can_mgmt : can_token) {
            rd->out = true;
            b->pending++;
            b->asked |= nodeset_of(i);
        }
    }
    if (!b->pending) {
        gate_before_free(b);
        return NULL;
    }
    loop_timer_start(b->timer, gate_before_bound(gate_cfg(g)), 0);
    for (int i = 0; i < c->n; i++) {
        struct gate_before_read *rd = &b->reads[i];
        if (!rd->out)
            continue;
        if (rd->mgmt) {
            mgmt_token(g->mgmt, i, gate_before_session, rd);
        } else {
            rd->url = xasprintf("%s%s", c->nodes[i].base_url, a->state_path);
            gate_before_send(rd, b->auth);
        }
    }
    return b;
}

void gate_before_cancel(struct gate_before *b)
{
    if (b)
        gate_before_free(b);
}
