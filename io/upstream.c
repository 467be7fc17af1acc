/* upstream.c - see upstream.h.  Wraps libcurl 7.88 (multi socket API). */
#include "io/upstream.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

#include "base/list.h"
#include "base/loop.h"
#include "base/util.h"
#include "io/h1addr.h"
#include "io/h1client.h"
#include "io/headers.h"

/* A connect_to line and its libcurl list, kept for the upstream's life. */
struct upstream_route {
    char *key;                   /* owned */
    struct curl_slist *list;     /* owned */
};

/* Owned by one loop. */
struct upstream {
    struct loop *loop;           /* borrowed */
    CURLM *multi;                /* owned */
    CURLSH *share;               /* owned: DNS and TLS sessions */
    struct loop_timer *timer;    /* owned */
    struct loop_defer *soon;     /* owned: libcurl asked for a 0 ms timeout */
    struct upstream_settings s;  /* strings owned */
    CURL **pool;                 /* owned idle easy handles */
    int n_pool, cap_pool;
    struct upstream_route *routes;/* owned */
    int n_routes;
    int active;
    struct list runs;            /* owned upstream_runs: in flight */
    struct list spare;           /* owned upstream_runs: for reuse */
    struct h1client *h1;         /* owned: the request path's own client */
};

/* One per socket libcurl asks us to watch. */
struct upstream_sock {
    struct upstream *u;          /* borrowed */
    curl_socket_t fd;
    struct loop_io *io;          /* owned */
};

/* Per running request, hung on the easy handle's private pointer.  The
 * header list handed to libcurl is built in place over the caller's lines
 * (libcurl only reads it, and the lines outlive the transfer), so a
 * request allocates no list nodes; runs are recycled. */
struct upstream_run {
    struct upstream_req *r;      /* borrowed */
    CURL *e;                     /* the easy handle it runs on */
    struct curl_slist *nodes;    /* owned array; data borrowed from r */
    int cap_nodes;
    struct list link;            /* in the upstream's runs (or spare) */
};

static struct upstream_run *upstream_run_of(struct list *l)
{
    return list_entry(l, struct upstream_run, link);
}

