#include "http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define READ_CHUNK 65536
#define READ_AHEAD_MAX (256 * 1024) /* bytes buffered ahead of the parser */

struct cb_http_listener {
    union cb_stream_handle h;
    struct cb_http_server *srv;
    bool via_tcp;
    struct cb_http_listener *next;
};

struct cb_http_conn {
    union cb_stream_handle h;
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    struct cb_http_server *srv;
    http_parser parser;
    bool via_tcp;
    char *rbuf; /* bytes read, not yet parsed */
    size_t rlen;
    struct cb_http_req *req; /* being parsed or in flight */
    size_t header_bytes;
    bool last_was_value;
    bool paused, reading, closing, close_after, rejected, in_execute;
    int open_handles;
    uint64_t last_activity_ns;
    struct cb_http_conn *next, *prev;
    char alloc_buf[READ_CHUNK];
};

struct write_req {
    uv_write_t w;
    struct cb_http_conn *conn;
    char data[];
};

static struct cb_http_listener *listeners;

void cb_http_limits_default(struct cb_http_limits *l)
{
    *l = (struct cb_http_limits){
        .max_header_bytes = 16 * 1024,
        .max_headers = 64,
        .max_url = 8 * 1024,
        .max_body = 1024 * 1024,
        .max_stream_body = 4ULL << 30,
        .idle_timeout_ms = 120 * 1000,
        .max_connections = 4096,
        .stream_high_water = 4 * 1024 * 1024,
    };
}

void cb_http_server_init(struct cb_http_server *srv, uv_loop_t *loop, void *ctx)
{
    memset(srv, 0, sizeof(*srv));
    srv->loop = loop;
    srv->ctx = ctx;
    cb_http_limits_default(&srv->limits);
}

const char *cb_http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 416: return "Range Not Satisfiable";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

/* ---------------------------------------------------------------- conns */

static void conn_process(struct cb_http_conn *c);
static void conn_close(struct cb_http_conn *c);

static void req_free(struct cb_http_req *r)
{
    if (!r)
        return;
    free(r->url);
    free(r->path);
    free(r->query);
    for (int i = 0; i < r->nheaders; i++) {
        free(r->header_names[i]);
        free(r->header_values[i]);
    }
    free(r->body);
    free(r->tenant);
    cb_route_match_clear(&r->match);
    free(r);
}

static void conn_maybe_free(struct cb_http_conn *c)
{
    if (c->open_handles > 0 || c->req)
        return;
    struct cb_http_server *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->nconns--;
    free(c->rbuf);
    free(c);
}

static void handle_closed_cb(uv_handle_t *h)
{
    struct cb_http_conn *c = h->data;
    c->open_handles--;
    conn_maybe_free(c);
}

/* The client is gone (or we give up on it): tell an in-flight handler. */
static void conn_abort(struct cb_http_conn *c)
{
    struct cb_http_req *r = c->req;
    if (r && !r->finished && !r->aborted) {
        r->aborted = true;
        if (r->on_abort)
            r->on_abort(r);
    }
    conn_close(c);
}

static void conn_close(struct cb_http_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close(&c->h.handle, handle_closed_cb);
    uv_close((uv_handle_t *)&c->timer, handle_closed_cb);
    /* A request not yet handed to a handler dies with the connection. */
    if (c->req && !c->req->started_ns) {
        req_free(c->req);
        c->req = NULL;
    }
}

static void shutdown_cb(uv_shutdown_t *s, int status)
{
    conn_close(s->data);
}

static void write_cb(uv_write_t *w, int status)
{
    struct write_req *wr = (struct write_req *)w;
    struct cb_http_conn *c = wr->conn;
    free(wr);
    if (status < 0) {
        conn_abort(c);
        return;
    }
    struct cb_http_req *r = c->req;
    if (r && !r->finished && r->on_drain && !c->closing &&
        uv_stream_get_write_queue_size(&c->h.stream) < c->srv->limits.stream_high_water / 2)
        r->on_drain(r);
}

