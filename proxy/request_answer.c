/* request_answer.c - see request.h: the answers the request path sends
 * (the controller's, or quorumgate's own in the OpenZiti envelope), with
 * quorumgate's own headers. */
#include "proxy/request.h"
#include "proxy/request_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/envelope.h"
#include "base/log.h"
#include "base/util.h"
#include "io/listener.h"
#include "metrics/metrics.h"
#include "proxy/app.h"
#include "proxy/worker.h"
#include "routing/cluster.h"
#include "routing/rewrite.h"

/* quorumgate's own fields, after the answer's; the attempt count is
 * written into n (the caller's, alive until the answer is sent). */
static void request_answer_own_fields(struct request *rq,
                                      struct http_fields *f, char n[16])
{
    const struct config *cfg = rq->cfg;
    struct app *a = request_app(rq);
    size_t nl = 16;
    http_fields_remove(f, cfg->headers.request_id);
    http_fields_adds(f, cfg->headers.request_id, rq->ex->request_id);
    /* the count in decimal, without printf (on every answer) */
    unsigned v = rq->n_attempts > 0 ? (unsigned)rq->n_attempts : 0;
    do {
        n[--nl] = (char)('0' + v % 10);
        v /= 10;
    } while (v && nl > 0);
    http_fields_add(f, "Quorumgate-Attempts", 19, n + nl, 16 - nl);
    /* the controller that answered, or for our own errors the one the
     * request was last sent to (the one the error is about) */
    if (cfg->headers.expose_controller && rq->node >= 0)
        http_fields_adds(f, "Quorumgate-Controller",
                         a->cluster->nodes[rq->node].id);
    if (rq->replication[0])
        http_fields_adds(f, "Quorumgate-Replication", rq->replication);
}

static void request_answer_send(struct request *rq, int status,
                                struct http_fields *f, char *body, size_t len)
{
    char n[16];
    if (!rq->ex || rq->stage == STAGE_ANSWERED) {
        free(body);
        return;
    }
    request_unwait(rq);
    request_timer_stop(rq);
    rq->stage = STAGE_ANSWERED;
    rq->status = status;
    request_answer_own_fields(rq, f, n);
    listener_respond(rq->ex, status, f->f, f->n, body, len, rq->w->draining);
}

/* The answer's field list: the request's own, kept (with its storage)
 * from one request to the next on this worker. */
static struct http_fields *request_answer_fields(struct request *rq)
{
    http_fields_reset(&rq->answer_fields);
    return &rq->answer_fields;
}

void request_answer_error(struct request *rq, enum errcode e,
                          const char *message)
{
    struct http_fields *f = request_answer_fields(rq);
    size_t len;
    char *body = envelope_error(errcode_name(e),
                                message ? message : errcode_message(e),
                                rq->ex ? rq->ex->request_id : "", NULL, &len);
    rq->error_code = errcode_name(e);
    http_fields_adds(f, "Content-Type", ENVELOPE_CONTENT_TYPE);
    request_answer_send(rq, errcode_status(e), f, body, len);
}

void request_answer_json(struct request *rq, int status, const char *json)
{
    struct http_fields *f = request_answer_fields(rq);
    http_fields_adds(f, "Content-Type", "application/json");
    char *body = xstrdup(json);
    request_answer_send(rq, status, f, body, strlen(body));
}

void request_answer_upstream(struct request *rq)
{
    struct http_fields *f = request_answer_fields(rq);
    size_t len;
    char *keep; /* a rewritten Location */
    /* the controller's fields are not copied: they point into rq->up,
     * which keeps them until the answer is written */
    headers_for_client(f, &rq->up);
    rewrite_response(rq->cfg, rq->cls.call, rq->up.status, &rq->up.resp_body,
                     f, &keep);
    char *body = buf_steal(&rq->up.resp_body, &len);
    request_answer_send(rq, rq->up.status, f, body, len);
    free(keep);
}

/* No usable answer from any attempt: say why, in the envelope. */
void request_answer_as_upstream_or(struct request *rq, enum errcode e,
                                   const char *message)
{
    if (rq->up.result == UPSTREAM_OK && rq->up.status == errcode_status(e))
        request_answer_upstream(rq);
    else
        request_answer_error(rq, e, message);
}

