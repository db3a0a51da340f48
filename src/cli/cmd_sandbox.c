/* cmd_sandbox.c — create, ls, info, rm, stop/start/pause/resume, keepalive, update. */
#include <getopt.h>
#include <string.h>

#include "cli.h"

enum {
    OPT_TEMPLATE = 256, OPT_TIER, OPT_CPU, OPT_MEMORY, OPT_DISK, OPT_TIMEOUT,
    OPT_IDLE_TIMEOUT, OPT_ON_IDLE, OPT_ENV, OPT_METADATA, OPT_NAME, OPT_WORKDIR,
    OPT_USER, OPT_SNAPSHOT, OPT_PIDS, OPT_NO_INTERNET, OPT_STATE,
};

const struct option cli_create_options[] = {
    {"template", required_argument, NULL, OPT_TEMPLATE},
    {"tier", required_argument, NULL, OPT_TIER},
    {"cpu", required_argument, NULL, OPT_CPU},
    {"memory", required_argument, NULL, OPT_MEMORY},
    {"disk", required_argument, NULL, OPT_DISK},
    {"pids", required_argument, NULL, OPT_PIDS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"idle-timeout", required_argument, NULL, OPT_IDLE_TIMEOUT},
    {"on-idle", required_argument, NULL, OPT_ON_IDLE},
    {"env", required_argument, NULL, OPT_ENV},
    {"metadata", required_argument, NULL, OPT_METADATA},
    {"name", required_argument, NULL, OPT_NAME},
    {"workdir", required_argument, NULL, OPT_WORKDIR},
    {"user", required_argument, NULL, OPT_USER},
    {"snapshot", required_argument, NULL, OPT_SNAPSHOT},
    {"no-internet", no_argument, NULL, OPT_NO_INTERNET},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};
const char cli_create_optstring[] = "+h";

const char cli_create_help[] =
    "  --template NAME      template (default: host)\n"
    "  --tier TIER          container | gvisor | microvm\n"
    "  --cpu N              CPUs (float)\n"
    "  --memory MIB         memory limit in MiB\n"
    "  --disk MIB           disk quota in MiB\n"
    "  --pids N             process limit\n"
    "  --timeout SECONDS    hard lifetime (0 = none)\n"
    "  --idle-timeout SECS  idle time before --on-idle applies\n"
    "  --on-idle ACTION     pause | standby | stop\n"
    "  --env K=V            environment (repeatable)\n"
    "  --metadata K=V       labels (repeatable)\n"
    "  --name NAME          unique name\n"
    "  --workdir DIR        working directory\n"
    "  --user USER          default user\n"
    "  --snapshot SNAP_ID   create from a snapshot\n"
    "  --no-internet        loopback-only network\n";

static json_t *object_field(json_t *body, const char *key)
{
    json_t *o = json_object_get(body, key);
    if (!o) {
        o = json_object();
        json_object_set_new(body, key, o);
    }
    return o;
}

static int number_field(json_t *body, const char *key, const char *arg, const char *what)
{
    double v;
    if (cli_parse_number(arg, what, &v) < 0)
        return -1;
    if (v == (double)(json_int_t)v)
        json_object_set_new(body, key, json_integer((json_int_t)v));
    else
        json_object_set_new(body, key, json_real(v));
    return 1;
}

