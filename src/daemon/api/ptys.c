/* ptys.c — interactive terminals: PTY processes owned by init, attached
 * over WebSocket.
 *
 * init keeps the PTY (master side, a >= 256 KiB output ring, the process),
 * so a terminal outlives both its viewers and a daemon restart. The daemon
 * only relays: each WebSocket viewer has its own SUBSCRIBE (replay of the
 * ring, then follow), its binary frames become STDIN, its resize text
 * frames become RESIZE. pty_id is the process's pid inside the sandbox.
 *
 * Memory stays bounded per viewer: output goes through the WebSocket
 * session's bounded queue and is only taken when the previous socket write
 * completed; a viewer that cannot keep up is closed with 1008 (it reattaches
 * and gets the scrollback). Input is read only while few STDIN frames are in
 * flight to init, so a fast typist cannot queue unbounded control frames. */
#include <fcntl.h>
#include <signal.h>
#include <string.h>

#include "api.h"
#include "json.h"
#include "log.h"
#include "websocket.h"

#define PTY_TAG_PREFIX "pty:"
#define MAX_DIM 4096
#define WS_MAX_MESSAGE (256 * 1024)       /* one STDIN frame stays under the proto max */
#define WS_MAX_QUEUED ((size_t)1 << 20)   /* per viewer: more behind = slow viewer */
#define MAX_STDIN_INFLIGHT 32
#define CLOSE_TIMEOUT_MS 5000
/* SIGHUP to SIGKILL when a terminal is ended: a shell saves its history
 * and hangs up its jobs on SIGHUP; 1 s cut bash short while it was saving
 * on a loaded host (seen once in CI: killed, status 137 instead of 129). */
#define KILL_GRACE_MS 3000
#define READ_BUF 65536

/* ------------------------------------------------------------ helpers */

static void respond_init_error(struct cb_http_req *req, const struct cb_frame_header *h,
                               const uint8_t *p, size_t len)
{
    cb_api_respond_init_error(req, h, p, len, "no such pty");
}

/* What the daemon needs of one PROC entry. */
struct pty_info {
    uint32_t pid, state, mode, signo, cols, rows;
    int32_t exit_code;
    bool found;
};

static void parse_proc(const uint8_t *p, size_t len, struct pty_info *pi)
{
    size_t off = 0;
    struct cb_field_view f;
    uint32_t live_cols = 0, live_rows = 0;
    *pi = (struct pty_info){.exit_code = -1, .cols = 80, .rows = 24};
    while (cb_proto_next_field(p, len, &off, &f) > 0) {
        switch (f.tag) {
        case CB_F_PID: cb_field_u32(&f, &pi->pid); break;
        case CB_F_STATE: cb_field_u32(&f, &pi->state); break;
        case CB_F_MODE: cb_field_u32(&f, &pi->mode); break;
        case CB_F_SIGNO: cb_field_u32(&f, &pi->signo); break;
        case CB_F_EXIT_CODE: cb_field_i32(&f, &pi->exit_code); break;
        case CB_F_COLS: cb_field_u32(&f, &live_cols); break;
        case CB_F_ROWS: cb_field_u32(&f, &live_rows); break;
        case CB_F_TAG: {
            /* The size given at creation: what an ended PTY reports. */
            _cleanup_free_ char *t = cb_field_strdup(&f);
            unsigned c, r;
            if (t && sscanf(t, PTY_TAG_PREFIX "%ux%u", &c, &r) == 2 && c && r &&
                c <= MAX_DIM && r <= MAX_DIM) {
                pi->cols = c;
                pi->rows = r;
            }
            break;
        }
        default: break;
        }
    }
    if (live_cols && live_rows && live_cols <= MAX_DIM && live_rows <= MAX_DIM) {
        pi->cols = live_cols;
        pi->rows = live_rows;
    }
    pi->found = true;
}

struct pty_find {
    uint32_t pid;
    struct pty_info out;
};

