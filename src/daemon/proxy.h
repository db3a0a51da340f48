/* proxy.h — the preview-URL reverse proxy of cellboxd.
 *
 * A request reaches a port inside a sandbox two ways (preview_route.h):
 * by Host header "<port>-<sandbox>.<preview-domain>" on the TCP listener, or
 * by path "/v1/sandboxes/<sandbox>/ports/<port>/proxy/<rest>" on any
 * listener. The daemon connects to 127.0.0.1:<port> from a socket created
 * inside the sandbox's network namespace, so no host port is ever opened
 * and servers bound to the sandbox's loopback work.
 *
 * Requests are parsed by the HTTP server (http.h), so its caps on request
 * lines, headers and idle connections apply; bodies stream both ways with
 * back-pressure (reading one side stops while the other side's write queue
 * is above a cap). Each proxied request uses its own upstream connection.
 * A 101 answer to an Upgrade request turns the connection into a raw byte
 * pipe (WebSocket).
 *
 * Access to a non-public port needs its token (X-Cellbox-Token header,
 * cellbox_token cookie, or ?cellbox_token= which redirects and sets the
 * cookie) or an API key of the owner tenant; cellbox's own credentials are
 * removed before the request goes to the sandbox. */
#ifndef CB_DAEMON_PROXY_H
#define CB_DAEMON_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon.h"
#include "router.h"

/* The route proxied requests are dispatched to (public: the proxy checks
 * access itself), and its handler. */
extern const struct cb_route cb_proxy_route;
void cb_proxy_handle(struct cb_http_req *req);

/* Is this request for the proxy? True for a Host header under the preview
 * domain on the TCP listener and for the path form (also when malformed:
 * the handler then answers 400). Called from on_headers, so cheap and pure. */
bool cb_proxy_wants(struct cb_http_req *req);

/* Close every open proxied connection to (sandbox_id, port) — port 0 means
 * every port of that sandbox. Used when a port is unexposed so its token
 * stops working for connections already open too. */
void cb_proxy_close_port(struct cb_daemon *d, const char *sandbox_id, uint16_t port);

/* The preview URL of a port (malloc'd): the Host form when a TCP listener
 * and a preview domain are configured, else the path form on the TCP
 * listener, else the path form alone (for the unix socket). */
char *cb_proxy_url(struct cb_daemon *d, const char *sandbox_id, uint16_t port);

#endif
