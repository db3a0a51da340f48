/* preview_route.c — preview-URL host/path parsing and token checks.
 *
 * Everything here reads attacker-controlled text. Lengths are explicit, every
 * accepted character is listed (never "anything but …"), and a request that
 * names the preview domain but is malformed is rejected instead of falling
 * through to the API router, so a crafted Host cannot reach API routes on
 * the preview origin. */
#include "preview_route.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define PROXY_PREFIX "/v1/sandboxes/"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Sandbox ids (sb_<hex>) and names: [A-Za-z0-9_-]. '.' would let a label
 * span DNS levels, '%' or '/' would alter the paths we build from it. */
static bool is_label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' ||
           c == '-';
}

static bool is_valid_label(const char *s, size_t n)
{
    if (n == 0 || n > CB_PREVIEW_LABEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_label_char(s[i]))
            return false;
    return true;
}

/* Decimal port 1..65535, digits only: no sign, no leading zero, so every
 * port has exactly one spelling and "03000" cannot alias "3000". */
static int parse_port(const char *s, size_t n, uint16_t *port)
{
    if (n == 0 || n > 5 || s[0] == '0')
        return -EINVAL;
    unsigned value = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -EINVAL;
        value = value * 10 + (unsigned)(s[i] - '0');
    }
    if (value > 65535)
        return -EINVAL;
    *port = (uint16_t)value;
    return 0;
}

