/* websocket.c — server-side WebSocket session over memory buffers (wslay).
 *
 * wslay's event API wants recv/send callbacks; ours read from the buffer
 * handed to cb_ws_feed() and append to an output buffer that the caller
 * drains. The send callback never blocks, so wslay's own queue is flushed
 * into our buffer right away and all buffered output is visible in one
 * place for the back-pressure check. */
#include "websocket.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#include "util.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24 /* base64 of 16 bytes: 22 characters + "==" */
#define WS_MAX_REASON 123

struct cb_ws {
    wslay_event_context_ptr ctx;
    struct cb_ws_callbacks cb;
    void *user;
    size_t max_queued;

    /* Input of the cb_ws_feed() call in progress. */
    const uint8_t *in;
    size_t in_len;
    bool in_feed;
    /* Frame bytes of messages sent from a callback during a feed, still in
     * wslay's queue (the feed flushes them when it is done). */
    size_t unflushed;

    /* Output not yet taken: bytes [out_start, out_end) of out. */
    uint8_t *out;
    size_t out_start, out_end, out_cap;

    int error;           /* sticky negative errno once the session failed */
    bool close_queued;   /* cb_ws_close() was called */
    bool close_reported; /* on_close was called */
};

/* ---- handshake ---------------------------------------------------------- */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Trim optional whitespace: sets start and len to the inner part of s. */
static void trim_ows(const char *s, size_t n, const char **start, size_t *len)
{
    while (n > 0 && is_ows(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_ows(s[n - 1]))
        n--;
    *start = s;
    *len = n;
}

/* Does a comma-separated header value contain token (case-insensitive)? */
static bool has_token(const char *value, const char *token)
{
    if (!value)
        return false;
    size_t token_len = strlen(token);
    const char *p = value;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        const char *item;
        size_t item_len;
        trim_ows(p, n, &item, &item_len);
        if (item_len == token_len && strncasecmp(item, token, token_len) == 0)
            return true;
        if (!comma)
            return false;
        p = comma + 1;
    }
}

static int base64_value(char c)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = c ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

/* The key must be the canonical base64 of 16 bytes (RFC 6455 4.1, 4.2.1):
 * 22 alphabet characters, the last of which carries only 2 data bits, and
 * "==". Copies the trimmed key to out (WS_KEY_LEN + 1 bytes). */
static int normalize_key(const char *key, char out[WS_KEY_LEN + 1])
{
    if (!key)
        return -EINVAL;
    const char *k;
    size_t len;
    trim_ows(key, strlen(key), &k, &len);
    if (len != WS_KEY_LEN || k[22] != '=' || k[23] != '=')
        return -EINVAL;
    for (size_t i = 0; i < 22; i++)
        if (base64_value(k[i]) < 0)
            return -EINVAL;
    if (base64_value(k[21]) & 0x0f)
        return -EINVAL;
    memcpy(out, k, WS_KEY_LEN);
    out[WS_KEY_LEN] = '\0';
    return 0;
}

int cb_ws_check_upgrade(const char *upgrade, const char *connection, const char *version,
                        const char *key)
{
    if (!has_token(upgrade, "websocket") || !has_token(connection, "upgrade"))
        return -ENOPROTOOPT;
    const char *v;
    size_t vlen;
    if (!version)
        return -EPROTONOSUPPORT;
    trim_ows(version, strlen(version), &v, &vlen);
    if (vlen != 2 || memcmp(v, "13", 2) != 0)
        return -EPROTONOSUPPORT;
    char k[WS_KEY_LEN + 1];
    return normalize_key(key, k);
}