static void find_pty_cb(const uint8_t *p, size_t len, void *arg)
{
    struct pty_find *fd = arg;
    struct pty_info pi;
    parse_proc(p, len, &pi);
    if (pi.pid == fd->pid && pi.mode == CB_SPAWN_PTY)
        fd->out = pi;
}

/* The newest PROC for pid (pids are reused; init lists in creation order)
 * among PTY processes; pid 0 = none wanted. */
static struct pty_info find_pty(const uint8_t *p, size_t len, uint32_t pid)
{
    struct pty_find fd = {.pid = pid};
    cb_api_for_each_proc(p, len, find_pty_cb, &fd);
    return fd.out;
}

/* Exit status as a shell reports it: the code, or 128 + signal. */
static int shell_status(const struct pty_info *pi)
{
    return pi->signo ? 128 + (int)pi->signo : pi->exit_code;
}

static json_t *pty_json(const struct pty_info *pi)
{
    bool running = pi->state == CB_PROC_RUNNING;
    char id[16];
    snprintf(id, sizeof(id), "%u", pi->pid);
    return json_pack("{s:s,s:I,s:s,s:I,s:I,s:o}", "pty_id", id, "pid", (json_int_t)pi->pid,
                     "state", running ? "running" : "exited", "cols", (json_int_t)pi->cols,
                     "rows", (json_int_t)pi->rows, "exit_code",
                     running ? json_null() : json_integer(shell_status(pi)));
}

/* ------------------------------------------------------- request ops */

struct pty_op {
    struct cb_http_req *req;
    struct cb_sbx *s;
    json_t *body;
    uint32_t pid, cols, rows;
    uv_timer_t timer; /* DELETE: SIGKILL after the SIGHUP grace */
};

static void op_free(struct pty_op *op)
{
    json_decref(op->body);
    cb_sbx_unref(op->s);
    free(op);
}

static struct pty_op *op_new(struct cb_http_req *req, bool with_id)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return NULL;
    uint32_t pid = 0;
    if (with_id && !cb_api_parse_pid(cb_route_param(&req->match, "pty_id"), &pid)) {
        cb_http_respond_error(req, CB_ERR_NOT_FOUND, "no such pty");
        return NULL;
    }
    if (strcmp(s->rec.state, "stopped") == 0) {
        cb_http_respond_error(req, CB_ERR_CONFLICT, "sandbox is stopped; start it first");
        return NULL;
    }
    struct pty_op *op = cb_xcalloc(1, sizeof(*op));
    op->req = req;
    op->s = s;
    op->pid = pid;
    cb_sbx_ref(s);
    return op;
}

/* ---------------------------------------------------------- create */

static const char *const pty_keys[] = {"cols", "rows", "argv", "env", "cwd", "user", NULL};

/* The spawn body for cb_api_build_spawn: argv (default: a login bash when
 * the image has one, else sh), the environment with TERM, cwd and user. */
static json_t *spawn_body(json_t *body, struct cb_error **err)
{
    if (cb_json_check_keys(body, pty_keys, err) < 0)
        return NULL;
    json_t *uenv = json_object_get(body, "env");
    if (uenv && !json_is_object(uenv)) {
        cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'env' must be an object of strings");
        return NULL;
    }
    json_t *sb = json_object();
    json_t *argv = json_object_get(body, "argv");
    if (argv) {
        json_object_set(sb, "argv", argv);
    } else {
        /* Whether /bin/bash exists is decided inside the sandbox, by its
         * own filesystem; exec keeps the shell the PTY's session leader. */
        json_object_set_new(sb, "argv",
                            json_pack("[s,s,s]", "/bin/sh", "-c",
                                      "if [ -x /bin/bash ]; then exec /bin/bash -l; "
                                      "else exec /bin/sh; fi"));
    }
    json_t *env = json_pack("{s:s}", "TERM", "xterm-256color");
    if (uenv)
        json_object_update(env, uenv); /* string values are checked by build_spawn */
    json_object_set_new(sb, "env", env);
    const char *keys[] = {"cwd", "user"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(keys); i++)
        if (json_object_get(body, keys[i]))
            json_object_set(sb, keys[i], json_object_get(body, keys[i]));
    return sb;
}

