/* fuzz_websocket.c — libFuzzer target for the WebSocket session.
 *
 * The input is a script of operations: feed untrusted bytes (in chunks of
 * any size), send messages, drain some or all output, start a close. The
 * target checks the invariants the daemon relies on: output stays within
 * the back-pressure bound while the session is healthy, on_close fires at
 * most once, and everything the session writes is a well-formed sequence
 * of unmasked server frames.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc/lib \
 *     -Isrc/daemon tests/fuzz/fuzz_websocket.c src/daemon/websocket.c \
 *     src/lib/util.c src/lib/error.c -lwslay -lcrypto -o /tmp/fuzz_ws
 *   /tmp/fuzz_ws tests/fuzz/corpus/websocket */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "websocket.h"

#define MAX_MESSAGE 4096
#define MAX_QUEUED 8192

struct state {
    int closes;
    uint8_t *stream; /* all output, in order */
    size_t stream_len;
};

static void on_message(struct cb_ws *ws, enum cb_ws_opcode opcode, const uint8_t *data,
                       size_t len, void *user)
{
    if (len > MAX_MESSAGE || (opcode != CB_WS_TEXT && opcode != CB_WS_BINARY))
        abort();
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < len; i++) /* every byte must be readable */
        sink ^= data[i];
    (void)sink;
    if (len > 0 && data[0] == 'e') /* echo sometimes, from the callback */
        cb_ws_send(ws, opcode, data, len);
}

static void on_close(struct cb_ws *ws, uint16_t code, const char *reason,
                     size_t reason_len, void *user)
{
    struct state *st = user;
    if (++st->closes > 1 || reason_len > 123 || (reason_len && !reason))
        abort();
}

static void keep(struct state *st, const uint8_t *data, size_t len)
{
    if (len == 0)
        return;
    st->stream = cb_xrealloc(st->stream, st->stream_len + len);
    memcpy(st->stream + st->stream_len, data, len);
    st->stream_len += len;
}

/* The output must be whole, unmasked frames with defined opcodes. */
static void check_stream(const uint8_t *s, size_t len)
{
    size_t off = 0;
    while (off < len) {
        if (len - off < 2)
            abort();
        uint8_t opcode = s[off] & 0x0f;
        if ((s[off] & 0x70) || (s[off + 1] & 0x80) ||
            !(opcode == 0x1 || opcode == 0x2 || opcode == 0x8 || opcode == 0x9 ||
              opcode == 0xa))
            abort();
        uint64_t plen = s[off + 1] & 0x7f;
        size_t hdr = 2;
        if (plen == 126) {
            if (len - off < 4)
                abort();
            plen = (uint64_t)s[off + 2] << 8 | s[off + 3];
            hdr = 4;
        } else if (plen == 127) {
            if (len - off < 10)
                abort();
            plen = 0;
            for (int i = 0; i < 8; i++)
                plen = plen << 8 | s[off + 2 + i];
            hdr = 10;
        }
        if (len - off - hdr < plen)
            abort();
        off += hdr + (size_t)plen;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct cb_ws_callbacks callbacks = {on_message, on_close};
    struct state st = {0};
    struct cb_ws *ws = cb_ws_new(&callbacks, &st, MAX_MESSAGE, MAX_QUEUED);
    static uint8_t payload[MAX_QUEUED * 2];
    size_t pos = 0;
    while (pos + 2 <= size) {
        uint8_t op = data[pos] % 8;
        size_t n = data[pos + 1];
        pos += 2;
        if (op == 6 && pos < size) /* larger lengths now and then */
            n = n * 64 + data[pos++];
        if (n > size - pos)
            n = size - pos;
        switch (op) {
        case 0:
        case 1:
        case 2: { /* feed: mostly */
            int r = cb_ws_feed(ws, data + pos, n);
            if (r == 0 && cb_ws_output_size(ws) > MAX_QUEUED + CB_WS_CONTROL_SLACK)
                abort();
            pos += n;
            break;
        }
        case 3: { /* consume part of the output */
            const uint8_t *out;
            size_t len;
            cb_ws_pending_output(ws, &out, &len);
            size_t take = n < len ? n : len;
            keep(&st, out, take);
            cb_ws_consume_output(ws, take);
            break;
        }
        case 4: { /* take all output */
            size_t len;
            uint8_t *out = cb_ws_take_output(ws, &len);
            keep(&st, out, len);
            free(out);
            break;
        }
        case 5: /* close */
            cb_ws_close(ws, (uint16_t)(1000 + n % 12), n % 2 ? "bye" : NULL);
            break;
        case 6:
        case 7: { /* send a message of n bytes (content from the input) */
            size_t len = n < sizeof(payload) ? n : sizeof(payload);
            for (size_t i = 0; i < len; i++)
                payload[i] = data[(pos + i) % size];
            size_t before = cb_ws_output_size(ws);
            int r = cb_ws_send(ws, op == 6 ? CB_WS_BINARY : CB_WS_TEXT, payload, len);
            if (r == 0 && before <= MAX_QUEUED && cb_ws_output_size(ws) > MAX_QUEUED)
                abort(); /* back-pressure bound broken */
            break;
        }
        default:
            abort();
        }
    }
    size_t len;
    uint8_t *out = cb_ws_take_output(ws, &len);
    keep(&st, out, len);
    free(out);
    check_stream(st.stream, st.stream_len);
    if (cb_ws_is_finished(ws) && !cb_ws_is_closing(ws))
        abort();
    cb_ws_free(ws);
    free(st.stream);
    return 0;
}