int cb_ws_accept_value(const char *key, char *out, size_t outlen)
{
    char k[WS_KEY_LEN + 1];
    int r = normalize_key(key, k);
    if (r < 0)
        return r;
    if (outlen < CB_WS_ACCEPT_LEN)
        return -ENOSPC;
    char material[WS_KEY_LEN + sizeof(WS_GUID)];
    memcpy(material, k, WS_KEY_LEN);
    memcpy(material + WS_KEY_LEN, WS_GUID, sizeof(WS_GUID));
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    /* SHA-1 is what RFC 6455 prescribes; it proves only that the server
     * understood the handshake, no security rests on it. */
    if (!EVP_Digest(material, WS_KEY_LEN + strlen(WS_GUID), digest, &digest_len,
                    EVP_sha1(), NULL) ||
        digest_len != 20)
        return -EIO;
    /* 20 bytes encode to 28 characters plus NUL. */
    EVP_EncodeBlock((unsigned char *)out, digest, (int)digest_len);
    return 0;
}

int cb_ws_handshake_response(const char *key, char *out, size_t outlen)
{
    char accept[CB_WS_ACCEPT_LEN];
    int r = cb_ws_accept_value(key, accept, sizeof(accept));
    if (r < 0)
        return r;
    int n = snprintf(out, outlen,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "\r\n",
                     accept);
    if (n < 0 || (size_t)n >= outlen)
        return -ENOSPC;
    return n;
}

/* ---- output buffer ------------------------------------------------------ */

size_t cb_ws_output_size(const struct cb_ws *ws)
{
    return ws->out_end - ws->out_start;
}

static void output_append(struct cb_ws *ws, const uint8_t *data, size_t len)
{
    if (len == 0)
        return;
    if (ws->out_cap - ws->out_end < len && ws->out_start > 0) {
        memmove(ws->out, ws->out + ws->out_start, cb_ws_output_size(ws));
        ws->out_end -= ws->out_start;
        ws->out_start = 0;
    }
    if (ws->out_cap - ws->out_end < len) {
        size_t cap = ws->out_cap ? ws->out_cap : 4096;
        while (cap - ws->out_end < len)
            cap *= 2;
        ws->out = cb_xrealloc(ws->out, cap);
        ws->out_cap = cap;
    }
    memcpy(ws->out + ws->out_end, data, len);
    ws->out_end += len;
}

void cb_ws_pending_output(struct cb_ws *ws, const uint8_t **data, size_t *len)
{
    /* ws->out is NULL until the first output: NULL + 0 is undefined in C. */
    *data = ws->out ? ws->out + ws->out_start : NULL;
    *len = cb_ws_output_size(ws);
}

void cb_ws_consume_output(struct cb_ws *ws, size_t n)
{
    size_t have = cb_ws_output_size(ws);
    ws->out_start += n < have ? n : have;
    if (ws->out_start == ws->out_end)
        ws->out_start = ws->out_end = 0;
}

uint8_t *cb_ws_take_output(struct cb_ws *ws, size_t *len)
{
    *len = cb_ws_output_size(ws);
    if (*len == 0)
        return NULL;
    uint8_t *buf;
    if (ws->out_start == 0) {
        buf = steal_ptr(ws->out);
        ws->out_cap = 0;
    } else {
        buf = cb_xmalloc(*len);
        memcpy(buf, ws->out + ws->out_start, *len);
    }
    ws->out_start = ws->out_end = 0;
    return buf;
}

