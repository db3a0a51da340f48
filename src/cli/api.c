/* api.c — JSON requests to cellboxd and the mapping of its error answers. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* The API's error codes (API.md "Conventions") back to error kinds, so the
 * CLI and its callers can tell a missing sandbox from a refused key. */
static const struct {
    const char *code;
    enum cb_error_kind kind;
} code_kinds[] = {
    {"bad_request", CB_ERR_BAD_REQUEST},   {"unauthorized", CB_ERR_UNAUTHORIZED},
    {"not_found", CB_ERR_NOT_FOUND},       {"conflict", CB_ERR_CONFLICT},
    {"payload_too_large", CB_ERR_TOO_LARGE}, {"limit_exceeded", CB_ERR_LIMIT},
    {"unavailable", CB_ERR_UNAVAILABLE},   {"internal", CB_ERR_INTERNAL},
};

static enum cb_error_kind kind_from_status(int status)
{
    switch (status) {
    case 400: return CB_ERR_BAD_REQUEST;
    case 401: return CB_ERR_UNAUTHORIZED;
    case 404: return CB_ERR_NOT_FOUND;
    case 409: return CB_ERR_CONFLICT;
    case 413: return CB_ERR_TOO_LARGE;
    case 429: return CB_ERR_LIMIT;
    case 503: return CB_ERR_UNAVAILABLE;
    default: return CB_ERR_INTERNAL;
    }
}

int cli_api_error_from_response(const struct http_response *resp, struct cb_error **err)
{
    enum cb_error_kind kind = kind_from_status(resp->status);
    json_t *root = resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    json_t *error = json_object_get(root, "error");
    const char *code = json_string_value(json_object_get(error, "code"));
    const char *message = json_string_value(json_object_get(error, "message"));
    for (size_t i = 0; code && i < CB_ARRAY_SIZE(code_kinds); i++)
        if (strcmp(code, code_kinds[i].code) == 0)
            kind = code_kinds[i].kind;
    int rc;
    if (message)
        rc = cb_error_set(err, 0, kind, "%s", message);
    else
        rc = cb_error_set(err, 0, kind, "HTTP %d from cellboxd", resp->status);
    json_decref(root);
    return rc;
}

json_t *cli_api_json(const struct cli_ctx *ctx, const char *method, const char *target,
                     json_t *body, struct cb_error **err)
{
    _cleanup_free_ char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct http_request req = {
        .interrupt_fd = -1,
        .method = method,
        .target = target,
        .content_type = payload ? "application/json" : NULL,
        .body = payload,
        .body_len = payload ? strlen(payload) : 0,
    };
    struct http_response resp;
    if (cli_http_do(&ctx->ep, &req, &resp, err) < 0)
        return NULL;
    json_t *out = NULL;
    if (resp.status < 200 || resp.status >= 300) {
        cli_api_error_from_response(&resp, err);
    } else if (resp.body_len == 0) {
        out = json_null();
    } else {
        json_error_t jerr;
        out = json_loadb(resp.body, resp.body_len, JSON_DECODE_ANY, &jerr);
        if (!out)
            cb_error_set(err, 0, CB_ERR_INTERNAL, "invalid JSON from cellboxd: %s", jerr.text);
    }
    cli_http_response_clear(&resp);
    return out;
}

int cli_report(struct cb_error *err)
{
    fprintf(stderr, "cellbox: %s\n", err && err->message ? err->message : "unknown error");
    return CLI_EXIT_ERROR;
}

char *cli_sandbox_path(const char *id, const char *suffix)
{
    _cleanup_free_ char *enc = cli_url_encode(id);
    /* The query encoder keeps '/', but inside a path segment it would let a
     * name like "../admin" address another route: encode it too. */
    size_t slashes = 0;
    for (const char *p = enc; *p; p++)
        slashes += *p == '/';
    _cleanup_free_ char *seg = cb_xmalloc(strlen(enc) + 2 * slashes + 1);
    char *o = seg;
    for (const char *p = enc; *p; p++) {
        if (*p == '/') {
            memcpy(o, "%2F", 3);
            o += 3;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return cb_xasprintf("/v1/sandboxes/%s%s", seg, suffix ? suffix : "");
}

int cli_list(const struct cli_ctx *ctx, const char *target, void (*print_table)(json_t *items))
{
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *r = cli_api_json(ctx, "GET", target, NULL, &err);
    if (!r)
        return cli_report(err);
    if (ctx->json)
        cli_print_json(r);
    else
        print_table(json_is_array(r) ? r : json_object_get(r, "items"));
    json_decref(r);
    return CLI_EXIT_OK;
}
