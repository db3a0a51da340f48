/* ports.c — exposed ports (preview URLs): POST/GET/DELETE …/ports.
 *
 * A port record says that requests may be proxied to a port inside the
 * sandbox (proxy.c) and holds its access token: 32 bytes from getrandom(),
 * base64url without padding (43 characters, safe in URLs, headers and
 * cookies). Exposing an exposed port again is idempotent: it answers 200
 * with the existing record and token (only "public" is updated), so a client
 * that retries never invalidates links it already handed out. Unexposing
 * deletes the record — the token stops working at once — and closes
 * proxied connections that are open through that port. */
#include <string.h>
#include <sys/random.h>

#include "api.h"
#include "log.h"
#include "proxy.h"

#define TOKEN_BYTES 32

static void random_token(char out[64])
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t raw[TOKEN_BYTES + 1] = {0};
    size_t got = 0;
    while (got < TOKEN_BYTES) {
        ssize_t n = getrandom(raw + got, TOKEN_BYTES - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            abort(); /* no entropy means no safe token: never fall back */
        got += (size_t)n;
    }
    size_t o = 0;
    /* base64url of 33 bytes (the last one zero) = 44 chars; 32 bytes need
     * only 43, so the final character (carrying the padding bits) is cut. */
    for (size_t i = 0; i < TOKEN_BYTES; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 |
                     (i + 2 < sizeof(raw) ? raw[i + 2] : 0);
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    out[43] = 0;
    explicit_bzero(raw, sizeof(raw));
}

static json_t *port_json(struct cb_daemon *d, const struct cb_port_record *r)
{
    _cleanup_free_ char *url = cb_proxy_url(d, r->sandbox_id, r->port);
    _cleanup_free_ char *path_url =
        cb_xasprintf("/v1/sandboxes/%s/ports/%u/proxy/", r->sandbox_id, (unsigned)r->port);
    return json_pack("{s:i,s:b,s:s,s:s,s:s,s:f}", "port", (int)r->port, "public",
                     r->is_public, "url", url, "path_url", path_url, "token", r->token,
                     "created_at", r->created_at);
}

/* Port number from JSON or a path capture: 1..65535, nothing else. */
static bool parse_port_text(const char *s, uint16_t *out)
{
    if (!s || !*s || strlen(s) > 5 || s[0] == '0')
        return false;
    unsigned v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v < 1 || v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static int body_port(json_t *body, uint16_t *port, bool *is_public, struct cb_error **err)
{
    json_t *p = json_object_get(body, "port");
    if (!json_is_integer(p) || json_integer_value(p) < 1 || json_integer_value(p) > 65535)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "port must be an integer 1..65535");
    *port = (uint16_t)json_integer_value(p);
    json_t *pub = json_object_get(body, "public");
    if (pub && !json_is_boolean(pub))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "public must be a boolean");
    *is_public = pub && json_is_true(pub);
    return 0;
}

/* Already exposed: update "public" if it changed, answer 200 with the
 * record as it now is (same token). */
static void reexpose(struct cb_http_req *req, struct cb_port_record *old, bool is_public)
{
    struct cb_daemon *d = cb_req_daemon(req);
    struct cb_error *err = NULL;
    if (old->is_public != is_public &&
        cb_store_port_set_public(d->store, old->sandbox_id, old->port, is_public, &err) < 0) {
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        return;
    }
    old->is_public = is_public;
    cb_http_respond_json(req, 200, port_json(d, old));
}

void cb_api_port_expose(struct cb_http_req *req)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return;
    json_t *body = cb_api_body(req, false);
    if (!body)
        return;
    struct cb_daemon *d = cb_req_daemon(req);
    struct cb_error *err = NULL;
    uint16_t port = 0;
    bool is_public = false;
    int r = body_port(body, &port, &is_public, &err);
    json_decref(body);
    if (r < 0) {
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        return;
    }
    cb_sbx_touch(s);
    struct cb_port_record old = {0};
    if (cb_store_port_get(d->store, s->rec.id, port, &old) == 1) {
        reexpose(req, &old, is_public);
        cb_port_record_clear(&old);
        return;
    }
    char token[64];
    random_token(token);
    struct cb_port_record rec = {.sandbox_id = s->rec.id, .port = port,
                                 .is_public = is_public, .token = token,
                                 .created_at = cb_wall_time()};
    if (cb_store_port_insert(d->store, &rec, &err) < 0) {
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        return;
    }
    cb_log_info(s->rec.id, "port %u exposed%s", (unsigned)port, is_public ? " (public)" : "");
    cb_http_respond_json(req, 201, port_json(d, &rec));
    explicit_bzero(token, sizeof(token));
}

void cb_api_port_list(struct cb_http_req *req)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return;
    struct cb_daemon *d = cb_req_daemon(req);
    struct cb_port_record *items = NULL;
    size_t n = 0;
    struct cb_error *err = NULL;
    if (cb_store_port_list(d->store, s->rec.id, &items, &n, &err) < 0) {
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, port_json(d, &items[i]));
    cb_port_records_free(items, n);
    cb_http_respond_json(req, 200, json_pack("{s:o}", "items", arr));
}

void cb_api_port_unexpose(struct cb_http_req *req)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return;
    struct cb_daemon *d = cb_req_daemon(req);
    uint16_t port = 0;
    if (!parse_port_text(cb_route_param(&req->match, "port"), &port)) {
        cb_http_respond_error(req, CB_ERR_BAD_REQUEST, "port must be 1..65535");
        return;
    }
    struct cb_error *err = NULL;
    int r = cb_store_port_delete(d->store, s->rec.id, port, &err);
    if (r < 0) {
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        return;
    }
    if (r == 0) {
        cb_http_respond_error(req, CB_ERR_NOT_FOUND, "port %u is not exposed",
                              (unsigned)port);
        return;
    }
    /* The record is gone, so new requests are refused; connections already
     * open through this port were authorised by the revoked token: end them. */
    cb_proxy_close_port(d, s->rec.id, port);
    cb_log_info(s->rec.id, "port %u unexposed", (unsigned)port);
    cb_http_respond_json(req, 204, NULL);
}
