/* proxy.c — the preview-URL reverse proxy (see proxy.h).
 *
 * One struct pconn per proxied request. Its steps, in order:
 *   1. cb_proxy_handle: parse the address, find the sandbox and the port
 *      record, check access, build the upstream request head;
 *   2. cb_sbx_ready: wait for queued operations, resume a paused sandbox;
 *   3. on a worker thread: enter the sandbox's network namespace, create a
 *      TCP socket there, return to the daemon's namespace;
 *   4. on the loop: connect to 127.0.0.1:<port> (non-blocking, timed out);
 *   5. relay: request head + body up, response (parsed with http-parser so
 *      its end is known and keep-alive with the client works) down;
 *   6. on "101 Switching Protocols": take the client connection over and
 *      pipe bytes both ways until both sides are done.
 *
 * Memory per connection is bounded: one read buffer per side, at most one
 * request-body chunk held while connecting, and each direction stops reading
 * while the other side's write queue is above its cap.
 *
 * Lifetime: a pconn is reference counted. The request (until it is ended or
 * upgraded), each open handle (until its close callback), the pending
 * sandbox-ready callback and the pending worker job each hold a reference. */
#include "proxy.h"

#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "preview_route.h"
#include "sandbox.h"
#include "store.h"

#define CONNECT_TIMEOUT_MS 15000      /* wake + socket + connect */
#define IDLE_TIMEOUT_MS (300 * 1000)  /* no byte either way for this long: close */
#define IDLE_CHECK_MS 5000
#define UP_HIGH_WATER (1024 * 1024)   /* bytes queued towards one side: stop reading the other */
#define MAX_RESP_HEADERS 100
#define MAX_RESP_HEADER_BYTES (64 * 1024)
#define READ_BUF 65536

struct side {
    union cb_stream_handle h;
    struct pconn *p;
    struct side *peer;
    uv_shutdown_t shutdown;
    bool open, closing, reading, blocked, eof;
    char buf[READ_BUF];
};

enum pstate { P_WAKING, P_OPENING, P_CONNECTING, P_HTTP, P_PIPE, P_DONE };

struct pconn {
    int refs;
    enum pstate state;
    struct cb_daemon *d;
    struct cb_sbx *s;
    char sandbox_id[CB_PREVIEW_SANDBOX_BUF];
    uint16_t port;
    struct cb_http_req *req;
    struct side up, cl;
    uv_timer_t timer;
    bool timer_closing;
    uv_work_t work;
    uv_connect_t connect;
    int pidfd, sock_fd;
    uint64_t last_activity_ns;
    bool failed, want_upgrade, is_head;

    /* request → upstream */
    char *head;
    size_t head_len;
    bool chunked_body, body_ended, body_paused;
    char *pending;
    size_t pending_len;

    /* upstream → client */
    http_parser rp;
    int nh;
    char *hn[MAX_RESP_HEADERS], *hv[MAX_RESP_HEADERS];
    size_t hbytes;
    bool last_was_value, interim, got_101, resp_begun, resp_complete, resp_bad;

    struct pconn *next, *prev;
};

struct wbuf {
    uv_write_t w;
    struct side *side;
    char data[];
};

/* Open proxied connections, for cb_proxy_close_port. The daemon runs one
 * loop, so a file-level list is only touched from that thread. */
static struct pconn *open_conns;
/* The daemon's own network namespace, to return to after creating a socket
 * in a sandbox's (opened once, on the loop thread, kept for the process). */
static int self_netns_fd = -1;

static void p_close_all(struct pconn *p);
static void p_fail(struct pconn *p, int status, const char *title, const char *detail);

/* --------------------------------------------------------------- strings */

struct strbuf {
    char *b;
    size_t len, cap;
};

static void sb_add(struct strbuf *sb, const char *s, size_t n)
{
    if (sb->len + n + 1 > sb->cap) {
        sb->cap = (sb->len + n + 1) * 2;
        sb->b = cb_xrealloc(sb->b, sb->cap);
    }
    memcpy(sb->b + sb->len, s, n);
    sb->len += n;
    sb->b[sb->len] = 0;
}

static void sb_str(struct strbuf *sb, const char *s) { sb_add(sb, s, strlen(s)); }

static void sb_header(struct strbuf *sb, const char *name, const char *value)
{
    sb_str(sb, name);
    sb_add(sb, ": ", 2);
    sb_str(sb, value);
    sb_add(sb, "\r\n", 2);
}

/* Does a comma-separated header value hold token (case-insensitive)? */
static bool has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    for (const char *p = value; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        size_t n = strcspn(p, ", \t");
        if (n == tl && strncasecmp(p, token, tl) == 0)
            return true;
        p += n;
    }
    return false;
}

/* Hop-by-hop headers (RFC 9110 §7.6.1) and framing headers belong to one
 * connection and are rewritten by the proxy, never forwarded. */
static bool is_hop_header(const char *name)
{
    static const char *const hop[] = {"connection", "keep-alive", "proxy-connection", "te",
                                      "trailer", "transfer-encoding", "upgrade",
                                      "content-length", "proxy-authenticate",
                                      "proxy-authorization"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(hop); i++)
        if (strcasecmp(name, hop[i]) == 0)
            return true;
    return false;
}

/* ----------------------------------------------------------- lifetime */