int cli_create_option(json_t *body, int opt, const char *arg)
{
    static const struct {
        int opt;
        const char *key;
    } strings[] = {
        {OPT_TEMPLATE, "template"}, {OPT_TIER, "tier"},       {OPT_ON_IDLE, "on_idle"},
        {OPT_NAME, "name"},         {OPT_WORKDIR, "workdir"}, {OPT_USER, "user"},
        {OPT_SNAPSHOT, "snapshot"},
    };
    static const struct {
        int opt;
        const char *key, *what;
    } numbers[] = {
        {OPT_CPU, "cpu", "--cpu"},           {OPT_MEMORY, "memory_mb", "--memory"},
        {OPT_DISK, "disk_mb", "--disk"},     {OPT_PIDS, "pids", "--pids"},
        {OPT_TIMEOUT, "timeout", "--timeout"},
        {OPT_IDLE_TIMEOUT, "idle_timeout", "--idle-timeout"},
    };
    for (size_t i = 0; i < CB_ARRAY_SIZE(strings); i++)
        if (strings[i].opt == opt) {
            json_object_set_new(body, strings[i].key, json_string(arg));
            return 1;
        }
    for (size_t i = 0; i < CB_ARRAY_SIZE(numbers); i++)
        if (numbers[i].opt == opt)
            return number_field(body, numbers[i].key, arg, numbers[i].what);
    if (opt == OPT_ENV)
        return cli_parse_kv(object_field(body, "env"), arg, "--env") < 0 ? -1 : 1;
    if (opt == OPT_METADATA)
        return cli_parse_kv(object_field(body, "metadata"), arg, "--metadata") < 0 ? -1 : 1;
    if (opt == OPT_NO_INTERNET) {
        json_object_set_new(object_field(body, "network"), "internet", json_false());
        return 1;
    }
    return 0;
}

json_t *cli_create_sandbox(const struct cli_ctx *ctx, json_t *body, struct cb_error **err)
{
    if (!json_object_get(body, "template"))
        json_object_set_new(body, "template", json_string("host"));
    return cli_api_json(ctx, "POST", "/v1/sandboxes", body, err);
}

int cmd_create(struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *body = json_object();
    int opt, rc = CLI_EXIT_OK;
    optind = 0;
    while ((opt = getopt_long(argc, argv, cli_create_optstring, cli_create_options, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: cellbox create [OPTIONS]\nCreates a sandbox and prints its id.\n%s",
                   cli_create_help);
            goto out;
        }
        if (cli_create_option(body, opt, optarg) != 1) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    }
    if (optind < argc) {
        rc = cli_usage_error("create", "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    json_t *sb = cli_create_sandbox(ctx, body, &err);
    if (!sb) {
        rc = cli_report(err);
        goto out;
    }
    if (ctx->json)
        cli_print_json(sb);
    else
        printf("%s\n", json_string_value(json_object_get(sb, "id")));
    json_decref(sb);
out:
    json_decref(body);
    return rc;
}

/* ---- ls ---------------------------------------------------------------- */

static char *list_query(const char *state, json_t *metadata, const char *cursor)
{
    char *q = cb_xstrdup("/v1/sandboxes?limit=100");
    const char *key;
    json_t *v;
    if (state) {
        _cleanup_free_ char *enc = cli_url_encode(state);
        char *n = cb_xasprintf("%s&state=%s", q, enc);
        free(q);
        q = n;
    }
    json_object_foreach(metadata, key, v) {
        _cleanup_free_ char *ek = cli_url_encode(key);
        _cleanup_free_ char *ev = cli_url_encode(json_string_value(v));
        char *n = cb_xasprintf("%s&metadata.%s=%s", q, ek, ev);
        free(q);
        q = n;
    }
    if (cursor) {
        _cleanup_free_ char *enc = cli_url_encode(cursor);
        char *n = cb_xasprintf("%s&cursor=%s", q, enc);
        free(q);
        q = n;
    }
    return q;
}

/* Fetch every page into one array (new reference) or NULL with *err. */
static json_t *list_all(const struct cli_ctx *ctx, const char *state, json_t *metadata,
                        struct cb_error **err)
{
    json_t *all = json_array();
    _cleanup_free_ char *cursor = NULL;
    /* Bounded so a server that repeats its cursor cannot loop us forever. */
    for (int page = 0; page < 10000; page++) {
        _cleanup_free_ char *target = list_query(state, metadata, cursor);
        json_t *resp = cli_api_json(ctx, "GET", target, NULL, err);
        if (!resp) {
            json_decref(all);
            return NULL;
        }
        json_array_extend(all, json_object_get(resp, "items"));
        const char *next = json_string_value(json_object_get(resp, "next_cursor"));
        free(cursor);
        cursor = next && *next ? cb_xstrdup(next) : NULL;
        json_decref(resp);
        if (!cursor)
            break;
    }
    return all;
}

static void print_sandbox_table(json_t *items)
{
    static const char *const headers[] = {"ID", "NAME", "STATE", "TIER", "TEMPLATE", "CREATED"};
    static const char *const keys[] = {"id", "name", "state", "tier", "template", "created_at"};
    struct cli_table t;
    cli_table_init(&t, CB_ARRAY_SIZE(headers), headers);
    size_t i;
    json_t *sb;
    json_array_foreach(items, i, sb) {
        char *row[CB_ARRAY_SIZE(keys)];
        for (size_t k = 0; k < CB_ARRAY_SIZE(keys); k++)
            row[k] = strcmp(keys[k], "created_at") ? cli_json_text(sb, keys[k])
                                                   : cli_json_time(sb, keys[k]);
        cli_table_add(&t, (const char *const *)row);
        for (size_t k = 0; k < CB_ARRAY_SIZE(keys); k++)
            free(row[k]);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
}

int cmd_ls(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"state", required_argument, NULL, OPT_STATE},
        {"metadata", required_argument, NULL, OPT_METADATA},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    _cleanup_error_ struct cb_error *err = NULL;
    const char *state = NULL;
    json_t *metadata = json_object();
    int opt, rc = CLI_EXIT_OK;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: cellbox ls [--state STATE] [--metadata K=V]...\n"
                   "Lists sandboxes, optionally filtered by state and labels.\n");
            goto out;
        } else if (opt == OPT_STATE) {
            state = optarg;
        } else if (opt != OPT_METADATA || cli_parse_kv(metadata, optarg, "--metadata") < 0) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    }
    if (optind < argc) {
        rc = cli_usage_error("ls", "unexpected argument '%s'", argv[optind]);
        goto out;
    }
    json_t *items = list_all(ctx, state, metadata, &err);
    if (!items) {
        rc = cli_report(err);
        goto out;
    }
    if (ctx->json) {
        json_t *wrapped = json_pack("{s:o}", "items", items);
        cli_print_json(wrapped);
        json_decref(wrapped);
    } else {
        print_sandbox_table(items);
        json_decref(items);
    }
