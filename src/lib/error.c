#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        abort();
    return s;
}

int cb_error_set(struct cb_error **err, int code, enum cb_error_kind kind,
                 const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        char *msg = vformat(fmt, ap);
        va_end(ap);
        if (code > 0) {
            char *full = cb_xasprintf("%s: %s", msg, strerror(code));
            free(msg);
            msg = full;
        }
        if (*err)
            cb_error_free(*err);
        struct cb_error *e = cb_xcalloc(1, sizeof(*e));
        e->code = code;
        e->kind = kind;
        e->message = msg;
        *err = e;
    }
    return code > 0 ? -code : -1;
}

int cb_error_wrap(struct cb_error **err, const char *fmt, ...)
{
    if (!err || !*err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    char *ctx = vformat(fmt, ap);
    va_end(ap);
    char *full = cb_xasprintf("%s: %s", ctx, (*err)->message);
    free(ctx);
    free((*err)->message);
    (*err)->message = full;
    return (*err)->code > 0 ? -(*err)->code : -1;
}

void cb_error_free(struct cb_error *e)
{
    if (!e)
        return;
    free(e->message);
    free(e);
}

static const struct {
    const char *code;
    int status;
} kinds[] = {
    [CB_ERR_INTERNAL] = {"internal", 500},
    [CB_ERR_BAD_REQUEST] = {"bad_request", 400},
    [CB_ERR_UNAUTHORIZED] = {"unauthorized", 401},
    [CB_ERR_NOT_FOUND] = {"not_found", 404},
    [CB_ERR_CONFLICT] = {"conflict", 409},
    [CB_ERR_TOO_LARGE] = {"payload_too_large", 413},
    [CB_ERR_LIMIT] = {"limit_exceeded", 429},
    [CB_ERR_UNAVAILABLE] = {"unavailable", 503},
};

const char *cb_error_kind_code(enum cb_error_kind kind)
{
    if ((size_t)kind >= CB_ARRAY_SIZE(kinds))
        return "internal";
    return kinds[kind].code;
}

int cb_error_kind_status(enum cb_error_kind kind)
{
    if ((size_t)kind >= CB_ARRAY_SIZE(kinds))
        return 500;
    return kinds[kind].status;
}
