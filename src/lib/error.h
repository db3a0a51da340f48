/* error.h — the error object every fallible cellbox function fills.
 *
 * Convention (STYLE rule 2, after crun's error_handling.md): a fallible
 * function returns an int < 0 (or NULL) and, when err is non-NULL, stores a
 * newly allocated struct cb_error in *err. The caller owns it and releases it
 * with cb_error_free(). Context is added with cb_error_wrap() while the error
 * rises; nobody both logs and returns an error.
 *
 * The kind maps to an API error code and HTTP status, so the daemon can answer
 * with what the runtime said without guessing. Messages must never contain a
 * host path that the API caller should not learn (the daemon strips nothing:
 * write messages that are safe to show). */
#ifndef CB_ERROR_H
#define CB_ERROR_H

#include "util.h"

enum cb_error_kind {
    CB_ERR_INTERNAL = 0, /* 500 internal */
    CB_ERR_BAD_REQUEST,  /* 400 bad_request */
    CB_ERR_UNAUTHORIZED, /* 401 unauthorized */
    CB_ERR_NOT_FOUND,    /* 404 not_found */
    CB_ERR_CONFLICT,     /* 409 conflict */
    CB_ERR_TOO_LARGE,    /* 413 payload_too_large */
    CB_ERR_LIMIT,        /* 429 limit_exceeded */
    CB_ERR_UNAVAILABLE,  /* 503 unavailable */
};

struct cb_error {
    int code;                /* errno value, 0 when not from a syscall */
    enum cb_error_kind kind; /* what the API should answer */
    char *message;           /* human-readable, owned */
};

/* Create an error; returns -1 (or -code when code > 0) so callers can write
 * `return cb_error_set(err, errno, CB_ERR_INTERNAL, "open %s", name);`.
 * When code != 0 the message gets ": strerror(code)" appended. */
int cb_error_set(struct cb_error **err, int code, enum cb_error_kind kind,
                 const char *fmt, ...) CB_PRINTF(4, 5);
/* Prefix the message of an existing error with context ("create sb_x: ...").
 * Returns the same value as cb_error_set would. */
int cb_error_wrap(struct cb_error **err, const char *fmt, ...) CB_PRINTF(2, 3);
void cb_error_free(struct cb_error *e);
static inline void cb_error_freep(struct cb_error **e)
{
    if (*e)
        cb_error_free(*e);
}
#define _cleanup_error_ _cleanup_(cb_error_freep)

/* "not_found" etc., and the HTTP status. */
const char *cb_error_kind_code(enum cb_error_kind kind);
int cb_error_kind_status(enum cb_error_kind kind);

#endif
