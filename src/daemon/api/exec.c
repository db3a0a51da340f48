/* exec.c — POST /v1/sandboxes/{id}/exec: run a command to completion.
 *
 * The daemon asks init to SPAWN in PIPES mode and receives the three pipe
 * ends over the control socket; it writes the request's stdin, collects
 * stdout/stderr up to the cap (more is read and dropped so the process never
 * blocks on a full pipe; `truncated` says so), and answers once both pipes
 * reached EOF and init reported the EXIT, or EXEC_LINGER_MS after the EXIT
 * when a process the command left behind (`server &`) still holds a pipe:
 * the answer then carries what was written until then, and the daemon
 * keeps reading and dropping the rest until EOF, so that process is never
 * killed by SIGPIPE at its next write. With a streaming Accept header the
 * output is forwarded as events as it arrives; when the client reads slowly
 * the daemon stops reading the pipes (the process then blocks on write)
 * instead of buffering without bound. */
#include <signal.h>
#include <string.h>

#include "api.h"
#include "json.h"
#include "log.h"
#include "metrics.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_ARGV 4096

static const char *const exec_keys[] = {"argv", "cmd", "env", "cwd", "user", "stdin",
                                        "stdin_b64", "timeout", "tag", NULL};

static void add_env(json_t *env, json_t *from)
{
    const char *k;
    json_t *v;
    json_object_foreach(from, k, v) json_object_set(env, k, v);
}

static int build_argv(json_t *body, struct cb_builder *b, struct cb_error **err)
{
    json_t *argv = json_object_get(body, "argv");
    const char *cmd = NULL;
    if (cb_json_get_string(body, "cmd", 1 << 20, &cmd, err) < 0)
        return -1;
    if (argv && cmd)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "give either 'argv' or 'cmd'");
    if (cmd) {
        cb_builder_str(b, CB_F_ARGV, "/bin/sh");
        cb_builder_str(b, CB_F_ARGV, "-c");
        cb_builder_str(b, CB_F_ARGV, cmd);
        return 0;
    }
    if (!json_is_array(argv) || json_array_size(argv) == 0 ||
        json_array_size(argv) > MAX_ARGV)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "'argv' must be a non-empty array of strings (or give 'cmd')");
    size_t i;
    json_t *a;
    json_array_foreach(argv, i, a)
    {
        if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a))
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'argv' must hold strings without NUL");
        cb_builder_str(b, CB_F_ARGV, json_string_value(a));
    }
    return 0;
}

int cb_api_build_spawn(struct cb_sbx *s, json_t *body, int mode, uint32_t request_id,
                       struct cb_builder *b, struct cb_error **err)
{
    const char *cwd = json_string_value(json_object_get(s->spec, "workdir"));
    const char *user = json_string_value(json_object_get(s->spec, "user"));
    const char *tag = NULL;
    double timeout = 0;
    json_t *env = NULL;
    if (cb_json_check_keys(body, exec_keys, err) < 0 ||
        cb_json_get_string(body, "cwd", 4096, &cwd, err) < 0 ||
        cb_json_get_string(body, "user", 16, &user, err) < 0 ||
        cb_json_get_string(body, "tag", 256, &tag, err) < 0 ||
        cb_json_get_number(body, "timeout", 0, 1e7, &timeout, err) < 0 ||
        cb_json_get_string_map(body, "env", 1024, &env, err) < 0)
        return -1;
    bool root = user && strcmp(user, "root") == 0;
    if (user && !root && strcmp(user, "user") != 0)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'user' must be \"user\" or \"root\"");
    if (!cwd || cwd[0] != '/')
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'cwd' must be an absolute path");
    cb_builder_init(b, CB_MSG_SPAWN, request_id);
    if (build_argv(body, b, err) < 0) {
        cb_builder_free(b);
        return -1;
    }
    json_t *all = json_pack("{s:s,s:s,s:s,s:s}", "PATH", DEFAULT_PATH, "HOME",
                            root ? "/root" : "/home/user", "USER", root ? "root" : "user",
                            "LANG", "C.UTF-8");
    add_env(all, json_object_get(s->spec, "env"));
    if (env)
        add_env(all, env);
    const char *k;
    json_t *v;
    json_object_foreach(all, k, v)
    {
        if (strchr(k, '=')) {
            json_decref(all);
            cb_builder_free(b);
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "environment names must not contain '='");
        }
        char *kv = cb_xasprintf("%s=%s", k, json_string_value(v));
        cb_builder_str(b, CB_F_ENV, kv);
        free(kv);
    }
    json_decref(all);
    cb_builder_str(b, CB_F_CWD, cwd);
    cb_builder_u32(b, CB_F_UID, root ? 0 : 1000);
    cb_builder_u32(b, CB_F_GID, root ? 0 : 1000);
    cb_builder_u32(b, CB_F_MODE, (uint32_t)mode);
    /* exec needs nothing from init after the EXIT event: init drops the
     * record itself, instead of a FORGET request and its reply later. */
    if (mode == CB_SPAWN_PIPES) {
        cb_builder_u32(b, CB_F_FORGET_ON_EXIT, 1);
        /* ...and keeps copies of the output pipes for a DRAIN at the
         * answer (linger_or_close). */
        cb_builder_u32(b, CB_F_HOLD_OUTPUT, 1);
    }
    if (timeout > 0)
        cb_builder_u64(b, CB_F_TIMEOUT_MS, (uint64_t)(timeout * 1000));
    if (tag)
        cb_builder_str(b, CB_F_TAG, tag);
    if (cb_builder_finish(b) < 0) {
        cb_builder_free(b);
        return cb_error_set(err, 0, CB_ERR_TOO_LARGE, "command and environment too large");
    }
    return 0;
}

