/* input.c - read request records from JSON Lines (or one pretty-printed JSON object) */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/wardctl/wardctl.h"

/* Bracket depth of a JSON text, string-aware, continued across lines. */
typedef struct scan_state {
    int depth;
    bool in_str;
    bool esc;
} scan_state;

static void scan(scan_state *s, const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (s->in_str) {
            if (s->esc)
                s->esc = false;
            else if (c == '\\')
                s->esc = true;
            else if (c == '"')
                s->in_str = false;
        } else if (c == '"') {
            s->in_str = true;
        } else if (c == '{' || c == '[') {
            s->depth++;
        } else if (c == '}' || c == ']') {
            s->depth--;
        }
    }
}

static size_t trim_right(const char *p, size_t len)
{
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t' || p[len - 1] == '\r' ||
                       p[len - 1] == '\n'))
        len--;
    return len;
}

static bool is_blank(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return false;
    return true;
}

/* A pretty-printed object starts with a line holding only "{" (as jq and
 * json.dumps(indent=...) print it); anything else is one JSON Lines record,
 * so a truncated line never swallows the lines after it. */
static bool starts_multiline(const char *p, size_t len)
{
    size_t i = 0;
    len = trim_right(p, len);
    while (i < len && (p[i] == ' ' || p[i] == '\t'))
        i++;
    return len - i == 1 && p[i] == '{';
}

int wctl_reader_open(wctl_reader *r, const char *path, ward_err *err)
{
    memset(r, 0, sizeof(*r));
    ward_buf_init(&r->rec);
    if (path == NULL || strcmp(path, "-") == 0) {
        r->f = stdin;
        r->name = "<stdin>";
        return 0;
    }
    r->f = fopen(path, "r");
    if (r->f == NULL) {
        ward_err_set(err, "%s: %s", path, strerror(errno));
        return WARD_EIO;
    }
    r->own = true;
    r->name = path;
    return 0;
}

/* Next line into r->line; returns its length, or -1 at end of input / error. */
static ssize_t read_line(wctl_reader *r)
{
    ssize_t n = getline(&r->line, &r->line_cap, r->f);
    if (n >= 0)
        r->lineno++;
    return n;
}

int wctl_reader_next(wctl_reader *r, const char **rec, size_t *len, long *first_line,
                     bool *too_large, ward_err *err)
{
    ssize_t n;
    *too_large = false;
    ward_buf_reset(&r->rec);
    for (;;) { /* skip blank lines */
        n = read_line(r);
        if (n < 0)
            goto eof;
        if (!is_blank(r->line, (size_t)n))
            break;
    }
    *first_line = r->lineno;
    scan_state st = {0};
    scan(&st, r->line, (size_t)n);
    bool more = starts_multiline(r->line, (size_t)n);
    if (ward_buf_append(&r->rec, r->line, trim_right(r->line, (size_t)n)) < 0)
        return WARD_ENOMEM;
    while (more && st.depth > 0) {
        n = read_line(r);
        if (n < 0 || is_blank(r->line, (size_t)n))
            break; /* unfinished: the parser reports it */
        scan(&st, r->line, (size_t)n);
        if (r->rec.len + (size_t)n > WCTL_RECORD_MAX) {
            *too_large = true;
            continue; /* keep consuming the record's lines */
        }
        if (ward_buf_putc(&r->rec, '\n') < 0 ||
            ward_buf_append(&r->rec, r->line, trim_right(r->line, (size_t)n)) < 0)
            return WARD_ENOMEM;
    }
    if (r->rec.len > WCTL_RECORD_MAX)
        *too_large = true;
    if (ferror(r->f))
        goto eof;
    *rec = r->rec.ptr;
    *len = r->rec.len;
    return 1;
eof:
    if (ferror(r->f)) {
        ward_err_set(err, "%s: %s", r->name, strerror(errno));
        return WARD_EIO;
    }
    return 0;
}

void wctl_reader_close(wctl_reader *r)
{
    if (r->own && r->f != NULL)
        fclose(r->f);
    free(r->line);
    ward_buf_dispose(&r->rec);
    memset(r, 0, sizeof(*r));
}