static void created_cb(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                       size_t len, int *fds, int nfds)
{
    struct pty_op *op = arg;
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    if (!h || h->type != CB_MSG_SPAWNED) {
        respond_init_error(op->req, h, p, len);
    } else {
        struct cb_field_view f;
        uint32_t pid = 0;
        if (cb_proto_find(p, len, CB_F_PID, &f) == 1)
            cb_field_u32(&f, &pid);
        char id[16];
        snprintf(id, sizeof(id), "%u", pid);
        cb_http_respond_json(op->req, 201,
                             json_pack("{s:s,s:I,s:I,s:I}", "pty_id", id, "pid", (json_int_t)pid,
                                       "cols", (json_int_t)op->cols, "rows", (json_int_t)op->rows));
    }
    op_free(op);
}

static void create_ready(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct pty_op *op = arg;
    struct cb_error *e2 = NULL;
    struct cb_builder b;
    json_t *sb = err ? NULL : spawn_body(op->body, &e2);
    if (err || !sb ||
        cb_api_build_spawn(s, sb, CB_SPAWN_PTY, cb_initc_next_id(s->initc), &b, &e2) < 0) {
        cb_http_respond_cb_error(op->req, err ? err : e2);
        cb_error_free(e2);
        json_decref(sb);
        op_free(op);
        return;
    }
    json_decref(sb);
    /* cb_builder_finish only stamps the length: fields may follow. */
    char tag[32];
    snprintf(tag, sizeof(tag), PTY_TAG_PREFIX "%ux%u", op->cols, op->rows);
    cb_builder_u32(&b, CB_F_COLS, op->cols);
    cb_builder_u32(&b, CB_F_ROWS, op->rows);
    cb_builder_str(&b, CB_F_TAG, tag);
    if (cb_api_init_send(s->initc, &b, false, created_cb, op) < 0) {
        cb_http_respond_error(op->req, CB_ERR_CONFLICT, "sandbox stopped");
        op_free(op);
    }
}

static int get_dim(json_t *body, const char *key, uint32_t def, uint32_t *out,
                   struct cb_error **err)
{
    json_t *v = json_object_get(body, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_DIM)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'%s' must be an integer in 1..%d",
                            key, MAX_DIM);
    *out = (uint32_t)json_integer_value(v);
    return 0;
}

void cb_api_pty_create(struct cb_http_req *req)
{
    json_t *body = cb_api_body(req, true);
    if (!body)
        return;
    struct cb_error *err = NULL;
    uint32_t cols, rows;
    if (get_dim(body, "cols", 80, &cols, &err) < 0 || get_dim(body, "rows", 24, &rows, &err) < 0) {
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        json_decref(body);
        return;
    }
    struct pty_op *op = op_new(req, false);
    if (!op) {
        json_decref(body);
        return;
    }
    op->body = body;
    op->cols = cols;
    op->rows = rows;
    cb_sbx_ready(op->s, create_ready, op);
}

/* ---------------------------------------------------------- list */

static void list_pty_cb(const uint8_t *p, size_t len, void *arg)
{
    struct pty_info pi;
    parse_proc(p, len, &pi);
    if (pi.mode == CB_SPAWN_PTY)
        json_array_append_new(arg, pty_json(&pi));
}

static void list_cb(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                    size_t len, int *fds, int nfds)
{
    struct pty_op *op = arg;
    if (!h || h->type != CB_MSG_PROCS) {
        respond_init_error(op->req, h, p, len);
        op_free(op);
        return;
    }
    json_t *items = json_array();
    cb_api_for_each_proc(p, len, list_pty_cb, items);
    cb_http_respond_json(op->req, 200, json_pack("{s:o}", "items", items));
    op_free(op);
}