/* ------------------------------------------------------------- exec op */

struct out_buf {
    char *data;
    size_t len;
    bool truncated, eof;
};

struct exec_op {
    struct cb_http_req *req;
    struct cb_sbx *s;
    json_t *body;
    char *stdin_data;
    size_t stdin_len;
    bool streaming;
    enum cb_stream_format fmt;
    uint64_t t0;
    uint32_t pid;
    uint64_t proc_id;
    uv_pipe_t pipes[3];
    bool pipe_open[3];
    int open_handles;
    uv_write_t stdin_write;
    struct out_buf out[2];
    struct cb_exit_listener exit_l;
    struct cb_exit_info exit;
    bool exited, answered;
    bool lingered;        /* exited, and EXEC_LINGER_MS passed without EOF */
    bool counted;         /* in the sandbox's and daemon's exec_lingering */
    bool client_gone;     /* the HTTP client went away before the end */
    struct cb_initc *drain_c; /* a DRAIN sent on it waits for its reply */
    uint32_t drain_id;
    uv_timer_t timer;     /* before the exit: SIGKILL after the hang-up grace
                             time; after it: the end of EXEC_LINGER_MS */
    bool timer_open;
    uint64_t cap;
};

/* A client that goes away (the CLI killed, a dropped connection) ends the
 * process it started, as a closed terminal does: SIGHUP to the process tree,
 * then SIGKILL if it is still there after this grace time. A process meant to
 * outlive its client belongs in POST /processes. */
#define EXEC_HANGUP_GRACE_MS 5000

/* How long after its EXIT an exec waits for EOF on its pipes. Output a
 * command writes before it exits is in the pipe by then; only processes it
 * left running (`cmd &`, a daemon that kept stdout) write later, and an
 * exec waiting for them answered when they ended: a server started with
 * `&` held the request (and the CLI) for as long as it ran, beyond the
 * exec's own timeout. Docker's exec waits that way; E2B's and Vercel's
 * commands answer at the exit. */
#define EXEC_LINGER_MS 100
/* Answered execs whose pipes are still drained (op->counted), at most, per
 * sandbox and in all: each holds two daemon descriptors. Beyond either,
 * the pipes are closed at the answer, and a process still writing to them
 * gets EPIPE (SIGPIPE) as it would had its reader gone. */
#define EXEC_LINGER_MAX_PER_SANDBOX 16
#define EXEC_LINGER_MAX 512