out:
    json_decref(metadata);
    return rc;
}

/* ---- commands taking one or more ids ------------------------------------ */

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    return 0;
}

int cmd_info(struct cli_ctx *ctx, int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: cellbox info ID\nShows a sandbox, including its usage.\n");
        return CLI_EXIT_OK;
    }
    if (argc != 2)
        return cli_usage_error("info", "expected exactly one sandbox id");
    _cleanup_free_ char *target = cli_sandbox_path(argv[1], NULL);
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *sb = cli_api_json(ctx, "GET", target, NULL, &err);
    if (!sb)
        return cli_report(err);
    if (ctx->json)
        cli_print_json(sb);
    else
        cli_print_object(sb, stdout);
    json_decref(sb);
    return CLI_EXIT_OK;
}

int cmd_rm(struct cli_ctx *ctx, int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: cellbox rm ID...\nDeletes sandboxes (kills every process, frees all "
               "resources).\n");
        return CLI_EXIT_OK;
    }
    if (argc < 2)
        return cli_usage_error("rm", "expected at least one sandbox id");
    int rc = CLI_EXIT_OK;
    for (int i = 1; i < argc; i++) {
        _cleanup_free_ char *target = cli_sandbox_path(argv[i], NULL);
        _cleanup_error_ struct cb_error *err = NULL;
        json_t *r = cli_api_json(ctx, "DELETE", target, NULL, &err);
        if (!r) {
            /* Keep going: one missing sandbox should not spare the others. */
            fprintf(stderr, "cellbox: %s: %s\n", argv[i], err ? err->message : "error");
            rc = CLI_EXIT_ERROR;
            continue;
        }
        json_decref(r);
        if (!ctx->json)
            printf("%s\n", argv[i]);
    }
    return rc;
}

