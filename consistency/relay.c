/* relay.c - see relay.h. */
#include "consistency/relay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "consistency/ackstore.h"
#include "consistency/gate.h"
#include "io/redis.h"
#include "metrics/metrics.h"
#include "base/buf.h"
#include "config/config.h"
#include "base/json.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/util.h"
#include "retry/reconcile.h"

#define RELAY_READ_MAX (1024 * 1024)   /* per file per poll */
#define RELAY_LINE_MAX (4 * 1024 * 1024)
#define RELAY_PENDING_MAX 100000

/* One acknowledgement on its way to Redis (owned by the relay's list). */
struct relay_ack {
    struct relay *r;                  /* borrowed */
    struct relay_ack *next, *prev;
    char cid[CRYPTO_HMAC_HEX_LEN + 1];
    int source;                       /* index into r->src */
    bool in_flight;
};

struct relay_source {
    char id[CONFIG_ID_MAX];
    char *path;                       /* owned */
    int node;                         /* controller index, for metrics */
    int fd;
    ino_t ino;
    off_t off;
    struct buf partial;               /* owned: an incomplete last line */
    bool skipping;                    /* inside an over-long line */
    struct loop_watch *watch;         /* owned: its directory's changes */
    const char *base;                 /* the file's name in it (in path) */
    struct relay *r;                  /* borrowed: the owner */
    int idx;                          /* in r->src */
};

struct relay {
    struct loop *loop;                /* borrowed */
    struct redis *redis;              /* borrowed */
    const struct config *cfg;         /* borrowed */
    struct log *lg;                   /* borrowed */
    struct metrics *m;                /* borrowed */
    struct relay_source src[CONFIG_MAX_CONTROLLERS];
    int n;
    struct relay_ack *acks;           /* owned list, oldest last */
    size_t n_acks;
    struct loop_timer *tick;          /* owned */
};

static const char *const relay_call_names[] = {"create", "verify", "delete"};

void relay_parse_line(const char *line, size_t len, struct relay_event *out)
{
    memset(out, 0, sizeof(*out));
    out->call = RELAY_NONE;
    struct json *j = json_parse(line, len);
    if (!json_is_object(j)) {
        out->malformed = true;
        json_free(j);
        return;
    }
    const char *ns = json_string(json_get(j, "namespace"));
    const char *etype = json_string(json_get(j, "eventType"));
    const char *entity = json_string(json_get(j, "entityType"));
    const char *src = json_string(json_get(j, "event_src_id"));
    util_copy_whole(out->source, sizeof(out->source), src,
                    src ? strlen(src) : 0); /* too long: no source */
    out->ts_ms = reconcile_parse_time(json_string(json_get(j, "timestamp")));
    if (!ns || strcmp(ns, "entityChange") != 0 || !entity ||
        strcmp(entity, "mfas") != 0 || !etype)
        goto out;
    struct json *fin = json_get(j, "finalState");
    struct json *ini = json_get(j, "initialState");
    /* a state the event has not is left out or written as null
     * (entity_change.go: a typed nil in an omitempty interface) */
    struct json *state = json_is_object(fin) ? fin : ini;
    const char *ident = json_string(json_get(state, "identityId"));
    const char *id = json_string(json_get(state, "id"));
    struct json *idx = json_path(j, "metadata.raft_index");
    if (!ident || !id) {
        out->malformed = true;
        goto out;
    }
    bool now_verified = false, was_verified = false;
    json_bool(json_get(fin, "isVerified"), &now_verified);
    json_bool(json_get(ini, "isVerified"), &was_verified);
    if (strcmp(etype, "created") == 0)
        out->call = RELAY_CREATE;
    else if (strcmp(etype, "updated") == 0 && now_verified && !was_verified)
        out->call = RELAY_VERIFY;
    else if (strcmp(etype, "deleted") == 0)
        out->call = RELAY_DELETE;
    if (out->call == RELAY_NONE)
        goto out;
    /* ids too long to hold whole are not acknowledged (the proxies do not
     * track them either): a cut id could name another change */
    if (!util_copy_whole(out->identity, sizeof(out->identity), ident,
                         strlen(ident)) ||
        !util_copy_whole(out->mfa_id, sizeof(out->mfa_id), id, strlen(id))) {
        out->call = RELAY_NONE;
        goto out;
    }
    if (idx) {
        char *t = json_print(idx);
        out->raft_index = strtoull(t, NULL, 10);
        free(t);
    }
out:
    json_free(j);
}

/* ---- acknowledgements to Redis ---------------------------------------- */

static void relay_send(struct relay *r);

