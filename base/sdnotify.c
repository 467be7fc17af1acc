/* sdnotify.c - see sdnotify.h. */
#include "base/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int sdnotify_send(const char *state)
{
    int rc = -1, fd = -1;
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = path ? strlen(path) : 0;
    if (len == 0) {
        rc = 0; /* not run by a service manager that wants to know */
        goto out;
    }
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
        goto out;
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace */
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto out;
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    ssize_t n;
    do {
        n = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                   (const struct sockaddr *)&sa, salen);
    } while (n < 0 && errno == EINTR);
    if (n >= 0)
        rc = 0;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

int sdnotify_reloading(void)
{
    struct timespec ts;
    char msg[64];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull +
                 (unsigned long long)ts.tv_nsec / 1000ull);
    return sdnotify_send(msg);
}