/* Every PTY operation starts from init's process table: once the sandbox
 * is ready (or failed to be), ask for it and let cb answer. */
static void list_when_ready(struct pty_op *op, struct cb_sbx *s, struct cb_error *err,
                            cb_initc_reply_cb cb)
{
    if (err) {
        cb_http_respond_cb_error(op->req, err);
        op_free(op);
        return;
    }
    if (cb_api_send_list(s->initc, cb, op) < 0) {
        cb_http_respond_error(op->req, CB_ERR_CONFLICT, "sandbox stopped");
        op_free(op);
    }
}

static void list_ready(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    list_when_ready(arg, s, err, list_cb);
}

/* Running terminals with their current size, and ended ones with their exit
 * status for as long as init remembers them (the newest 1024 ended processes
 * of the sandbox), so a client that was away learns how its shell ended. */
void cb_api_pty_list(struct cb_http_req *req)
{
    struct pty_op *op = op_new(req, false);
    if (op)
        cb_sbx_ready(op->s, list_ready, op);
}

/* ---------------------------------------------------------- delete */

static void send_signal(struct cb_sbx *s, uint32_t pid, int signo)
{
    /* tree: the shell and every job it started */
    cb_initc_signal(s->initc, pid, signo, true);
}

static void kill_timer_closed(uv_handle_t *h)
{
    op_free(h->data);
}

static void kill_timer_cb(uv_timer_t *t)
{
    struct pty_op *op = t->data;
    /* Whatever ignored SIGHUP (nohup'd jobs of this terminal) goes now;
     * ESRCH when the group is already gone is fine. */
    send_signal(op->s, op->pid, SIGKILL);
    uv_close((uv_handle_t *)&op->timer, kill_timer_closed);
}

static void delete_list_cb(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                           size_t len, int *fds, int nfds)
{
    struct pty_op *op = arg;
    if (!h || h->type != CB_MSG_PROCS) {
        respond_init_error(op->req, h, p, len);
        op_free(op);
        return;
    }
    struct pty_info pi = find_pty(p, len, op->pid);
    if (!pi.found) {
        cb_http_respond_error(op->req, CB_ERR_NOT_FOUND, "no such pty");
        op_free(op);
        return;
    }
    if (pi.state != CB_PROC_RUNNING) {
        cb_http_respond_json(op->req, 200, pty_json(&pi));
        op_free(op);
        return;
    }
    /* SIGHUP is what a terminal hang-up sends: shells pass it to their jobs
     * and exit; SIGKILL follows for anything that ignores it. */
    send_signal(op->s, op->pid, SIGHUP);
    send_signal(op->s, op->pid, SIGCONT); /* stopped jobs must run to see SIGHUP */
    pi.state = CB_PROC_EXITED;
    pi.exit_code = -1;
    pi.signo = SIGHUP;
    cb_http_respond_json(op->req, 200, pty_json(&pi));
    op->req = NULL;
    uv_timer_init(op->s->d->loop, &op->timer);
    op->timer.data = op;
    uv_timer_start(&op->timer, kill_timer_cb, KILL_GRACE_MS, 0);
}

static void delete_ready(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    list_when_ready(arg, s, err, delete_list_cb);
}

void cb_api_pty_delete(struct cb_http_req *req)
{
    struct pty_op *op = op_new(req, true);
    if (op)
        cb_sbx_ready(op->s, delete_ready, op);
}

/* ---------------------------------------------------------- attach */

/* One WebSocket viewer. References (refs) are held by: the socket handle
 * until closed, the close timer until closed, the subscription while it is
 * pending at init, and each init request with a callback in flight. */
