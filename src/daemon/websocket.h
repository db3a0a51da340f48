/* websocket.h — a server-side WebSocket session (RFC 6455) over memory buffers.
 *
 * The session knows nothing about sockets or the event loop: the caller feeds
 * the bytes it read from the connection with cb_ws_feed() and writes out the
 * bytes this module produces (cb_ws_take_output(), or cb_ws_pending_output()
 * + cb_ws_consume_output()). Framing, masking, fragmentation, UTF-8 checks of
 * text messages, ping/pong and the close handshake are done by Debian's wslay.
 *
 * Typical use in the daemon (single-threaded, libuv):
 *
 *   on upgrade request:  cb_ws_check_upgrade(...) == 0, then write the bytes
 *                        from cb_ws_handshake_response(); ws = cb_ws_new(...).
 *   on read:             r = cb_ws_feed(ws, buf, n);  (callbacks fire inside)
 *                        r < 0: write what is pending, then close the socket.
 *   after feed/send:     when no write is in flight, out = cb_ws_take_output()
 *                        and uv_write() it (free it in the write callback).
 *   when finished:       cb_ws_is_finished(ws) → close the TCP connection.
 *
 * Back-pressure: the session holds at most about max_queued bytes of output
 * that the caller has not taken yet. cb_ws_send() refuses with -ENOBUFS a
 * message that would pass this bound; the caller decides whether to drop the
 * message (terminal output for a slow viewer) or to close the session. Take
 * output only when the previous write completed, so a client that does not
 * read shows up here as a full queue rather than as unbounded uv write queues.
 *
 * Errors are negative errno values (no struct cb_error: these are per-frame
 * decisions the caller acts on, not messages for an API caller).
 *
 * Not thread-safe; one session belongs to one connection on one loop. */
#ifndef CB_DAEMON_WEBSOCKET_H
#define CB_DAEMON_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Opcodes (RFC 6455 section 5.2) that cross this API. */
enum cb_ws_opcode {
    CB_WS_TEXT = 0x1,
    CB_WS_BINARY = 0x2,
};

/* Close status codes used by the daemon (RFC 6455 section 7.4.1). */
enum cb_ws_close_code {
    CB_WS_CLOSE_NORMAL = 1000,
    CB_WS_CLOSE_GOING_AWAY = 1001,
    CB_WS_CLOSE_PROTOCOL_ERROR = 1002,
    CB_WS_CLOSE_NO_STATUS = 1005,
    CB_WS_CLOSE_INVALID_DATA = 1007,
    CB_WS_CLOSE_POLICY = 1008,
    CB_WS_CLOSE_TOO_BIG = 1009,
    CB_WS_CLOSE_INTERNAL = 1011,
};

#define CB_WS_DEFAULT_MAX_MESSAGE ((size_t)1 << 20) /* 1 MiB */
#define CB_WS_DEFAULT_MAX_QUEUED ((size_t)4 << 20)  /* 4 MiB */
/* Control frames the library answers by itself (pong, close reply) may pass
 * max_queued by this much; beyond it cb_ws_feed() fails with -ENOBUFS, so a
 * client that sends pings but never reads cannot grow our memory. */
#define CB_WS_CONTROL_SLACK ((size_t)64 << 10)

/* Length of the Sec-WebSocket-Accept value plus NUL. */
#define CB_WS_ACCEPT_LEN 29

/* ---- handshake (RFC 6455 section 4.2) ---------------------------------- */

/* Check the upgrade-related header values of a request (NULL when the header
 * is absent; the caller checks that the method is GET and the version is
 * HTTP/1.1). Returns:
 *   0                  a valid WebSocket upgrade request;
 *   -ENOPROTOOPT       no Upgrade: websocket / Connection: upgrade — not a
 *                      WebSocket request at all (answer as plain HTTP);
 *   -EPROTONOSUPPORT   Sec-WebSocket-Version is not 13 (answer 426 with
 *                      "Sec-WebSocket-Version: 13");
 *   -EINVAL            a malformed or missing Sec-WebSocket-Key (answer 400).
 * Header values may carry optional surrounding whitespace. */
int cb_ws_check_upgrade(const char *upgrade, const char *connection, const char *version,
                        const char *key);

/* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) into out (>= 29 bytes).
 * Returns 0, -EINVAL when key is not the base64 of 16 bytes, -ENOSPC. */
