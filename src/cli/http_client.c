/* http_client.c — HTTP/1.1 over a unix socket or TCP for the cellbox CLI. */
#include "http_client.h"

#include <fcntl.h>
#include <http_parser.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#define HEADER_FIELD_MAX 128
#define HEADER_VALUE_MAX 512

/* State shared with the http-parser callbacks while one response is read. */
struct parse_state {
    struct http_response *resp;
    const struct http_request *req;
    char field[HEADER_FIELD_MAX];
    size_t field_len;
    char value[HEADER_VALUE_MAX];
    size_t value_len;
    int in_value;
    int streaming; /* body goes to req->on_body */
    int complete;
    int aborted;   /* on_body asked to stop */
    int too_large; /* collected body went over the cap */
};

static void finish_header(struct parse_state *st)
{
    if (!st->in_value)
        return;
    st->field[st->field_len] = '\0';
    st->value[st->value_len] = '\0';
    if (strcasecmp(st->field, "Content-Type") == 0) {
        free(st->resp->content_type);
        st->resp->content_type = cb_xstrdup(st->value);
    }
    st->field_len = st->value_len = 0;
    st->in_value = 0;
}

/* Header names and values may arrive in pieces; longer ones than we care
 * about are truncated (we only read Content-Type). */
static void append_bounded(char *buf, size_t *len, size_t cap, const char *at, size_t n)
{
    size_t room = cap - 1 - *len;
    if (n > room)
        n = room;
    memcpy(buf + *len, at, n);
    *len += n;
}

static int on_header_field_cb(http_parser *p, const char *at, size_t n)
{
    struct parse_state *st = p->data;
    finish_header(st);
    append_bounded(st->field, &st->field_len, sizeof(st->field), at, n);
    return 0;
}

static int on_header_value_cb(http_parser *p, const char *at, size_t n)
{
    struct parse_state *st = p->data;
    st->in_value = 1;
    append_bounded(st->value, &st->value_len, sizeof(st->value), at, n);
    return 0;
}

static int on_headers_complete_cb(http_parser *p)
{
    struct parse_state *st = p->data;
    finish_header(st);
    st->resp->status = p->status_code;
    /* Error bodies are always collected: the caller shows their message. */
    st->streaming = st->req->on_body && p->status_code >= 200 && p->status_code < 300;
    return 0;
}

static int on_body_cb(http_parser *p, const char *at, size_t n)
{
    struct parse_state *st = p->data;
    if (st->streaming) {
        if (st->req->on_body(st->req->userdata, at, n) < 0) {
            st->aborted = 1;
            return -1;
        }
        return 0;
    }
    struct http_response *r = st->resp;
    if (r->body_len + n > CLI_HTTP_MAX_COLLECTED_BODY) {
        st->too_large = 1;
        return -1;
    }
    r->body = cb_xrealloc(r->body, r->body_len + n + 1);
    memcpy(r->body + r->body_len, at, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return 0;
}

static int on_message_complete_cb(http_parser *p)
{
    struct parse_state *st = p->data;
    st->complete = 1;
    /* Stop parsing here: anything after belongs to no request of ours. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_header_field = on_header_field_cb,
    .on_header_value = on_header_value_cb,
    .on_headers_complete = on_headers_complete_cb,
    .on_body = on_body_cb,
    .on_message_complete = on_message_complete_cb,
};

static int connect_unix(const char *path, struct cb_error **err)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "socket path too long: %s", path);
    strcpy(addr.sun_path, path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "socket");
    if (CB_RETRY(connect(fd, (struct sockaddr *)&addr, sizeof(addr))) < 0)
        return cb_error_set(err, errno, CB_ERR_UNAVAILABLE,
                            "cannot connect to cellboxd at %s", path);
    return steal_fd(fd);
}

/* Split "http://host:port/..." into host and port (owned strings). */
static int parse_host(const char *url, char **host, char **port, struct cb_error **err)
{
    const char *s = url;
    if (strncmp(s, "https://", 8) == 0)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "https is not supported by the CLI; use a TLS-terminating proxy "
                            "or an http:// address");
    if (strncmp(s, "http://", 7) == 0)
        s += 7;
    size_t n = strcspn(s, "/");
    _cleanup_free_ char *hp = cb_xstrndup(s, n);
    char *colon = strrchr(hp, ':');
    if (hp[0] == '[') { /* [v6]:port */
        char *close_br = strchr(hp, ']');
        if (!close_br)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "bad host: %s", url);
        *close_br = '\0';
        colon = close_br[1] == ':' ? close_br + 1 : NULL;
        *host = cb_xstrdup(hp + 1);
    } else {
        if (colon)
            *colon = '\0';
        *host = cb_xstrdup(hp);
    }
    *port = cb_xstrdup(colon ? colon + 1 : "80");
    return 0;
}

