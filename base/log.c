/* log.c - see log.h. */
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"

struct log {
    atomic_int level;         /* enum log_level */
    atomic_bool access_on;
    int err_fd;               /* owned unless 1/2 */
    int access_fd;            /* owned unless 1/2; -1 when off */
    pthread_mutex_t lock;     /* serialises writes of whole lines */
};

static const char *const log_level_names[] = {"debug", "info", "warn",
                                              "error"};

static int log_open_sink(const char *spec, int *fd, char **err)
{
    if (!spec || strcmp(spec, "stderr") == 0) {
        *fd = STDERR_FILENO;
        return 0;
    }
    if (strcmp(spec, "stdout") == 0) {
        *fd = STDOUT_FILENO;
        return 0;
    }
    if (strcmp(spec, "off") == 0) {
        *fd = -1;
        return 0;
    }
    int f = open(spec, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (f < 0) {
        *err = xasprintf("cannot open log file '%s': %s", spec,
                         strerror(errno));
        return -1;
    }
    *fd = f;
    return 0;
}

static bool log_fd_owned(int fd)
{
    return fd > STDERR_FILENO;
}

struct log *log_new(const struct log_sinks *cfg, char **err)
{
    struct log *lg = xcalloc(1, sizeof(*lg));
    pthread_mutex_init(&lg->lock, NULL);
    lg->err_fd = STDERR_FILENO;
    lg->access_fd = STDOUT_FILENO;
    atomic_store(&lg->level, LOG_LEVEL_INFO);
    atomic_store(&lg->access_on, true);
    if (cfg && log_reopen(lg, cfg, err) != 0) {
        log_free(lg);
        return NULL;
    }
    return lg;
}

void log_free(struct log *lg)
{
    if (!lg)
        return;
    if (log_fd_owned(lg->err_fd))
        close(lg->err_fd);
    if (log_fd_owned(lg->access_fd))
        close(lg->access_fd);
    pthread_mutex_destroy(&lg->lock);
    free(lg);
}

/* Replace *slot by fd.  Both owned descriptors: dup2 in place, so writers
 * holding the number keep a valid descriptor.  Otherwise swap under lock. */
static void log_install(struct log *lg, int *slot, int fd)
{
    pthread_mutex_lock(&lg->lock);
    if (log_fd_owned(*slot) && log_fd_owned(fd)) {
        dup2(fd, *slot);
        close(fd);
    } else {
        if (log_fd_owned(*slot))
            close(*slot);
        *slot = fd;
    }
    pthread_mutex_unlock(&lg->lock);
}

int log_reopen(struct log *lg, const struct log_sinks *cfg, char **err)
{
    int efd, afd;
    if (log_open_sink(cfg->error_log, &efd, err) != 0)
        return -1;
    if (efd < 0)
        efd = STDERR_FILENO;
    if (log_open_sink(cfg->access_log, &afd, err) != 0) {
        if (log_fd_owned(efd))
            close(efd);
        return -1;
    }
    log_install(lg, &lg->err_fd, efd);
    atomic_store(&lg->access_on, afd >= 0);
    if (afd >= 0)
        log_install(lg, &lg->access_fd, afd);
    atomic_store(&lg->level, (int)cfg->level);
    return 0;
}

bool log_enabled(const struct log *lg, enum log_level level)
{
    return lg && (int)level >= atomic_load_explicit(&lg->level,
                                                    memory_order_relaxed);
}

bool log_access_enabled(const struct log *lg)
{
    return lg && atomic_load_explicit(&lg->access_on, memory_order_relaxed);
}

void log_timestamp(char out[32])
{
    struct timespec ts;
    struct tm tm;
    char date[24];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%.19s.%03dZ", date, (int)(ts.tv_nsec / 1000000));
}

static void log_write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        p += w;
        n -= (size_t)w;
    }
}

void log_write(struct log *lg, enum log_level level, const char *msg,
               const char *fields)
{
    if (!log_enabled(lg, level))
        return;
    char ts[32];
    struct buf b = {0};
    log_timestamp(ts);
    buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
               log_level_names[level]);
    buf_json_escape(&b, msg, strlen(msg));
    buf_putc(&b, '"');
    if (fields && *fields) {
        buf_putc(&b, ',');
        buf_puts(&b, fields);
    }
    buf_puts(&b, "}\n");
    pthread_mutex_lock(&lg->lock);
    log_write_all(lg->err_fd, b.data, b.len);
    pthread_mutex_unlock(&lg->lock);
    buf_free(&b);
}

void log_printf(struct log *lg, enum log_level level, const char *fmt,
                ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_write(lg, level, msg, NULL);
}

void log_batch_init(struct log_batch *b, struct log *lg)
{
    b->lg = lg;
    b->buf = (struct buf){0};
}

void log_batch_add(struct log_batch *b, const char *line, size_t len)
{
    buf_append(&b->buf, line, len);
    buf_putc(&b->buf, '\n');
    if (b->buf.len >= 64 * 1024)
        log_batch_flush(b);
}

void log_batch_flush(struct log_batch *b)
{
    if (b->buf.len == 0)
        return;
    struct log *lg = b->lg;
    if (log_access_enabled(lg)) {
        pthread_mutex_lock(&lg->lock);
        log_write_all(lg->access_fd, b->buf.data, b->buf.len);
        pthread_mutex_unlock(&lg->lock);
    }
    buf_reset(&b->buf);
}

void log_batch_free(struct log_batch *b)
{
    log_batch_flush(b);
    buf_free(&b->buf);
}
