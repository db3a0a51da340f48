/* test_preview_route.c — preview host/path parsing and token helpers. */
#include <string.h>

#include "preview_route.h"
#include "runner.h"
#include "util.h"

#define DOMAIN "preview.example.com"

struct host_case {
    const char *host;
    int result;
    uint16_t port;
    const char *sandbox;
};

static const struct host_case HOST_CASES[] = {
    /* valid */
    {"3000-sb_0123abcd.preview.example.com", 1, 3000, "sb_0123abcd"},
    {"1-a.preview.example.com", 1, 1, "a"},
    {"65535-my-app.preview.example.com", 1, 65535, "my-app"},
    {"8080-MyBox.PREVIEW.Example.COM", 1, 8080, "MyBox"}, /* label as given */
    {"3000-sb_x.preview.example.com:8443", 1, 3000, "sb_x"},
    {"3000-sb_x.preview.example.com:", 1, 3000, "sb_x"},
    {"3000-sb_x.preview.example.com.", 1, 3000, "sb_x"}, /* absolute name */
    {"3000-sb_x.preview.example.com.:80", 1, 3000, "sb_x"},
    {"3000-a-b-c.preview.example.com", 1, 3000, "a-b-c"}, /* first '-' splits */
    {"3000--x.preview.example.com", 1, 3000, "-x"},
    /* not a preview host: route to the API */
    {"localhost", 0, 0, NULL},
    {"localhost:8080", 0, 0, NULL},
    {"preview.example.com", 0, 0, NULL}, /* the apex itself */
    {"preview.example.com:80", 0, 0, NULL},
    {"3000-sb_x.example.com", 0, 0, NULL},
    {"3000-sb_x.preview.example.com.evil.org", 0, 0, NULL},
    {"3000-sb_xpreview.example.com", 0, 0, NULL}, /* no dot before domain */
    {"3000-sb_x.xpreview.example.com", 0, 0, NULL},
    {"[::1]:8080", 0, 0, NULL},
    {"", 0, 0, NULL},
    {"example.com", 0, 0, NULL},
    /* under the preview domain but malformed */
    {"0-sb_x.preview.example.com", -EINVAL, 0, NULL},
    {"65536-sb_x.preview.example.com", -EINVAL, 0, NULL},
    {"99999-sb_x.preview.example.com", -EINVAL, 0, NULL},
    {"123456-sb_x.preview.example.com", -EINVAL, 0, NULL},
    {"0123-sb_x.preview.example.com", -EINVAL, 0, NULL},
    {"+123-sb_x.preview.example.com", -EINVAL, 0, NULL},
    {"-3000-sb_x.preview.example.com", -EINVAL, 0, NULL},
    {"3000-.preview.example.com", -EINVAL, 0, NULL},
    {"3000.preview.example.com", -EINVAL, 0, NULL},
    {"-sb_x.preview.example.com", -EINVAL, 0, NULL},
    {"abc-sb_x.preview.example.com", -EINVAL, 0, NULL},
    {".preview.example.com", -EINVAL, 0, NULL},
    {"a.3000-sb_x.preview.example.com", -EINVAL, 0, NULL},
    {"3000-sb_x..preview.example.com", -EINVAL, 0, NULL},
    {"3000-sb%41.preview.example.com", -EINVAL, 0, NULL},
    {"3000-sb x.preview.example.com", -EINVAL, 0, NULL},
    {"3000-sb_x.preview.example.com:80a", -EINVAL, 0, NULL},
    {"3000-sb_x.preview.example.com:123456", -EINVAL, 0, NULL},
    {"3000-sb_x.preview.example.com:80:81", -EINVAL, 0, NULL},
    {"3000-s\xc3\xa9.preview.example.com", -EINVAL, 0, NULL},
};

TEST(preview_host_table)
{
    for (size_t i = 0; i < CB_ARRAY_SIZE(HOST_CASES); i++) {
        const struct host_case *c = &HOST_CASES[i];
        uint16_t port = 0;
        char sandbox[CB_PREVIEW_SANDBOX_BUF] = "";
        int r = cb_preview_parse_host(c->host, DOMAIN, &port, sandbox, sizeof(sandbox));
        if (r != c->result)
            FAIL("host \"%s\": got %d, want %d", c->host, r, c->result);
        if (r == 1 && (port != c->port || strcmp(sandbox, c->sandbox) != 0))
            FAIL("host \"%s\": got %u/%s, want %u/%s", c->host, port, sandbox, c->port,
                 c->sandbox);
    }
}

