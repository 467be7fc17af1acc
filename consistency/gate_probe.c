/* gate_probe.c - the gate's probes: each controller still pending is asked
 * for the change's state (GET .../current-identity/mfa with the client's
 * own token, or GET /edge/management/v1/identities/{id} with a management
 * session for legacy sessions) until it acknowledges or the wait's watch
 * ends: at once when the answer is held, then when the change is expected
 * there (the replication lag this worker saw from that controller), then in
 * small even steps (1/32 of that lag, at least gate.probe.initial) up to
 * twice the expected lag, then with exponential backoff.  A controller that
 * keeps refusing the credential (401/403 three times, over a second) is
 * not asked again.  A controller that missed an earlier change of the
 * identity acknowledges a delete, or a verify read through the management
 * API, only once its answer cannot be from before this enrollment
 * (gate_probe_stale). */
#include "consistency/gate_impl.h"

#include <stdlib.h>
#include <string.h>

#include "consistency/ackstore.h"
#include "consistency/mgmt.h"
#include "config/config.h"
#include "base/http.h"
#include "base/loop.h"
#include "io/upstream.h"
#include "base/nodeset.h"
#include "base/util.h"
#include "metrics/metrics.h"
#include "routing/cluster.h"

static void gate_probe_again(struct gate_probe *p);
static void gate_probe_learn(struct gate_probe *p, bool ack);

/* A controller that missed an earlier change of the identity may answer
 * with a state from before this enrollment that looks like the change:
 *   delete: "gone" (404, another enrollment) is also what it says before it
 *           applies the enrollment's create;
 *   through the management API, isMfaEnabled names no enrollment: true may
 *           be an older verified enrollment whose delete it has not
 *           applied, false one it has not verified yet or the create it
 *           lacks.  A member behind by several changes of the identity
 *           shows false, true, false, true... as it catches up, so no
 *           sequence of its answers tells which is this change's
 *           (30-minute v1.7.2 run: a legacy verify's member, restarted
 *           while wedged, went from an older enrollment's "unverified" to
 *           its "verified" and was taken for this verify; its next change,
 *           that enrollment's delete, let a login in without TOTP).
 * Unless it acknowledged an earlier change of the enrollment that rules
 * that out (gate_probe_had), it acknowledges a delete read through the
 * client API only once it was seen holding the enrollment, and a change
 * read through the management API never: it stays pending, and fenced for
 * the identity until gate.fence_ttl or until a newer change is confirmed
 * there by enrollment id (found by bench/soak.py, issue 18). */
static bool gate_probe_stale(struct gate_probe *p, bool ack, bool by_mgmt,
                             const struct upstream_req *r)
{
    struct gate_wait *gw = p->gw;
    if (by_mgmt || gw->call != GATE_DELETE)
        return false;
    if (gate_acknowledges(GATE_CREATE, gw->mfa_id, r->status,
                          r->resp_body.data, r->resp_body.len))
        p->seen_before = true;
    return ack && p->seen_before;
}

/* The stale controllers whose answer reads as the change's without the
 * stale rule: they acknowledged an earlier change of this enrollment (in
 * Redis) that makes it unambiguous.  For a delete read through the
 * management API that is the verify only: isMfaEnabled is false for an
 * unverified enrollment as for none, so a controller that has the create
 * but not the verify would pass for one that has the delete (bench/soak.py,
 * issue 18: acked=ctrl1,ctrl2,ctrl3 while ctrl3 held the enrollment).
 * A controller that the read right before this change saw without the
 * earlier one is not exempted, whatever Redis says: that acknowledgement
 * was wrong or is of something else (30-minute v1.5.4 run, op 27098: a
 * legacy verify's probe took an older enrollment's isMfaEnabled true for
 * the verify, and at the delete the member's false counted as the
 * delete's). */
static uint64_t gate_probe_had(const struct gate_wait *gw, bool by_mgmt)
{
    uint64_t had = gw->had;
    if (gw->call == GATE_DELETE)
        had = by_mgmt ? gw->had_verified : gw->had | gw->had_verified;
    return had & ~gw->lacked;
}

