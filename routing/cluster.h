/* cluster.h - the cluster view: which controllers are up, which one leads.
 *
 * Written only by the control thread (health probes, passive reports it
 * turns into probes); read lock-free by every worker on the request path.
 * The one exception: workers mark what they logged (cluster_note_once).
 *
 * Ownership: the app owns the struct cluster; it lives as long as the
 * process (the controller list is restart-only configuration). */
#ifndef QG_CLUSTER_H
#define QG_CLUSTER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

/* How a controller's role is learned (see health.h). */
enum cluster_method {
    CLUSTER_BY_HEALTH_CHECK = 0, /* GET health.path: 200 leader, 429 follower */
    CLUSTER_BY_LIST_MEMBERS,     /* GET /fabric/v1/cluster/list-members */
};

/* Things said about a controller once per episode of trouble (from the
 * moment it is seen in trouble until it is next marked up). */
enum cluster_note {
    CLUSTER_NOTE_HOME_DOWN = 0,   /* a hard home sent to while marked down */
    CLUSTER_NOTE_HOME_UNREACHABLE,/* a hard home that could not be reached */
    CLUSTER_NOTE__COUNT
};

struct cluster_node {
    /* constant after cluster_new */
    int index;
    char id[CONFIG_ID_MAX];
    char *base_url;          /* owned: scheme://name:port (no slash) */
    char *connect_to;        /* owned: "name:port:host:port" or NULL */

    /* shared, atomic */
    atomic_int up;           /* 1 when healthy (rise/fall applied) */
    atomic_int claims_leader;/* last probe answered 200 */
    atomic_uint_fast64_t last_probe_wall_ms;
    atomic_int last_status;  /* HTTP status of the last probe, 0 = none */
    atomic_uint_fast64_t leader_since_ms; /* mono ms it last became leader */
    atomic_int method;       /* enum cluster_method: how it is watched */
    atomic_int read_only;    /* 1 when it reports a read-only mesh (mixed
                                versions: every write fails) */
    atomic_uint_fast64_t recoveries; /* times it came up: an episode of
                                trouble ends with the next one */

    /* shared, written by workers (cluster_note_once) */
    atomic_uint_fast64_t noted[CLUSTER_NOTE__COUNT]; /* per note:
                                recoveries + 1 when last said, 0 = never */

    /* control thread only */
    char version[32];        /* as list-members reports it ("" = unknown) */
    bool probed_once;
    uint32_t ok_streak, fail_streak;
    char last_error[96];
};

struct cluster {
    int n;
    struct cluster_node *nodes;       /* owned array of n */
    atomic_int leader;                /* index, -1 = none known */
    atomic_uint_fast64_t leader_changes;
    atomic_uint_fast64_t leader_known_since_ms; /* mono */
    atomic_uint_fast64_t no_leader_since_ms;    /* mono, 0 while known */
    atomic_uint_fast64_t generation;  /* bumps on any up/leader change */
    atomic_bool settled;              /* every controller probed once */
};

struct cluster *cluster_new(const struct config *cfg);
/* Controller i's URL base (scheme://name:port, upstream.server_name as the
 * name when set) and, with a server name, the curl connect-to line that
 * reaches its own address (else NULL).  Both malloc'ed. */
void cluster_controller_urls(const struct config *cfg, int i,
                             char **base_url, char **connect_to);
void cluster_free(struct cluster *c);

static inline int cluster_leader(const struct cluster *c)
{
    return atomic_load_explicit(&c->leader, memory_order_acquire);
}

static inline bool cluster_up(const struct cluster *c, int i)
{
    return atomic_load_explicit(&c->nodes[i].up, memory_order_relaxed) != 0;
}

int cluster_index(const struct cluster *c, const char *id);

/* Appends the ids of the members in mask to b, comma separated, in
 * configuration order ("ctrl1,ctrl3"); nothing when mask is empty. */
struct buf;
void cluster_names(const struct cluster *c, uint64_t mask, struct buf *b);

/* true for the first caller (any thread) since node i last came up. */
bool cluster_note_once(struct cluster *c, int i, enum cluster_note n);

/* A probe result for node i (control thread).  status 0 = no answer;
 * is_leader from the body when it could be read (else from the status).
 * Returns true when anything visible changed (up/down or leader). */
bool cluster_probe_result(struct cluster *c, int i, int status,
                          bool is_leader, const char *error, uint32_t rise,
                          uint32_t fall, uint64_t now_ms);
/* A worker saw node i fail passively (refused, 503 CLUSTER_NO_LEADER):
 * counted like a failed probe (control thread). */
bool cluster_passive_failure(struct cluster *c, int i, const char *why,
                             uint32_t fall, uint64_t now_ms);

/* Number of nodes currently up. */
int cluster_count_up(const struct cluster *c);

static inline bool cluster_read_only(const struct cluster *c, int i)
{
    return atomic_load_explicit(&c->nodes[i].read_only,
                                memory_order_relaxed) != 0;
}

const char *cluster_method_name(enum cluster_method m);

#endif