static void conn_write(struct cb_http_conn *c, const void *a, size_t alen,
                       const void *b, size_t blen, const void *d, size_t dlen)
{
    if (c->closing || alen + blen + dlen == 0)
        return;
    struct write_req *wr = cb_xmalloc(sizeof(*wr) + alen + blen + dlen);
    wr->conn = c;
    memcpy(wr->data, a, alen);
    if (blen)
        memcpy(wr->data + alen, b, blen);
    if (dlen)
        memcpy(wr->data + alen + blen, d, dlen);
    uv_buf_t buf = uv_buf_init(wr->data, (unsigned)(alen + blen + dlen));
    wr->w.data = c;
    if (uv_write(&wr->w, &c->h.stream, &buf, 1, write_cb) < 0) {
        free(wr);
        conn_abort(c);
    }
}

/* End of a request: both its response and its message are complete (or the
 * connection is going away). */
static void conn_request_done(struct cb_http_conn *c)
{
    struct cb_http_req *r = c->req;
    if (c->srv->on_done && r->started_ns)
        c->srv->on_done(r);
    bool reuse = r->keep_alive && r->message_complete && !r->aborted && !c->close_after;
    req_free(r);
    c->req = NULL;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (!reuse) {
        /* Flush what is queued, then close (uv_close would drop it). */
        c->close_after = true;
        uv_read_stop(&c->h.stream);
        c->shutdown.data = c;
        if (uv_shutdown(&c->shutdown, &c->h.stream, shutdown_cb) < 0)
            conn_close(c);
        return;
    }
    c->last_activity_ns = cb_now_ns();
    if (!c->in_execute) {
        c->paused = false;
        http_parser_pause(&c->parser, 0);
        conn_process(c);
    }
}

static void req_finish(struct cb_http_req *r)
{
    if (r->finished)
        return;
    r->finished = true;
    struct cb_http_conn *c = r->conn;
    if (r->aborted || c->closing) {
        conn_request_done(c);
        return;
    }
    if (!r->message_complete)
        c->close_after = true; /* answered before the body ended: drop the rest */
    if (r->message_complete || c->close_after)
        conn_request_done(c);
}

/* ------------------------------------------------------------ responses */

/* Send the status line and headers, followed in the same write by body
 * (blen bytes, may be 0): one write, so a small answer reaches the client
 * in one segment and one wakeup instead of two. */
static void send_head(struct cb_http_req *r, int status, const char *content_type,
                      int64_t content_length, const char *extra, const void *body,
                      size_t blen)
{
    struct cb_http_conn *c = r->conn;
    bool keep = r->keep_alive && r->message_complete && !c->close_after;
    char length[64];
    if (content_length >= 0)
        snprintf(length, sizeof length, "Content-Length: %lld\r\n", (long long)content_length);
    else
        snprintf(length, sizeof length, "Transfer-Encoding: chunked\r\n");
    _cleanup_free_ char *head = cb_xasprintf(
        "HTTP/1.1 %d %s\r\nServer: cellboxd\r\n%s%s%s"
        "Connection: %s\r\n%s%s\r\n",
        status, cb_http_status_text(status), content_type ? "Content-Type: " : "",
        content_type ? content_type : "", content_type ? "\r\n" : "",
        keep ? "keep-alive" : "close", length, extra ? extra : "");
    r->status = status;
    r->headers_sent = true;
    r->chunked = content_length < 0;
    conn_write(c, head, strlen(head), body, blen, NULL, 0);
}

void cb_http_respond(struct cb_http_req *r, int status, const char *content_type,
                     const char *extra_headers, const void *body, size_t len)
{
    if (r->finished || r->headers_sent)
        return;
    if (!r->aborted) {
        send_head(r, status, content_type, (int64_t)len, extra_headers, body, len);
    } else {
        r->status = status;
    }
    req_finish(r);
}

void cb_http_respond_json(struct cb_http_req *r, int status, json_t *body)
{
    if (!body) {
        cb_http_respond(r, status, NULL, NULL, NULL, 0);
        return;
    }
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(body);
    if (!text)
        abort();
    size_t n = strlen(text);
    text[n] = '\n'; /* keeps curl output readable; still valid JSON */
    cb_http_respond(r, status, "application/json", NULL, text, n + 1);
    free(text);
}

void cb_http_respond_status(struct cb_http_req *r, int status, const char *code,
                            const char *message, const char *extra_headers)
{
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message",
                             message ? message : "");
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(body);
    cb_http_respond(r, status, "application/json", extra_headers, text, strlen(text));
    free(text);
}

void cb_http_respond_error(struct cb_http_req *r, enum cb_error_kind kind,
                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    va_end(ap);
    cb_http_respond_status(r, cb_error_kind_status(kind), cb_error_kind_code(kind), msg,
                           NULL);
    free(msg);
}

