/* pipeline_impl.h - what the parts of the pipeline share (pipeline.c,
 * pipeline_gate.c); nothing else includes it. */
#ifndef QG_PIPELINE_IMPL_H
#define QG_PIPELINE_IMPL_H

#include <stdbool.h>

#include "proxy/request.h"
#include "proxy/worker.h"
#include "routing/classify.h"

enum pipeline_step {
    STEP_IDENTITY = 0,
    STEP_AFFINITY,
    STEP_GATE_CHECK,
    STEP_LEGACY_ID,
    STEP_STATE_READ,
    STEP_BEFORE,
    STEP_RECORD,
    STEP_DONE,
};

static inline struct app *pipeline_app(struct request *rq)
{
    return rq->w->app;
}

/* pipeline.c: an asynchronous step finished: go on, and route when all
 * are done. */
void pipeline_resume(struct request *rq);

/* pipeline.c: the worker's Redis connection is being made: waits for it
 * (once per request), then runs step again; false when it does not wait
 * (it is up, or down for longer: degrade now). */
bool pipeline_await_step(struct request *rq, int step);

/* pipeline_gate.c: the gate's call for a classified call, -1 for none. */
int pipeline_gate_call(enum classify_call c);
/* pipeline_gate.c: runs one of the gate's steps (STEP_GATE_CHECK ..
 * STEP_RECORD); true when it went asynchronous (or answered). */
bool pipeline_gate_prepare(struct request *rq, int step);

#endif
