/* ws_client.h — the CLI's WebSocket client (RFC 6455), over the same unix
 * socket or TCP connection the HTTP client opens.
 *
 * cli_ws_connect() does the opening handshake with blocking I/O (and checks
 * Sec-WebSocket-Accept); afterwards the socket is non-blocking and the
 * caller drives it from its own poll loop:
 *
 *   struct pollfd p = {.fd = cli_ws_fd(ws), .events = cli_ws_poll_events(ws)};
 *   poll(...);  cli_ws_handle(ws, p.revents);   (message callback fires inside)
 *   cli_ws_send(ws, CLI_WS_BINARY, data, len);  (queued; written by handle)
 *   until cli_ws_is_done(ws).
 *
 * Framing, client masking (random keys from getrandom), fragmentation,
 * ping/pong and the close handshake are wslay's (Debian's libwslay).
 * Incoming messages are capped at CLI_WS_MAX_MESSAGE so a misbehaving
 * server cannot make the CLI allocate without bound. */
#ifndef CB_CLI_WS_CLIENT_H
#define CB_CLI_WS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "http_client.h"

#define CLI_WS_MAX_MESSAGE ((size_t)16 << 20)

enum cli_ws_opcode {
    CLI_WS_TEXT = 0x1,
    CLI_WS_BINARY = 0x2,
};

struct cli_ws;

/* A complete data message (text or binary); data is only valid during the
 * call. */
typedef void (*cli_ws_message_cb)(void *user, enum cli_ws_opcode opcode, const uint8_t *data,
                                  size_t len);

/* Connect to the endpoint and upgrade `target` (path and query, already
 * percent-encoded). A non-101 answer becomes *err with the API's message
 * (e.g. "no such pty", kind NOT_FOUND). The returned session is owned by the
 * caller (cli_ws_free). */
struct cli_ws *cli_ws_connect(const struct cli_endpoint *ep, const char *target,
                              cli_ws_message_cb on_message, void *user, struct cb_error **err);
int cli_ws_fd(const struct cli_ws *ws);
/* POLLIN / POLLOUT as the session needs them now (0 when done). */
short cli_ws_poll_events(const struct cli_ws *ws);
/* Act on poll's revents: read and dispatch frames, write queued ones.
 * Returns 0, or -1 when the connection failed (the session is then done). */
int cli_ws_handle(struct cli_ws *ws, short revents);
/* Queue a message. Returns 0, or -1 when the session is closing. */
int cli_ws_send(struct cli_ws *ws, enum cli_ws_opcode opcode, const void *data, size_t len);
/* Start the close handshake (code 1000 for a normal detach). */
int cli_ws_close(struct cli_ws *ws, uint16_t code, const char *reason);
/* Bytes queued and not yet written (for back-pressure on the input side). */
size_t cli_ws_queued_bytes(const struct cli_ws *ws);
/* Nothing left to read or write: the close handshake finished or the
 * connection broke. */
bool cli_ws_is_done(const struct cli_ws *ws);
/* The peer's close status (0 when none arrived; 1006 when the connection
 * broke without one) and reason (never NULL). */
uint16_t cli_ws_close_code(const struct cli_ws *ws);
const char *cli_ws_close_reason(const struct cli_ws *ws);
void cli_ws_free(struct cli_ws *ws);

#endif
