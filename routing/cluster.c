/* cluster.c - see cluster.h. */
#include "routing/cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/nodeset.h"
#include "base/util.h"

void cluster_controller_urls(const struct config *cfg, int i,
                             char **base_url, char **connect_to)
{
    const struct config_controller *cc = &cfg->controllers[i];
    const char *name = cfg->upstream.server_name;
    bool v6 = strchr(cc->host, ':') != NULL;
    *connect_to = NULL;
    if (name && strcmp(name, cc->host) != 0) {
        *base_url = xasprintf("%s://%s:%u", cc->scheme, name, cc->port);
        *connect_to = xasprintf("%s:%u:%s%s%s:%u", name, cc->port,
                                v6 ? "[" : "", cc->host, v6 ? "]" : "",
                                cc->port);
    } else {
        *base_url = xasprintf("%s://%s%s%s:%u", cc->scheme, v6 ? "[" : "",
                              cc->host, v6 ? "]" : "", cc->port);
    }
}

struct cluster *cluster_new(const struct config *cfg)
{
    struct cluster *c = xcalloc(1, sizeof(*c));
    c->n = cfg->n_controllers;
    c->nodes = xcalloc((size_t)c->n, sizeof(*c->nodes));
    for (int i = 0; i < c->n; i++) {
        const struct config_controller *cc = &cfg->controllers[i];
        struct cluster_node *nd = &c->nodes[i];
        nd->index = i;
        snprintf(nd->id, sizeof(nd->id), "%s", cc->id);
        cluster_controller_urls(cfg, i, &nd->base_url, &nd->connect_to);
    }
    /* Until its first probe answers, a controller counts as up: requests
     * that arrive in the first milliseconds are balanced (and retried
     * elsewhere if it is in fact down) rather than refused. */
    for (int i = 0; i < c->n; i++)
        atomic_store(&c->nodes[i].up, 1);
    atomic_store(&c->leader, -1);
    atomic_store(&c->no_leader_since_ms, util_mono_ms());
    return c;
}

void cluster_free(struct cluster *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++) {
        free(c->nodes[i].base_url);
        free(c->nodes[i].connect_to);
    }
    free(c->nodes);
    free(c);
}

int cluster_index(const struct cluster *c, const char *id)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->nodes[i].id, id) == 0)
            return i;
    return -1;
}

int cluster_count_up(const struct cluster *c)
{
    int n = 0;
    for (int i = 0; i < c->n; i++)
        n += cluster_up(c, i);
    return n;
}

/* The leader is the healthy node claiming leadership; when two claim it
 * (an old leader that has not stepped down yet), the newest claim wins. */
static bool cluster_elect(struct cluster *c, uint64_t now_ms)
{
    int best = -1;
    uint64_t best_since = 0;
    for (int i = 0; i < c->n; i++) {
        struct cluster_node *nd = &c->nodes[i];
        if (!atomic_load(&nd->up) || !atomic_load(&nd->claims_leader))
            continue;
        uint64_t since = atomic_load(&nd->leader_since_ms);
        if (best < 0 || since > best_since) {
            best = i;
            best_since = since;
        }
    }
    int old = atomic_load(&c->leader);
    if (best == old)
        return false;
    atomic_store_explicit(&c->leader, best, memory_order_release);
    if (best >= 0) {
        atomic_fetch_add(&c->leader_changes, 1);
        atomic_store(&c->leader_known_since_ms, now_ms);
        atomic_store(&c->no_leader_since_ms, 0);
    } else {
        atomic_store(&c->no_leader_since_ms, now_ms);
    }
    return true;
}

static bool cluster_set_up(struct cluster_node *nd, bool up)
{
    int old = atomic_exchange(&nd->up, up ? 1 : 0);
    if (up && !old)
        atomic_fetch_add(&nd->recoveries, 1);
    return old != (up ? 1 : 0);
}

bool cluster_note_once(struct cluster *c, int i, enum cluster_note n)
{
    atomic_uint_fast64_t *noted = &c->nodes[i].noted[n];
    uint64_t now = atomic_load(&c->nodes[i].recoveries) + 1;
    uint64_t old = atomic_load(noted);
    return old != now && atomic_compare_exchange_strong(noted, &old, now);
}

bool cluster_probe_result(struct cluster *c, int i, int status,
                          bool is_leader, const char *error, uint32_t rise,
                          uint32_t fall, uint64_t now_ms)
{
    struct cluster_node *nd = &c->nodes[i];
    bool healthy = status == 200 || status == 429;
    bool changed = false;
    atomic_store(&nd->last_status, status);
    atomic_store(&nd->last_probe_wall_ms, util_wall_ms());
    snprintf(nd->last_error, sizeof(nd->last_error), "%s",
             error ? error : "");
    if (healthy) {
        nd->fail_streak = 0;
        nd->ok_streak++;
        if (!nd->probed_once || nd->ok_streak >= rise)
            changed |= cluster_set_up(nd, true);
    } else {
        nd->ok_streak = 0;
        nd->fail_streak++;
        if (!nd->probed_once || nd->fail_streak >= fall)
            changed |= cluster_set_up(nd, false);
    }
    nd->probed_once = true;
    if (!atomic_load(&c->settled)) {
        bool all = true;
        for (int k = 0; k < c->n; k++)
            all &= c->nodes[k].probed_once;
        if (all) {
            atomic_store(&c->settled, true);
            changed = true;
        }
    }
    /* A follower's 429 ends a claim at once; a failed probe of a node that
     * is still up (fall not reached) keeps its last claim, as it keeps the
     * node. */
    bool claims = healthy ? is_leader
                          : atomic_load(&nd->up) &&
                                atomic_load(&nd->claims_leader);
    if (claims && !atomic_load(&nd->claims_leader))
        atomic_store(&nd->leader_since_ms, now_ms);
    if (atomic_exchange(&nd->claims_leader, claims ? 1 : 0) != claims)
        changed = true;
    changed |= cluster_elect(c, now_ms);
    if (changed)
        atomic_fetch_add(&c->generation, 1);
    return changed;
}

bool cluster_passive_failure(struct cluster *c, int i, const char *why,
                             uint32_t fall, uint64_t now_ms)
{
    struct cluster_node *nd = &c->nodes[i];
    bool changed = false;
    nd->ok_streak = 0;
    nd->fail_streak++;
    snprintf(nd->last_error, sizeof(nd->last_error), "passive: %s", why);
    if (nd->fail_streak >= fall)
        changed |= cluster_set_up(nd, false);
    changed |= cluster_elect(c, now_ms);
    if (changed)
        atomic_fetch_add(&c->generation, 1);
    return changed;
}

const char *cluster_method_name(enum cluster_method m)
{
    return m == CLUSTER_BY_LIST_MEMBERS ? "list-members" : "health-checks";
}

void cluster_names(const struct cluster *c, uint64_t mask, struct buf *b)
{
    bool first = true;
    for (int i = 0; i < c->n; i++) {
        if (!nodeset_has(mask, i))
            continue;
        buf_printf(b, "%s%s", first ? "" : ",", c->nodes[i].id);
        first = false;
    }
}
