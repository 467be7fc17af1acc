/* check.h - what quorumgate can find out about its controllers before it
 * runs: `-t` asks each controller's health path once (a 404 without a
 * management credential is an error that names both fixes); `quorumgate
 * check` (check_run.c) asks everything an operator needs before going
 * live. */
#ifndef QG_CHECK_H
#define QG_CHECK_H

#include <stdio.h>

#include "config/config.h"

/* For -t: every controller's health path, once.  Problems go to err (one
 * line each); an unreachable controller is a warning only (it may be
 * down now).  Returns the number of problems. */
int check_health_binding(const struct config *cfg, FILE *err);

/* For -t with redis.sentinels: every sentinel, once, and the master they
 * name.  A sentinel that answers without knowing redis.master_name (or
 * with an error) is a problem; one not reached, a master not reached, not
 * a master or not noeviction, a warning.  Returns the number of
 * problems. */
int check_sentinels_once(const struct config *cfg, FILE *err);

/* `quorumgate check -c FILE`: every controller (TLS, server name, version,
 * clock skew, health-checks binding, the management credential, the raft
 * members and leader as each sees them), the sentinels (each reachable,
 * knowing redis.master_name, the master they name saying ROLE master),
 * Redis (reachable,
 * maxmemory-policy noeviction, the HMAC key the same as the other
 * quorumgates that checked in: a fingerprint under <prefix>check:hmac),
 * the relay's event files.  One line per check to out; 0 only when every
 * check passed. */
int check_run(const struct config *cfg, FILE *out);

#endif
