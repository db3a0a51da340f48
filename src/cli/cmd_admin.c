/* cmd_admin.c — `cellbox admin key create|ls|revoke`: API keys per tenant.
 * The admin routes answer on the unix socket (file permission = admin). */
#include <getopt.h>
#include <string.h>

#include "cli.h"

static const char admin_help[] =
    "usage: cellbox admin key create --tenant TENANT\n"
    "       cellbox admin key ls\n"
    "       cellbox admin key revoke KEY_ID\n"
    "Manages API keys for the TCP listener. The key itself is shown only once,\n"
    "by create.\n";

static int key_create(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"tenant", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *tenant = NULL;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "t:h", opts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(admin_help, stdout);
            return CLI_EXIT_OK;
        }
        if (opt != 't')
            return CLI_EXIT_USAGE;
        tenant = optarg;
    }
    if (!tenant || optind != argc)
        return cli_usage_error("admin key create", "expected --tenant TENANT");
    json_t *body = json_pack("{s:s}", "tenant", tenant);
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *r = cli_api_json(ctx, "POST", "/v1/admin/keys", body, &err);
    json_decref(body);
    if (!r)
        return cli_report(err);
    if (ctx->json) {
        cli_print_json(r);
    } else {
        _cleanup_free_ char *id = cli_json_text(r, "id");
        _cleanup_free_ char *key = cli_json_text(r, "key");
        printf("id:     %s\ntenant: %s\nkey:    %s\n", id, tenant, key);
    }
    json_decref(r);
    return CLI_EXIT_OK;
}

static int key_ls(struct cli_ctx *ctx)
{
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *r = cli_api_json(ctx, "GET", "/v1/admin/keys", NULL, &err);
    if (!r)
        return cli_report(err);
    if (ctx->json) {
        cli_print_json(r);
        json_decref(r);
        return CLI_EXIT_OK;
    }
    static const char *const headers[] = {"ID", "TENANT", "CREATED"};
    struct cli_table t;
    cli_table_init(&t, CB_ARRAY_SIZE(headers), headers);
    json_t *items = json_is_array(r) ? r : json_object_get(r, "items");
    size_t i;
    json_t *k;
    json_array_foreach(items, i, k) {
        char *row[] = {cli_json_text(k, "id"), cli_json_text(k, "tenant"),
                       cli_json_time(k, "created_at")};
        cli_table_add(&t, (const char *const *)row);
        for (size_t c = 0; c < CB_ARRAY_SIZE(row); c++)
            free(row[c]);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
    json_decref(r);
    return CLI_EXIT_OK;
}

static int key_revoke(struct cli_ctx *ctx, const char *id)
{
    _cleanup_free_ char *enc = cli_url_encode(id);
    _cleanup_free_ char *target = cb_xasprintf("/v1/admin/keys/%s", enc);
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *r = cli_api_json(ctx, "DELETE", target, NULL, &err);
    if (!r)
        return cli_report(err);
    json_decref(r);
    if (!ctx->json)
        printf("%s\n", id);
    return CLI_EXIT_OK;
}

int cmd_admin(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 3 || strcmp(argv[1], "key") != 0) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            fputs(admin_help, stdout);
            return CLI_EXIT_OK;
        }
        return cli_usage_error("admin", "expected 'key create|ls|revoke'");
    }
    const char *verb = argv[2];
    if (!strcmp(verb, "create"))
        return key_create(ctx, argc - 2, argv + 2);
    if (!strcmp(verb, "--help") || !strcmp(verb, "-h")) {
        fputs(admin_help, stdout);
        return CLI_EXIT_OK;
    }
    if (argc > 3 && (!strcmp(argv[3], "--help") || !strcmp(argv[3], "-h"))) {
        fputs(admin_help, stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(verb, "ls") && argc == 3)
        return key_ls(ctx);
    if (!strcmp(verb, "revoke") && argc == 4)
        return key_revoke(ctx, argv[3]);
    return cli_usage_error("admin", "expected 'key create --tenant T', 'key ls' or "
                                    "'key revoke ID'");
}
