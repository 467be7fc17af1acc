/* metrics.c - see metrics.h.
 *
 * Storage: one flat array of atomic 64-bit cells.  Every metric owns a
 * contiguous range of series laid out row-major over its label dimensions
 * (series = (l0 * n1 + l1) * n2 + l2, with n = 1 for unused dimensions).
 * A counter series is one cell (uint64 count); a gauge series one cell (the
 * bits of a double); a histogram series has one cell per bucket (including
 * +Inf; counts are per bucket, not cumulative, so an observation touches a
 * single bucket) followed by the sum in nanoseconds.  The exposition makes
 * the buckets cumulative and derives _count from them, so le="+Inf" always
 * equals _count.  All accesses are relaxed atomics: a scrape sees each cell
 * at some recent value, which is all Prometheus needs.
 */
#include "metrics/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* ---- Static tables from metrics.def ------------------------------------- */

/* Label values of the static dimensions, indexed by their enum. */
/* Designated initializers tie each value to its enumerator whatever the
 * order; the two counts below catch a missing enumerator (a NULL hole), and
 * -Woverride-init (in -Wextra) a duplicated one. */
#define METRICS_VALUE_(e, text) [e] = text,
#define METRICS_ENTRY_(e, text) text,
#define METRICS_N_ENTRIES_(VALUES)                                            \
    (sizeof((const char *[]){VALUES(METRICS_ENTRY_)}) / sizeof(const char *))