static void op_free(struct exec_op *op)
{
    if (op->drain_id)
        cb_initc_cancel(op->drain_c, op->drain_id);
    if (op->counted) {
        op->s->exec_lingering--;
        op->s->d->exec_lingering--;
    }
    json_decref(op->body);
    free(op->stdin_data);
    free(op->out[0].data);
    free(op->out[1].data);
    cb_sbx_unref(op->s);
    free(op);
}

static void pipe_closed_cb(uv_handle_t *h)
{
    struct exec_op *op = h->data;
    if (--op->open_handles == 0 && op->answered)
        op_free(op);
}

static void close_pipe(struct exec_op *op, int i)
{
    if (!op->pipe_open[i])
        return;
    op->pipe_open[i] = false;
    uv_close((uv_handle_t *)&op->pipes[i], pipe_closed_cb);
}

static void put_output(json_t *o, const char *key, struct out_buf *b)
{
    if (cb_utf8_valid(b->data ? b->data : "", b->len)) {
        json_object_set_new(o, key, json_stringn(b->data ? b->data : "", b->len));
    } else {
        char *b64 = cb_base64_encode(b->data, b->len);
        char *k = cb_xasprintf("%s_b64", key);
        json_object_set_new(o, key, json_string(""));
        json_object_set_new(o, k, json_string(b64));
        free(k);
        free(b64);
    }
}

static json_t *result_json(struct exec_op *op)
{
    double dur = (double)(cb_now_ns() - op->t0) / 1e9;
    const struct cb_exit_info *e = &op->exit;
    json_t *o = json_pack("{s:i,s:o,s:f,s:b,s:b,s:I,s:I}", "exit_code",
                          e->lost ? -1 : e->exit_code, "signal",
                          e->signo ? json_integer(e->signo) : json_null(), "duration", dur,
                          "timed_out", e->timed_out,
                          "truncated", op->out[0].truncated || op->out[1].truncated, "pid",
                          (json_int_t)op->pid, "proc_id", (json_int_t)op->proc_id);
    if (e->lost)
        json_object_set_new(o, "error", json_string("sandbox stopped before the process ended"));
    return o;
}

static void keep_output(struct exec_op *op, int which, const char *data, size_t len);
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

/* What the pipes hold now, read before an answer the linger timer gives:
 * libuv runs due timers before it polls, so data already waiting could
 * otherwise miss the answer on a busy loop. The pipes are non-blocking. At
 * most a full pipe's worth (1 MiB, the most F_SETPIPE_SZ gives a process
 * that is not privileged on the host) per pipe: a process left behind
 * writing without pause (`yes &`) must not keep the loop here. */
#define EXEC_PENDING_MAX (1u << 20)

static void read_pending(struct exec_op *op)
{
    char buf[65536];
    for (int i = 1; i < 3; i++) {
        uv_os_fd_t fd;
        if (!op->pipe_open[i] || op->out[i - 1].eof ||
            uv_fileno((uv_handle_t *)&op->pipes[i], &fd) < 0)
            continue;
        ssize_t n = -1;
        for (size_t got = 0; got < EXEC_PENDING_MAX && (n = read(fd, buf, sizeof buf)) > 0;
             got += (size_t)n)
            keep_output(op, i - 1, buf, (size_t)n);
        if (n == 0)
            op->out[i - 1].eof = true;
    }
}

/* init took the pipes over (DRAIN answered OK): ours go. Else (an init
 * from before DRAIN, or at its bound) we go on draining them. */
static void drain_reply_cb(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                           size_t len, int *fds, int nfds)
{
    struct exec_op *op = arg;
    op->drain_id = 0;
    if (h && h->type == CB_MSG_OK)
        for (int i = 1; i < 3; i++)
            close_pipe(op, i);
}

/* Hand what the command left behind to init, which outlives us: it reads
 * the pipes until EOF (init's drain.c), so a `server &` is not killed by
 * SIGPIPE when the daemon restarts. */
