/* main.c — cellbox, the command-line client of cellboxd.
 *
 * Global options (--socket, --host, --api-key, --json) may appear anywhere
 * before a "--"; the rest of the command line goes to the command. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define CLI_VERSION "0.1.0"
#define DEFAULT_SOCKET "/run/cellbox/cellbox.sock"

static int cmd_version(struct cli_ctx *ctx, int argc, char **argv);
static int cmd_help(struct cli_ctx *ctx, int argc, char **argv);

static const struct command {
    const char *name;
    cli_command_fn fn;
    const char *summary;
} commands[] = {
    {"create", cmd_create, "create a sandbox and print its id"},
    {"ls", cmd_ls, "list sandboxes"},
    {"info", cmd_info, "show one sandbox"},
    {"rm", cmd_rm, "delete sandboxes"},
    {"stop", cmd_lifecycle, "stop a sandbox (filesystem kept)"},
    {"start", cmd_lifecycle, "start a stopped sandbox"},
    {"pause", cmd_lifecycle, "freeze every process of a sandbox"},
    {"resume", cmd_lifecycle, "resume a paused sandbox"},
    {"keepalive", cmd_keepalive, "extend a sandbox's lifetime"},
    {"update", cmd_update, "change a sandbox's limits (live), lifetime or labels"},
    {"exec", cmd_exec, "run a command in a sandbox, streaming its output"},
    {"run", cmd_run, "create a sandbox, run one command, delete it"},
    {"ps", cmd_ps, "list a sandbox's processes"},
    {"logs", cmd_logs, "print (or follow) a process's output"},
    {"kill", cmd_kill, "signal or kill a process"},
    {"cp", cmd_cp, "copy files or directories in or out (ID:/path)"},
    {"cat", cmd_cat, "print a file from a sandbox"},
    {"write", cmd_write, "write stdin to a file in a sandbox"},
    {"ls-files", cmd_ls_files, "list a directory in a sandbox"},
    {"shell", cmd_shell, "open a terminal in a sandbox and attach (detach: Ctrl-])"},
    {"attach", cmd_attach, "attach to a running terminal (scrollback replayed)"},
    {"pty", cmd_pty, "list (pty ls) or end (pty kill) a sandbox's terminals"},
    {"expose", cmd_expose, "expose a port and print its preview URL"},
    {"unexpose", cmd_unexpose, "stop exposing a port (revokes its token)"},
    {"ports", cmd_ports, "list a sandbox's exposed ports"},
    {"admin", cmd_admin, "manage API keys (admin key create|ls|revoke)"},
    {"version", cmd_version, "print the client and server versions"},
    {"help", cmd_help, "show help"},
};

static void print_usage(FILE *out)
{
    fprintf(out, "usage: cellbox [--socket PATH | --host URL --api-key KEY] [--json] "
                 "COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < CB_ARRAY_SIZE(commands); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nglobal options:\n"
                 "  --socket PATH   unix socket of cellboxd (CELLBOX_SOCKET, default %s)\n"
                 "  --host URL      talk TCP to http://HOST:PORT (CELLBOX_HOST)\n"
                 "  --api-key KEY   bearer key for --host (CELLBOX_API_KEY)\n"
                 "  --json          machine-readable output\n"
                 "\n'cellbox COMMAND --help' describes a command.\n",
            DEFAULT_SOCKET);
}

static int cmd_help(struct cli_ctx *ctx, int argc, char **argv)
{
    print_usage(stdout);
    return CLI_EXIT_OK;
}

static int cmd_version(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: cellbox version\nPrints the CLI version and, when cellboxd answers, "
               "its version.\n");
        return CLI_EXIT_OK;
    }
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *info = cli_api_json(ctx, "GET", "/v1/info", NULL, &err);
    if (ctx->json) {
        json_t *out = json_pack("{s:s, s:O?}", "client", CLI_VERSION, "server", info);
        cli_print_json(out);
        json_decref(out);
    } else {
        printf("client: %s\n", CLI_VERSION);
        if (info) {
            _cleanup_free_ char *v = cli_json_text(info, "version");
            printf("server: %s\n", v);
        } else {
            printf("server: unreachable (%s)\n", err ? err->message : "?");
        }
    }
    json_decref(info);
    return CLI_EXIT_OK;
}

/* Take a global option at argv[*i] (with its value) if it is one. Returns 1
 * when consumed, 0 when not a global option, -1 on a missing value. */
static int take_global(struct cli_ctx *ctx, int argc, char **argv, int *i)
{
    static const struct {
        const char *name;
        size_t offset;
    } valued[] = {
        {"--socket", offsetof(struct cli_endpoint, socket_path)},
        {"--host", offsetof(struct cli_endpoint, host)},
        {"--api-key", offsetof(struct cli_endpoint, api_key)},
    };
    const char *a = argv[*i];
    if (!strcmp(a, "--json")) {
        ctx->json = 1;
        return 1;
    }
    for (size_t k = 0; k < CB_ARRAY_SIZE(valued); k++) {
        size_t n = strlen(valued[k].name);
        const char **slot = (const char **)((char *)&ctx->ep + valued[k].offset);
        if (!strncmp(a, valued[k].name, n) && a[n] == '=') {
            *slot = a + n + 1;
            return 1;
        }
        if (!strcmp(a, valued[k].name)) {
            if (*i + 1 >= argc)
                return -1;
            *slot = argv[++*i];
            return 1;
        }
    }
    return 0;
}

/* Remove global options from argv (up to a "--"); returns the new argc. */
static int extract_globals(struct cli_ctx *ctx, int argc, char **argv)
{
    int out = 1, i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        int rc = take_global(ctx, argc, argv, &i);
        if (rc < 0) {
            fprintf(stderr, "cellbox: %s needs a value\n", argv[i]);
            return -1;
        }
        if (rc == 0)
            argv[out++] = argv[i];
    }
    for (; i < argc; i++)
        argv[out++] = argv[i];
    argv[out] = NULL;
    return out;
}

static void init_ctx(struct cli_ctx *ctx)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->ep.socket_path = getenv("CELLBOX_SOCKET");
    if (!ctx->ep.socket_path || !*ctx->ep.socket_path)
        ctx->ep.socket_path = DEFAULT_SOCKET;
    ctx->ep.host = getenv("CELLBOX_HOST");
    ctx->ep.api_key = getenv("CELLBOX_API_KEY");
}

int main(int argc, char **argv)
{
    struct cli_ctx ctx;
    init_ctx(&ctx);
    argc = extract_globals(&ctx, argc, argv);
    if (argc < 0)
        return CLI_EXIT_USAGE;
    if (argc < 2) {
        print_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h"))
        name = "help";
    if (!strcmp(name, "--version"))
        name = "version";
    for (size_t i = 0; i < CB_ARRAY_SIZE(commands); i++)
        if (!strcmp(name, commands[i].name))
            return commands[i].fn(&ctx, argc - 1, argv + 1);
    fprintf(stderr, "cellbox: unknown command '%s'\n", name);
    print_usage(stderr);
    return CLI_EXIT_USAGE;
}
