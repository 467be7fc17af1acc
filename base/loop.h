/* loop.h - the event loop: timers, fd watchers, cross-thread wakeups and
 * signals.  The only interface to the event library (libuv); nothing else
 * includes uv.h.
 *
 * Ownership: a struct loop owns its handles' memory; each *_free() closes a
 * handle and its memory is released once the loop has let go of it, so a
 * handle may be freed from inside its own callback.  All handle functions
 * except loop_async_send() must be called on the loop's own thread. */
#ifndef QG_LOOP_H
#define QG_LOOP_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct loop_timer;
struct loop_io;
struct loop_async;
struct loop_signal;
struct loop_prepare;
struct loop_defer;
struct loop_resolve;
struct loop_watch;
struct addrinfo;

typedef void (*loop_cb)(void *arg);
/* events: LOOP_READ / LOOP_WRITE that are ready, LOOP_ERROR on poll error. */
typedef void (*loop_io_cb)(void *arg, int events);

enum { LOOP_READ = 1, LOOP_WRITE = 2, LOOP_ERROR = 4 };

struct loop *loop_new(void);
/* Closes every remaining handle, runs the loop until they are released,
 * then frees it. */
void loop_free(struct loop *l);
/* Runs until loop_stop() is called from a callback on this loop. */
void loop_run(struct loop *l);
void loop_stop(struct loop *l);
/* Millisecond clock cached at the start of each loop iteration. */
uint64_t loop_now_ms(const struct loop *l);
void loop_update_time(struct loop *l);

struct loop_timer *loop_timer_new(struct loop *l, loop_cb cb, void *arg);
/* Fires after timeout_ms, then every repeat_ms if non-zero.  Restarts. */
void loop_timer_start(struct loop_timer *t, uint64_t timeout_ms,
                      uint64_t repeat_ms);
void loop_timer_stop(struct loop_timer *t);
bool loop_timer_active(const struct loop_timer *t);
void loop_timer_free(struct loop_timer *t);

struct loop_io *loop_io_new(struct loop *l, int fd, loop_io_cb cb, void *arg);
/* Watch for LOOP_READ|LOOP_WRITE; 0 stops watching.  Returns 0 or -errno. */
int loop_io_set(struct loop_io *io, int events);
void loop_io_free(struct loop_io *io);

/* Wakes the loop from any thread; the callback runs on the loop's thread,
 * once for any number of sends since the last run. */
struct loop_async *loop_async_new(struct loop *l, loop_cb cb, void *arg);
void loop_async_send(struct loop_async *a);
void loop_async_free(struct loop_async *a);

struct loop_signal *loop_signal_new(struct loop *l, int signum, loop_cb cb,
                                    void *arg);
void loop_signal_free(struct loop_signal *s);

/* "Run soon": loop_defer_schedule() makes cb run once on the loop's next
 * iteration, after the loop has looked for I/O (without blocking), however
 * often it was scheduled.  Unlike a 0 ms timer restarted from a timer
 * callback (which libuv 1.44 runs again in the same timer phase, so a
 * busy timer can keep the loop from ever polling), deferred work cannot
 * starve I/O. */
struct loop_defer *loop_defer_new(struct loop *l, loop_cb cb, void *arg);
void loop_defer_schedule(struct loop_defer *d);
void loop_defer_cancel(struct loop_defer *d);
void loop_defer_free(struct loop_defer *d);

/* Runs cb at every loop iteration, just before the loop waits for I/O
 * (used to flush per-iteration batches such as the access log). */
struct loop_prepare *loop_prepare_new(struct loop *l, loop_cb cb, void *arg);
void loop_prepare_free(struct loop_prepare *p);

/* Changes in a directory (inotify, through libuv's fs events): cb runs on
 * the loop with the name of the file in it that was created, written to,
 * renamed or removed (NULL when not known) -- a hint to look, never the
 * only one: events can be coalesced or lost.  NULL when the directory
 * cannot be watched (it does not exist, say). */
typedef void (*loop_watch_cb)(void *arg, const char *name);
struct loop_watch *loop_watch_new(struct loop *l, const char *dir,
                                  loop_watch_cb cb, void *arg);
void loop_watch_free(struct loop_watch *w);

/* Name resolution (getaddrinfo) on libuv's thread pool: the loop never
 * blocks.  service is a port number (never looked up by name); any address
 * family.  cb runs once on the loop's thread with the addresses in the
 * resolver's order (ai, released after cb returns) or ai NULL and err (the
 * resolver's message), unless the resolution was cancelled first.  The
 * handle is the loop's: it is released after cb, or after a cancel.
 * NULL: the resolution could not start (bad arguments); cb never runs. */
typedef void (*loop_resolve_cb)(void *arg, const struct addrinfo *ai,
                                const char *err);
struct loop_resolve *loop_resolve(struct loop *l, const char *host,
                                  const char *service, loop_resolve_cb cb,
                                  void *arg);
/* cb will not run.  Safe until cb has started, never after. */
void loop_resolve_cancel(struct loop_resolve *r);

#endif
