/* oneshot.c - see oneshot.h. */
#include "proxy/oneshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/loop.h"
#include "base/util.h"
#include "proxy/worker.h"

struct oneshot {
    struct loop *loop;   /* borrowed */
    int left;
};

static void oneshot_done(struct upstream_req *r, void *arg)
{
    struct oneshot *o = arg;
    (void)r;
    if (--o->left == 0)
        loop_stop(o->loop);
}

void oneshot_run(const struct config *cfg, struct upstream_req **reqs, int n)
{
    struct oneshot o = {.loop = loop_new(), .left = n};
    struct upstream_settings us;
    worker_upstream_settings(cfg, &us);
    us.batch_sends = false; /* a few requests, once */
    struct upstream *up = upstream_new(o.loop, &us);
    for (int i = 0; i < n; i++) {
        reqs[i]->done = oneshot_done;
        reqs[i]->arg = &o;
        if (!reqs[i]->timeout_ms)
            reqs[i]->timeout_ms = cfg->health.timeout_ms +
                                  cfg->upstream.connect_timeout_ms;
        upstream_start(up, reqs[i]);
    }
    if (n > 0)
        loop_run(o.loop);
    upstream_free(up);
    loop_free(o.loop);
}
