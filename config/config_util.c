/* config_util.c - see config_util.h. */
#include "config/config_util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/util.h"

char *config_util_resolve(const struct config_parse *p, const char *file)
{
    if (file[0] == '/' || !p->base_dir || !*p->base_dir ||
        strcmp(p->base_dir, ".") == 0)
        return xstrdup(file);
    return xasprintf("%s/%s", p->base_dir, file);
}

int config_util_open(const char *file)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        int err = S_ISDIR(st.st_mode) ? EISDIR : errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

char *config_util_read_file(struct config_parse *p, int line,
                             const char *path, const char *file, size_t max,
                             size_t *len)
{
    struct buf b = {0};
    char *result = NULL;
    int fd = config_util_open(file);
    if (fd < 0) {
        config_parse_error(p, line, "%s: cannot read '%s': %s", path, file,
                           strerror(errno));
        goto out;
    }
    for (;;) {
        char chunk[4096];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            config_parse_error(p, line, "%s: cannot read '%s': %s", path,
                               file, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        buf_append(&b, chunk, (size_t)n);
        if (b.len > max) {
            config_parse_error(p, line, "%s: '%s' is larger than %zu bytes",
                               path, file, max);
            goto out;
        }
    }
    if (!b.data)
        buf_append(&b, "", 0);
    result = buf_steal(&b, len);
out:
    if (fd >= 0)
        close(fd);
    if (b.data)
        explicit_bzero(b.data, b.cap);
    buf_free(&b);
    return result;
}

/* Case-insensitive edit distance counting a swap of two neighbours as one
 * edit (optimal string alignment), for typo suggestions. */
static size_t config_util_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 64;
    size_t d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]);
            int cb = tolower((unsigned char)b[j - 1]);
            size_t best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                cb == tolower((unsigned char)a[i - 2]) &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

const char *config_util_suggest(const char *word, const char *const *cands,
                                 size_t n)
{
    size_t limit = strlen(word) <= 4 ? 1 : 2;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (size_t i = 0; i < n; i++) {
        size_t d = config_util_distance(word, cands[i]);
        if (d < best_d) {
            best = cands[i];
            best_d = d;
        }
    }
    return best;
}

void config_util_fmt_ms(char *out, size_t n, uint64_t ms)
{
    unsigned long long v = (unsigned long long)ms;
    if (v && v % 3600000 == 0)
        snprintf(out, n, "%lluh", v / 3600000);
    else if (v && v % 60000 == 0)
        snprintf(out, n, "%llum", v / 60000);
    else if (v && v % 1000 == 0)
        snprintf(out, n, "%llus", v / 1000);
    else
        snprintf(out, n, "%llums", v);
}

void config_util_fmt_size(char *out, size_t n, uint64_t bytes)
{
    static const struct { const char *unit; unsigned long long mult; } u[] = {
        {"GiB", 1ull << 30}, {"MiB", 1ull << 20}, {"KiB", 1ull << 10},
    };
    unsigned long long v = (unsigned long long)bytes;
    for (size_t i = 0; i < ARRAY_LEN(u); i++) {
        if (v && v % u[i].mult == 0) {
            snprintf(out, n, "%llu%s", v / u[i].mult, u[i].unit);
            return;
        }
    }
    snprintf(out, n, "%llu", v);
}

/* Walk path from the root as far as it goes: the last node reached, the
 * line of its key (or item), and whether the whole path was found. */
static const struct yaml_doc_node *config_util_walk(const struct config_parse *p,
                                                   const char *path, int *line,
                                                   bool *complete)
{
    const struct yaml_doc_node *node = p->root;
    const char *s = path;
    *line = 0;
    *complete = false;
    while (*s && node) {
        size_t klen = strcspn(s, ".[");
        if (klen > 0) {
            char key[128];
            if (klen >= sizeof(key))
                return node;
            memcpy(key, s, klen);
            key[klen] = '\0';
            const struct yaml_doc_pair *pair = yaml_doc_find(node, key);
            if (!pair)
                return node;
            *line = pair->key->line;
            node = pair->value;
            s += klen;
        }
        while (*s == '[') {
            char *end;
            unsigned long i = strtoul(s + 1, &end, 10);
            if (*end != ']' || node->kind != YAML_DOC_SEQUENCE ||
                i >= node->n_items)
                return node;
            node = node->items[i];
            *line = node->line;
            s = end + 1;
        }
        if (*s == '.')
            s++;
        else if (*s)
            return node;
    }
    *complete = node != NULL && !*s;
    return node;
}

int config_util_line(const struct config_parse *p, const char *path)
{
    int line;
    bool complete;
    config_util_walk(p, path, &line, &complete);
    return line;
}

const struct yaml_doc_node *config_util_node(const struct config_parse *p,
                                             const char *path)
{
    int line;
    bool complete;
    const struct yaml_doc_node *n = config_util_walk(p, path, &line, &complete);
    return complete && !yaml_doc_is_null(n) ? n : NULL;
}


int config_util_name(const struct config_enum_name *tab, const char *name,
                     const char **hint, struct buf *list)
{
    const char *names[32];
    size_t n = 0;
    *hint = NULL;
    for (const struct config_enum_name *e = tab; e->name; e++) {
        if (strcmp(e->name, name) == 0)
            return e->value;
        if (n < ARRAY_LEN(names))
            names[n++] = e->name;
        buf_printf(list, "%s%s", list->len ? ", " : "", e->name);
    }
    *hint = config_util_suggest(name, names, n);
    return -1;
}
