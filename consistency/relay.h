/* relay.h - the acknowledgement source "events": follow controllers'
 * entity-change event files (a file handler subscription with
 * propagateAlways: true, so every controller writes the events of its own
 * FSM applies: controller/events/dispatcher_entity_change.go) and turn the
 * `mfas` changes into acknowledgements in Redis, the same records the
 * replication gate waits on.
 *
 *   created                      -> the enrollment exists there (create)
 *   updated, isVerified now true -> verified there (verify)
 *   deleted                      -> gone there (delete)
 *
 * Only identityId, the enrollment id, isVerified, the event type, the
 * timestamp and metadata.raft_index are read; the TOTP secret, salt and
 * recovery codes that finalState carries (db.Mfa JSON tags) are never
 * copied, logged or stored.
 *
 * Files are watched (inotify: a write is read on the next loop iteration)
 * and polled (relay.poll, for what a watch cannot see); a rotated file (new inode at the path) is
 * finished and then followed from its start; a truncated one is followed
 * from its start.  Acknowledgements that Redis did not take are kept and
 * sent again.
 *
 * Ownership: a relay owns its file state and pending acknowledgements; it
 * borrows the loop, Redis connection, config, log and metrics it is given. */
#ifndef QG_RELAY_H
#define QG_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct redis;
struct config;
struct log;
struct metrics;
struct relay;

struct relay *relay_new(struct loop *loop, struct redis *redis,
                        const struct config *cfg, struct log *lg,
                        struct metrics *m);
/* Call after the Redis connection is freed (pending callbacks dropped). */
void relay_free(struct relay *r);
/* One poll of every file (the relay's timer calls it; tests may too). */
void relay_poll(struct relay *r);
/* Acknowledgements waiting for Redis. */
size_t relay_pending(const struct relay *r);

enum relay_call { RELAY_NONE = -1, RELAY_CREATE = 0, RELAY_VERIFY,
                  RELAY_DELETE };

/* What one event line means, pure (tests): the call it acknowledges (or
 * RELAY_NONE), with the identity and enrollment ids copied out. */
struct relay_event {
    enum relay_call call;
    char identity[128];
    char mfa_id[128];
    char source[64];          /* event_src_id */
    uint64_t raft_index;
    uint64_t ts_ms;           /* event timestamp, unix ms (0 if unknown) */
    bool malformed;
};
void relay_parse_line(const char *line, size_t len, struct relay_event *out);

#endif
