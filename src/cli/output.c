/* output.c — aligned tables for people, JSON for scripts. */
#include <string.h>
#include <time.h>

#include "cli.h"

void cli_table_init(struct cli_table *t, size_t ncols, const char *const *headers)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    t->headers = headers;
}

void cli_table_add(struct cli_table *t, const char *const *row)
{
    t->cells = cb_xrealloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
    for (size_t c = 0; c < t->ncols; c++)
        t->cells[t->nrows * t->ncols + c] = cb_xstrdup(row[c] ? row[c] : "-");
    t->nrows++;
}

static size_t column_width(const struct cli_table *t, size_t c)
{
    size_t w = strlen(t->headers[c]);
    for (size_t r = 0; r < t->nrows; r++) {
        size_t l = strlen(t->cells[r * t->ncols + c]);
        if (l > w)
            w = l;
    }
    return w;
}

static void print_row(const struct cli_table *t, const char *const *row, const size_t *widths,
                      FILE *out)
{
    for (size_t c = 0; c < t->ncols; c++) {
        /* The last column is not padded: no trailing blanks. */
        if (c + 1 == t->ncols)
            fprintf(out, "%s\n", row[c]);
        else
            fprintf(out, "%-*s  ", (int)widths[c], row[c]);
    }
}

void cli_table_print(const struct cli_table *t, FILE *out)
{
    _cleanup_free_ size_t *widths = cb_xcalloc(t->ncols, sizeof(size_t));
    for (size_t c = 0; c < t->ncols; c++)
        widths[c] = column_width(t, c);
    print_row(t, t->headers, widths, out);
    for (size_t r = 0; r < t->nrows; r++)
        print_row(t, (const char *const *)&t->cells[r * t->ncols], widths, out);
}

void cli_table_free(struct cli_table *t)
{
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    t->cells = NULL;
    t->nrows = 0;
}

void cli_print_json(json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
}

static char *value_text(json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING: return cb_xstrdup(json_string_value(v));
    case JSON_INTEGER: return cb_xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
    case JSON_REAL: return cb_xasprintf("%.15g", json_real_value(v));
    case JSON_TRUE: return cb_xstrdup("true");
    case JSON_FALSE: return cb_xstrdup("false");
    case JSON_NULL: return cb_xstrdup("-");
    case JSON_OBJECT:
    case JSON_ARRAY: {
        char *s = json_dumps(v, JSON_COMPACT);
        return s ? s : cb_xstrdup("-");
    }
    }
    return cb_xstrdup("-");
}

char *cli_json_text(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return v ? value_text(v) : cb_xstrdup("-");
}

char *cli_json_time(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v))
        return cli_json_text(obj, key);
    /* Seconds since the epoch: show them as UTC, like the API's strings. */
    time_t t = (time_t)json_number_value(v);
    struct tm tm;
    char buf[32];
    if (!gmtime_r(&t, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
        return cli_json_text(obj, key);
    return cb_xstrdup(buf);
}

void cli_print_object(json_t *obj, FILE *out)
{
    size_t width = 0;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strlen(key) > width)
            width = strlen(key);
    }
    json_object_foreach(obj, key, v) {
        _cleanup_free_ char *text = value_text(v);
        _cleanup_free_ char *label = cb_xasprintf("%s:", key);
        fprintf(out, "%-*s %s\n", (int)width + 1, label, text);
    }
}