static int connect_tcp(const char *url, struct cb_error **err)
{
    _cleanup_free_ char *host = NULL;
    _cleanup_free_ char *port = NULL;
    if (parse_host(url, &host, &port, err) < 0)
        return -1;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0)
        return cb_error_set(err, 0, CB_ERR_UNAVAILABLE, "cannot resolve %s: %s", host,
                            gai_strerror(rc));
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (CB_RETRY(connect(fd, ai->ai_addr, ai->ai_addrlen)) < 0) {
            saved = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return cb_error_set(err, saved ? saved : ECONNREFUSED, CB_ERR_UNAVAILABLE,
                            "cannot connect to cellboxd at %s:%s", host, port);
    return fd;
}

static int connect_endpoint(const struct cli_endpoint *ep, struct cb_error **err)
{
    if (ep->host && *ep->host)
        return connect_tcp(ep->host, err);
    return connect_unix(ep->socket_path, err);
}

/* The Host header: the TCP address as given (proxies route on it), or a
 * fixed name on the unix socket. */
static char *host_header(const struct cli_endpoint *ep)
{
    if (!ep->host || !*ep->host)
        return cb_xstrdup("cellbox");
    const char *s = ep->host;
    if (strncmp(s, "http://", 7) == 0)
        s += 7;
    return cb_xstrndup(s, strcspn(s, "/\r\n"));
}

static char *format_head(const struct cli_endpoint *ep, const struct http_request *req)
{
    _cleanup_free_ char *host = host_header(ep);
    _cleanup_free_ char *auth = ep->api_key && *ep->api_key
                                    ? cb_xasprintf("Authorization: Bearer %s\r\n", ep->api_key)
                                    : cb_xstrdup("");
    _cleanup_free_ char *ctype = req->content_type
                                     ? cb_xasprintf("Content-Type: %s\r\n", req->content_type)
                                     : cb_xstrdup("");
    return cb_xasprintf("%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cellbox-cli\r\n"
                        "Accept: %s\r\n%s%sContent-Length: %zu\r\nConnection: close\r\n\r\n",
                        req->method, req->target, host,
                        req->accept ? req->accept : "application/json", auth, ctype,
                        req->body_len);
}

/* Write everything, giving the interrupt callback a say on EINTR. */
static int send_all(int fd, const struct http_request *req, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                if (req->on_interrupt && req->on_interrupt(req->userdata) < 0)
                    return -EINTR;
                continue;
            }
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_request(int fd, const struct cli_endpoint *ep, const struct http_request *req,
                        struct cb_error **err)
{
    _cleanup_free_ char *head = format_head(ep, req);
    int rc = send_all(fd, req, head, strlen(head));
    if (rc == 0 && req->body_len)
        rc = send_all(fd, req, req->body, req->body_len);
    if (rc == -EINTR)
        return cb_error_set(err, EINTR, CB_ERR_INTERNAL, "request interrupted");
    if (rc < 0)
        return cb_error_set(err, -rc, CB_ERR_UNAVAILABLE, "sending request");
    return 0;
}

