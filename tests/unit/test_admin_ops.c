/* test_admin_ops.c - metrics/admin.c, the admin listener as an HTTP shell
 * fed through struct admin_ops: a real listener on a loopback port, real
 * HTTP requests from a client thread, ops that record what they were asked.
 * Covered: /healthz, /readyz (ready and not, with the reasons), /status (the
 * ops' JSON as it is), /metrics (scrape called first, the registry
 * rendered), 404, 405, basic auth (401 with the challenge, 200 with the
 * credentials) and the configuration reference dropped at every request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_fixture.h"

#include "base/buf.h"
#include "base/loop.h"
#include "config/config.h"
#include "io/listener.h"
#include "metrics/admin.h"
#include "metrics/metrics.h"

struct fx {
    char *dir;
    struct config *cfg;
    struct loop *loop;
    struct loop_timer *tick;
    struct metrics *metrics;
    struct admin *admin;
    uint16_t port;
    /* the ops' side */
    bool ready;
    int n_config, n_scrape, n_ready, n_status;
    atomic_int refs_out;          /* configuration references handed out */
    /* the client's side */
    const char *request;
    char response[65536];
    size_t response_len;
    atomic_bool done;
    uint64_t until_ms;
};

static struct config *ops_config(void *ctx)
{
    struct fx *f = ctx;
    f->n_config++;
    return config_ref(f->cfg);
}

static void ops_scrape(void *ctx)
{
    struct fx *f = ctx;
    f->n_scrape++;
    /* a gauge computed at scrape time shows in this scrape */
    metrics_set(f->metrics, M_REDIS_UP, 1);
}

static bool ops_ready(void *ctx, struct buf *reasons)
{
    struct fx *f = ctx;
    f->n_ready++;
    if (!f->ready)
        buf_puts(reasons, "\"no raft leader known\",\"Redis does not answer\"");
    return f->ready;
}

static void ops_status(void *ctx, struct buf *out)
{
    struct fx *f = ctx;
    f->n_status++;
    buf_puts(out, "{\"leader\":\"ctrl2\",\"n\":42}\n");
}

static const struct admin_ops test_ops = {
    .config = ops_config,
    .scrape = ops_scrape,
    .ready = ops_ready,
    .status = ops_status,
};

static void *client_main(void *arg)
{
    struct fx *f = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons(f->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    f->response_len = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        write(fd, f->request, strlen(f->request)) ==
            (ssize_t)strlen(f->request)) {
        ssize_t n;
        while (f->response_len + 1 < sizeof(f->response) &&
               (n = read(fd, f->response + f->response_len,
                         sizeof(f->response) - 1 - f->response_len)) > 0)
            f->response_len += (size_t)n;
    }
    f->response[f->response_len] = '\0';
    close(fd);
    atomic_store(&f->done, true);
    return NULL;
}

static void fx_tick(void *arg)
{
    struct fx *f = arg;
    if (atomic_load(&f->done) || loop_now_ms(f->loop) >= f->until_ms)
        loop_stop(f->loop);
}

/* Sends request (raw HTTP/1.0) and runs the admin until the answer is in;
 * returns its status code (0: none). */
static int fx_request(struct fx *f, const char *request)
{
    pthread_t t;
    f->request = request;
    atomic_store(&f->done, false);
    assert_int_equal(pthread_create(&t, NULL, client_main, f), 0);
    loop_update_time(f->loop);
    f->until_ms = loop_now_ms(f->loop) + 5000;
    loop_timer_start(f->tick, 2, 2);
    loop_run(f->loop);
    loop_timer_stop(f->tick);
    pthread_join(t, NULL);
    assert_true(atomic_load(&f->done));
    int status = 0;
    sscanf(f->response, "HTTP/1.%*d %d", &status);
    return status;
}

static const char *fx_body(const struct fx *f)
{
    const char *b = strstr(f->response, "\r\n\r\n");
    return b ? b + 4 : "";
}

static bool fx_has_header(const struct fx *f, const char *line)
{
    const char *end = strstr(f->response, "\r\n\r\n");
    const char *p = strstr(f->response, line);
    return p && end && p < end;
}

static void fx_start(struct fx *f, const char *admin_yaml)
{
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:8443\n"
             "secrets: {hmac_key_file: hmac.key}\n"
             "controllers:\n"
             "  - {id: ctrl1, url: 'http://127.0.0.1:9'}\n"
             "  - {id: ctrl2, url: 'http://127.0.0.2:9'}\n"
             "gate: {enabled: false}\n"
             "admin:\n"
             "  address: 127.0.0.1:0\n"
             "%s",
             admin_yaml);
    f->cfg = fixture_load(f->dir, yaml);
    const char *ids[] = {"ctrl1", "ctrl2"};
    f->metrics = metrics_create(ids, 2);
    char *err = NULL;
    int fd = listener_bind("127.0.0.1", 0, 16, &err);
    assert_true(fd >= 0);
    f->port = listener_bound_port(fd);
    f->admin = admin_new(&test_ops, f, f->metrics, f->loop, fd, &err);
    assert_non_null(f->admin);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->dir = fixture_make();
    f->loop = loop_new();
    f->tick = loop_timer_new(f->loop, fx_tick, f);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    admin_free(f->admin);
    loop_timer_free(f->tick);
    loop_free(f->loop);
    metrics_free(f->metrics);
    /* the admin dropped every reference it took: ours is the last */
    if (f->cfg)
        assert_int_equal(atomic_load(&f->cfg->refs), 1);
    config_unref(f->cfg);
    fixture_remove(f->dir);
    free(f);
    return 0;
}

