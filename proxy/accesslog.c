/* accesslog.c - see accesslog.h. */
#include "proxy/accesslog.h"

#include <string.h>

#include "proxy/app.h"
#include "base/buf.h"
#include "io/listener.h"
#include "base/log.h"
#include "proxy/request.h"
#include "base/util.h"
#include "proxy/worker.h"
#include "routing/cluster.h"

/* Query parameters whose values are safe to log; everything else
 * (tokens, codes, auth request ids, state, passwords) is redacted. */
static const char *const accesslog_safe_params[] = {
    "method", "type", "limit", "offset", "response_type", "client_id",
    "scope", "code_challenge_method", "grant_type", "sort", "filter_type",
};

static bool accesslog_safe(const char *name, size_t len)
{
    for (size_t i = 0; i < ARRAY_LEN(accesslog_safe_params); i++)
        if (strlen(accesslog_safe_params[i]) == len &&
            strncmp(name, accesslog_safe_params[i], len) == 0)
            return true;
    return false;
}

/* A value of a harmless parameter is logged only when it is plainly one
 * value: a separator some server would honour (';', '?', an escaped '&'
 * or '=') could carry a secret along inside it. */
static bool accesslog_plain_value(const char *v, size_t len)
{
    if (len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
            (c >= '0' && c <= '9') || strchr("._~+,-", c))
            continue;
        if (c == '%' && i + 2 < len && v[i + 1] == '2' && v[i + 2] == '0') {
            i += 2; /* an encoded space, as in a scope list */
            continue;
        }
        return false;
    }
    return true;
}

void accesslog_redact_target(struct buf *out, const char *target)
{
    size_t path_len = strcspn(target, "?");
    buf_json_escape(out, target, path_len);
    if (!target[path_len])
        return;
    const char *q = target + path_len + 1;
    buf_putc(out, '?');
    while (*q) {
        size_t plen = strcspn(q, "&");
        size_t nlen = strcspn(q, "=&");
        if (nlen == plen && nlen && !accesslog_safe(q, nlen)) {
            /* a bare "?value" may itself be the secret (a token) */
            buf_puts(out, "REDACTED");
        } else {
            buf_json_escape(out, q, nlen);
        }
        if (nlen < plen) {
            buf_putc(out, '=');
            if (accesslog_safe(q, nlen) &&
                accesslog_plain_value(q + nlen + 1, plen - nlen - 1))
                buf_json_escape(out, q + nlen + 1, plen - nlen - 1);
            else
                buf_puts(out, "REDACTED");
        }
        q += plen;
        if (*q == '&') {
            buf_putc(out, '&');
            q++;
        }
    }
}

static void accesslog_str(struct buf *b, const char *key, const char *v)
{
    buf_printf(b, ",\"%s\":\"", key);
    buf_json_escape(b, v, strlen(v));
    buf_putc(b, '"');
}

void accesslog_write(struct worker *w, const struct listener_exchange *ex,
                     const struct request *rq)
{
    if (!log_access_enabled(w->app->log))
        return;
    const struct cluster *c = w->app->cluster;
    struct buf b = {0};
    char ts[32];
    uint64_t now_ns = util_mono_ns();
    log_timestamp(ts);
    buf_printf(&b, "{\"ts\":\"%s\"", ts);
    accesslog_str(&b, "request_id", ex->request_id);
    buf_printf(&b, ",\"client\":\"%s\",\"client_port\":%u,\"tls\":%s",
               ex->client_addr, ex->client_port, ex->tls ? "true" : "false");
    accesslog_str(&b, "method", ex->method_name);
    buf_puts(&b, ",\"path\":\"");
    accesslog_redact_target(&b, ex->url);
    buf_putc(&b, '"');
    buf_printf(&b, ",\"status\":%d,\"bytes_in\":%zu,\"bytes_out\":%llu",
               ex->status, ex->body_len,
               (unsigned long long)ex->bytes_out);
    buf_printf(&b, ",\"duration_ms\":%.3f",
               (double)(now_ns - ex->start_ns) / 1e6);
    if (ex->local_error && ex->error_code)
        accesslog_str(&b, "error", ex->error_code);
    if (ex->send_timed_out) /* closed: the answer was not taken in time */
        buf_puts(&b, ",\"send_timeout\":true");
    if (rq) {
        accesslog_str(&b, "class", config_route_class_name(rq->cls.cls));
        accesslog_str(&b, "call", classify_call_name(rq->cls.call));
        accesslog_str(&b, "decision", route_decision_name(rq->decision));
        accesslog_str(&b, "controller",
                      rq->node >= 0 ? c->nodes[rq->node].id : "");
        if (rq->error_code)
            accesslog_str(&b, "error", rq->error_code);
        buf_printf(&b, ",\"attempts\":%d", rq->n_attempts);
        uint64_t up_ns = 0;
        buf_puts(&b, ",\"upstream\":[");
        for (int i = 0; i < rq->n_log; i++) {
            const struct request_attempt *at = &rq->attempts[i];
            up_ns += at->duration_ns;
            buf_printf(&b, "%s{\"controller\":\"%s\",\"outcome\":\"%s\","
                           "\"status\":%d,\"ms\":%.3f%s}",
                       i ? "," : "", at->node >= 0 ? c->nodes[at->node].id : "",
                       at->outcome, at->status, (double)at->duration_ns / 1e6,
                       at->reconcile ? ",\"read\":true" : "");
        }
        buf_printf(&b, "],\"upstream_ms\":%.3f", (double)up_ns / 1e6);
        if (rq->retried || rq->budget_exhausted)
            buf_printf(&b, ",\"retried\":%s,\"budget_exhausted\":%s",
                       rq->retried ? "true" : "false",
                       rq->budget_exhausted ? "true" : "false");
        if (rq->reconciled)
            accesslog_str(&b, "reconciled", rq->reconciled);
        if (rq->replication[0])
            accesslog_str(&b, "replication", rq->replication);
    }
    buf_putc(&b, '}');
    log_batch_add(&w->access, b.data, b.len);
    buf_free(&b);
}