/* What p's controller answered (p's own probe, or its host's): an
 * acknowledgement, a "not yet", or a refusal.  May free p's wait. */
static void gate_probe_answer(struct gate_probe *p, struct upstream_req *r)
{
    struct gate_wait *gw = p->gw;
    struct config *cfg = gate_cfg(gw->g);
    p->in_flight = false;
    bool by_mgmt = gw->legacy || p->mgmt;
    if (r->result == UPSTREAM_OK) {
        /* only the client's own credential refused says nothing of
         * replication (a forged token must not fence its identity
         * everywhere); quorumgate's management session refused is its own
         * problem, and the member may well lack the change (second
         * 30-minute v1.7.2 run, op 23737: a legacy verify's pending member
         * left unfenced, a login there without TOTP) */
        if ((r->status == 401 || r->status == 403) && !by_mgmt)
            gw->denied |= nodeset_of(p->node);
        else
            gw->answered |= nodeset_of(p->node);
    }
    bool ack;
    if (by_mgmt) {
        ack = r->result == UPSTREAM_OK &&
              gate_acknowledges_mgmt(gw->call, r->status, r->resp_body.data,
                                     r->resp_body.len);
        if (r->status == 401) /* the management session expired */
            mgmt_invalidate(gw->g->mgmt, p->node, p->token);
    } else {
        ack = r->result == UPSTREAM_OK &&
              gate_acknowledges(gw->call, gw->mfa_id, r->status,
                                r->resp_body.data, r->resp_body.len);
    }
    if ((gw->call == GATE_DELETE || (gw->call == GATE_VERIFY && by_mgmt)) &&
        nodeset_has(gw->stale & ~gate_probe_had(gw, by_mgmt), p->node) &&
        r->result == UPSTREAM_OK)
        ack = gate_probe_stale(p, ack, by_mgmt, r);
    if (ack || (r->result == UPSTREAM_OK &&
                (r->status == 200 || r->status == 404)))
        gate_probe_learn(p, ack); /* a real "there" or "not yet" */
    if (ack) {
        if (!gw->redis_lost)
            ackstore_ack_cb(gw->g->env.redis, cfg, gw->cid,
                            gw->g->env.cluster->nodes[p->node].id,
                            gw->g->env.count_cb,
                            gate_count(gw->g, M_REDIS_ACK_WRITE));
        gate_add_acks(gw, nodeset_of(p->node));
        gate_check(gw); /* may free gw */
        return;
    }
    if (r->result == UPSTREAM_OK && (r->status == 401 || r->status == 403) &&
        !by_mgmt && gw->call != GATE_CREATE && gw->identity[0] &&
        mgmt_configured(gw->g->mgmt)) {
        /* the client's token does not work there (a controller that does
         * not know its minter's signing key refuses it: keyrefusal.h); the
         * management API shows a verify or delete (isMfaEnabled) */
        p->mgmt = true;
        free(p->url);
        p->url = NULL;
        gate_probe_send(p);
        return;
    }
    if (r->result == UPSTREAM_OK && (r->status == 401 || r->status == 403) &&
        !by_mgmt &&
        ((++p->refusals >= 3 &&
          util_mono_ns() - gw->start_ns >= 1000000000ull) ||
         gw->key_refused)) {
        /* the client's credential does not work there, and kept not
         * working (a real controller may refuse a fresh OIDC token for a
         * moment after the login: observed on v1.5.4), or it is a token
         * other controllers refuse for good (keyrefusal.h) */
        p->refused = true;
        gate_give_up(gw, nodeset_of(p->node)); /* may free gw */
        return;
    }
    p->miss_ns = util_mono_ns();
    gate_probe_again(p);
}

/* The waits riding on p's answer take it: a real answer decides for them
 * as for p (same identity, same controller, asked after their change was
 * made); a refusal or no answer sends each of them on its own (another
 * call's credential may not be theirs). */
