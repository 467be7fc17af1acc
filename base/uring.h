/* uring.h - sends to many sockets in one system call, through io_uring
 * (liburing; the only liburing user).
 *
 * Why: on a machine where the receiver of a send sleeps on the same CPU
 * (a controller next to quorumgate, or any process the kernel wakes),
 * every send() that wakes it returns to a context switch: forwarding the
 * requests of one loop turn one send() each ping-pongs with the receiver,
 * one request per switch.  One submission of all of them wakes it once
 * (bench/RESULTS.md, issue 16).
 *
 * Every send is made with MSG_DONTWAIT | MSG_NOSIGNAL and has its result
 * when uring_send_all() returns: io_uring never finishes one later, so
 * nothing is ever written behind the caller's back.
 *
 * Ownership: struct uring owns its ring; uring_free() releases it.  One
 * loop (thread) uses a ring. */
#ifndef QG_URING_H
#define QG_URING_H

#include <stdbool.h>
#include <stddef.h>

struct uring;

struct uring_send {
    int fd;
    const void *data;   /* borrowed */
    size_t len;         /* > 0 */
    long result;        /* out: bytes written (maybe fewer than len), or
                           -errno: nothing written (-EAGAIN: the socket is
                           full), except -EINPROGRESS: see uring_send_all */
};

/* A ring for batches of up to `entries` sends, or NULL with why (a static
 * text, or strerror's) in *why: io_uring refused (kernel.io_uring_disabled,
 * a seccomp profile such as Docker's default, a kernel without it). */
struct uring *uring_new(unsigned entries, const char **why);
void uring_free(struct uring *u);
/* The most sends one uring_send_all() takes. */
unsigned uring_capacity(const struct uring *u);

/* Sends s[0..n) (n <= uring_capacity) in one submission.  true: every
 * s[i].result is set.  false: the ring failed and must not be used again:
 * uring_free() it (that also drops what the kernel did not take, so none
 * of it is sent later).  Then -ECANCELED = the kernel did not take it
 * (not sent); -EINPROGRESS = taken, its outcome unknown (take it as
 * written); any other result is as above. */
bool uring_send_all(struct uring *u, struct uring_send *s, unsigned n);

#endif