static void upstream_run_unlink(struct upstream *u, struct upstream_run *run)
{
    list_remove(&run->link);
    curl_multi_remove_handle(u->multi, run->e);
    curl_easy_setopt(run->e, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(run->e, CURLOPT_PRIVATE, NULL);
    run->r->priv = NULL;
    u->active--;
}

static void upstream_run_put(struct upstream *u, struct upstream_run *run)
{
    list_insert_head(&u->spare, &run->link);
}

static struct upstream_run *upstream_run_get(struct upstream *u)
{
    struct list *l = list_pop_head(&u->spare);
    if (l)
        return upstream_run_of(l);
    struct upstream_run *run = xcalloc(1, sizeof(*run));
    list_init(&run->link);
    return run;
}

static struct curl_slist *upstream_run_headers(struct upstream_run *run,
                                               const char *const *lines,
                                               int n)
{
    if (n <= 0)
        return NULL;
    if (n > run->cap_nodes) {
        run->cap_nodes = n < 16 ? 16 : n;
        run->nodes = xrealloc(run->nodes,
                              (size_t)run->cap_nodes * sizeof(*run->nodes));
    }
    for (int i = 0; i < n; i++) {
        run->nodes[i].data = (char *)lines[i];
        run->nodes[i].next = i + 1 < n ? &run->nodes[i + 1] : NULL;
    }
    return run->nodes;
}

static char *upstream_dup(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void upstream_settings_copy(struct upstream_settings *dst,
                                   const struct upstream_settings *src)
{
    free((char *)dst->ca_file);
    free((char *)dst->cert_file);
    free((char *)dst->key_file);
    *dst = *src;
    dst->ca_file = upstream_dup(src->ca_file);
    dst->cert_file = upstream_dup(src->cert_file);
    dst->key_file = upstream_dup(src->key_file);
}

/* ---- response capture ------------------------------------------------ */

void upstream_resp_header_addn(struct upstream_req *r, const char *p,
                               size_t nlen, const char *v, size_t vlen)
{
    if (r->n_resp_hdrs == r->cap_resp_hdrs) {
        r->cap_resp_hdrs = r->cap_resp_hdrs ? 2 * r->cap_resp_hdrs : 16;
        r->resp_hdrs = xrealloc(r->resp_hdrs, (size_t)r->cap_resp_hdrs *
                                                  sizeof(*r->resp_hdrs));
    }
    struct upstream_header *h = &r->resp_hdrs[r->n_resp_hdrs++];
    h->name_off = (uint32_t)r->resp_hdr_data.len;
    h->name_len = (uint32_t)nlen;
    buf_append(&r->resp_hdr_data, p, nlen);
    buf_putc(&r->resp_hdr_data, '\0');
    h->value_off = (uint32_t)r->resp_hdr_data.len;
    h->value_len = (uint32_t)vlen;
    buf_append(&r->resp_hdr_data, v, vlen);
    buf_putc(&r->resp_hdr_data, '\0');
}

void upstream_resp_header_add(struct upstream_req *r, const char *name,
                              const char *value)
{
    upstream_resp_header_addn(r, name, strlen(name), value, strlen(value));
}

static size_t upstream_on_header(char *p, size_t size, size_t n, void *arg)
{
    struct upstream_req *r = arg;
    size_t len = size * n, end = len;
    while (end && (p[end - 1] == '\r' || p[end - 1] == '\n'))
        end--;
    if (end >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        /* a status line: start over (interim 1xx answers come first) */
        r->n_resp_hdrs = 0;
        buf_reset(&r->resp_hdr_data);
        return len;
    }
    const char *colon = memchr(p, ':', end);
    if (!colon || colon == p || p[0] == ' ' || p[0] == '\t')
        return len; /* blank line, or obsolete folding: ignored */
    size_t nlen = (size_t)(colon - p);
    const char *v = colon + 1;
    while (v < p + end && (*v == ' ' || *v == '\t'))
        v++;
    upstream_resp_header_addn(r, p, nlen, v, (size_t)(p + end - v));
    return len;
}

static size_t upstream_on_body(char *p, size_t size, size_t n, void *arg)
{
    struct upstream_req *r = arg;
    size_t len = size * n;
    if (r->max_response && r->resp_body.len + len > r->max_response) {
        r->result = UPSTREAM_TOO_LARGE;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    buf_append(&r->resp_body, p, len);
    return len;
}

/* ---- easy handles ------------------------------------------------------ */

static CURL *upstream_easy_new(struct upstream *u)
{
    CURL *e = curl_easy_init();
    if (!e)
        abort();
    const struct upstream_settings *s = &u->s;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SHARE, u->share);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, upstream_on_header);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, upstream_on_body);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)s->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_MAXAGE_CONN,
                     (long)((s->idle_timeout_ms + 999) / 1000));
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, s->verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, s->verify ? 2L : 0L);
    if (s->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
    if (s->cert_file)
        curl_easy_setopt(e, CURLOPT_SSLCERT, s->cert_file);
    if (s->key_file)
        curl_easy_setopt(e, CURLOPT_SSLKEY, s->key_file);
    return e;
}

static CURL *upstream_easy_get(struct upstream *u)
{
    if (u->n_pool > 0)
        return u->pool[--u->n_pool];
    return upstream_easy_new(u);
}

static void upstream_easy_put(struct upstream *u, CURL *e)
{
    if (u->n_pool == u->cap_pool) {
        u->cap_pool = u->cap_pool ? 2 * u->cap_pool : 16;
        u->pool = xrealloc(u->pool, (size_t)u->cap_pool * sizeof(*u->pool));
    }
    u->pool[u->n_pool++] = e;
}

static struct curl_slist *upstream_route(struct upstream *u, const char *key)
{
    for (int i = 0; i < u->n_routes; i++)
        if (strcmp(u->routes[i].key, key) == 0)
            return u->routes[i].list;
    u->routes = xrealloc(u->routes,
                         (size_t)(u->n_routes + 1) * sizeof(*u->routes));
    struct upstream_route *rt = &u->routes[u->n_routes++];
    rt->key = xstrdup(key);
    rt->list = curl_slist_append(NULL, key);
    return rt->list;
}

