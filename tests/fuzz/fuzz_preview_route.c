/* fuzz_preview_route.c — libFuzzer target for the preview-URL parsers.
 *
 * The first byte picks the parser, the rest is the untrusted text. Each
 * result is checked against what callers rely on: a matched host or path
 * yields a port in 1..65535 and a sandbox label of [A-Za-z0-9_-]{1,63};
 * a proxy rest begins with "/" and holds no control character; a stripped
 * cookie header no longer carries the token.
 *
 *   clang -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Isrc/lib \
 *     -Isrc/daemon tests/fuzz/fuzz_preview_route.c src/daemon/preview_route.c \
 *     src/lib/util.c src/lib/error.c -lwslay -lcrypto -o /tmp/fuzz_preview
 *   /tmp/fuzz_preview tests/fuzz/corpus/preview_route */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "preview_route.h"
#include "util.h"

static void check_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CB_PREVIEW_LABEL_MAX)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                    "0123456789_-",
                    s[i]))
            abort();
}

static void fuzz_host(const uint8_t *data, size_t size)
{
    uint16_t port = 0;
    char sb[CB_PREVIEW_SANDBOX_BUF];
    int r = cb_preview_parse_host_n((const char *)data, size, "preview.example.com",
                                    &port, sb, sizeof(sb));
    if (r == 1) {
        if (port == 0)
            abort();
        check_label(sb);
    } else if (r != 0 && r != -EINVAL) {
        abort();
    }
}

static void fuzz_path(const char *text)
{
    uint16_t port = 0;
    char sb[CB_PREVIEW_SANDBOX_BUF];
    char *rest = NULL;
    int r = cb_preview_parse_path(text, sb, sizeof(sb), &port, &rest);
    if (r == 1) {
        if (port == 0 || !rest || rest[0] != '/')
            abort();
        check_label(sb);
        for (const char *p = rest; *p; p++)
            if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
                abort();
        free(rest);
    } else if (rest || (r != 0 && r != -EINVAL)) {
        abort();
    }
}

static void fuzz_query(const char *text)
{
    char token[CB_PREVIEW_TOKEN_MAX + 1];
    char *rest = NULL;
    int r = cb_preview_query_take_token(text, token, sizeof(token), &rest);
    if (r == 1) {
        if (!rest || strlen(rest) > strlen(text) || token[0] == '\0')
            abort();
        /* A token value may contain '&'-free text only. */
        if (strchr(token, '&'))
            abort();
        free(rest);
    } else if (rest) {
        abort();
    }
}

static void fuzz_cookie(const char *text)
{
    (void)cb_preview_cookie_has_token(text, "s3cret");
    char *stripped = cb_preview_cookie_strip_token(text);
    /* Nothing named exactly cellbox_token survives stripping. */
    if (strncmp(stripped, "cellbox_token=", 14) == 0 ||
        strstr(stripped, "; cellbox_token="))
        abort();
    free(stripped);
    char out[512];
    int r = cb_preview_format_cookie(text, out, sizeof(out));
    if (r > 0 && (strpbrk(text, ";\r\n \",") != NULL))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t which = data[0] % 4;
    data++;
    size--;
    if (which == 0) {
        fuzz_host(data, size);
        return 0;
    }
    char *text = cb_xstrndup((const char *)data, size);
    if (which == 1)
        fuzz_path(text);
    else if (which == 2)
        fuzz_query(text);
    else
        fuzz_cookie(text);
    free(text);
    return 0;
}
