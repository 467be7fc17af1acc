/* test_metrics.c - the metrics registry and its Prometheus exposition. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics/metrics.h"
#include "base/buf.h"
#include "base/util.h"

/* ---- Helpers ------------------------------------------------------------- */

static const char *const test_ids[] = {"ctrl1", "ctrl2", "ctrl3"};

static struct metrics *test_registry(void)
{
    return metrics_create(test_ids, 3);
}

static char *test_render(const struct metrics *m)
{
    struct buf b = {0};
    metrics_render(m, &b);
    return buf_steal(&b, NULL);
}

/* The value on the line that starts with "series " (exact series), or NULL. */
static const char *test_find_series(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return p + n + 1;
    return NULL;
}

static void test_expect_line(const char *text, const char *series,
                             const char *value)
{
    const char *v = test_find_series(text, series);
    if (!v)
        fail_msg("series not rendered: %s", series);
    size_t n = strlen(value);
    if (strncmp(v, value, n) != 0 || v[n] != '\n')
        fail_msg("%s: expected %s, got %.*s", series, value,
                 (int)strcspn(v, "\n"), v);
}

/* Run a shell command, capture its output, return its exit status (or -1
 * when it did not exit normally). */
static int test_run(const char *cmd, struct buf *output)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
        buf_append(output, chunk, n);
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *test_write_temp(const char *text, size_t len)
{
    char *path = xstrdup("/tmp/qg-metrics-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return path;
}

/* promtool check metrics on text; returns its exit status. */
static int test_promtool(const char *text, size_t len, struct buf *output)
{
    char *path = test_write_temp(text, len);
    char *cmd = xasprintf("promtool check metrics < %s 2>&1", path);
    int rc = test_run(cmd, output);
    unlink(path);
    free(cmd);
    free(path);
    return rc;
}

/* ---- The rules metrics.def must follow ----------------------------------- */

static bool test_ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool test_snake(const char *s)
{
    if (!s[0] || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

/* Checks a descriptor table; appends one line per problem to errs and
 * returns how many it found.  Used on the real table and on bad ones. */
static int test_check_descs(const struct metrics_desc *d, int n,
                            struct buf *errs)
{
    int bad = 0;
    /* Every name a metric occupies in the exposition. */
    char *names[4 * M__COUNT + 64];
    int owner[4 * M__COUNT + 64];
    int n_names = 0;
    assert_true(n <= M__COUNT + 16);

#define TEST_BAD(...)                                                         \
    do {                                                                      \
        buf_printf(errs, __VA_ARGS__);                                        \
        buf_putc(errs, '\n');                                                 \
        bad++;                                                                \
    } while (0)

    for (int i = 0; i < n; i++) {
        const char *name = d[i].name;
        if (!name || !test_snake(name)) {
            TEST_BAD("metric %d: bad name", i);
            continue;
        }
        if (!d[i].help || !d[i].help[0])
            TEST_BAD("%s: no help text", name);
        if (d[i].type == METRICS_COUNTER && !test_ends_with(name, "_total"))
            TEST_BAD("%s: counter without _total", name);
        if (d[i].type != METRICS_COUNTER && test_ends_with(name, "_total"))
            TEST_BAD("%s: only counters end in _total", name);
        if (d[i].type == METRICS_HISTOGRAM &&
            (!test_ends_with(name, "_seconds") ||
             d[i].buckets == M_BUCKETS_NONE))
            TEST_BAD("%s: histograms are in _seconds, with buckets", name);
        if (d[i].type != METRICS_HISTOGRAM && d[i].buckets != M_BUCKETS_NONE)
            TEST_BAD("%s: buckets on a non-histogram", name);
        if (strstr(name, "_ms") || strstr(name, "millis") ||
            strstr(name, "micro"))
            TEST_BAD("%s: not a base unit", name);
        if (d[i].id) {
            char upper[128];
            size_t k = 0;
            for (; name[k] && k + 1 < sizeof upper; k++)
                upper[k] = (char)(name[k] >= 'a' && name[k] <= 'z'
                                      ? name[k] - 'a' + 'A'
                                      : name[k]);
            upper[k] = '\0';
            if (strcmp(upper, d[i].id) != 0)
                TEST_BAD("%s: id %s does not match the name", name, d[i].id);
        }
        if (d[i].n_labels < 0 || d[i].n_labels > METRICS_MAX_LABELS)
            TEST_BAD("%s: bad label count", name);
        for (int a = 0; a < METRICS_MAX_LABELS; a++) {
            bool used = a < d[i].n_labels;
            const char *ln = metrics_dim_name(d[i].dims[a]);
            if (used != (ln != NULL)) {
                TEST_BAD("%s: label slot %d inconsistent", name, a);
                continue;
            }
            if (!used)
                continue;
            if (strcmp(ln, "le") == 0 || strncmp(ln, "__", 2) == 0 ||
                !test_snake(ln))
                TEST_BAD("%s: reserved or bad label name %s", name, ln);
            for (int b = 0; b < a; b++)
                if (metrics_dim_name(d[i].dims[b]) &&
                    strcmp(metrics_dim_name(d[i].dims[b]), ln) == 0)
                    TEST_BAD("%s: label %s twice", name, ln);
        }

        names[n_names] = xasprintf("quorumgate_%s", name);
        owner[n_names++] = i;
        if (d[i].type == METRICS_HISTOGRAM) {
            static const char *const sfx[] = {"_bucket", "_sum", "_count"};
            for (size_t s = 0; s < ARRAY_LEN(sfx); s++) {
                names[n_names] = xasprintf("quorumgate_%s%s", name, sfx[s]);
                owner[n_names++] = i;
            }
        }
    }
    for (int a = 0; a < n_names; a++)
        for (int b = a + 1; b < n_names; b++)
            if (strcmp(names[a], names[b]) == 0 && owner[a] != owner[b])
                TEST_BAD("%s: name used by %s and %s", names[a],
                         d[owner[a]].name, d[owner[b]].name);
    for (int a = 0; a < n_names; a++)
        free(names[a]);
#undef TEST_BAD
    return bad;
}

static void test_def_follows_rules(void **state)
{
    (void)state;
    struct metrics_desc all[M__COUNT];
    for (int i = 0; i < M__COUNT; i++)
        all[i] = *metrics_desc((enum metrics_id)i);
    struct buf errs = {0};
    int bad = test_check_descs(all, M__COUNT, &errs);
    if (bad)
        fail_msg("metrics.def breaks the rules:\n%s", errs.data);
    buf_free(&errs);
    assert_null(metrics_desc(M__COUNT));
}

/* The checker itself must catch each kind of mistake. */
static void test_def_checker_catches_mistakes(void **state)
{
    (void)state;
    const struct metrics_desc ok_counter = {
        NULL, "foo_total", "help", METRICS_COUNTER, M_BUCKETS_NONE, 0,
        {M_DIM_NONE, M_DIM_NONE, M_DIM_NONE}};
    const struct metrics_desc ok_hist = {
        NULL, "lat_seconds", "help", METRICS_HISTOGRAM, M_BUCKETS_SECONDS, 1,
        {M_DIM_CLASS, M_DIM_NONE, M_DIM_NONE}};
    struct {
        const char *what;
        struct metrics_desc second;
    } cases[] = {
        {"same name", ok_counter},
        {"histogram suffix", {NULL, "lat_seconds_count", "help", METRICS_GAUGE,
                              M_BUCKETS_NONE, 0,
                              {M_DIM_NONE, M_DIM_NONE, M_DIM_NONE}}},
        {"histogram suffix", {NULL, "lat_seconds_bucket", "help",
                              METRICS_GAUGE, M_BUCKETS_NONE, 0,
                              {M_DIM_NONE, M_DIM_NONE, M_DIM_NONE}}},
        {"no help", {NULL, "bar", "", METRICS_GAUGE, M_BUCKETS_NONE, 0,
                     {M_DIM_NONE, M_DIM_NONE, M_DIM_NONE}}},
        {"no help", {NULL, "bar", NULL, METRICS_GAUGE, M_BUCKETS_NONE, 0,
                     {M_DIM_NONE, M_DIM_NONE, M_DIM_NONE}}},
        {"counter without _total", {NULL, "bar_count", "help",
                                    METRICS_COUNTER, M_BUCKETS_NONE, 0,
                                    {M_DIM_NONE, M_DIM_NONE, M_DIM_NONE}}},
        {"gauge with _total", {NULL, "bar_total", "help", METRICS_GAUGE,
                               M_BUCKETS_NONE, 0,
                               {M_DIM_NONE, M_DIM_NONE, M_DIM_NONE}}},
        {"ms histogram", {NULL, "bar_ms", "help", METRICS_HISTOGRAM,
                          M_BUCKETS_SECONDS, 0,
                          {M_DIM_NONE, M_DIM_NONE, M_DIM_NONE}}},
        {"label twice", {NULL, "bar_total", "help", METRICS_COUNTER,
                         M_BUCKETS_NONE, 2,
                         {M_DIM_OK_ERROR, M_DIM_RELOAD_RESULT, M_DIM_NONE}}},
        {"label count", {NULL, "bar_total", "help", METRICS_COUNTER,
                         M_BUCKETS_NONE, 1,
                         {M_DIM_NONE, M_DIM_NONE, M_DIM_NONE}}},
        {"id mismatch", {"BAZ_TOTAL", "bar_total", "help", METRICS_COUNTER,
                         M_BUCKETS_NONE, 0,
                         {M_DIM_NONE, M_DIM_NONE, M_DIM_NONE}}},
        {"bad name", {NULL, "Bar-total", "help", METRICS_COUNTER,
                      M_BUCKETS_NONE, 0,
                      {M_DIM_NONE, M_DIM_NONE, M_DIM_NONE}}},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct metrics_desc t[3] = {ok_counter, ok_hist, cases[i].second};
        struct buf errs = {0};
        if (test_check_descs(t, 3, &errs) == 0)
            fail_msg("checker missed: %s", cases[i].what);
        buf_free(&errs);
    }
    struct metrics_desc good[2] = {ok_counter, ok_hist};
    struct buf errs = {0};
    assert_int_equal(test_check_descs(good, 2, &errs), 0);
    buf_free(&errs);
}

static void test_label_values_and_buckets(void **state)
{
    (void)state;
    struct metrics *m = test_registry();
    for (int d = 0; d < M_DIM__COUNT; d++) {
        unsigned n = metrics_dim_size(m, (enum metrics_dim)d);
        assert_true(n > 0);
        for (unsigned i = 0; i < n; i++) {
            const char *v = metrics_label_value(m, (enum metrics_dim)d, i);
            if (!v || !v[0])
                fail_msg("dimension %s: value %u missing",
                         metrics_dim_name((enum metrics_dim)d), i);
            for (unsigned j = 0; j < i; j++)
                if (strcmp(v, metrics_label_value(m, (enum metrics_dim)d,
                                                  j)) == 0)
                    fail_msg("dimension %s: value %s twice",
                             metrics_dim_name((enum metrics_dim)d), v);
        }
        assert_null(metrics_label_value(m, (enum metrics_dim)d, n));
    }
    /* The mirrored project enums. */
    for (int meth = 0; meth < HTTP__COUNT; meth++)
        assert_string_equal(metrics_label_value(m, M_DIM_METHOD, (unsigned)meth),
                            http_method_name((enum http_method)meth));
    assert_string_equal(metrics_label_value(m, M_DIM_CLASS, ROUTE_MFA), "mfa");
    assert_string_equal(metrics_label_value(m, M_DIM_CLASS, ROUTE_READ),
                        "read");
    assert_string_equal(
        metrics_label_value(m, M_DIM_RETRY_REASON, RETRY_AMBIGUOUS),
        "ambiguous");
    assert_string_equal(metrics_label_value(m, M_DIM_CONTROLLER, 2), "ctrl3");
    assert_int_equal(metrics_dim_size(m, M_DIM_CONTROLLER), 3);
    assert_int_equal(metrics_controller_count(m), 3);
    for (int s = 0; s < M_BUCKETS__COUNT; s++) {
        int n;
        const double *b = metrics_bucket_bounds((enum metrics_buckets)s, &n);
        assert_true(n > 0 && n <= METRICS_MAX_BUCKETS);
        for (int i = 0; i < n; i++) {
            assert_true(isfinite(b[i]) && b[i] > 0);
            if (i)
                assert_true(b[i] > b[i - 1]);
        }
    }
    for (int status = 100; status < 600; status++)
        assert_string_equal(
            metrics_label_value(m, M_DIM_CODE, metrics_code_of(status)),
            http_status_class(status));
    assert_int_equal(metrics_code_of(0), M_CODE_5XX);
    assert_int_equal(metrics_code_of(600), M_CODE_5XX);
    metrics_free(m);
}

/* ---- Exposition format ---------------------------------------------------- */

struct test_family {
    char name[128];
    enum metrics_type type;
    bool help, type_seen;
};

/* Walks a rendered text and checks the structure promtool does not:
 * HELP then TYPE once per family before its samples, samples belong to the
 * current family, no duplicate series, histogram buckets cumulative with
 * +Inf equal to _count.  Returns the number of samples. */
static int test_check_structure(const char *text)
{
    size_t len = strlen(text);
    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    char *copy = xstrdup(text);
    char *save = NULL;
    struct test_family fam = {{0}, METRICS_COUNTER, false, false};
    char seen_families[M__COUNT][128];
    int n_families = 0, samples = 0;
    size_t cap = 1024, n_series = 0;
    char **series = xcalloc(cap, sizeof *series);
    uint64_t last_bucket = 0;
    bool in_buckets = false, saw_inf = false;

    for (char *line = strtok_r(copy, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "# HELP ", 7) == 0) {
            char name[128];
            assert_int_equal(sscanf(line + 7, "%127s", name), 1);
            for (int i = 0; i < n_families; i++)
                if (strcmp(seen_families[i], name) == 0)
                    fail_msg("family %s twice", name);
            assert_true(n_families < M__COUNT);
            strcpy(seen_families[n_families++], name);
            memset(&fam, 0, sizeof fam);
            strcpy(fam.name, name);
            fam.help = true;
            assert_true(strlen(line + 7) > strlen(name) + 1); /* has text */
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[128], type[32];
            assert_int_equal(sscanf(line + 7, "%127s %31s", name, type), 2);
            assert_string_equal(name, fam.name);
            assert_false(fam.type_seen);
            fam.type_seen = true;
            fam.type = strcmp(type, "counter") == 0     ? METRICS_COUNTER
                       : strcmp(type, "gauge") == 0     ? METRICS_GAUGE
                       : strcmp(type, "histogram") == 0 ? METRICS_HISTOGRAM
                                                        : (fail(), 0);
            continue;
        }
        assert_true(line[0] != '#' && line[0] != '\0');
        assert_true(fam.help && fam.type_seen);
        samples++;
        /* name{labels} value */
        const char *sp = strrchr(line, ' ');
        assert_non_null(sp);
        size_t key_len = (size_t)(sp - line);
        size_t name_len = strcspn(line, "{ ");
        char name[160];
        assert_true(name_len < sizeof name);
        memcpy(name, line, name_len);
        name[name_len] = '\0';
        assert_true(strncmp(name, METRICS_PREFIX, strlen(METRICS_PREFIX)) == 0);
        const char *tail = name + strlen(fam.name);
        if (strncmp(name, fam.name, strlen(fam.name)) != 0)
            fail_msg("%s outside its family %s", name, fam.name);
        if (fam.type == METRICS_HISTOGRAM) {
            assert_true(strcmp(tail, "_bucket") == 0 ||
                        strcmp(tail, "_sum") == 0 ||
                        strcmp(tail, "_count") == 0);
            uint64_t v = strtoull(sp + 1, NULL, 10);
            if (strcmp(tail, "_bucket") == 0) {
                if (in_buckets)
                    assert_true(v >= last_bucket);
                in_buckets = true;
                last_bucket = v;
                saw_inf = strstr(line, "le=\"+Inf\"") != NULL;
            } else if (strcmp(tail, "_count") == 0) {
                assert_true(saw_inf);
                assert_int_equal(v, last_bucket); /* +Inf == _count */
                in_buckets = false;
            }
        } else {
            assert_string_equal(tail, "");
        }
        /* No duplicate series. */
        char *key = xstrndup(line, key_len);
        for (size_t i = 0; i < n_series; i++)
            if (strcmp(series[i], key) == 0)
                fail_msg("duplicate series %s", key);
        if (n_series == cap) {
            cap *= 2;
            series = xrealloc(series, cap * sizeof *series);
        }
        series[n_series++] = key;
    }
    assert_int_equal(n_families, M__COUNT);
    for (size_t i = 0; i < n_series; i++)
        free(series[i]);
    free(series);
    free(copy);
    return samples;
}

static void test_exposition_fresh_registry(void **state)
{
    (void)state;
    assert_string_equal(METRICS_CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8");
    struct metrics *m = test_registry();
    char *text = test_render(m);
    test_check_structure(text);

    /* Every series exists from the start. */
    int n = 0;
    for (const char *p = text; (p = strstr(p, "\nquorumgate_requests_total{"));
         p++)
        n++;
    assert_int_equal(n, ROUTE__COUNT * HTTP__COUNT * M_CODE__COUNT);
    test_expect_line(text,
                     "quorumgate_requests_total{class=\"mfa\",method=\"POST\","
                     "code=\"5xx\"}",
                     "0");
    test_expect_line(text, "quorumgate_leader_changes_total", "0");
    test_expect_line(text,
                     "quorumgate_upstream_attempts_total{controller=\"ctrl3\","
                     "outcome=\"tls_error\"}",
                     "0");
    test_expect_line(text, "quorumgate_controller_up{controller=\"ctrl2\"}",
                     "0");
    test_expect_line(text,
                     "quorumgate_replication_wait_seconds_bucket{call="
                     "\"verify\",le=\"0.0005\"}",
                     "0");
    test_expect_line(text,
                     "quorumgate_replication_wait_seconds_bucket{call="
                     "\"verify\",le=\"+Inf\"}",
                     "0");
    test_expect_line(text,
                     "quorumgate_replication_wait_seconds_sum{call=\"verify\"}",
                     "0");
    test_expect_line(text, "quorumgate_build_info{version=\"" QG_VERSION "\"}",
                     "1");
    test_expect_line(text, "quorumgate_config_last_reload_successful", "1");
    assert_non_null(strstr(text, "# HELP quorumgate_requests_total Requests "));
    assert_non_null(
        strstr(text, "# TYPE quorumgate_requests_total counter\n"
                     "quorumgate_requests_total{class=\"mfa\",method=\"GET\","
                     "code=\"1xx\"} 0\n"));
    assert_non_null(strstr(
        text, "# TYPE quorumgate_request_duration_seconds histogram\n"));
    assert_non_null(strstr(text, "# TYPE quorumgate_controller_up gauge\n"));
    free(text);
    metrics_free(m);
}

static void test_no_controllers(void **state)
{
    (void)state;
    struct metrics *m = metrics_create(NULL, 0);
    metrics_inc(m, M_UPSTREAM_ATTEMPTS_TOTAL, 0, M_UPSTREAM_OK);
    assert_int_equal(metrics_invalid_updates(m), 1);
    char *text = test_render(m);
    test_check_structure(text);
    assert_null(strstr(text, "controller="));
    struct buf out = {0};
    int rc = test_promtool(text, strlen(text), &out);
    if (rc != 0)
        fail_msg("promtool check metrics exited %d:\n%s", rc,
                 out.data ? out.data : "");
    buf_free(&out);
    free(text);
    metrics_free(m);
}

static void test_counters_and_gauges(void **state)
{
    (void)state;
    struct metrics *m = test_registry();
    metrics_inc(m, M_REQUESTS_TOTAL, ROUTE_MFA, HTTP_POST, M_CODE_2XX);
    metrics_add(m, M_REQUESTS_TOTAL, ROUTE_MFA, HTTP_POST, M_CODE_2XX, 41);
    metrics_inc(m, M_LEADER_CHANGES_TOTAL);
    metrics_add(m, M_UPSTREAM_ATTEMPTS_TOTAL, 1, M_UPSTREAM_TIMEOUT,
                UINT64_C(9007199254740993)); /* 2^53 + 1: exact in text */
    assert_true(metrics_get(m, M_REQUESTS_TOTAL, ROUTE_MFA, HTTP_POST,
                            M_CODE_2XX) == 42);
    assert_true(metrics_get(m, M_REQUESTS_TOTAL, ROUTE_MFA, HTTP_GET,
                            M_CODE_2XX) == 0);
    assert_true(metrics_get(m, M_LEADER_CHANGES_TOTAL) == 1);

    metrics_set(m, M_CONTROLLER_UP, 0, 1);
    metrics_set(m, M_CONTROLLER_LEADER, 2, 1);
    metrics_inc(m, M_REQUESTS_IN_FLIGHT);
    metrics_inc(m, M_REQUESTS_IN_FLIGHT);
    metrics_dec(m, M_REQUESTS_IN_FLIGHT);
    metrics_add(m, M_AFFINITY_ENTRIES, M_AFFINITY_OIDC, 5);
    metrics_add(m, M_AFFINITY_ENTRIES, M_AFFINITY_OIDC, -2);
    metrics_set(m, M_RELAY_LAG_SECONDS, 1, 0.1);
    metrics_set(m, M_RELAY_LAG_SECONDS, 2, 1e-7);
    metrics_set(m, M_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
                1767225600.0);
    metrics_set(m, M_FENCED_IDENTITIES, NAN);
    metrics_set(m, M_CLIENT_CONNECTIONS, -INFINITY);
    assert_true(metrics_get(m, M_REQUESTS_IN_FLIGHT) == 1);
    assert_true(metrics_get(m, M_AFFINITY_ENTRIES, M_AFFINITY_OIDC) == 3);
    assert_true(metrics_get(m, M_RELAY_LAG_SECONDS, 1) == 0.1);

    char *text = test_render(m);
    test_check_structure(text);
    test_expect_line(text,
                     "quorumgate_requests_total{class=\"mfa\",method=\"POST\","
                     "code=\"2xx\"}",
                     "42");
    test_expect_line(text, "quorumgate_leader_changes_total", "1");
    test_expect_line(text,
                     "quorumgate_upstream_attempts_total{controller=\"ctrl2\","
                     "outcome=\"timeout\"}",
                     "9007199254740993");
    test_expect_line(text, "quorumgate_controller_up{controller=\"ctrl1\"}",
                     "1");
    test_expect_line(text, "quorumgate_controller_leader{controller=\"ctrl3\"}",
                     "1");
    test_expect_line(text, "quorumgate_requests_in_flight", "1");
    test_expect_line(text, "quorumgate_affinity_entries{kind=\"oidc\"}", "3");
    test_expect_line(text, "quorumgate_relay_lag_seconds{controller=\"ctrl2\"}",
                     "0.1");
    test_expect_line(text, "quorumgate_relay_lag_seconds{controller=\"ctrl3\"}",
                     "1e-07");
    test_expect_line(text,
                     "quorumgate_config_last_reload_success_timestamp_seconds",
                     "1767225600");
    test_expect_line(text, "quorumgate_fenced_identities", "NaN");
    test_expect_line(text, "quorumgate_client_connections", "-Inf");
    free(text);

    /* Out-of-range labels are dropped and counted, never written. */
    assert_int_equal(metrics_invalid_updates(m), 0);
    metrics_inc(m, M_UPSTREAM_ATTEMPTS_TOTAL, 3, M_UPSTREAM_OK);
    metrics_inc(m, M_UPSTREAM_ATTEMPTS_TOTAL, -1, M_UPSTREAM_OK);
    metrics_inc(m, M_REQUESTS_TOTAL, ROUTE__COUNT, HTTP_GET, M_CODE_2XX);
    metrics_set(m, M_CONTROLLER_UP, 7, 1);
    metrics_observe(m, M_UPSTREAM_DURATION_SECONDS, 3, 1.0);
    /* Untyped entry points refuse the wrong metric type. */
    metrics_counter_add_(m, M_CONTROLLER_UP, 0, 0, 0, 1);
    metrics_gauge_set_(m, M_REQUESTS_TOTAL, 0, 0, 0, 1);
    metrics_observe_ns_(m, M_LEADER_CHANGES_TOTAL, 0, 0, 0, 1);
    assert_int_equal(metrics_invalid_updates(m), 8);
    assert_true(metrics_get(m, M_CONTROLLER_UP, 0) == 1);
    assert_true(metrics_get(m, M_LEADER_CHANGES_TOTAL) == 1);
    metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    struct metrics *m = test_registry();
    /* 0.0005 lands in le="0.0005" (bounds are inclusive). */
    metrics_observe(m, M_REPLICATION_WAIT_SECONDS, M_CALL_CREATE, 0.0005);
    metrics_observe(m, M_REPLICATION_WAIT_SECONDS, M_CALL_CREATE, 0.0007);
    metrics_observe(m, M_REPLICATION_WAIT_SECONDS, M_CALL_CREATE, 0.003);
    metrics_observe_ns(m, M_REPLICATION_WAIT_SECONDS, M_CALL_CREATE,
                       UINT64_C(7000000000));
    metrics_observe(m, M_REPLICATION_WAIT_SECONDS, M_CALL_CREATE, 100.0);
    metrics_observe(m, M_REPLICATION_WAIT_SECONDS, M_CALL_DELETE, -1.0);
    metrics_observe(m, M_REPLICATION_WAIT_SECONDS, M_CALL_DELETE, NAN);

    assert_true(metrics_get(m, M_REPLICATION_WAIT_SECONDS, M_CALL_CREATE) ==
                5);
    assert_true(fabs(metrics_get_sum(m, M_REPLICATION_WAIT_SECONDS,
                                     M_CALL_CREATE) -
                     107.0042) < 1e-9);
    assert_int_equal(
        metrics_get_bucket(m, M_REPLICATION_WAIT_SECONDS, M_CALL_CREATE, 0), 1);
    assert_int_equal(
        metrics_get_bucket(m, M_REPLICATION_WAIT_SECONDS, M_CALL_CREATE, 1), 2);
    int nb;
    metrics_bucket_bounds(M_BUCKETS_SECONDS, &nb);
    assert_int_equal(metrics_get_bucket(m, M_REPLICATION_WAIT_SECONDS,
                                        M_CALL_CREATE, (unsigned)nb - 1),
                     4);
    assert_int_equal(metrics_get_bucket(m, M_REPLICATION_WAIT_SECONDS,
                                        M_CALL_CREATE, (unsigned)nb),
                     5);

    char *text = test_render(m);
    test_check_structure(text);
    static const struct {
        const char *le, *v;
    } want[] = {
        {"0.0005", "1"}, {"0.001", "2"}, {"0.0025", "2"}, {"0.005", "3"},
        {"0.01", "3"},   {"0.025", "3"}, {"0.05", "3"},   {"0.1", "3"},
        {"0.25", "3"},   {"0.5", "3"},   {"1", "3"},      {"2.5", "3"},
        {"5", "3"},      {"10", "4"},    {"30", "4"},     {"+Inf", "5"},
    };
    assert_int_equal(ARRAY_LEN(want), (size_t)nb + 1);
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        char series[128];
        snprintf(series, sizeof series,
                 "quorumgate_replication_wait_seconds_bucket{call=\"create\","
                 "le=\"%s\"}",
                 want[i].le);
        test_expect_line(text, series, want[i].v);
    }
    test_expect_line(text,
                     "quorumgate_replication_wait_seconds_sum{call=\"create\"}",
                     "107.0042");
    test_expect_line(
        text, "quorumgate_replication_wait_seconds_count{call=\"create\"}",
        "5");
    /* Negative and NaN durations count as 0 s. */
    test_expect_line(text,
                     "quorumgate_replication_wait_seconds_bucket{call="
                     "\"delete\",le=\"0.0005\"}",
                     "2");
    test_expect_line(text,
                     "quorumgate_replication_wait_seconds_sum{call=\"delete\"}",
                     "0");
    free(text);
    metrics_free(m);
}

static void test_label_escaping(void **state)
{
    (void)state;
    const char *ids[] = {"a\"b", "c\\d", "e\nf"};
    struct metrics *m = metrics_create(ids, 3);
    assert_string_equal(metrics_label_value(m, M_DIM_CONTROLLER, 0), "a\"b");
    metrics_set(m, M_CONTROLLER_UP, 0, 1);
    metrics_inc(m, M_REPLICATION_ACKS_TOTAL, 1);
    metrics_observe(m, M_UPSTREAM_DURATION_SECONDS, 2, 0.25);
    char *text = test_render(m);
    test_check_structure(text);
    test_expect_line(text, "quorumgate_controller_up{controller=\"a\\\"b\"}",
                     "1");
    test_expect_line(text,
                     "quorumgate_replication_acks_total{controller=\"c\\\\d\"}",
                     "1");
    test_expect_line(text,
                     "quorumgate_upstream_duration_seconds_bucket{controller="
                     "\"e\\nf\",le=\"0.25\"}",
                     "1");
    test_expect_line(text,
                     "quorumgate_upstream_duration_seconds_sum{controller="
                     "\"e\\nf\"}",
                     "0.25");
    struct buf out = {0};
    int rc = test_promtool(text, strlen(text), &out);
    if (rc != 0)
        fail_msg("promtool check metrics exited %d:\n%s", rc,
                 out.data ? out.data : "");
    buf_free(&out);
    free(text);
    metrics_free(m);
}

/* ---- Concurrency ---------------------------------------------------------- */

#define TEST_THREADS 6
#define TEST_ITERS 50000

struct test_worker {
    struct metrics *m;
    int index;
};

static void *test_hammer(void *arg)
{
    struct test_worker *w = arg;
    struct metrics *m = w->m;
    static const uint64_t ns[3] = {400000, 3000000, 12000000000};
    for (int i = 0; i < TEST_ITERS; i++) {
        metrics_inc(m, M_REQUESTS_TOTAL, ROUTE_READ, HTTP_GET, M_CODE_2XX);
        metrics_inc(m, M_UPSTREAM_ATTEMPTS_TOTAL, w->index % 3,
                    M_UPSTREAM_OK);
        metrics_add(m, M_REDIS_OPERATIONS_TOTAL, M_REDIS_PING, M_RESULT_OK, 3);
        metrics_inc(m, M_REQUESTS_IN_FLIGHT);
        metrics_add(m, M_AFFINITY_ENTRIES, M_AFFINITY_SESS, 0.5);
        metrics_observe_ns(m, M_REQUEST_DURATION_SECONDS, ROUTE_MFA,
                           ns[i % 3]);
        metrics_observe(m, M_UPSTREAM_DURATION_SECONDS, 0, 0.001);
        metrics_dec(m, M_REQUESTS_IN_FLIGHT);
    }
    return NULL;
}

/* Renders while the workers update.  No cmocka assertion off the main
 * thread: it reports through ok. */
struct test_scrape {
    struct metrics *m;
    bool ok;
};

static void *test_scraper(void *arg)
{
    struct test_scrape *s = arg;
    s->ok = true;
    for (int i = 0; i < 20; i++) {
        char *text = test_render(s->m);
        if (text[strlen(text) - 1] != '\n')
            s->ok = false;
        free(text);
    }
    return NULL;
}

static void test_concurrent_updates(void **state)
{
    (void)state;
    struct metrics *m = test_registry();
    pthread_t threads[TEST_THREADS], scraper;
    struct test_worker workers[TEST_THREADS];
    for (int i = 0; i < TEST_THREADS; i++) {
        workers[i] = (struct test_worker){m, i};
        assert_int_equal(
            pthread_create(&threads[i], NULL, test_hammer, &workers[i]), 0);
    }
    struct test_scrape scrape = {m, false};
    assert_int_equal(pthread_create(&scraper, NULL, test_scraper, &scrape), 0);
    for (int i = 0; i < TEST_THREADS; i++)
        pthread_join(threads[i], NULL);
    pthread_join(scraper, NULL);
    assert_true(scrape.ok);

    const double total = (double)TEST_THREADS * TEST_ITERS;
    assert_true(metrics_get(m, M_REQUESTS_TOTAL, ROUTE_READ, HTTP_GET,
                            M_CODE_2XX) == total);
    double attempts = 0;
    for (int c = 0; c < 3; c++)
        attempts += metrics_get(m, M_UPSTREAM_ATTEMPTS_TOTAL, c, M_UPSTREAM_OK);
    assert_true(attempts == total);
    assert_true(metrics_get(m, M_UPSTREAM_ATTEMPTS_TOTAL, 0, M_UPSTREAM_OK) ==
                (double)2 * TEST_ITERS);
    assert_true(metrics_get(m, M_REDIS_OPERATIONS_TOTAL, M_REDIS_PING,
                            M_RESULT_OK) == 3 * total);
    assert_true(metrics_get(m, M_REQUESTS_IN_FLIGHT) == 0);
    assert_true(metrics_get(m, M_AFFINITY_ENTRIES, M_AFFINITY_SESS) ==
                total / 2);

    /* Histogram: counts per bucket and the nanosecond sum are exact. */
    assert_true(metrics_get(m, M_REQUEST_DURATION_SECONDS, ROUTE_MFA) == total);
    uint64_t per = (uint64_t)TEST_THREADS * (TEST_ITERS / 3);
    uint64_t rem = (uint64_t)TEST_THREADS * (TEST_ITERS % 3); /* i%3==0,1 */
    int nb;
    metrics_bucket_bounds(M_BUCKETS_SECONDS, &nb);
    /* 0.4 ms -> le=0.0005 (bucket 0); 3 ms -> le=0.005 (3); 12 s -> le=30. */
    uint64_t n0 = per + (TEST_ITERS % 3 >= 1 ? TEST_THREADS : 0);
    uint64_t n1 = per + (TEST_ITERS % 3 >= 2 ? TEST_THREADS : 0);
    uint64_t n2 = per;
    assert_int_equal(n0 + n1 + n2, per * 3 + rem);
    assert_int_equal(
        metrics_get_bucket(m, M_REQUEST_DURATION_SECONDS, ROUTE_MFA, 0), n0);
    assert_int_equal(
        metrics_get_bucket(m, M_REQUEST_DURATION_SECONDS, ROUTE_MFA, 3),
        n0 + n1);
    assert_int_equal(metrics_get_bucket(m, M_REQUEST_DURATION_SECONDS,
                                        ROUTE_MFA, (unsigned)nb - 2),
                     n0 + n1);
    assert_int_equal(metrics_get_bucket(m, M_REQUEST_DURATION_SECONDS,
                                        ROUTE_MFA, (unsigned)nb - 1),
                     n0 + n1 + n2);
    double want_sum = ((double)n0 * 400000 + (double)n1 * 3000000 +
                       (double)n2 * 12000000000.0) / 1e9;
    assert_true(fabs(metrics_get_sum(m, M_REQUEST_DURATION_SECONDS,
                                     ROUTE_MFA) -
                     want_sum) < 1e-6);
    assert_true(metrics_get(m, M_UPSTREAM_DURATION_SECONDS, 0) == total);
    assert_true(fabs(metrics_get_sum(m, M_UPSTREAM_DURATION_SECONDS, 0) -
                     total * 0.001) < 1e-9);
    assert_int_equal(metrics_invalid_updates(m), 0);
    metrics_free(m);
}

/* ---- promtool ---------------------------------------------------------------
 * CI installs promtool: a missing one fails the test (the shell exits 127). */

static void test_promtool_accepts_populated_registry(void **state)
{
    (void)state;
    struct metrics *m = test_registry();
    /* Touch every metric, with every label value of its first label. */
    for (int id = 0; id < M__COUNT; id++) {
        const struct metrics_desc *d = metrics_desc((enum metrics_id)id);
        unsigned n0 = d->n_labels ? metrics_dim_size(m, d->dims[0]) : 1;
        for (unsigned v = 0; v < n0; v++) {
            switch (d->type) {
            case METRICS_COUNTER:
                metrics_counter_add_(m, (enum metrics_id)id, v, 0, 0, v + 1);
                break;
            case METRICS_GAUGE:
                metrics_gauge_set_(m, (enum metrics_id)id, v, 0, 0,
                                   0.5 + v);
                break;
            case METRICS_HISTOGRAM:
                metrics_observe_ns_(m, (enum metrics_id)id, v, 0, 0,
                                    UINT64_C(1234567) * (v + 1));
                break;
            }
        }
    }
    assert_int_equal(metrics_invalid_updates(m), 0);
    char *text = test_render(m);
    int samples = test_check_structure(text);
    assert_true(samples > 500);

    struct buf out = {0};
    int rc = test_promtool(text, strlen(text), &out);
    if (rc != 0)
        fail_msg("promtool check metrics exited %d:\n%s", rc,
                 out.data ? out.data : "");
    buf_free(&out);

    /* And promtool really checks: it rejects a missing final newline (1)
     * and a counter without _total (3). */
    out = (struct buf){0};
    assert_int_equal(test_promtool(text, strlen(text) - 1, &out), 1);
    buf_free(&out);
    static const char lint[] = "# HELP x_requests Requests.\n"
                               "# TYPE x_requests counter\n"
                               "x_requests 1\n";
    out = (struct buf){0};
    assert_int_equal(test_promtool(lint, strlen(lint), &out), 3);
    buf_free(&out);
    free(text);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_def_follows_rules),
        cmocka_unit_test(test_def_checker_catches_mistakes),
        cmocka_unit_test(test_label_values_and_buckets),
        cmocka_unit_test(test_exposition_fresh_registry),
        cmocka_unit_test(test_no_controllers),
        cmocka_unit_test(test_counters_and_gauges),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_concurrent_updates),
        cmocka_unit_test(test_promtool_accepts_populated_registry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
