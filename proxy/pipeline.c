/* pipeline.c - see pipeline.h. */
#include "proxy/pipeline.h"

#include "proxy/request.h"

bool pipeline_before_route(struct request *rq)
{
    (void)rq;
    return false;
}

void pipeline_learn(struct request *rq)
{
    (void)rq;
}

bool pipeline_gate(struct request *rq)
{
    (void)rq;
    return false;
}

void pipeline_cancel(struct request *rq)
{
    (void)rq;
}
