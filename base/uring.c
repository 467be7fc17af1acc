/* uring.c - see uring.h. */
#include "base/uring.h"

#include <errno.h>
#include <liburing.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/util.h"

struct uring {
    struct io_uring ring;   /* owned */
    unsigned entries;
};

struct uring *uring_new(unsigned entries, const char **why)
{
    struct uring *u = xcalloc(1, sizeof(*u));
    int rc = io_uring_queue_init(entries, &u->ring, 0);
    if (rc < 0) {
        *why = rc == -ENOSYS ? "the kernel has no io_uring"
               : rc == -EPERM ? "io_uring is not permitted here "
                                "(kernel.io_uring_disabled or a seccomp "
                                "profile)"
                              : strerror(-rc);
        free(u);
        return NULL;
    }
    u->entries = entries;
    return u;
}

void uring_free(struct uring *u)
{
    if (!u)
        return;
    io_uring_queue_exit(&u->ring);
    free(u);
}

unsigned uring_capacity(const struct uring *u)
{
    return u->entries;
}

/* Takes the completions that are there, without waiting. */
static unsigned uring_reap(struct uring *u, struct uring_send *s, unsigned n)
{
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe)
    {
        if (cqe->user_data < n)
            s[cqe->user_data].result = cqe->res;
        seen++;
    }
    io_uring_cq_advance(&u->ring, seen);
    return seen;
}

bool uring_send_all(struct uring *u, struct uring_send *s, unsigned n)
{
    bool ok = false;
    unsigned prepared = 0, got = 0;
    for (unsigned i = 0; i < n; i++)
        s[i].result = -ECANCELED;
    for (; prepared < n && prepared < u->entries; prepared++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
        if (!sqe)
            break;
        io_uring_prep_send(sqe, s[prepared].fd, s[prepared].data,
                           s[prepared].len, MSG_DONTWAIT | MSG_NOSIGNAL);
        sqe->user_data = prepared;
    }
    int taken = io_uring_submit(&u->ring);
    if (taken <= 0)
        goto out; /* none went: the caller frees the ring, which drops them */
    /* With MSG_DONTWAIT a send completes while it is submitted (written,
     * or -EAGAIN): its completion is there now.  Waiting for a missing
     * one is bounded by that; a failed wait gives up on the ring. */
    for (int i = 0; i < taken; i++)
        s[i].result = -EINPROGRESS;
    got = uring_reap(u, s, n);
    while (got < (unsigned)taken) {
        struct io_uring_cqe *cqe;
        int rc = io_uring_wait_cqe(&u->ring, &cqe);
        if (rc == -EINTR)
            continue;
        if (rc < 0)
            goto out;
        got += uring_reap(u, s, n);
    }
    ok = (unsigned)taken == prepared && prepared == n;
out:
    return ok;
}
