/* redis_fixture.h - a real redis-server on a free loopback port (and a
 * unix socket in its directory), started by a test and killed by PID
 * (PR_SET_PDEATHSIG covers a crashing test).  Extra server arguments may
 * be set before the first start; redis_fixture_kill() then
 * redis_fixture_start() restarts it on the same port, empty.
 * Header-only: each test program includes it once, after <cmocka.h>. */
#ifndef QG_TEST_REDIS_FIXTURE_H
#define QG_TEST_REDIS_FIXTURE_H

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

struct redis_fixture {
    pid_t pid;          /* 0 when not running */
    int port;           /* chosen at the first start */
    char dir[64];       /* temp dir: server cwd, log, unix socket */
    char sock[128];     /* <dir>/redis.sock */
    const char *const *extra; /* borrowed; NULL-terminated; optional */
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

/* Our server accepts connections: asked on its unix socket, which is in
 * our directory and made after the TCP listener.  A connect to the TCP
 * port could be answered by another process that took the free port
 * between redis_fixture_free_port() and the server's bind (ours then
 * exits), or by a TCP self-connect while nothing listens there yet. */
static inline bool redis_fixture_answers(const struct redis_fixture *s)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->sock);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static inline bool redis_fixture_try(struct redis_fixture *s);

/* Starts the server (in its directory and on its port when it ran before)
 * and waits (at most 5 s) until it accepts connections.  A port it chose
 * itself that another process took first is chosen again (5 times). */
static inline void redis_fixture_start(struct redis_fixture *s)
{
    bool chosen = !s->port;
    for (int attempt = 0; attempt < 5; attempt++) {
        if (redis_fixture_try(s))
            return;
        if (!chosen)
            break;
        s->port = 0;
    }
    fail_msg("redis-server exited during startup (see %s/redis.log)", s->dir);
}

/* One start; false when the server exited during startup. */
static inline bool redis_fixture_try(struct redis_fixture *s)
{
    char port[16], logf[128];
    if (!s->dir[0]) {
        snprintf(s->dir, sizeof(s->dir), "/tmp/qg-redis-test-XXXXXX");
        assert_non_null(mkdtemp(s->dir));
        snprintf(s->sock, sizeof(s->sock), "%s/redis.sock", s->dir);
    }
    if (!s->port)
        s->port = redis_fixture_free_port();
    snprintf(port, sizeof(port), "%d", s->port);
    snprintf(logf, sizeof(logf), "%s/redis.log", s->dir);
    const char *argv[64] = {"redis-server", "--port", port, "--bind",
                            "127.0.0.1", "--save", "", "--appendonly", "no",
                            "--dir", s->dir, "--unixsocket", s->sock,
                            "--unixsocketperm", "700", "--daemonize", "no"};
    int n = 17;
    for (int i = 0; s->extra && s->extra[i] && n < 63; i++)
        argv[n++] = s->extra[i];
    argv[n] = NULL;
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
            return false;
        }
        if (redis_fixture_answers(s))
            return true;
        usleep(10 * 1000);
    }
    fail_msg("redis-server did not start listening on port %d", s->port);
    return false;
}

/* Kills the server by PID (SIGKILL); its directory and port stay. */
static inline void redis_fixture_kill(struct redis_fixture *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

/* Kills the server by PID and removes its directory. */
static inline void redis_fixture_stop(struct redis_fixture *s)
{
    char log[128];
    redis_fixture_kill(s);
    if (s->dir[0]) {
        snprintf(log, sizeof(log), "%s/redis.log", s->dir);
        unlink(log);
        unlink(s->sock);
        rmdir(s->dir);
        s->dir[0] = '\0';
    }
}

#endif