#define METRICS_LABEL_EXTERN(DIM, name, ctype, count, VALUES)                 \
    static const char *const metrics_values_##DIM[] = {VALUES(METRICS_VALUE_)};\
    _Static_assert(ARRAY_LEN(metrics_values_##DIM) == (count) &&              \
                       METRICS_N_ENTRIES_(VALUES) == (count),                 \
                   "metrics.def: values of " #DIM " do not match its enum");
#define METRICS_LABEL_ENUM(DIM, name, tag, VALUES)                            \
    static const char *const metrics_values_##DIM[] = {VALUES(METRICS_VALUE_)};
#include "metrics/metrics.def"

struct metrics_dim_info {
    const char *name;
    const char *const *values; /* NULL for the dynamic dimension */
    unsigned count;            /* 0 for the dynamic dimension */
};

static const struct metrics_dim_info metrics_dims[M_DIM__COUNT] = {
#define METRICS_LABEL_EXTERN(DIM, name, ctype, count, VALUES)                 \
    [M_DIM_##DIM] = {name, metrics_values_##DIM, (count)},
#define METRICS_LABEL_ENUM(DIM, name, tag, VALUES)                            \
    [M_DIM_##DIM] = {name, metrics_values_##DIM, M_##DIM##__COUNT},
#define METRICS_LABEL_DYNAMIC(DIM, name) [M_DIM_##DIM] = {name, NULL, 0},
#include "metrics/metrics.def"
};

/* Histogram bucket sets. */
#define METRICS_UNPAREN_(...) __VA_ARGS__
#define METRICS_BUCKETS(SET, bounds)                                          \
    static const double metrics_bounds_##SET[] = {METRICS_UNPAREN_ bounds};   \
    _Static_assert(ARRAY_LEN(metrics_bounds_##SET) <= METRICS_MAX_BUCKETS,    \
                   "metrics.def: too many buckets in " #SET);
#include "metrics/metrics.def"

static const struct {
    const double *bounds;
    int n;
} metrics_bucket_sets[M_BUCKETS__COUNT] = {
#define METRICS_BUCKETS(SET, bounds)                                          \
    [M_BUCKETS_##SET] = {metrics_bounds_##SET,                                \
                         (int)ARRAY_LEN(metrics_bounds_##SET)},
#include "metrics/metrics.def"
};

/* Every metric row. */
#define METRICS_DIM_NONE_ M_DIM_NONE
#define METRIC(ID, name_, TYPE, BUCKETS, NLABELS, L0, L1, L2, help_)          \
    [M_##ID] = {.id = #ID,                                                    \
                .name = name_,                                                \
                .help = help_,                                                \
                .type = METRICS_##TYPE,                                       \
                .buckets = M_BUCKETS_##BUCKETS,                               \
                .n_labels = NLABELS,                                          \
                .dims = {M_DIM_##L0, M_DIM_##L1, M_DIM_##L2}},
static const struct metrics_desc metrics_descs[M__COUNT] = {
#include "metrics/metrics.def"
};

const struct metrics_desc *metrics_desc(enum metrics_id id)
{
    return ((unsigned)id < M__COUNT) ? &metrics_descs[id] : NULL;
}

const char *metrics_dim_name(enum metrics_dim dim)
{
    return ((unsigned)dim < M_DIM__COUNT) ? metrics_dims[dim].name : NULL;
}

const double *metrics_bucket_bounds(enum metrics_buckets set, int *n)
{
    if ((unsigned)set >= M_BUCKETS__COUNT) {
        *n = 0;
        return NULL;
    }
    *n = metrics_bucket_sets[set].n;
    return metrics_bucket_sets[set].bounds;
}

/* ---- The registry ------------------------------------------------------- */

struct metrics_layout {
    size_t base;                     /* first cell */
    unsigned n[METRICS_MAX_LABELS];  /* values per label slot, 1 if unused */
    size_t n_series;
    unsigned width;                  /* cells per series */
    const uint64_t *bound_ns;        /* histograms: borrowed from metrics */
    unsigned n_bounds;               /* histograms: finite bounds */
};

struct metrics {
    int n_controllers;
    char **controller_ids;           /* owned: n_controllers strings */
    struct metrics_layout layout[M__COUNT];
    uint64_t bound_ns[M_BUCKETS__COUNT][METRICS_MAX_BUCKETS];
    char le[M_BUCKETS__COUNT][METRICS_MAX_BUCKETS][32]; /* "0.0005" */
    size_t n_cells;
    _Atomic uint64_t *cells;         /* owned: n_cells */
    _Atomic uint64_t invalid;
};

/* Doubles in Prometheus text: integers without a fraction, otherwise the
 * shortest %g that reads back exactly; never a locale's decimal comma. */
static void metrics_format_double(double v, char *out, size_t size)
{
    if (isnan(v)) {
        snprintf(out, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(out, size, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (fabs(v) < 9007199254740992.0 && v == trunc(v)) {
        snprintf(out, size, "%" PRId64, (int64_t)v);
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        /* %g prints digits, sign, 'e' and the locale's radix character
         * (maybe several bytes): rewrite anything else as one '.'. */
        size_t j = 0;
        bool radix = false;
        for (size_t i = 0; tmp[i] && j + 1 < size; i++) {
            char c = tmp[i];
            if ((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e') {
                out[j++] = c;
                radix = false;
            } else if (!radix) {
                out[j++] = '.';
                radix = true;
            }
        }
        out[j] = '\0';
        if (prec == 17 || strtod(out, NULL) == v)
            return;
    }
}

static void metrics_layout_init(struct metrics *m)
{
    size_t cells = 0;
    for (int id = 0; id < M__COUNT; id++) {
        const struct metrics_desc *d = &metrics_descs[id];
        struct metrics_layout *l = &m->layout[id];
        l->n_series = 1;
        for (int k = 0; k < METRICS_MAX_LABELS; k++) {
            l->n[k] = k < d->n_labels ? metrics_dim_size(m, d->dims[k]) : 1;
            l->n_series *= l->n[k];
        }
        l->width = 1;
        if (d->type == METRICS_HISTOGRAM) {
            l->n_bounds = (unsigned)metrics_bucket_sets[d->buckets].n;
            l->bound_ns = m->bound_ns[d->buckets];
            l->width = l->n_bounds + 2; /* buckets, +Inf, sum */
        }
        l->base = cells;
        cells += l->n_series * l->width;
    }
    m->n_cells = cells;
}

struct metrics *metrics_create(const char *const *controller_ids,
                               int n_controllers)
{
    struct metrics *m = xcalloc(1, sizeof *m);
    m->n_controllers = n_controllers > 0 ? n_controllers : 0;
    m->controller_ids = xcalloc((size_t)m->n_controllers + 1, sizeof(char *));
    for (int i = 0; i < m->n_controllers; i++)
        m->controller_ids[i] = xstrdup(controller_ids[i]);

    for (int s = 0; s < M_BUCKETS__COUNT; s++)
        for (int b = 0; b < metrics_bucket_sets[s].n; b++) {
            double bound = metrics_bucket_sets[s].bounds[b];
            m->bound_ns[s][b] = metrics_seconds_to_ns_(bound);
            metrics_format_double(bound, m->le[s][b], sizeof m->le[s][b]);
        }

    metrics_layout_init(m);
    m->cells = xcalloc(m->n_cells, sizeof *m->cells);
    for (size_t i = 0; i < m->n_cells; i++)
        atomic_init(&m->cells[i], 0);
    atomic_init(&m->invalid, 0);

    metrics_set(m, M_BUILD_INFO, M_VERSION_CURRENT, 1);
    metrics_set(m, M_CONFIG_LAST_RELOAD_SUCCESSFUL, 1);
    metrics_set(m, M_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
                (double)(util_wall_ms() / 1000));
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_controllers; i++)
        free(m->controller_ids[i]);
    free(m->controller_ids);
    free(m->cells);
    free(m);
}

int metrics_controller_count(const struct metrics *m)
{
    return m->n_controllers;
}

unsigned metrics_dim_size(const struct metrics *m, enum metrics_dim dim)
{
    if ((unsigned)dim >= M_DIM__COUNT)
        return 0;
    if (!metrics_dims[dim].values)
        return (unsigned)m->n_controllers;
    return metrics_dims[dim].count;
}

const char *metrics_label_value(const struct metrics *m, enum metrics_dim dim,
                                unsigned i)
{
    if (i >= metrics_dim_size(m, dim))
        return NULL;
    if (!metrics_dims[dim].values)
        return m->controller_ids[i];
    return metrics_dims[dim].values[i];
}

uint64_t metrics_invalid_updates(const struct metrics *m)
{
    return atomic_load_explicit(&m->invalid, memory_order_relaxed);
}

/* ---- Updates ------------------------------------------------------------ */

/* The first cell of a series, or NULL (counted) when a label is out of
 * range or the id is not of the expected type. */
static _Atomic uint64_t *metrics_series(const struct metrics *m,
                                        enum metrics_id id,
                                        enum metrics_type type, unsigned l0,
                                        unsigned l1, unsigned l2)
{
    if ((unsigned)id >= M__COUNT || metrics_descs[id].type != type)
        goto invalid;
    const struct metrics_layout *l = &m->layout[id];
    if (l0 >= l->n[0] || l1 >= l->n[1] || l2 >= l->n[2])
        goto invalid;
    size_t s = ((size_t)l0 * l->n[1] + l1) * l->n[2] + l2;
    return &m->cells[l->base + s * l->width];
invalid:
    /* The registry is otherwise read-only after creation; this counter is
     * the one cell updated through a const pointer on the error path. */
    atomic_fetch_add_explicit((_Atomic uint64_t *)&m->invalid, 1,
                              memory_order_relaxed);
    return NULL;
}

static double metrics_bits_to_double(uint64_t bits)
{
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static uint64_t metrics_double_to_bits(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits;
}

void metrics_counter_add_(struct metrics *m, enum metrics_id id, unsigned l0,
                          unsigned l1, unsigned l2, uint64_t n)
{
    _Atomic uint64_t *c = metrics_series(m, id, METRICS_COUNTER, l0, l1, l2);
    if (c)
        atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void metrics_gauge_set_(struct metrics *m, enum metrics_id id, unsigned l0,
                        unsigned l1, unsigned l2, double v)
{
    _Atomic uint64_t *c = metrics_series(m, id, METRICS_GAUGE, l0, l1, l2);
    if (c)
        atomic_store_explicit(c, metrics_double_to_bits(v),
                              memory_order_relaxed);
}

void metrics_gauge_add_(struct metrics *m, enum metrics_id id, unsigned l0,
                        unsigned l1, unsigned l2, double d)
{
    _Atomic uint64_t *c = metrics_series(m, id, METRICS_GAUGE, l0, l1, l2);
    if (!c)
        return;
    uint64_t old = atomic_load_explicit(c, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(
        c, &old, metrics_double_to_bits(metrics_bits_to_double(old) + d),
        memory_order_relaxed, memory_order_relaxed)) {
    }
}

void metrics_observe_ns_(struct metrics *m, enum metrics_id id, unsigned l0,
                         unsigned l1, unsigned l2, uint64_t ns)
{
    _Atomic uint64_t *c = metrics_series(m, id, METRICS_HISTOGRAM, l0, l1, l2);
    if (!c)
        return;
    const struct metrics_layout *l = &m->layout[id];
    unsigned b = 0;
    while (b < l->n_bounds && ns > l->bound_ns[b])
        b++;                         /* b == n_bounds: the +Inf bucket */
    atomic_fetch_add_explicit(&c[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&c[l->n_bounds + 1], ns, memory_order_relaxed);
}

/* ---- Reads -------------------------------------------------------------- */

static uint64_t metrics_load(const _Atomic uint64_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)c, memory_order_relaxed);
}

static uint64_t metrics_hist_count(const struct metrics_layout *l,
                                   const _Atomic uint64_t *c)
{
    uint64_t total = 0;
    for (unsigned b = 0; b <= l->n_bounds; b++)
        total += metrics_load(&c[b]);
    return total;
}

double metrics_get_(const struct metrics *m, enum metrics_id id, unsigned l0,
                    unsigned l1, unsigned l2)
{
    if ((unsigned)id >= M__COUNT)
        return 0;
    enum metrics_type t = metrics_descs[id].type;
    const _Atomic uint64_t *c = metrics_series(m, id, t, l0, l1, l2);
    if (!c)
        return 0;
    switch (t) {
    case METRICS_COUNTER:
        return (double)metrics_load(c);
    case METRICS_GAUGE:
        return metrics_bits_to_double(metrics_load(c));
    case METRICS_HISTOGRAM:
        return (double)metrics_hist_count(&m->layout[id], c);
    }
    return 0;
}

double metrics_get_sum_(const struct metrics *m, enum metrics_id id,
                        unsigned l0, unsigned l1, unsigned l2)
{
    const _Atomic uint64_t *c =
        metrics_series(m, id, METRICS_HISTOGRAM, l0, l1, l2);
    if (!c)
        return 0;
    return (double)metrics_load(&c[m->layout[id].n_bounds + 1]) / 1e9;
}

uint64_t metrics_get_bucket_(const struct metrics *m, enum metrics_id id,
                             unsigned l0, unsigned l1, unsigned l2,
                             unsigned bucket)
{
    const _Atomic uint64_t *c =
        metrics_series(m, id, METRICS_HISTOGRAM, l0, l1, l2);
    if (!c)
        return 0;
    const struct metrics_layout *l = &m->layout[id];
    uint64_t total = 0;
    for (unsigned b = 0; b <= bucket && b <= l->n_bounds; b++)
        total += metrics_load(&c[b]);
    return total;
}

/* ---- Exposition ------------------------------------------------------------
 * Text format 0.0.4: HELP escapes \ and newline; label values escape \, "
 * and newline. */

static void metrics_escape(struct buf *out, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            buf_puts(out, "\\\\");
        else if (*s == '\n')
            buf_puts(out, "\\n");
        else if (quote && *s == '"')
            buf_puts(out, "\\\"");
        else
            buf_putc(out, *s);
    }
}

/* name{labels[,le="x"]} value-prefix: appends the series name and its label
 * set (nothing when there are no labels at all). */
static void metrics_series_name(const struct metrics *m, struct buf *out,
                                const struct metrics_desc *d,
                                const char *suffix, const unsigned *labels,
                                const char *le)
{
    buf_puts(out, METRICS_PREFIX);
    buf_puts(out, d->name);
    buf_puts(out, suffix);
    if (d->n_labels == 0 && !le)
        return;
    buf_putc(out, '{');
    for (int k = 0; k < d->n_labels; k++) {
        if (k)
            buf_putc(out, ',');
        buf_puts(out, metrics_dims[d->dims[k]].name);
        buf_puts(out, "=\"");
        metrics_escape(out, metrics_label_value(m, d->dims[k], labels[k]),
                       true);
        buf_putc(out, '"');
    }
    if (le) {
        buf_puts(out, d->n_labels ? ",le=\"" : "le=\"");
        buf_puts(out, le);
        buf_putc(out, '"');
    }
    buf_putc(out, '}');
}

static void metrics_render_series(const struct metrics *m, struct buf *out,
                                  enum metrics_id id, const unsigned *labels,
                                  const _Atomic uint64_t *c)
{
    const struct metrics_desc *d = &metrics_descs[id];
    const struct metrics_layout *l = &m->layout[id];
    char num[64];

    switch (d->type) {
    case METRICS_COUNTER:
        metrics_series_name(m, out, d, "", labels, NULL);
        buf_printf(out, " %" PRIu64 "\n", metrics_load(c));
        break;
    case METRICS_GAUGE:
        metrics_series_name(m, out, d, "", labels, NULL);
        metrics_format_double(metrics_bits_to_double(metrics_load(c)), num,
                              sizeof num);
        buf_printf(out, " %s\n", num);
        break;
    case METRICS_HISTOGRAM: {
        uint64_t cum = 0;
        for (unsigned b = 0; b <= l->n_bounds; b++) {
            cum += metrics_load(&c[b]);
            const char *le =
                b < l->n_bounds ? m->le[d->buckets][b] : "+Inf";
            metrics_series_name(m, out, d, "_bucket", labels, le);
            buf_printf(out, " %" PRIu64 "\n", cum);
        }
        metrics_format_double(
            (double)metrics_load(&c[l->n_bounds + 1]) / 1e9, num, sizeof num);
        metrics_series_name(m, out, d, "_sum", labels, NULL);
        buf_printf(out, " %s\n", num);
        metrics_series_name(m, out, d, "_count", labels, NULL);
        buf_printf(out, " %" PRIu64 "\n", cum);
        break;
    }
    }
}

void metrics_render(const struct metrics *m, struct buf *out)
{
    static const char *const type_names[] = {
        [METRICS_COUNTER] = "counter",
        [METRICS_GAUGE] = "gauge",
        [METRICS_HISTOGRAM] = "histogram",
    };
    for (int id = 0; id < M__COUNT; id++) {
        const struct metrics_desc *d = &metrics_descs[id];
        const struct metrics_layout *l = &m->layout[id];

        buf_puts(out, "# HELP " METRICS_PREFIX);
        buf_puts(out, d->name);
        buf_putc(out, ' ');
        metrics_escape(out, d->help, false);
        buf_printf(out, "\n# TYPE " METRICS_PREFIX "%s %s\n", d->name,
                   type_names[d->type]);

        for (size_t s = 0; s < l->n_series; s++) {
            unsigned labels[METRICS_MAX_LABELS];
            labels[2] = (unsigned)(s % l->n[2]);
            labels[1] = (unsigned)(s / l->n[2] % l->n[1]);
            labels[0] = (unsigned)(s / l->n[2] / l->n[1]);
            metrics_render_series(m, out, (enum metrics_id)id, labels,
                                  &m->cells[l->base + s * l->width]);
        }
    }
}
