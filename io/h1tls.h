/* h1tls.h - TLS on non-blocking sockets through OpenSSL (libssl), for
 * both ends of quorumgate's HTTP/1.1:
 * - the upstream client (h1client): verification against the configured
 *   CA (or the system store), SNI and host/IP checks, optional client
 *   certificate, session resumption through a slot the caller keeps per
 *   controller;
 * - the HTTPS listeners (listener_native.c): certificate chain and key
 *   from PEM text, optional client certificates verified against a CA,
 *   server-side session resumption (tickets and the session cache).
 * The only file that includes libssl's headers.
 *
 * Ownership: a struct h1tls_ctx is owned by one h1client; a struct h1tls
 * by one connection; a session slot (void *) by the caller, released with
 * h1tls_session_free(). */
#ifndef QG_H1TLS_H
#define QG_H1TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct buf;
struct h1tls_ctx;
struct h1tls;

enum { H1TLS_WANT_READ = -2, H1TLS_WANT_WRITE = -3, H1TLS_FAIL = -1,
       H1TLS_CLOSED = 0 };

/* NULL (and err) when the CA, certificate or key cannot be loaded. */
struct h1tls_ctx *h1tls_ctx_new(const char *ca_file, const char *cert_file,
                                const char *key_file, bool verify, char *err,
                                size_t errlen);
void h1tls_ctx_free(struct h1tls_ctx *c);
/* A server context: cert_pem (chain, leaf first) and key_pem are PEM
 * text; client_ca_pem (NULL = none) makes clients be asked for a
 * certificate, which must then verify against it (a client without one
 * is still served).  NULL (and err) when any of them does not load. */
struct h1tls_ctx *h1tls_server_ctx_new(const char *cert_pem,
                                       const char *key_pem,
                                       const char *client_ca_pem, char *err,
                                       size_t errlen);
/* Session tickets sealed with these H1TLS_TICKET_KEYS bytes (name, HMAC
 * and AES keys), so that contexts given the same ones resume each other's
 * sessions. */
void h1tls_server_ticket_keys(struct h1tls_ctx *c, const unsigned char *keys);

#define H1TLS_TICKET_KEYS 80

/* name: the host the certificate must match (DNS name or IP literal); a
 * DNS name is also sent as SNI.  *slot: a session to resume, refreshed
 * with each new one the server issues. */
struct h1tls *h1tls_new(struct h1tls_ctx *c, int fd, const char *name,
                        void **slot);
/* The server end of an accepted connection. */
struct h1tls *h1tls_accept_new(struct h1tls_ctx *c, int fd);
void h1tls_free(struct h1tls *t);
void h1tls_session_free(void **slot);

/* 1 = handshake done, H1TLS_WANT_*, H1TLS_FAIL (err explains). */
int h1tls_handshake(struct h1tls *t, char *err, size_t errlen);
/* >0 bytes, H1TLS_CLOSED, H1TLS_WANT_*, H1TLS_FAIL. */
ssize_t h1tls_read(struct h1tls *t, void *buf, size_t n);
/* >0 bytes taken, H1TLS_WANT_*, H1TLS_FAIL.  *wire: bytes the socket
 * accepted during this call (0 = nothing reached the kernel). */
ssize_t h1tls_write(struct h1tls *t, const void *buf, size_t n,
                    uint64_t *wire);
/* Encrypts all of buf into out (appended) instead of writing it to the
 * socket, for the caller to send itself (a batch of sends).  Nothing
 * reaches the socket.  true = every byte of buf is in out as TLS records;
 * false = it could not be done here (the connection must be dropped: what
 * OpenSSL holds no longer matches what the peer has). */
bool h1tls_seal(struct h1tls *t, const void *buf, size_t n, struct buf *out);
/* bytes decrypted and not read yet */
bool h1tls_pending(struct h1tls *t);
bool h1tls_resumed(struct h1tls *t);
/* The peer presented a certificate (which verified). */
bool h1tls_peer_cert(struct h1tls *t);
/* Sends close_notify, once, without waiting for the peer's. */
void h1tls_close_notify(struct h1tls *t);

#endif