TEST(preview_host_domain_forms)
{
    uint16_t port;
    char sb[CB_PREVIEW_SANDBOX_BUF];
    ASSERT_EQ(cb_preview_parse_host("3000-x.preview.example.com", "Preview.Example.Com.",
                                    &port, sb, sizeof(sb)),
              1);
    /* No preview domain configured: host routing is off. */
    ASSERT_EQ(
        cb_preview_parse_host("3000-x.preview.example.com", NULL, &port, sb, sizeof(sb)),
        0);
    ASSERT_EQ(
        cb_preview_parse_host("3000-x.preview.example.com", "", &port, sb, sizeof(sb)),
        0);
    ASSERT_EQ(
        cb_preview_parse_host("3000-x.preview.example.com", ".", &port, sb, sizeof(sb)),
        0);
    ASSERT_EQ(cb_preview_parse_host(NULL, DOMAIN, &port, sb, sizeof(sb)), 0);
    /* Single-label domain (e.g. "localhost" in development). */
    ASSERT_EQ(cb_preview_parse_host("5173-dev.localhost:8080", "localhost", &port, sb,
                                    sizeof(sb)),
              1);
    ASSERT_EQ(port, 5173);
    ASSERT_STREQ(sb, "dev");
}

TEST(preview_host_long_labels)
{
    char host[512], sb[CB_PREVIEW_SANDBOX_BUF];
    uint16_t port;
    char name[80];
    memset(name, 'a', sizeof(name));
    name[63] = '\0';
    snprintf(host, sizeof(host), "3000-%s." DOMAIN, name);
    ASSERT_EQ(cb_preview_parse_host(host, DOMAIN, &port, sb, sizeof(sb)), 1);
    ASSERT_EQ(strlen(sb), 63);
    /* The caller's buffer is checked. */
    ASSERT_EQ(cb_preview_parse_host(host, DOMAIN, &port, sb, 63), -ENOSPC);
    name[64] = '\0';
    name[63] = 'a';
    snprintf(host, sizeof(host), "3000-%s." DOMAIN, name);
    ASSERT_EQ(cb_preview_parse_host(host, DOMAIN, &port, sb, sizeof(sb)), -EINVAL);
    /* A very long host under the domain is malformed, never truncated. */
    char huge[8192];
    memset(huge, 'b', sizeof(huge));
    memcpy(huge, "3000-", 5);
    snprintf(huge + sizeof(huge) - sizeof(DOMAIN) - 1, sizeof(DOMAIN) + 1, "." DOMAIN);
    ASSERT_EQ(cb_preview_parse_host(huge, DOMAIN, &port, sb, sizeof(sb)), -EINVAL);
}

TEST(preview_host_embedded_nul)
{
    uint16_t port;
    char sb[CB_PREVIEW_SANDBOX_BUF];
    static const char in_label[] = "3000-sb\0x.preview.example.com";
    ASSERT_EQ(cb_preview_parse_host_n(in_label, sizeof(in_label) - 1, DOMAIN, &port, sb,
                                      sizeof(sb)),
              -EINVAL);
    static const char in_domain[] = "3000-sb.preview\0example.com";
    ASSERT_EQ(cb_preview_parse_host_n(in_domain, sizeof(in_domain) - 1, DOMAIN, &port, sb,
                                      sizeof(sb)),
              0);
    static const char in_port[] = "3000-sb.preview.example.com:8\0";
    ASSERT_EQ(cb_preview_parse_host_n(in_port, sizeof(in_port) - 1, DOMAIN, &port, sb,
                                      sizeof(sb)),
              -EINVAL);
    /* As a C string the header simply ends at the NUL. */
    ASSERT_EQ(cb_preview_parse_host(in_label, DOMAIN, &port, sb, sizeof(sb)), 0);
}

/* ---- path routing ------------------------------------------------------- */

struct path_case {
    const char *target;
    int result;
    const char *sandbox;
    uint16_t port;
    const char *rest;
};

