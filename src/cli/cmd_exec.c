/* cmd_exec.c — exec, run, ps, logs, kill.
 *
 * exec streams a process's output live (NDJSON events, one per line) and
 * exits with the process's exit code (128 + signal when it was killed), so a
 * shell script can use `cellbox exec` like a local command. */
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <string.h>

#include "cli.h"

enum { OPT_CWD = 300, OPT_ENV, OPT_USER, OPT_TIMEOUT, OPT_NO_STDIN, OPT_FOLLOW, OPT_SIGNAL };

/* An output line longer than this is refused: the server splits output into
 * bounded events, so a longer line means a broken stream. */
#define MAX_EVENT_LINE (64u * 1024 * 1024)

static volatile sig_atomic_t got_sigint;
/* Self-pipe: the handler writes a byte so the HTTP client's poll wakes up
 * even when SIGINT lands between two reads. */
static int sigint_pipe[2] = {-1, -1};

static void on_sigint(int sig)
{
    int saved = errno;
    got_sigint = 1;
    if (sigint_pipe[1] >= 0 && write(sigint_pipe[1], "", 1) < 0) {
        /* pipe full: a wake-up is already pending */
    }
    errno = saved;
}

/* Without SA_RESTART, so a blocking call returns EINTR and the client can
 * forward the interrupt to the sandboxed process. */
static void install_sigint(void)
{
    if (sigint_pipe[0] < 0 && pipe2(sigint_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        sigint_pipe[0] = sigint_pipe[1] = -1;
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

/* ---- the event stream ---------------------------------------------------- */

struct stream_state {
    const struct cli_ctx *ctx;
    const char *sandbox_id;
    char *line;
    size_t len, cap;
    char *pid;         /* process id, once an event told us */
    int have_exit;
    int exit_code;     /* what the CLI exits with */
    int sent_interrupt;
    char *error;       /* an "error" event's message */
};

static const struct {
    const char *name;
    int number;
} signal_names[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"ILL", SIGILL},
    {"ABRT", SIGABRT}, {"FPE", SIGFPE},   {"KILL", SIGKILL}, {"SEGV", SIGSEGV},
    {"PIPE", SIGPIPE}, {"ALRM", SIGALRM}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
    {"USR2", SIGUSR2}, {"BUS", SIGBUS},   {"XCPU", SIGXCPU}, {"SYS", SIGSYS},
};

/* The API may report a signal as a number or a name ("KILL", "SIGKILL"). */
static int signal_number(json_t *v)
{
    if (json_is_integer(v))
        return (int)json_integer_value(v);
    const char *s = json_string_value(v);
    if (!s || !*s)
        return 0;
    if (!strncmp(s, "SIG", 3))
        s += 3;
    for (size_t i = 0; i < CB_ARRAY_SIZE(signal_names); i++)
        if (!strcmp(s, signal_names[i].name))
            return signal_names[i].number;
    return atoi(s);
}

static int write_data(int fd, json_t *ev)
{
    const char *text = json_string_value(json_object_get(ev, "data"));
    if (text)
        return cb_write_all(fd, text, strlen(text));
    const char *b64 = json_string_value(json_object_get(ev, "data_b64"));
    if (!b64)
        return 0;
    size_t n;
    _cleanup_free_ unsigned char *raw = cli_base64_decode(b64, &n);
    return raw ? cb_write_all(fd, raw, n) : 0;
}

static void record_exit(struct stream_state *st, json_t *ev)
{
    int sig = signal_number(json_object_get(ev, "signal"));
    json_t *code = json_object_get(ev, "exit_code");
    st->have_exit = 1;
    if (sig > 0)
        st->exit_code = 128 + sig;
    else if (json_is_integer(code))
        st->exit_code = (int)(json_integer_value(code) & 0xff);
    else
        st->exit_code = CLI_EXIT_ERROR;
}

static void record_pid(struct stream_state *st, json_t *ev)
{
    json_t *pid = json_object_get(ev, "pid");
    if (st->pid || !pid)
        return;
    if (json_is_integer(pid))
        st->pid = cb_xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(pid));
    else if (json_is_string(pid))
        st->pid = cb_xstrdup(json_string_value(pid));
}

static int handle_event(struct stream_state *st, json_t *ev)
{
    const char *type = json_string_value(json_object_get(ev, "type"));
    record_pid(st, ev);
    if (!type)
        return 0;
    if (!strcmp(type, "stdout"))
        return write_data(STDOUT_FILENO, ev);
    if (!strcmp(type, "stderr"))
        return write_data(STDERR_FILENO, ev);
    if (!strcmp(type, "exit"))
        record_exit(st, ev);
    else if (!strcmp(type, "error")) {
        json_t *e = json_object_get(ev, "error");
        const char *msg = json_string_value(json_object_get(e ? e : ev, "message"));
        free(st->error);
        st->error = cb_xstrdup(msg ? msg : "stream error");
    }
    return 0;
}

/* One line of NDJSON (or an SSE "data:" line: the same events). */
static int handle_line(struct stream_state *st, char *line, size_t len)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
        line[--len] = '\0';
    if (!strncmp(line, "data:", 5)) {
        line += 5;
        len -= 5;
    } else if (len == 0 || line[0] == ':' || !strncmp(line, "event:", 6) ||
               !strncmp(line, "id:", 3)) {
        return 0;
    }
    json_t *ev = json_loadb(line, len, 0, NULL);
    if (!ev)
        return 0; /* not an event (keep-alive noise): skip it */
    int rc = handle_event(st, ev);
    json_decref(ev);
    return rc;
}