static void send_drain(struct exec_op *op)
{
    struct cb_initc *c = op->s->initc;
    if (!cb_initc_alive(c))
        return;
    struct cb_builder b;
    uint32_t id = cb_initc_next_id(c);
    cb_builder_init(&b, CB_MSG_DRAIN, id);
    cb_builder_u64(&b, CB_F_PROC_ID, op->proc_id);
    if (cb_builder_finish(&b) == 0) {
        op->drain_c = c;
        op->drain_id = id;
        if (cb_initc_send(c, &b, false, 0, drain_reply_cb, op) < 0)
            op->drain_id = 0;
    }
    cb_builder_free(&b);
}

/* At the answer: a pipe at EOF is closed; one still held by a process the
 * command left behind goes to init (send_drain), and until init says it
 * took it, or for good when init cannot, is drained here until EOF when
 * the limits allow. */
static void linger_or_close(struct exec_op *op)
{
    close_pipe(op, 0);
    bool held = false;
    for (int i = 1; i < 3; i++)
        held |= op->pipe_open[i] && !op->out[i - 1].eof;
    struct cb_daemon *d = op->s->d;
    if (held && !op->s->deleted && op->s->exec_lingering < EXEC_LINGER_MAX_PER_SANDBOX &&
        d->exec_lingering < EXEC_LINGER_MAX) {
        op->counted = true;
        op->s->exec_lingering++;
        d->exec_lingering++;
    }
    if (held && !op->s->deleted)
        send_drain(op);
    for (int i = 1; i < 3; i++) {
        if (op->counted && !op->out[i - 1].eof) {
            uv_read_start((uv_stream_t *)&op->pipes[i], alloc_cb, read_cb);
            continue; /* read_cb drops what comes and closes it at EOF */
        }
        close_pipe(op, i);
    }
}

static void maybe_finish(struct exec_op *op)
{
    if (op->answered || !op->exited || (!op->lingered && (!op->out[0].eof || !op->out[1].eof)))
        return;
    if (op->lingered)
        read_pending(op);
    op->answered = true;
    cb_metrics_exec(op->s->d->metrics, (double)(cb_now_ns() - op->t0) / 1e9);
    if (op->timer_open) {
        op->timer_open = false;
        uv_close((uv_handle_t *)&op->timer, pipe_closed_cb);
    }
    if (op->streaming) {
        json_t *ev = result_json(op);
        json_object_set_new(ev, "type", json_string("exit"));
        cb_http_stream_event(op->req, ev);
        cb_http_stream_end(op->req);
        op->s->attached--;
    } else {
        json_t *o = result_json(op);
        put_output(o, "stdout", &op->out[0]);
        put_output(o, "stderr", &op->out[1]);
        cb_http_respond_json(op->req, 200, o);
    }
    linger_or_close(op);
    if (op->open_handles == 0)
        op_free(op);
}

static void linger_timer_cb(uv_timer_t *t)
{
    struct exec_op *op = t->data;
    op->lingered = true;
    maybe_finish(op);
}

/* Exited with a pipe still open: EXEC_LINGER_MS more for its EOF. */
static void start_linger(struct exec_op *op)
{
    if (op->answered || (op->out[0].eof && op->out[1].eof))
        return;
    if (!op->timer_open) {
        uv_timer_init(op->s->d->loop, &op->timer);
        op->timer.data = op;
        op->timer_open = true;
        op->open_handles++;
    }
    uv_timer_start(&op->timer, linger_timer_cb, EXEC_LINGER_MS, 0);
}

static void on_exit_cb(struct cb_exit_listener *l, const struct cb_exit_info *info)
{
    struct exec_op *op = (struct exec_op *)((char *)l - offsetof(struct exec_op, exit_l));
    op->exit = *info;
    op->exited = true;
    if (info->lost) {
        /* The sandbox went away: its pipes will not all reach EOF in time. */
        op->out[0].eof = op->out[1].eof = true;
    }
    maybe_finish(op);
    start_linger(op);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = cb_xmalloc(65536);
    buf->len = 65536;
}

static void stream_chunk(struct exec_op *op, int which, const char *data, size_t len)
{
    json_t *ev = json_pack("{s:s}", "type", which == 0 ? "stdout" : "stderr");
    if (cb_utf8_valid(data, len)) {
        json_object_set_new(ev, "data", json_stringn(data, len));
    } else {
        char *b64 = cb_base64_encode(data, len);
        json_object_set_new(ev, "data_b64", json_string(b64));
        free(b64);
    }
    cb_http_stream_event(op->req, ev);
    if (cb_http_congested(op->req))
        for (int i = 1; i < 3; i++)
            if (op->pipe_open[i])
                uv_read_stop((uv_stream_t *)&op->pipes[i]);
}