/* ---- wslay callbacks ---------------------------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    struct cb_ws *ws = user;
    if (ws->in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < ws->in_len ? len : ws->in_len;
    memcpy(buf, ws->in, n);
    ws->in += n;
    ws->in_len -= n;
    return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                       int flags, void *user)
{
    output_append(user, data, len);
    return (ssize_t)len;
}

static void report_close(struct cb_ws *ws, uint16_t code, const char *reason,
                         size_t reason_len)
{
    if (ws->close_reported)
        return;
    ws->close_reported = true;
    if (ws->cb.on_close)
        ws->cb.on_close(ws, code, reason, reason_len, ws->user);
}

static void msg_recv_cb(wslay_event_context_ptr ctx,
                        const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    struct cb_ws *ws = user;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
        if (ws->cb.on_message)
            ws->cb.on_message(ws, (enum cb_ws_opcode)arg->opcode, arg->msg,
                              arg->msg_length, ws->user);
        break;
    case WSLAY_CONNECTION_CLOSE: {
        /* wslay has validated the code and queued the echo reply. */
        uint16_t code = arg->status_code ? arg->status_code : CB_WS_CLOSE_NO_STATUS;
        size_t reason_len = arg->msg_length > 2 ? arg->msg_length - 2 : 0;
        report_close(ws, code, reason_len ? (const char *)arg->msg + 2 : NULL,
                     reason_len);
        break;
    }
    default: /* ping (pong already queued by wslay), pong */
        break;
    }
}

/* ---- session ------------------------------------------------------------ */

struct cb_ws *cb_ws_new(const struct cb_ws_callbacks *cb, void *user, size_t max_message,
                        size_t max_queued)
{
    struct cb_ws *ws = cb_xcalloc(1, sizeof(*ws));
    if (cb)
        ws->cb = *cb;
    ws->user = user;
    ws->max_queued = max_queued ? max_queued : CB_WS_DEFAULT_MAX_QUEUED;
    struct wslay_event_callbacks callbacks = {
        .recv_callback = recv_cb,
        .send_callback = send_cb,
        .on_msg_recv_callback = msg_recv_cb,
    };
    if (wslay_event_context_server_init(&ws->ctx, &callbacks, ws) != 0)
        abort(); /* only fails for lack of memory */
    wslay_event_config_set_max_recv_msg_length(
        ws->ctx, max_message ? max_message : CB_WS_DEFAULT_MAX_MESSAGE);
    return ws;
}

void cb_ws_free(struct cb_ws *ws)
{
    if (!ws)
        return;
    wslay_event_context_free(ws->ctx);
    free(ws->out);
    free(ws);
}

/* Move wslay's queued frames into our output buffer. send_cb never blocks,
 * so this empties wslay's queue unless writing was shut down. */
static void flush_wslay(struct cb_ws *ws)
{
    int r = wslay_event_send(ws->ctx);
    if (r == WSLAY_ERR_NOMEM)
        abort();
    ws->unflushed = 0;
}

/* The session failed: remember why and tell the owner once. */
static int fail(struct cb_ws *ws, int error)
{
    if (!ws->error)
        ws->error = error;
    wslay_event_shutdown_read(ws->ctx);
    if (error == -ENOBUFS) {
        /* The client does not read what we send; tell it why in case it
         * catches up, but the caller closes the socket regardless. */
        if (wslay_event_queue_close(ws->ctx, CB_WS_CLOSE_POLICY, NULL, 0) == 0)
            flush_wslay(ws);
        report_close(ws, CB_WS_CLOSE_POLICY, NULL, 0);
        return ws->error;
    }
    uint16_t code = wslay_event_get_status_code_sent(ws->ctx);
    /* wslay sends an empty close frame for errors found while parsing a
     * frame header; report those as the protocol error they are. */
    if (code == CB_WS_CLOSE_NO_STATUS || code == WSLAY_CODE_ABNORMAL_CLOSURE)
        code = error == -EMSGSIZE ? CB_WS_CLOSE_TOO_BIG : CB_WS_CLOSE_PROTOCOL_ERROR;
    report_close(ws, code, NULL, 0);
    return ws->error;
}

/* wslay disables reading and queues a close frame on a protocol violation
 * without returning an error; a disabled reader without a received close
 * frame therefore means we failed the connection. */
static int classify_recv(struct cb_ws *ws, int r)
{
    if (r == WSLAY_ERR_NOMEM)
        abort();
    if (r != 0)
        return fail(ws, -EPROTO);
    if (wslay_event_get_read_enabled(ws->ctx) || wslay_event_get_close_received(ws->ctx))
        return 0;
    if (wslay_event_get_status_code_sent(ws->ctx) == CB_WS_CLOSE_TOO_BIG)
        return fail(ws, -EMSGSIZE);
    return fail(ws, -EPROTO);
}

