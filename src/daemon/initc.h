/* initc.h — the daemon's asynchronous client of one cellbox-init.
 *
 * One persistent connection per running sandbox, driven by a uv_poll_t on
 * the loop. Requests are multiplexed by request_id; replies are delivered to
 * the callback given with the request, unsolicited events (EXIT) to the
 * event callback. Everything init sends is hostile input: frames are
 * validated by proto.c, at most CB_PROTO_MAX_PAYLOAD bytes are buffered, and
 * fds are kept only while a pending request still waits for them (up to
 * its want_fds, CB_PROTO_MAX_FDS at most); any others are closed at once.
 *
 * Ownership: the client owns its fd. Fds handed to a reply callback belong
 * to the callback (it must close or keep them). When the connection ends,
 * every pending callback is called once with hdr == NULL, then on_closed. */
#ifndef CB_DAEMON_INITC_H
#define CB_DAEMON_INITC_H

#include <stdbool.h>
#include <uv.h>

#include "proto.h"

struct cb_initc;

typedef void (*cb_initc_reply_cb)(void *arg, const struct cb_frame_header *hdr,
                                  const uint8_t *payload, size_t len, int *fds,
                                  int nfds);
typedef void (*cb_initc_event_cb)(void *arg, const struct cb_frame_header *hdr,
                                  const uint8_t *payload, size_t len);
typedef void (*cb_initc_closed_cb)(void *arg);

/* Takes ownership of fd (made non-blocking here). */
struct cb_initc *cb_initc_open(uv_loop_t *loop, int fd, cb_initc_event_cb on_event,
                               cb_initc_closed_cb on_closed, void *arg);
uint32_t cb_initc_next_id(struct cb_initc *c);
/* Queue a finished frame (built with a request_id from cb_initc_next_id).
 * multi: the request has a reply stream ending with END or ERROR
 * (SUBSCRIBE). want_fds: number of fds the SPAWNED reply carries. Returns 0,
 * or -EPIPE when the connection is gone (cb is not called then). */
int cb_initc_send(struct cb_initc *c, struct cb_builder *b, bool multi, int want_fds,
                  cb_initc_reply_cb cb, void *arg);
/* Fire and forget: signal pid (and its process tree when tree) inside the
 * sandbox. Returns 0 or a negative errno when the connection is gone. */
int cb_initc_signal(struct cb_initc *c, uint32_t pid, int signo, bool tree);
/* Forget the callback of a pending request (its later frames are dropped). */
void cb_initc_cancel(struct cb_initc *c, uint32_t request_id);
bool cb_initc_alive(const struct cb_initc *c);
/* Close: pending callbacks get hdr == NULL; on_closed is NOT called. The
 * memory is released after libuv closed the handle. */
void cb_initc_close(struct cb_initc *c);

#endif