/* ---- completion -------------------------------------------------------- */

static enum upstream_result upstream_map(CURLcode rc, bool sent)
{
    switch (rc) {
    case CURLE_OK:
        return UPSTREAM_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
        return UPSTREAM_CONNECT_ERROR;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
        return sent ? UPSTREAM_RESET : UPSTREAM_TLS_ERROR;
    case CURLE_OPERATION_TIMEDOUT:
        return sent ? UPSTREAM_TIMEOUT : UPSTREAM_CONNECT_TIMEOUT;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
        return sent ? UPSTREAM_RESET : UPSTREAM_CONNECT_ERROR;
    default:
        return UPSTREAM_ERROR;
    }
}

static void upstream_finish(struct upstream *u, CURL *e, CURLcode rc)
{
    struct upstream_run *run = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&run);
    struct upstream_req *r = run->r;
    long status = 0, reqsize = 0;
    curl_off_t total_us = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &reqsize);
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &total_us);
    r->sent = reqsize > 0;
    r->via_own_client = false;
    r->duration_ns = (uint64_t)total_us * 1000u;
    if (r->result != UPSTREAM_TOO_LARGE)
        r->result = upstream_map(rc, r->sent);
    /* a timeout may have been spent waiting for a pooled connection:
     * only a connection that failed says the controller is not there */
    long oserr = 0;
    curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &oserr);
    r->unreachable = rc == CURLE_COULDNT_CONNECT &&
                     !util_errno_is_local((int)oserr);
    r->status = r->result == UPSTREAM_OK ? (int)status : 0;
    if (rc != CURLE_OK && !r->error[0])
        snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(rc));
    upstream_run_unlink(u, run);
    upstream_run_put(u, run);
    upstream_easy_put(u, e);
    r->done(r, r->arg);
}

static void upstream_check(struct upstream *u)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->multi, &left))) {
        if (msg->msg == CURLMSG_DONE)
            upstream_finish(u, msg->easy_handle, msg->data.result);
    }
}

/* ---- driving libcurl from the loop ----------------------------------- */

static void upstream_io(void *arg, int events)
{
    struct upstream_sock *us = arg;
    struct upstream *u = us->u;
    int flags = 0, running;
    if (events & LOOP_READ)
        flags |= CURL_CSELECT_IN;
    if (events & LOOP_WRITE)
        flags |= CURL_CSELECT_OUT;
    if (events & LOOP_ERROR)
        flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(u->multi, us->fd, flags, &running);
    upstream_check(u);
}

static void upstream_timeout(void *arg)
{
    struct upstream *u = arg;
    int running;
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    upstream_check(u);
}

static int upstream_sock_cb(CURL *e, curl_socket_t s, int what, void *userp,
                            void *socketp)
{
    struct upstream *u = userp;
    struct upstream_sock *us = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (us) {
            loop_io_free(us->io);
            free(us);
            curl_multi_assign(u->multi, s, NULL);
        }
        return 0;
    }
    if (!us) {
        us = xcalloc(1, sizeof(*us));
        us->u = u;
        us->fd = s;
        us->io = loop_io_new(u->loop, s, upstream_io, us);
        if (!us->io) {
            free(us);
            return -1;
        }
        curl_multi_assign(u->multi, s, us);
    }
    int ev = 0;
    if (what & CURL_POLL_IN)
        ev |= LOOP_READ;
    if (what & CURL_POLL_OUT)
        ev |= LOOP_WRITE;
    loop_io_set(us->io, ev);
    return 0;
}

static int upstream_timer_cb(CURLM *m, long timeout_ms, void *userp)
{
    struct upstream *u = userp;
    if (timeout_ms < 0) {
        loop_timer_stop(u->timer);
        loop_defer_cancel(u->soon);
    } else if (timeout_ms == 0) {
        /* once per loop iteration, never again inside this timer phase:
         * responses waiting on sockets are read first */
        loop_timer_stop(u->timer);
        loop_defer_schedule(u->soon);
    } else {
        loop_defer_cancel(u->soon);
        loop_timer_start(u->timer, (uint64_t)timeout_ms, 0);
    }
    return 0;
}