static int post_action(struct cli_ctx *ctx, const char *id, const char *action, json_t *body)
{
    _cleanup_free_ char *suffix = cb_xasprintf("/%s", action);
    _cleanup_free_ char *target = cli_sandbox_path(id, suffix);
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *r = cli_api_json(ctx, "POST", target, body, &err);
    if (!r)
        return cli_report(err);
    if (ctx->json && json_is_null(r))
        printf("{}\n");
    else if (ctx->json)
        cli_print_json(r);
    else
        printf("%s\n", id);
    json_decref(r);
    return CLI_EXIT_OK;
}

int cmd_lifecycle(struct cli_ctx *ctx, int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: cellbox %s ID\n", argv[0]);
        return CLI_EXIT_OK;
    }
    if (argc != 2)
        return cli_usage_error(argv[0], "expected exactly one sandbox id");
    json_t *body = json_object();
    int rc = post_action(ctx, argv[1], argv[0], body);
    json_decref(body);
    return rc;
}

int cmd_keepalive(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    json_t *body = json_object();
    int opt, rc;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: cellbox keepalive ID --timeout SECONDS\n"
                   "Sets the sandbox to expire SECONDS from now.\n");
            rc = CLI_EXIT_OK;
            goto out;
        }
        if (opt != OPT_TIMEOUT || number_field(body, "timeout", optarg, "--timeout") < 0) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    }
    if (optind + 1 != argc || !json_object_get(body, "timeout")) {
        rc = cli_usage_error("keepalive", "expected ID and --timeout SECONDS");
        goto out;
    }
    rc = post_action(ctx, argv[optind], "keepalive", body);
out:
    json_decref(body);
    return rc;
}

/* ---- update: PATCH /v1/sandboxes/{id} ------------------------------------ */

int cmd_update(struct cli_ctx *ctx, int argc, char **argv)
{
    /* create's options that PATCH takes, spelled as create spells them */
    static const int wanted[] = {OPT_CPU,          OPT_MEMORY,  OPT_DISK,     OPT_PIDS, OPT_TIMEOUT,
                                 OPT_IDLE_TIMEOUT, OPT_ON_IDLE, OPT_METADATA, 'h'};
    struct option opts[CB_ARRAY_SIZE(wanted) + 1];
    size_t n = 0;
    for (const struct option *o = cli_create_options; o->name; o++)
        for (size_t i = 0; i < CB_ARRAY_SIZE(wanted); i++)
            if (o->val == wanted[i])
                opts[n++] = *o;
    opts[n] = (struct option){NULL, 0, NULL, 0};
    _cleanup_error_ struct cb_error *err = NULL;
    _cleanup_free_ char *target = NULL;
    json_t *body = json_object();
    int opt, rc = CLI_EXIT_OK;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: cellbox update ID [OPTIONS]\n"
                   "Changes a sandbox's limits (live), lifetime or labels.\n"
                   "  --cpu N              CPUs (float)\n"
                   "  --memory MIB         memory limit in MiB\n"
                   "  --disk MIB           disk quota in MiB (where the host changes it live)\n"
                   "  --pids N             process limit\n"
                   "  --timeout SECONDS    expire SECONDS from now (0 = never)\n"
                   "  --idle-timeout SECS  idle time before --on-idle applies (0 = never)\n"
                   "  --on-idle ACTION     pause | stop\n"
                   "  --metadata K=V       labels (repeatable; replaces all labels)\n");
            goto out;
        }
        /* Limits go in their own object; the rest as create names them. */
        json_t *into = opt == OPT_CPU || opt == OPT_MEMORY || opt == OPT_DISK || opt == OPT_PIDS
                           ? object_field(body, "limits")
                           : body;
        if (opt == '?' || cli_create_option(into, opt, optarg) != 1) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    }
    if (optind + 1 != argc || json_object_size(body) == 0) {
        rc = cli_usage_error("update", "expected ID and at least one change");
        goto out;
    }
    target = cli_sandbox_path(argv[optind], NULL);
    json_t *sb = cli_api_json(ctx, "PATCH", target, body, &err);
    if (!sb) {
        rc = cli_report(err);
        goto out;
    }
    if (ctx->json)
        cli_print_json(sb);
    else
        cli_print_object(sb, stdout);
    json_decref(sb);
out:
    json_decref(body);
    return rc;
}