int cb_ws_accept_value(const char *key, char *out, size_t outlen);

/* The complete "HTTP/1.1 101 Switching Protocols" response head, ending with
 * the empty line, into out. Returns its length (> 0), -EINVAL for a bad key,
 * -ENOSPC when out is too small (256 bytes are always enough). */
int cb_ws_handshake_response(const char *key, char *out, size_t outlen);

/* ---- session ------------------------------------------------------------ */

struct cb_ws;

struct cb_ws_callbacks {
    /* A whole data message (fragments already joined). data is valid only
     * during the call. Text messages are valid UTF-8 (checked). */
    void (*on_message)(struct cb_ws *ws, enum cb_ws_opcode opcode, const uint8_t *data,
                       size_t len, void *user);
    /* Called once, when the session ends from the protocol's point of view:
     * the peer's close frame arrived (code is its status, 1005 when none;
     * reason its UTF-8 text, not NUL-terminated, valid only during the call),
     * or this side failed the connection (code is what we sent: 1002, 1007,
     * 1009; reason NULL). The close reply is already queued as output. */
    void (*on_close)(struct cb_ws *ws, uint16_t code, const char *reason,
                     size_t reason_len, void *user);
};

/* Create a session. cb is copied; either callback may be NULL. max_message
 * (0 → CB_WS_DEFAULT_MAX_MESSAGE) caps a received message, fragments
 * included: a larger one fails the session with 1009. max_queued (0 →
 * CB_WS_DEFAULT_MAX_QUEUED) caps untaken output. Never returns NULL (out of
 * memory aborts). Free with cb_ws_free(). */
struct cb_ws *cb_ws_new(const struct cb_ws_callbacks *cb, void *user, size_t max_message,
                        size_t max_queued);
void cb_ws_free(struct cb_ws *ws);
static inline void cb_ws_freep(struct cb_ws **ws)
{
    if (*ws)
        cb_ws_free(*ws);
}

/* Process bytes read from the connection; callbacks run inside this call
 * (they may call cb_ws_send/cb_ws_close, not cb_ws_free). Returns:
 *   0           fine (also after a clean close: later bytes are ignored);
 *   -EPROTO     the peer broke the protocol (unmasked frame, bad opcode or
 *               length, invalid UTF-8 in text...); a close frame is queued;
 *   -EMSGSIZE   a message exceeded max_message; close 1009 queued;
 *   -ENOBUFS    output the client does not read passed
 *               max_queued + CB_WS_CONTROL_SLACK (ping flood).
 * After an error every later call returns the same error. On error the
 * caller writes the pending output (best effort) and closes the socket. */
int cb_ws_feed(struct cb_ws *ws, const void *data, size_t len);

/* Queue a text or binary message. Returns 0, -ENOBUFS when untaken output
 * plus this frame would pass max_queued (nothing queued), -EPIPE once a
 * close frame was queued or the session failed, -EINVAL for another opcode.
 * data is copied. The caller must pass valid UTF-8 for CB_WS_TEXT. */
int cb_ws_send(struct cb_ws *ws, enum cb_ws_opcode opcode, const void *data, size_t len);

/* Start the close handshake (e.g. the PTY ended: 1000; daemon stops: 1001).
 * reason is at most 123 bytes of UTF-8 (longer is cut). Returns 0, -EPIPE
 * when a close frame was already queued. on_close is called when the peer
 * answers; the caller should also arm a timeout. */
int cb_ws_close(struct cb_ws *ws, uint16_t code, const char *reason);

/* Output to write to the socket. pending/consume: *data points into the
 * session and stays valid until the next call on ws. take: hands over all
 * pending output as one malloc'd buffer (caller frees), NULL when none. */
void cb_ws_pending_output(struct cb_ws *ws, const uint8_t **data, size_t *len);
void cb_ws_consume_output(struct cb_ws *ws, size_t n);
uint8_t *cb_ws_take_output(struct cb_ws *ws, size_t *len);
/* Bytes of output produced but not yet taken or consumed. */
size_t cb_ws_output_size(const struct cb_ws *ws);

/* True once both close frames crossed (or this side failed the session) and
 * all output was taken: the caller may now close the TCP connection. */
bool cb_ws_is_finished(const struct cb_ws *ws);
/* True once a close frame was sent or received: stop sending data. */
bool cb_ws_is_closing(const struct cb_ws *ws);

#endif