static int stream_body_cb(void *userdata, const char *data, size_t n)
{
    struct stream_state *st = userdata;
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            if (st->len == st->cap)
                st->line = cb_xrealloc(st->line, ++st->cap);
            st->line[st->len] = '\0';
            if (handle_line(st, st->line, st->len) < 0)
                return -1;
            st->len = 0;
            continue;
        }
        if (st->len + 2 > MAX_EVENT_LINE)
            return -1;
        if (st->len + 2 > st->cap) {
            st->cap = st->cap ? st->cap * 2 : 4096;
            st->line = cb_xrealloc(st->line, st->cap);
        }
        st->line[st->len++] = data[i];
    }
    return 0;
}

/* Ctrl-C: the first one is forwarded to the process as SIGINT (it decides
 * how to end, and we keep printing what it says); a second one, or one
 * before we know the pid, gives up on the stream. */
static int stream_interrupt_cb(void *userdata)
{
    struct stream_state *st = userdata;
    if (!got_sigint)
        return 0;
    got_sigint = 0;
    if (!st->pid || st->sent_interrupt)
        return -1;
    st->sent_interrupt = 1;
    _cleanup_free_ char *enc = cli_url_encode(st->pid);
    _cleanup_free_ char *suffix = cb_xasprintf("/processes/%s/signal", enc);
    _cleanup_free_ char *target = cli_sandbox_path(st->sandbox_id, suffix);
    json_t *body = json_pack("{s:s}", "signal", "INT");
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *r = cli_api_json(st->ctx, "POST", target, body, &err);
    json_decref(body);
    if (!r)
        return -1;
    json_decref(r);
    return 0;
}

/* Run a streaming request and decode its events. With need_exit (exec) the
 * stream must end with an exit event and its code is returned; otherwise
 * (logs) success is CLI_EXIT_OK. Errors give CLI_EXIT_ERROR, Ctrl-C 130. */
static int run_stream(const struct cli_ctx *ctx, const char *id, const char *method,
                      const char *target, json_t *body, int need_exit)
{
    struct stream_state st = {.ctx = ctx, .sandbox_id = id};
    _cleanup_free_ char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct http_request req = {
        .method = method,
        .target = target,
        .accept = "application/x-ndjson",
        .content_type = payload ? "application/json" : NULL,
        .body = payload,
        .body_len = payload ? strlen(payload) : 0,
        .on_body = stream_body_cb,
        .on_interrupt = stream_interrupt_cb,
        .interrupt_fd = sigint_pipe[0],
        .userdata = &st,
    };
    struct http_response resp;
    _cleanup_error_ struct cb_error *err = NULL;
    int rc = cli_http_do(&ctx->ep, &req, &resp, &err);
    if (rc == 0 && st.len > 0) /* a last event without its newline */
        handle_line(&st, st.line, st.len);
    int exit_code;
    if (rc < 0 && err && err->code == EINTR) {
        exit_code = 128 + SIGINT;
    } else if (rc < 0) {
        exit_code = cli_report(err);
    } else if (resp.status < 200 || resp.status >= 300) {
        cli_api_error_from_response(&resp, &err);
        exit_code = cli_report(err);
    } else if (st.error) {
        fprintf(stderr, "cellbox: %s\n", st.error);
        exit_code = CLI_EXIT_ERROR;
    } else if (need_exit && !st.have_exit) {
        fprintf(stderr, "cellbox: the output stream ended without an exit status\n");
        exit_code = CLI_EXIT_ERROR;
    } else {
        /* exec exits with the process's code; logs only reports itself. */
        exit_code = need_exit ? st.exit_code : CLI_EXIT_OK;
    }
    cli_http_response_clear(&resp);
    free(st.line);
    free(st.pid);
    free(st.error);
    return exit_code;
}