static void p_ref(struct pconn *p) { p->refs++; }

static void p_unref(struct pconn *p)
{
    if (--p->refs > 0)
        return;
    if (p->prev)
        p->prev->next = p->next;
    else if (open_conns == p)
        open_conns = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->s->attached--;
    cb_sbx_touch(p->s);
    cb_sbx_unref(p->s);
    if (p->pidfd >= 0)
        close(p->pidfd);
    for (int i = 0; i < p->nh; i++) {
        free(p->hn[i]);
        free(p->hv[i]);
    }
    free(p->head);
    free(p->pending);
    free(p);
}

static void side_closed_cb(uv_handle_t *h)
{
    struct side *sd = h->data;
    sd->open = false;
    p_unref(sd->p);
}

static void side_close(struct side *sd)
{
    if (!sd->open || sd->closing)
        return;
    sd->closing = true;
    uv_close(&sd->h.handle, side_closed_cb);
}

static void timer_closed_cb(uv_handle_t *h) { p_unref(h->data); }

static void p_close_all(struct pconn *p)
{
    p->state = P_DONE;
    side_close(&p->up);
    side_close(&p->cl);
    if (!p->timer_closing) {
        p->timer_closing = true;
        uv_close((uv_handle_t *)&p->timer, timer_closed_cb);
    }
}

/* Detach from the request before ending it: the server may free it at once. */
static struct cb_http_req *p_take_req(struct pconn *p)
{
    struct cb_http_req *req = p->req;
    if (!req)
        return NULL;
    p->req = NULL;
    req->data = NULL;
    req->on_abort = NULL;
    req->on_drain = NULL;
    req->on_body = NULL;
    req->on_body_end = NULL;
    return req;
}

/* A short page for people who open a preview link in a browser. Every
 * string put in it is the daemon's own text (titles, numbers, validated
 * sandbox labels), so nothing from the request is reflected unescaped. */
static void respond_page(struct cb_http_req *req, int status, const char *title,
                         const char *detail, const char *extra)
{
    _cleanup_free_ char *html = cb_xasprintf(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>%d %s</title></head>"
        "<body><h1>%d %s</h1><p>%s</p><hr><p><small>cellbox preview proxy</small></p>"
        "</body></html>\n",
        status, title, status, title, detail);
    _cleanup_free_ char *headers =
        cb_xasprintf("Cache-Control: no-store\r\n%s", extra ? extra : "");
    cb_http_respond(req, status, "text/html; charset=utf-8", headers, html, strlen(html));
}

static void p_fail(struct pconn *p, int status, const char *title, const char *detail)
{
    if (p->failed)
        return;
    p->failed = true;
    p_ref(p);
    struct cb_http_req *req = p_take_req(p);
    if (req) {
        if (!req->headers_sent && status)
            respond_page(req, status, title, detail, NULL);
        else
            cb_http_stream_abort(req);
        p_unref(p); /* the request's reference */
    }
    p_close_all(p);
    p_unref(p);
}

/* ------------------------------------------------------------- writing */

static void resume_after_write(struct side *to);

static void write_cb(uv_write_t *w, int status)
{
    struct wbuf *wb = (struct wbuf *)w;
    struct side *to = wb->side;
    free(wb);
    if (status < 0) {
        if (status != UV_ECANCELED)
            p_fail(to->p, 502, "Bad Gateway", "The connection broke.");
        return;
    }
    resume_after_write(to);
}

/* Queue bytes towards one side (copied; a try_write first saves the copy
 * when the socket takes them at once). */
static int side_write(struct side *to, const char *a, size_t alen, const char *b,
                      size_t blen)
{
    if (!to->open || to->closing || alen + blen == 0)
        return 0;
    if (uv_stream_get_write_queue_size(&to->h.stream) == 0 && blen == 0) {
        uv_buf_t ub = uv_buf_init((char *)a, (unsigned)alen);
        int n = uv_try_write(&to->h.stream, &ub, 1);
        if (n > 0) {
            a += n;
            alen -= (size_t)n;
            if (alen == 0)
                return 0;
        }
    }
    struct wbuf *wb = cb_xmalloc(sizeof(*wb) + alen + blen);
    wb->side = to;
    memcpy(wb->data, a, alen);
    if (blen)
        memcpy(wb->data + alen, b, blen);
    uv_buf_t ub = uv_buf_init(wb->data, (unsigned)(alen + blen));
    int r = uv_write(&wb->w, &to->h.stream, &ub, 1, write_cb);
    if (r < 0)
        free(wb);
    return r;
}

static size_t side_queue(const struct side *sd)
{
    return sd->open && !sd->closing ? uv_stream_get_write_queue_size(&sd->h.stream) : 0;
}

/* ------------------------------------------------- request body upward */

static int send_body(struct pconn *p, const char *data, size_t len)
{
    if (!p->chunked_body)
        return side_write(&p->up, data, len, NULL, 0);
    char size[24];
    int n = snprintf(size, sizeof(size), "%zx\r\n", len);
    struct strbuf sb = {0};
    sb_add(&sb, size, (size_t)n);
    sb_add(&sb, data, len);
    sb_add(&sb, "\r\n", 2);
    int r = side_write(&p->up, sb.b, sb.len, NULL, 0);
    free(sb.b);
    return r;
}

