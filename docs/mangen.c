/* mangen.c - writes the man page quorumgate(8) at build time.
 *
 *   mangen TEMPLATE EXAMPLE VERSION OUTPUT
 *
 * TEMPLATE (docs/quorumgate.8.in) is roff with @VERSION@ anywhere and lines
 * that are exactly @SYNOPSIS@, @COMMANDS@, @SIGNALS@, @EXIT_STATUS@,
 * @FILES@ (the rows of proxy/cli.def, the same ones --help prints) or
 * @CONFIGURATION@ (examples/quorumgate.yaml, the configuration reference of
 * the README: its opening comment as prose, then one subsection per
 * top-level key with the comment above it and the key's lines verbatim).
 * Not part of quorumgate; built and run by cmake/package.cmake. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One row of cli.def, whichever kind. */
struct mangen_row {
    const char *name;    /* arguments, signal names, status or path */
    const char *brief;   /* one line, no full stop */
    const char *details; /* "" when none */
};

static const struct mangen_row mangen_commands[] = {
#define CLI_COMMAND(args, brief, details) {args, brief, details},
#include "proxy/cli.def"
};
static const struct mangen_row mangen_signals[] = {
#define CLI_SIGNAL(names, brief, details) {names, brief, details},
#include "proxy/cli.def"
};
static const struct mangen_row mangen_exits[] = {
#define CLI_EXIT(status, brief) {#status, brief, ""},
#include "proxy/cli.def"
};
static const struct mangen_row mangen_files[] = {
#define CLI_FILE(path, brief) {path, brief, ""},
#include "proxy/cli.def"
};

#define MANGEN_N(a) (sizeof(a) / sizeof((a)[0]))
#define MANGEN_MAX_LINES 4096

/* Text as roff: backslash and minus escaped, a leading control character
 * neutralised when the text starts an output line. */
static void mangen_text(FILE *out, const char *s, bool line_start)
{
    if (line_start && (*s == '.' || *s == '\''))
        fputs("\\&", out);
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else
            fputc(*s, out);
    }
}

/* A brief as a sentence: "run in the foreground" (as --help shows it) ->
 * "Run in the foreground." */
static void mangen_sentence(FILE *out, const char *s)
{
    bool lower = *s >= 'a' && *s <= 'z';
    if (lower)
        fputc(*s++ - 'a' + 'A', out);
    mangen_text(out, s, !lower);
    fputs(".\n", out);
}

/* "relay -t -c FILE": options and subcommands bold, upper-case operands
 * italic. */
static void mangen_synopsis_line(FILE *out, const char *args)
{
    fputs("\\fBquorumgate\\fR", out);
    char *copy = strdup(args);
    char *save = NULL;
    for (char *w = copy ? strtok_r(copy, " ", &save) : NULL; w;
         w = strtok_r(NULL, " ", &save)) {
        bool operand = w[0] >= 'A' && w[0] <= 'Z';
        fputs(operand ? " \\fI" : " \\fB", out);
        mangen_text(out, w, false);
        fputs("\\fR", out);
    }
    fputc('\n', out);
    free(copy);
}

static void mangen_synopsis(FILE *out)
{
    for (size_t i = 0; i < MANGEN_N(mangen_commands); i++) {
        if (i)
            fputs(".br\n", out);
        mangen_synopsis_line(out, mangen_commands[i].name);
    }
}

/* .TP entries: the tag (a synopsis line for commands, else bold), then the
 * brief and the details as one paragraph. */
static void mangen_entries(FILE *out, const struct mangen_row *rows, size_t n,
                           bool commands, bool italic_tag)
{
    for (size_t i = 0; i < n; i++) {
        fputs(".TP\n", out);
        if (commands) {
            mangen_synopsis_line(out, rows[i].name);
        } else {
            fputs(italic_tag ? ".I " : ".B ", out);
            mangen_text(out, rows[i].name, false);
            fputc('\n', out);
        }
        mangen_sentence(out, rows[i].brief);
        if (rows[i].details[0]) {
            mangen_text(out, rows[i].details, true);
            fputc('\n', out);
        }
    }
}

/* ---- the configuration reference ---------------------------------------- */

struct mangen_lines {
    char *v[MANGEN_MAX_LINES]; /* owned, without the newline */
    int n;
};

static int mangen_read_lines(const char *path, struct mangen_lines *ls)
{
    int rc = -1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        goto out;
    }
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (ls->n == MANGEN_MAX_LINES) {
            fprintf(stderr, "%s: more than %d lines\n", path, MANGEN_MAX_LINES);
            goto out;
        }
        if (len > 0 && line[len - 1] == '\n')
            line[len - 1] = '\0';
        ls->v[ls->n++] = strdup(line);
    }
    rc = 0;
