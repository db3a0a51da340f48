/* cmd_pty.c — shell, attach, pty ls, pty kill: interactive terminals.
 *
 * A terminal lives in the sandbox (init owns the PTY and its scrollback);
 * the CLI is only a viewer attached over a WebSocket: binary frames carry
 * terminal bytes both ways, a text frame {"type":"resize",...} resizes, and
 * the server ends with a text frame {"type":"exit","exit_code":N} and close
 * 1000 when the terminal's process exits.
 *
 * The local terminal goes to raw mode while attached, so every key (Ctrl-C,
 * Ctrl-Z, ...) reaches the remote shell. Raw mode is undone on every way
 * out: normal exit, detach, a broken connection, and SIGTERM/SIGHUP/SIGINT/
 * SIGQUIT, which are turned into events of the poll loop by a self-pipe so
 * the restore runs in ordinary code, not in a signal handler. */
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>

#include "cli.h"
#include "ws_client.h"

/* Ctrl-] (as in telnet and virsh console): rarely bound by shells or
 * editors, unlike docker's Ctrl-P Ctrl-Q (Ctrl-P is readline's
 * previous-history). */
#define DETACH_KEY 0x1d
#define DETACH_KEY_NAME "Ctrl-]"
/* Stop reading local input while this much is queued towards the server:
 * the socket, not our memory, absorbs a paste larger than it can take. */
#define MAX_QUEUED_INPUT (256u * 1024)
/* After we sent close (detach, signal), how long to wait for the reply. */
#define CLOSE_WAIT_MS 2000
#define DEFAULT_COLS 80
#define DEFAULT_ROWS 24
#define MAX_DIM 4096

enum { OPT_COLS = 400, OPT_ROWS, OPT_ENV, OPT_CWD, OPT_USER };

/* ---- local terminal ------------------------------------------------------ */

static struct termios saved_termios;
static bool termios_saved;
static int signal_pipe[2] = {-1, -1};

static void restore_tty(void)
{
    if (!termios_saved)
        return;
    termios_saved = false;
    tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_termios);
}

static int enter_raw_mode(void)
{
    if (tcgetattr(STDIN_FILENO, &saved_termios) < 0)
        return -errno;
    struct termios raw = saved_termios;
    cfmakeraw(&raw);
    termios_saved = true;
    static bool registered;
    if (!registered && atexit(restore_tty) == 0)
        registered = true; /* also covers exit() from anywhere else */
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) < 0) {
        termios_saved = false;
        return -errno;
    }
    return 0;
}

/* The local window size: the tty on stdin, else on stdout; 0 when neither
 * is a terminal. */
static int local_size(unsigned *cols, unsigned *rows)
{
    struct winsize ws;
    if ((ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0 || ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) &&
        ws.ws_col > 0 && ws.ws_row > 0) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
        return 1;
    }
    return 0;
}

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (signal_pipe[1] >= 0 && write(signal_pipe[1], &b, 1) < 0) {
        /* pipe full: enough wake-ups are pending */
    }
    errno = saved;
}

static int install_signals(void)
{
    if (signal_pipe[0] < 0 && pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    static const int sigs[] = {SIGWINCH, SIGTERM, SIGHUP, SIGINT, SIGQUIT};
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < CB_ARRAY_SIZE(sigs); i++)
        sigaction(sigs[i], &sa, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed stdout shows up as EPIPE */
    return 0;
}

/* ---- one attached session ------------------------------------------------ */

struct session {
    struct cli_ws *ws;
    const char *sandbox_id;
    const char *pty_id;
    bool raw;          /* the local tty is in raw mode: watch for the detach key */
    bool follow_winch; /* forward local window changes */
    bool stdin_open;
    bool closing;      /* we sent close (detach or signal) */
    bool detached;
    bool have_exit;
    int exit_code;
    int signal;        /* a terminating signal we received */
    bool output_broken;
};

static void on_message(void *user, enum cli_ws_opcode opcode, const uint8_t *data, size_t len)
{
    struct session *s = user;
    if (opcode == CLI_WS_BINARY) {
        if (!s->output_broken && cb_write_all(STDOUT_FILENO, data, len) < 0)
            s->output_broken = true; /* keep the session; stdout went away */
        return;
    }
    json_t *m = json_loadb((const char *)data, len, 0, NULL);
    const char *type = json_string_value(json_object_get(m, "type"));
    json_t *code = json_object_get(m, "exit_code");
    if (type && strcmp(type, "exit") == 0) {
        s->have_exit = true;
        s->exit_code = json_is_integer(code) ? (int)json_integer_value(code) : -1;
    }
    json_decref(m);
}

static void send_resize(struct session *s, unsigned cols, unsigned rows)
{
    char msg[96];
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"resize\",\"cols\":%u,\"rows\":%u}", cols, rows);
    cli_ws_send(s->ws, CLI_WS_TEXT, msg, (size_t)n);
}

