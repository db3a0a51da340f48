#include "router.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *cb_url_decode(const char *s, size_t len, int plus_is_space, size_t max)
{
    if (len > max * 3)
        return NULL;
    char *out = cb_xmalloc(len + 1);
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= len)
                goto bad;
            int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
            if (hi < 0 || lo < 0)
                goto bad;
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c == '\0')
            goto bad;
        out[o++] = c;
    }
    if (o > max)
        goto bad;
    out[o] = 0;
    return out;
bad:
    free(out);
    return NULL;
}

/* Next segment of a path: [*start, *start+len). Returns false at the end. */
static bool next_segment(const char **p, const char **seg, size_t *len)
{
    if (**p != '/')
        return false;
    (*p)++;
    *seg = *p;
    while (**p && **p != '/')
        (*p)++;
    *len = (size_t)(*p - *seg);
    return true;
}

/* Match one pattern; values are filled only on success. */
static bool match_pattern(const struct cb_route *r, const char *path,
                          struct cb_route_match *m)
{
    const char *pp = r->pattern, *xp = path;
    const char *pseg, *xseg;
    size_t plen, xlen;
    int n = 0;
    while (next_segment(&pp, &pseg, &plen)) {
        if (!next_segment(&xp, &xseg, &xlen))
            goto fail;
        if (plen >= 2 && pseg[0] == '{' && pseg[plen - 1] == '}') {
            bool tail = (r->flags & CB_ROUTE_TAIL) && *pp == '\0';
            if (tail) {
                xlen = strlen(xseg); /* the rest of the path, slashes kept */
                xp = xseg + xlen;
            }
            if (n >= CB_ROUTE_MAX_PARAMS || plen - 2 >= sizeof(m->names[0]) ||
                (xlen == 0 && !tail))
                goto fail;
            char *v = cb_url_decode(xseg, xlen, 0, CB_ROUTE_MAX_VALUE);
            if (!v || (!tail && strchr(v, '/'))) {
                free(v);
                goto fail;
            }
            memcpy(m->names[n], pseg + 1, plen - 2);
            m->names[n][plen - 2] = 0;
            m->values[n++] = v;
        } else if (plen != xlen || memcmp(pseg, xseg, plen) != 0) {
            goto fail;
        }
    }
    if (*xp != '\0')
        goto fail;
    m->nparams = n;
    m->route = r;
    return true;
fail:
    for (int i = 0; i < n; i++) {
        free(m->values[i]);
        m->values[i] = NULL;
    }
    return false;
}

int cb_router_match(const struct cb_route *table, size_t n, const char *method,
                    const char *path, struct cb_route_match *m)
{
    memset(m, 0, sizeof(*m));
    bool path_known = false;
    for (size_t i = 0; i < n; i++) {
        struct cb_route_match tmp;
        memset(&tmp, 0, sizeof(tmp));
        if (!match_pattern(&table[i], path, &tmp))
            continue;
        if (strcmp(table[i].method, method) == 0) {
            *m = tmp;
            return 0;
        }
        cb_route_match_clear(&tmp);
        size_t used = strlen(m->allow);
        if (!strstr(m->allow, table[i].method) &&
            used + strlen(table[i].method) + 3 < sizeof(m->allow))
            snprintf(m->allow + used, sizeof(m->allow) - used, "%s%s",
                     used ? ", " : "", table[i].method);
        path_known = true;
    }
    return path_known ? CB_ROUTE_BAD_METHOD : CB_ROUTE_NOT_FOUND;
}

void cb_route_match_clear(struct cb_route_match *m)
{
    for (int i = 0; i < CB_ROUTE_MAX_PARAMS; i++) {
        free(m->values[i]);
        m->values[i] = NULL;
    }
    m->nparams = 0;
    m->route = NULL;
}

const char *cb_route_param(const struct cb_route_match *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->names[i], name) == 0)
            return m->values[i];
    return NULL;
}
