/* redis_sentinel.h - finds the Redis master through Redis Sentinel and
 * follows it: asks the configured sentinels in order with SENTINEL
 * get-master-addr-by-name, keeps a command and a subscriber connection to
 * the sentinel that answered, follows +switch-master, asks again every
 * second (a missed message costs at most that) and whenever a Redis
 * connection reports that the address it was given is down or not a
 * master.  The address named is published (known) only once ROLE says
 * "master" there, and checked again every second: one that says anything
 * else is withdrawn (watchers told: their connections leave it).  A struct redis created with a config naming sentinels asks
 * this monitor for the address at every connect, checks ROLE in its
 * handshake and reconnects when the master moves (see redis.h).
 *
 * Ownership and threads: created and freed on one loop (the sentinel
 * connections run there); redis_sentinel_master(), _info(), _recheck(),
 * _watch() and _unwatch() may be called from any thread while it is
 * alive.  Every watcher must be unwatched before redis_sentinel_free().
 * It copies what it needs from the config (the password too, wiped on
 * free); the log is borrowed.
 *
 * While no sentinel answers (or none knows the master), no master is
 * known: Redis connections fail as if Redis were down.  The last address
 * a sentinel gave stays in use while the sentinels are unreachable (they
 * only matter when the master changes). */
#ifndef QG_REDIS_SENTINEL_H
#define QG_REDIS_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct loop;
struct loop_async;
struct log;
struct redis_sentinel;

#define REDIS_SENTINEL_ADDR_MAX 300

struct redis_sentinel_info {
    bool known;                          /* a sentinel named the master */
    char master[REDIS_SENTINEL_ADDR_MAX];   /* "host:port", "" if unknown */
    char sentinel[REDIS_SENTINEL_ADDR_MAX]; /* the one that answered last */
    uint64_t switches;                   /* master changes seen */
    uint64_t generation;                 /* bumps at every change */
    char last_error[256];                /* "" when none */
};

struct redis_sentinel *redis_sentinel_new(struct loop *loop,
                                          const struct config_redis *cfg,
                                          struct log *log);
void redis_sentinel_free(struct redis_sentinel *s);

/* Any thread.  The current master: false when none is known. */
bool redis_sentinel_master(struct redis_sentinel *s, char *host,
                           size_t host_size, uint16_t *port, uint64_t *gen);
void redis_sentinel_info(struct redis_sentinel *s,
                         struct redis_sentinel_info *out);
/* Any thread: the address given did not work (down, not a master): ask
 * the sentinels again now. */
void redis_sentinel_recheck(struct redis_sentinel *s);
/* Any thread: a is sent whenever the master changes. */
void redis_sentinel_watch(struct redis_sentinel *s, struct loop_async *a);
void redis_sentinel_unwatch(struct redis_sentinel *s, struct loop_async *a);

/* "SENTINEL get-master-addr-by-name" and "+switch-master" parsing, pure:
 * the new master of a +switch-master message ("<name> <old-ip>
 * <old-port> <new-ip> <new-port>") when it is about name. */
bool redis_sentinel_parse_switch(const char *msg, size_t len,
                                 const char *name, char *host,
                                 size_t host_size, uint16_t *port);

#endif