static void relay_ack_done(void *arg, enum redis_status st,
                           const struct redis_reply *rep)
{
    struct relay_ack *a = arg;
    struct relay *r = a->r;
    bool ok = redis_reply_ok(st, rep);
    a->in_flight = false;
    metrics_inc(r->m, M_REDIS_OPERATIONS_TOTAL, M_REDIS_ACK_WRITE,
                ok ? M_RESULT_OK : M_RESULT_ERROR);
    if (!ok)
        return; /* stays queued: sent again by the next poll */
    metrics_inc(r->m, M_RELAY_EVENTS_TOTAL, r->src[a->source].node,
                M_RELAY_ACKED);
    if (a->prev)
        a->prev->next = a->next;
    else
        r->acks = a->next;
    if (a->next)
        a->next->prev = a->prev;
    r->n_acks--;
    free(a);
}

static void relay_send(struct relay *r)
{
    if (!redis_up(r->redis))
        return;
    for (struct relay_ack *a = r->acks; a; a = a->next) {
        if (a->in_flight)
            continue;
        a->in_flight = true;
        ackstore_ack_cb(r->redis, r->cfg, a->cid, r->src[a->source].id,
                        relay_ack_done, a);
    }
}

static void relay_queue(struct relay *r, int source, const char *cid)
{
    if (r->n_acks >= RELAY_PENDING_MAX) {
        metrics_inc(r->m, M_RELAY_EVENTS_TOTAL, r->src[source].node,
                    M_RELAY_ERROR);
        log_printf(r->lg, LOG_LEVEL_ERROR,
                   "relay: %zu acknowledgements wait for Redis; dropping one "
                   "from %s",
                   r->n_acks, r->src[source].id);
        return;
    }
    struct relay_ack *a = xcalloc(1, sizeof(*a));
    a->r = r;
    a->source = source;
    snprintf(a->cid, sizeof(a->cid), "%s", cid);
    a->next = r->acks;
    if (r->acks)
        r->acks->prev = a;
    r->acks = a;
    r->n_acks++;
}

/* ---- files ------------------------------------------------------------- */

static void relay_line(struct relay *r, int si, const char *line, size_t len)
{
    struct relay_source *s = &r->src[si];
    struct relay_event ev;
    if (len == 0)
        return;
    relay_parse_line(line, len, &ev);
    if (ev.malformed) {
        metrics_inc(r->m, M_RELAY_EVENTS_TOTAL, s->node, M_RELAY_MALFORMED);
        return;
    }
    if (ev.ts_ms) {
        uint64_t now = util_wall_ms();
        metrics_set(r->m, M_RELAY_LAG_SECONDS, s->node,
                    now > ev.ts_ms ? (double)(now - ev.ts_ms) / 1000.0 : 0.0);
    }
    if (ev.call == RELAY_NONE) {
        metrics_inc(r->m, M_RELAY_EVENTS_TOTAL, s->node, M_RELAY_IGNORED);
        return;
    }
    /* older than anything a gate could still wait for: nothing to do */
    if (ev.ts_ms && ev.ts_ms + r->cfg->gate.timeout_ms +
                            r->cfg->gate.outcome_ttl_ms < util_wall_ms()) {
        metrics_inc(r->m, M_RELAY_EVENTS_TOTAL, s->node, M_RELAY_IGNORED);
        return;
    }
    if (ev.source[0] && strcmp(ev.source, s->id) != 0)
        log_printf(r->lg, LOG_LEVEL_WARN,
                   "relay: %s holds events of '%s', configured as '%s'",
                   s->path, ev.source, s->id);
    char cid[CRYPTO_HMAC_HEX_LEN + 1];
    gate_change_id(r->cfg, ev.identity, ev.mfa_id, (enum gate_call)ev.call,
                   cid);
    log_debug(r->lg, "relay: %s %s at raft index %llu", s->id,
              relay_call_names[ev.call], (unsigned long long)ev.raft_index);
    relay_queue(r, si, cid);
}

static void relay_consume(struct relay *r, int si, const char *data,
                          size_t len)
{
    struct relay_source *s = &r->src[si];
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] != '\n')
            continue;
        if (s->skipping) {
            s->skipping = false;
        } else if (s->partial.len) {
            buf_append(&s->partial, data + start, i - start);
            relay_line(r, si, s->partial.data, s->partial.len);
        } else {
            relay_line(r, si, data + start, i - start);
        }
        buf_reset(&s->partial);
        start = i + 1;
    }
    if (start < len && !s->skipping) {
        buf_append(&s->partial, data + start, len - start);
        if (s->partial.len > RELAY_LINE_MAX) {
            metrics_inc(r->m, M_RELAY_EVENTS_TOTAL, s->node,
                        M_RELAY_MALFORMED);
            buf_reset(&s->partial);
            s->skipping = true;
        }
    }
}