static void start_close(struct session *s)
{
    if (s->closing)
        return;
    s->closing = true;
    cli_ws_close(s->ws, 1000, s->detached ? "detach" : "client exiting");
}

static void handle_signals(struct session *s)
{
    unsigned char sigs[64];
    ssize_t n;
    while ((n = read(signal_pipe[0], sigs, sizeof(sigs))) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            unsigned cols, rows;
            if (sigs[i] == SIGWINCH) {
                if (s->follow_winch && local_size(&cols, &rows))
                    send_resize(s, cols, rows);
            } else if (!s->signal) {
                s->signal = sigs[i];
                start_close(s);
            }
        }
    }
}

/* Local input: forwarded as binary frames, up to the detach key. */
static void handle_stdin(struct session *s)
{
    uint8_t buf[4096];
    ssize_t n = CB_RETRY(read(STDIN_FILENO, buf, sizeof(buf)));
    if (n <= 0) {
        s->stdin_open = false;
        /* Piped input ended: tell the shell as a terminal would (^D at the
         * start of a line), so `echo cmd | cellbox shell ID` finishes. */
        if (n == 0 && !s->raw)
            cli_ws_send(s->ws, CLI_WS_BINARY, "\x04", 1);
        return;
    }
    size_t len = (size_t)n;
    const uint8_t *key = s->raw ? memchr(buf, DETACH_KEY, len) : NULL;
    if (key)
        len = (size_t)(key - buf);
    if (len)
        cli_ws_send(s->ws, CLI_WS_BINARY, buf, len);
    if (key) {
        s->detached = true;
        start_close(s);
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_loop(struct session *s)
{
    int64_t close_deadline = 0;
    cli_ws_handle(s->ws, 0); /* frames that came with the handshake */
    while (!cli_ws_is_done(s->ws)) {
        if (s->closing && !close_deadline)
            close_deadline = now_ms() + CLOSE_WAIT_MS;
        bool want_input = s->stdin_open && !s->closing &&
                          cli_ws_queued_bytes(s->ws) < MAX_QUEUED_INPUT;
        struct pollfd p[3] = {
            {.fd = cli_ws_fd(s->ws), .events = cli_ws_poll_events(s->ws)},
            {.fd = signal_pipe[0], .events = POLLIN},
            {.fd = want_input ? STDIN_FILENO : -1, .events = POLLIN},
        };
        int timeout = -1;
        if (close_deadline) {
            int64_t left = close_deadline - now_ms();
            if (left <= 0)
                break; /* the server never answered our close */
            timeout = (int)left;
        }
        if (poll(p, 3, timeout) < 0 && errno != EINTR)
            break;
        if (p[1].revents & POLLIN)
            handle_signals(s);
        if (cli_ws_handle(s->ws, p[0].revents) < 0)
            break;
        if (p[2].revents & (POLLIN | POLLHUP | POLLERR))
            handle_stdin(s);
    }
}

static void print_reattach(const struct session *s, const char *what)
{
    fprintf(stderr, "cellbox: %s; the terminal keeps running. Reattach with: cellbox attach %s %s\n",
            what, s->sandbox_id, s->pty_id);
}

/* What the CLI exits with, after the local tty is back to normal. */
static int session_result(const struct session *s)
{
    if (s->have_exit)
        return s->exit_code < 0 ? CLI_EXIT_ERROR : s->exit_code & 0xff;
    if (s->detached) {
        print_reattach(s, "detached");
        return CLI_EXIT_OK;
    }
    if (s->signal) {
        if (s->signal != SIGHUP) /* SIGHUP: nobody is left to read it */
            print_reattach(s, strsignal(s->signal));
        return 128 + s->signal;
    }
    const char *reason = cli_ws_close_reason(s->ws);
    fprintf(stderr, "cellbox: terminal connection closed (%u%s%s)\n", cli_ws_close_code(s->ws),
            *reason ? ": " : "", reason);
    if (cli_ws_close_code(s->ws) != 1000)
        print_reattach(s, "connection lost");
    return CLI_EXIT_ERROR;
}

static char *pty_path(const char *sandbox_id, const char *pty_id, const char *rest)
{
    _cleanup_free_ char *enc = cli_url_encode(pty_id);
    _cleanup_free_ char *suffix = cb_xasprintf("/ptys/%s%s", enc, rest);
    return cli_sandbox_path(sandbox_id, suffix);
}

/* Attach to pty_id and run until its process exits, the user detaches or a
 * signal ends us. resize_cols/rows > 0: ask for that size first. */
static int attach_session(const struct cli_ctx *ctx, const char *sandbox_id, const char *pty_id,
                          bool follow_winch, unsigned resize_cols, unsigned resize_rows)
{
    struct session s = {.sandbox_id = sandbox_id, .pty_id = pty_id,
                        .follow_winch = follow_winch, .stdin_open = true};
    _cleanup_error_ struct cb_error *err = NULL;
    if (install_signals() < 0) {
        fprintf(stderr, "cellbox: cannot set up signal handling: %s\n", strerror(errno));
        return CLI_EXIT_ERROR;
    }
    _cleanup_free_ char *target = pty_path(sandbox_id, pty_id, "/ws");
    s.ws = cli_ws_connect(&ctx->ep, target, on_message, &s, &err);
    if (!s.ws)
        return cli_report(err);
    if (resize_cols && resize_rows)
        send_resize(&s, resize_cols, resize_rows);
    s.raw = isatty(STDIN_FILENO) && enter_raw_mode() == 0;
    run_loop(&s);
    restore_tty();
    int rc = session_result(&s);
    cli_ws_free(s.ws);
    return rc;
}

/* ---- shell ---------------------------------------------------------------- */

static const char shell_help[] =
    "usage: cellbox shell ID [--cols N --rows N] [--env K=V]... [--cwd DIR] [--user USER]\n"
    "                        [-- ARGV...]\n"
    "Opens a terminal in the sandbox (default: a login bash, else sh; or ARGV) and\n"
    "attaches to it: raw keyboard, window size followed, exits with the shell's\n"
    "exit status. The size defaults to the local terminal's (80x24 when stdin is\n"
    "not a terminal); --cols/--rows fix it.\n"
    "Detach with " DETACH_KEY_NAME ": the terminal keeps running in the sandbox;\n"
    "reattach with 'cellbox attach ID PTY' (its screen history is replayed).\n";

static int parse_dim(const char *arg, const char *what, unsigned *out)
{
    char *end;
    unsigned long v = strtoul(arg, &end, 10);
    if (!*arg || *end || v < 1 || v > MAX_DIM) {
        fprintf(stderr, "cellbox shell: %s must be 1..%d, got '%s'\n", what, MAX_DIM, arg);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static int shell_option(json_t *body, json_t *env, int opt, const char *arg, unsigned *cols,
                        unsigned *rows)
{
    switch (opt) {
    case OPT_COLS: return parse_dim(arg, "--cols", cols);
    case OPT_ROWS: return parse_dim(arg, "--rows", rows);
    case OPT_ENV: return cli_parse_kv(env, arg, "--env");
    case OPT_CWD: json_object_set_new(body, "cwd", json_string(arg)); return 0;
    case OPT_USER: json_object_set_new(body, "user", json_string(arg)); return 0;
    default: return -1;
    }
}

/* Parse argv[0..head); returns 1 for --help, 0, or -1 on a usage error. */
static int shell_parse(int head, char **argv, json_t *body, json_t *env, unsigned *cols,
                       unsigned *rows)
{
    static const struct option opts[] = {
        {"cols", required_argument, NULL, OPT_COLS}, {"rows", required_argument, NULL, OPT_ROWS},
        {"env", required_argument, NULL, OPT_ENV},   {"cwd", required_argument, NULL, OPT_CWD},
        {"user", required_argument, NULL, OPT_USER}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;
    optind = 0;
    while ((opt = getopt_long(head, argv, "h", opts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(shell_help, stdout);
            return 1;
        }
        if (shell_option(body, env, opt, optarg, cols, rows) < 0)
            return -1;
    }
    return 0;
}

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

/* POST …/ptys; returns the new pty id (owned) or NULL after reporting. */
static char *create_pty(const struct cli_ctx *ctx, const char *id, json_t *body)
{
    _cleanup_error_ struct cb_error *err = NULL;
    _cleanup_free_ char *target = cli_sandbox_path(id, "/ptys");
    json_t *r = cli_api_json(ctx, "POST", target, body, &err);
    if (!r) {
        cli_report(err);
        return NULL;
    }
    json_t *v = json_object_get(r, "pty_id");
    char *pty = json_is_string(v)    ? cb_xstrdup(json_string_value(v))
                : json_is_integer(v) ? cb_xasprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v))
                                     : NULL;
    if (!pty)
        fprintf(stderr, "cellbox: the server's answer has no pty_id\n");
    json_decref(r);
    return pty;
}

static int shell_run(struct cli_ctx *ctx, const char *id, json_t *body, unsigned cols,
                     unsigned rows)
{
    bool fixed = cols || rows;
    unsigned lc = DEFAULT_COLS, lr = DEFAULT_ROWS;
    local_size(&lc, &lr);
    json_object_set_new(body, "cols", json_integer(cols ? cols : lc));
    json_object_set_new(body, "rows", json_integer(rows ? rows : lr));
    _cleanup_free_ char *pty = create_pty(ctx, id, body);
    if (!pty)
        return CLI_EXIT_ERROR;
    /* A window that changed between create and attach is caught by the
     * first SIGWINCH; explicit sizes are not overridden by the window. */
    return attach_session(ctx, id, pty, !fixed && isatty(STDIN_FILENO), 0, 0);
}

int cmd_shell(struct cli_ctx *ctx, int argc, char **argv)
{
    int cmd_start, head = split_dashdash(argc, argv, &cmd_start);
    json_t *body = json_object(), *env = json_object();
    unsigned cols = 0, rows = 0;
    int rc = shell_parse(head, argv, body, env, &cols, &rows);
    if (rc != 0) {
        rc = rc > 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
    } else if (head - optind != 1) {
        rc = cli_usage_error("shell", "expected exactly one sandbox id");
    } else {
        const char *id = argv[optind];
        if (cmd_start < argc) {
            json_t *a = json_array();
            for (int i = cmd_start; i < argc; i++)
                json_array_append_new(a, json_string(argv[i]));
            json_object_set_new(body, "argv", a);
        }
        if (json_object_size(env))
            json_object_set(body, "env", env);
        rc = shell_run(ctx, id, body, cols, rows);
    }
    json_decref(body);
    json_decref(env);
    return rc;
}

/* ---- attach --------------------------------------------------------------- */

static bool is_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return true;
    return false;
}

int cmd_attach(struct cli_ctx *ctx, int argc, char **argv)
{
    if (is_help(argc, argv)) {
        printf("usage: cellbox attach ID PTY\n"
               "Attaches to a running terminal of the sandbox (see 'cellbox pty ls ID'):\n"
               "its screen history is replayed first, then it is live. The terminal takes\n"
               "the local window size. Detach with " DETACH_KEY_NAME "; exits with the\n"
               "terminal process's exit status when it ends.\n");
        return CLI_EXIT_OK;
    }
    if (argc != 3)
        return cli_usage_error("attach", "expected a sandbox id and a pty id");
    unsigned cols = 0, rows = 0;
    bool tty = isatty(STDIN_FILENO) && local_size(&cols, &rows);
    return attach_session(ctx, argv[1], argv[2], tty, tty ? cols : 0, tty ? rows : 0);
}

/* ---- pty ls / pty kill ---------------------------------------------------- */

static void print_pty_table(json_t *items)
{
    static const char *const headers[] = {"PTY", "STATE", "SIZE", "EXIT"};
    struct cli_table t;
    cli_table_init(&t, CB_ARRAY_SIZE(headers), headers);
    size_t i;
    json_t *p;
    json_array_foreach(items, i, p) {
        _cleanup_free_ char *cols = cli_json_text(p, "cols");
        _cleanup_free_ char *rows = cli_json_text(p, "rows");
        char *row[] = {cli_json_text(p, "pty_id"), cli_json_text(p, "state"),
                       cb_xasprintf("%sx%s", cols, rows), cli_json_text(p, "exit_code")};
        cli_table_add(&t, (const char *const *)row);
        for (size_t k = 0; k < CB_ARRAY_SIZE(row); k++)
            free(row[k]);
    }
    cli_table_print(&t, stdout);
    cli_table_free(&t);
}

static int pty_ls(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc != 2)
        return cli_usage_error("pty ls", "expected exactly one sandbox id");
    _cleanup_free_ char *target = cli_sandbox_path(argv[1], "/ptys");
    return cli_list(ctx, target, print_pty_table);
}

static int pty_kill(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc != 3)
        return cli_usage_error("pty kill", "expected a sandbox id and a pty id");
    _cleanup_free_ char *target = pty_path(argv[1], argv[2], "");
    _cleanup_error_ struct cb_error *err = NULL;
    json_t *r = cli_api_json(ctx, "DELETE", target, NULL, &err);
    if (!r)
        return cli_report(err);
    if (ctx->json)
        cli_print_json(r);
    json_decref(r);
    return CLI_EXIT_OK;
}

int cmd_pty(struct cli_ctx *ctx, int argc, char **argv)
{
    if (argc < 2 || is_help(argc, argv)) {
        FILE *out = argc < 2 ? stderr : stdout;
        fprintf(out, "usage: cellbox pty ls ID       list the sandbox's terminals\n"
                     "       cellbox pty kill ID PTY end a terminal (SIGHUP, then SIGKILL)\n"
                     "Open one with 'cellbox shell ID', attach with 'cellbox attach ID PTY'.\n");
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (!strcmp(argv[1], "ls"))
        return pty_ls(ctx, argc - 1, argv + 1);
    if (!strcmp(argv[1], "kill") || !strcmp(argv[1], "rm"))
        return pty_kill(ctx, argc - 1, argv + 1);
    return cli_usage_error("pty", "unknown subcommand '%s' (ls, kill)", argv[1]);
}