int cb_ws_feed(struct cb_ws *ws, const void *data, size_t len)
{
    if (ws->error)
        return ws->error;
    ws->in = data;
    ws->in_len = len;
    ws->in_feed = true;
    int r = wslay_event_recv(ws->ctx);
    ws->in_feed = false;
    ws->in = NULL;
    ws->in_len = 0; /* bytes after a close or an error are dropped */
    flush_wslay(ws);
    r = classify_recv(ws, r);
    if (r < 0)
        return r;
    if (cb_ws_output_size(ws) > ws->max_queued + CB_WS_CONTROL_SLACK)
        return fail(ws, -ENOBUFS);
    return 0;
}

/* Size of a server frame header for a payload of len bytes (unmasked). */
static size_t frame_header_size(size_t len)
{
    return len < 126 ? 2 : len <= 0xffff ? 4 : 10;
}

int cb_ws_send(struct cb_ws *ws, enum cb_ws_opcode opcode, const void *data, size_t len)
{
    if (opcode != CB_WS_TEXT && opcode != CB_WS_BINARY)
        return -EINVAL;
    if (cb_ws_is_closing(ws))
        return -EPIPE;
    size_t queued = cb_ws_output_size(ws) + ws->unflushed;
    size_t need = frame_header_size(len);
    if (queued > ws->max_queued || ws->max_queued - queued < need ||
        ws->max_queued - queued - need < len)
        return -ENOBUFS;
    struct wslay_event_msg msg = {
        .opcode = (uint8_t)opcode, .msg = data, .msg_length = len};
    int r = wslay_event_queue_msg(ws->ctx, &msg);
    if (r == WSLAY_ERR_NOMEM)
        abort();
    if (r == WSLAY_ERR_NO_MORE_MSG)
        return -EPIPE;
    if (r != 0)
        return -EINVAL;
    /* Inside a feed, the feed flushes when wslay's reader is done. */
    if (ws->in_feed)
        ws->unflushed += need + len;
    else
        flush_wslay(ws);
    return 0;
}

static bool is_sendable_close_code(uint16_t code)
{
    /* 1004-1006 and 1015 are reserved and must not be sent (RFC 6455 7.4). */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

int cb_ws_close(struct cb_ws *ws, uint16_t code, const char *reason)
{
    if (!is_sendable_close_code(code))
        return -EINVAL;
    if (ws->error || ws->close_queued)
        return -EPIPE;
    size_t reason_len = reason ? strlen(reason) : 0;
    if (reason_len > WS_MAX_REASON) {
        reason_len = WS_MAX_REASON;
        /* Do not cut a UTF-8 sequence in half: the peer would fail us. */
        while (reason_len > 0 && ((unsigned char)reason[reason_len] & 0xc0) == 0x80)
            reason_len--;
    }
    int r = wslay_event_queue_close(ws->ctx, code, (const uint8_t *)reason, reason_len);
    if (r == WSLAY_ERR_NOMEM)
        abort();
    if (r != 0)
        return -EPIPE;
    ws->close_queued = true;
    if (!ws->in_feed)
        flush_wslay(ws);
    return 0;
}

bool cb_ws_is_closing(const struct cb_ws *ws)
{
    return ws->error || ws->close_queued || wslay_event_get_close_received(ws->ctx) ||
           wslay_event_get_close_sent(ws->ctx);
}

bool cb_ws_is_finished(const struct cb_ws *ws)
{
    if (cb_ws_output_size(ws) != 0)
        return false;
    if (ws->error)
        return true;
    return wslay_event_get_close_sent(ws->ctx) && wslay_event_get_close_received(ws->ctx);
}