int cli_exec_stream(const struct cli_ctx *ctx, const char *id, json_t *body)
{
    _cleanup_free_ char *target = cli_sandbox_path(id, "/exec");
    install_sigint();
    return run_stream(ctx, id, "POST", target, body, 1);
}

#define CLI_MAX_EXEC_STDIN (64 << 20)

int cli_exec_attach_stdin(json_t *body)
{
    if (isatty(STDIN_FILENO))
        return 0;
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    int rc = cli_read_fd(STDIN_FILENO, &data, &len);
    if (rc == -EBADF)
        return 0; /* stdin closed: nothing to forward */
    if (rc < 0) {
        fprintf(stderr, "cellbox: reading stdin: %s\n", strerror(-rc));
        return -1;
    }
    /* The daemon takes exec bodies up to 96 MiB, stdin travelling as base64
     * (4/3 of its size): say so here rather than send a doomed request. */
    if (len > CLI_MAX_EXEC_STDIN) {
        fprintf(stderr,
                "cellbox: stdin is %zu MiB, more than exec takes (%d MiB); copy the data in "
                "with 'cellbox cp' and redirect from the file instead\n",
                len >> 20, CLI_MAX_EXEC_STDIN >> 20);
        return -1;
    }
    if (len > 0) {
        _cleanup_free_ char *b64 = cli_base64_encode(data, len);
        json_object_set_new(body, "stdin_b64", json_string(b64));
    }
    return 0;
}

int cli_exec_option(json_t *body, int opt, const char *arg)
{
    switch (opt) {
    case OPT_CWD:
        json_object_set_new(body, "cwd", json_string(arg));
        return 1;
    case OPT_USER:
        json_object_set_new(body, "user", json_string(arg));
        return 1;
    case OPT_ENV: {
        json_t *env = json_object_get(body, "env");
        if (!env) {
            env = json_object();
            json_object_set_new(body, "env", env);
        }
        return cli_parse_kv(env, arg, "--env") < 0 ? -1 : 1;
    }
    case OPT_TIMEOUT: {
        double v;
        if (cli_parse_number(arg, "--timeout", &v) < 0)
            return -1;
        json_object_set_new(body, "timeout", json_real(v));
        return 1;
    }
    default:
        return 0;
    }
}

/* Split argv at the first "--": options before it, the command after. */
static int split_dashdash(int argc, char **argv, int *cmd_start)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--")) {
            *cmd_start = i + 1;
            return i;
        }
    *cmd_start = argc;
    return argc;
}

static json_t *argv_array(int argc, char **argv)
{
    json_t *a = json_array();
    for (int i = 0; i < argc; i++)
        json_array_append_new(a, json_string(argv[i]));
    return a;
}

static const char exec_help[] =
    "usage: cellbox exec ID [OPTIONS] -- ARGV...\n"
    "Runs ARGV in the sandbox, streaming stdout and stderr live, and exits with its\n"
    "exit code (128+N when killed by signal N). Stdin is forwarded when it is not a\n"
    "terminal (up to 64 MiB). Ctrl-C sends SIGINT to the process; a second Ctrl-C\n"
    "detaches, which hangs the process up (SIGHUP).\n"
    "  --cwd DIR          working directory\n"
    "  --env K=V          environment (repeatable)\n"
    "  --user USER        user | root\n"
    "  --timeout SECONDS  kill the process after this long\n"
    "  --no-stdin         do not forward stdin\n";

