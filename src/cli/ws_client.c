/* ws_client.c — WebSocket client for the CLI (see ws_client.h). */
#include "ws_client.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <wslay/wslay.h>

#include "cli.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* The 101 head is a few hundred bytes; an error answer's body is a short
 * JSON object. Anything bigger is not our server. */
#define MAX_HANDSHAKE_HEAD (16u * 1024)
#define MAX_ERROR_BODY (64u * 1024)

struct cli_ws {
    int fd;
    wslay_event_context_ptr ctx;
    cli_ws_message_cb on_message;
    void *user;
    uint8_t *pending; /* bytes read with the handshake head: frames already */
    size_t pending_len, pending_off;
    bool broken;      /* EOF or a socket error */
    uint16_t close_code;
    char close_reason[124]; /* a close frame's reason is at most 123 bytes */
};

/* ---- SHA-1, only to check Sec-WebSocket-Accept ------------------------------
 * The CLI does not link libcrypto for one hash of 60 bytes; this is the
 * plain FIPS 180-1 algorithm. SHA-1's weaknesses do not matter here: the
 * accept value only proves the server understood the WebSocket request. */

static uint32_t rol32(uint32_t v, int n)
{
    return (v << n) | (v >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol32(b, 30);
        b = a;
        a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const void *data, size_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    const uint8_t *p = data;
    size_t left = len;
    for (; left >= 64; left -= 64, p += 64)
        sha1_block(h, p);
    uint8_t tail[128] = {0};
    memcpy(tail, p, left);
    tail[left] = 0x80;
    size_t tlen = left < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        tail[tlen - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, tail);
    if (tlen == 128)
        sha1_block(h, tail + 64);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(h[i] >> (24 - 8 * j));
}

/* ---- wslay callbacks ----------------------------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    struct cli_ws *ws = user;
    if (ws->pending_off < ws->pending_len) {
        size_t n = ws->pending_len - ws->pending_off;
        if (n > len)
            n = len;
        memcpy(buf, ws->pending + ws->pending_off, n);
        ws->pending_off += n;
        return (ssize_t)n;
    }
    ssize_t n = CB_RETRY(recv(ws->fd, buf, len, 0));
    if (n > 0)
        return n;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    ws->broken = true; /* EOF or an error: nothing more will come */
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    struct cli_ws *ws = user;
    ssize_t n = CB_RETRY(send(ws->fd, data, len, MSG_NOSIGNAL));
    if (n >= 0)
        return n;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else {
        ws->broken = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

/* Client frames are masked with unpredictable keys (RFC 6455 section 10.3:
 * a predictable mask lets page content poison intermediaries' caches). */
static int genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *user)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = getrandom(buf + done, len - done, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

static void msg_recv_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                        void *user)
{
    struct cli_ws *ws = user;
    if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
        ws->close_code = arg->status_code ? arg->status_code : WSLAY_CODE_NO_STATUS_RCVD;
        size_t n = arg->msg_length > 2 ? arg->msg_length - 2 : 0;
        if (n >= sizeof(ws->close_reason))
            n = sizeof(ws->close_reason) - 1;
        if (n)
            memcpy(ws->close_reason, arg->msg + 2, n);
        ws->close_reason[n] = '\0';
        return;
    }
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
        ws->on_message(ws->user, (enum cli_ws_opcode)arg->opcode, arg->msg, arg->msg_length);
    /* pings are answered by wslay itself; pongs need nothing */
}

/* ---- handshake ----------------------------------------------------------- */

static char *new_key(struct cb_error **err)
{
    uint8_t raw[16];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
        cb_error_set(err, errno, CB_ERR_INTERNAL, "getrandom");
        return NULL;
    }
    return cli_base64_encode(raw, sizeof(raw));
}

static char *expected_accept(const char *key)
{
    _cleanup_free_ char *cat = cb_xasprintf("%s%s", key, WS_GUID);
    uint8_t digest[20];
    sha1(cat, strlen(cat), digest);
    return cli_base64_encode(digest, sizeof(digest));
}

static int send_upgrade(int fd, const struct cli_endpoint *ep, const char *target,
                        const char *key, struct cb_error **err)
{
    _cleanup_free_ char *host = cli_http_host_header(ep);
    _cleanup_free_ char *auth = ep->api_key && *ep->api_key
                                    ? cb_xasprintf("Authorization: Bearer %s\r\n", ep->api_key)
                                    : cb_xstrdup("");
    _cleanup_free_ char *req =
        cb_xasprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: cellbox-cli\r\n"
                     "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: %s\r\n%s\r\n",
                     target, host, key, auth);
    if (cb_write_all(fd, req, strlen(req)) < 0)
        return cb_error_set(err, errno, CB_ERR_UNAVAILABLE, "sending the WebSocket request");
    return 0;
}

