/* http.h — the HTTP/1.1 server of cellboxd (libuv + http-parser).
 *
 * One connection carries one request at a time: keep-alive and pipelining
 * are served in order (the parser pauses after each complete request and
 * resumes when its response has been sent). Request bodies are buffered up
 * to limits.max_body, or — for routes that ask for it — handed to the
 * handler as they arrive so uploads never sit whole in memory. Every size a
 * client controls is capped: request line, header bytes and count, body,
 * bytes read ahead of the parser; a connection idle too long is closed. A
 * slow client never blocks the loop: writes are queued and handlers that
 * stream watch cb_http_write_queue() and wait for on_drain.
 *
 * Lifetime: a struct cb_http_req belongs to the server. A handler must end
 * every request exactly once with cb_http_respond*() or
 * cb_http_stream_end(); until then the request stays valid even if the
 * client went away (req->aborted is set and on_abort called, writes become
 * no-ops). */
#ifndef CB_DAEMON_HTTP_H
#define CB_DAEMON_HTTP_H

#include <http_parser.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "error.h"
#include "router.h"

#define CB_HTTP_MAX_HEADERS_HARD 128

struct cb_http_limits {
    size_t max_header_bytes;   /* request line + headers; 431 beyond */
    size_t max_headers;        /* count; 431 beyond (<= CB_HTTP_MAX_HEADERS_HARD) */
    size_t max_url;            /* 414 beyond */
    size_t max_body;           /* buffered bodies; 413 beyond */
    uint64_t max_stream_body;  /* streamed uploads; 413 beyond */
    uint64_t idle_timeout_ms;  /* close connections idle this long */
    size_t max_connections;
    size_t stream_high_water;  /* write-queue bytes at which streams pause */
};
void cb_http_limits_default(struct cb_http_limits *l);

enum cb_http_disposition {
    CB_HTTP_BUFFER = 0,   /* buffer the body, then on_request */
    CB_HTTP_STREAM = 1,   /* on_request now; body goes to req->on_body */
    CB_HTTP_ANSWERED = 2, /* on_headers already responded; body is discarded */
};

enum cb_stream_format { CB_FMT_NONE = 0, CB_FMT_SSE, CB_FMT_NDJSON };

struct cb_http_server;
struct cb_http_conn;

/* A libuv stream that is a unix-socket pipe or a TCP socket: what listeners,
 * connections, WebSocket viewers and proxied sides hold. */
union cb_stream_handle {
    uv_pipe_t pipe;
    uv_tcp_t tcp;
    uv_handle_t handle;
    uv_stream_t stream;
};

struct cb_http_req {
    struct cb_http_conn *conn;
    struct cb_http_server *server;
    void *ctx; /* the server's context */

    enum http_method method;
    const char *method_name;
    char *url;   /* raw request target */
    char *path;  /* url before '?' (not decoded; the router decodes segments) */
    char *query; /* after '?', or "" */
    uint64_t max_body; /* buffered-body cap for this request, raised by
                          on_headers for some routes; 0 = limits.max_body */
    int nheaders;
    char *header_names[CB_HTTP_MAX_HEADERS_HARD];
    char *header_values[CB_HTTP_MAX_HEADERS_HARD];
    char *body;
    size_t body_len;
    uint64_t content_length; /* UINT64_MAX when not given (chunked) */
    bool keep_alive;
    bool via_tcp;

    struct cb_route_match match;
    char *tenant;   /* set by authentication */
    bool is_admin;

    uint64_t started_ns;
    int status;     /* of the response, for logs and metrics */

    bool headers_sent, chunked, finished, aborted, message_complete;
    enum cb_stream_format format;
    uint64_t seq;   /* last event seq written by cb_http_stream_event */

    /* Handler hooks (all optional). */
    void (*on_abort)(struct cb_http_req *req); /* client went away */
    void (*on_drain)(struct cb_http_req *req); /* write queue fell below half the high water */
    /* Streamed bodies: return 0 to go on, 1 to pause the parser until
     * cb_http_body_resume(), -1 after having responded (rest is discarded).
     * data is only valid during the call. */
    int (*on_body)(struct cb_http_req *req, const char *data, size_t len);
    void (*on_body_end)(struct cb_http_req *req);
    void *data; /* the handler's state */
};

