/* metrics.h - the metrics registry and its Prometheus exposition.
 *
 * Every metric is declared once, in metrics/metrics.def.  A registry is
 * created with the configured controller ids; it preallocates every series
 * that can exist, so each one is exported (as 0) from the first scrape.
 *
 * Updating (any thread, lock-free: relaxed C11 atomics, no allocation):
 *
 *     metrics_inc(m, M_REQUESTS_TOTAL, cls, method, metrics_code_of(status));
 *     metrics_add(m, M_RETRIES_TOTAL, cls, RETRY_NO_LEADER, 2);
 *     metrics_set(m, M_CONTROLLER_UP, ctrl_index, 1);
 *     metrics_inc(m, M_REQUESTS_IN_FLIGHT);  metrics_dec(...);
 *     metrics_observe(m, M_REQUEST_DURATION_SECONDS, cls, 0.0012);
 *     metrics_observe_ns(m, M_UPSTREAM_DURATION_SECONDS, ctrl_index, ns);
 *     double v = metrics_get(m, M_LEADER_CHANGES_TOTAL);
 *
 * The first two arguments are the registry and the metric id (M_<ID> from
 * metrics.def), then one argument per label, in the order of the .def row,
 * then the value if the operation takes one.  Each call expands to a
 * generated inline function per metric and operation, so the compiler checks
 * the number of labels, that the operation suits the metric type (there is
 * no metrics_observe for a counter), and warns (-Wextra: -Wenum-conversion)
 * when a label argument is a variable of the wrong enum type.  Labels are
 * small indexes: the project enums (enum route_class, enum http_method,
 * enum retry_reason), the M_* enums generated below, or for "controller" the
 * controller's index in the ids given to metrics_create.  An update with an
 * out-of-range label is dropped and counted (metrics_invalid_updates).
 *
 * Values: counters are uint64 counts; gauges are doubles; histograms take
 * seconds (or nanoseconds) and keep per-bucket counts and a sum in integer
 * nanoseconds, so totals are exact.
 */
#ifndef QG_METRICS_H
#define QG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "config/config.h" /* enum route_class, enum retry_reason */
#include "base/http.h"   /* enum http_method */

#define METRICS_PREFIX "quorumgate_"
/* Content-Type of metrics_render's output (text format 0.0.4). */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_MAX_LABELS 3
#define METRICS_MAX_BUCKETS 32

enum metrics_type { METRICS_COUNTER = 0, METRICS_GAUGE, METRICS_HISTOGRAM };

/* ---- Generated from metrics.def ---------------------------------------- */

/* Label value enums declared in metrics.def (enum metrics_code { M_CODE_1XX,
 * ..., M_CODE__COUNT } etc.), and M_<DIM>__COUNT for the external ones. */
