/* worker_ext.h - per-worker state of the optional stages (Redis
 * connections, affinity cache, gate waiters), created with the worker, on
 * its loop.  Ownership: w->ext is owned by the worker. */
#ifndef QG_WORKER_EXT_H
#define QG_WORKER_EXT_H

struct worker;

void worker_ext_init(struct worker *w);
/* w->cfg changed (reload). */
void worker_ext_config(struct worker *w);
/* The worker loop is stopping: close connections (worker thread). */
void worker_ext_stop(struct worker *w);
void worker_ext_free(struct worker *w);

#endif