static void test_healthz_status(void **state)
{
    struct fx *f = *state;
    fx_start(f, "");
    assert_int_equal(fx_request(f, "GET /healthz HTTP/1.0\r\n\r\n"), 200);
    assert_string_equal(fx_body(f), "{\"status\":\"ok\"}\n");
    assert_int_equal(f->n_status + f->n_ready + f->n_scrape, 0);

    assert_int_equal(fx_request(f, "GET /status?x=1 HTTP/1.0\r\n\r\n"), 200);
    assert_string_equal(fx_body(f), "{\"leader\":\"ctrl2\",\"n\":42}\n");
    assert_true(fx_has_header(f, "Content-Type: application/json"));
    assert_true(fx_has_header(f, "Cache-Control: no-store"));
    assert_int_equal(f->n_status, 1);
    /* asked at each accept (admin.allow) and each request */
    assert_int_equal(f->n_config, 4);
}

static void test_readyz(void **state)
{
    struct fx *f = *state;
    fx_start(f, "");
    f->ready = true;
    assert_int_equal(fx_request(f, "GET /readyz HTTP/1.0\r\n\r\n"), 200);
    assert_string_equal(fx_body(f),
                        "{\"status\":\"ready\",\"reasons\":[]}\n");
    f->ready = false;
    assert_int_equal(fx_request(f, "GET /readyz HTTP/1.0\r\n\r\n"), 503);
    assert_string_equal(fx_body(f),
                        "{\"status\":\"not ready\",\"reasons\":[\"no raft "
                        "leader known\",\"Redis does not answer\"]}\n");
    assert_int_equal(f->n_ready, 2);
}

static void test_metrics_scrapes_first(void **state)
{
    struct fx *f = *state;
    fx_start(f, "");
    assert_int_equal(fx_request(f, "GET /metrics HTTP/1.0\r\n\r\n"), 200);
    assert_int_equal(f->n_scrape, 1);
    assert_true(fx_has_header(f, "Content-Type: text/plain; version=0.0.4"));
    assert_non_null(strstr(fx_body(f), "\nquorumgate_redis_up 1\n"));
    assert_int_equal(fx_request(f, "HEAD /metrics HTTP/1.0\r\n\r\n"), 200);
    assert_string_equal(fx_body(f), "");
    assert_int_equal(f->n_scrape, 2);
}

static void test_refusals(void **state)
{
    struct fx *f = *state;
    fx_start(f, "");
    assert_int_equal(fx_request(f, "GET /nope HTTP/1.0\r\n\r\n"), 404);
    assert_non_null(strstr(fx_body(f), "/metrics, /healthz, /readyz"));
    assert_int_equal(fx_request(f, "POST /status HTTP/1.0\r\n"
                                   "Content-Length: 0\r\n\r\n"),
                     405);
    assert_true(fx_has_header(f, "Allow: GET, HEAD"));
    assert_int_equal(f->n_status, 0);
}

static void test_basic_auth(void **state)
{
    struct fx *f = *state;
    fixture_write(f->dir, "admin.pw", "s3cret\n");
    char pw[512];
    snprintf(pw, sizeof(pw), "%s/admin.pw", f->dir);
    assert_int_equal(chmod(pw, 0600), 0);
    fx_start(f, "  basic_auth:\n"
                "    username: prom\n"
                "    password_file: admin.pw\n");
    assert_int_equal(fx_request(f, "GET /status HTTP/1.0\r\n\r\n"), 401);
    assert_true(fx_has_header(
        f, "WWW-Authenticate: Basic realm=\"quorumgate admin\""));
    /* prom:wrong */
    assert_int_equal(fx_request(f, "GET /status HTTP/1.0\r\n"
                                   "Authorization: Basic cHJvbTp3cm9uZw==\r\n"
                                   "\r\n"),
                     401);
    assert_int_equal(f->n_status, 0);
    /* prom:s3cret */
    assert_int_equal(fx_request(f, "GET /status HTTP/1.0\r\n"
                                   "Authorization: Basic cHJvbTpzM2NyZXQ=\r\n"
                                   "\r\n"),
                     200);
    assert_int_equal(f->n_status, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_healthz_status, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_readyz, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_metrics_scrapes_first,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refusals, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_basic_auth, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