/* ---- public ------------------------------------------------------------ */

struct upstream *upstream_new(struct loop *loop,
                              const struct upstream_settings *s)
{
    struct upstream *u = xcalloc(1, sizeof(*u));
    u->loop = loop;
    list_init(&u->runs);
    list_init(&u->spare);
    upstream_settings_copy(&u->s, s);
    u->multi = curl_multi_init();
    u->share = curl_share_init();
    if (!u->multi || !u->share)
        abort();
    curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(u->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    u->timer = loop_timer_new(loop, upstream_timeout, u);
    u->soon = loop_defer_new(loop, upstream_timeout, u);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, upstream_sock_cb);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, upstream_timer_cb);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long)s->max_host_connections);
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS,
                      (long)s->max_host_connections * 16);
    u->h1 = h1client_new(loop, s);
    return u;
}

void upstream_set_settings(struct upstream *u,
                           const struct upstream_settings *s)
{
    /* TLS material cannot change under live connections (restart-only);
     * timeouts and limits apply to new handles and requests. */
    u->s.connect_timeout_ms = s->connect_timeout_ms;
    u->s.idle_timeout_ms = s->idle_timeout_ms;
    h1client_set_settings(u->h1, s);
    for (int i = 0; i < u->n_pool; i++) {
        curl_easy_setopt(u->pool[i], CURLOPT_CONNECTTIMEOUT_MS,
                         (long)s->connect_timeout_ms);
        curl_easy_setopt(u->pool[i], CURLOPT_MAXAGE_CONN,
                         (long)((s->idle_timeout_ms + 999) / 1000));
    }
}

void upstream_free(struct upstream *u)
{
    if (!u)
        return;
    h1client_free(u->h1);
    struct list *l;
    while ((l = list_first(&u->runs))) {
        struct upstream_run *run = upstream_run_of(l);
        CURL *e = run->e;
        upstream_run_unlink(u, run);
        upstream_run_put(u, run);
        curl_easy_cleanup(e);
    }
    while ((l = list_pop_head(&u->spare))) {
        struct upstream_run *run = upstream_run_of(l);
        free(run->nodes);
        free(run);
    }
    for (int i = 0; i < u->n_pool; i++)
        curl_easy_cleanup(u->pool[i]);
    free(u->pool);
    curl_multi_cleanup(u->multi);
    curl_share_cleanup(u->share);
    for (int i = 0; i < u->n_routes; i++) {
        free(u->routes[i].key);
        curl_slist_free_all(u->routes[i].list);
    }
    free(u->routes);
    loop_timer_free(u->timer);
    loop_defer_free(u->soon);
    upstream_settings_copy(&u->s, &(struct upstream_settings){0});
    free(u);
}

/* The host r connects to (connect_to's address, else the URL's) is in
 * the domain "invalid", which never resolves (RFC 6761 6.4; h1addr.h):
 * the resolver is not asked, not even by libcurl. */
static bool upstream_never_resolves(const struct upstream_req *r)
{
    const char *h, *end;
    if (r->connect_to) {
        h = strchr(r->connect_to, ':');
        h = h ? strchr(h + 1, ':') : NULL;
        if (!h)
            return false;
        h++;
        end = strrchr(h, ':');
    } else {
        h = strstr(r->url, "://");
        if (!h)
            return false;
        h += 3;
        end = h + strcspn(h, "/?#");
        const char *colon = end;
        while (colon > h && colon[-1] != ':' && colon[-1] != ']')
            colon--;
        if (colon > h && colon[-1] == ':')
            end = colon - 1;
    }
    return end && end > h && h1addr_never_resolves(h, (size_t)(end - h));
}

