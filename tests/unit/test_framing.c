/* test_framing.c - io/framing.c: the request rules quorumgate enforces
 * once a head is parsed (request smuggling): the target and the framing
 * fields.  Field syntax is base/h1req.c's (tests/unit/test_h1req.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "io/framing.h"
#include "io/listener.h"

#define MAXH 8

struct block {
    char data[1024];
    size_t size;
    struct listener_header h[MAXH];
    int n;
};

/* lines: "Name: value" each (NULL-terminated list). */
static void block_build(struct block *b, const char *const *lines)
{
    memset(b, 0, sizeof(*b));
    for (int i = 0; lines[i]; i++) {
        const char *line = lines[i];
        const char *colon = strchr(line, ':');
        size_t len = strlen(line);
        assert_non_null(colon);
        assert_true(b->size + len + 2 < sizeof(b->data) && b->n < MAXH);
        char *at = b->data + b->size;
        memcpy(at, line, len);
        at[colon - line] = '\0';
        at[len] = '\0'; /* CR */
        at[len + 1] = '\0'; /* LF */
        struct listener_header *h = &b->h[b->n++];
        h->name = at;
        h->name_len = (size_t)(colon - line);
        const char *v = at + (colon - line) + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        h->value = v;
        h->value_len = (size_t)(at + len - v);
        b->size += len + 2;
    }
}

static void test_target(void **state)
{
    (void)state;
    assert_null(framing_target("/edge/client/v1/version?x=1", NULL, NULL));
    assert_string_equal(framing_target("edge", NULL, NULL),
                        "request target must be an absolute path");
    assert_string_equal(framing_target("http://a/b", NULL, NULL),
                        "request target must be an absolute path");
    assert_string_equal(framing_target("/a b", NULL, NULL),
                        "invalid character in the request target");
    assert_string_equal(framing_target("/a#frag", NULL, NULL),
                        "invalid character in the request target");
    assert_string_equal(framing_target("/a\x7f", NULL, NULL),
                        "invalid character in the request target");
    assert_null(framing_target("/caf\xc3\xa9", NULL, NULL));
    /* the request line as a parser leaves it: "GET\0/a\0HTTP/1.1";
     * a NUL inside the target shows as a target shorter than its room */
    char line[] = "GET\0/abc\0HTTP/1.1";
    assert_null(framing_target(line + 4, line, line + 9));
    char cut[] = "GET\0/ab\0c HTTP/1.1";
    assert_string_equal(framing_target(cut + 4, cut, cut + 11),
                        "invalid character in the request target");
}

static const char *check(const char *const *lines, const char *version,
                         uint64_t *clen, bool *has)
{
    static struct block b;
    block_build(&b, lines);
    return framing_check(b.h, b.n, version, clen, has);
}

static void test_check_lengths(void **state)
{
    (void)state;
    uint64_t clen = 7;
    bool has = true;
    assert_null(check((const char *const[]){"Host: a", NULL}, "HTTP/1.1",
                      &clen, &has));
    assert_false(has);
    assert_null(check((const char *const[]){"Content-Length: 42",
                                            "content-length: 42", NULL},
                      "HTTP/1.1", &clen, &has));
    assert_true(has);
    assert_int_equal(clen, 42);
    assert_string_equal(check((const char *const[]){"Content-Length: 42",
                                                    "Content-Length: 43",
                                                    NULL},
                              "HTTP/1.1", &clen, &has),
                        "conflicting Content-Length headers");
    assert_string_equal(check((const char *const[]){"Content-Length: 4x",
                                                    NULL},
                              "HTTP/1.1", &clen, &has),
                        "invalid Content-Length");
    assert_string_equal(check((const char *const[]){"Content-Length: -1",
                                                    NULL},
                              "HTTP/1.1", &clen, &has),
                        "invalid Content-Length");
    assert_string_equal(check((const char *const[]){"Content-Length:", NULL},
                              "HTTP/1.1", &clen, &has),
                        "invalid Content-Length");
    /* no overflow: 2^64 and beyond are refused */
    assert_string_equal(
        check((const char *const[]){"Content-Length: 18446744073709551616",
                                    NULL},
              "HTTP/1.1", &clen, &has),
        "invalid Content-Length");
    assert_string_equal(check((const char *const[]){"Host: a", "HOST: b",
                                                    NULL},
                              "HTTP/1.1", &clen, &has),
                        "more than one Host header");
}

static void test_check_transfer_encoding(void **state)
{
    (void)state;
    uint64_t clen = 0;
    bool has = false;
    assert_null(check((const char *const[]){"Transfer-Encoding:  Chunked ",
                                            NULL},
                      "HTTP/1.1", &clen, &has));
    assert_false(has);
    assert_string_equal(
        check((const char *const[]){"Transfer-Encoding: gzip, chunked",
                                    NULL},
              "HTTP/1.1", &clen, &has),
        "unsupported Transfer-Encoding (only chunked)");
    assert_string_equal(check((const char *const[]){"Transfer-Encoding: "
                                                    "chunked",
                                                    "Transfer-Encoding: "
                                                    "chunked",
                                                    NULL},
                              "HTTP/1.1", &clen, &has),
                        "repeated Transfer-Encoding header");
    assert_string_equal(check((const char *const[]){"Content-Length: 3",
                                                    "Transfer-Encoding: "
                                                    "chunked",
                                                    NULL},
                              "HTTP/1.1", &clen, &has),
                        "both Content-Length and Transfer-Encoding");
    assert_string_equal(check((const char *const[]){"Transfer-Encoding: "
                                                    "chunked",
                                                    NULL},
                              "HTTP/1.0", &clen, &has),
                        "Transfer-Encoding in an HTTP/1.0 request");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target),
        cmocka_unit_test(test_check_lengths),
        cmocka_unit_test(test_check_transfer_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
