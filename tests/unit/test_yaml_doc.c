/* test_yaml_doc.c - the YAML node tree: lines, quoting, aliases, merge
 * keys, duplicate keys, syntax errors, and the bounds on alias expansion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/yaml_doc.h"

/* Collects reports as "line: message\n". */
static void collect(void *ctx, int line, const char *message)
{
    buf_printf(ctx, "%d: %s\n", line, message);
}

static struct yaml_doc_node *load(const char *text, struct buf *reports)
{
    return yaml_doc_load_string(text, strlen(text), collect, reports);
}

static const struct yaml_doc_node *get(const struct yaml_doc_node *map,
                                       const char *key)
{
    const struct yaml_doc_pair *p = yaml_doc_find(map, key);
    assert_non_null(p);
    return p->value;
}

static void test_tree_and_lines(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("a: 1\n"
                                      "b:\n"
                                      "  - x\n"
                                      "  - 'y'\n"
                                      "c: {d: \"e\"}\n"
                                      "f:\n",
                                      &r);
    assert_null(r.data);
    assert_non_null(root);
    assert_int_equal(root->kind, YAML_DOC_MAPPING);
    assert_int_equal(root->n_pairs, 4);
    assert_string_equal(root->pairs[0].key->str, "a");
    assert_int_equal(root->pairs[0].key->line, 1);
    const struct yaml_doc_node *b = get(root, "b");
    assert_int_equal(b->kind, YAML_DOC_SEQUENCE);
    assert_int_equal(b->n_items, 2);
    assert_int_equal(b->items[0]->line, 3);
    assert_false(b->items[0]->quoted);
    assert_string_equal(b->items[1]->str, "y");
    assert_true(b->items[1]->quoted);
    assert_int_equal(b->items[1]->line, 4);
    const struct yaml_doc_node *d = get(get(root, "c"), "d");
    assert_string_equal(d->str, "e");
    assert_int_equal(d->line, 5);
    assert_true(yaml_doc_is_null(get(root, "f")));
    assert_false(yaml_doc_is_null(d));
    assert_null(yaml_doc_find(root, "zz"));
    assert_null(yaml_doc_find(d, "x")); /* not a mapping */
    yaml_doc_free(root);
}

static void test_null_forms(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("a: ~\nb: null\nc: ''\nd: NULL\n", &r);
    assert_non_null(root);
    assert_true(yaml_doc_is_null(get(root, "a")));
    assert_true(yaml_doc_is_null(get(root, "b")));
    assert_false(yaml_doc_is_null(get(root, "c"))); /* quoted: a string */
    assert_true(yaml_doc_is_null(get(root, "d")));
    yaml_doc_free(root);
}

static void test_empty_document(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("# only a comment\n", &r);
    assert_null(r.data);
    assert_non_null(root);
    assert_true(yaml_doc_is_null(root));
    yaml_doc_free(root);
}

static void test_syntax_error_line(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("a: 1\nb: [1, 2\nc: 3\n", &r);
    assert_null(root);
    assert_non_null(r.data);
    assert_string_equal(r.data,
                        "3: YAML syntax error: did not find expected ',' or "
                        "']' (while parsing a flow sequence at line 2)\n");
    buf_free(&r);
}

static void test_bad_indentation(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("a:\n  b: 1\n c: 2\n", &r);
    assert_null(root);
    assert_string_equal(r.data,
                        "3: YAML syntax error: did not find expected key "
                        "(while parsing a block mapping at line 1)\n");
    buf_free(&r);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("a: 1\nb: \xff\n", &r);
    assert_null(root);
    assert_string_equal(r.data, "2: YAML syntax error: invalid leading UTF-8 "
                                "octet\n");
    buf_free(&r);
}

static void test_duplicate_key(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("a: 1\nb: 2\na: 3\n", &r);
    assert_non_null(root); /* reported, tree kept with the first value */
    assert_string_equal(r.data, "3: duplicate key 'a' (first at line 1)\n");
    assert_int_equal(root->n_pairs, 2);
    assert_string_equal(get(root, "a")->str, "1");
    yaml_doc_free(root);
    buf_free(&r);
}

static void test_non_scalar_key(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("? [a, b]\n: 1\nc: 2\n", &r);
    assert_non_null(root);
    assert_string_equal(r.data, "1: a mapping key must be a scalar, found a "
                                "list\n");
    assert_int_equal(root->n_pairs, 1);
    yaml_doc_free(root);
    buf_free(&r);
}

static void test_alias_resolved(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("x: &t 5s\n"
                                      "y: *t\n"
                                      "m: &m {k: v}\n"
                                      "n: *m\n",
                                      &r);
    assert_null(r.data);
    assert_non_null(root);
    assert_string_equal(get(root, "y")->str, "5s");
    assert_int_equal(get(root, "y")->line, 1); /* the anchored original */
    const struct yaml_doc_node *n = get(root, "n");
    assert_int_equal(n->kind, YAML_DOC_MAPPING);
    assert_string_equal(get(n, "k")->str, "v");
    /* A copy, not shared: freeing the tree frees each once (ASan). */
    assert_ptr_not_equal(n, get(root, "m"));
    yaml_doc_free(root);
}