static void relay_close(struct relay_source *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->off = 0;
    buf_reset(&s->partial);
    s->skipping = false;
}

/* Reads what is new; returns bytes read (0 at the end). */
static size_t relay_read(struct relay *r, int si)
{
    struct relay_source *s = &r->src[si];
    char *chunk = xmalloc(65536);
    size_t total = 0;
    while (total < RELAY_READ_MAX) {
        ssize_t n = pread(s->fd, chunk, 65536, s->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        s->off += n;
        total += (size_t)n;
        relay_consume(r, si, chunk, (size_t)n);
    }
    free(chunk);
    return total;
}

static void relay_poll_source(struct relay *r, int si);

/* The file was written to, created, renamed or removed: read it now rather
 * than at the next poll, so that an acknowledgement follows the
 * controller's apply by a loop iteration, not by up to relay.poll. */
static void relay_watched(void *arg, const char *name)
{
    struct relay_source *s = arg;
    struct relay *r = s->r;
    if (name && strcmp(name, s->base) != 0)
        return; /* another file in the directory */
    relay_poll_source(r, s->idx);
    relay_send(r);
}

static void relay_poll_source(struct relay *r, int si)
{
    struct relay_source *s = &r->src[si];
    struct stat st, pst;
    if (s->fd < 0) {
        s->fd = open(s->path, O_RDONLY | O_CLOEXEC);
        if (s->fd < 0)
            return; /* not there yet */
        if (fstat(s->fd, &st) == 0)
            s->ino = st.st_ino;
        s->off = 0;
    }
    if (fstat(s->fd, &st) == 0 && st.st_size < s->off) {
        log_printf(r->lg, LOG_LEVEL_INFO,
                   "relay: %s was truncated; reading it from the start",
                   s->path);
        s->off = 0;
        buf_reset(&s->partial);
        s->skipping = false;
    }
    relay_read(r, si);
    if (stat(s->path, &pst) != 0 || pst.st_ino != s->ino) {
        /* rotated (or removed): finish the old file -- all of it, not one
         * poll's worth: it is closed next -- then follow the new one */
        while (relay_read(r, si) > 0)
            ;
        log_printf(r->lg, LOG_LEVEL_INFO,
                   "relay: %s was rotated; following the new file", s->path);
        relay_close(s);
        relay_poll_source(r, si);
    }
}

void relay_poll(struct relay *r)
{
    for (int i = 0; i < r->n; i++)
        relay_poll_source(r, i);
    relay_send(r);
}

static void relay_tick(void *arg)
{
    struct relay *r = arg;
    relay_poll(r);
    loop_timer_start(r->tick, r->cfg->relay.poll_ms, 0);
}

size_t relay_pending(const struct relay *r)
{
    return r->n_acks;
}

struct relay *relay_new(struct loop *loop, struct redis *redis,
                        const struct config *cfg, struct log *lg,
                        struct metrics *m)
{
    struct relay *r = xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->redis = redis;
    r->cfg = cfg;
    r->lg = lg;
    r->m = m;
    r->n = cfg->relay.n_sources;
    for (int i = 0; i < r->n; i++) {
        struct relay_source *s = &r->src[i];
        snprintf(s->id, sizeof(s->id), "%s", cfg->relay.sources[i].id);
        s->path = xstrdup(cfg->relay.sources[i].path);
        s->node = config_controller_index(cfg, s->id);
        s->fd = -1;
        s->r = r;
        s->idx = i;
        /* the directory, so that a file created after a rotation is seen
         * too; NULL (no inotify, no directory yet): the poll alone */
        const char *slash = strrchr(s->path, '/');
        s->base = slash ? slash + 1 : s->path;
        char *dir = slash ? xstrndup(s->path, (size_t)(slash - s->path))
                          : xstrdup(".");
        s->watch = loop_watch_new(loop, dir[0] ? dir : "/", relay_watched, s);
        free(dir);
    }
    r->tick = loop_timer_new(loop, relay_tick, r);
    loop_timer_start(r->tick, 0, 0);
    return r;
}

void relay_free(struct relay *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n; i++) {
        loop_watch_free(r->src[i].watch);
        relay_close(&r->src[i]);
        buf_free(&r->src[i].partial);
        free(r->src[i].path);
    }
    while (r->acks) {
        struct relay_ack *a = r->acks;
        r->acks = a->next;
        free(a);
    }
    loop_timer_free(r->tick);
    free(r);
}