/* Feed bytes to the parser; returns 1 when the message is complete. */
static int feed(http_parser *p, struct parse_state *st, const char *buf, size_t n,
                struct cb_error **err)
{
    size_t used = http_parser_execute(p, &parser_settings, buf, n);
    if (st->complete)
        return 1;
    if (st->aborted)
        return cb_error_set(err, EPIPE, CB_ERR_INTERNAL, "response aborted");
    if (st->too_large)
        return cb_error_set(err, 0, CB_ERR_TOO_LARGE, "response body too large");
    if (HTTP_PARSER_ERRNO(p) != HPE_OK || (n > 0 && used != n))
        return cb_error_set(err, 0, CB_ERR_INTERNAL, "malformed HTTP response: %s",
                            http_errno_description(HTTP_PARSER_ERRNO(p)));
    return 0;
}

/* Wait until fd is readable. Returns 0 when it is, 1 when the interrupt
 * pipe fired (and was drained), -errno on error. */
static int wait_readable(int fd, int interrupt_fd)
{
    if (interrupt_fd < 0)
        return 0;
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = interrupt_fd, .events = POLLIN}};
    for (;;) {
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (p[1].revents & POLLIN) {
            char drain[64];
            while (read(interrupt_fd, drain, sizeof(drain)) > 0)
                ;
            return 1;
        }
        return 0;
    }
}

static int read_response(int fd, const struct http_request *req, struct http_response *resp,
                         struct cb_error **err)
{
    struct parse_state st = {.resp = resp, .req = req};
    http_parser parser;
    http_parser_init(&parser, HTTP_RESPONSE);
    parser.data = &st;
    char buf[65536];
    for (;;) {
        int w = wait_readable(fd, req->interrupt_fd);
        if (w < 0)
            return cb_error_set(err, -w, CB_ERR_INTERNAL, "poll");
        if (w == 1) {
            if (req->on_interrupt && req->on_interrupt(req->userdata) < 0)
                return cb_error_set(err, EINTR, CB_ERR_INTERNAL, "request interrupted");
            continue;
        }
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            if (req->on_interrupt && req->on_interrupt(req->userdata) < 0)
                return cb_error_set(err, EINTR, CB_ERR_INTERNAL, "request interrupted");
            continue;
        }
        if (n < 0)
            return cb_error_set(err, errno, CB_ERR_UNAVAILABLE, "reading response");
        int rc = feed(&parser, &st, buf, (size_t)n, err);
        if (rc != 0)
            return rc < 0 ? rc : 0;
        if (n == 0)
            return cb_error_set(err, 0, CB_ERR_UNAVAILABLE,
                                "connection closed before the response was complete");
    }
}

int cli_http_do(const struct cli_endpoint *ep, const struct http_request *req,
                struct http_response *resp, struct cb_error **err)
{
    memset(resp, 0, sizeof(*resp));
    _cleanup_close_ int fd = connect_endpoint(ep, err);
    if (fd < 0)
        return -1;
    if (send_request(fd, ep, req, err) < 0) {
        /* The server may answer early (413, 401) and close before reading the
         * whole body; its answer is more useful than our EPIPE. */
        if (!err || !*err || (*err)->code == EINTR)
            return -1;
        struct cb_error *read_err = NULL;
        if (read_response(fd, req, resp, &read_err) == 0 && resp->status > 0) {
            cb_error_free(*err);
            *err = NULL;
            return 0;
        }
        cb_error_free(read_err);
        return -1;
    }
    return read_response(fd, req, resp, err);
}

void cli_http_response_clear(struct http_response *resp)
{
    free(resp->content_type);
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

char *cli_url_encode(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = cb_xmalloc(n * 3 + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        /* Unreserved characters and '/' (paths stay readable in logs). */
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~/", *p)) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

/* ---- connection pieces shared with the WebSocket client (ws_client.c) ---- */

int cli_http_connect(const struct cli_endpoint *ep, struct cb_error **err)
{
    return connect_endpoint(ep, err);
}

char *cli_http_host_header(const struct cli_endpoint *ep)
{
    return host_header(ep);
}
