/* oneshot.h - a batch of upstream requests run to completion outside the
 * proxy (`-t`, `quorumgate check`): a private loop and upstream with the
 * configuration's TLS settings, every request at once, back when each has
 * an answer or failed.
 *
 * Ownership: the caller owns the requests and what they point to; their
 * response buffers are filled as by upstream_start (free them with
 * upstream_req_free). */
#ifndef QG_ONESHOT_H
#define QG_ONESHOT_H

#include "config/config.h"
#include "io/upstream.h"

/* Runs reqs[0..n) (done/arg are set here) and returns when all finished. */
void oneshot_run(const struct config *cfg, struct upstream_req **reqs, int n);

#endif
