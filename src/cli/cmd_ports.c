/* cmd_ports.c — expose, unexpose, ports: preview URLs of sandbox ports.
 *
 * An exposed port is reached through cellboxd (no host port is opened);
 * unless it is public, a request needs the port's token: the header
 * X-Cellbox-Token, or ?cellbox_token= once (it sets a cookie). */
#include <getopt.h>
#include <stdbool.h>
#include <string.h>

#include "cli.h"

#define MAX_PORT 65535

static int parse_port(const char *cmd, const char *arg, long *out)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (!*arg || *end || v < 1 || v > MAX_PORT) {
        cli_usage_error(cmd, "PORT must be 1..%d, got '%s'", MAX_PORT, arg);
        return -1;
    }
    *out = v;
    return 0;
}

/* The URL with the token as a query parameter: one click opens it in a
 * browser, which then keeps the token as a cookie. Owned. */
static char *url_with_token(const char *url, const char *token)
{
    _cleanup_free_ char *enc = cli_url_encode(token);
    return cb_xasprintf("%s%scellbox_token=%s", url, strchr(url, '?') ? "&" : "?", enc);
}

/* The API's base URL when talking TCP ("http://h:p", no trailing slash),
 * "" on the unix socket (a path URL is then relative to the TCP listener). */
static char *api_base(const struct cli_ctx *ctx)
{
    const char *h = ctx->ep.host;
    if (!h || !*h)
        return cb_xstrdup("");
    size_t n = strlen(h);
    while (n && h[n - 1] == '/')
        n--;
    return strstr(h, "://") ? cb_xstrndup(h, n) : cb_xasprintf("http://%.*s", (int)n, h);
}

static void print_exposed(const struct cli_ctx *ctx, json_t *p)
{
    const char *path_url = json_string_value(json_object_get(p, "path_url"));
    const char *url = json_string_value(json_object_get(p, "url"));
    const char *token = json_string_value(json_object_get(p, "token"));
    bool is_public = json_is_true(json_object_get(p, "public"));
    printf("%s\n", url ? url : "-");
    if (!is_public && token && *token && url) {
        _cleanup_free_ char *open = url_with_token(url, token);
        printf("token: %s\n", token);
        printf("open:  %s\n", open);
    }
    size_t ul = url ? strlen(url) : 0, pl = path_url ? strlen(path_url) : 0;
    bool same = url && path_url && ul >= pl && strcmp(url + ul - pl, path_url) == 0;
    if (path_url && !same) { /* the same server under the API's own address */
        _cleanup_free_ char *base = path_url[0] == '/' ? api_base(ctx) : cb_xstrdup("");
        printf("path:  %s%s\n", base, path_url);
    }
}

int cmd_expose(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"public", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt, is_public = 0;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: cellbox expose ID PORT [--public]\n"
                   "Exposes a port of the sandbox (a server listening inside it, also on\n"
                   "127.0.0.1) and prints its preview URL. Unless --public, requests need\n"
                   "the printed token (header X-Cellbox-Token, or ?cellbox_token= once,\n"
                   "which sets a cookie); the 'open:' line has it ready for a browser.\n");
            return CLI_EXIT_OK;
        }
        if (opt != 'p')
            return CLI_EXIT_USAGE;
        is_public = 1;
    }
    if (argc - optind != 2)
        return cli_usage_error("expose", "expected a sandbox id and a port");
    long port;
    if (parse_port("expose", argv[optind + 1], &port) < 0)
        return CLI_EXIT_USAGE;
    _cleanup_free_ char *target = cli_sandbox_path(argv[optind], "/ports");
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *body = json_pack("{s:I,s:b}", "port", (json_int_t)port, "public", is_public);
    json_t *r = cli_api_json(ctx, "POST", target, body, &err);
    json_decref(body);
    if (!r)
        return cli_report(err);
    if (ctx->json)
        cli_print_json(r);
    else
        print_exposed(ctx, r);
    json_decref(r);
    return CLI_EXIT_OK;
}

int cmd_unexpose(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: cellbox unexpose ID PORT\n"
               "Stops exposing the port: its URL stops answering and its token is revoked.\n");
        return CLI_EXIT_OK;
    }
    if (argc != 3)
        return cli_usage_error("unexpose", "expected a sandbox id and a port");
    long port;
    if (parse_port("unexpose", argv[2], &port) < 0)
        return CLI_EXIT_USAGE;
    _cleanup_free_ char *suffix = cb_xasprintf("/ports/%ld", port);
    _cleanup_free_ char *target = cli_sandbox_path(argv[1], suffix);
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *r = cli_api_json(ctx, "DELETE", target, NULL, &err);
    if (!r)
        return cli_report(err);
    if (ctx->json && !json_is_null(r))
        cli_print_json(r);
    json_decref(r);
    return CLI_EXIT_OK;
}

static void print_ports_table(json_t *items)
{
    static const char *const headers[] = {"PORT", "PUBLIC", "URL", "TOKEN"};
    struct cli_table t;
    cli_table_init(&t, CB_ARRAY_SIZE(headers), headers);
    size_t i;
    json_t *p;
    json_array_foreach(items, i, p) {
        char *row[] = {cli_json_text(p, "port"),
                       cb_xstrdup(json_is_true(json_object_get(p, "public")) ? "yes" : "no"),
                       cli_json_text(p, "url"), cli_json_text(p, "token")};
        cli_table_add(&t, (const char *const *)row);
        for (size_t k = 0; k < CB_ARRAY_SIZE(row); k++)
            free(row[k]);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
}

int cmd_ports(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: cellbox ports ID\nLists the sandbox's exposed ports with their URLs "
               "and tokens.\n");
        return CLI_EXIT_OK;
    }
    if (argc != 2)
        return cli_usage_error("ports", "expected exactly one sandbox id");
    _cleanup_free_ char *target = cli_sandbox_path(argv[1], "/ports");
    return cli_list(ctx, target, print_ports_table);
}