void cb_http_respond_cb_error(struct cb_http_req *r, const struct cb_error *e)
{
    if (!e) {
        cb_http_respond_error(r, CB_ERR_INTERNAL, "internal error");
        return;
    }
    cb_http_respond_status(r, cb_error_kind_status(e->kind), cb_error_kind_code(e->kind),
                           e->message, NULL);
}

void cb_http_stream_begin(struct cb_http_req *r, int status, const char *content_type,
                          int64_t content_length, const char *extra_headers)
{
    if (r->finished || r->headers_sent)
        return;
    if (r->aborted) {
        r->headers_sent = true;
        r->status = status;
        return;
    }
    send_head(r, status, content_type, content_length, extra_headers, NULL, 0);
}

void cb_http_stream_begin_events(struct cb_http_req *r, enum cb_stream_format fmt)
{
    r->format = fmt == CB_FMT_SSE ? CB_FMT_SSE : CB_FMT_NDJSON;
    cb_http_stream_begin(r, 200,
                         r->format == CB_FMT_SSE ? "text/event-stream"
                                                 : "application/x-ndjson",
                         -1, "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\n");
}

void cb_http_stream_write(struct cb_http_req *r, const void *data, size_t len)
{
    if (r->finished || r->aborted || !r->headers_sent || len == 0)
        return;
    if (!r->chunked) {
        conn_write(r->conn, data, len, NULL, 0, NULL, 0);
        return;
    }
    char size[32];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    conn_write(r->conn, size, (size_t)n, data, len, "\r\n", 2);
}

