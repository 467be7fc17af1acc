/* route.c - see route.h. */
#include "routing/route.h"

#include "base/nodeset.h"
#include "retry/policy.h"
#include "routing/cluster.h"

int route_p2c(const int *outstanding, uint64_t mask, int n, uint64_t *rng)
{
    int idx[64], k = 0;
    for (int i = 0; i < n && i < 64; i++)
        if (nodeset_has(mask, i))
            idx[k++] = i;
    if (k == 0)
        return -1;
    if (k == 1)
        return idx[0];
    int a = idx[policy_rand(rng) % (uint64_t)k];
    int b = idx[policy_rand(rng) % (uint64_t)(k - 1)];
    if (b == a)
        b = idx[k - 1];
    return outstanding[b] < outstanding[a] ? b : a;
}

static uint64_t route_up_mask(const struct cluster *c)
{
    uint64_t m = 0;
    for (int i = 0; i < c->n && i < 64; i++)
        if (cluster_up(c, i))
            m |= nodeset_of(i);
    return m;
}

void route_pick(const struct cluster *c, const struct route_in *in,
                const int *outstanding, uint64_t *rng, struct route_out *out)
{
    uint64_t up = route_up_mask(c);
    /* fences never cover every healthy controller: where all of them are
     * fenced, none is (a request served beats a 503 for everyone) */
    uint64_t fenced = (up & ~in->fenced) ? in->fenced : 0;
    uint64_t allowed = up & ~fenced;
    out->node = -1;
    out->fenced_skip = false;
    out->home_down = false;

    if (in->home_gone || in->home >= c->n) {
        out->decision = DECISION_STICKY_HIT;
        out->kind = ROUTE_HOME_GONE;
        return;
    }
    if (in->home >= 0) {
        /* down by the probes' account (timeouts, 5xx, the fall rule) is no
         * proof the state is gone: a slow home still answers its own */
        out->decision = DECISION_STICKY_HIT;
        out->kind = ROUTE_TO;
        out->node = in->home;
        out->home_down = !nodeset_has(up, in->home);
        return;
    }

    int leader = cluster_leader(c);
    if (in->pin != PIN_NONE && leader < 0 && !atomic_load(&c->settled)) {
        /* just started: the first probes will say who leads */
        out->kind = ROUTE_WAIT_LEADER;
        out->decision = DECISION_NO_LEADER_WAIT;
        return;
    }
    if (leader >= 0 && leader == in->not_leader &&
        atomic_load(&c->generation) == in->not_leader_gen &&
        atomic_load(&c->nodes[leader].last_probe_wall_ms) <=
            in->not_leader_wall_ms)
        leader = -1; /* it said it is not leading: wait for a new view */
    /* A preferred leader that already failed this request (refused it,
     * timed out...) is a preference no longer: the retry goes elsewhere. */
    if (in->pin == PIN_PREFER_LEADER && leader >= 0 &&
        nodeset_has(in->tried, leader))
        leader = -1;
    if (in->pin != PIN_NONE && leader >= 0 && nodeset_has(up, leader)) {
        if (!nodeset_has(fenced, leader)) {
            out->kind = ROUTE_TO;
            out->node = leader;
            out->decision = DECISION_PINNED;
            return;
        }
        out->fenced_skip = true;
    }
    if (in->pin == PIN_REQUIRE_LEADER) {
        out->kind = ROUTE_WAIT_LEADER;
        out->decision = DECISION_NO_LEADER_WAIT;
        return;
    }

    uint64_t mask = allowed & ~in->tried;
    if (!mask)
        mask = allowed; /* everyone tried: start over rather than fail */
    out->fenced_skip |= (up & fenced) != 0;
    out->node = route_p2c(outstanding, mask, c->n, rng);
    out->kind = out->node >= 0 ? ROUTE_TO : ROUTE_NO_HEALTHY;
    out->decision = out->fenced_skip ? DECISION_FENCED_SKIP
                                     : DECISION_BALANCED;
}

const char *route_decision_name(enum route_decision d)
{
    static const char *const names[DECISION__COUNT] = {
        "pinned",       "sticky_hit", "sticky_miss",
        "fenced_skip",  "no_leader_wait", "balanced",
    };
    return (unsigned)d < DECISION__COUNT ? names[d] : "balanced";
}
