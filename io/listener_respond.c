/* listener_respond.c - the listener's answers (see listener_impl.h):
 * responses built for libmicrohttpd, local errors in the OpenZiti envelope,
 * and the per-connection deadline with its 408.
 *
 * Per connection (struct listener_conn, the MHD socket context) we keep a
 * deadline timer: armed with the header timeout when the connection is
 * accepted (the first request line and headers, and a TLS handshake, are
 * due by then) or, on a kept-alive connection, when a later request line is
 * seen (the URI log callback); re-armed with the body timeout once the
 * headers are in; stopped while the request is handled; after an answer,
 * a backstop of idle + header timeout closes a connection whose next
 * request never completes its line.  libmicrohttpd has no 408 of its own,
 * so on expiry we write the 408 ourselves (plain HTTP only: a TLS stream
 * cannot be written behind the library's back) and shut the socket down;
 * the library then sees the end of the stream and cleans up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/envelope.h"
#include "base/loop.h"
#include "base/util.h"
#include "io/listener_impl.h"

/* ---- responses ------------------------------------------------------- */

/* Never called: the library sends no body in answer to HEAD. */
static ssize_t listener_respond_no_body(void *cls, uint64_t pos, char *buf,
                                        size_t max)
{
    return MHD_CONTENT_READER_END_OF_STREAM;
}

bool listener_respond_given_length(const char *const *headers, int n,
                                   uint64_t *out)
{
    for (int i = 0; i < n; i++) {
        if (!util_strcaseeq(headers[2 * i], MHD_HTTP_HEADER_CONTENT_LENGTH))
            continue;
        const char *v = headers[2 * i + 1];
        uint64_t x = 0;
        if (!*v)
            return false;
        for (; *v; v++) {
            if (*v < '0' || *v > '9' || x > UINT64_MAX / 10 - 10)
                return false;
            x = x * 10 + (uint64_t)(*v - '0');
        }
        *out = x;
        return true;
    }
    return false;
}

