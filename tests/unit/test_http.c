/* test_http.c — the HTTP/1.1 server wrapper over a socketpair: keep-alive,
 * pipelining, chunked bodies, streamed bodies, and the limits. */
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include "http.h"
#include "runner.h"

/* Echo handler: "<METHOD> <path> <body_len> <q=value of ?q>" */
static void on_request(struct cb_http_req *req)
{
    char *q = cb_http_query(req, "q");
    char *text = cb_xasprintf("%s %s %zu %s", req->method_name, req->path, req->body_len,
                              q ? q : "-");
    free(q);
    cb_http_respond(req, 200, "text/plain", NULL, text, strlen(text));
    free(text);
}

static enum cb_http_disposition on_headers(struct cb_http_req *req)
{
    return CB_HTTP_BUFFER;
}

static int setup(struct cb_http_server *srv, uv_loop_t *loop)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        FAIL("socketpair");
    uv_loop_init(loop);
    cb_http_server_init(srv, loop, NULL);
    srv->limits.max_body = 1000;
    srv->limits.max_header_bytes = 2000;
    srv->limits.max_headers = 10;
    srv->on_headers = on_headers;
    srv->on_request = on_request;
    ASSERT_EQ(cb_http_serve_fd(srv, sv[0], false), 0);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    return sv[1];
}

/* Send, then run the loop until `want` responses (counted by status lines)
 * arrived or the peer closed; returns everything read. */
static char *exchange(uv_loop_t *loop, int fd, const char *data, size_t len, int want)
{
    if (len && write(fd, data, len) != (ssize_t)len)
        FAIL("write");
    size_t cap = 1 << 20, n = 0;
    char *buf = cb_xcalloc(1, cap + 1);
    for (int rounds = 0; rounds < 2000; rounds++) {
        uv_run(loop, UV_RUN_NOWAIT);
        ssize_t r = read(fd, buf + n, cap - n);
        if (r == 0)
            break;
        if (r > 0) {
            n += (size_t)r;
            buf[n] = 0;
            int got = 0;
            for (char *p = buf; (p = strstr(p, "HTTP/1.1 ")); p++)
                got++;
            if (got >= want && strstr(buf, "\r\n\r\n"))
                break;
        } else {
            poll(NULL, 0, 1);
        }
    }
    return buf;
}

TEST(http_simple_and_keepalive)
{
    struct cb_http_server srv;
    uv_loop_t loop;
    int fd = setup(&srv, &loop);
    const char *r1 = "GET /a?q=x%20y HTTP/1.1\r\nHost: h\r\n\r\n";
    char *r = exchange(&loop, fd, r1, strlen(r1), 1);
    ASSERT(strstr(r, "HTTP/1.1 200 OK") != NULL);
    ASSERT(strstr(r, "Connection: keep-alive") != NULL);
    ASSERT(strstr(r, "GET /a 0 x y") != NULL);
    free(r);
    const char *r2 = "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    r = exchange(&loop, fd, r2, strlen(r2), 1);
    ASSERT(strstr(r, "POST /b 3 -") != NULL);
    free(r);
}

TEST(http_pipelining_in_order)
{
    struct cb_http_server srv;
    uv_loop_t loop;
    int fd = setup(&srv, &loop);
    const char *req = "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n";
    char *r = exchange(&loop, fd, req, strlen(req), 3);
    char *a = strstr(r, "GET /1"), *b = strstr(r, "GET /2"), *c = strstr(r, "GET /3");
    ASSERT(a && b && c && a < b && b < c);
    free(r);
}

TEST(http_chunked_body)
{
    struct cb_http_server srv;
    uv_loop_t loop;
    int fd = setup(&srv, &loop);
    const char *req = "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    char *r = exchange(&loop, fd, req, strlen(req), 1);
    ASSERT(strstr(r, "POST /c 11 -") != NULL);
    free(r);
}

TEST(http_body_too_large_413)
{
    struct cb_http_server srv;
    uv_loop_t loop;
    int fd = setup(&srv, &loop);
    const char *req = "POST /big HTTP/1.1\r\nContent-Length: 5000\r\n\r\n";
    char *r = exchange(&loop, fd, req, strlen(req), 1);
    ASSERT(strncmp(r, "HTTP/1.1 413", 12) == 0);
    ASSERT(strstr(r, "Connection: close") != NULL);
    free(r);
}

TEST(http_chunked_too_large_413)
{
    struct cb_http_server srv;
    uv_loop_t loop;
    int fd = setup(&srv, &loop);
    char req[4096];
    int n = snprintf(req, sizeof(req), "POST /big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "200\r\n%0512d\r\n", 0);
    char *r = exchange(&loop, fd, req, (size_t)n, 1);
    ASSERT(strncmp(r, "HTTP/1.1 413", 12) == 0);
    free(r);
}

TEST(http_headers_too_large_431)
{
    struct cb_http_server srv;
    uv_loop_t loop;
    int fd = setup(&srv, &loop);
    char req[8192];
    int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nX-A: %03000d\r\n\r\n", 0);
    char *r = exchange(&loop, fd, req, (size_t)n, 1);
    ASSERT(strncmp(r, "HTTP/1.1 431", 12) == 0);
    free(r);
}

TEST(http_too_many_headers_431)
{
    struct cb_http_server srv;
    uv_loop_t loop;
    int fd = setup(&srv, &loop);
    char req[4096];
    int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 20; i++)
        n += snprintf(req + n, sizeof(req) - (size_t)n, "X-%d: v\r\n", i);
    n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
    char *r = exchange(&loop, fd, req, (size_t)n, 1);
    ASSERT(strncmp(r, "HTTP/1.1 431", 12) == 0);
    free(r);
}

TEST(http_malformed_400)
{
    struct cb_http_server srv;
    uv_loop_t loop;
    int fd = setup(&srv, &loop);
    const char *req = "GARBAGE\r\n\r\n";
    char *r = exchange(&loop, fd, req, strlen(req), 1);
    ASSERT(strncmp(r, "HTTP/1.1 400", 12) == 0);
    free(r);
}

TEST(http_connection_close_honoured)
{
    struct cb_http_server srv;
    uv_loop_t loop;
    int fd = setup(&srv, &loop);
    const char *req = "GET /x HTTP/1.1\r\nConnection: close\r\n\r\nGET /y HTTP/1.1\r\n\r\n";
    char *r = exchange(&loop, fd, req, strlen(req), 2);
    ASSERT(strstr(r, "GET /x") != NULL);
    ASSERT(strstr(r, "GET /y") == NULL);
    ASSERT(strstr(r, "Connection: close") != NULL);
    free(r);
}