static void gate_probe_share(struct gate_probe *p, struct upstream_req *r)
{
    struct list riders, *n;
    bool usable = r->result == UPSTREAM_OK && r->status != 401 &&
                  r->status != 403;
    if (list_empty(&p->riders))
        return;
    /* taken off first: a rider's answer may end its own wait */
    list_init(&riders);
    list_insert_after(&p->riders, &riders);
    list_remove(&p->riders);
    while ((n = list_pop_head(&riders))) {
        struct gate_probe *q = list_entry(n, struct gate_probe, ride);
        q->host = NULL;
        if (usable) {
            gate_probe_answer(q, r); /* may free q's wait */
        } else {
            q->in_flight = false;
            loop_timer_start(q->timer, 0, 0);
        }
    }
}

static void gate_probe_done(struct upstream_req *r, void *arg)
{
    struct gate_probe *p = arg;
    p->sent = false;
    gate_probe_share(p, r);
    gate_probe_answer(p, r); /* may free p's wait */
}

void gate_probe_detach(struct gate_wait *gw)
{
    for (int i = 0; i < gw->n; i++) {
        struct gate_probe *p = &gw->probes[i];
        struct list *n;
        if (p->host) {
            list_remove(&p->ride);
            p->host = NULL;
            p->in_flight = false;
        }
        while ((n = list_pop_head(&p->riders))) {
            struct gate_probe *q = list_entry(n, struct gate_probe, ride);
            q->host = NULL;
            q->in_flight = false;
            loop_timer_start(q->timer, 0, 0); /* on its own, from the loop */
        }
    }
}

/* The expected lag of p's controller tracks the 75th percentile of the
 * time a change takes to get there: the probe sent at that time (the
 * second) finds it three times in four, so most held calls cost two
 * probes per controller and end within a step of the change arriving.
 * The first acknowledgement sets it; then each answer to a first or
 * second probe moves it a step (down 1/4 when found, up 3/4 when not). */
static void gate_probe_learn(struct gate_probe *p, bool ack)
{
    struct gate_wait *gw = p->gw;
    struct gate *g = gw->g;
    uint64_t *est = &g->lag_est_us[p->node];
    if (!g->lag_known[p->node]) {
        if (!ack)
            return;
        uint64_t at = p->miss_ns && p->miss_ns < p->sent_ns
                          ? p->miss_ns + (p->sent_ns - p->miss_ns) / 2
                          : p->sent_ns;
        uint64_t cap_us = gate_cfg(g)->gate.probe_max_ms * 1000;
        *est = p->tries <= 1 || at <= gw->start_ns
                   ? 0
                   : (at - gw->start_ns) / 1000;
        if (*est > cap_us)
            *est = cap_us;
        g->lag_known[p->node] = true;
        return;
    }
    if (p->tries > 2)
        return;
    uint64_t step = *est / 8 > 500 ? *est / 8 : 500;
    if (ack)
        *est = *est > step / 4 ? *est - step / 4 : 0;
    else if (p->tries == 2)
        *est += step * 3 / 4;
}

/* Schedules the next probe of p's controller: after the first "not yet",
 * when the change is expected there; then with backoff. */
static void gate_probe_again(struct gate_probe *p)
{
    struct gate_wait *gw = p->gw;
    struct gate *g = gw->g;
    struct config *cfg = gate_cfg(g);
    uint64_t now = loop_now_ms(g->env.loop);
    uint64_t delay = p->delay_ms;
    if (p->tries == 1 && g->lag_known[p->node]) {
        uint64_t elapsed_us = (util_mono_ns() - gw->start_ns) / 1000;
        uint64_t est = g->lag_est_us[p->node];
        delay = est > elapsed_us ? (est - elapsed_us + 999) / 1000 : 1;
        if (delay > cfg->gate.probe_max_ms)
            delay = cfg->gate.probe_max_ms;
    } else if (g->lag_known[p->node] &&
               (util_mono_ns() - gw->start_ns) / 1000 <
                   2 * g->lag_est_us[p->node] + 20000) {
        /* late, but within what replication usually takes: small even
         * steps (1/32 of the expected lag), so the answer follows the
         * change closely whatever the spread */
        delay = g->lag_est_us[p->node] / 32000;
        if (delay < cfg->gate.probe_initial_ms)
            delay = cfg->gate.probe_initial_ms;
        if (delay > cfg->gate.probe_max_ms)
            delay = cfg->gate.probe_max_ms;
    } else {
        p->delay_ms *= 2;
        if (p->delay_ms > cfg->gate.probe_max_ms)
            p->delay_ms = cfg->gate.probe_max_ms;
    }
    if (now + delay >= gw->end_ms)
        return; /* the deadline timer takes it from here */
    loop_timer_start(p->timer, delay, 0);
}

