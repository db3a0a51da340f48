/* test_websocket.c — the WebSocket session: handshake, framing, close,
 * limits and back-pressure, driven with frames built here byte by byte. */
#include <stdint.h>
#include <string.h>

#include "runner.h"
#include "util.h"
#include "websocket.h"

/* ---- helpers: client frames in, server frames out ----------------------- */

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

/* A client frame; the header claims claimed_len bytes, the given payload
 * (len bytes) is masked and appended. Returns the frame size. */
static size_t frame_claim(uint8_t *out, int fin, uint8_t opcode, int masked,
                          const void *payload, size_t len, uint64_t claimed_len)
{
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    uint8_t mask_bit = masked ? 0x80 : 0;
    if (claimed_len < 126) {
        out[n++] = (uint8_t)(mask_bit | claimed_len);
    } else if (claimed_len <= 0xffff) {
        out[n++] = mask_bit | 126;
        out[n++] = (uint8_t)(claimed_len >> 8);
        out[n++] = (uint8_t)claimed_len;
    } else {
        out[n++] = mask_bit | 127;
        for (int i = 7; i >= 0; i--)
            out[n++] = (uint8_t)(claimed_len >> (8 * i));
    }
    if (masked) {
        memcpy(out + n, MASK, 4);
        n += 4;
    }
    const uint8_t *p = payload;
    for (size_t i = 0; i < len; i++)
        out[n + i] = masked ? p[i] ^ MASK[i % 4] : p[i];
    return n + len;
}

static size_t frame(uint8_t *out, int fin, uint8_t opcode, const void *payload,
                    size_t len)
{
    return frame_claim(out, fin, opcode, 1, payload, len, len);
}

static size_t close_frame(uint8_t *out, uint16_t code, const char *reason)
{
    uint8_t body[128] = {(uint8_t)(code >> 8), (uint8_t)code};
    size_t rlen = strlen(reason);
    memcpy(body + 2, reason, rlen);
    return frame(out, 1, 0x8, body, 2 + rlen);
}

struct server_frame {
    int fin;
    uint8_t opcode;
    const uint8_t *payload;
    size_t len;
};

/* Parse one unmasked server frame from buf; returns its size, 0 if short. */
static size_t parse_frame(const uint8_t *buf, size_t len, struct server_frame *f)
{
    if (len < 2)
        return 0;
    ASSERT_EQ(buf[1] & 0x80, 0); /* servers never mask */
    f->fin = buf[0] >> 7;
    f->opcode = buf[0] & 0x0f;
    size_t n = 2;
    uint64_t plen = buf[1] & 0x7f;
    if (plen == 126) {
        if (len < 4)
            return 0;
        plen = (uint64_t)buf[2] << 8 | buf[3];
        n = 4;
    } else if (plen == 127) {
        if (len < 10)
            return 0;
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | buf[2 + i];
        n = 10;
    }
    if (len - n < plen)
        return 0;
    f->payload = buf + n;
    f->len = (size_t)plen;
    return n + (size_t)plen;
}

/* Take the next whole frame from the session's output. */
static void next_output_frame(struct cb_ws *ws, struct server_frame *f, uint8_t *copy)
{
    const uint8_t *data;
    size_t len;
    cb_ws_pending_output(ws, &data, &len);
    size_t n = parse_frame(data, len, f);
    ASSERT(n > 0);
    memcpy(copy, f->payload, f->len);
    f->payload = copy;
    cb_ws_consume_output(ws, n);
}

static uint16_t close_code_of(const struct server_frame *f)
{
    ASSERT_EQ(f->opcode, 0x8);
    ASSERT_GE(f->len, 2);
    return (uint16_t)(f->payload[0] << 8 | f->payload[1]);
}

struct record {
    int messages;
    enum cb_ws_opcode last_opcode;
    uint8_t last[200000];
    size_t last_len;
    int closes;
    uint16_t close_code;
    char close_reason[128];
    int echo; /* answer every message from inside the callback */
    int echo_results[8];
    int echoes;
};