void cb_http_stream_event(struct cb_http_req *r, json_t *ev)
{
    json_t *seq = json_object_get(ev, "seq");
    if (json_is_integer(seq))
        r->seq = (uint64_t)json_integer_value(seq);
    else
        json_object_set_new(ev, "seq", json_integer((json_int_t)++r->seq));
    char *text = json_dumps(ev, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(ev);
    if (!text)
        abort();
    char *line;
    if (r->format == CB_FMT_SSE)
        line = cb_xasprintf("id: %llu\ndata: %s\n\n", (unsigned long long)r->seq, text);
    else
        line = cb_xasprintf("%s\n", text);
    free(text);
    cb_http_stream_write(r, line, strlen(line));
    free(line);
}

void cb_http_stream_end(struct cb_http_req *r)
{
    if (r->finished)
        return;
    if (!r->headers_sent) {
        cb_http_respond(r, 204, NULL, NULL, NULL, 0);
        return;
    }
    if (!r->aborted && r->chunked)
        conn_write(r->conn, "0\r\n\r\n", 5, NULL, 0, NULL, 0);
    req_finish(r);
}

void cb_http_stream_abort(struct cb_http_req *r)
{
    if (r->finished)
        return;
    /* Marking the request aborted turns further writes into no-ops and makes
     * conn_request_done() shut the connection down after what is queued:
     * the client sees a truncated body, never a desynchronised stream. */
    r->conn->close_after = true;
    r->aborted = true;
    req_finish(r);
}

int cb_http_peer_addr(const struct cb_http_req *r, char *out, size_t outlen)
{
    struct cb_http_conn *c = r->conn;
    if (!c->via_tcp || c->closing)
        return -ENOTSOCK;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int e = uv_tcp_getpeername(&c->h.tcp, (struct sockaddr *)&ss, &len);
    if (e < 0)
        return e;
    if (ss.ss_family == AF_INET6)
        e = uv_ip6_name((struct sockaddr_in6 *)&ss, out, outlen);
    else
        e = uv_ip4_name((struct sockaddr_in *)&ss, out, outlen);
    return e;
}

size_t cb_http_write_queue(const struct cb_http_req *r)
{
    if (r->aborted || r->conn->closing)
        return 0;
    return uv_stream_get_write_queue_size(&r->conn->h.stream);
}

bool cb_http_congested(const struct cb_http_req *r)
{
    return cb_http_write_queue(r) >= r->conn->srv->limits.stream_high_water;
}

void cb_http_body_resume(struct cb_http_req *r)
{
    struct cb_http_conn *c = r->conn;
    if (c->closing || !c->paused || r->message_complete)
        return;
    c->paused = false;
    http_parser_pause(&c->parser, 0);
    conn_process(c);
}

int cb_http_upgrade(struct cb_http_req *r, int *fd, char **rest, size_t *rest_len)
{
    struct cb_http_conn *c = r->conn;
    if (r->finished || r->aborted || r->headers_sent || c->closing || c->in_execute)
        return -EBUSY;
    uv_os_fd_t old;
    if (uv_fileno(&c->h.handle, &old) < 0)
        return -EBADF;
    /* A duplicate keeps the socket open after the server closes its handle;
     * uv_close only closes the server's descriptor (and drops it from epoll),
     * never shutdown(2), so the new owner's stream is untouched. */
    int nfd = fcntl(old, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0)
        return -errno;
    *fd = nfd;
    *rest = NULL;
    *rest_len = 0;
    if (c->rlen) {
        *rest = cb_xmalloc(c->rlen);
        memcpy(*rest, c->rbuf, c->rlen);
        *rest_len = c->rlen;
        c->rlen = 0;
    }
    r->status = 101;
    r->headers_sent = true;
    r->finished = true;
    conn_close(c);
    conn_request_done(c); /* on_done (logs, metrics), then the conn is freed */
    return 0;
}

/* --------------------------------------------------------------- parsing */

/* Answer a request the parser refused and close the connection. */
static void conn_reject(struct cb_http_conn *c, int status, const char *code,
                        const char *message)
{
    if (c->rejected || c->closing)
        return;
    c->rejected = true;
    c->close_after = true;
    if (!c->req)
        c->req = cb_xcalloc(1, sizeof(*c->req));
    struct cb_http_req *r = c->req;
    r->conn = c;
    r->server = c->srv;
    r->ctx = c->srv->ctx;
    r->keep_alive = false;
    if (r->started_ns) {
        /* A handler owns it already (streamed body): let it finish; it sees
         * the abort. */
        r->aborted = true;
        if (r->on_abort)
            r->on_abort(r);
        conn_close(c);
        return;
    }
    r->message_complete = true;
    cb_http_respond_status(r, status, code, message, NULL);
}

static int on_message_begin(http_parser *p)
{
    struct cb_http_conn *c = p->data;
    if (c->close_after)
        return -1;
    req_free(c->req);
    c->req = cb_xcalloc(1, sizeof(*c->req));
    c->req->conn = c;
    c->req->server = c->srv;
    c->req->ctx = c->srv->ctx;
    c->req->via_tcp = c->via_tcp;
    c->req->content_length = UINT64_MAX;
    c->header_bytes = 0;
    c->last_was_value = false;
    return 0;
}

static int append(char **dst, const char *at, size_t len)
{
    size_t old = *dst ? strlen(*dst) : 0;
    *dst = cb_xrealloc(*dst, old + len + 1);
    memcpy(*dst + old, at, len);
    (*dst)[old + len] = 0;
    return 0;
}

static bool header_budget(struct cb_http_conn *c, size_t len)
{
    c->header_bytes += len;
    if (c->header_bytes > c->srv->limits.max_header_bytes) {
        conn_reject(c, 431, "bad_request", "request headers too large");
        return false;
    }
    return true;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct cb_http_conn *c = p->data;
    if (!c->req)
        return -1;
    size_t old = c->req->url ? strlen(c->req->url) : 0;
    if (old + len > c->srv->limits.max_url) {
        conn_reject(c, 414, "bad_request", "request URL too long");
        return -1;
    }
    if (memchr(at, '\0', len)) {
        conn_reject(c, 400, "bad_request", "NUL in request URL");
        return -1;
    }
    if (!header_budget(c, len))
        return -1;
    return append(&c->req->url, at, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    struct cb_http_conn *c = p->data;
    struct cb_http_req *r = c->req;
    if (!r || !header_budget(c, len + 4))
        return -1;
    if (c->last_was_value || r->nheaders == 0) {
        if ((size_t)r->nheaders >= c->srv->limits.max_headers ||
            r->nheaders >= CB_HTTP_MAX_HEADERS_HARD) {
            conn_reject(c, 431, "bad_request", "too many request headers");
            return -1;
        }
        r->nheaders++;
        c->last_was_value = false;
    }
    return append(&r->header_names[r->nheaders - 1], at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    struct cb_http_conn *c = p->data;
    struct cb_http_req *r = c->req;
    if (!r || !header_budget(c, len) || r->nheaders == 0)
        return -1;
    if (memchr(at, '\0', len)) {
        conn_reject(c, 400, "bad_request", "NUL in a header");
        return -1;
    }
    c->last_was_value = true;
    return append(&r->header_values[r->nheaders - 1], at, len);
}

static void split_url(struct cb_http_req *r)
{
    const char *url = r->url ? r->url : "/";
    const char *q = strchr(url, '?');
    r->path = q ? cb_xstrndup(url, (size_t)(q - url)) : cb_xstrdup(url);
    r->query = cb_xstrdup(q ? q + 1 : "");
    char *hash = strchr(r->query, '#');
    if (hash)
        *hash = 0;
}

static int dispatch_stream(struct cb_http_conn *c, struct cb_http_req *r)
{
    const char *expect = cb_http_header(r, "expect");
    if (expect && strcasecmp(expect, "100-continue") == 0)
        conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25, NULL, 0, NULL, 0);
    r->started_ns = cb_now_ns();
    c->srv->on_request(r);
    return 0;
}

static uint64_t req_max_body(const struct cb_http_conn *c, const struct cb_http_req *r)
{
    return r->max_body ? r->max_body : c->srv->limits.max_body;
}

static int on_headers_complete(http_parser *p)
{
    struct cb_http_conn *c = p->data;
    struct cb_http_req *r = c->req;
    if (!r)
        return -1;
    for (int i = 0; i < r->nheaders; i++)
        if (!r->header_values[i])
            r->header_values[i] = cb_xstrdup("");
    r->method = (enum http_method)p->method;
    r->method_name = http_method_str(r->method);
    r->keep_alive = http_should_keep_alive(p);
    if (p->flags & F_CONTENTLENGTH)
        r->content_length = p->content_length;
    split_url(r);
    enum cb_http_disposition d = c->srv->on_headers(r);
    if (d == CB_HTTP_ANSWERED) {
        /* on_headers responded (404, 401, ...) before any body: the request
         * is over; the rest of this connection is not worth reading. */
        return 0;
    }
    if (d == CB_HTTP_STREAM) {
        if (r->content_length != UINT64_MAX &&
            r->content_length > c->srv->limits.max_stream_body) {
            conn_reject(c, 413, "payload_too_large", "request body too large");
            return -1;
        }
        return dispatch_stream(c, r);
    }
    if (r->content_length != UINT64_MAX && r->content_length > req_max_body(c, r)) {
        conn_reject(c, 413, "payload_too_large", "request body too large");
        return -1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct cb_http_conn *c = p->data;
    struct cb_http_req *r = c->req;
    if (!r || r->finished)
        return c->close_after ? -1 : 0;
    if (r->on_body) {
        if (r->body_len + len > c->srv->limits.max_stream_body) {
            conn_reject(c, 413, "payload_too_large", "request body too large");
            return -1;
        }
        r->body_len += len;
        int v = r->on_body(r, at, len);
        if (v == 1) {
            c->paused = true;
            http_parser_pause(p, 1);
        }
        return v < 0 ? (c->close_after ? -1 : 0) : 0;
    }
    if (r->started_ns)
        return 0; /* streamed route without a body sink: ignore the body */
    if (r->body_len + len > req_max_body(c, r)) {
        conn_reject(c, 413, "payload_too_large", "request body too large");
        return -1;
    }
    r->body = cb_xrealloc(r->body, r->body_len + len + 1);
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    r->body[r->body_len] = 0;
    return 0;
}

static int on_message_complete(http_parser *p)
{
    struct cb_http_conn *c = p->data;
    struct cb_http_req *r = c->req;
    if (!r)
        return c->close_after ? -1 : 0;
    r->message_complete = true;
    /* Stop after each message: the next pipelined request waits until this
     * one has been answered. */
    c->paused = true;
    http_parser_pause(p, 1);
    if (r->finished) {
        conn_request_done(c);
    } else if (r->started_ns) {
        if (r->on_body_end)
            r->on_body_end(r);
    } else {
        if (!r->body) {
            r->body = cb_xstrdup("");
            r->body_len = 0;
        }
        r->started_ns = cb_now_ns();
        c->srv->on_request(r);
    }
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void maybe_read(struct cb_http_conn *c);

static void conn_process(struct cb_http_conn *c)
{
    while (c->rlen > 0 && !c->closing && !c->close_after) {
        if (c->paused) {
            /* Paused after a message (or by a body sink): go on only once
             * that request is over; body sinks resume explicitly. */
            if (c->req)
                break;
            c->paused = false;
            http_parser_pause(&c->parser, 0);
        }
        c->in_execute = true;
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->rbuf, c->rlen);
        c->in_execute = false;
        if (n > c->rlen)
            n = c->rlen;
        memmove(c->rbuf, c->rbuf + n, c->rlen - n);
        c->rlen -= n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED)
            continue;
        if (e != HPE_OK) {
            if (!c->rejected && !c->close_after)
                conn_reject(c, 400, "bad_request", http_errno_description(e));
            return;
        }
    }
    if (c->paused && !c->req && !c->closing && !c->close_after) {
        c->paused = false;
        http_parser_pause(&c->parser, 0);
    }
    maybe_read(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct cb_http_conn *c = h->data;
    *buf = uv_buf_init(c->alloc_buf, sizeof(c->alloc_buf));
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct cb_http_conn *c = s->data;
    if (nread < 0) {
        conn_abort(c);
        return;
    }
    if (nread == 0)
        return;
    c->last_activity_ns = cb_now_ns();
    c->rbuf = cb_xrealloc(c->rbuf, c->rlen + (size_t)nread);
    memcpy(c->rbuf + c->rlen, buf->base, (size_t)nread);
    c->rlen += (size_t)nread;
    conn_process(c);
}

/* Read while the bytes waiting for the parser stay small: a client that
 * pipelines without reading answers gets TCP back-pressure, not our RAM. */
static void maybe_read(struct cb_http_conn *c)
{
    if (c->closing || c->close_after)
        return;
    bool want = c->rlen < READ_AHEAD_MAX;
    if (want && !c->reading) {
        if (uv_read_start(&c->h.stream, alloc_cb, read_cb) == 0)
            c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop(&c->h.stream);
        c->reading = false;
    }
}

static void timer_cb(uv_timer_t *t)
{
    struct cb_http_conn *c = t->data;
    uint64_t idle_ms = (cb_now_ns() - c->last_activity_ns) / 1000000;
    bool in_flight = c->req && c->req->started_ns && !c->req->finished;
    /* Idle keep-alive connections and half-sent requests (slowloris) are
     * closed; a request a handler is working on is not. */
    if (!in_flight && idle_ms >= c->srv->limits.idle_timeout_ms)
        conn_close(c);
}

static struct cb_http_conn *conn_new(struct cb_http_server *srv, bool via_tcp)
{
    struct cb_http_conn *c = cb_xcalloc(1, sizeof(*c));
    c->srv = srv;
    c->via_tcp = via_tcp;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->h.handle.data = c;
    c->last_activity_ns = cb_now_ns();
    uv_timer_init(srv->loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 1;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->nconns++;
    return c;
}

static void conn_start(struct cb_http_conn *c)
{
    c->open_handles = 2;
    uint64_t period = c->srv->limits.idle_timeout_ms / 4 + 1;
    uv_timer_start(&c->timer, timer_cb, period, period);
    maybe_read(c);
}

static void connection_cb(uv_stream_t *server, int status)
{
    struct cb_http_listener *l = server->data;
    struct cb_http_server *srv = l->srv;
    if (status < 0)
        return;
    struct cb_http_conn *c = conn_new(srv, l->via_tcp);
    int r = l->via_tcp ? uv_tcp_init(srv->loop, &c->h.tcp)
                       : uv_pipe_init(srv->loop, &c->h.pipe, 0);
    c->h.handle.data = c;
    if (r < 0 || uv_accept(server, &c->h.stream) < 0 ||
        srv->nconns > srv->limits.max_connections) {
        c->open_handles = 2;
        conn_close(c);
        return;
    }
    if (l->via_tcp)
        uv_tcp_nodelay(&c->h.tcp, 1);
    conn_start(c);
}

int cb_http_serve_fd(struct cb_http_server *srv, int fd, bool via_tcp)
{
    struct cb_http_conn *c = conn_new(srv, via_tcp);
    uv_pipe_init(srv->loop, &c->h.pipe, 0);
    c->h.handle.data = c;
    int r = uv_pipe_open(&c->h.pipe, fd);
    if (r < 0) {
        c->open_handles = 2;
        conn_close(c);
        return r;
    }
    conn_start(c);
    return 0;
}

static struct cb_http_listener *listener_new(struct cb_http_server *srv, bool via_tcp)
{
    struct cb_http_listener *l = cb_xcalloc(1, sizeof(*l));
    l->srv = srv;
    l->via_tcp = via_tcp;
    l->h.handle.data = l;
    l->next = listeners;
    listeners = l;
    return l;
}

int cb_http_listen_unix(struct cb_http_server *srv, const char *path, int mode,
                        struct cb_error **err)
{
    struct cb_http_listener *l = listener_new(srv, false);
    uv_pipe_init(srv->loop, &l->h.pipe, 0);
    l->h.handle.data = l;
    /* A socket file left by a crashed daemon would make bind fail. Only a
     * socket is removed, never a regular file someone put there. */
    struct stat st;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path);
    /* Bind with a restrictive umask so the socket is never reachable by
     * others between bind and chmod. */
    mode_t old = umask(0177);
    int r = uv_pipe_bind(&l->h.pipe, path);
    umask(old);
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "bind %s", path);
    if (chmod(path, (mode_t)mode) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "chmod %s", path);
    r = uv_listen(&l->h.stream, 512, connection_cb);
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "listen %s", path);
    return 0;
}

int cb_http_listen_tcp(struct cb_http_server *srv, const char *host_port,
                       struct cb_error **err)
{
    const char *colon = strrchr(host_port, ':');
    if (!colon)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "--listen wants HOST:PORT");
    char host[256];
    size_t hl = (size_t)(colon - host_port);
    if (hl == 0 || hl >= sizeof(host))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "bad --listen host");
    memcpy(host, host_port, hl);
    host[hl] = 0;
    int port = atoi(colon + 1);
    struct sockaddr_storage addr;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) < 0) {
        char h6[256];
        snprintf(h6, sizeof(h6), "%s", host);
        if (h6[0] == '[') {
            memmove(h6, h6 + 1, strlen(h6));
            h6[strcspn(h6, "]")] = 0;
        }
        if (uv_ip6_addr(h6, port, (struct sockaddr_in6 *)&addr) < 0)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "bad --listen address");
    }
    struct cb_http_listener *l = listener_new(srv, true);
    uv_tcp_init(srv->loop, &l->h.tcp);
    l->h.handle.data = l;
    int r = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&addr, 0);
    if (r == 0)
        r = uv_listen(&l->h.stream, 512, connection_cb);
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "listen on %s", host_port);
    return 0;
}