static int on_req_body(struct cb_http_req *req, const char *data, size_t len)
{
    struct pconn *p = req->data;
    if (!p || p->failed)
        return 0;
    p->last_activity_ns = cb_now_ns();
    if (p->state != P_HTTP) {
        /* Not connected yet: keep this one chunk and pause the client. */
        p->pending = cb_xrealloc(p->pending, p->pending_len + len);
        memcpy(p->pending + p->pending_len, data, len);
        p->pending_len += len;
        p->body_paused = true;
        return 1;
    }
    if (send_body(p, data, len) < 0) {
        p_fail(p, 502, "Bad Gateway", "The connection to the server broke.");
        return -1;
    }
    if (side_queue(&p->up) >= UP_HIGH_WATER) {
        p->body_paused = true;
        return 1;
    }
    return 0;
}

static void on_req_body_end(struct cb_http_req *req)
{
    struct pconn *p = req->data;
    if (!p)
        return;
    p->body_ended = true;
    if (p->state == P_HTTP && p->chunked_body)
        side_write(&p->up, "0\r\n\r\n", 5, NULL, 0);
}

static void on_req_abort(struct cb_http_req *req)
{
    struct pconn *p = req->data;
    if (p)
        p_fail(p, 0, NULL, NULL);
}

static void start_reading(struct side *sd, uv_read_cb cb);
static void up_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void on_req_drain(struct cb_http_req *req)
{
    struct pconn *p = req->data;
    if (p && p->up.blocked && p->state == P_HTTP) {
        p->up.blocked = false;
        start_reading(&p->up, up_read_cb);
    }
}

/* A write towards `to` completed: let the side feeding it read again. */
static void resume_after_write(struct side *to)
{
    struct pconn *p = to->p;
    if (side_queue(to) >= UP_HIGH_WATER / 2 || p->state == P_DONE)
        return;
    if (p->state == P_PIPE) {
        struct side *from = to->peer;
        if (from->blocked && !from->eof) {
            from->blocked = false;
            start_reading(from, NULL);
        }
        return;
    }
    if (to == &p->up && p->body_paused && p->req && !p->body_ended) {
        p->body_paused = false;
        cb_http_body_resume(p->req);
    }
}

/* ------------------------------------------------- response downward */

static void reset_resp_headers(struct pconn *p)
{
    for (int i = 0; i < p->nh; i++) {
        free(p->hn[i]);
        free(p->hv[i]);
        p->hn[i] = p->hv[i] = NULL;
    }
    p->nh = 0;
    p->hbytes = 0;
    p->last_was_value = false;
}

static int append_bytes(char **dst, const char *at, size_t len)
{
    size_t old = *dst ? strlen(*dst) : 0;
    *dst = cb_xrealloc(*dst, old + len + 1);
    memcpy(*dst + old, at, len);
    (*dst)[old + len] = 0;
    return 0;
}

/* Response header bytes and count are capped: a hostile server in the
 * sandbox must not grow the daemon's memory. */
static bool resp_budget(struct pconn *p, size_t len)
{
    p->hbytes += len;
    if (p->hbytes > MAX_RESP_HEADER_BYTES) {
        p->resp_bad = true;
        return false;
    }
    return true;
}

static int on_resp_field(http_parser *hp, const char *at, size_t len)
{
    struct pconn *p = hp->data;
    if (p->last_was_value || p->nh == 0) {
        if (p->nh >= MAX_RESP_HEADERS) {
            p->resp_bad = true;
            return -1;
        }
        p->nh++;
        p->last_was_value = false;
    }
    if (!resp_budget(p, len + 4))
        return -1;
    return append_bytes(&p->hn[p->nh - 1], at, len);
}

static int on_resp_value(http_parser *hp, const char *at, size_t len)
{
    struct pconn *p = hp->data;
    if (p->nh == 0 || !resp_budget(p, len) || memchr(at, 0, len)) {
        p->resp_bad = true;
        return -1;
    }
    p->last_was_value = true;
    return append_bytes(&p->hv[p->nh - 1], at, len);
}

/* The upstream headers the client gets (framing is the server's own). */
static char *client_headers(struct pconn *p, bool for_upgrade)
{
    struct strbuf sb = {0};
    sb_str(&sb, "");
    for (int i = 0; i < p->nh; i++) {
        const char *n = p->hn[i], *v = p->hv[i] ? p->hv[i] : "";
        if (!n || strpbrk(n, "\r\n") || strpbrk(v, "\r\n"))
            continue;
        if (!for_upgrade && (is_hop_header(n) || strcasecmp(n, "server") == 0))
            continue;
        sb_header(&sb, n, v);
    }
    return sb.b;
}

static int on_resp_headers_complete(http_parser *hp)
{
    struct pconn *p = hp->data;
    unsigned status = hp->status_code;
    for (int i = 0; i < p->nh; i++)
        if (!p->hv[i])
            p->hv[i] = cb_xstrdup("");
    if (status == 101) {
        if (!p->want_upgrade) {
            p->resp_bad = true;
            return -1;
        }
        p->got_101 = true; /* up_read_cb switches to the pipe */
        return 0;
    }
    if (status >= 100 && status < 200) {
        p->interim = true; /* 100/103: not forwarded, the real answer follows */
        return 0;
    }
    if (!p->req)
        return -1;
    _cleanup_free_ char *extra = client_headers(p, false);
    bool no_body = p->is_head || status == 204 || status == 304;
    int64_t len = -1;
    if (hp->flags & F_CONTENTLENGTH)
        len = (int64_t)hp->content_length;
    if (no_body && !p->is_head)
        len = 0;
    if (no_body && len < 0)
        len = 0;
    p->resp_begun = true;
    cb_http_stream_begin(p->req, (int)status, NULL, len, extra);
    return p->is_head ? 1 : 0; /* 1: a HEAD answer has no body to read */
}