void upstream_start(struct upstream *u, struct upstream_req *r)
{
    /* the request path runs on the own client; so does a request for a
     * name that never resolves, which it fails at once */
    if ((r->own_client || upstream_never_resolves(r)) &&
        h1client_start(u->h1, r))
        return;
    if (!r->headers && r->fields) {
        headers_blank_for_libcurl(r->fields);
        r->headers = headers_lines(r->fields);
        r->n_headers = r->fields->n;
    }
    CURL *e = upstream_easy_get(u);
    struct upstream_run *run = upstream_run_get(u);
    run->r = r;
    run->e = e;
    list_insert_head(&u->runs, &run->link);
    upstream_req_reset(r);
    r->priv = e;

    curl_easy_setopt(e, CURLOPT_PRIVATE, run);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_CONNECT_TO,
                     r->connect_to ? upstream_route(u, r->connect_to) : NULL);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER,
                     upstream_run_headers(run, r->headers, r->n_headers));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
    curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, r->fresh_connection ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, NULL);
    curl_easy_setopt(e, CURLOPT_NOBODY, 0L);
    switch (r->method) {
    case HTTP_GET:
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        break;
    case HTTP_HEAD:
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        break;
    case HTTP_POST:
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)r->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        break;
    default:
        if (r->body_len) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t)r->body_len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
        } else {
            curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        }
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
                         r->method == HTTP_OTHER ? r->method_name
                                                 : http_method_name(r->method));
        break;
    }
    u->active++;
    if (curl_multi_add_handle(u->multi, e) != CURLM_OK)
        abort();
}

void upstream_cancel(struct upstream *u, struct upstream_req *r)
{
    if (r->on_own_client) {
        h1client_cancel(u->h1, r);
        return;
    }
    CURL *e = r->priv;
    if (!e)
        return;
    struct upstream_run *run = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&run);
    upstream_run_unlink(u, run);
    upstream_run_put(u, run);
    upstream_easy_put(u, e);
}

int upstream_active(const struct upstream *u)
{
    return u->active + h1client_active(u->h1);
}

void upstream_req_reset(struct upstream_req *r)
{
    r->result = UPSTREAM_OK;
    r->status = 0;
    r->sent = false;
    r->batched = false;
    r->unreachable = false;
    r->n_resp_hdrs = 0;
    buf_reset(&r->resp_hdr_data);
    buf_reset(&r->resp_body);
    r->duration_ns = 0;
    r->error[0] = '\0';
}

void upstream_req_free(struct upstream_req *r)
{
    buf_free(&r->resp_hdr_data);
    buf_free(&r->resp_body);
    free(r->resp_hdrs);
    r->resp_hdrs = NULL;
    r->n_resp_hdrs = r->cap_resp_hdrs = 0;
}

bool upstream_resp_header(const struct upstream_req *r, const char *name,
                          const char **value, size_t *len)
{
    for (int i = 0; i < r->n_resp_hdrs; i++) {
        const struct upstream_header *h = &r->resp_hdrs[i];
        if (util_strncaseeq(r->resp_hdr_data.data + h->name_off, h->name_len,
                            name)) {
            *value = r->resp_hdr_data.data + h->value_off;
            *len = h->value_len;
            return true;
        }
    }
    return false;
}

const char *upstream_result_name(enum upstream_result res)
{
    static const char *const names[UPSTREAM__COUNT] = {
        [UPSTREAM_OK] = "ok",
        [UPSTREAM_CONNECT_ERROR] = "connect_error",
        [UPSTREAM_TLS_ERROR] = "tls_error",
        [UPSTREAM_CONNECT_TIMEOUT] = "connect_timeout",
        [UPSTREAM_TIMEOUT] = "timeout",
        [UPSTREAM_RESET] = "reset",
        [UPSTREAM_TOO_LARGE] = "response_too_large",
        [UPSTREAM_ERROR] = "error",
    };
    return res < UPSTREAM__COUNT ? names[res] : "error";
}

bool upstream_result_never_sent(const struct upstream_req *r)
{
    return r->result == UPSTREAM_CONNECT_ERROR ||
           r->result == UPSTREAM_TLS_ERROR ||
           r->result == UPSTREAM_CONNECT_TIMEOUT;
}