int cmd_exec(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"cwd", required_argument, NULL, OPT_CWD},
        {"env", required_argument, NULL, OPT_ENV},
        {"user", required_argument, NULL, OPT_USER},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"no-stdin", no_argument, NULL, OPT_NO_STDIN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int cmd_start, head = split_dashdash(argc, argv, &cmd_start);
    json_t *body = json_object();
    int opt, rc, no_stdin = 0;
    optind = 0;
    while ((opt = getopt_long(head, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(exec_help, stdout);
            rc = CLI_EXIT_OK;
            goto out;
        }
        if (opt == OPT_NO_STDIN) {
            no_stdin = 1;
        } else if (cli_exec_option(body, opt, optarg) != 1) {
            rc = CLI_EXIT_USAGE;
            goto out;
        }
    }
    if (optind >= head) {
        rc = cli_usage_error("exec", "expected a sandbox id");
        goto out;
    }
    const char *id = argv[optind];
    /* Without "--", whatever follows the id is the command. */
    json_t *cmd = cmd_start < argc ? argv_array(argc - cmd_start, argv + cmd_start)
                                   : argv_array(head - optind - 1, argv + optind + 1);
    json_object_set_new(body, "argv", cmd);
    if (json_array_size(cmd) == 0) {
        rc = cli_usage_error("exec", "expected a command after '--'");
        goto out;
    }
    if (!no_stdin && cli_exec_attach_stdin(body) < 0) {
        rc = CLI_EXIT_ERROR;
        goto out;
    }
    rc = cli_exec_stream(ctx, id, body);
out:
    json_decref(body);
    return rc;
}

/* ---- run --------------------------------------------------------------- */

static int delete_sandbox(const struct cli_ctx *ctx, const char *id)
{
    _cleanup_free_ char *target = cli_sandbox_path(id, NULL);
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *r = cli_api_json(ctx, "DELETE", target, NULL, &err);
    if (!r) {
        fprintf(stderr, "cellbox: deleting %s: %s\n", id, err ? err->message : "error");
        return -1;
    }
    json_decref(r);
    return 0;
}

static int run_parse(int head, char **argv, json_t *create, json_t *exec, int *no_stdin)
{
    struct option opts[32];
    size_t n = 0;
    for (; cli_create_options[n].name; n++)
        opts[n] = cli_create_options[n];
    opts[n++] = (struct option){"cwd", required_argument, NULL, OPT_CWD};
    opts[n++] = (struct option){"no-stdin", no_argument, NULL, OPT_NO_STDIN};
    opts[n] = (struct option){NULL, 0, NULL, 0};
    int opt;
    optind = 0;
    while ((opt = getopt_long(head, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: cellbox run [CREATE OPTIONS] [--cwd DIR] [--no-stdin] -- ARGV...\n"
                   "Creates a sandbox, runs ARGV streaming its output, deletes the sandbox\n"
                   "(also on failure or Ctrl-C) and exits with ARGV's exit code.\n%s",
                   cli_create_help);
            return 1;
        }
        if (opt == OPT_NO_STDIN)
            *no_stdin = 1;
        else if (opt == OPT_CWD)
            cli_exec_option(exec, opt, optarg);
        else if (cli_create_option(create, opt, optarg) != 1)
            return -1;
    }
    return 0;
}

int cmd_run(struct cli_ctx *ctx, int argc, char **argv)
{
    _cleanup_error_ struct cb_error *err = NULL;
    _cleanup_free_ char *id = NULL;
    int cmd_start, head = split_dashdash(argc, argv, &cmd_start);
    json_t *create = json_object(), *exec = json_object();
    int no_stdin = 0, rc = run_parse(head, argv, create, exec, &no_stdin);
    if (rc != 0) {
        rc = rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
        goto out;
    }
    if (cmd_start >= argc || optind != head) {
        rc = cli_usage_error("run", "expected: cellbox run [OPTIONS] -- ARGV...");
        goto out;
    }
    json_object_set_new(exec, "argv", argv_array(argc - cmd_start, argv + cmd_start));
    if (!no_stdin && cli_exec_attach_stdin(exec) < 0) {
        rc = CLI_EXIT_ERROR;
        goto out;
    }
    json_t *sb = cli_create_sandbox(ctx, create, &err);
    if (!sb) {
        rc = cli_report(err);
        goto out;
    }
    id = cb_xstrdup(json_string_value(json_object_get(sb, "id")));
    json_decref(sb);
    rc = cli_exec_stream(ctx, id, exec);
    /* Ignore further Ctrl-C while cleaning up: the sandbox must go. */
    signal(SIGINT, SIG_IGN);
    if (delete_sandbox(ctx, id) < 0 && rc == CLI_EXIT_OK)
        rc = CLI_EXIT_ERROR;
out:
    json_decref(create);
    json_decref(exec);
    return rc;
}