/* May q (another wait's probe at p's controller) take p's answer: the
 * same identity, asked the same way, and q would be asking too. */
static bool gate_probe_alike(const struct gate_probe *p,
                             const struct gate_probe *q)
{
    const struct gate_wait *gw = p->gw, *o = q->gw;
    return o != gw && !o->dead && strcmp(o->idhex, gw->idhex) == 0 &&
           (o->legacy || q->mgmt) == (gw->legacy || p->mgmt) && !q->refused &&
           !nodeset_has(o->acked, q->node) &&
           !(o->released && !nodeset_has(o->fenced, q->node));
}

/* p's probe goes out now: the same identity's other waits whose probe of
 * that controller is only scheduled (not out) take its answer instead (it
 * is asked after their changes were made). */
static void gate_probe_gather(struct gate_probe *p)
{
    struct gate_wait *gw = p->gw;
    struct gate *g = gw->g;
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &g->by_id[gate_bucket(gw->idhex)]) {
        struct gate_wait *o = list_entry(pos, struct gate_wait, id_link);
        struct gate_probe *q = &o->probes[p->node];
        if (!gate_probe_alike(p, q) || q->in_flight ||
            !loop_timer_active(q->timer))
            continue;
        loop_timer_stop(q->timer);
        list_insert_tail(&p->riders, &q->ride);
        q->host = p;
        q->in_flight = true;
        q->tries++;
        q->sent_ns = p->sent_ns;
        metrics_inc(g->env.metrics, M_REPLICATION_PROBES_COALESCED_TOTAL,
                    q->node);
    }
}

/* Sends p's probe (p->url set) with one credential header line. */
static void gate_probe_start(struct gate_probe *p, const char *auth_line)
{
    struct gate_wait *gw = p->gw;
    const struct gate_env *env = &gw->g->env;
    struct cluster *c = env->cluster;
    uint64_t now = loop_now_ms(env->loop);
    p->hdr_lines[0] = "Accept: application/json";
    p->hdr_lines[1] = auth_line;
    p->req.method = HTTP_GET;
    p->req.url = p->url;
    p->req.connect_to = c->nodes[p->node].connect_to;
    p->req.headers = p->hdr_lines;
    p->req.n_headers = 2;
    p->req.timeout_ms = gw->end_ms > now ? gw->end_ms - now : 1;
    if (p->req.timeout_ms > gate_cfg(gw->g)->gate.timeout_ms)
        p->req.timeout_ms = gate_cfg(gw->g)->gate.timeout_ms;
    p->req.max_response = 256 * 1024;
    p->req.done = gate_probe_done;
    p->req.arg = p;
    p->in_flight = true;
    p->sent = true;
    p->tries++;
    p->sent_ns = util_mono_ns();
    metrics_inc(env->metrics, M_REPLICATION_PROBES_TOTAL, p->node);
    gate_probe_gather(p);
    upstream_start(env->up, &p->req);
}

/* Another held call of the same identity has a probe of the same kind out
 * at p's controller, sent after p's change was made: p takes its answer
 * instead of sending its own.  true when p now rides on it. */
static bool gate_probe_ride(struct gate_probe *p)
{
    struct gate_wait *gw = p->gw;
    struct gate *g = gw->g;
    bool by_mgmt = gw->legacy || p->mgmt;
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &g->by_id[gate_bucket(gw->idhex)]) {
        struct gate_wait *o = list_entry(pos, struct gate_wait, id_link);
        struct gate_probe *q = &o->probes[p->node];
        if (o == gw || strcmp(o->idhex, gw->idhex) != 0 || !q->sent ||
            (o->legacy || q->mgmt) != by_mgmt || q->sent_ns < gw->start_ns)
            continue;
        /* q's own wait may be done asking there: its probe still answers */
        list_insert_tail(&q->riders, &p->ride);
        p->host = q;
        p->in_flight = true;
        p->tries++;
        p->sent_ns = q->sent_ns;
        metrics_inc(g->env.metrics, M_REPLICATION_PROBES_COALESCED_TOTAL,
                    p->node);
        return true;
    }
    return false;
}