static int on_resp_body(http_parser *hp, const char *at, size_t len)
{
    struct pconn *p = hp->data;
    if (!p->req)
        return -1;
    p->last_activity_ns = cb_now_ns();
    cb_http_stream_write(p->req, at, len);
    if (cb_http_congested(p->req) && p->up.reading) {
        /* The client reads slower than the server writes: stop reading the
         * server until the client's queue drains (on_req_drain). */
        uv_read_stop(&p->up.h.stream);
        p->up.reading = false;
        p->up.blocked = true;
    }
    return 0;
}

static int on_resp_message_complete(http_parser *hp)
{
    struct pconn *p = hp->data;
    if (p->interim) {
        p->interim = false;
        reset_resp_headers(p);
        return 0;
    }
    if (p->got_101) {
        http_parser_pause(hp, 1); /* what follows is the new protocol */
        return 0;
    }
    p->resp_complete = true;
    http_parser_pause(hp, 1); /* bytes after the response are not ours to relay */
    return 0;
}

static const http_parser_settings resp_settings = {
    .on_header_field = on_resp_field,
    .on_header_value = on_resp_value,
    .on_headers_complete = on_resp_headers_complete,
    .on_body = on_resp_body,
    .on_message_complete = on_resp_message_complete,
};

static void finish_response(struct pconn *p)
{
    p_ref(p);
    struct cb_http_req *req = p_take_req(p);
    if (req) {
        cb_http_stream_end(req);
        p_unref(p);
    }
    p_close_all(p);
    p_unref(p);
}

/* ---------------------------------------------------------- the pipe */

static void pipe_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct side *sd = h->data;
    *buf = uv_buf_init(sd->buf, sizeof(sd->buf));
}

static void start_reading(struct side *sd, uv_read_cb cb)
{
    if (!sd->open || sd->closing || sd->reading)
        return;
    if (!cb)
        cb = sd->p->state == P_PIPE ? pipe_read_cb : up_read_cb;
    if (uv_read_start(&sd->h.stream, alloc_cb, cb) == 0)
        sd->reading = true;
}

static void pipe_shutdown_cb(uv_shutdown_t *sh, int status)
{
    struct side *to = sh->data;
    struct pconn *p = to->p;
    /* Both directions ended (each side sent EOF and it was passed on). */
    if (status < 0 || (to->eof && to->peer->eof))
        p_close_all(p);
}

static void pipe_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct side *from = st->data;
    struct side *to = from->peer;
    struct pconn *p = from->p;
    if (n == 0)
        return;
    if (n == UV_EOF) {
        /* Half-close: pass the EOF on after what is queued. */
        from->eof = true;
        uv_read_stop(st);
        from->reading = false;
        to->shutdown.data = to;
        if (uv_shutdown(&to->shutdown, &to->h.stream, pipe_shutdown_cb) < 0)
            p_close_all(p);
        return;
    }
    if (n < 0) {
        p_close_all(p);
        return;
    }
    p->last_activity_ns = cb_now_ns();
    if (side_write(to, buf->base, (size_t)n, NULL, 0) < 0) {
        p_close_all(p);
        return;
    }
    if (side_queue(to) >= UP_HIGH_WATER) {
        uv_read_stop(st);
        from->reading = false;
        from->blocked = true;
    }
}

static int open_client_side(struct pconn *p, int fd, bool tcp)
{
    struct side *cl = &p->cl;
    uv_loop_t *loop = p->d->loop;
    int r = tcp ? uv_tcp_init(loop, &cl->h.tcp) : uv_pipe_init(loop, &cl->h.pipe, 0);
    if (r < 0)
        return r;
    cl->h.handle.data = cl;
    cl->open = true;
    p_ref(p);
    return tcp ? uv_tcp_open(&cl->h.tcp, fd) : uv_pipe_open(&cl->h.pipe, fd);
}

/* The server answered 101: take the client connection from the HTTP
 * server, forward the 101 head and whatever followed it, then pipe. */