/* The request's hard home could not be reached by its last attempt (the
 * retry policy, unchanged, had its turn): the session or login it holds is
 * gone for this client.  Only then does quorumgate answer 401 itself --
 * never because probes mark the home down (request.c). */
void request_answer_home_unreachable(struct request *rq,
                                     const struct upstream_req *r)
{
    struct app *a = request_app(rq);
    const char *ctrl = a->cluster->nodes[rq->node].id;
    char msg[256];
    metrics_inc(a->metrics, M_AFFINITY_HOME_UNREACHABLE_TOTAL, rq->node);
    if (cluster_note_once(a->cluster, rq->node,
                          CLUSTER_NOTE_HOME_UNREACHABLE))
        log_printf(a->log, LOG_LEVEL_WARN,
                   "controller %s cannot be reached (%s: %s): requests of "
                   "the sessions and logins it holds are answered 401 "
                   "UNAUTHORIZED; logged once until it is up again",
                   ctrl, upstream_result_name(r->result),
                   r->error[0] ? r->error : "no connection");
    snprintf(msg, sizeof(msg),
             "The controller holding this session or login (%s) cannot be "
             "reached (%s); authenticate again.",
             ctrl, r->result == UPSTREAM_CONNECT_TIMEOUT
                       ? "connect timeout"
                       : "connection refused");
    request_answer_error(rq, ERR_UNAUTHORIZED, msg);
}

void request_answer_unknown(struct request *rq, bool after_lost,
                            bool unread)
{
    struct app *a = request_app(rq);
    const char *ctrl = rq->node >= 0 ? a->cluster->nodes[rq->node].id : "?";
    char msg[256];
    snprintf(msg, sizeof(msg),
             "controller %s answered %d%s; whether the call was applied is "
             "unknown%s",
             ctrl, rq->up.status,
             after_lost ? " after an earlier attempt that was not answered"
                        : "",
             unread ? ": its state could not be read in time" : "");
    request_answer_error(rq, ERR_PROXY_UPSTREAM_TIMEOUT, msg);
}

void request_answer_give_up(struct request *rq)
{
    struct app *a = request_app(rq);
    const char *ctrl = rq->node >= 0 ? a->cluster->nodes[rq->node].id : "?";
    char msg[256];
    /* one connect timeout whose retries the budget refused is a slow
     * home, not a gone one (bench/soak.py, 30-minute run: 401s from homes
     * answering everything else on an overloaded machine): 504 below */
    bool untried = rq->budget_exhausted &&
                   rq->up.result == UPSTREAM_CONNECT_TIMEOUT;
    if (rq->home >= 0 && rq->node == rq->home && rq->up.unreachable &&
        !untried) {
        request_answer_home_unreachable(rq, &rq->up);
        return;
    }
    if (rq->had_ambiguous && rq->up.result == UPSTREAM_OK &&
        rq->up.status >= 500) { /* had_ambiguous: MFA writes only */
        /* a resend's failure after an attempt that was not answered: the
         * earlier one may still commit (an entry the old leader appended
         * commits under the next one) -- not "it failed" */
        request_answer_unknown(rq, true, false);
        return;
    }
    if (rq->up.result == UPSTREAM_OK && rq->up.status) {
        request_answer_upstream(rq); /* the original error goes back */
        return;
    }
    switch (rq->up.result) {
    case UPSTREAM_TIMEOUT:
    case UPSTREAM_CONNECT_TIMEOUT:
        snprintf(msg, sizeof(msg), "controller %s did not answer in time",
                 ctrl);
        request_answer_error(rq, ERR_PROXY_UPSTREAM_TIMEOUT, msg);
        return;
    case UPSTREAM_TOO_LARGE:
        snprintf(msg, sizeof(msg),
                 "the answer of controller %s is larger than "
                 "limits.max_response_bytes",
                 ctrl);
        break;
    default:
        snprintf(msg, sizeof(msg), "controller %s: %s (%s)", ctrl,
                 upstream_result_name(rq->up.result),
                 rq->up.error[0] ? rq->up.error : "no answer");
        break;
    }
    request_answer_error(rq, ERR_PROXY_UPSTREAM_ERROR, msg);
}

