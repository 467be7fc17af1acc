/* loop.c - see loop.h.  Wraps libuv. */
#include "base/loop.h"

#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "base/util.h"

struct loop {
    uv_loop_t uv;          /* embedded */
};

/* Started and stopped several times per request (the deadlines of a
 * connection and of an exchange), so lazily: the libuv timer is moved only
 * when the new deadline is earlier than the one it is armed for.  Armed
 * for an earlier deadline (or after a stop) it fires early, and
 * loop_timer_cb re-arms it for the rest or ignores it; while stopped it
 * holds no reference on the loop.  (uv_timer_start and uv_timer_stop were
 * ~1,100 instructions per proxied request, bench/run.sh --only cost.) */
struct loop_timer {
    uv_timer_t h;          /* first member: handle pointer == struct pointer */
    loop_cb cb;
    void *arg;
    bool on;               /* started and not yet fired or stopped */
    uint64_t due;          /* when on: the deadline, loop clock */
    uint64_t repeat;
    uint64_t armed;        /* while h is active: the deadline it has */
};

struct loop_io {
    uv_poll_t h;
    loop_io_cb cb;
    void *arg;
    int events;
};

struct loop_async {
    uv_async_t h;
    loop_cb cb;
    void *arg;
};

struct loop_signal {
    uv_signal_t h;
    loop_cb cb;
    void *arg;
};

struct loop_watch {
    uv_fs_event_t h;
    loop_watch_cb cb;
    void *arg;
};

struct loop_prepare {
    uv_prepare_t h;
    loop_cb cb;
    void *arg;
};

struct loop_defer {
    uv_idle_t h;           /* active while scheduled: the loop polls
                              without blocking, then runs it once */
    loop_cb cb;
    void *arg;
};

struct loop_resolve {
    uv_getaddrinfo_t req;  /* first member: request pointer == struct */
    loop_resolve_cb cb;    /* NULL once cancelled */
    void *arg;
};

struct loop *loop_new(void)
{
    struct loop *l = xcalloc(1, sizeof(*l));
    if (uv_loop_init(&l->uv) != 0)
        abort();
    return l;
}

static void loop_close_cb(uv_handle_t *h)
{
    free(h);
}

static void loop_close_walk(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, loop_close_cb);
}

void loop_free(struct loop *l)
{
    if (!l)
        return;
    uv_walk(&l->uv, loop_close_walk, NULL);
    uv_run(&l->uv, UV_RUN_DEFAULT);
    uv_loop_close(&l->uv);
    free(l);
}

void loop_run(struct loop *l)
{
    uv_run(&l->uv, UV_RUN_DEFAULT);
}

void loop_stop(struct loop *l)
{
    uv_stop(&l->uv);
}

uint64_t loop_now_ms(const struct loop *l)
{
    return uv_now(&l->uv);
}

void loop_update_time(struct loop *l)
{
    uv_update_time(&l->uv);
}

static void loop_timer_arm(struct loop_timer *t, uint64_t now);

static void loop_timer_cb(uv_timer_t *h)
{
    struct loop_timer *t = (struct loop_timer *)h;
    uint64_t now = uv_now(h->loop);
    if (!t->on)
        return; /* stopped since it was armed */
    if (now < t->due) { /* restarted for later since it was armed */
        loop_timer_arm(t, now);
        return;
    }
    if (t->repeat) {
        t->due = now + t->repeat;
        loop_timer_arm(t, now);
    } else {
        t->on = false;
    }
    t->cb(t->arg);
}

static void loop_timer_arm(struct loop_timer *t, uint64_t now)
{
    uv_timer_start(&t->h, loop_timer_cb, t->due - now, 0);
    t->armed = t->due;
}

struct loop_timer *loop_timer_new(struct loop *l, loop_cb cb, void *arg)
{
    struct loop_timer *t = xcalloc(1, sizeof(*t));
    uv_timer_init(&l->uv, &t->h);
    t->cb = cb;
    t->arg = arg;
    return t;
}

