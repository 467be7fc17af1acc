/* redis_fixture.h - a real redis-server on a free loopback port, started by
 * a test and killed by PID (PR_SET_PDEATHSIG covers a crashing test).
 * Header-only: each test program includes it once, after <cmocka.h>. */
#ifndef QG_TEST_REDIS_FIXTURE_H
#define QG_TEST_REDIS_FIXTURE_H

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

struct redis_fixture {
    pid_t pid;          /* 0 when not running */
    int port;
    char dir[64];       /* temp dir: server cwd and log */
};

static inline int redis_fixture_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

static inline bool redis_fixture_answers(const struct redis_fixture *s)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)s->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* Starts the server and waits (at most 5 s) until it accepts connections. */
static inline void redis_fixture_start(struct redis_fixture *s)
{
    char port[16], logf[128];
    snprintf(s->dir, sizeof(s->dir), "/tmp/qg-redis-test-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    s->port = redis_fixture_free_port();
    snprintf(port, sizeof(port), "%d", s->port);
    snprintf(logf, sizeof(logf), "%s/redis.log", s->dir);
    const char *argv[] = {"redis-server", "--port", port, "--bind",
                          "127.0.0.1", "--save", "", "--appendonly", "no",
                          "--dir", s->dir, "--daemonize", "no", NULL};
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 500; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            fail_msg("redis-server exited during startup (see %s)", logf);
        }
        if (redis_fixture_answers(s))
            return;
        usleep(10 * 1000);
    }
    fail_msg("redis-server did not start listening on port %d", s->port);
}

/* Kills the server by PID and removes its directory. */
static inline void redis_fixture_stop(struct redis_fixture *s)
{
    char log[128];
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
    if (s->dir[0]) {
        snprintf(log, sizeof(log), "%s/redis.log", s->dir);
        unlink(log);
        rmdir(s->dir);
        s->dir[0] = '\0';
    }
}

#endif
