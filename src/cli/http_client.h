/* http_client.h — the CLI's small HTTP/1.1 client.
 *
 * One request per connection: the CLI opens a unix socket (default) or a TCP
 * connection, writes one request with a Content-Length body, and parses the
 * response with http-parser (Content-Length, chunked, or read-until-close).
 * Bodies of successful responses can be streamed to a callback as they
 * arrive (NDJSON event streams, file downloads); error bodies are always
 * collected so the caller can show the API's message. */
#ifndef CB_CLI_HTTP_CLIENT_H
#define CB_CLI_HTTP_CLIENT_H

#include <stddef.h>

#include "error.h"

/* Where the daemon is. Strings are borrowed, not owned. */
struct cli_endpoint {
    const char *socket_path; /* used when host is NULL */
    const char *host;        /* "http://H:P" or "H:P" for TCP */
    const char *api_key;     /* sent as "Authorization: Bearer" when set */
};

/* Receives a chunk of a successful response body; return < 0 to abort. */
typedef int (*http_body_cb)(void *userdata, const char *data, size_t len);
/* Called when a blocking read or write was interrupted by a signal;
 * return 0 to keep going, < 0 to abort the request. */
typedef int (*http_interrupt_cb)(void *userdata);

struct http_request {
    const char *method;
    const char *target;       /* path and query, already percent-encoded */
    const char *content_type; /* of the body; NULL when there is none */
    const char *accept;       /* NULL: application/json */
    const void *body;
    size_t body_len;
    http_body_cb on_body;           /* NULL: collect the body in the response */
    http_interrupt_cb on_interrupt; /* NULL: retry on EINTR */
    /* When >= 0, a self-pipe a signal handler writes to: while waiting for
     * the response the client also polls it and, when it is readable, calls
     * on_interrupt. This closes the race of a signal arriving just before a
     * blocking read (which EINTR alone would miss). */
    int interrupt_fd;
    void *userdata;
};

struct http_response {
    int status;
    char *content_type; /* owned, may be NULL */
    char *body;         /* owned, NUL-terminated; collected bodies only */
    size_t body_len;
};

/* Bodies collected in memory are capped so a misbehaving server cannot make
 * the CLI allocate without bound; streamed bodies have no cap. */
#define CLI_HTTP_MAX_COLLECTED_BODY (256u * 1024 * 1024)

/* Send the request and read the whole response. Returns 0 when a response
 * (of any status) was received, < 0 with *err on transport errors. */
int cli_http_do(const struct cli_endpoint *ep, const struct http_request *req,
                struct http_response *resp, struct cb_error **err);
void cli_http_response_clear(struct http_response *resp);

/* Percent-encode a string for a query value (owned result). */
char *cli_url_encode(const char *s);

/* A connected stream socket (CLOEXEC, blocking) to the endpoint: the unix
 * socket or the TCP address. Returns the fd, < 0 with *err. Used by
 * protocols that take the connection over after the request (WebSocket). */
int cli_http_connect(const struct cli_endpoint *ep, struct cb_error **err);
/* The Host header value the client sends for this endpoint (owned). */
char *cli_http_host_header(const struct cli_endpoint *ep);

#endif