#define METRICS_ENUMERATOR_(e, text) e,
#define METRICS_LABEL_ENUM(DIM, name, tag, VALUES)                            \
    enum tag { VALUES(METRICS_ENUMERATOR_) M_##DIM##__COUNT };
#define METRICS_LABEL_EXTERN(DIM, name, ctype, count, VALUES)                 \
    enum { M_##DIM##__COUNT = (count) };
#include "metrics/metrics.def"

/* Label dimensions: M_DIM_CLASS, ..., M_DIM_CONTROLLER. */
enum metrics_dim {
#define METRICS_LABEL_EXTERN(DIM, name, ctype, count, VALUES) M_DIM_##DIM,
#define METRICS_LABEL_ENUM(DIM, name, tag, VALUES) M_DIM_##DIM,
#define METRICS_LABEL_DYNAMIC(DIM, name) M_DIM_##DIM,
#include "metrics/metrics.def"
    M_DIM__COUNT,
    M_DIM_NONE = -1
};

/* The C type of each label argument: metrics_label_CLASS is enum
 * route_class, metrics_label_CONTROLLER is int, ... */
#define METRICS_LABEL_EXTERN(DIM, name, ctype, count, VALUES)                 \
    typedef ctype metrics_label_##DIM;
#define METRICS_LABEL_ENUM(DIM, name, tag, VALUES)                            \
    typedef enum tag metrics_label_##DIM;
#define METRICS_LABEL_DYNAMIC(DIM, name) typedef int metrics_label_##DIM;
#include "metrics/metrics.def"

/* Histogram bucket sets: M_BUCKETS_SECONDS, ... */
enum metrics_buckets {
#define METRICS_BUCKETS(SET, bounds) M_BUCKETS_##SET,
#include "metrics/metrics.def"
    M_BUCKETS__COUNT,
    M_BUCKETS_NONE = -1
};

/* Metric ids: M_REQUESTS_TOTAL, ... */
enum metrics_id {
#define METRIC(ID, name, TYPE, BUCKETS, NLABELS, L0, L1, L2, help) M_##ID,
#include "metrics/metrics.def"
    M__COUNT
};

/* ---- Introspection (tests, /status, the exposition) --------------------- */

/* One row of metrics.def.  Static, never freed. */
struct metrics_desc {
    const char *id;                 /* "REQUESTS_TOTAL" */
    const char *name;               /* "requests_total" (no prefix) */
    const char *help;
    enum metrics_type type;
    enum metrics_buckets buckets;   /* M_BUCKETS_NONE unless a histogram */
    int n_labels;
    enum metrics_dim dims[METRICS_MAX_LABELS]; /* M_DIM_NONE past n_labels */
};

const struct metrics_desc *metrics_desc(enum metrics_id id);
/* The label name of a dimension ("class"). */
const char *metrics_dim_name(enum metrics_dim dim);
/* Upper bounds (seconds) of a bucket set, +Inf not included. */
const double *metrics_bucket_bounds(enum metrics_buckets set, int *n);

/* ---- The registry ------------------------------------------------------- */

/* Opaque.  Owns its cells and a copy of the controller ids.  Thread-safe for
 * every update, read and render; create and free are not (one owner). */
struct metrics;

/* ids[0..n_controllers) are copied; their order gives the controller label
 * index.  Sets build_info to 1, and since the registry is made from a
 * configuration that just loaded, config_last_reload_successful to 1 and
 * config_last_reload_success_timestamp_seconds to now. */
struct metrics *metrics_create(const char *const *controller_ids,
                               int n_controllers);
void metrics_free(struct metrics *m);

int metrics_controller_count(const struct metrics *m);
/* Number of values of a dimension (the controller count for CONTROLLER). */
unsigned metrics_dim_size(const struct metrics *m, enum metrics_dim dim);
/* Label value i of a dimension, unescaped; NULL when out of range. */
const char *metrics_label_value(const struct metrics *m, enum metrics_dim dim,
                                unsigned i);
/* Updates (and reads) refused because a label index was out of range or
 * the operation did not suit the metric type (untyped entry points). */
uint64_t metrics_invalid_updates(const struct metrics *m);

/* Append the Prometheus text exposition (format 0.0.4, METRICS_CONTENT_TYPE)
 * of every metric to out, ending with a newline. */
void metrics_render(const struct metrics *m, struct buf *out);

/* Status class of an HTTP status (metrics label "code").  Statuses outside
 * 100..599 count as 5xx: the proxy answers them as an upstream error. */
static inline enum metrics_code metrics_code_of(int status)
{
    if (status < 100 || status > 599)
        return M_CODE_5XX;
    return (enum metrics_code)(status / 100 - 1);
}

/* ---- Untyped entry points ------------------------------------------------
 * What the typed helpers below call; usable directly when the metric id is
 * only known at run time.  Labels past the metric's own are passed as 0.
 * The caller must use the function that suits the metric type. */
void metrics_counter_add_(struct metrics *m, enum metrics_id id, unsigned l0,
                          unsigned l1, unsigned l2, uint64_t n);
void metrics_gauge_set_(struct metrics *m, enum metrics_id id, unsigned l0,
                        unsigned l1, unsigned l2, double v);
void metrics_gauge_add_(struct metrics *m, enum metrics_id id, unsigned l0,
                        unsigned l1, unsigned l2, double d);
void metrics_observe_ns_(struct metrics *m, enum metrics_id id, unsigned l0,
                         unsigned l1, unsigned l2, uint64_t ns);
/* Counter or gauge value; for a histogram its count.  0 when out of range. */
double metrics_get_(const struct metrics *m, enum metrics_id id, unsigned l0,
                    unsigned l1, unsigned l2);
/* Histogram sum in seconds. */
double metrics_get_sum_(const struct metrics *m, enum metrics_id id,
                        unsigned l0, unsigned l1, unsigned l2);
/* Histogram cumulative count of bucket b (b == number of bounds: +Inf). */
uint64_t metrics_get_bucket_(const struct metrics *m, enum metrics_id id,
                             unsigned l0, unsigned l1, unsigned l2,
                             unsigned b);

static inline uint64_t metrics_seconds_to_ns_(double s)
{
    if (!(s > 0))                     /* negative, zero or NaN */
        return 0;
    if (s >= 18e9)                    /* about 570 years: clamp */
        return UINT64_C(18000000000000000000);
    return (uint64_t)(s * 1e9 + 0.5);
}

/* ---- Typed helpers ---------------------------------------------------------
 *   counters:   metrics_inc, metrics_add (uint64_t), metrics_get
 *   gauges:     metrics_set, metrics_add (double), metrics_inc, metrics_dec,
 *               metrics_get
 *   histograms: metrics_observe (seconds), metrics_observe_ns, metrics_get
 *               (count), metrics_get_sum (seconds), metrics_get_bucket
 *               (cumulative; last index = +Inf)
 * METRICS_END_ closes every argument list so that metrics without labels
 * need no empty macro argument (C11 has no __VA_OPT__). */
enum metrics_end_ { METRICS_END_ = 0 };

#define METRICS_CALL_(op, m, id, ...) metrics_##op##__##id(m, __VA_ARGS__)
#define metrics_inc(...) METRICS_CALL_(inc, __VA_ARGS__, METRICS_END_)
#define metrics_dec(...) METRICS_CALL_(dec, __VA_ARGS__, METRICS_END_)
#define metrics_add(...) METRICS_CALL_(add, __VA_ARGS__, METRICS_END_)
#define metrics_set(...) METRICS_CALL_(set, __VA_ARGS__, METRICS_END_)
#define metrics_observe(...) METRICS_CALL_(observe, __VA_ARGS__, METRICS_END_)
#define metrics_observe_ns(...)                                               \
    METRICS_CALL_(observe_ns, __VA_ARGS__, METRICS_END_)
#define metrics_get(...) METRICS_CALL_(get, __VA_ARGS__, METRICS_END_)
#define metrics_get_sum(...) METRICS_CALL_(get_sum, __VA_ARGS__, METRICS_END_)
#define metrics_get_bucket(...)                                               \
    METRICS_CALL_(get_bucket, __VA_ARGS__, METRICS_END_)

/* Parameter lists and label slots by number of labels. */
#define METRICS_PARAMS_0_(A, B, C)
#define METRICS_PARAMS_1_(A, B, C) metrics_label_##A l0,
#define METRICS_PARAMS_2_(A, B, C) metrics_label_##A l0, metrics_label_##B l1,
#define METRICS_PARAMS_3_(A, B, C)                                            \
    metrics_label_##A l0, metrics_label_##B l1, metrics_label_##C l2,
#define METRICS_SLOTS_0_ 0u, 0u, 0u
#define METRICS_SLOTS_1_ (unsigned)l0, 0u, 0u
#define METRICS_SLOTS_2_ (unsigned)l0, (unsigned)l1, 0u
#define METRICS_SLOTS_3_ (unsigned)l0, (unsigned)l1, (unsigned)l2

#define METRICS_OPS_COUNTER_(ID, PARAMS, SLOTS)                               \
    static inline void metrics_inc__M_##ID(struct metrics *m,                 \
                                           PARAMS enum metrics_end_ end_)     \
    {                                                                         \
        (void)end_;                                                           \
        metrics_counter_add_(m, M_##ID, SLOTS, 1);                            \
    }                                                                         \
    static inline void metrics_add__M_##ID(struct metrics *m, PARAMS          \
                                           uint64_t n, enum metrics_end_ end_)\
    {                                                                         \
        (void)end_;                                                           \
        metrics_counter_add_(m, M_##ID, SLOTS, n);                            \
    }                                                                         \
    static inline double metrics_get__M_##ID(const struct metrics *m,         \
                                             PARAMS enum metrics_end_ end_)   \
    {                                                                         \
        (void)end_;                                                           \
        return metrics_get_(m, M_##ID, SLOTS);                                \
    }

#define METRICS_OPS_GAUGE_(ID, PARAMS, SLOTS)                                 \
    static inline void metrics_set__M_##ID(struct metrics *m, PARAMS          \
                                           double v, enum metrics_end_ end_)  \
    {                                                                         \
        (void)end_;                                                           \
        metrics_gauge_set_(m, M_##ID, SLOTS, v);                              \
    }                                                                         \
    static inline void metrics_add__M_##ID(struct metrics *m, PARAMS          \
                                           double d, enum metrics_end_ end_)  \
    {                                                                         \
        (void)end_;                                                           \
        metrics_gauge_add_(m, M_##ID, SLOTS, d);                              \
    }                                                                         \
    static inline void metrics_inc__M_##ID(struct metrics *m,                 \
                                           PARAMS enum metrics_end_ end_)     \
    {                                                                         \
        (void)end_;                                                           \
        metrics_gauge_add_(m, M_##ID, SLOTS, 1.0);                            \
    }                                                                         \
    static inline void metrics_dec__M_##ID(struct metrics *m,                 \
                                           PARAMS enum metrics_end_ end_)     \
    {                                                                         \
        (void)end_;                                                           \
        metrics_gauge_add_(m, M_##ID, SLOTS, -1.0);                           \
    }                                                                         \
    static inline double metrics_get__M_##ID(const struct metrics *m,         \
                                             PARAMS enum metrics_end_ end_)   \
    {                                                                         \
        (void)end_;                                                           \
        return metrics_get_(m, M_##ID, SLOTS);                                \
    }

#define METRICS_OPS_HISTOGRAM_(ID, PARAMS, SLOTS)                             \
    static inline void metrics_observe__M_##ID(struct metrics *m, PARAMS      \
                                               double seconds,                \
                                               enum metrics_end_ end_)        \
    {                                                                         \
        (void)end_;                                                           \
        metrics_observe_ns_(m, M_##ID, SLOTS,                                 \
                            metrics_seconds_to_ns_(seconds));                 \
    }                                                                         \
    static inline void metrics_observe_ns__M_##ID(struct metrics *m, PARAMS   \
                                                  uint64_t ns,                \
                                                  enum metrics_end_ end_)     \
    {                                                                         \
        (void)end_;                                                           \
        metrics_observe_ns_(m, M_##ID, SLOTS, ns);                            \
    }                                                                         \
    static inline double metrics_get__M_##ID(const struct metrics *m,         \
                                             PARAMS enum metrics_end_ end_)   \
    {                                                                         \
        (void)end_;                                                           \
        return metrics_get_(m, M_##ID, SLOTS);                                \
    }                                                                         \
    static inline double metrics_get_sum__M_##ID(const struct metrics *m,     \
                                                 PARAMS                       \
                                                 enum metrics_end_ end_)      \
    {                                                                         \
        (void)end_;                                                           \
        return metrics_get_sum_(m, M_##ID, SLOTS);                            \
    }                                                                         \
    static inline uint64_t metrics_get_bucket__M_##ID(                        \
        const struct metrics *m, PARAMS unsigned bucket,                      \
        enum metrics_end_ end_)                                               \
    {                                                                         \
        (void)end_;                                                           \
        return metrics_get_bucket_(m, M_##ID, SLOTS, bucket);                 \
    }

#define METRIC(ID, name, TYPE, BUCKETS, NLABELS, L0, L1, L2, help)            \
    METRICS_OPS_##TYPE##_(ID, METRICS_PARAMS_##NLABELS##_(L0, L1, L2),        \
                          METRICS_SLOTS_##NLABELS##_)
#include "metrics/metrics.def"

#endif