static struct MHD_Response *listener_respond_make(
    struct listener_exchange *ex, const char *const *headers, int n,
    char *body, size_t len, bool close)
{
    struct MHD_Response *r;
    uint64_t head_len;
    if (ex->method == HTTP_HEAD && listener_respond_given_length(headers, n,
                                                                 &head_len)) {
        /* A HEAD answer states the length of the body a GET would get
         * (RFC 9110 8.6): a response of that size whose body is never
         * read, since the library sends none for HEAD. */
        free(body);
        r = MHD_create_response_from_callback(
            head_len, 4096, listener_respond_no_body, NULL, NULL);
    } else {
        r = MHD_create_response_from_buffer(
            len, body ? body : (char *)"",
            body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    }
    if (!r)
        abort();
    for (int i = 0; i < n; i++) {
        /* framing is the library's */
        if (util_strcaseeq(headers[2 * i], MHD_HTTP_HEADER_CONTENT_LENGTH))
            continue;
        MHD_add_response_header(r, headers[2 * i], headers[2 * i + 1]);
    }
    if (close)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    return r;
}

const char *listener_respond_reason(int status)
{
    const char *r = MHD_get_reason_phrase_for((unsigned int)status);
    return r && *r ? r : "Unknown";
}

/* An error the listener answers itself, in the OpenZiti envelope. */
void listener_respond_error(struct listener_exchange *ex,
                            struct listener *l, enum errcode e,
                            const char *message, bool close)
{
    size_t len;
    int status = errcode_status(e);
    const char *code = errcode_name(e);
    char *body = envelope_error(code, message ? message : errcode_message(e),
                                ex->request_id, NULL, &len);
    const char *hdrs[] = {
        MHD_HTTP_HEADER_CONTENT_TYPE, ENVELOPE_CONTENT_TYPE,
        l->request_id_header, ex->request_id,
        MHD_HTTP_HEADER_ALLOW, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
    };
    ex->local_error = true;
    ex->error_code = code;
    /* a 405 names the methods that are allowed (RFC 9110 15.5.6) */
    listener_respond(ex, status, hdrs, status == 405 ? 3 : 2, body, len,
                     close);
}

void listener_respond(struct listener_exchange *ex, int status,
                      const char *const *headers, int n_header_pairs,
                      char *body, size_t body_len, bool close)
{
    struct listener_xpriv *xp = XP(ex);
    if (xp->conn && xp->conn->native) {
        listener_native_respond(ex, status, headers, n_header_pairs, body,
                                body_len, close);
        return;
    }
    if (xp->resp || xp->phase == PHASE_ANSWERED) {
        free(body); /* answered twice: keep the first */
        return;
    }
    ex->status = status;
    ex->bytes_out = body_len;
    if (xp->conn) /* counted always: an answer is never refused */
        listener_request_charge(xp->conn->l, ex, body_len, true);
    xp->resp = listener_respond_make(ex, headers, n_header_pairs, body,
                                     body_len, close);
    if (xp->suspended) {
        /* In external-epoll mode the library has no wakeup channel: run
         * it on the next loop iteration (one run serves every resume). */
        xp->suspended = false;
        MHD_resume_connection(xp->conn->c);
        loop_defer_schedule(xp->conn->l->soon);
    }
}

/* Queue a prepared response from inside the access handler. */
enum MHD_Result listener_respond_queue(struct listener_exchange *ex)
{
    struct listener_xpriv *xp = XP(ex);
    enum MHD_Result rc = MHD_queue_response(xp->conn->c,
                                            (unsigned int)ex->status,
                                            xp->resp);
    MHD_destroy_response(xp->resp);
    xp->resp = NULL;
    xp->phase = PHASE_ANSWERED;
    /* the whole answer is due within the send timeout: a client that
     * reads slowly or not at all holds a request slot and the answer's
     * memory no longer than that */
    listener_respond_arm(xp->conn, xp->conn->l->limits.send_timeout_ms);
    return rc;
}

/* ---- the 408 path ----------------------------------------------------- */

/* Writes the 408 behind the library's back (plain HTTP only: a TLS stream
 * cannot be written to from here) and shuts the socket down; the library
 * then sees the end of the stream and cleans up. */
static void listener_respond_408(struct listener_conn *conn,
                                 struct listener_exchange *ex)
{
    struct listener *l = conn->l;
    if (!ex->request_id[0])
        listener_request_set_id(l, ex);
    ex->status = 408;
    ex->local_error = true;
    ex->error_code = errcode_name(ERR_REQUEST_TIMEOUT);
    if (!l->tls) {
        size_t len;
        char *body = envelope_error(errcode_name(ERR_REQUEST_TIMEOUT),
                                    errcode_message(ERR_REQUEST_TIMEOUT),
                                    ex->request_id, NULL, &len);
        struct buf b = {0};
        buf_printf(&b,
                   "HTTP/1.1 408 Request Timeout\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\n%s: %s\r\nConnection: close\r\n\r\n",
                   ENVELOPE_CONTENT_TYPE, len, l->request_id_header,
                   ex->request_id);
        buf_append(&b, body, len);
        ssize_t w = send(conn->fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        ex->bytes_out = w > 0 ? len : 0;
        free(body);
        buf_free(&b);
    }
    shutdown(conn->fd, SHUT_RDWR);
}

void listener_respond_deadline(void *arg)
{
    struct listener_conn *conn = arg;
    struct listener *l = conn->l;
    struct listener_exchange *ex = conn->ex;
    if (ex && XP(ex)->phase == PHASE_WAITING)
        return;
    if (ex && XP(ex)->phase == PHASE_ANSWERED) {
        /* the answer was not taken within the send timeout */
        ex->send_timed_out = true;
        if (l->ops->on_event)
            l->ops->on_event(l->ctx, LISTENER_SEND_TIMEOUT);
        shutdown(conn->fd, SHUT_RDWR);
    } else if (ex) {
        listener_respond_408(conn, ex);
    } else if (conn->served == 0) {
        /* The first request line did not arrive in time (the library
         * reports a request only once its line is complete): answer 408
         * for a request that has no exchange yet, and log it. */
        struct listener_exchange_alloc *a = xcalloc(1, sizeof(*a));
        struct listener_exchange *orphan = &a->ex;
        orphan->priv = &a->p;
        orphan->url = "";
        orphan->method_name = "-";
        orphan->method = HTTP_OTHER;
        orphan->version = "";
        orphan->start_ns = conn->start_ns;
        orphan->tls = l->tls;
        orphan->listener_index = l->index;
        listener_request_client_addr(orphan, conn->c);
        listener_respond_408(conn, orphan);
        l->ops->on_complete(l->ctx, orphan);
        free(a);
    } else {
        /* idle keep-alive time and a header deadline are over, and no
         * request line came (or it is still trickling in): close */
        shutdown(conn->fd, SHUT_RDWR);
    }
    listener_run(l); /* let the library notice the closed stream */
}

void listener_respond_arm(struct listener_conn *conn, uint64_t ms)
{
    if (ms)
        loop_timer_start(conn->deadline, ms, 0);
    else
        loop_timer_stop(conn->deadline);
}
