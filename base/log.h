/* log.h - the error log and the access log, both JSON lines.
 *
 * Ownership: struct log owns its file descriptors.  It is shared by every
 * thread: the level is atomic, writes of whole lines are serialised, and a
 * reopen (SIGHUP, rotation) replaces the descriptors in place with dup2 so
 * that writers never see a closed descriptor.  Access-log lines are batched
 * per worker in a struct log_batch and written once per loop iteration. */
#ifndef QG_LOG_H
#define QG_LOG_H

#include <stdarg.h>
#include <stdbool.h>

#include "base/buf.h"

struct log;

enum log_level {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO,
    LOG_LEVEL_WARN,
    LOG_LEVEL_ERROR
};

/* Where the lines go, and from which level on. */
struct log_sinks {
    enum log_level level;
    const char *error_log;   /* "stderr" (also NULL), "stdout" or a path */
    const char *access_log;  /* "stdout", "stderr", a path or "off" */
};

/* Opens the sinks (NULL: stderr and stdout, level info).  On failure
 * returns NULL and *err (malloc'ed). */
struct log *log_new(const struct log_sinks *s, char **err);
void log_free(struct log *lg);
/* Point the sinks at s's files/level again (reload, rotation). 0 or -1. */
int log_reopen(struct log *lg, const struct log_sinks *s, char **err);
bool log_enabled(const struct log *lg, enum log_level level);
bool log_access_enabled(const struct log *lg);

/* {"ts":..,"level":..,"msg":"<msg>"<,fields>} where fields is a JSON object
 * body fragment such as "\"controller\":\"ctrl1\"" or NULL. */
void log_write(struct log *lg, enum log_level level, const char *msg,
               const char *fields);
/* printf-style message, no extra fields. */
void log_printf(struct log *lg, enum log_level level, const char *fmt,
                ...) __attribute__((format(printf, 3, 4)));

#define LOG_AT(lg, lvl, ...)                                                 \
    do {                                                                     \
        if (log_enabled((lg), (lvl)))                                        \
            log_printf((lg), (lvl), __VA_ARGS__);                            \
    } while (0)
#define log_debug(lg, ...) LOG_AT(lg, LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(lg, ...) LOG_AT(lg, LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(lg, ...) LOG_AT(lg, LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(lg, ...) LOG_AT(lg, LOG_LEVEL_ERROR, __VA_ARGS__)

/* Current time as RFC 3339 UTC with milliseconds, into out[32]. */
void log_timestamp(char out[32]);

/* A per-worker batch of access-log lines. */
struct log_batch {
    struct log *lg;   /* borrowed */
    struct buf buf;   /* owned */
};

void log_batch_init(struct log_batch *b, struct log *lg);
/* Appends one complete line (a JSON object without the newline). */
void log_batch_add(struct log_batch *b, const char *line, size_t len);
void log_batch_flush(struct log_batch *b);
void log_batch_free(struct log_batch *b);

#endif