struct pty_view {
    int refs;
    struct cb_sbx *s;
    uint32_t pid;
    uint32_t sub_id;
    bool subscribed;  /* a SUBSCRIBE is pending at init */
    uint64_t resume_after; /* last seq received, from the END */
    union cb_stream_handle h;
    bool handle_open, reading, writing, closing, exit_sent;
    uv_timer_t timer;
    bool timer_open;
    uv_write_t wreq;
    uint8_t *wbuf;
    struct cb_ws *ws;
    int stdin_inflight;
    char rbuf[READ_BUF];
};

static void view_unref(struct pty_view *v)
{
    if (--v->refs > 0)
        return;
    v->s->attached--;
    cb_sbx_unref(v->s);
    if (v->ws)
        cb_ws_free(v->ws);
    free(v);
}

static void view_handle_closed(uv_handle_t *h)
{
    view_unref(h->data);
}

static void view_unsubscribe(struct pty_view *v)
{
    if (!v->subscribed)
        return;
    v->subscribed = false;
    /* A pending subscription implies a live connection: when it dies, the
     * callback runs first (with no header) and clears subscribed. */
    cb_initc_cancel(v->s->initc, v->sub_id);
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_UNSUBSCRIBE, cb_initc_next_id(v->s->initc));
    cb_builder_u32(&b, CB_F_SUB_ID, v->sub_id);
    cb_api_init_send(v->s->initc, &b, false, NULL, NULL);
    view_unref(v); /* the subscription's reference: its callback will not run */
}

/* Tear the viewer down: the terminal itself lives on in init. */
static void view_close(struct pty_view *v)
{
    if (v->closing)
        return;
    v->closing = true;
    view_unsubscribe(v);
    if (v->timer_open) {
        v->timer_open = false;
        uv_close((uv_handle_t *)&v->timer, view_handle_closed);
    }
    if (v->handle_open) {
        v->handle_open = false;
        uv_close(&v->h.handle, view_handle_closed);
    }
}

static void view_flush(struct pty_view *v);

static void view_write_cb(uv_write_t *w, int status)
{
    struct pty_view *v = w->data;
    free(v->wbuf);
    v->wbuf = NULL;
    v->writing = false;
    if (status < 0)
        view_close(v);
    else
        view_flush(v);
    view_unref(v); /* the write's reference */
}

/* One write at a time: output waits in the session's bounded queue, so a
 * viewer that does not read fills that queue (→ 1008), never our memory. */
static void view_flush(struct pty_view *v)
{
    if (v->closing || v->writing)
        return;
    size_t len = 0;
    uint8_t *out = cb_ws_take_output(v->ws, &len);
    if (out) {
        v->wbuf = out;
        v->wreq.data = v;
        uv_buf_t buf = uv_buf_init((char *)out, (unsigned)len);
        if (uv_write(&v->wreq, &v->h.stream, &buf, 1, view_write_cb) < 0) {
            free(out);
            v->wbuf = NULL;
            view_close(v);
            return;
        }
        v->writing = true;
        v->refs++;
        return;
    }
    if (cb_ws_is_finished(v->ws))
        view_close(v);
}

static void close_timeout_cb(uv_timer_t *t)
{
    view_close(t->data); /* the peer never answered our close frame */
}

static void view_ws_close(struct pty_view *v, uint16_t code, const char *reason)
{
    if (cb_ws_close(v->ws, code, reason) == 0 && !v->timer_open && !v->closing) {
        uv_timer_init(v->s->d->loop, &v->timer);
        v->timer.data = v;
        v->timer_open = true;
        v->refs++;
        uv_timer_start(&v->timer, close_timeout_cb, CLOSE_TIMEOUT_MS, 0);
    }
    view_flush(v);
}

static void view_subscribe(struct pty_view *v, uint64_t after_seq);

