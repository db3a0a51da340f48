/* preview_route.h — recognise preview-URL requests and their access token.
 *
 * Pure functions over untrusted request text (Host header, request target,
 * Cookie header): no I/O, no allocation except where a result string is
 * returned (then the caller frees it). Two ways lead to a sandbox port:
 *
 *   Host routing:  http://<port>-<sandbox>.<preview-domain>/<anything>
 *   Path routing:  /v1/sandboxes/<sandbox>/ports/<port>/proxy/<anything>
 *
 * <sandbox> is a sandbox id (sb_…) or name: 1..63 of [A-Za-z0-9_-]. Browsers
 * lower-case host names, so a name reached through a Host header arrives in
 * lower case; the lookup of names from the host route should ignore case.
 *
 * Token: a non-public port needs its token, given as the query parameter
 * cellbox_token (the daemon then sets a cookie and strips it before
 * proxying), the Cookie cellbox_token or the header X-Cellbox-Token.
 * Comparisons are constant-time.
 *
 * Return convention: 1 = matched, 0 = not this kind of request (route it
 * elsewhere), negative errno = it is this kind of request but malformed
 * (answer 400). */
#ifndef CB_DAEMON_PREVIEW_ROUTE_H
#define CB_DAEMON_PREVIEW_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CB_PREVIEW_LABEL_MAX 63 /* longest sandbox id or name */
#define CB_PREVIEW_SANDBOX_BUF (CB_PREVIEW_LABEL_MAX + 1)
#define CB_PREVIEW_TOKEN_PARAM "cellbox_token"
/* Longest token accepted from a request; real tokens are much shorter. */
#define CB_PREVIEW_TOKEN_MAX 256

/* Parse a Host header value (host[:port], ASCII) against the configured
 * preview domain (NULL or "" disables host routing → 0). The domain matches
 * case-insensitively; one trailing dot on either is ignored. On 1, *port is
 * 1..65535 and sandbox (sandbox_len >= CB_PREVIEW_SANDBOX_BUF) holds the
 * label as given. Returns -EINVAL for a host under the preview domain that is
 * not exactly one "<port>-<sandbox>" label (extra dots, port 0, 65536, 0123,
 * +1, bad characters, NUL, too long), -ENOSPC when sandbox is too small.
 * The _n variant takes the header as pointer + length (may hold NULs). */
int cb_preview_parse_host(const char *host_header, const char *preview_domain,
                          uint16_t *port, char *sandbox, size_t sandbox_len);
int cb_preview_parse_host_n(const char *host, size_t host_len, const char *preview_domain,
                            uint16_t *port, char *sandbox, size_t sandbox_len);

/* Parse a request target "/v1/sandboxes/<sandbox>/ports/<port>/proxy[/rest]
 * [?query]". On 1, *port and sandbox are set and *rest is a new string
 * (caller frees) that always begins with "/" and keeps the query string
 * ("/v1/…/proxy?a=1" → "/?a=1"). 0 when the target is not a proxy path
 * (another API route); -EINVAL when it is malformed (bad sandbox or port, a
 * control character, space or DEL anywhere in the target). */
int cb_preview_parse_path(const char *target, char *sandbox, size_t sandbox_len,
                          uint16_t *port, char **rest);

/* Split a request target at the first '?': *path_len is the length of the
 * path part, *query points after '?' (NULL when there is none). */
void cb_preview_split_target(const char *target, size_t *path_len, const char **query);

/* Find cellbox_token in a query string (the part after '?', without it).
 * On 1 the value (not percent-decoded; tokens are URL-safe) is copied to
 * token (token_len > its length) and *query_without, when not NULL, gets a
 * new string (caller frees) with the remaining parameters in their order,
 * possibly "". 0 when absent (*query_without untouched). -EINVAL when the
 * parameter appears twice or its value is empty or longer than
 * CB_PREVIEW_TOKEN_MAX; -ENOSPC when token is too small. */
int cb_preview_query_take_token(const char *query, char *token, size_t token_len,
                                char **query_without);

/* Does any cellbox_token cookie in a Cookie header equal expected? Every
 * such cookie is tried, because a sibling preview host under the same
 * domain can plant a decoy cookie ("cookie tossing"); planting one cannot
 * help an attacker who does not know the token. Returns true or false. */
bool cb_preview_cookie_has_token(const char *cookie_header, const char *expected);

/* The Cookie header without any cellbox_token cookie, so the token never
 * reaches the app inside the sandbox. New string (caller frees); "" when
 * nothing is left (the caller then drops the header). */
char *cb_preview_cookie_strip_token(const char *cookie_header);

/* Set-Cookie value for a token accepted from the query: host-only (no
 * Domain attribute, so sibling preview hosts never receive it), HttpOnly
 * (scripts of the previewed app cannot read it), SameSite=Lax, Path=/.
 * Returns its length or -ENOSPC; -EINVAL if the token has characters that
 * are not allowed in a cookie value. */
int cb_preview_format_cookie(const char *token, char *out, size_t outlen);

/* Constant-time token comparison: both sides are hashed with SHA-256 and the
 * digests compared with CRYPTO_memcmp, so neither the content nor the length
 * of expected leaks through timing. NULL never matches. */
bool cb_preview_token_equal(const char *expected, const char *given);

#endif
