/* fuzz_http.c — libFuzzer target for the HTTP request parser wrapper and the
 * router: the input is written as one client's bytes to a connection served
 * by http.c over a socketpair; every request that parses is routed against a
 * table shaped like the real one and answered.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc/lib -Isrc/daemon \
 *     tests/fuzz/fuzz_http.c src/daemon/http.c src/daemon/router.c \
 *     src/lib/util.c src/lib/error.c -luv -ljansson -lhttp_parser -o build/fuzz_http */
#include <fcntl.h>
#include <sys/socket.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void h(struct cb_http_req *req) { (void)req; }

static const struct cb_route table[] = {
    {"GET", "/v1/sandboxes/{id}", h, 0},
    {"POST", "/v1/sandboxes/{id}/exec", h, 0},
    {"GET", "/v1/sandboxes/{id}/processes/{pid}/output", h, 0},
    {"PUT", "/v1/sandboxes/{id}/files", h, CB_ROUTE_STREAM_BODY},
    {"GET", "/v1/sandboxes/{id}/ports/{port}/proxy/{path}", h, CB_ROUTE_TAIL},
};

static int sink(struct cb_http_req *req, const char *d, size_t n) { return 0; }
static void sink_end(struct cb_http_req *req) { cb_http_respond(req, 201, NULL, NULL, NULL, 0); }
/* Every handler must end its request, also when the client goes away. */
static void sink_abort(struct cb_http_req *req) { cb_http_stream_end(req); }

static enum cb_http_disposition on_headers(struct cb_http_req *req)
{
    int r = cb_router_match(table, sizeof(table) / sizeof(table[0]), req->method_name,
                            req->path, &req->match);
    if (r == 0 && (req->match.route->flags & CB_ROUTE_STREAM_BODY))
        return CB_HTTP_STREAM;
    return CB_HTTP_BUFFER;
}

static void on_request(struct cb_http_req *req)
{
    if (req->match.route && (req->match.route->flags & CB_ROUTE_STREAM_BODY)) {
        req->on_body = sink;
        req->on_body_end = sink_end;
        req->on_abort = sink_abort;
        return;
    }
    char *q = cb_http_query(req, "path");
    free(q);
    cb_http_header(req, "accept");
    cb_http_respond_json(req, req->match.route ? 200 : 404, json_pack("{s:i}", "n", (int)req->body_len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uv_loop_t loop;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return 0;
    uv_loop_init(&loop);
    struct cb_http_server srv;
    cb_http_server_init(&srv, &loop, NULL);
    srv.limits.max_body = 4096;
    srv.limits.max_header_bytes = 4096;
    srv.on_headers = on_headers;
    srv.on_request = on_request;
    cb_http_serve_fd(&srv, sv[0], false);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    size_t off = 0;
    char buf[65536];
    for (int i = 0; i < 64; i++) {
        if (off < size) {
            ssize_t w = write(sv[1], data + off, size - off);
            if (w > 0)
                off += (size_t)w;
        } else if (off == size) {
            shutdown(sv[1], SHUT_WR);
            off++;
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        while (read(sv[1], buf, sizeof(buf)) > 0)
            ;
    }
    close(sv[1]);
    cb_http_server_close(&srv);
    for (int i = 0; i < 8; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
    return 0;
}
