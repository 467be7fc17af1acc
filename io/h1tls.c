/* h1tls.c - see h1tls.h.  Wraps OpenSSL 3 (libssl) for the upstream
 * client and the HTTPS listeners; base/crypto.c wraps its hashing side
 * (libcrypto). */
#include "io/h1tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"

/* Owned by one h1client. */
struct h1tls_ctx {
    SSL_CTX *ctx;                /* owned */
};

/* Owned by one connection. */
struct h1tls {
    SSL *ssl;                    /* owned */
    void **slot;                 /* borrowed: the controller's session */
};

static void h1tls_errstr(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char reason[160] = "";
    if (e)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(err, errlen, "TLS: %s%s%s", what, reason[0] ? ": " : "", reason);
}

/* A new session (TLS 1.3 sends them after the handshake): keep a copy of
 * the last one for the next connection to this controller.  A copy, since
 * OpenSSL marks the connection's own session not resumable when the
 * connection is freed without a close_notify. */
static int h1tls_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct h1tls *t = SSL_get_app_data(ssl);
    SSL_SESSION *copy = t && t->slot ? SSL_SESSION_dup(sess) : NULL;
    if (!copy)
        return 0;
    SSL_SESSION_free(*t->slot);
    *t->slot = copy;
    return 0; /* the original stays OpenSSL's */
}

struct h1tls_ctx *h1tls_ctx_new(const char *ca_file, const char *cert_file,
                                const char *key_file, bool verify, char *err,
                                size_t errlen)
{
    struct h1tls_ctx *c = xcalloc(1, sizeof(*c));
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx) {
        h1tls_errstr(err, errlen, "no context");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* one read system call per record batch instead of header + body */
    SSL_CTX_set_read_ahead(c->ctx, 1);
    SSL_CTX_set_session_cache_mode(c->ctx, SSL_SESS_CACHE_CLIENT |
                                               SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(c->ctx, h1tls_new_session);
    if (verify) {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        int ok = ca_file ? SSL_CTX_load_verify_locations(c->ctx, ca_file, NULL)
                         : SSL_CTX_set_default_verify_paths(c->ctx);
        if (ok != 1) {
            h1tls_errstr(err, errlen, "cannot load the CA");
            goto fail;
        }
    } else {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_NONE, NULL);
    }
    if (cert_file &&
        (SSL_CTX_use_certificate_chain_file(c->ctx, cert_file) != 1 ||
         SSL_CTX_use_PrivateKey_file(c->ctx, key_file ? key_file : cert_file,
                                     SSL_FILETYPE_PEM) != 1)) {
        h1tls_errstr(err, errlen, "cannot load the client certificate");
        goto fail;
    }
    return c;
fail:
    h1tls_ctx_free(c);
    return NULL;
}

/* Every certificate of a PEM text, in order: to the chain (leaf first),
 * or to the trust store and the list of CA names sent to clients. */
static bool h1tls_load_certs(SSL_CTX *ctx, const char *pem, bool trust)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = NULL;
    int n = 0;
    bool ok = bio != NULL;
    while (ok && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (trust)
            ok = X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), x) == 1 &&
                 SSL_CTX_add_client_CA(ctx, x) == 1;
        else if (n == 0)
            ok = SSL_CTX_use_certificate(ctx, x) == 1;
        else
            ok = SSL_CTX_add1_chain_cert(ctx, x) == 1;
        X509_free(x);
        n++;
    }
    /* the loop ends on "no more PEM" (expected) or a broken one */
    unsigned long e = ERR_peek_last_error();
    if (ok && n > 0 && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
        ERR_clear_error();
    else if (ok && e)
        ok = false;
    BIO_free(bio);
    return ok && n > 0;
}

struct h1tls_ctx *h1tls_server_ctx_new(const char *cert_pem,
                                       const char *key_pem,
                                       const char *client_ca_pem, char *err,
                                       size_t errlen)
{
    static const unsigned char sid_ctx[] = "quorumgate";
    struct h1tls_ctx *c = xcalloc(1, sizeof(*c));
    BIO *kb = NULL;
    EVP_PKEY *key = NULL;
    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_server_method());
    if (!c->ctx) {
        h1tls_errstr(err, errlen, "no context");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    /* a client that shuts its side without close_notify is read as one
     * that closed (as on plain HTTP: its answer is still sent); requests
     * are framed, so a cut one is never taken for whole */
    SSL_CTX_set_options(c->ctx, SSL_OP_NO_RENEGOTIATION |
                                    SSL_OP_CIPHER_SERVER_PREFERENCE |
                                    SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(c->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(c->ctx, 1);
    /* resumption: TLS 1.3 tickets, one per handshake; the server cache
     * for TLS 1.2 session ids */
    SSL_CTX_set_num_tickets(c->ctx, 1);
    SSL_CTX_set_session_id_context(c->ctx, sid_ctx, sizeof(sid_ctx) - 1);
    if (!h1tls_load_certs(c->ctx, cert_pem, false)) {
        h1tls_errstr(err, errlen, "cannot load the certificate");
        goto fail;
    }
    kb = BIO_new_mem_buf(key_pem, -1);
    key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    if (!key || SSL_CTX_use_PrivateKey(c->ctx, key) != 1 ||
        SSL_CTX_check_private_key(c->ctx) != 1) {
        h1tls_errstr(err, errlen, "cannot load the private key (or it does "
                                  "not match the certificate)");
        goto fail;
    }
    if (client_ca_pem) {
        if (!h1tls_load_certs(c->ctx, client_ca_pem, true)) {
            h1tls_errstr(err, errlen, "cannot load the client CA");
            goto fail;
        }
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    }
    BIO_free(kb);
    EVP_PKEY_free(key);
    return c;
fail:
    BIO_free(kb);
    EVP_PKEY_free(key);
    h1tls_ctx_free(c);
    return NULL;
}

void h1tls_server_ticket_keys(struct h1tls_ctx *c, const unsigned char *keys)
{
    SSL_CTX_set_tlsext_ticket_keys(c->ctx, (void *)keys, H1TLS_TICKET_KEYS);
}

void h1tls_ctx_free(struct h1tls_ctx *c)
{
    if (!c)
        return;
    SSL_CTX_free(c->ctx);
    free(c);
}

struct h1tls *h1tls_new(struct h1tls_ctx *c, int fd, const char *name,
                        void **slot)
{
    struct h1tls *t = xcalloc(1, sizeof(*t));
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, name, ip) == 1 ||
                 inet_pton(AF_INET6, name, ip) == 1;
    t->slot = slot;
    t->ssl = SSL_new(c->ctx);
    if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
        h1tls_free(t);
        return NULL;
    }
    SSL_set_app_data(t->ssl, t);
    if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name);
    } else {
        SSL_set_tlsext_host_name(t->ssl, name);
        SSL_set1_host(t->ssl, name);
    }
    if (slot && *slot)
        SSL_set_session(t->ssl, *slot);
    SSL_set_connect_state(t->ssl);
    return t;
}

