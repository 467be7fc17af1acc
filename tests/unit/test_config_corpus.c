/* test_config_corpus.c - every YAML file in tests/configs/valid must load,
 * and every one in tests/configs/invalid must fail with the messages its
 * leading "# expect: <substring>" lines name (at least one; each must be a
 * substring of one of the errors, which carry the file's full path). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>

#include "config_fixture.h"
#include "base/buf.h"
#include "config/config.h"

#define EXPECT "# expect: "

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.yaml files of dir, sorted; *n gets how many. */
static char **list_yaml(const char *dir, int *n)
{
    DIR *d = opendir(dir);
    if (!d)
        fprintf(stderr, "cannot open %s\n", dir);
    assert_non_null(d);
    char **names = NULL;
    *n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        names = xrealloc(names, (size_t)(*n + 1) * sizeof(*names));
        names[(*n)++] = xasprintf("%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (*n > 0)
        qsort(names, (size_t)*n, sizeof(*names), cmp_names);
    return names;
}

static void free_list(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static char *corpus_dir(const char *which)
{
    const char *src = getenv("QG_SOURCE_DIR");
    assert_non_null(src);
    return xasprintf("%s/tests/configs/%s", src, which);
}

static void test_valid_corpus(void **state)
{
    (void)state;
    char *dir = corpus_dir("valid");
    int n, failed = 0;
    char **files = list_yaml(dir, &n);
    for (int i = 0; i < n; i++) {
        struct config_errors errs = {0};
        struct config *cfg = config_load(files[i], &errs);
        if (!cfg) {
            fprintf(stderr, "%s should load:\n", files[i]);
            fixture_dump(&errs);
            failed++;
        }
        config_unref(cfg);
        config_errors_free(&errs);
    }
    free_list(files, n);
    free(dir);
    assert_int_equal(failed, 0);
    assert_true(n >= 5); /* the walk found the corpus */
}

/* The "# expect: " lines at the top of file (NULL-terminated array). */
static char **read_expects(const char *file)
{
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    char **want = xcalloc(1, sizeof(*want));
    int n = 0;
    char line[1024];
    while (fgets(line, sizeof(line), f) &&
           strncmp(line, EXPECT, strlen(EXPECT)) == 0) {
        line[strcspn(line, "\n")] = '\0';
        want = xrealloc(want, (size_t)(n + 2) * sizeof(*want));
        want[n++] = xstrdup(line + strlen(EXPECT));
        want[n] = NULL;
    }
    fclose(f);
    return want;
}

static bool check_invalid(const char *file)
{
    char **want = read_expects(file);
    struct config_errors errs = {0};
    struct config *cfg = config_load(file, &errs);
    bool ok = cfg == NULL && want[0] != NULL;
    if (!want[0])
        fprintf(stderr, "%s: no leading '" EXPECT "' line\n", file);
    if (cfg)
        fprintf(stderr, "%s: loaded, but should not\n", file);
    for (int w = 0; want[w]; w++) {
        bool found = false;
        for (int i = 0; i < errs.n && !found; i++)
            found = strstr(errs.items[i].text, want[w]) != NULL;
        if (!found) {
            fprintf(stderr, "%s: no error contains \"%s\"; got:\n", file,
                    want[w]);
            fixture_dump(&errs);
            ok = false;
        }
        free(want[w]);
    }
    free(want);
    config_unref(cfg);
    config_errors_free(&errs);
    return ok;
}

static void test_invalid_corpus(void **state)
{
    (void)state;
    char *dir = corpus_dir("invalid");
    int n, failed = 0;
    char **files = list_yaml(dir, &n);
    for (int i = 0; i < n; i++)
        failed += !check_invalid(files[i]);
    free_list(files, n);
    free(dir);
    assert_int_equal(failed, 0);
    assert_true(n >= 25);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_corpus),
        cmocka_unit_test(test_invalid_corpus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