/* Read until the end of the response head. *buf holds the head (NUL at the
 * blank line) and whatever followed it; *head_len is the head's length
 * including the blank line. */
static int read_head(int fd, char **buf, size_t *len, size_t *head_len, struct cb_error **err)
{
    size_t cap = 4096;
    char *b = cb_xmalloc(cap + 1);
    size_t n = 0;
    for (;;) {
        b[n] = '\0';
        char *end = strstr(b, "\r\n\r\n");
        if (end) {
            *head_len = (size_t)(end - b) + 4;
            *buf = b;
            *len = n;
            return 0;
        }
        if (n == MAX_HANDSHAKE_HEAD) {
            free(b);
            return cb_error_set(err, 0, CB_ERR_INTERNAL, "WebSocket answer head too large");
        }
        if (n == cap) {
            cap *= 2;
            b = cb_xrealloc(b, cap + 1);
        }
        size_t want = cap - n < MAX_HANDSHAKE_HEAD - n ? cap - n : MAX_HANDSHAKE_HEAD - n;
        ssize_t r = CB_RETRY(read(fd, b + n, want));
        if (r <= 0) {
            free(b);
            return cb_error_set(err, r < 0 ? errno : 0, CB_ERR_UNAVAILABLE,
                                "connection closed during the WebSocket handshake");
        }
        n += (size_t)r;
    }
}

/* The value of header `name` in a NUL-terminated head (owned), or NULL. */
static char *header_value(const char *head, const char *name)
{
    size_t nl = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        const char *l = line + 2;
        if (strncasecmp(l, name, nl) != 0 || l[nl] != ':')
            continue;
        const char *v = l + nl + 1;
        v += strspn(v, " \t");
        size_t vl = strcspn(v, "\r\n");
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        return cb_xstrndup(v, vl);
    }
    return NULL;
}

/* A refused upgrade is an ordinary API error: read its (small) body and
 * report the API's message. */