static void keep_output(struct exec_op *op, int which, const char *data, size_t len)
{
    struct out_buf *b = &op->out[which];
    if (op->streaming) {
        stream_chunk(op, which, data, len);
        return;
    }
    size_t room = op->cap > b->len ? (size_t)(op->cap - b->len) : 0;
    size_t take = len < room ? len : room;
    if (take < len)
        b->truncated = true; /* keep reading so the process is not blocked */
    if (take) {
        b->data = cb_xrealloc(b->data, b->len + take);
        memcpy(b->data + b->len, data, take);
        b->len += take;
    }
}

static void read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct exec_op *op = st->data;
    int which = (uv_pipe_t *)st == &op->pipes[1] ? 0 : 1;
    if (n < 0) {
        free(buf->base);
        op->out[which].eof = true;
        uv_read_stop(st);
        if (op->answered) /* a lingering pipe (linger_or_close) */
            close_pipe(op, which + 1);
        else
            maybe_finish(op);
        return;
    }
    if (n > 0 && !op->answered) /* after the answer: dropped */
        keep_output(op, which, buf->base, (size_t)n);
    free(buf->base);
}

static void on_drain(struct cb_http_req *req)
{
    struct exec_op *op = req->data;
    for (int i = 1; i < 3; i++)
        if (op->pipe_open[i] && !op->out[i - 1].eof)
            uv_read_start((uv_stream_t *)&op->pipes[i], alloc_cb, read_cb);
}

static void kill_timer_cb(uv_timer_t *t)
{
    struct exec_op *op = t->data;
    if (!op->exited)
        cb_initc_signal(op->s->initc, op->pid, SIGKILL, true);
}

static void hang_up(struct exec_op *op)
{
    if (op->exited || op->timer_open)
        return;
    cb_initc_signal(op->s->initc, op->pid, SIGHUP, true);
    uv_timer_init(op->s->d->loop, &op->timer);
    op->timer.data = op;
    op->timer_open = true;
    op->open_handles++;
    uv_timer_start(&op->timer, kill_timer_cb, EXEC_HANGUP_GRACE_MS, 0);
}

static void exec_abort(struct cb_http_req *req)
{
    struct exec_op *op = req->data;
    op->client_gone = true;
    if (op->pid) /* else spawned_cb hangs up as soon as there is a pid */
        hang_up(op);
}

static void stdin_written_cb(uv_write_t *w, int status)
{
    close_pipe(w->data, 0);
}

static void start_pipes(struct exec_op *op, int *fds)
{
    uv_loop_t *loop = op->s->d->loop;
    if (!op->stdin_len) {
        /* EOF on the process's stdin at once: a plain close, no libuv
         * handle to open, register and close again. */
        close(fds[0]);
    }
    for (int i = op->stdin_len ? 0 : 1; i < 3; i++) {
        uv_pipe_init(loop, &op->pipes[i], 0);
        op->pipes[i].data = op;
        uv_pipe_open(&op->pipes[i], fds[i]);
        op->pipe_open[i] = true;
        op->open_handles++;
    }
    if (op->stdin_len) {
        uv_buf_t buf = uv_buf_init(op->stdin_data, (unsigned)op->stdin_len);
        op->stdin_write.data = op;
        if (uv_write(&op->stdin_write, (uv_stream_t *)&op->pipes[0], &buf, 1,
                     stdin_written_cb) < 0)
            close_pipe(op, 0);
    }
    for (int i = 1; i < 3; i++)
        uv_read_start((uv_stream_t *)&op->pipes[i], alloc_cb, read_cb);
}

static void fail_op(struct exec_op *op, enum cb_error_kind kind, const char *msg)
{
    op->answered = true;
    cb_http_respond_error(op->req, kind, "%s", msg);
    op_free(op);
}