static void on_message(struct cb_ws *ws, enum cb_ws_opcode opcode, const uint8_t *data,
                       size_t len, void *user)
{
    struct record *rec = user;
    rec->messages++;
    rec->last_opcode = opcode;
    ASSERT(len <= sizeof(rec->last));
    if (len)
        memcpy(rec->last, data, len);
    rec->last_len = len;
    if (rec->echo && rec->echoes < 8)
        rec->echo_results[rec->echoes++] = cb_ws_send(ws, opcode, data, len);
}

static void on_close(struct cb_ws *ws, uint16_t code, const char *reason,
                     size_t reason_len, void *user)
{
    struct record *rec = user;
    rec->closes++;
    rec->close_code = code;
    ASSERT(reason_len < sizeof(rec->close_reason));
    memcpy(rec->close_reason, reason ? reason : "", reason_len);
    rec->close_reason[reason_len] = '\0';
}

static const struct cb_ws_callbacks CALLBACKS = {on_message, on_close};

static struct record *new_record(void)
{
    static struct record rec; /* each case runs in its own process */
    memset(&rec, 0, sizeof(rec));
    return &rec;
}

/* ---- handshake ---------------------------------------------------------- */

TEST(ws_accept_rfc6455_example)
{
    char accept[CB_WS_ACCEPT_LEN];
    ASSERT_EQ(cb_ws_accept_value("dGhlIHNhbXBsZSBub25jZQ==", accept, sizeof(accept)), 0);
    ASSERT_STREQ(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* Optional whitespace around the header value is not part of the key. */
    ASSERT_EQ(cb_ws_accept_value(" dGhlIHNhbXBsZSBub25jZQ==\t", accept, sizeof(accept)),
              0);
    ASSERT_STREQ(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    ASSERT_EQ(cb_ws_accept_value("dGhlIHNhbXBsZSBub25jZQ==", accept, 28), -ENOSPC);
}

TEST(ws_handshake_response_is_complete)
{
    char out[256];
    int n = cb_ws_handshake_response("dGhlIHNhbXBsZSBub25jZQ==", out, sizeof(out));
    ASSERT(n > 0);
    ASSERT_EQ((size_t)n, strlen(out));
    ASSERT_STREQ(out, "HTTP/1.1 101 Switching Protocols\r\n"
                      "Upgrade: websocket\r\n"
                      "Connection: Upgrade\r\n"
                      "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                      "\r\n");
    ASSERT_EQ(cb_ws_handshake_response("dGhlIHNhbXBsZSBub25jZQ==", out, 40), -ENOSPC);
    ASSERT_EQ(cb_ws_handshake_response("bad", out, sizeof(out)), -EINVAL);
}

TEST(ws_key_must_be_base64_of_16_bytes)
{
    static const char *const bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 characters */
        "dGhlIHNhbXBsZSBub25jZQ===", /* 25 characters */
        "dGhlIHNhbXBsZSBub25jZQAA",  /* no padding: 18 bytes */
        "dGhlIHNhbXBsZSBub25jZ*==",  /* not base64 */
        "dGhlIHNhbXBsZSBub25jZR==",  /* non-canonical last character */
        "dGhlIHNhbXBs ZSBub25jZQ==", /* inner space */
        "dGhlIHNhbXBsZSBub25jZQ==x",
    };
    char accept[CB_WS_ACCEPT_LEN];
    for (size_t i = 0; i < CB_ARRAY_SIZE(bad); i++)
        if (cb_ws_accept_value(bad[i], accept, sizeof(accept)) != -EINVAL)
            FAIL("key \"%s\" accepted", bad[i]);
    ASSERT_EQ(cb_ws_accept_value(NULL, accept, sizeof(accept)), -EINVAL);
    /* '+' and '/' are base64 too. */
    ASSERT_EQ(cb_ws_accept_value("++++++++++++++++/////w==", accept, sizeof(accept)), 0);
}

TEST(ws_check_upgrade_headers)
{
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    ASSERT_EQ(cb_ws_check_upgrade("websocket", "Upgrade", "13", key), 0);
    ASSERT_EQ(cb_ws_check_upgrade("WebSocket", "keep-alive, UPGRADE", " 13 ", key), 0);
    ASSERT_EQ(cb_ws_check_upgrade("h2c,  websocket", "upgrade,keep-alive", "13", key), 0);
    ASSERT_EQ(cb_ws_check_upgrade(NULL, "Upgrade", "13", key), -ENOPROTOOPT);
    ASSERT_EQ(cb_ws_check_upgrade("websocket", NULL, "13", key), -ENOPROTOOPT);
    ASSERT_EQ(cb_ws_check_upgrade("websockets", "Upgrade", "13", key), -ENOPROTOOPT);
    ASSERT_EQ(cb_ws_check_upgrade("websocket", "keep-alive", "13", key), -ENOPROTOOPT);
    ASSERT_EQ(cb_ws_check_upgrade("websocket", "upgrades", "13", key), -ENOPROTOOPT);
    ASSERT_EQ(cb_ws_check_upgrade("websocket", "Upgrade", "8", key), -EPROTONOSUPPORT);
    ASSERT_EQ(cb_ws_check_upgrade("websocket", "Upgrade", "130", key), -EPROTONOSUPPORT);
    ASSERT_EQ(cb_ws_check_upgrade("websocket", "Upgrade", NULL, key), -EPROTONOSUPPORT);
    ASSERT_EQ(cb_ws_check_upgrade("websocket", "Upgrade", "13", NULL), -EINVAL);
    ASSERT_EQ(cb_ws_check_upgrade("websocket", "Upgrade", "13", "abc"), -EINVAL);
}

/* ---- receiving ---------------------------------------------------------- */

TEST(ws_text_and_binary_messages)
{
    struct record *rec = new_record();
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(&CALLBACKS, rec, 0, 0);
    uint8_t buf[512];
    size_t n = frame(buf, 1, 0x1, "hello", 5);
    ASSERT_EQ(cb_ws_feed(ws, buf, n), 0);
    ASSERT_EQ(rec->messages, 1);
    ASSERT_EQ(rec->last_opcode, CB_WS_TEXT);
    ASSERT_EQ(rec->last_len, 5);
    ASSERT(memcmp(rec->last, "hello", 5) == 0);

    uint8_t bin[300];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (uint8_t)(i * 7);
    n = frame(buf, 1, 0x2, bin, sizeof(bin)); /* 16-bit length */
    ASSERT_EQ(cb_ws_feed(ws, buf, n), 0);
    ASSERT_EQ(rec->messages, 2);
    ASSERT_EQ(rec->last_opcode, CB_WS_BINARY);
    ASSERT_EQ(rec->last_len, sizeof(bin));
    ASSERT(memcmp(rec->last, bin, sizeof(bin)) == 0);

    n = frame(buf, 1, 0x2, "", 0); /* empty messages are messages too */
    ASSERT_EQ(cb_ws_feed(ws, buf, n), 0);
    ASSERT_EQ(rec->messages, 3);
    ASSERT_EQ(rec->last_len, 0);
    ASSERT_EQ(cb_ws_output_size(ws), 0);
    ASSERT_EQ(rec->closes, 0);
}

TEST(ws_fragments_joined_with_ping_between)
{
    struct record *rec = new_record();
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(&CALLBACKS, rec, 0, 0);
    uint8_t buf[512];
    size_t n = frame(buf, 0, 0x1, "Hel", 3);
    n += frame(buf + n, 1, 0x9, "pingdata", 8); /* control frames interleave */
    n += frame(buf + n, 0, 0x0, "lo, ", 4);
    n += frame(buf + n, 1, 0x0, "world", 5);
    ASSERT_EQ(cb_ws_feed(ws, buf, n), 0);
    ASSERT_EQ(rec->messages, 1);
    ASSERT_EQ(rec->last_opcode, CB_WS_TEXT);
    ASSERT_EQ(rec->last_len, 12);
    ASSERT(memcmp(rec->last, "Hello, world", 12) == 0);

    struct server_frame f;
    uint8_t payload[256];
    next_output_frame(ws, &f, payload);
    ASSERT_EQ(f.opcode, 0xa); /* pong with the ping's payload */
    ASSERT_EQ(f.fin, 1);
    ASSERT_EQ(f.len, 8);
    ASSERT(memcmp(f.payload, "pingdata", 8) == 0);
    ASSERT_EQ(cb_ws_output_size(ws), 0);
}

TEST(ws_byte_by_byte_feeding)
{
    struct record *rec = new_record();
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(&CALLBACKS, rec, 0, 0);
    static uint8_t buf[80000];
    static uint8_t big[70000]; /* 64-bit length form */
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i ^ (i >> 8));
    size_t n = frame(buf, 1, 0x2, "abc", 3);
    n += frame(buf + n, 0, 0x2, big, 200);
    n += frame(buf + n, 1, 0x0, big + 200, sizeof(big) - 200);
    n += frame(buf + n, 1, 0x9, "p", 1);
    ASSERT(n <= sizeof(buf));
    for (size_t i = 0; i < n; i++)
        ASSERT_EQ(cb_ws_feed(ws, buf + i, 1), 0);
    ASSERT_EQ(rec->messages, 2);
    ASSERT_EQ(rec->last_len, sizeof(big));
    ASSERT(memcmp(rec->last, big, sizeof(big)) == 0);
    struct server_frame f;
    uint8_t payload[8];
    next_output_frame(ws, &f, payload);
    ASSERT_EQ(f.opcode, 0xa);
    ASSERT_EQ(f.len, 1);
}

TEST(ws_echo_from_inside_callback)
{
    struct record *rec = new_record();
    rec->echo = 1;
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(&CALLBACKS, rec, 0, 0);
    uint8_t buf[64];
    size_t n = frame(buf, 1, 0x2, "\x01\x02\x03", 3);
    ASSERT_EQ(cb_ws_feed(ws, buf, n), 0);
    ASSERT_EQ(rec->echoes, 1);
    ASSERT_EQ(rec->echo_results[0], 0);
    size_t len = 0;
    _cleanup_free_ uint8_t *out = cb_ws_take_output(ws, &len);
    ASSERT_EQ(len, 5);
    ASSERT_EQ(out[0], 0x82);
    ASSERT_EQ(out[1], 3);
    ASSERT(memcmp(out + 2, "\x01\x02\x03", 3) == 0);
    ASSERT_EQ(cb_ws_output_size(ws), 0);
    ASSERT(cb_ws_take_output(ws, &len) == NULL);
    ASSERT_EQ(len, 0);
}

/* ---- close handshake ---------------------------------------------------- */

TEST(ws_client_close_is_answered)
{
    struct record *rec = new_record();
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(&CALLBACKS, rec, 0, 0);
    uint8_t buf[128];
    size_t n = close_frame(buf, 1000, "bye");
    n += frame(buf + n, 1, 0x2, "late", 4); /* after close: ignored */
    ASSERT_EQ(cb_ws_feed(ws, buf, n), 0);
    ASSERT_EQ(rec->closes, 1);
    ASSERT_EQ(rec->close_code, 1000);
    ASSERT_STREQ(rec->close_reason, "bye");
    ASSERT_EQ(rec->messages, 0);
    ASSERT(cb_ws_is_closing(ws));
    ASSERT(!cb_ws_is_finished(ws)); /* the reply is not written yet */

    struct server_frame f;
    uint8_t payload[128];
    next_output_frame(ws, &f, payload);
    ASSERT_EQ(close_code_of(&f), 1000);
    ASSERT(cb_ws_is_finished(ws));
    ASSERT_EQ(cb_ws_send(ws, CB_WS_BINARY, "x", 1), -EPIPE);
    ASSERT_EQ(cb_ws_close(ws, 1000, NULL), -EPIPE);
    ASSERT_EQ(cb_ws_feed(ws, buf, n), 0);
    ASSERT_EQ(rec->closes, 1);
}

TEST(ws_close_without_status)
{
    struct record *rec = new_record();
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(&CALLBACKS, rec, 0, 0);
    uint8_t buf[16];
    size_t n = frame(buf, 1, 0x8, "", 0);
    ASSERT_EQ(cb_ws_feed(ws, buf, n), 0);
    ASSERT_EQ(rec->closes, 1);
    ASSERT_EQ(rec->close_code, CB_WS_CLOSE_NO_STATUS);
    struct server_frame f;
    uint8_t payload[128];
    next_output_frame(ws, &f, payload);
    ASSERT_EQ(f.opcode, 0x8);
    ASSERT_EQ(f.len, 0);
    ASSERT(cb_ws_is_finished(ws));
}

TEST(ws_server_initiated_close)
{
    struct record *rec = new_record();
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(&CALLBACKS, rec, 0, 0);
    ASSERT_EQ(cb_ws_close(ws, 999, NULL), -EINVAL);  /* not a valid code */
    ASSERT_EQ(cb_ws_close(ws, 1005, NULL), -EINVAL); /* reserved */
    char reason[200];
    memset(reason, 'r', sizeof(reason) - 1);
    reason[sizeof(reason) - 1] = '\0';
    ASSERT_EQ(cb_ws_close(ws, 1001, reason), 0); /* cut to 123 bytes */
    ASSERT(cb_ws_is_closing(ws));
    ASSERT_EQ(cb_ws_send(ws, CB_WS_TEXT, "x", 1), -EPIPE);
    ASSERT_EQ(cb_ws_close(ws, 1000, NULL), -EPIPE);
    struct server_frame f;
    uint8_t payload[128];
    next_output_frame(ws, &f, payload);
    ASSERT_EQ(close_code_of(&f), 1001);
    ASSERT_EQ(f.len, 2 + 123);
    ASSERT(!cb_ws_is_finished(ws)); /* waiting for the peer's reply */
    ASSERT_EQ(rec->closes, 0);

    /* Data that was in flight from the client still arrives. */
    uint8_t buf[64];
    size_t n = frame(buf, 1, 0x2, "in-flight", 9);
    n += close_frame(buf + n, 1001, "");
    ASSERT_EQ(cb_ws_feed(ws, buf, n), 0);
    ASSERT_EQ(rec->messages, 1);
    ASSERT_EQ(rec->closes, 1);
    ASSERT_EQ(rec->close_code, 1001);
    ASSERT_EQ(cb_ws_output_size(ws), 0); /* no second close frame */
    ASSERT(cb_ws_is_finished(ws));
}

TEST(ws_close_reason_not_cut_inside_utf8)
{
    struct record *rec = new_record();
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(&CALLBACKS, rec, 0, 0);
    char reason[200] = "xx"; /* then 2-byte characters: 123 falls inside one */
    for (size_t i = 2; i + 2 < sizeof(reason); i += 2)
        memcpy(reason + i, "\xc3\xa9", 2);
    reason[sizeof(reason) - 1] = '\0';
    ASSERT_EQ(cb_ws_close(ws, 1000, reason), 0);
    struct server_frame f;
    uint8_t payload[128];
    next_output_frame(ws, &f, payload);
    ASSERT_EQ(f.len, 2 + 122);           /* the half character is dropped */
    ASSERT_EQ(f.payload[2 + 121], 0xa9); /* ends with a whole "é" */
}

/* ---- protocol errors ---------------------------------------------------- */

/* Feed a bad stream; expect the error, the close code reported and sent. */
static void expect_failure(const uint8_t *buf, size_t n, int error, uint16_t code,
                           size_t max_message)
{
    struct record *rec = new_record();
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(&CALLBACKS, rec, max_message, 0);
    ASSERT_EQ(cb_ws_feed(ws, buf, n), error);
    ASSERT_EQ(rec->closes, 1);
    ASSERT_EQ(rec->close_code, code);
    ASSERT_EQ(rec->messages, 0);
    struct server_frame f;
    uint8_t payload[128];
    next_output_frame(ws, &f, payload);
    ASSERT_EQ(f.opcode, 0x8);
    if (f.len >= 2)
        ASSERT_EQ(close_code_of(&f), code);
    ASSERT(cb_ws_is_finished(ws));
    ASSERT(cb_ws_is_closing(ws));
    /* Sticky: the session stays failed. */
    ASSERT_EQ(cb_ws_feed(ws, buf, n), error);
    ASSERT_EQ(cb_ws_send(ws, CB_WS_BINARY, "x", 1), -EPIPE);
    ASSERT_EQ(rec->closes, 1);
}

TEST(ws_unmasked_client_frame_fails)
{
    uint8_t buf[64];
    size_t n = frame_claim(buf, 1, 0x2, 0, "abc", 3, 3);
    expect_failure(buf, n, -EPROTO, 1002, 0);
}

TEST(ws_unknown_opcode_fails)
{
    uint8_t buf[64];
    size_t n = frame(buf, 1, 0x3, "abc", 3);
    expect_failure(buf, n, -EPROTO, 1002, 0);
}

TEST(ws_continuation_without_start_fails)
{
    uint8_t buf[64];
    size_t n = frame(buf, 1, 0x0, "abc", 3);
    expect_failure(buf, n, -EPROTO, 1002, 0);
}

TEST(ws_new_message_inside_fragmented_one_fails)
{
    uint8_t buf[64];
    size_t n = frame(buf, 0, 0x1, "ab", 2);
    n += frame(buf + n, 1, 0x1, "cd", 2);
    expect_failure(buf, n, -EPROTO, 1002, 0);
}

TEST(ws_reserved_bits_fail)
{
    uint8_t buf[64];
    size_t n = frame(buf, 1, 0x2, "abc", 3);
    buf[0] |= 0x40; /* RSV1: no extension was negotiated */
    expect_failure(buf, n, -EPROTO, 1002, 0);
}

TEST(ws_long_control_frame_fails)
{
    uint8_t payload[126] = {0};
    uint8_t buf[256];
    size_t n = frame(buf, 1, 0x9, payload, sizeof(payload));
    expect_failure(buf, n, -EPROTO, 1002, 0);
}

TEST(ws_fragmented_control_frame_fails)
{
    uint8_t buf[64];
    size_t n = frame(buf, 0, 0x9, "ab", 2);
    expect_failure(buf, n, -EPROTO, 1002, 0);
}

TEST(ws_invalid_utf8_text_fails)
{
    uint8_t buf[64];
    size_t n = frame(buf, 1, 0x1, "ok\xff", 3);
    expect_failure(buf, n, -EPROTO, 1007, 0);
}

TEST(ws_invalid_close_code_fails)
{
    uint8_t buf[64];
    size_t n = close_frame(buf, 1005, ""); /* reserved, never on the wire */
    expect_failure(buf, n, -EPROTO, 1002, 0);
}

TEST(ws_oversized_message_fails_before_buffering)
{
    /* The header and one byte arrive: the claimed length is refused
     * before any buffer of that size is allocated (1 TiB would abort). */
    uint8_t buf[64];
    size_t n = frame_claim(buf, 1, 0x2, 1, "x", 1, (uint64_t)1 << 40);
    expect_failure(buf, n, -EMSGSIZE, 1009, 1024);
    n = frame_claim(buf, 1, 0x2, 1, "x", 1, 1025);
    expect_failure(buf, n, -EMSGSIZE, 1009, 1024);
}

TEST(ws_oversized_fragmented_message_fails)
{
    static uint8_t payload[600], buf[2000];
    size_t n = frame(buf, 0, 0x2, payload, sizeof(payload));
    n += frame(buf + n, 1, 0x0, payload, sizeof(payload));
    expect_failure(buf, n, -EMSGSIZE, 1009, 1024);
}

TEST(ws_message_at_limit_passes)
{
    struct record *rec = new_record();
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(&CALLBACKS, rec, 1024, 0);
    static uint8_t payload[1024], buf[2000];
    size_t n = frame(buf, 1, 0x2, payload, sizeof(payload));
    ASSERT_EQ(cb_ws_feed(ws, buf, n), 0);
    ASSERT_EQ(rec->messages, 1);
    ASSERT_EQ(rec->last_len, 1024);
}

/* ---- sending and back-pressure ------------------------------------------ */

TEST(ws_send_frames)
{
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(NULL, NULL, 0, 0);
    static uint8_t big[70000];
    memset(big, 'z', sizeof(big));
    ASSERT_EQ(cb_ws_send(ws, CB_WS_TEXT, "hi", 2), 0);
    ASSERT_EQ(cb_ws_send(ws, CB_WS_BINARY, big, sizeof(big)), 0);
    ASSERT_EQ(cb_ws_send(ws, (enum cb_ws_opcode)0x9, "p", 1), -EINVAL);
    struct server_frame f;
    static uint8_t payload[70000];
    next_output_frame(ws, &f, payload);
    ASSERT_EQ(f.opcode, 0x1);
    ASSERT_EQ(f.fin, 1);
    ASSERT_EQ(f.len, 2);
    next_output_frame(ws, &f, payload);
    ASSERT_EQ(f.opcode, 0x2);
    ASSERT_EQ(f.len, sizeof(big));
    ASSERT(memcmp(f.payload, big, sizeof(big)) == 0);
    ASSERT_EQ(cb_ws_output_size(ws), 0);
}

TEST(ws_send_back_pressure)
{
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(NULL, NULL, 0, 1000);
    uint8_t chunk[498];
    memset(chunk, 'a', sizeof(chunk));
    ASSERT_EQ(cb_ws_send(ws, CB_WS_BINARY, chunk, sizeof(chunk)), 0); /* 502 */
    ASSERT_EQ(cb_ws_output_size(ws), 502);
    /* 502 + 502 > 1000: refused, nothing queued. */
    ASSERT_EQ(cb_ws_send(ws, CB_WS_BINARY, chunk, sizeof(chunk)), -ENOBUFS);
    ASSERT_EQ(cb_ws_output_size(ws), 502);
    ASSERT_EQ(cb_ws_send(ws, CB_WS_BINARY, chunk, 494), 0); /* exactly 1000 */
    ASSERT_EQ(cb_ws_send(ws, CB_WS_BINARY, "", 0), -ENOBUFS);
    /* The writer drains some: room again. */
    cb_ws_consume_output(ws, 600);
    ASSERT_EQ(cb_ws_output_size(ws), 400);
    ASSERT_EQ(cb_ws_send(ws, CB_WS_BINARY, chunk, sizeof(chunk)), 0);
    size_t len;
    _cleanup_free_ uint8_t *out = cb_ws_take_output(ws, &len);
    ASSERT_EQ(len, 902);
    ASSERT_EQ(cb_ws_send(ws, CB_WS_BINARY, (void *)chunk, (size_t)-1 / 2),
              -ENOBUFS); /* no overflow in the check */
}

TEST(ws_back_pressure_counts_sends_from_callbacks)
{
    /* Messages sent from on_message wait in wslay's queue until the feed
     * ends; they still count against max_queued. */
    struct record *rec = new_record();
    rec->echo = 1;
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(&CALLBACKS, rec, 0, 100);
    uint8_t payload[60] = {0}, buf[256];
    size_t n = frame(buf, 1, 0x2, payload, sizeof(payload));
    n += frame(buf + n, 1, 0x2, payload, sizeof(payload));
    ASSERT_EQ(cb_ws_feed(ws, buf, n), 0);
    ASSERT_EQ(rec->echoes, 2);
    ASSERT_EQ(rec->echo_results[0], 0);
    ASSERT_EQ(rec->echo_results[1], -ENOBUFS);
    ASSERT_EQ(cb_ws_output_size(ws), 62);
}

TEST(ws_ping_flood_without_reading_fails)
{
    struct record *rec = new_record();
    _cleanup_(cb_ws_freep) struct cb_ws *ws = cb_ws_new(&CALLBACKS, rec, 0, 100);
    uint8_t payload[125] = {0};
    uint8_t buf[200];
    size_t n = frame(buf, 1, 0x9, payload, sizeof(payload));
    int r = 0;
    int i;
    for (i = 0; i < 10000 && r == 0; i++)
        r = cb_ws_feed(ws, buf, n);
    ASSERT_EQ(r, -ENOBUFS);
    ASSERT(cb_ws_output_size(ws) <= 100 + CB_WS_CONTROL_SLACK + 200);
    ASSERT_EQ(rec->closes, 1);
    ASSERT_EQ(rec->close_code, CB_WS_CLOSE_POLICY);
    ASSERT_EQ(cb_ws_feed(ws, buf, n), -ENOBUFS);
}