struct h1tls *h1tls_accept_new(struct h1tls_ctx *c, int fd)
{
    struct h1tls *t = xcalloc(1, sizeof(*t));
    t->ssl = SSL_new(c->ctx);
    if (!t->ssl || SSL_set_fd(t->ssl, fd) != 1) {
        h1tls_free(t);
        return NULL;
    }
    SSL_set_app_data(t->ssl, t);
    SSL_set_accept_state(t->ssl);
    return t;
}

void h1tls_free(struct h1tls *t)
{
    if (!t)
        return;
    if (t->ssl) {
        SSL_set_app_data(t->ssl, NULL);
        SSL_free(t->ssl);
    }
    free(t);
}

void h1tls_session_free(void **slot)
{
    SSL_SESSION_free(*slot);
    *slot = NULL;
}

static int h1tls_want(struct h1tls *t, int rc)
{
    switch (SSL_get_error(t->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return H1TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return H1TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return H1TLS_CLOSED;
    default:
        ERR_clear_error();
        return H1TLS_FAIL;
    }
}

int h1tls_handshake(struct h1tls *t, char *err, size_t errlen)
{
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1)
        return 1;
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ)
        return H1TLS_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return H1TLS_WANT_WRITE;
    long vr = SSL_get_verify_result(t->ssl);
    if (vr != X509_V_OK) {
        ERR_clear_error();
        snprintf(err, errlen, "TLS: certificate verification failed: %s",
                 X509_verify_cert_error_string(vr));
    } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        snprintf(err, errlen, "TLS: handshake: connection closed (%s)",
                 errno ? strerror(errno) : "end of stream");
    } else {
        h1tls_errstr(err, errlen, "handshake failed");
    }
    return H1TLS_FAIL;
}

ssize_t h1tls_read(struct h1tls *t, void *buf, size_t n)
{
    size_t got = 0;
    int rc = SSL_read_ex(t->ssl, buf, n, &got);
    if (rc == 1)
        return (ssize_t)got;
    return h1tls_want(t, rc);
}

ssize_t h1tls_write(struct h1tls *t, const void *buf, size_t n,
                    uint64_t *wire)
{
    BIO *b = SSL_get_wbio(t->ssl);
    uint64_t before = BIO_number_written(b);
    size_t done = 0;
    int rc = SSL_write_ex(t->ssl, buf, n, &done);
    *wire = BIO_number_written(b) - before;
    if (rc == 1)
        return (ssize_t)done;
    return h1tls_want(t, rc);
}

bool h1tls_seal(struct h1tls *t, const void *buf, size_t n, struct buf *out)
{
    /* the socket BIO is both rbio and wbio (two references, SSL_set_fd):
     * the write side moves to a memory BIO for this call, then back */
    BIO *sock = SSL_get_wbio(t->ssl);
    BIO *mem = BIO_new(BIO_s_mem());
    bool ok = false;
    if (!mem || sock != SSL_get_rbio(t->ssl) || BIO_up_ref(sock) != 1) {
        BIO_free(mem);
        ERR_clear_error();
        return false;
    }
    BIO_up_ref(mem);          /* ours, past SSL's release of it below */
    SSL_set0_wbio(t->ssl, mem); /* drops one reference to sock */
    size_t total = 0, done = 0; /* partial writes: a record at a time */
    while (total < n &&
           SSL_write_ex(t->ssl, (const char *)buf + total, n - total,
                        &done) == 1)
        total += done;
    if (total == n) {
        char *p;
        long len = BIO_get_mem_data(mem, &p);
        if (len > 0) {
            buf_append(out, p, (size_t)len);
            ok = true;
        }
    }
    SSL_set0_wbio(t->ssl, sock); /* takes the reference taken above; SSL
                                    releases its one to mem */
    BIO_free(mem);
    ERR_clear_error();
    return ok;
}

bool h1tls_pending(struct h1tls *t)
{
    return SSL_has_pending(t->ssl) == 1;
}

bool h1tls_resumed(struct h1tls *t)
{
    return SSL_session_reused(t->ssl) == 1;
}

bool h1tls_peer_cert(struct h1tls *t)
{
    return SSL_get0_peer_certificate(t->ssl) != NULL;
}

void h1tls_close_notify(struct h1tls *t)
{
    if (SSL_is_init_finished(t->ssl) &&
        !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN))
        (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
}