static int copy_label(const char *s, size_t n, char *out, size_t outlen)
{
    if (outlen <= n)
        return -ENOSPC;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

/* ---- Host routing ------------------------------------------------------- */

static bool equal_nocase(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

/* "<port>-<sandbox>" */
static int parse_preview_label(const char *label, size_t n, uint16_t *port, char *sandbox,
                               size_t sandbox_len)
{
    const char *dash = memchr(label, '-', n);
    if (!dash)
        return -EINVAL;
    size_t port_len = (size_t)(dash - label);
    const char *name = dash + 1;
    size_t name_len = n - port_len - 1;
    uint16_t p;
    if (parse_port(label, port_len, &p) < 0 || !is_valid_label(name, name_len))
        return -EINVAL;
    int r = copy_label(name, name_len, sandbox, sandbox_len);
    if (r < 0)
        return r;
    *port = p;
    return 1;
}

int cb_preview_parse_host_n(const char *host, size_t host_len, const char *preview_domain,
                            uint16_t *port, char *sandbox, size_t sandbox_len)
{
    if (!preview_domain || !*preview_domain || !host)
        return 0;
    size_t dlen = strlen(preview_domain);
    if (preview_domain[dlen - 1] == '.')
        dlen--;
    /* A bracketed IPv6 literal is never a preview host. Otherwise the host
     * name ends at the first ':' (host names have none). */
    if (host_len > 0 && host[0] == '[')
        return 0;
    const char *colon = memchr(host, ':', host_len);
    size_t hlen = colon ? (size_t)(colon - host) : host_len;
    if (hlen > 0 && host[hlen - 1] == '.')
        hlen--;
    /* Under the preview domain means "<something>.<domain>". */
    if (dlen == 0 || hlen <= dlen || host[hlen - dlen - 1] != '.' ||
        !equal_nocase(host + hlen - dlen, preview_domain, dlen))
        return 0;
    if (colon) {
        /* Whatever port the client connected to; digits only. */
        const char *pstr = colon + 1;
        size_t plen = host_len - (size_t)(pstr - host);
        if (plen > 5)
            return -EINVAL;
        for (size_t i = 0; i < plen; i++)
            if (!is_digit(pstr[i]))
                return -EINVAL;
    }
    size_t label_len = hlen - dlen - 1;
    if (label_len == 0 || memchr(host, '.', label_len))
        return -EINVAL; /* ".domain" or a deeper name: not ours to guess */
    return parse_preview_label(host, label_len, port, sandbox, sandbox_len);
}

int cb_preview_parse_host(const char *host_header, const char *preview_domain,
                          uint16_t *port, char *sandbox, size_t sandbox_len)
{
    if (!host_header)
        return 0;
    return cb_preview_parse_host_n(host_header, strlen(host_header), preview_domain, port,
                                   sandbox, sandbox_len);
}

/* ---- Path routing ------------------------------------------------------- */

void cb_preview_split_target(const char *target, size_t *path_len, const char **query)
{
    const char *q = strchr(target, '?');
    *path_len = q ? (size_t)(q - target) : strlen(target);
    *query = q ? q + 1 : NULL;
}

/* Control characters, space and DEL never belong in a request target; we
 * rebuild a request line from rest, where CR/LF would inject headers. */
static bool is_clean_target(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s == 0x7f)
            return false;
    return true;
}

/* Next path segment from *p (up to '/' or end); advances past the '/'. */
static bool next_segment(const char **p, const char *end, const char **seg,
                         size_t *seg_len, bool *slash)
{
    if (*p > end)
        return false;
    const char *s = memchr(*p, '/', (size_t)(end - *p));
    *seg = *p;
    *seg_len = s ? (size_t)(s - *p) : (size_t)(end - *p);
    *slash = s != NULL;
    *p = s ? s + 1 : end + 1;
    return true;
}

static bool segment_is(const char *seg, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(seg, word, n) == 0;
}

int cb_preview_parse_path(const char *target, char *sandbox, size_t sandbox_len,
                          uint16_t *port, char **rest)
{
    size_t path_len;
    const char *query;
    cb_preview_split_target(target, &path_len, &query);
    const char *end = target + path_len;
    if (path_len < strlen(PROXY_PREFIX) ||
        memcmp(target, PROXY_PREFIX, strlen(PROXY_PREFIX)) != 0)
        return 0;
    const char *p = target + strlen(PROXY_PREFIX);
    const char *id, *ports, *port_str, *proxy;
    size_t id_len, ports_len, port_len, proxy_len;
    bool slash;
    if (!next_segment(&p, end, &id, &id_len, &slash) || !slash ||
        !next_segment(&p, end, &ports, &ports_len, &slash) || !slash ||
        !segment_is(ports, ports_len, "ports") ||
        !next_segment(&p, end, &port_str, &port_len, &slash) || !slash ||
        !next_segment(&p, end, &proxy, &proxy_len, &slash) ||
        !segment_is(proxy, proxy_len, "proxy"))
        return 0; /* another API route */
    uint16_t p_num;
    if (!is_clean_target(target) || !is_valid_label(id, id_len) ||
        parse_port(port_str, port_len, &p_num) < 0)
        return -EINVAL;
    int r = copy_label(id, id_len, sandbox, sandbox_len);
    if (r < 0)
        return r;
    /* proxy + path_rest: "" → "/", "/x" → "/x"; the query is kept. */
    const char *path_rest = proxy + proxy_len;
    size_t path_rest_len = (size_t)(end - path_rest);
    *rest = cb_xasprintf("%s%.*s%s%s", path_rest_len ? "" : "/", (int)path_rest_len,
                         path_rest, query ? "?" : "", query ? query : "");
    *port = p_num;
    return 1;
}

/* ---- tokens ------------------------------------------------------------- */

bool cb_preview_token_equal(const char *expected, const char *given)
{
    if (!expected || !given || !*expected)
        return false;
    unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
    unsigned int alen = 0, blen = 0;
    /* Hashing first makes the comparison independent of both lengths; the
     * digest compare itself is constant-time. */
    if (!EVP_Digest(expected, strlen(expected), a, &alen, EVP_sha256(), NULL) ||
        !EVP_Digest(given, strlen(given), b, &blen, EVP_sha256(), NULL) || alen != blen)
        return false;
    return CRYPTO_memcmp(a, b, alen) == 0;
}

/* Append piece to a string under construction, with sep between pieces. */
static void append_piece(char *out, size_t *used, const char *sep, const char *piece,
                         size_t n)
{
    if (*used > 0) {
        memcpy(out + *used, sep, strlen(sep));
        *used += strlen(sep);
    }
    memcpy(out + *used, piece, n);
    *used += n;
    out[*used] = '\0';
}

static bool param_is_token(const char *param, size_t n, const char **value,
                           size_t *value_len)
{
    size_t name_len = strlen(CB_PREVIEW_TOKEN_PARAM);
    if (n < name_len + 1 || memcmp(param, CB_PREVIEW_TOKEN_PARAM, name_len) != 0 ||
        param[name_len] != '=')
        return false;
    *value = param + name_len + 1;
    *value_len = n - name_len - 1;
    return true;
}

int cb_preview_query_take_token(const char *query, char *token, size_t token_len,
                                char **query_without)
{
    if (!query)
        return 0;
    size_t qlen = strlen(query);
    _cleanup_free_ char *kept = cb_xmalloc(qlen + 1);
    size_t used = 0;
    kept[0] = '\0';
    const char *value = NULL;
    size_t value_len = 0;
    int found = 0;
    for (const char *p = query;;) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        const char *v;
        size_t vlen;
        if (param_is_token(p, n, &v, &vlen)) {
            if (found++)
                return -EINVAL; /* two tokens: ambiguous, refuse */
            value = v;
            value_len = vlen;
        } else if (n > 0) {
            append_piece(kept, &used, "&", p, n);
        }
        if (!amp)
            break;
        p = amp + 1;
    }
    if (!found)
        return 0;
    if (value_len == 0 || value_len > CB_PREVIEW_TOKEN_MAX)
        return -EINVAL;
    if (token_len <= value_len)
        return -ENOSPC;
    memcpy(token, value, value_len);
    token[value_len] = '\0';
    if (query_without)
        *query_without = steal_ptr(kept);
    return 1;
}

