/* routes.c — the route table of API v1 and the request entry points:
 * routing, authentication, tenant scoping, metrics. */
#include <string.h>
#include <strings.h>

#include "api/api.h"
#include "log.h"
#include "metrics.h"
#include "proxy.h"

#define U cb_api_unavailable
#define SB "/v1/sandboxes/{id}"

const struct cb_route cb_routes[] = {
    {"GET", "/healthz", cb_api_healthz, CB_ROUTE_PUBLIC},
    {"GET", "/v1/info", cb_api_info, 0},
    {"GET", "/metrics", cb_api_metrics, 0},

    {"POST", "/v1/sandboxes", cb_api_sandbox_create, 0},
    {"GET", "/v1/sandboxes", cb_api_sandbox_list, 0},
    {"GET", SB, cb_api_sandbox_get, 0},
    {"DELETE", SB, cb_api_sandbox_delete, 0},
    {"PATCH", SB, cb_api_sandbox_patch, 0},
    {"POST", SB "/stop", cb_api_sandbox_stop, 0},
    {"POST", SB "/start", cb_api_sandbox_start, 0},
    {"POST", SB "/pause", cb_api_sandbox_pause, 0},
    {"POST", SB "/resume", cb_api_sandbox_resume, 0},
    {"POST", SB "/keepalive", cb_api_sandbox_keepalive, 0},
    {"POST", SB "/standby", U, 0},
    {"POST", SB "/fork", U, 0},

    {"POST", SB "/exec", cb_api_exec, CB_ROUTE_LARGE_BODY},
    {"POST", SB "/processes", cb_api_process_start, CB_ROUTE_LARGE_BODY},
    {"GET", SB "/processes", cb_api_process_list, 0},
    {"GET", SB "/processes/{pid}", cb_api_process_get, 0},
    {"DELETE", SB "/processes/{pid}", cb_api_process_kill, 0},
    {"POST", SB "/processes/{pid}/signal", cb_api_process_signal, 0},
    {"POST", SB "/processes/{pid}/stdin", cb_api_process_stdin, 0},
    {"GET", SB "/processes/{pid}/output", cb_api_process_output, 0},
    {"GET", SB "/processes/{pid}/wait", cb_api_process_wait, 0},

    {"POST", SB "/ptys", cb_api_pty_create, 0},
    {"GET", SB "/ptys", cb_api_pty_list, 0},
    {"DELETE", SB "/ptys/{pty_id}", cb_api_pty_delete, 0},
    {"GET", SB "/ptys/{pty_id}/ws", cb_api_pty_ws, 0},

    {"GET", SB "/files", cb_api_files_read, 0},
    {"PUT", SB "/files", cb_api_files_write, CB_ROUTE_STREAM_BODY},
    {"DELETE", SB "/files", cb_api_files_delete, 0},
    {"GET", SB "/files/stat", cb_api_files_stat, 0},
    {"GET", SB "/files/list", cb_api_files_list, 0},
    {"POST", SB "/files/mkdir", cb_api_files_mkdir, 0},
    {"POST", SB "/files/move", cb_api_files_move, 0},
    {"GET", SB "/files/watch", cb_api_files_watch, 0},
    {"PUT", SB "/archive", cb_api_archive_put, CB_ROUTE_STREAM_BODY},
    {"GET", SB "/archive", cb_api_archive_get, 0},

    {"POST", SB "/ports", cb_api_port_expose, 0},
    {"GET", SB "/ports", cb_api_port_list, 0},
    {"DELETE", SB "/ports/{port}", cb_api_port_unexpose, 0},
    /* Documentation rows: cb_api_on_headers sends every proxy request (any
     * method) to the proxy before this table is consulted. */
#define PROXY_ROUTE CB_ROUTE_TAIL | CB_ROUTE_PUBLIC | CB_ROUTE_STREAM_BODY
    {"GET", SB "/ports/{port}/proxy/{path}", cb_proxy_handle, PROXY_ROUTE},
    {"POST", SB "/ports/{port}/proxy/{path}", cb_proxy_handle, PROXY_ROUTE},
    {"PUT", SB "/ports/{port}/proxy/{path}", cb_proxy_handle, PROXY_ROUTE},
    {"PATCH", SB "/ports/{port}/proxy/{path}", cb_proxy_handle, PROXY_ROUTE},
    {"DELETE", SB "/ports/{port}/proxy/{path}", cb_proxy_handle, PROXY_ROUTE},
#undef PROXY_ROUTE

    {"POST", SB "/snapshots", U, 0},
    {"GET", "/v1/snapshots", U, 0},
    {"DELETE", "/v1/snapshots/{snapshot_id}", U, 0},
    {"GET", "/v1/templates", cb_api_templates_list, 0},
    {"POST", "/v1/templates", U, 0},
    {"POST", "/v1/templates/import", U, 0},
    {"POST", "/v1/templates/build", U, 0},

    {"POST", "/v1/admin/keys", cb_api_keys_create, CB_ROUTE_ADMIN},
    {"GET", "/v1/admin/keys", cb_api_keys_list, CB_ROUTE_ADMIN},
    {"DELETE", "/v1/admin/keys/{key_id}", cb_api_keys_delete, CB_ROUTE_ADMIN},
};
const size_t cb_nroutes = CB_ARRAY_SIZE(cb_routes);