static void spawned_cb(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                       size_t len, int *fds, int nfds)
{
    struct exec_op *op = arg;
    if (!h) {
        fail_op(op, CB_ERR_CONFLICT, "sandbox stopped");
        return;
    }
    if (h->type != CB_MSG_SPAWNED || nfds != 3) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        struct cb_field_view f;
        char *msg = cb_proto_find(p, len, CB_F_MESSAGE, &f) == 1 ? cb_field_strdup(&f) : NULL;
        char *full = cb_xasprintf("cannot start process: %s", msg ? msg : "init refused");
        fail_op(op, CB_ERR_BAD_REQUEST, full);
        free(full);
        free(msg);
        return;
    }
    struct cb_field_view f;
    if (cb_proto_find(p, len, CB_F_PID, &f) == 1)
        cb_field_u32(&f, &op->pid);
    if (cb_proto_find(p, len, CB_F_PROC_ID, &f) == 1)
        cb_field_u64(&f, &op->proc_id);
    op->exit_l = (struct cb_exit_listener){.pid = op->pid, .proc_id = op->proc_id,
                                           .fn = on_exit_cb};
    cb_sbx_add_exit_listener(op->s, &op->exit_l);
    if (op->streaming) {
        op->s->attached++;
        op->req->on_drain = on_drain;
        cb_http_stream_begin_events(op->req, op->fmt);
        /* First event: the pid, so a client can signal the process (the CLI
         * forwards Ctrl-C) before any output arrives. */
        cb_http_stream_event(op->req, json_pack("{s:s,s:I,s:I}", "type", "start", "pid",
                                                (json_int_t)op->pid, "proc_id",
                                                (json_int_t)op->proc_id));
    }
    start_pipes(op, fds);
    if (op->client_gone)
        hang_up(op);
}

static void exec_ready(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct exec_op *op = arg;
    if (err) {
        op->answered = true;
        cb_http_respond_cb_error(op->req, err);
        op_free(op);
        return;
    }
    struct cb_builder b;
    struct cb_error *e2 = NULL;
    struct cb_initc *c = s->initc;
    if (cb_api_build_spawn(s, op->body, CB_SPAWN_PIPES, cb_initc_next_id(c), &b, &e2) < 0) {
        op->answered = true;
        cb_http_respond_cb_error(op->req, e2);
        cb_error_free(e2);
        op_free(op);
        return;
    }
    cb_initc_send(c, &b, false, 3, spawned_cb, op);
    cb_builder_free(&b);
}

static int take_stdin(struct exec_op *op, struct cb_error **err)
{
    const char *text = NULL, *b64 = NULL;
    if (cb_json_get_string(op->body, "stdin", 1 << 30, &text, err) < 0 ||
        cb_json_get_string(op->body, "stdin_b64", 1 << 30, &b64, err) < 0)
        return -1;
    if (text) {
        op->stdin_len = strlen(text);
        op->stdin_data = cb_xstrdup(text);
    } else if (b64) {
        op->stdin_data = cb_base64_decode(b64, strlen(b64), &op->stdin_len);
        if (!op->stdin_data)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'stdin_b64' is not valid base64");
    }
    return 0;
}

void cb_api_exec(struct cb_http_req *req)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return;
    json_t *body = cb_api_body(req, false);
    if (!body)
        return;
    struct exec_op *op = cb_xcalloc(1, sizeof(*op));
    op->req = req;
    op->s = s;
    cb_sbx_ref(s);
    op->body = body;
    op->t0 = cb_now_ns();
    op->cap = s->d->cfg.exec_output_cap;
    op->fmt = cb_http_accept_stream(req);
    op->streaming = op->fmt != CB_FMT_NONE;
    req->data = op;
    req->on_abort = exec_abort;
    struct cb_error *err = NULL;
    if (take_stdin(op, &err) < 0) {
        op->answered = true;
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        op_free(op);
        return;
    }
    if (strcmp(s->rec.state, "stopped") == 0) {
        fail_op(op, CB_ERR_CONFLICT, "sandbox is stopped; start it first");
        return;
    }
    cb_sbx_ready(s, exec_ready, op);
}