/* Iterate "name=value; name2=value2" pairs: trims whitespace around each. */
static const char *next_cookie(const char *p, const char **pair, size_t *n)
{
    while (*p == ' ' || *p == '\t')
        p++;
    const char *semi = strchr(p, ';');
    size_t len = semi ? (size_t)(semi - p) : strlen(p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    *pair = p;
    *n = len;
    return semi ? semi + 1 : NULL;
}

bool cb_preview_cookie_has_token(const char *cookie_header, const char *expected)
{
    if (!cookie_header || !expected)
        return false;
    bool match = false;
    for (const char *p = cookie_header; p;) {
        const char *pair, *v;
        size_t n, vlen;
        p = next_cookie(p, &pair, &n);
        if (!param_is_token(pair, n, &v, &vlen) || vlen > CB_PREVIEW_TOKEN_MAX)
            continue;
        if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
            v++;
            vlen -= 2;
        }
        char given[CB_PREVIEW_TOKEN_MAX + 1];
        memcpy(given, v, vlen);
        given[vlen] = '\0';
        /* No early exit: every candidate costs the same. */
        match |= cb_preview_token_equal(expected, given);
    }
    return match;
}

char *cb_preview_cookie_strip_token(const char *cookie_header)
{
    if (!cookie_header)
        return cb_xstrdup("");
    /* "a;b" becomes "a; b": the separator may grow, never beyond 2x. */
    char *out = cb_xmalloc(2 * strlen(cookie_header) + 1);
    size_t used = 0;
    out[0] = '\0';
    for (const char *p = cookie_header; p;) {
        const char *pair, *v;
        size_t n, vlen;
        p = next_cookie(p, &pair, &n);
        if (n == 0 || param_is_token(pair, n, &v, &vlen))
            continue;
        append_piece(out, &used, "; ", pair, n);
    }
    return out;
}

/* Tokens are generated URL-safe; refusing anything else keeps the header
 * free of ';', ',', quotes, spaces and CR/LF (header injection). */
static bool is_token_char(char c)
{
    return is_label_char(c) || c == '.' || c == '~';
}

int cb_preview_format_cookie(const char *token, char *out, size_t outlen)
{
    size_t n = strlen(token);
    if (n == 0 || n > CB_PREVIEW_TOKEN_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!is_token_char(token[i]))
            return -EINVAL;
    int r = snprintf(out, outlen, "%s=%s; Path=/; HttpOnly; SameSite=Lax",
                     CB_PREVIEW_TOKEN_PARAM, token);
    if (r < 0 || (size_t)r >= outlen)
        return -ENOSPC;
    return r;
}