struct cb_http_server {
    uv_loop_t *loop;
    struct cb_http_limits limits;
    void *ctx;
    enum cb_http_disposition (*on_headers)(struct cb_http_req *req);
    void (*on_request)(struct cb_http_req *req);
    void (*on_done)(struct cb_http_req *req); /* after the response, before free */
    size_t nconns;
    struct cb_http_conn *conns; /* list, for shutdown */
};

void cb_http_server_init(struct cb_http_server *srv, uv_loop_t *loop, void *ctx);
/* Listen on a unix socket (replacing a stale one) with the given mode, or on
 * "host:port". The handles are owned by the server until cb_http_server_close. */
int cb_http_listen_unix(struct cb_http_server *srv, const char *path, int mode,
                        struct cb_error **err);
int cb_http_listen_tcp(struct cb_http_server *srv, const char *host_port,
                       struct cb_error **err);
/* Serve an already connected stream fd (tests, fuzzing harnesses). */
int cb_http_serve_fd(struct cb_http_server *srv, int fd, bool via_tcp);
/* Stop listening and close every connection (in-flight requests abort). */
void cb_http_server_close(struct cb_http_server *srv);

/* Request accessors. */
const char *cb_http_header(const struct cb_http_req *req, const char *name);
/* Decoded query parameter (malloc'd) or NULL when absent/invalid. */
char *cb_http_query(const struct cb_http_req *req, const char *name);
/* Query flag: "1", "true", "yes" → true. */
bool cb_http_query_bool(const struct cb_http_req *req, const char *name);
/* Streaming format the client asked for in Accept (SSE or NDJSON). */
enum cb_stream_format cb_http_accept_stream(const struct cb_http_req *req);

/* Responses (each ends the request). body may be NULL. */
void cb_http_respond(struct cb_http_req *req, int status, const char *content_type,
                     const char *extra_headers, const void *body, size_t len);
/* Steals body (NULL → empty body, e.g. 204). */
void cb_http_respond_json(struct cb_http_req *req, int status, json_t *body);
void cb_http_respond_error(struct cb_http_req *req, enum cb_error_kind kind,
                           const char *fmt, ...) CB_PRINTF(3, 4);
void cb_http_respond_cb_error(struct cb_http_req *req, const struct cb_error *e);
/* Error with an HTTP status outside the API kinds (405, 414, 431). */
void cb_http_respond_status(struct cb_http_req *req, int status, const char *code,
                            const char *message, const char *extra_headers);

/* Streaming responses: content_length < 0 → chunked. */
void cb_http_stream_begin(struct cb_http_req *req, int status, const char *content_type,
                          int64_t content_length, const char *extra_headers);
/* Begin an SSE or NDJSON event stream in req->format. */
void cb_http_stream_begin_events(struct cb_http_req *req, enum cb_stream_format fmt);
void cb_http_stream_write(struct cb_http_req *req, const void *data, size_t len);
/* Write one event (steals ev); adds "seq" = ++req->seq unless ev has one. */
void cb_http_stream_event(struct cb_http_req *req, json_t *ev);
void cb_http_stream_end(struct cb_http_req *req);
/* End a streamed response that cannot be completed (its source failed
 * mid-body): the connection is closed after the queued bytes, so the client
 * sees a truncated response instead of a wrong one. Ends the request. */
void cb_http_stream_abort(struct cb_http_req *req);
/* The TCP peer's address as text; -ENOTSOCK on the unix socket. */
int cb_http_peer_addr(const struct cb_http_req *req, char *out, size_t outlen);
size_t cb_http_write_queue(const struct cb_http_req *req);
/* Is the write queue past the high-water mark (stop producing)? */
bool cb_http_congested(const struct cb_http_req *req);
/* Resume a body paused by on_body returning 1 (never from inside on_body). */
void cb_http_body_resume(struct cb_http_req *req);

/* Protocol switch (WebSocket): take the request's connection away from the
 * HTTP server. Call after deciding to answer 101 and before writing anything;
 * not from inside on_headers (the request must have been dispatched from a
 * callback after on_request returned). On success the request is finished
 * (status 101 for logs/metrics), the server closes its handle, and the caller
 * owns *fd (a CLOEXEC duplicate of the socket, still non-blocking) plus the
 * bytes the client already sent past the request (*rest, malloc'd, may be
 * NULL with *rest_len 0). The caller writes the 101 response itself.
 * Returns 0, -EBUSY (headers already sent, request finished or aborted, or
 * the parser is running), or a negative errno from dup. */
int cb_http_upgrade(struct cb_http_req *req, int *fd, char **rest, size_t *rest_len);

const char *cb_http_status_text(int status);

#endif