void loop_timer_start(struct loop_timer *t, uint64_t timeout_ms,
                      uint64_t repeat_ms)
{
    uint64_t now = uv_now(t->h.loop);
    t->on = true;
    t->due = now + timeout_ms;
    t->repeat = repeat_ms;
    uv_ref((uv_handle_t *)&t->h);
    if (!uv_is_active((const uv_handle_t *)&t->h) || t->armed > t->due)
        loop_timer_arm(t, now);
}

void loop_timer_stop(struct loop_timer *t)
{
    t->on = false;
    uv_unref((uv_handle_t *)&t->h); /* may stay armed: see struct */
}

bool loop_timer_active(const struct loop_timer *t)
{
    return t->on;
}

void loop_timer_free(struct loop_timer *t)
{
    if (!t)
        return;
    uv_timer_stop(&t->h);
    uv_close((uv_handle_t *)&t->h, loop_close_cb);
}

static void loop_io_cb_uv(uv_poll_t *h, int status, int events)
{
    struct loop_io *io = (struct loop_io *)h;
    int ev = 0;
    if (status < 0)
        ev = LOOP_ERROR | (io->events & (LOOP_READ | LOOP_WRITE));
    if (events & UV_READABLE)
        ev |= LOOP_READ;
    if (events & UV_WRITABLE)
        ev |= LOOP_WRITE;
    io->cb(io->arg, ev);
}

struct loop_io *loop_io_new(struct loop *l, int fd, loop_io_cb cb, void *arg)
{
    struct loop_io *io = xcalloc(1, sizeof(*io));
    int rc = uv_poll_init(&l->uv, &io->h, fd);
    if (rc != 0) {
        free(io);
        return NULL;
    }
    io->cb = cb;
    io->arg = arg;
    return io;
}

int loop_io_set(struct loop_io *io, int events)
{
    io->events = events;
    if (events == 0)
        return uv_poll_stop(&io->h);
    int uvev = 0;
    if (events & LOOP_READ)
        uvev |= UV_READABLE;
    if (events & LOOP_WRITE)
        uvev |= UV_WRITABLE;
    return uv_poll_start(&io->h, uvev, loop_io_cb_uv);
}

void loop_io_free(struct loop_io *io)
{
    if (!io)
        return;
    uv_poll_stop(&io->h);
    uv_close((uv_handle_t *)&io->h, loop_close_cb);
}

static void loop_async_cb(uv_async_t *h)
{
    struct loop_async *a = (struct loop_async *)h;
    a->cb(a->arg);
}

struct loop_async *loop_async_new(struct loop *l, loop_cb cb, void *arg)
{
    struct loop_async *a = xcalloc(1, sizeof(*a));
    a->cb = cb;
    a->arg = arg;
    if (uv_async_init(&l->uv, &a->h, loop_async_cb) != 0)
        abort();
    return a;
}

void loop_async_send(struct loop_async *a)
{
    uv_async_send(&a->h);
}

void loop_async_free(struct loop_async *a)
{
    if (a)
        uv_close((uv_handle_t *)&a->h, loop_close_cb);
}

static void loop_signal_cb(uv_signal_t *h, int signum)
{
    struct loop_signal *s = (struct loop_signal *)h;
    s->cb(s->arg);
}

struct loop_signal *loop_signal_new(struct loop *l, int signum, loop_cb cb,
                                    void *arg)
{
    struct loop_signal *s = xcalloc(1, sizeof(*s));
    s->cb = cb;
    s->arg = arg;
    uv_signal_init(&l->uv, &s->h);
    uv_signal_start(&s->h, loop_signal_cb, signum);
    return s;
}

void loop_signal_free(struct loop_signal *s)
{
    if (!s)
        return;
    uv_signal_stop(&s->h);
    uv_close((uv_handle_t *)&s->h, loop_close_cb);
}