out:
    free(line);
    if (f)
        fclose(f);
    return rc;
}

static bool mangen_blank(const char *s)
{
    return s[strspn(s, " \t")] == '\0';
}

/* A comment line at column 0, as prose: "# text" -> "text"; "#" -> a new
 * paragraph. */
static void mangen_prose(FILE *out, const char *comment)
{
    const char *t = comment + 1;
    if (*t == ' ')
        t++;
    if (*t == '\0') {
        fputs(".PP\n", out);
        return;
    }
    mangen_text(out, t, true);
    fputc('\n', out);
}

/* Lines [from, to) verbatim in an example block. */
static void mangen_verbatim(FILE *out, const struct mangen_lines *ls, int from,
                            int to)
{
    fputs(".PP\n.EX\n", out);
    for (int i = from; i < to; i++) {
        mangen_text(out, ls->v[i], true);
        fputc('\n', out);
    }
    fputs(".EE\n", out);
}

static void mangen_configuration(FILE *out, const struct mangen_lines *ls)
{
    int i = 0;
    /* The opening comment, up to the first blank line. */
    for (; i < ls->n && ls->v[i][0] == '#'; i++)
        mangen_prose(out, ls->v[i]);
    while (i < ls->n) {
        while (i < ls->n && mangen_blank(ls->v[i]))
            i++;
        int comment = i;
        while (i < ls->n && ls->v[i][0] == '#')
            i++;
        if (i >= ls->n)
            break;
        int key = i;
        size_t klen = strcspn(ls->v[key], ":");
        /* The key's lines: up to the next line at column 0. */
        int end = key + 1;
        while (end < ls->n && (ls->v[end][0] == ' ' || ls->v[end][0] == '\0'))
            end++;
        int last = end;
        while (last > key + 1 && mangen_blank(ls->v[last - 1]))
            last--;
        fprintf(out, ".SS %.*s\n", (int)klen, ls->v[key]);
        for (int c = comment; c < key; c++)
            mangen_prose(out, ls->v[c]);
        mangen_verbatim(out, ls, key, last);
        i = end;
    }
}

/* ---- the template -------------------------------------------------------- */

static void mangen_line(FILE *out, const char *line, const char *version,
                        const struct mangen_lines *example)
{
    if (strcmp(line, "@SYNOPSIS@") == 0) {
        mangen_synopsis(out);
    } else if (strcmp(line, "@COMMANDS@") == 0) {
        mangen_entries(out, mangen_commands, MANGEN_N(mangen_commands), true,
                       false);
    } else if (strcmp(line, "@SIGNALS@") == 0) {
        mangen_entries(out, mangen_signals, MANGEN_N(mangen_signals), false,
                       false);
    } else if (strcmp(line, "@EXIT_STATUS@") == 0) {
        mangen_entries(out, mangen_exits, MANGEN_N(mangen_exits), false,
                       false);
    } else if (strcmp(line, "@FILES@") == 0) {
        mangen_entries(out, mangen_files, MANGEN_N(mangen_files), false, true);
    } else if (strcmp(line, "@CONFIGURATION@") == 0) {
        mangen_configuration(out, example);
    } else {
        const char *at;
        while ((at = strstr(line, "@VERSION@")) != NULL) {
            fwrite(line, 1, (size_t)(at - line), out);
            fputs(version, out);
            line = at + strlen("@VERSION@");
        }
        fputs(line, out);
        fputc('\n', out);
    }
}

int main(int argc, char **argv)
{
    int rc = 1;
    struct mangen_lines tmpl = {0}, example = {0};
    FILE *out = NULL;
    if (argc != 5) {
        fprintf(stderr, "usage: mangen TEMPLATE EXAMPLE VERSION OUTPUT\n");
        goto out;
    }
    if (mangen_read_lines(argv[1], &tmpl) != 0 ||
        mangen_read_lines(argv[2], &example) != 0)
        goto out;
    out = fopen(argv[4], "w");
    if (!out) {
        perror(argv[4]);
        goto out;
    }
    for (int i = 0; i < tmpl.n; i++)
        mangen_line(out, tmpl.v[i], argv[3], &example);
    if (fclose(out) != 0) {
        perror(argv[4]);
        out = NULL;
        goto out;
    }
    out = NULL;
    rc = 0;
out:
    if (out)
        fclose(out);
    for (int i = 0; i < tmpl.n; i++)
        free(tmpl.v[i]);
    for (int i = 0; i < example.n; i++)
        free(example.v[i]);
    return rc;
}
