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
#include "config/config.h"

struct log;

/* Opens the sinks named in cfg.  On failure returns NULL and *err (malloc'ed). */
struct log *log_new(const struct config_log *cfg, char **err);
void log_free(struct log *lg);
/* Point the sinks at cfg's files/levels again (reload, rotation). 0 or -1. */
int log_reopen(struct log *lg, const struct config_log *cfg, char **err);
bool log_enabled(const struct log *lg, enum config_log_level level);
bool log_access_enabled(const struct log *lg);

/* {"ts":..,"level":..,"msg":"<msg>"<,fields>} where fields is a JSON object
 * body fragment such as "\"controller\":\"ctrl1\"" or NULL. */
void log_write(struct log *lg, enum config_log_level level, const char *msg,
               const char *fields);
/* printf-style message, no extra fields. */
void log_printf(struct log *lg, enum config_log_level level, const char *fmt,
                ...) __attribute__((format(printf, 3, 4)));

#define LOG_AT(lg, lvl, ...)                                                 \
    do {                                                                     \
        if (log_enabled((lg), (lvl)))                                        \
            log_printf((lg), (lvl), __VA_ARGS__);                            \
    } while (0)
#define log_debug(lg, ...) LOG_AT(lg, CONFIG_LOG_DEBUG, __VA_ARGS__)
#define log_info(lg, ...) LOG_AT(lg, CONFIG_LOG_INFO, __VA_ARGS__)
#define log_warn(lg, ...) LOG_AT(lg, CONFIG_LOG_WARN, __VA_ARGS__)
#define log_error(lg, ...) LOG_AT(lg, CONFIG_LOG_ERROR, __VA_ARGS__)

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