static void loop_watch_event(uv_fs_event_t *h, const char *name, int events,
                             int status)
{
    struct loop_watch *w = (struct loop_watch *)h;
    (void)events;
    (void)status; /* an error is also a reason to look */
    w->cb(w->arg, name);
}

struct loop_watch *loop_watch_new(struct loop *l, const char *dir,
                                  loop_watch_cb cb, void *arg)
{
    struct loop_watch *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    uv_fs_event_init(&l->uv, &w->h);
    if (uv_fs_event_start(&w->h, loop_watch_event, dir, 0) != 0) {
        uv_close((uv_handle_t *)&w->h, loop_close_cb);
        return NULL;
    }
    return w;
}

void loop_watch_free(struct loop_watch *w)
{
    if (!w)
        return;
    uv_fs_event_stop(&w->h);
    uv_close((uv_handle_t *)&w->h, loop_close_cb);
}

static void loop_prepare_cb(uv_prepare_t *h)
{
    struct loop_prepare *p = (struct loop_prepare *)h;
    p->cb(p->arg);
}

struct loop_prepare *loop_prepare_new(struct loop *l, loop_cb cb, void *arg)
{
    struct loop_prepare *p = xcalloc(1, sizeof(*p));
    p->cb = cb;
    p->arg = arg;
    uv_prepare_init(&l->uv, &p->h);
    uv_prepare_start(&p->h, loop_prepare_cb);
    return p;
}

void loop_prepare_free(struct loop_prepare *p)
{
    if (!p)
        return;
    uv_prepare_stop(&p->h);
    uv_close((uv_handle_t *)&p->h, loop_close_cb);
}

static void loop_defer_cb(uv_idle_t *h)
{
    struct loop_defer *d = (struct loop_defer *)h;
    uv_idle_stop(h);
    d->cb(d->arg);
}

struct loop_defer *loop_defer_new(struct loop *l, loop_cb cb, void *arg)
{
    struct loop_defer *d = xcalloc(1, sizeof(*d));
    d->cb = cb;
    d->arg = arg;
    uv_idle_init(&l->uv, &d->h);
    return d;
}

void loop_defer_schedule(struct loop_defer *d)
{
    uv_idle_start(&d->h, loop_defer_cb); /* no-op when already scheduled */
}

void loop_defer_cancel(struct loop_defer *d)
{
    uv_idle_stop(&d->h);
}

void loop_defer_free(struct loop_defer *d)
{
    if (!d)
        return;
    uv_idle_stop(&d->h);
    uv_close((uv_handle_t *)&d->h, loop_close_cb);
}

static void loop_resolve_done(uv_getaddrinfo_t *req, int status,
                              struct addrinfo *ai)
{
    struct loop_resolve *r = (struct loop_resolve *)req;
    if (r->cb && status != UV_ECANCELED)
        r->cb(r->arg, status == 0 ? ai : NULL,
              status == 0 ? NULL : uv_strerror(status));
    uv_freeaddrinfo(ai);
    free(r);
}

struct loop_resolve *loop_resolve(struct loop *l, const char *host,
                                  const char *service, loop_resolve_cb cb,
                                  void *arg)
{
    struct loop_resolve *r = xcalloc(1, sizeof(*r));
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV; /* no AI_ADDRCONFIG: it drops the
                                        loopback family a host lacks
                                        elsewhere */
    r->cb = cb;
    r->arg = arg;
    int rc = uv_getaddrinfo(&l->uv, &r->req, loop_resolve_done, host, service,
                            &hints);
    if (rc != 0) {
        free(r);
        return NULL;
    }
    return r;
}

void loop_resolve_cancel(struct loop_resolve *r)
{
    if (!r)
        return;
    r->cb = NULL;
    uv_cancel((uv_req_t *)&r->req); /* fails once running: then it ends
                                        by itself and is freed in done */
}
