/* pipeline.h - the optional stages of the request path, in one place:
 * affinity (routing/affinity), fencing (routing/fence) and the replication
 * gate (consistency/gate).  request.c calls these; each returns whether it
 * took the request over (continuing asynchronously). */
#ifndef QG_PIPELINE_H
#define QG_PIPELINE_H

#include <stdbool.h>

struct request;

/* Before the first routing: affinity lookups, gate preparation.  true when
 * the request continues later (request_reroute). */
bool pipeline_before_route(struct request *rq);
/* After a usable answer: learn affinity from it. */
void pipeline_learn(struct request *rq);
/* After a successful answer: hold it for replication?  true when held. */
bool pipeline_gate(struct request *rq);
/* The request is going away: drop any asynchronous work of these stages. */
void pipeline_cancel(struct request *rq);

#endif