static void exit_list_cb(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                         size_t len, int *fds, int nfds)
{
    struct pty_view *v = arg;
    struct pty_info pi = {0};
    if (h && h->type == CB_MSG_PROCS)
        pi = find_pty(p, len, v->pid);
    if (v->closing) {
        /* nothing to tell */
    } else if (!h) {
        view_ws_close(v, CB_WS_CLOSE_GOING_AWAY, "sandbox stopped");
    } else if (pi.found && pi.state == CB_PROC_RUNNING) {
        /* init dropped this viewer's subscription (it read too slowly):
         * the ring still has the output, so resume where it stopped. */
        view_subscribe(v, UINT64_MAX);
    } else {
        char msg[64];
        int n = snprintf(msg, sizeof(msg), "{\"type\":\"exit\",\"exit_code\":%d}",
                         pi.found ? shell_status(&pi) : -1);
        cb_ws_send(v->ws, CB_WS_TEXT, msg, (size_t)n);
        v->exit_sent = true;
        view_ws_close(v, CB_WS_CLOSE_NORMAL, "process exited");
    }
    view_unref(v);
}

static void view_output(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                        size_t len, int *fds, int nfds)
{
    struct pty_view *v = arg;
    struct cb_field_view f;
    if (!h || h->type == CB_MSG_ERROR || h->type == CB_MSG_END) {
        v->subscribed = false;
        if (v->closing) {
            view_unref(v);
            return;
        }
        if (!h) {
            view_ws_close(v, CB_WS_CLOSE_GOING_AWAY, "sandbox stopped");
        } else if (h->type == CB_MSG_ERROR) {
            view_ws_close(v, CB_WS_CLOSE_INTERNAL, "init refused the subscription");
        } else {
            uint64_t next = 0;
            if (cb_proto_find(p, len, CB_F_NEXT_SEQ, &f) == 1)
                cb_field_u64(&f, &next);
            v->resume_after = next ? next - 1 : 0;
            /* The END tells us the stream stopped; whether the process
             * ended (and how) is in its PROC record. */
            v->refs++;
            if (cb_api_send_list(v->s->initc, exit_list_cb, v) < 0) {
                v->refs--;
                view_ws_close(v, CB_WS_CLOSE_GOING_AWAY, "sandbox stopped");
            }
        }
        view_unref(v); /* the subscription's reference */
        return;
    }
    if (h->type != CB_MSG_OUTPUT || v->closing || cb_ws_is_closing(v->ws))
        return;
    if (cb_proto_find(p, len, CB_F_DATA, &f) != 1 || f.len == 0)
        return;
    if (cb_ws_send(v->ws, CB_WS_BINARY, f.value, f.len) == -ENOBUFS) {
        /* A viewer that does not read: cut it off; on reattach it gets the
         * scrollback again. */
        view_unsubscribe(v);
        view_ws_close(v, CB_WS_CLOSE_POLICY, "client too slow");
        return;
    }
    view_flush(v);
}

static void view_subscribe(struct pty_view *v, uint64_t after_seq)
{
    if (after_seq == UINT64_MAX)
        after_seq = v->resume_after;
    if (!cb_initc_alive(v->s->initc)) {
        view_ws_close(v, CB_WS_CLOSE_GOING_AWAY, "sandbox stopped");
        return;
    }
    v->sub_id = cb_initc_next_id(v->s->initc);
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_SUBSCRIBE, v->sub_id);
    cb_builder_u32(&b, CB_F_PID, v->pid);
    cb_builder_u64(&b, CB_F_AFTER_SEQ, after_seq);
    cb_builder_u32(&b, CB_F_FOLLOW, 1);
    v->refs++;
    v->subscribed = true;
    if (cb_api_init_send(v->s->initc, &b, true, view_output, v) < 0) {
        v->subscribed = false;
        v->refs--;
        view_ws_close(v, CB_WS_CLOSE_GOING_AWAY, "sandbox stopped");
    }
}

static void view_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void view_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct pty_view *v = h->data;
    *buf = uv_buf_init(v->rbuf, sizeof(v->rbuf));
}

