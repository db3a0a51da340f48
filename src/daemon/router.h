/* router.h — matching "METHOD /path" against a table of route patterns.
 *
 * Patterns are literal segments and {name} captures ("/v1/sandboxes/{id}").
 * A route flagged CB_ROUTE_TAIL lets its last capture take the rest of the
 * path, slashes included (proxy routes). Captured values are
 * percent-decoded, capped at CB_ROUTE_MAX_VALUE bytes and must not contain
 * NUL or '/'; anything else does not match. The table is data (STYLE rule
 * 10): main prints it (--print-routes) and a test compares it with
 * api/openapi.yaml. This module is pure, so it can be fuzzed. */
#ifndef CB_DAEMON_ROUTER_H
#define CB_DAEMON_ROUTER_H

#include <stddef.h>

#define CB_ROUTE_MAX_PARAMS 4
#define CB_ROUTE_MAX_VALUE 4096

struct cb_http_req;
typedef void (*cb_route_handler)(struct cb_http_req *req);

enum cb_route_flags {
    CB_ROUTE_PUBLIC = 1,      /* no authentication (healthz) */
    CB_ROUTE_ADMIN = 2,       /* admin tenant only */
    CB_ROUTE_STREAM_BODY = 4, /* handler runs at end of headers and consumes
                                 the body as it arrives (uploads) */
    CB_ROUTE_TAIL = 8,
    CB_ROUTE_LARGE_BODY = 16, /* buffered body up to CB_LARGE_BODY_MAX: commands
                                 carry their stdin inline */
};

/* Exec and process-start bodies hold the command's stdin (base64 in JSON),
 * so they may be far larger than other JSON bodies. Still capped: the body,
 * its parse and the decoded stdin are all in memory at once. */
#define CB_LARGE_BODY_MAX ((uint64_t)96 << 20)

struct cb_route {
    const char *method;  /* "GET", "POST", ... */
    const char *pattern; /* "/v1/sandboxes/{id}" */
    cb_route_handler handler;
    unsigned flags;
};

struct cb_route_match {
    const struct cb_route *route;
    int nparams;
    char names[CB_ROUTE_MAX_PARAMS][32];
    char *values[CB_ROUTE_MAX_PARAMS]; /* malloc'd, decoded */
    char allow[64];                    /* for 405: "GET, POST" */
};

enum { CB_ROUTE_NOT_FOUND = -404, CB_ROUTE_BAD_METHOD = -405 };

/* 0 and *m filled on a match; CB_ROUTE_NOT_FOUND or CB_ROUTE_BAD_METHOD
 * (m->allow filled). path excludes the query string. Clear m afterwards. */
int cb_router_match(const struct cb_route *table, size_t n, const char *method,
                    const char *path, struct cb_route_match *m);
void cb_route_match_clear(struct cb_route_match *m);
/* The value of capture `name`, or NULL. */
const char *cb_route_param(const struct cb_route_match *m, const char *name);

/* Percent-decode len bytes of s (plus_is_space for query strings). NULL on
 * a bad escape, on NUL in the result, or when the result would pass max. */
char *cb_url_decode(const char *s, size_t len, int plus_is_space, size_t max);

#endif
