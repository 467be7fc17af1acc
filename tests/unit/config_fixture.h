/* config_fixture.h - a temporary directory holding the files a
 * configuration refers to (certificates, keys, password files), for the
 * configuration tests.  Header-only: each test program includes it once,
 * after <cmocka.h>. */
#ifndef QG_TEST_CONFIG_FIXTURE_H
#define QG_TEST_CONFIG_FIXTURE_H

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "base/util.h"

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

/* A throw-away self-signed EC certificate and its key (test only). */
#define FIXTURE_CERT \
    "-----BEGIN CERTIFICATE-----\n" \
    "MIIBmjCCAUGgAwIBAgIUX9+uqRvE14RqGI3ThS9or6tIFJ4wCgYIKoZIzj0EAwIw\n" \
    "IjEgMB4GA1UEAwwXcXVvcnVtZ2F0ZSB0ZXN0IGZpeHR1cmUwIBcNMjYxMTI2MTEz\n" \
    "MTI3WhgPMjEyNjExMDIxMTMxMjdaMCIxIDAeBgNVBAMMF3F1b3J1bWdhdGUgdGVz\n" \
    "dCBmaXh0dXJlMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEtnHpLgZrdVWZ9eUs\n" \
    "M7tHd7x4txVsNQnGxakJxpJcfZ6GTtDFBS9pJvujDKC4x3cBtEYRj7N+Wf3ZFRrd\n" \
    "EtNOc6NTMFEwHQYDVR0OBBYEFDsmR6pdE3C5Dwy62TZ/ghpN45y+MB8GA1UdIwQY\n" \
    "MBaAFDsmR6pdE3C5Dwy62TZ/ghpN45y+MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI\n" \
    "zj0EAwIDRwAwRAIgJoQdQbk5MyvUkeIcGyIy5kxNNSw+SiE8gv6Y4725WTgCIH4d\n" \
    "rCxStzts2PHkPlG7uZ3QobPubw5kCQfV+svyQ4/A\n" \
    "-----END CERTIFICATE-----\n"
#define FIXTURE_KEY \
    "-----BEGIN PRIVATE KEY-----\n" \
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMEDeCfg/ka5CGZjr\n" \
    "X2W/fja1bBI1MirzE0Ziy5VvhhChRANCAAS2cekuBmt1VZn15Swzu0d3vHi3FWw1\n" \
    "CcbFqQnGklx9noZO0MUFL2km+6MMoLjHdwG0RhGPs35Z/dkVGt0S005z\n" \
    "-----END PRIVATE KEY-----\n"

/* A fresh directory with every file examples/quorumgate.yaml names
 * (relative to /etc/quorumgate/) plus a few extras. */
FIXTURE_FN char *fixture_make(void)
{
    char *dir = xstrdup("/tmp/qg-config-test-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    fixture_write(dir, "tls/server.pem", FIXTURE_CERT);
    fixture_write(dir, "tls/server.key", FIXTURE_KEY);
    fixture_write(dir, "tls/clients-ca.pem", FIXTURE_CERT);
    fixture_write(dir, "ctrl-ca.pem", FIXTURE_CERT);
    fixture_write(dir, "er.pem", FIXTURE_CERT);
    fixture_write(dir, "not-a-cert.pem", "-----BEGIN CERTIFICATE-----\n");
    fixture_write(dir, "er.key", FIXTURE_KEY);
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

/* yaml (as the file q.yaml in dir) loaded; fails the test with every error
 * printed when it does not load. */
FIXTURE_FN struct config *fixture_load(const char *dir, const char *yaml)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load_string_dir("q.yaml", yaml, dir, &errs);
    if (!cfg)
        fixture_dump(&errs);
    assert_non_null(cfg);
    config_errors_free(&errs);
    return cfg;
}

/* cmocka group setup/teardown: one fixture directory in *state. */
FIXTURE_FN int fixture_group_setup(void **state)
{
    *state = fixture_make();
    return 0;
}

FIXTURE_FN int fixture_group_teardown(void **state)
{
    fixture_remove(*state);
    return 0;
}

#endif
