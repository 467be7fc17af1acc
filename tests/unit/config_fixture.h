/* config_fixture.h - a temporary directory holding the files a
 * configuration refers to (certificates, keys, password files), for the
 * configuration tests.  Header-only: each test program includes it once. */
#ifndef QG_TEST_CONFIG_FIXTURE_H
#define QG_TEST_CONFIG_FIXTURE_H

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/config.h"
#include "proxy/util.h"

/* Each including test uses some of these. */
#define FIXTURE_FN static __attribute__((unused))

/* 39 bytes, ending in a newline that must be kept: the key is bytes. */
#define FIXTURE_HMAC "0123456789abcdef0123456789abcdef-hmac-\n"

FIXTURE_FN void fixture_write(const char *dir, const char *rel, const char *data)
{
    char *path = xasprintf("%s/%s", dir, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0700); /* one level of subdirectory is enough here */
    *slash = '/';
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "fixture: %s: %s\n", path, strerror(errno));
        abort();
    }
    fwrite(data, 1, strlen(data), f);
    fclose(f);
    free(path);
}

/* A fresh directory with every file examples/quorumgate.yaml names
 * (relative to /etc/quorumgate/) plus a few extras. */
FIXTURE_FN char *fixture_make(void)
{
    char *dir = xstrdup("/tmp/qg-config-test-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    fixture_write(dir, "tls/server.pem", "-----BEGIN CERTIFICATE-----\n");
    fixture_write(dir, "tls/server.key", "-----BEGIN PRIVATE KEY-----\n");
    fixture_write(dir, "tls/clients-ca.pem", "-----BEGIN CERTIFICATE-----\n");
    fixture_write(dir, "ctrl-ca.pem", "-----BEGIN CERTIFICATE-----\n");
    fixture_write(dir, "er.pem", "-----BEGIN CERTIFICATE-----\n");
    fixture_write(dir, "er.key", "-----BEGIN PRIVATE KEY-----\n");
    fixture_write(dir, "hmac.key", FIXTURE_HMAC);
    fixture_write(dir, "short.key", "only-20-bytes-long!\n");
    fixture_write(dir, "admin.password", "s3cret\n");
    fixture_write(dir, "redis.password", "redis-pw\r\n\n");
    fixture_write(dir, "mgmt.password", "mgmt-pw");
    fixture_write(dir, "empty.password", "\n");
    char *sub = xasprintf("%s/adir", dir);
    mkdir(sub, 0700);
    free(sub);
    return dir;
}

FIXTURE_FN int fixture_rm(const char *path, const struct stat *st, int flag,
                      struct FTW *ftw)
{
    (void)st; (void)flag; (void)ftw;
    return remove(path);
}

FIXTURE_FN void fixture_remove(char *dir)
{
    nftw(dir, fixture_rm, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* Print every error (for a failing test's log). */
FIXTURE_FN void fixture_dump(const struct config_errors *errs)
{
    for (int i = 0; i < errs->n; i++)
        fprintf(stderr, "  [%d] %s\n", i, errs->items[i].text);
}

#endif