/* Read from the viewer only while init keeps up with its input. */
static void view_update_reading(struct pty_view *v)
{
    bool want = !v->closing && v->stdin_inflight < MAX_STDIN_INFLIGHT;
    if (want && !v->reading) {
        if (uv_read_start(&v->h.stream, view_alloc_cb, view_read_cb) == 0)
            v->reading = true;
    } else if (!want && v->reading) {
        uv_read_stop(&v->h.stream);
        v->reading = false;
    }
}

static void stdin_cb(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                     size_t len, int *fds, int nfds)
{
    struct pty_view *v = arg;
    v->stdin_inflight--;
    if (!v->closing)
        view_update_reading(v);
    view_unref(v);
}

static void view_stdin(struct pty_view *v, const uint8_t *data, size_t len)
{
    if (len == 0 || !cb_initc_alive(v->s->initc))
        return;
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_STDIN, cb_initc_next_id(v->s->initc));
    cb_builder_u32(&b, CB_F_PID, v->pid);
    cb_builder_bytes(&b, CB_F_DATA, data, len);
    v->refs++;
    v->stdin_inflight++;
    if (cb_api_init_send(v->s->initc, &b, false, stdin_cb, v) < 0) {
        v->refs--;
        v->stdin_inflight--;
    }
    view_update_reading(v);
}

/* Text frames are control messages; only resize exists. Anything else is
 * ignored rather than fatal so newer clients can add message types. */
static void view_control(struct pty_view *v, const uint8_t *data, size_t len)
{
    json_t *m = json_loadb((const char *)data, len, 0, NULL);
    json_t *c = json_object_get(m, "cols"), *r = json_object_get(m, "rows");
    const char *type = json_string_value(json_object_get(m, "type"));
    if (type && strcmp(type, "resize") == 0 && json_is_integer(c) && json_is_integer(r) &&
        json_integer_value(c) >= 1 && json_integer_value(c) <= MAX_DIM &&
        json_integer_value(r) >= 1 && json_integer_value(r) <= MAX_DIM &&
        cb_initc_alive(v->s->initc)) {
        struct cb_builder b;
        cb_builder_init(&b, CB_MSG_RESIZE, cb_initc_next_id(v->s->initc));
        cb_builder_u32(&b, CB_F_PID, v->pid);
        cb_builder_u32(&b, CB_F_COLS, (uint32_t)json_integer_value(c));
        cb_builder_u32(&b, CB_F_ROWS, (uint32_t)json_integer_value(r));
        cb_api_init_send(v->s->initc, &b, false, NULL, NULL);
    }
    json_decref(m);
}

static void on_ws_message(struct cb_ws *ws, enum cb_ws_opcode op, const uint8_t *data,
                          size_t len, void *user)
{
    struct pty_view *v = user;
    if (v->closing)
        return;
    if (op == CB_WS_BINARY)
        view_stdin(v, data, len);
    else
        view_control(v, data, len);
}

static void on_ws_close(struct cb_ws *ws, uint16_t code, const char *reason,
                        size_t reason_len, void *user)
{
    struct pty_view *v = user;
    /* The viewer detached (or broke the protocol): stop following; the
     * close reply is queued and view_flush closes once it is written. */
    view_unsubscribe(v);
}

static void view_feed(struct pty_view *v, const void *data, size_t len)
{
    int r = cb_ws_feed(v->ws, data, len);
    if (r < 0) {
        view_unsubscribe(v);
        if (r == -ENOBUFS) {
            view_close(v);
            return;
        }
    }
    view_flush(v);
}

static void view_read_cb(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct pty_view *v = st->data;
    if (n < 0) {
        view_close(v);
        return;
    }
    if (n > 0)
        view_feed(v, buf->base, (size_t)n);
}

static int view_open_stream(struct pty_view *v, uv_loop_t *loop, int fd, bool tcp)
{
    int r = tcp ? uv_tcp_init(loop, &v->h.tcp) : uv_pipe_init(loop, &v->h.pipe, 0);
    if (r < 0)
        return r;
    v->h.handle.data = v;
    v->handle_open = true;
    v->refs++;
    return tcp ? uv_tcp_open(&v->h.tcp, fd) : uv_pipe_open(&v->h.pipe, fd);
}