static void listener_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

void cb_http_server_close(struct cb_http_server *srv)
{
    for (struct cb_http_listener *l = listeners, *next; l; l = next) {
        next = l->next;
        if (l->srv == srv)
            uv_close(&l->h.handle, listener_closed_cb);
    }
    listeners = NULL;
    for (struct cb_http_conn *c = srv->conns; c; c = c->next)
        conn_abort(c);
}

/* -------------------------------------------------------------- accessors */

const char *cb_http_header(const struct cb_http_req *r, const char *name)
{
    for (int i = 0; i < r->nheaders; i++)
        if (r->header_names[i] && strcasecmp(r->header_names[i], name) == 0)
            return r->header_values[i];
    return NULL;
}

char *cb_http_query(const struct cb_http_req *r, const char *name)
{
    size_t nlen = strlen(name);
    const char *q = r->query;
    while (q && *q) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        char *key = cb_url_decode(q, klen, 1, 256);
        bool hit = key && strlen(key) == nlen && memcmp(key, name, nlen) == 0;
        free(key);
        if (hit)
            return eq ? cb_url_decode(eq + 1, len - klen - 1, 1, 8192) : cb_xstrdup("");
        q = end ? end + 1 : NULL;
    }
    return NULL;
}

bool cb_http_query_bool(const struct cb_http_req *r, const char *name)
{
    char *v = cb_http_query(r, name);
    bool yes = v && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 ||
                     strcasecmp(v, "yes") == 0 || *v == 0);
    free(v);
    return yes;
}

enum cb_stream_format cb_http_accept_stream(const struct cb_http_req *r)
{
    const char *a = cb_http_header(r, "accept");
    if (!a)
        return CB_FMT_NONE;
    if (strcasestr(a, "text/event-stream"))
        return CB_FMT_SSE;
    if (strcasestr(a, "application/x-ndjson") || strcasestr(a, "application/jsonl"))
        return CB_FMT_NDJSON;
    return CB_FMT_NONE;
}
