/* gate_clear.h - fence clears Redis did not take, sent again.
 *
 * A controller that caught up has its fence lifted in Redis
 * (ackstore_fence_clear); when that command fails (Redis restarting, a
 * Sentinel failover moving the connection, a READONLY former master) the
 * fence would stay in Redis, and keep the identity away from that
 * controller in every quorumgate, until it expired.  The clear is kept
 * here and sent again when Redis is back (gate_resync) and every
 * GATE_CLEAR_RETRY_MS, for at most GATE_CLEAR_KEEP_MS. */
#ifndef QG_GATE_CLEAR_H
#define QG_GATE_CLEAR_H

#include <stdint.h>

struct gate;

#define GATE_CLEAR_RETRY_MS 250
#define GATE_CLEAR_KEEP_MS 60000
#define GATE_CLEAR_MAX 1024

/* Keep a clear of mask for the change cid of identity idhex (held at
 * held_wall_ms) to send again. */
void gate_clear_later(struct gate *g, const char *idhex, const char *cid,
                      uint64_t held_wall_ms, uint64_t mask);
/* Send every kept clear now (Redis is back). */
void gate_clear_retry(struct gate *g);
/* Forget them all (the gate goes; its Redis callbacks never run). */
void gate_clear_free_all(struct gate *g);

#endif