/* gate.probe.budget: this worker's share of the probes per second allowed
 * per controller.  0 when p may go now; else the ms until it may. */
static uint64_t gate_probe_budget(struct gate_probe *p)
{
    struct gate *g = p->gw->g;
    struct config *cfg = gate_cfg(g);
    uint64_t now = loop_now_ms(g->env.loop);
    int i = p->node;
    if (!cfg->gate.probe_budget)
        return 0;
    /* thousandths of a probe per ms = probes per second per worker */
    uint64_t workers = cfg->workers ? cfg->workers : 1;
    uint64_t rate = cfg->gate.probe_budget / workers;
    if (rate < 1)
        rate = 1;
    uint64_t cap = rate * 1000; /* one second's worth */
    if (!g->budget_ms[i]) {
        g->budget_milli[i] = cap;
    } else if (now > g->budget_ms[i]) {
        g->budget_milli[i] += (now - g->budget_ms[i]) * rate;
        if (g->budget_milli[i] > cap)
            g->budget_milli[i] = cap;
    }
    g->budget_ms[i] = now ? now : 1;
    if (g->budget_milli[i] >= 1000) {
        g->budget_milli[i] -= 1000;
        return 0;
    }
    metrics_inc(g->env.metrics, M_REPLICATION_PROBES_DEFERRED_TOTAL, i);
    return (1000 - g->budget_milli[i] + rate - 1) / rate;
}

/* Legacy: a management session for p's controller arrived (or not). */
static void gate_probe_token(void *arg, const char *token)
{
    struct gate_probe *p = arg;
    struct gate_wait *gw = p->gw;
    struct cluster *c = gw->g->env.cluster;
    p->in_flight = false;
    if (!token) {
        gate_probe_again(p);
        return;
    }
    free(p->token);
    p->token = xstrdup(token);
    free(p->auth);
    p->auth = xasprintf("zt-session: %s", token);
    if (!p->url)
        p->url = xasprintf("%s/edge/management/v1/identities/%s",
                           c->nodes[p->node].base_url, gw->identity);
    gate_probe_start(p, p->auth);
}

void gate_probe_send(void *arg)
{
    struct gate_probe *p = arg;
    struct gate_wait *gw = p->gw;
    const struct gate_env *env = &gw->g->env;
    struct cluster *c = env->cluster;
    uint64_t now = loop_now_ms(env->loop);
    if (p->in_flight || p->refused || nodeset_has(gw->acked, p->node) ||
        now >= gw->end_ms)
        return;
    if (gw->released && !nodeset_has(gw->fenced, p->node))
        return; /* answered, and nothing of ours to lift there */
    if (!gw->legacy && !p->mgmt && !gw->auth)
        return;
    if (gate_probe_ride(p))
        return;
    uint64_t wait = gate_probe_budget(p);
    if (wait) {
        if (now + wait < gw->end_ms)
            loop_timer_start(p->timer, wait, 0);
        return;
    }
    if (gw->legacy || p->mgmt) {
        p->in_flight = true;
        mgmt_token(gw->g->mgmt, p->node, gate_probe_token, p);
        return;
    }
    if (!gw->auth)
        return;
    if (!p->url)
        p->url = xasprintf("%s%s", c->nodes[p->node].base_url,
                           gw->state_path);
    gate_probe_start(p, gw->auth);
}

void gate_probe_all(struct gate_wait *gw)
{
    uint64_t targets = gw->all & ~gw->acked;
    for (int i = 0; i < gw->n; i++)
        if (nodeset_has(targets, i) &&
            !loop_timer_active(gw->probes[i].timer))
            gate_probe_send(&gw->probes[i]);
}