static const struct path_case PATH_CASES[] = {
    {"/v1/sandboxes/sb_1/ports/3000/proxy/", 1, "sb_1", 3000, "/"},
    {"/v1/sandboxes/sb_1/ports/3000/proxy", 1, "sb_1", 3000, "/"},
    {"/v1/sandboxes/sb_1/ports/3000/proxy?a=1", 1, "sb_1", 3000, "/?a=1"},
    {"/v1/sandboxes/my-app/ports/80/proxy/x/y.js?v=2&w", 1, "my-app", 80,
     "/x/y.js?v=2&w"},
    {"/v1/sandboxes/sb_1/ports/3000/proxy//double", 1, "sb_1", 3000, "//double"},
    {"/v1/sandboxes/sb_1/ports/3000/proxy/a?b=/c/d", 1, "sb_1", 3000, "/a?b=/c/d"},
    {"/v1/sandboxes/sb_1/ports/3000/proxy/../../x", 1, "sb_1", 3000,
     "/../../x"}, /* the app inside the sandbox resolves its own paths */
    /* other API routes */
    {"/v1/sandboxes", 0, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1", 0, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/ports", 0, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/ports/3000", 0, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/ports/3000/", 0, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/ports/3000/proxyx", 0, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/files?path=/ports/1/proxy", 0, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/ports?x=/3000/proxy", 0, NULL, 0, NULL},
    {"/v2/sandboxes/sb_1/ports/3000/proxy", 0, NULL, 0, NULL},
    {"/V1/sandboxes/sb_1/ports/3000/proxy", 0, NULL, 0, NULL},
    {"", 0, NULL, 0, NULL},
    /* proxy paths that are malformed */
    {"/v1/sandboxes//ports/3000/proxy", -EINVAL, NULL, 0, NULL},
    {"/v1/sandboxes/../ports/3000/proxy", -EINVAL, NULL, 0, NULL},
    {"/v1/sandboxes/sb%5F1/ports/3000/proxy", -EINVAL, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/ports/0/proxy", -EINVAL, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/ports/65536/proxy", -EINVAL, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/ports/03000/proxy", -EINVAL, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/ports//proxy", -EINVAL, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/ports/3000/proxy/a\r\nX: y", -EINVAL, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/ports/3000/proxy/a b", -EINVAL, NULL, 0, NULL},
    {"/v1/sandboxes/sb_1/ports/3000/proxy/?\x7f", -EINVAL, NULL, 0, NULL},
};

TEST(preview_path_table)
{
    for (size_t i = 0; i < CB_ARRAY_SIZE(PATH_CASES); i++) {
        const struct path_case *c = &PATH_CASES[i];
        char sb[CB_PREVIEW_SANDBOX_BUF] = "";
        uint16_t port = 0;
        _cleanup_free_ char *rest = NULL;
        int r = cb_preview_parse_path(c->target, sb, sizeof(sb), &port, &rest);
        if (r != c->result)
            FAIL("target \"%s\": got %d, want %d", c->target, r, c->result);
        if (r != 1) {
            if (rest)
                FAIL("target \"%s\": rest set on %d", c->target, r);
            continue;
        }
        if (strcmp(sb, c->sandbox) != 0 || port != c->port || strcmp(rest, c->rest) != 0)
            FAIL("target \"%s\": got %s/%u/%s", c->target, sb, port, rest);
    }
}

TEST(preview_split_target)
{
    size_t len;
    const char *query;
    cb_preview_split_target("/a/b?x=1?y", &len, &query);
    ASSERT_EQ(len, 4);
    ASSERT_STREQ(query, "x=1?y");
    cb_preview_split_target("/a/b", &len, &query);
    ASSERT_EQ(len, 4);
    ASSERT(query == NULL);
}

/* ---- tokens ------------------------------------------------------------- */

TEST(preview_query_token)
{
    char token[64];
    char *rest = NULL;
    ASSERT_EQ(cb_preview_query_take_token("a=1&cellbox_token=abc123&b=2", token,
                                          sizeof(token), &rest),
              1);
    ASSERT_STREQ(token, "abc123");
    ASSERT_STREQ(rest, "a=1&b=2");
    free(rest);
    rest = NULL;

    ASSERT_EQ(cb_preview_query_take_token("cellbox_token=t", token, sizeof(token), &rest),
              1);
    ASSERT_STREQ(token, "t");
    ASSERT_STREQ(rest, "");
    free(rest);
    rest = NULL;

    /* Absent: untouched. Similar names are other parameters. */
    ASSERT_EQ(cb_preview_query_take_token("a=1&xcellbox_token=1&cellbox_token", token,
                                          sizeof(token), &rest),
              0);
    ASSERT(rest == NULL);
    ASSERT_EQ(cb_preview_query_take_token("", token, sizeof(token), &rest), 0);
    ASSERT_EQ(cb_preview_query_take_token(NULL, token, sizeof(token), &rest), 0);

    /* Malformed. */
    ASSERT_EQ(cb_preview_query_take_token("cellbox_token=", token, sizeof(token), &rest),
              -EINVAL);
    ASSERT_EQ(cb_preview_query_take_token("cellbox_token=a&cellbox_token=b", token,
                                          sizeof(token), &rest),
              -EINVAL);
    ASSERT_EQ(cb_preview_query_take_token("cellbox_token=0123456789", token, 10, &rest),
              -ENOSPC);
    char big[CB_PREVIEW_TOKEN_MAX + 32] = "cellbox_token=";
    memset(big + strlen(big), 'x', CB_PREVIEW_TOKEN_MAX + 1);
    char huge_token[CB_PREVIEW_TOKEN_MAX + 8];
    ASSERT_EQ(cb_preview_query_take_token(big, huge_token, sizeof(huge_token), &rest),
              -EINVAL);
    ASSERT(rest == NULL);

    /* query_without may be NULL. */
    ASSERT_EQ(
        cb_preview_query_take_token("&&cellbox_token=z&&", token, sizeof(token), NULL),
        1);
    ASSERT_STREQ(token, "z");
}

TEST(preview_token_equal_constant_time_helper)
{
    ASSERT(cb_preview_token_equal("abc", "abc"));
    ASSERT(!cb_preview_token_equal("abc", "abd"));
    ASSERT(!cb_preview_token_equal("abc", "abcd"));
    ASSERT(!cb_preview_token_equal("abc", "ab"));
    ASSERT(!cb_preview_token_equal("abc", ""));
    ASSERT(!cb_preview_token_equal("", ""));
    ASSERT(!cb_preview_token_equal(NULL, "abc"));
    ASSERT(!cb_preview_token_equal("abc", NULL));
}

TEST(preview_cookie_token)
{
    ASSERT(cb_preview_cookie_has_token("cellbox_token=s3cret", "s3cret"));
    ASSERT(cb_preview_cookie_has_token("a=1; cellbox_token=s3cret; b=2", "s3cret"));
    ASSERT(cb_preview_cookie_has_token("a=1;cellbox_token=\"s3cret\"", "s3cret"));
    /* A decoy planted by a sibling preview host does not hide the real one. */
    ASSERT(cb_preview_cookie_has_token("cellbox_token=decoy; cellbox_token=s3cret",
                                       "s3cret"));
    ASSERT(!cb_preview_cookie_has_token("cellbox_token=decoy", "s3cret"));
    ASSERT(!cb_preview_cookie_has_token("Cellbox_Token=s3cret", "s3cret"));
    ASSERT(!cb_preview_cookie_has_token("xcellbox_token=s3cret", "s3cret"));
    ASSERT(!cb_preview_cookie_has_token("cellbox_token=s3cretX", "s3cret"));
    ASSERT(!cb_preview_cookie_has_token("cellbox_token=", "s3cret"));
    ASSERT(!cb_preview_cookie_has_token("", "s3cret"));
    ASSERT(!cb_preview_cookie_has_token(NULL, "s3cret"));
    ASSERT(!cb_preview_cookie_has_token("cellbox_token=", ""));
}

TEST(preview_cookie_strip)
{
    _cleanup_free_ char *a = cb_preview_cookie_strip_token("a=1; cellbox_token=x;b=2");
    ASSERT_STREQ(a, "a=1; b=2");
    _cleanup_free_ char *b = cb_preview_cookie_strip_token("cellbox_token=x");
    ASSERT_STREQ(b, "");
    _cleanup_free_ char *c = cb_preview_cookie_strip_token("a;b;c;d");
    ASSERT_STREQ(c, "a; b; c; d"); /* grows: buffer sized for it */
    _cleanup_free_ char *d = cb_preview_cookie_strip_token(NULL);
    ASSERT_STREQ(d, "");
}

TEST(preview_format_cookie)
{
    char out[512];
    int n = cb_preview_format_cookie("abc_DEF-1.2~", out, sizeof(out));
    ASSERT(n > 0);
    ASSERT_STREQ(out, "cellbox_token=abc_DEF-1.2~; Path=/; HttpOnly; "
                      "SameSite=Lax");
    ASSERT(strstr(out, "Domain") == NULL); /* host-only */
    ASSERT_EQ(cb_preview_format_cookie("a;b", out, sizeof(out)), -EINVAL);
    ASSERT_EQ(cb_preview_format_cookie("a\r\nSet-Cookie: x", out, sizeof(out)), -EINVAL);
    ASSERT_EQ(cb_preview_format_cookie("", out, sizeof(out)), -EINVAL);
    ASSERT_EQ(cb_preview_format_cookie("abc", out, 10), -ENOSPC);
}