/* ---- ps, logs, kill ---------------------------------------------------- */

static void print_process_table(json_t *items)
{
    static const char *const headers[] = {"PID", "STATE", "EXIT", "STARTED", "ARGV"};
    static const char *const keys[] = {"pid", "state", "exit_code", "started_at"};
    struct cli_table t;
    cli_table_init(&t, CB_ARRAY_SIZE(headers), headers);
    size_t i, j;
    json_t *p, *a;
    json_array_foreach(items, i, p) {
        char *row[CB_ARRAY_SIZE(headers)];
        for (size_t k = 0; k < CB_ARRAY_SIZE(keys); k++)
            row[k] = strcmp(keys[k], "started_at") ? cli_json_text(p, keys[k])
                                                   : cli_json_time(p, keys[k]);
        char *args = cb_xstrdup("");
        json_array_foreach(json_object_get(p, "argv"), j, a) {
            char *n = cb_xasprintf("%s%s%s", args, j ? " " : "", json_string_value(a) ?: "");
            free(args);
            args = n;
        }
        row[CB_ARRAY_SIZE(keys)] = args;
        cli_table_add(&t, (const char *const *)row);
        for (size_t k = 0; k < CB_ARRAY_SIZE(headers); k++)
            free(row[k]);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
}

int cmd_ps(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: cellbox ps ID\nLists the sandbox's processes.\n");
        return CLI_EXIT_OK;
    }
    if (argc != 2)
        return cli_usage_error("ps", "expected exactly one sandbox id");
    _cleanup_free_ char *target = cli_sandbox_path(argv[1], "/processes");
    return cli_list(ctx, target, print_process_table);
}

static char *process_path(const char *id, const char *pid, const char *rest)
{
    _cleanup_free_ char *enc = cli_url_encode(pid);
    _cleanup_free_ char *suffix = cb_xasprintf("/processes/%s%s", enc, rest);
    return cli_sandbox_path(id, suffix);
}

int cmd_logs(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"follow", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt, follow = 0;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: cellbox logs ID PID [-f]\n"
                   "Prints a process's kept output (stdout and stderr separately);\n"
                   "-f/--follow keeps printing until the process exits.\n");
            return CLI_EXIT_OK;
        }
        if (opt != 'f')
            return CLI_EXIT_USAGE;
        follow = 1;
    }
    if (argc - optind != 2)
        return cli_usage_error("logs", "expected a sandbox id and a pid");
    _cleanup_free_ char *target =
        process_path(argv[optind], argv[optind + 1], follow ? "/output?follow=1" : "/output");
    install_sigint();
    return run_stream(ctx, argv[optind], "GET", target, NULL, 0);
}

int cmd_kill(struct cli_ctx *ctx, int argc, char **argv)
{
    static const struct option opts[] = {
        {"signal", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *sig = NULL;
    int opt;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
        if (opt == 'h') {
            printf("usage: cellbox kill ID PID [-s SIGNAL]\n"
                   "Without -s kills the process and its children; with -s sends SIGNAL\n"
                   "(TERM, INT, HUP, KILL, ...).\n");
            return CLI_EXIT_OK;
        }
        if (opt != 's')
            return CLI_EXIT_USAGE;
        sig = optarg;
    }
    if (argc - optind != 2)
        return cli_usage_error("kill", "expected a sandbox id and a pid");
    _cleanup_error_ struct cb_error *err = NULL;
    _cleanup_free_ char *target = process_path(argv[optind], argv[optind + 1], sig ? "/signal" : "");
    json_t *body = sig ? json_pack("{s:s}", "signal", strncmp(sig, "SIG", 3) ? sig : sig + 3)
                       : NULL;
    json_t *r = cli_api_json(ctx, sig ? "POST" : "DELETE", target, body, &err);
    json_decref(body);
    if (!r)
        return cli_report(err);
    if (ctx->json)
        cli_print_json(r);
    json_decref(r);
    return CLI_EXIT_OK;
}
