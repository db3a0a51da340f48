/* initreq.c — what the API files share when they relay a request to a
 * sandbox's cellbox-init: sending a built frame, parsing a pid from the
 * route, and turning init's ERROR reply into an HTTP error. */
#include <errno.h>
#include <stdlib.h>

#include "api.h"

bool cb_api_parse_pid(const char *s, uint32_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v == 0 || v > 0x7fffffff)
        return false;
    *out = (uint32_t)v;
    return true;
}

int cb_api_init_send(struct cb_initc *c, struct cb_builder *b, bool multi,
                     cb_initc_reply_cb cb, void *arg)
{
    int r = cb_builder_finish(b) == 0 ? cb_initc_send(c, b, multi, 0, cb, arg) : -EMSGSIZE;
    cb_builder_free(b);
    return r;
}

int cb_api_send_list(struct cb_initc *c, cb_initc_reply_cb cb, void *arg)
{
    if (!c)
        return -EPIPE;
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_LIST, cb_initc_next_id(c));
    return cb_api_init_send(c, &b, false, cb, arg);
}

void cb_api_for_each_proc(const uint8_t *p, size_t len, cb_api_proc_fn fn, void *arg)
{
    size_t off = 0;
    struct cb_field_view f;
    while (cb_proto_next_field(p, len, &off, &f) > 0)
        if (f.tag == CB_F_PROC)
            fn(f.value, f.len, arg);
}

void cb_api_respond_init_error(struct cb_http_req *req, const struct cb_frame_header *h,
                               const uint8_t *p, size_t len, const char *not_found)
{
    if (!h) {
        cb_http_respond_error(req, CB_ERR_CONFLICT, "sandbox stopped");
        return;
    }
    struct cb_field_view f;
    uint32_t e = 0;
    if (cb_proto_find(p, len, CB_F_ERRNO, &f) == 1)
        cb_field_u32(&f, &e);
    _cleanup_free_ char *msg = cb_proto_find(p, len, CB_F_MESSAGE, &f) == 1
                                   ? cb_field_strdup(&f) : NULL;
    if (e == ESRCH)
        cb_http_respond_error(req, CB_ERR_NOT_FOUND, "%s", not_found);
    else if (e == EPIPE)
        cb_http_respond_error(req, CB_ERR_CONFLICT, "%s", msg ? msg : "process input closed");
    else
        cb_http_respond_error(req, CB_ERR_BAD_REQUEST, "%s",
                              msg ? msg : "init refused the request");
}