static void switch_to_pipe(struct pconn *p, const char *after, size_t after_len)
{
    struct strbuf head = {0};
    _cleanup_free_ char *hdrs = client_headers(p, true);
    sb_str(&head, "HTTP/1.1 101 Switching Protocols\r\n");
    sb_str(&head, hdrs);
    sb_add(&head, "\r\n", 2);
    struct cb_http_req *req = p_take_req(p);
    bool tcp = req->via_tcp;
    int fd = -1;
    char *rest = NULL;
    size_t rest_len = 0;
    /* On success the server ends (and frees) the request: 101 in its log. */
    int r = cb_http_upgrade(req, &fd, &rest, &rest_len);
    if (r < 0) {
        free(head.b);
        p->failed = true;
        respond_page(req, 502, "Bad Gateway", "The upgrade could not be completed.", NULL);
        p_close_all(p);
        p_unref(p); /* the request's */
        return;
    }
    p_unref(p); /* the request's; the client handle takes one below */
    p->state = P_PIPE;
    uv_read_stop(&p->up.h.stream);
    p->up.reading = false;
    if (open_client_side(p, fd, tcp) < 0) {
        if (!p->cl.open)
            close(fd);
        free(head.b);
        free(rest);
        p_close_all(p);
        return;
    }
    int w = side_write(&p->cl, head.b, head.len, after, after_len);
    if (w == 0 && rest_len)
        w = side_write(&p->up, rest, rest_len, NULL, 0);
    free(head.b);
    free(rest);
    if (w < 0) {
        p_close_all(p);
        return;
    }
    start_reading(&p->cl, pipe_read_cb);
    start_reading(&p->up, pipe_read_cb);
}

/* ------------------------------------------------------ upstream reads */

static void up_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct side *up = st->data;
    struct pconn *p = up->p;
    if (n == 0 || p->state != P_HTTP)
        return;
    p_ref(p);
    size_t done = 0;
    if (n == UV_EOF) {
        http_parser_execute(&p->rp, &resp_settings, NULL, 0);
    } else if (n < 0) {
        p_fail(p, 502, "Bad Gateway", "The server in the sandbox reset the connection.");
        goto out;
    } else {
        p->last_activity_ns = cb_now_ns();
        done = http_parser_execute(&p->rp, &resp_settings, buf->base, (size_t)n);
    }
    if (p->failed || p->state != P_HTTP)
        goto out;
    if (p->got_101) {
        size_t len = n > 0 && done < (size_t)n ? (size_t)n - done : 0;
        switch_to_pipe(p, buf->base + done, len);
        goto out;
    }
    enum http_errno e = HTTP_PARSER_ERRNO(&p->rp);
    if (p->resp_complete) {
        finish_response(p);
    } else if ((e != HPE_OK && e != HPE_PAUSED) || p->resp_bad) {
        p_fail(p, 502, "Bad Gateway",
               p->resp_bad ? "The server in the sandbox sent an oversized or invalid answer."
                           : "The server in the sandbox sent an invalid HTTP answer.");
    } else if (n == UV_EOF) {
        p_fail(p, 502, "Bad Gateway",
               "The server in the sandbox closed the connection without answering.");
    }
out:
    p_unref(p);
}

/* ------------------------------------------------------- connecting */

static void connect_cb(uv_connect_t *c, int status)
{
    struct pconn *p = c->data;
    if (p->failed) {
        p_unref(p);
        return;
    }
    if (status < 0) {
        _cleanup_free_ char *msg =
            status == UV_ECONNREFUSED
                ? cb_xasprintf("Nothing is listening on port %u inside sandbox %s: the port "
                               "has no server. Start one (bound to 0.0.0.0 or 127.0.0.1) "
                               "and reload.",
                               (unsigned)p->port, p->sandbox_id)
                : cb_xasprintf("Cannot connect to port %u inside sandbox %s: %s.",
                               (unsigned)p->port, p->sandbox_id, uv_strerror(status));
        p_fail(p, 502, "Bad Gateway", msg);
        p_unref(p);
        return;
    }
    p->state = P_HTTP;
    p->last_activity_ns = cb_now_ns();
    int r = side_write(&p->up, p->head, p->head_len, NULL, 0);
    if (r == 0 && p->pending_len)
        r = send_body(p, p->pending, p->pending_len);
    if (r == 0 && p->body_ended && p->chunked_body)
        r = side_write(&p->up, "0\r\n\r\n", 5, NULL, 0);
    free(p->pending);
    p->pending = NULL;
    p->pending_len = 0;
    if (r < 0) {
        p_fail(p, 502, "Bad Gateway", "The connection to the server broke.");
    } else {
        start_reading(&p->up, up_read_cb);
        if (p->body_paused && p->req && !p->body_ended && side_queue(&p->up) < UP_HIGH_WATER) {
            p->body_paused = false;
            cb_http_body_resume(p->req);
        }
    }
    p_unref(p);
}

/* Worker thread: a socket in the sandbox's network namespace. setns()
 * changes only the calling thread's namespace, so the loop thread is never
 * affected; the thread returns to the daemon's namespace before it runs
 * anything else. */