/* The pty exists: take the connection over, answer 101, start following. */
static void attach(struct pty_op *op)
{
    struct cb_http_req *req = op->req;
    const char *key = cb_http_header(req, "sec-websocket-key");
    char head[256];
    int hlen = cb_ws_handshake_response(key, head, sizeof(head));
    int fd = -1;
    char *rest = NULL;
    size_t rest_len = 0;
    bool tcp = req->via_tcp;
    if (hlen <= 0) {
        cb_http_respond_error(req, CB_ERR_BAD_REQUEST, "bad Sec-WebSocket-Key");
        return;
    }
    int r = cb_http_upgrade(req, &fd, &rest, &rest_len);
    if (r < 0) {
        cb_http_respond_error(req, CB_ERR_INTERNAL, "cannot take over the connection: %s",
                              strerror(-r));
        return;
    }
    struct pty_view *v = cb_xcalloc(1, sizeof(*v));
    v->s = op->s;
    cb_sbx_ref(v->s);
    v->s->attached++;
    v->pid = op->pid;
    v->refs = 1; /* held by attach() until the end of this function */
    static const struct cb_ws_callbacks cbs = {.on_message = on_ws_message,
                                               .on_close = on_ws_close};
    v->ws = cb_ws_new(&cbs, v, WS_MAX_MESSAGE, WS_MAX_QUEUED);
    if (view_open_stream(v, op->s->d->loop, fd, tcp) < 0) {
        close(fd);
        free(rest);
        view_close(v);
        view_unref(v);
        return;
    }
    uv_buf_t b = uv_buf_init(head, (unsigned)hlen);
    if (uv_try_write(&v->h.stream, &b, 1) != hlen) {
        /* 101 head is < 256 bytes on a fresh socket; a partial write means
         * the peer is already gone. */
        free(rest);
        view_close(v);
        view_unref(v);
        return;
    }
    view_subscribe(v, 0); /* AFTER_SEQ 0: the whole scrollback first */
    if (rest_len)
        view_feed(v, rest, rest_len);
    free(rest);
    view_update_reading(v);
    view_unref(v);
}

static void ws_list_cb(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                       size_t len, int *fds, int nfds)
{
    struct pty_op *op = arg;
    if (!h || h->type != CB_MSG_PROCS) {
        respond_init_error(op->req, h, p, len);
    } else if (!find_pty(p, len, op->pid).found) {
        cb_http_respond_error(op->req, CB_ERR_NOT_FOUND, "no such pty");
    } else if (op->req->aborted) {
        cb_http_respond_error(op->req, CB_ERR_CONFLICT, "client went away");
    } else {
        attach(op);
    }
    op_free(op);
}

static void ws_ready(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    list_when_ready(arg, s, err, ws_list_cb);
}

void cb_api_pty_ws(struct cb_http_req *req)
{
    int r = cb_ws_check_upgrade(cb_http_header(req, "upgrade"), cb_http_header(req, "connection"),
                                cb_http_header(req, "sec-websocket-version"),
                                cb_http_header(req, "sec-websocket-key"));
    if (r == -EPROTONOSUPPORT) {
        cb_http_respond_status(req, 426, "bad_request", "WebSocket version 13 required",
                               "Sec-WebSocket-Version: 13\r\n");
        return;
    }
    if (r < 0) {
        cb_http_respond_error(req, CB_ERR_BAD_REQUEST, "%s",
                              r == -ENOPROTOOPT ? "this route needs a WebSocket upgrade"
                                                : "bad Sec-WebSocket-Key");
        return;
    }
    struct pty_op *op = op_new(req, true);
    if (op)
        cb_sbx_ready(op->s, ws_ready, op);
}