/* Who is calling? The unix socket is guarded by its file mode (root only),
 * so whoever reaches it is the admin. On TCP only a known key counts; the
 * key is compared by its SHA-256 (the database never holds keys). */
static int authenticate(struct cb_http_req *req)
{
    if (!req->via_tcp) {
        req->tenant = cb_xstrdup("admin");
        req->is_admin = true;
        return 0;
    }
    const char *auth = cb_http_header(req, "authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return -1;
    const char *key = auth + 7;
    while (*key == ' ')
        key++;
    if (!*key || strlen(key) > 256)
        return -1;
    char hash[65];
    cb_api_key_hash(key, hash);
    char *tenant = NULL;
    if (cb_store_key_lookup(cb_req_daemon(req)->store, hash, &tenant) != 1)
        return -1;
    req->tenant = tenant;
    req->is_admin = strcmp(tenant, "admin") == 0;
    return 0;
}

enum cb_http_disposition cb_api_on_headers(struct cb_http_req *req)
{
    /* Preview traffic (Host form on TCP, path form anywhere) goes to the
     * proxy before API-key authentication: the proxy applies the port's
     * token rules, and an API key (checked here, failure ignored) is only
     * one way in. Bodies stream through, never buffered. */
    if (cb_proxy_wants(req)) {
        req->match.route = &cb_proxy_route;
        authenticate(req);
        return CB_HTTP_STREAM;
    }
    int r = cb_router_match(cb_routes, cb_nroutes, req->method_name, req->path,
                            &req->match);
    /* Only a caller we know may send a large body: an unknown one keeps the
     * small cap and is answered 401 (or 413) without us holding 96 MiB. */
    if (r == 0 && (req->match.route->flags & CB_ROUTE_LARGE_BODY) &&
        cb_req_daemon(req)->cfg.max_body < CB_LARGE_BODY_MAX && authenticate(req) == 0)
        req->max_body = CB_LARGE_BODY_MAX;
    if (r < 0 || !(req->match.route->flags & CB_ROUTE_STREAM_BODY))
        return CB_HTTP_BUFFER; /* answered in on_request, after the body */
    if (authenticate(req) < 0)
        return CB_HTTP_BUFFER;
    return CB_HTTP_STREAM;
}

void cb_api_on_request(struct cb_http_req *req)
{
    if (!req->match.route) {
        cb_route_match_clear(&req->match);
        int r = cb_router_match(cb_routes, cb_nroutes, req->method_name, req->path,
                                &req->match);
        if (r == CB_ROUTE_BAD_METHOD) {
            char allow[96];
            snprintf(allow, sizeof(allow), "Allow: %s\r\n", req->match.allow);
            cb_http_respond_status(req, 405, "bad_request", "method not allowed", allow);
            return;
        }
        if (r < 0) {
            cb_http_respond_error(req, CB_ERR_NOT_FOUND, "no such route");
            return;
        }
    }
    unsigned flags = req->match.route->flags;
    if (!(flags & CB_ROUTE_PUBLIC) && !req->tenant && authenticate(req) < 0) {
        cb_http_respond_status(req, 401, "unauthorized", "missing or unknown API key",
                               "WWW-Authenticate: Bearer\r\n");
        return;
    }
    if ((flags & CB_ROUTE_ADMIN) && !req->is_admin) {
        cb_http_respond_error(req, CB_ERR_UNAUTHORIZED, "admin key required");
        return;
    }
    req->match.route->handler(req);
}

void cb_api_on_done(struct cb_http_req *req)
{
    struct cb_daemon *d = cb_req_daemon(req);
    double secs = (double)(cb_now_ns() - req->started_ns) / 1e9;
    const char *route = req->match.route ? req->match.route->pattern : "unmatched";
    cb_metrics_request(d->metrics, route, req->status, secs);
    enum cb_log_level lvl = req->status >= 500 ? CB_LOG_WARN : CB_LOG_DEBUG;
    cb_log(lvl, cb_route_param(&req->match, "id"), "%s %s -> %d (%.1f ms)",
           req->method_name, route, req->status, secs * 1e3);
}