static void open_work_cb(uv_work_t *w)
{
    struct pconn *p = w->data;
    if (setns(p->pidfd, CLONE_NEWNET) < 0) {
        p->sock_fd = -errno;
        return;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int e = errno;
    /* A pool thread left in a sandbox's namespace would create later
     * sockets (other jobs) there: if returning fails, crashing is safer
     * than going on. */
    if (setns(self_netns_fd, CLONE_NEWNET) < 0)
        abort();
    p->sock_fd = fd < 0 ? -e : fd;
}

static void open_after_cb(uv_work_t *w, int status)
{
    struct pconn *p = w->data;
    close(p->pidfd);
    p->pidfd = -1;
    int fd = status < 0 ? status : p->sock_fd;
    if (p->failed || fd < 0) {
        if (fd >= 0)
            close(fd);
        else if (!p->failed)
            p_fail(p, 502, "Bad Gateway", "Cannot open a connection inside the sandbox.");
        p_unref(p);
        return;
    }
    uv_tcp_init(p->d->loop, &p->up.h.tcp);
    p->up.h.handle.data = &p->up;
    p->up.open = true;
    p_ref(p); /* the handle's */
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", p->port, &addr);
    int r = uv_tcp_open(&p->up.h.tcp, fd);
    if (r < 0)
        close(fd);
    p->state = P_CONNECTING;
    p->connect.data = p;
    if (r == 0)
        r = uv_tcp_connect(&p->connect, &p->up.h.tcp, (struct sockaddr *)&addr, connect_cb);
    if (r < 0) {
        p_fail(p, 502, "Bad Gateway", "Cannot connect inside the sandbox.");
        p_unref(p);
        return;
    }
    /* the work's reference passes to the connect request */
}

static int ensure_self_netns(void)
{
    if (self_netns_fd >= 0)
        return 0;
    self_netns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    return self_netns_fd < 0 ? -errno : 0;
}

static void ready_cb(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct pconn *p = arg;
    if (p->failed) {
        p_unref(p);
        return;
    }
    if (err) {
        p_fail(p, 503, "Service Unavailable", "The sandbox is not running.");
        p_unref(p);
        return;
    }
    int pidfd = s->h ? s->d->tier->init_pidfd(s->h) : -1;
    /* The worker gets its own duplicate: the sandbox may be destroyed (and
     * its pidfd closed) on the loop while the job runs. */
    p->pidfd = pidfd >= 0 ? fcntl(pidfd, F_DUPFD_CLOEXEC, 3) : -1;
    if (p->pidfd < 0 || ensure_self_netns() < 0) {
        p_fail(p, 503, "Service Unavailable", "The sandbox is not running.");
        p_unref(p);
        return;
    }
    p->state = P_OPENING;
    p->work.data = p;
    if (uv_queue_work(p->d->loop, &p->work, open_work_cb, open_after_cb) < 0) {
        p_fail(p, 503, "Service Unavailable", "The daemon is busy.");
        p_unref(p);
    }
    /* the ready reference passes to the work */
}

static void timer_cb(uv_timer_t *t)
{
    struct pconn *p = t->data;
    uint64_t idle_ms = (cb_now_ns() - p->last_activity_ns) / 1000000;
    if (p->state < P_HTTP && idle_ms >= CONNECT_TIMEOUT_MS)
        p_fail(p, 504, "Gateway Timeout",
               "The server in the sandbox did not accept the connection in time.");
    else if (p->state >= P_HTTP && idle_ms >= IDLE_TIMEOUT_MS)
        p_fail(p, 504, "Gateway Timeout", "The server in the sandbox did not answer in time.");
}

/* ------------------------------------------------------- the request */

struct target {
    char label[CB_PREVIEW_SANDBOX_BUF];
    uint16_t port;
    char *rest;    /* path + query sent upstream */
    bool by_host;
};

static int parse_target(struct cb_http_req *req, struct target *t)
{
    struct cb_daemon *d = cb_req_daemon(req);
    const char *domain = d->cfg.preview_domain;
    const char *host = cb_http_header(req, "host");
    if (req->via_tcp && domain && *domain && host) {
        int r = cb_preview_parse_host(host, domain, &t->port, t->label, sizeof(t->label));
        if (r != 0) {
            t->by_host = true;
            t->rest = cb_xstrdup(req->url && *req->url ? req->url : "/");
            return r;
        }
    }
    return cb_preview_parse_path(req->url ? req->url : "/", t->label, sizeof(t->label),
                                 &t->port, &t->rest);
}

bool cb_proxy_wants(struct cb_http_req *req)
{
    struct target t = {0};
    int r = parse_target(req, &t);
    free(t.rest);
    return r != 0;
}

/* By id, or by name when exactly one sandbox has it. Host names arrive
 * lower-cased, so both compare without case; a name two tenants use is
 * ambiguous here and must be reached by id. */
static struct cb_sbx *find_sandbox(struct cb_daemon *d, const char *label)
{
    struct cb_sbx *by_name = NULL;
    int names = 0;
    for (struct cb_sbx *s = d->sandboxes; s; s = s->next) {
        if (s->deleted)
            continue;
        if (strcasecmp(s->rec.id, label) == 0)
            return s;
        if (s->rec.name && strcasecmp(s->rec.name, label) == 0) {
            by_name = s;
            names++;
        }
    }
    return names == 1 ? by_name : NULL;
}

/* Redirect to the same address without ?cellbox_token=, setting the
 * cookie: the token leaves the address bar and browser history, and the
 * cookie (HttpOnly, host-only, limited to this port's path in the path
 * form) carries it from now on. */
static void redirect_with_cookie(struct cb_http_req *req, const struct target *t,
                                 const char *token, const char *query_without)
{
    size_t path_len;
    const char *q;
    cb_preview_split_target(t->rest, &path_len, &q);
    _cleanup_free_ char *prefix =
        t->by_host ? cb_xstrdup("")
                   : cb_xasprintf("/v1/sandboxes/%s/ports/%u/proxy", t->label, (unsigned)t->port);
    _cleanup_free_ char *cookie = NULL;
    if (t->by_host) {
        char buf[512];
        if (cb_preview_format_cookie(token, buf, sizeof(buf)) < 0) {
            respond_page(req, 400, "Bad Request", "Malformed token.", NULL);
            return;
        }
        cookie = cb_xstrdup(buf);
    } else {
        cookie = cb_xasprintf("%s=%s; Path=%s; HttpOnly; SameSite=Lax", CB_PREVIEW_TOKEN_PARAM,
                              token, prefix);
    }
    _cleanup_free_ char *headers = cb_xasprintf(
        "Location: %s%.*s%s%s\r\nSet-Cookie: %s\r\n", prefix, (int)path_len, t->rest,
        *query_without ? "?" : "", query_without, cookie);
    bool safe = req->method == HTTP_GET || req->method == HTTP_HEAD;
    respond_page(req, safe ? 302 : 307, safe ? "Found" : "Temporary Redirect",
                 "Access granted; continuing.", headers);
}

/* 1 = go on, 0 = answered. Order: public port; the caller's API key
 * (owner tenant or admin, and any unix-socket caller, who is the admin);
 * ?cellbox_token= (redirects); X-Cellbox-Token; the cookie. A credential
 * that is present but wrong answers 403, none at all 401. */
static int check_access(struct cb_http_req *req, struct cb_sbx *s,
                        const struct cb_port_record *rec, struct target *t)
{
    size_t path_len;
    const char *query;
    cb_preview_split_target(t->rest, &path_len, &query);
    char token[CB_PREVIEW_TOKEN_MAX + 1];
    char *without = NULL;
    int qr = query ? cb_preview_query_take_token(query, token, sizeof(token), &without) : 0;
    _cleanup_free_ char *query_without = without;
    if (qr > 0) {
        /* The token never travels on to the app, whatever grants access. */
        char *rest = cb_xasprintf("%.*s%s%s", (int)path_len, t->rest,
                                  *query_without ? "?" : "", query_without);
        free(t->rest);
        t->rest = rest;
    }
    if (rec->is_public)
        return 1;
    if (req->tenant && (req->is_admin || strcmp(req->tenant, s->rec.tenant) == 0))
        return 1;
    if (qr != 0) {
        if (qr > 0 && cb_preview_token_equal(rec->token, token))
            redirect_with_cookie(req, t, token, query_without);
        else
            respond_page(req, 403, "Forbidden", "The access token is not valid for this port.",
                         NULL);
        return 0;
    }
    const char *hdr = cb_http_header(req, "x-cellbox-token");
    if (hdr) {
        if (cb_preview_token_equal(rec->token, hdr))
            return 1;
        respond_page(req, 403, "Forbidden", "The access token is not valid for this port.", NULL);
        return 0;
    }
    const char *cookie = cb_http_header(req, "cookie");
    if (cookie) {
        if (cb_preview_cookie_has_token(cookie, rec->token))
            return 1;
        _cleanup_free_ char *stripped = cb_preview_cookie_strip_token(cookie);
        if (strcmp(stripped, cookie) != 0) {
            respond_page(req, 403, "Forbidden", "The access token is not valid for this port.",
                         NULL);
            return 0;
        }
    }
    respond_page(req, 401, "Unauthorized",
                 "This port needs its access token: open the preview URL with "
                 "?cellbox_token=&lt;token&gt; or send the X-Cellbox-Token header.",
                 NULL);
    return 0;
}

/* The request head sent to the server in the sandbox. cellbox's own
 * credentials (token header and cookie, a cellbox API key) are removed so
 * the sandboxed app never sees them; X-Forwarded-* say who asked. */
static void build_head(struct pconn *p, struct cb_http_req *req, const char *target)
{
    struct strbuf sb = {0};
    const char *conn_hdr = cb_http_header(req, "connection");
    const char *upgrade = cb_http_header(req, "upgrade");
    p->want_upgrade = upgrade && conn_hdr && has_token(conn_hdr, "upgrade");
    sb_str(&sb, req->method_name);
    sb_add(&sb, " ", 1);
    sb_str(&sb, target);
    sb_str(&sb, " HTTP/1.1\r\n");
    /* A valid cellbox key authenticated this request: it is ours, not the app's. */
    bool strip_auth = req->via_tcp && req->tenant;
    for (int i = 0; i < req->nheaders; i++) {
        const char *n = req->header_names[i], *v = req->header_values[i];
        if (!n || is_hop_header(n) || strcasecmp(n, "x-cellbox-token") == 0 ||
            strcasecmp(n, "expect") == 0 || strncasecmp(n, "x-forwarded-", 12) == 0 ||
            (strip_auth && strcasecmp(n, "authorization") == 0) ||
            (conn_hdr && has_token(conn_hdr, n)))
            continue;
        if (strcasecmp(n, "cookie") == 0) {
            _cleanup_free_ char *c = cb_preview_cookie_strip_token(v);
            if (*c)
                sb_header(&sb, "Cookie", c);
            continue;
        }
        sb_header(&sb, n, v);
    }
    if (p->want_upgrade) {
        sb_header(&sb, "Connection", "Upgrade");
        sb_header(&sb, "Upgrade", upgrade);
    } else {
        sb_header(&sb, "Connection", "close");
    }
    const char *te = cb_http_header(req, "transfer-encoding");
    if (req->content_length != UINT64_MAX) {
        char cl[32];
        snprintf(cl, sizeof(cl), "%llu", (unsigned long long)req->content_length);
        sb_header(&sb, "Content-Length", cl);
    } else if (te && has_token(te, "chunked")) {
        sb_header(&sb, "Transfer-Encoding", "chunked");
        p->chunked_body = true;
    }
    char peer[64];
    if (cb_http_peer_addr(req, peer, sizeof(peer)) == 0)
        sb_header(&sb, "X-Forwarded-For", peer);
    const char *host = cb_http_header(req, "host");
    if (host)
        sb_header(&sb, "X-Forwarded-Host", host);
    sb_header(&sb, "X-Forwarded-Proto", "http");
    sb_add(&sb, "\r\n", 2);
    p->head = sb.b;
    p->head_len = sb.len;
}

static struct pconn *pconn_new(struct cb_http_req *req, struct cb_sbx *s, uint16_t port)
{
    struct cb_daemon *d = cb_req_daemon(req);
    struct pconn *p = cb_xcalloc(1, sizeof(*p));
    p->refs = 1; /* the request's */
    p->d = d;
    p->s = s;
    cb_sbx_ref(s);
    s->attached++; /* an open proxied connection keeps the sandbox awake */
    snprintf(p->sandbox_id, sizeof(p->sandbox_id), "%s", s->rec.id);
    p->port = port;
    p->req = req;
    p->pidfd = -1;
    p->sock_fd = -1;
    p->is_head = req->method == HTTP_HEAD;
    p->last_activity_ns = cb_now_ns();
    p->up.p = p->cl.p = p;
    p->up.peer = &p->cl;
    p->cl.peer = &p->up;
    http_parser_init(&p->rp, HTTP_RESPONSE);
    p->rp.data = p;
    uv_timer_init(d->loop, &p->timer);
    p->timer.data = p;
    p_ref(p); /* the timer's */
    uv_timer_start(&p->timer, timer_cb, IDLE_CHECK_MS, IDLE_CHECK_MS);
    p->next = open_conns;
    if (open_conns)
        open_conns->prev = p;
    open_conns = p;
    req->data = p;
    req->on_abort = on_req_abort;
    req->on_drain = on_req_drain;
    req->on_body = on_req_body;
    req->on_body_end = on_req_body_end;
    return p;
}

void cb_proxy_handle(struct cb_http_req *req)
{
    struct cb_daemon *d = cb_req_daemon(req);
    struct target t = {0};
    int r = parse_target(req, &t);
    _cleanup_free_ char *rest_owner = NULL;
    if (r <= 0) {
        free(t.rest);
        respond_page(req, 400, "Bad Request", "This is not a valid preview address.", NULL);
        return;
    }
    struct cb_sbx *s = find_sandbox(d, t.label);
    if (!s) {
        free(t.rest);
        respond_page(req, 404, "Not Found", "There is no such sandbox.", NULL);
        return;
    }
    struct cb_port_record rec = {0};
    int found = cb_store_port_get(d->store, s->rec.id, t.port, &rec);
    if (found <= 0) {
        free(t.rest);
        _cleanup_free_ char *msg = cb_xasprintf(
            "Port %u of sandbox %s is not exposed. Expose it with POST "
            "/v1/sandboxes/%s/ports.",
            (unsigned)t.port, s->rec.id, s->rec.id);
        respond_page(req, found < 0 ? 500 : 404, found < 0 ? "Internal Server Error" : "Not Found",
                     msg, NULL);
        return;
    }
    int ok = check_access(req, s, &rec, &t);
    rest_owner = t.rest;
    cb_port_record_clear(&rec);
    if (!ok)
        return;
    cb_sbx_touch(s);
    struct pconn *p = pconn_new(req, s, t.port);
    build_head(p, req, t.rest);
    p_ref(p); /* the ready callback's */
    cb_sbx_ready(s, ready_cb, p);
}

void cb_proxy_close_port(struct cb_daemon *d, const char *sandbox_id, uint16_t port)
{
    for (struct pconn *p = open_conns, *next; p; p = next) {
        next = p->next;
        if (p->d != d || strcmp(p->sandbox_id, sandbox_id) != 0 || (port && p->port != port))
            continue;
        if (p->state == P_PIPE)
            p_close_all(p);
        else
            p_fail(p, 404, "Not Found", "This port is no longer exposed.");
    }
}

char *cb_proxy_url(struct cb_daemon *d, const char *sandbox_id, uint16_t port)
{
    const char *listen = d->cfg.listen;
    const char *domain = d->cfg.preview_domain;
    if (listen && domain && *domain) {
        const char *colon = strrchr(listen, ':');
        return cb_xasprintf("http://%u-%s.%s%s/", (unsigned)port, sandbox_id, domain,
                            colon ? colon : "");
    }
    if (listen)
        return cb_xasprintf("http://%s/v1/sandboxes/%s/ports/%u/proxy/", listen, sandbox_id,
                            (unsigned)port);
    return cb_xasprintf("/v1/sandboxes/%s/ports/%u/proxy/", sandbox_id, (unsigned)port);
}

const struct cb_route cb_proxy_route = {"*", "preview proxy", cb_proxy_handle,
                                        CB_ROUTE_PUBLIC | CB_ROUTE_STREAM_BODY};
