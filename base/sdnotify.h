/* sdnotify.h - tell the service manager how the process is doing: the
 * sd_notify(3) datagram protocol (READY=1, RELOADING=1, STOPPING=1,
 * STATUS=...) spoken directly, without libsystemd.
 *
 * The socket is the one named by $NOTIFY_SOCKET (a path, or "@name" for
 * an abstract socket), read at every call; without it every call does
 * nothing and returns 0.  No state is kept.  systemd sets it for units of
 * Type=notify (packaging/deb/quorumgate.service). */
#ifndef QG_BASE_SDNOTIFY_H
#define QG_BASE_SDNOTIFY_H

/* Sends `state` ("KEY=value" lines) as one datagram.  0 when sent or when
 * there is no $NOTIFY_SOCKET; -1 when it could not be sent (a bad address,
 * nobody listening). */
int sdnotify_send(const char *state);

/* "RELOADING=1" with MONOTONIC_USEC= the current CLOCK_MONOTONIC time, as
 * systemd asks before a reload; follow it with sdnotify_send("READY=1"). */
int sdnotify_reloading(void);

#endif