static int refused(int fd, int status, const char *buf, size_t len, size_t head_len,
                   struct cb_error **err)
{
    _cleanup_free_ char *clen = header_value(buf, "Content-Length");
    size_t want = clen ? strtoul(clen, NULL, 10) : 0;
    if (want > MAX_ERROR_BODY)
        want = MAX_ERROR_BODY;
    _cleanup_free_ char *body = cb_xmalloc(want + 1);
    size_t have = len - head_len < want ? len - head_len : want;
    memcpy(body, buf + head_len, have);
    while (have < want) {
        ssize_t r = CB_RETRY(read(fd, body + have, want - have));
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    body[have] = '\0';
    struct http_response resp = {.status = status, .body = body, .body_len = have};
    return cli_api_error_from_response(&resp, err);
}

static int check_accept(const char *head, const char *key, struct cb_error **err)
{
    _cleanup_free_ char *upgrade = header_value(head, "Upgrade");
    _cleanup_free_ char *accept = header_value(head, "Sec-WebSocket-Accept");
    _cleanup_free_ char *want = expected_accept(key);
    if (!upgrade || strcasecmp(upgrade, "websocket") != 0 || !accept || strcmp(accept, want) != 0)
        return cb_error_set(err, 0, CB_ERR_INTERNAL,
                            "the server's WebSocket handshake answer is invalid");
    return 0;
}

/* Upgrade the connection; on success the bytes after the head (frames the
 * server sent right away, e.g. the scrollback) stay in ws->pending. */
static int handshake(struct cli_ws *ws, const struct cli_endpoint *ep, const char *target,
                     struct cb_error **err)
{
    _cleanup_free_ char *key = new_key(err);
    if (!key || send_upgrade(ws->fd, ep, target, key, err) < 0)
        return -1;
    char *buf = NULL;
    size_t len = 0, head_len = 0;
    if (read_head(ws->fd, &buf, &len, &head_len, err) < 0)
        return -1;
    int status = 0;
    int rc = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        rc = cb_error_set(err, 0, CB_ERR_INTERNAL, "malformed answer to the WebSocket request");
    else if (status != 101)
        rc = refused(ws->fd, status, buf, len, head_len, err);
    else
        rc = check_accept(buf, key, err);
    if (rc == 0 && len > head_len) {
        ws->pending = cb_xmalloc(len - head_len);
        memcpy(ws->pending, buf + head_len, len - head_len);
        ws->pending_len = len - head_len;
    }
    free(buf);
    return rc < 0 ? -1 : 0;
}

/* ---- public -------------------------------------------------------------- */

struct cli_ws *cli_ws_connect(const struct cli_endpoint *ep, const char *target,
                              cli_ws_message_cb on_message, void *user, struct cb_error **err)
{
    struct cli_ws *ws = cb_xcalloc(1, sizeof(*ws));
    ws->on_message = on_message;
    ws->user = user;
    ws->fd = cli_http_connect(ep, err);
    if (ws->fd < 0 || handshake(ws, ep, target, err) < 0)
        goto fail;
    static const struct wslay_event_callbacks cbs = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .genmask_callback = genmask_cb,
        .on_msg_recv_callback = msg_recv_cb,
    };
    if (wslay_event_context_client_init(&ws->ctx, &cbs, ws) != 0)
        abort(); /* only fails on out of memory, which aborts (STYLE rule 4) */
    wslay_event_config_set_max_recv_msg_length(ws->ctx, CLI_WS_MAX_MESSAGE);
    /* From here on the socket is driven by the caller's poll loop. */
    int fl = fcntl(ws->fd, F_GETFL);
    if (fl < 0 || fcntl(ws->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        cb_error_set(err, errno, CB_ERR_INTERNAL, "fcntl O_NONBLOCK");
        goto fail;
    }
    return ws;
fail:
    cli_ws_free(ws);
    return NULL;
}

int cli_ws_fd(const struct cli_ws *ws)
{
    return ws->fd;
}

short cli_ws_poll_events(const struct cli_ws *ws)
{
    if (ws->broken)
        return 0;
    short ev = 0;
    if (wslay_event_want_read(ws->ctx))
        ev |= POLLIN;
    if (wslay_event_want_write(ws->ctx))
        ev |= POLLOUT;
    return ev;
}

static int fail_connection(struct cli_ws *ws)
{
    ws->broken = true;
    if (!ws->close_code)
        ws->close_code = WSLAY_CODE_ABNORMAL_CLOSURE;
    return -1;
}

int cli_ws_handle(struct cli_ws *ws, short revents)
{
    if (ws->broken)
        return -1;
    /* Frames read with the handshake head are consumed on the first call,
     * whatever poll said: they are not in the socket any more. */
    bool readable = (revents & (POLLIN | POLLHUP | POLLERR)) || ws->pending_off < ws->pending_len;
    if (readable && wslay_event_want_read(ws->ctx) && wslay_event_recv(ws->ctx) != 0)
        return fail_connection(ws);
    if (ws->broken)
        return fail_connection(ws);
    if (wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) != 0)
        return fail_connection(ws);
    return 0;
}

int cli_ws_send(struct cli_ws *ws, enum cli_ws_opcode opcode, const void *data, size_t len)
{
    struct wslay_event_msg m = {.opcode = (uint8_t)opcode, .msg = data, .msg_length = len};
    if (ws->broken || wslay_event_queue_msg(ws->ctx, &m) != 0)
        return -1;
    /* Try to write at once; what does not fit waits for POLLOUT. */
    return cli_ws_handle(ws, 0);
}

int cli_ws_close(struct cli_ws *ws, uint16_t code, const char *reason)
{
    if (ws->broken || wslay_event_get_close_sent(ws->ctx))
        return 0;
    size_t rlen = reason ? strlen(reason) : 0;
    if (wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, rlen) != 0)
        return -1;
    return cli_ws_handle(ws, 0);
}

size_t cli_ws_queued_bytes(const struct cli_ws *ws)
{
    return ws->ctx ? wslay_event_get_queued_msg_length(ws->ctx) : 0;
}

bool cli_ws_is_done(const struct cli_ws *ws)
{
    return ws->broken || cli_ws_poll_events(ws) == 0;
}

uint16_t cli_ws_close_code(const struct cli_ws *ws)
{
    return ws->close_code;
}

const char *cli_ws_close_reason(const struct cli_ws *ws)
{
    return ws->close_reason;
}

void cli_ws_free(struct cli_ws *ws)
{
    if (!ws)
        return;
    if (ws->ctx)
        wslay_event_context_free(ws->ctx);
    if (ws->fd >= 0)
        close(ws->fd);
    free(ws->pending);
    free(ws);
}