static void test_undefined_alias(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("a: 1\nb: *nope\n", &r);
    assert_null(root);
    assert_string_equal(r.data, "2: YAML syntax error: found undefined "
                                "alias\n");
    buf_free(&r);
}

static void test_merge_keys(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("base: &b {x: 1, y: 2}\n"
                                      "other: &o {y: 9, z: 3}\n"
                                      "d:\n"
                                      "  <<: [*b, *o]\n"
                                      "  x: 10\n",
                                      &r);
    assert_null(r.data);
    assert_non_null(root);
    const struct yaml_doc_node *d = get(root, "d");
    assert_int_equal(d->n_pairs, 3);
    assert_string_equal(get(d, "x")->str, "10"); /* written key wins */
    assert_string_equal(get(d, "y")->str, "2");  /* earlier source wins */
    assert_string_equal(get(d, "z")->str, "3");
    assert_null(yaml_doc_find(d, "<<"));
    yaml_doc_free(root);
}

static void test_merge_needs_mapping(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("a: &s 1\nb:\n  <<: *s\n  c: 2\n", &r);
    assert_non_null(root);
    assert_string_equal(r.data, "1: merge key '<<' needs a mapping, found a "
                                "scalar\n");
    yaml_doc_free(root);
    buf_free(&r);
}

static void test_alias_cycle_bounded(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("a: &a [x, *a]\n", &r);
    assert_null(root);
    assert_non_null(r.data);
    assert_non_null(strstr(r.data, "nested more than 64 levels deep"));
    buf_free(&r);
}

static void test_billion_laughs_bounded(void **state)
{
    (void)state;
    struct buf doc = {0}, r = {0};
    buf_puts(&doc, "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for (int i = 1; i < 10; i++) {
        buf_printf(&doc, "l%d: &l%d [", i, i);
        for (int j = 0; j < 10; j++)
            buf_printf(&doc, "%s*l%d", j ? ", " : "", i - 1);
        buf_puts(&doc, "]\n");
    }
    struct yaml_doc_node *root = load(doc.data, &r);
    assert_null(root);
    assert_non_null(r.data);
    assert_non_null(strstr(r.data, "document too large (more than 100000 "
                                   "nodes after expanding aliases)"));
    buf_free(&doc);
    buf_free(&r);
}

static void test_second_document(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("a: 1\n---\nb: 2\n", &r);
    assert_null(root);
    assert_string_equal(r.data, "2: a second YAML document; put everything in "
                                "one\n");
    buf_free(&r);
}

static void test_nul_in_scalar(void **state)
{
    (void)state;
    struct buf r = {0};
    struct yaml_doc_node *root = load("a: \"x\\0y\"\n", &r);
    assert_non_null(root);
    assert_string_equal(r.data, "1: a scalar contains a NUL character\n");
    assert_int_equal(get(root, "a")->len, 3);
    yaml_doc_free(root);
    buf_free(&r);
}

static void test_load_file(void **state)
{
    (void)state;
    struct buf r = {0};
    char path[] = "/tmp/qg-yaml-doc-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("k: v\n", f);
    fclose(f);
    struct yaml_doc_node *root = yaml_doc_load_file(path, collect, &r);
    assert_non_null(root);
    assert_string_equal(get(root, "k")->str, "v");
    yaml_doc_free(root);
    unlink(path);
    root = yaml_doc_load_file(path, collect, &r);
    assert_null(root);
    char *want = NULL;
    assert_true(asprintf(&want, "0: cannot read '%s': No such file or "
                                "directory\n", path) > 0);
    assert_string_equal(r.data, want);
    free(want);
    buf_free(&r);
    root = yaml_doc_load_file("/tmp", collect, &r);
    assert_null(root);
    assert_string_equal(r.data, "0: cannot read '/tmp': Is a directory\n");
    buf_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tree_and_lines),
        cmocka_unit_test(test_null_forms),
        cmocka_unit_test(test_empty_document),
        cmocka_unit_test(test_syntax_error_line),
        cmocka_unit_test(test_bad_indentation),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_duplicate_key),
        cmocka_unit_test(test_non_scalar_key),
        cmocka_unit_test(test_alias_resolved),
        cmocka_unit_test(test_undefined_alias),
        cmocka_unit_test(test_merge_keys),
        cmocka_unit_test(test_merge_needs_mapping),
        cmocka_unit_test(test_alias_cycle_bounded),
        cmocka_unit_test(test_billion_laughs_bounded),
        cmocka_unit_test(test_second_document),
        cmocka_unit_test(test_nul_in_scalar),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
