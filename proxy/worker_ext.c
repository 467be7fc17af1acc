/* worker_ext.c - see worker_ext.h. */
#include "proxy/worker_ext.h"

#include "proxy/worker.h"

void worker_ext_init(struct worker *w)
{
    (void)w;
}

void worker_ext_config(struct worker *w)
{
    (void)w;
}

void worker_ext_stop(struct worker *w)
{
    (void)w;
}

void worker_ext_free(struct worker *w)
{
    (void)w;
}
