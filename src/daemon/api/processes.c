/* processes.c — background processes. init owns them and keeps their
 * output in bounded rings, so they and their output survive a daemon
 * restart; the daemon only relays requests over the control connection. */
#include <signal.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "json.h"

struct proc_op {
    struct cb_http_req *req;
    struct cb_sbx *s;
    json_t *body;
    uint32_t pid;
    uint32_t sub_id;
    int pending;      /* STDIN frames awaiting OK */
    bool failed, ended;
    uv_timer_t timer; /* wait ?timeout= */
    bool timer_on;
    struct cb_exit_listener exit_l;
    int signo;
    bool eof;
};

static void op_free(struct proc_op *op)
{
    json_decref(op->body);
    cb_sbx_unref(op->s);
    free(op);
}

static struct proc_op *op_new(struct cb_http_req *req, bool with_pid)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return NULL;
    struct proc_op *op = cb_xcalloc(1, sizeof(*op));
    op->req = req;
    op->s = s;
    cb_sbx_ref(s);
    if (with_pid) {
        if (!cb_api_parse_pid(cb_route_param(&req->match, "pid"), &op->pid)) {
            cb_http_respond_error(req, CB_ERR_NOT_FOUND, "no such process");
            op_free(op);
            return NULL;
        }
    }
    if (strcmp(s->rec.state, "stopped") == 0) {
        cb_http_respond_error(req, CB_ERR_CONFLICT, "sandbox is stopped; start it first");
        op_free(op);
        return NULL;
    }
    return op;
}

static void respond_init_error(struct cb_http_req *req, const struct cb_frame_header *h,
                               const uint8_t *p, size_t len)
{
    cb_api_respond_init_error(req, h, p, len, "no such process");
}

static json_t *proc_json(const uint8_t *p, size_t len)
{
    json_t *o = json_object(), *argv = json_array();
    size_t off = 0;
    struct cb_field_view f;
    uint32_t u = 0, state = 0, signo = 0;
    int32_t code = -1;
    uint64_t v = 0;
    while (cb_proto_next_field(p, len, &off, &f) > 0) {
        switch (f.tag) {
        case CB_F_PID: if (!cb_field_u32(&f, &u)) json_object_set_new(o, "pid", json_integer(u)); break;
        case CB_F_PROC_ID: if (!cb_field_u64(&f, &v)) json_object_set_new(o, "proc_id", json_integer((json_int_t)v)); break;
        case CB_F_STATE: cb_field_u32(&f, &state); break;
        case CB_F_EXIT_CODE: cb_field_i32(&f, &code); break;
        case CB_F_SIGNO: cb_field_u32(&f, &signo); break;
        case CB_F_TIMED_OUT: if (!cb_field_u32(&f, &u)) json_object_set_new(o, "timed_out", json_boolean(u)); break;
        case CB_F_STARTED_AT: if (!cb_field_u64(&f, &v)) json_object_set_new(o, "started_at", json_real((double)v / 1e3)); break;
        case CB_F_ENDED_AT: if (!cb_field_u64(&f, &v) && v) json_object_set_new(o, "ended_at", json_real((double)v / 1e3)); break;
        case CB_F_MODE: if (!cb_field_u32(&f, &u)) json_object_set_new(o, "mode", json_string(u == CB_SPAWN_PTY ? "pty" : u == CB_SPAWN_PIPES ? "exec" : "background")); break;
        case CB_F_CWD: { char *s = cb_field_strdup(&f); if (s) json_object_set_new(o, "cwd", json_string(s)); free(s); break; }
        case CB_F_TAG: { char *s = cb_field_strdup(&f); if (s) json_object_set_new(o, "tag", json_string(s)); free(s); break; }
        case CB_F_ARGV: { char *s = cb_field_strdup(&f); if (s) json_array_append_new(argv, json_string(s)); free(s); break; }
        default: break;
        }
    }
    json_object_set_new(o, "argv", argv);
    bool running = state == CB_PROC_RUNNING;
    json_object_set_new(o, "state", json_string(running ? "running" : "exited"));
    json_object_set_new(o, "exit_code", running || signo ? json_null() : json_integer(code));
    json_object_set_new(o, "signal", signo ? json_integer(signo) : json_null());
    return o;
}

/* PROC entries of a PROCS reply as JSON: all (pid 0) or those of one pid. */
struct proc_match {
    uint32_t pid;
    json_t *items;
};

static void match_proc(const uint8_t *p, size_t len, void *arg)
{
    struct proc_match *m = arg;
    json_t *o = proc_json(p, len);
    if (m->pid == 0 || (uint32_t)json_integer_value(json_object_get(o, "pid")) == m->pid)
        json_array_append_new(m->items, o);
    else
        json_decref(o);
}

static int send_simple(struct proc_op *op, struct cb_builder *b, bool multi,
                       cb_initc_reply_cb cb)
{
    return cb_api_init_send(op->s->initc, b, multi, cb, op);
}

/* ---------------------------------------------------------- start */

static void started_cb(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                       size_t len, int *fds, int nfds)
{
    struct proc_op *op = arg;
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    if (!h || h->type != CB_MSG_SPAWNED) {
        respond_init_error(op->req, h, p, len);
    } else {
        json_t *o = proc_json(p, len);
        json_object_set_new(o, "state", json_string("running"));
        json_object_set_new(o, "exit_code", json_null());
        json_t *argv = json_object_get(op->body, "argv");
        if (argv) /* else ("cmd") the argv init reported: /bin/sh -c CMD */
            json_object_set(o, "argv", argv);
        cb_http_respond_json(op->req, 201, o);
    }
    op_free(op);
}

static void start_ready(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct proc_op *op = arg;
    struct cb_builder b;
    struct cb_error *e2 = NULL;
    if (err || cb_api_build_spawn(s, op->body, CB_SPAWN_BACKGROUND,
                                  cb_initc_next_id(s->initc), &b, &e2) < 0) {
        cb_http_respond_cb_error(op->req, err ? err : e2);
        cb_error_free(e2);
        op_free(op);
        return;
    }
    cb_initc_send(s->initc, &b, false, 0, started_cb, op);
    cb_builder_free(&b);
}

void cb_api_process_start(struct cb_http_req *req)
{
    json_t *body = cb_api_body(req, false);
    if (!body)
        return;
    struct proc_op *op = op_new(req, false);
    if (!op) {
        json_decref(body);
        return;
    }
    op->body = body;
    cb_sbx_ready(op->s, start_ready, op);
}

/* ---------------------------------------------------------- list / get */

static void procs_cb(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                     size_t len, int *fds, int nfds)
{
    struct proc_op *op = arg;
    if (!h || h->type != CB_MSG_PROCS) {
        respond_init_error(op->req, h, p, len);
        op_free(op);
        return;
    }
    struct proc_match m = {.pid = op->pid, .items = json_array()};
    cb_api_for_each_proc(p, len, match_proc, &m);
    json_t *items = m.items;
    if (op->pid == 0)
        cb_http_respond_json(op->req, 200, json_pack("{s:o}", "items", items));
    else if (json_array_size(items) == 0) {
        json_decref(items);
        cb_http_respond_error(op->req, CB_ERR_NOT_FOUND, "no such process");
    } else {
        /* pid reuse: the newest record is the one the caller means */
        json_t *last = json_array_get(items, json_array_size(items) - 1);
        cb_http_respond_json(op->req, 200, json_incref(last));
        json_decref(items);
    }
    op_free(op);
}

static void list_ready(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct proc_op *op = arg;
    if (err) {
        cb_http_respond_cb_error(op->req, err);
        op_free(op);
        return;
    }
    if (cb_api_send_list(s->initc, procs_cb, op) < 0) {
        cb_http_respond_error(op->req, CB_ERR_CONFLICT, "sandbox stopped");
        op_free(op);
    }
}

void cb_api_process_list(struct cb_http_req *req)
{
    struct proc_op *op = op_new(req, false);
    if (op)
        cb_sbx_ready(op->s, list_ready, op);
}

void cb_api_process_get(struct cb_http_req *req)
{
    struct proc_op *op = op_new(req, true);
    if (op)
        cb_sbx_ready(op->s, list_ready, op);
}

/* ---------------------------------------------------------- signals */

static void ok_cb(void *arg, const struct cb_frame_header *h, const uint8_t *p, size_t len,
                  int *fds, int nfds)
{
    struct proc_op *op = arg;
    if (!h || h->type != CB_MSG_OK)
        op->failed = true;
    if (op->failed && !op->req->finished)
        respond_init_error(op->req, h, p, len);
    if (--op->pending > 0)
        return;
    if (!op->failed)
        cb_http_respond_json(op->req, 200, json_pack("{s:b}", "ok", 1));
    op_free(op);
}

static void signal_ready(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct proc_op *op = arg;
    if (err) {
        cb_http_respond_cb_error(op->req, err);
        op_free(op);
        return;
    }
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_SIGNAL, cb_initc_next_id(s->initc));
    cb_builder_u32(&b, CB_F_PID, op->pid);
    cb_builder_u32(&b, CB_F_SIGNO, (uint32_t)op->signo);
    cb_builder_u32(&b, CB_F_TREE, 1);
    op->pending = 1;
    send_simple(op, &b, false, ok_cb);
}

void cb_api_process_kill(struct cb_http_req *req)
{
    struct proc_op *op = op_new(req, true);
    if (!op)
        return;
    op->signo = SIGKILL;
    cb_sbx_ready(op->s, signal_ready, op);
}

static int signal_number(const char *name)
{
    static const struct { const char *n; int v; } sigs[] = {
        {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT}, {"HUP", SIGHUP},
        {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"STOP", SIGSTOP},
        {"CONT", SIGCONT}, {"ALRM", SIGALRM}, {"WINCH", SIGWINCH}, {"PIPE", SIGPIPE}};
    if (strncasecmp(name, "SIG", 3) == 0)
        name += 3;
    for (size_t i = 0; i < CB_ARRAY_SIZE(sigs); i++)
        if (strcasecmp(name, sigs[i].n) == 0)
            return sigs[i].v;
    char *end;
    long v = strtol(name, &end, 10);
    return *end == 0 && v > 0 && v < 65 ? (int)v : -1;
}

void cb_api_process_signal(struct cb_http_req *req)
{
    json_t *body = cb_api_body(req, false);
    if (!body)
        return;
    json_t *sig = json_object_get(body, "signal");
    int signo = json_is_string(sig) ? signal_number(json_string_value(sig))
              : json_is_integer(sig) && json_integer_value(sig) > 0 && json_integer_value(sig) < 65
                  ? (int)json_integer_value(sig) : -1;
    json_decref(body);
    if (signo < 0) {
        cb_http_respond_error(req, CB_ERR_BAD_REQUEST, "'signal' must be a signal name (\"TERM\") or number");
        return;
    }
    struct proc_op *op = op_new(req, true);
    if (!op)
        return;
    op->signo = signo;
    cb_sbx_ready(op->s, signal_ready, op);
}

/* ---------------------------------------------------------- stdin */

#define STDIN_FRAME (256 * 1024)

static void stdin_ready(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct proc_op *op = arg;
    if (err) {
        cb_http_respond_cb_error(op->req, err);
        op_free(op);
        return;
    }
    const char *data = op->req->body;
    size_t len = op->req->body_len, off = 0;
    op->pending = 1; /* held until every frame is queued */
    do {
        size_t n = len - off < STDIN_FRAME ? len - off : STDIN_FRAME;
        bool last = off + n == len;
        struct cb_builder b;
        cb_builder_init(&b, CB_MSG_STDIN, cb_initc_next_id(s->initc));
        cb_builder_u32(&b, CB_F_PID, op->pid);
        if (n)
            cb_builder_bytes(&b, CB_F_DATA, data + off, n);
        if (last && op->eof)
            cb_builder_u32(&b, CB_F_EOF, 1);
        op->pending++;
        if (send_simple(op, &b, false, ok_cb) < 0)
            op->pending--;
        off += n;
    } while (off < len);
    ok_cb(op, &(struct cb_frame_header){.type = CB_MSG_OK}, NULL, 0, NULL, 0);
}

void cb_api_process_stdin(struct cb_http_req *req)
{
    struct proc_op *op = op_new(req, true);
    if (!op)
        return;
    op->eof = cb_http_query_bool(req, "eof");
    cb_sbx_ready(op->s, stdin_ready, op);
}

/* ---------------------------------------------------------- output */

static void output_frame(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                         size_t len, int *fds, int nfds)
{
    struct proc_op *op = arg;
    struct cb_http_req *req = op->req;
    if (!h || h->type == CB_MSG_ERROR) {
        if (!req->headers_sent)
            respond_init_error(req, h, p, len);
        else
            cb_http_stream_end(req);
        op->s->attached--;
        op_free(op);
        return;
    }
    if (!req->headers_sent)
        cb_http_stream_begin_events(req, req->format);
    struct cb_field_view f;
    uint64_t seq = 0, next = 0, dropped = 0;
    uint32_t stream = 0;
    if (h->type == CB_MSG_OUTPUT) {
        if (cb_proto_find(p, len, CB_F_SEQ, &f) == 1)
            cb_field_u64(&f, &seq);
        if (cb_proto_find(p, len, CB_F_STREAM, &f) == 1)
            cb_field_u32(&f, &stream);
        json_t *ev = json_pack("{s:s,s:I}", "type",
                               stream == CB_STREAM_STDERR ? "stderr" : stream == CB_STREAM_PTY ? "pty" : "stdout",
                               "seq", (json_int_t)seq);
        if (cb_proto_find(p, len, CB_F_DATA, &f) == 1) {
            if (cb_utf8_valid((const char *)f.value, f.len)) {
                json_object_set_new(ev, "data", json_stringn((const char *)f.value, f.len));
            } else {
                char *b64 = cb_base64_encode(f.value, f.len);
                json_object_set_new(ev, "data_b64", json_string(b64));
                free(b64);
            }
        }
        cb_http_stream_event(req, ev);
        /* A reader that does not keep up is cut off (it resumes with
         * after_seq) rather than making the daemon buffer without bound or
         * stall the control connection every other request shares. */
        if (cb_http_congested(req) && !op->ended) {
            op->ended = true;
            cb_initc_cancel(op->s->initc, op->sub_id);
            struct cb_builder b;
            cb_builder_init(&b, CB_MSG_UNSUBSCRIBE, cb_initc_next_id(op->s->initc));
            cb_builder_u32(&b, CB_F_SUB_ID, op->sub_id);
            if (cb_builder_finish(&b) == 0)
                cb_initc_send(op->s->initc, &b, false, 0, NULL, NULL);
            cb_builder_free(&b);
            cb_http_stream_event(req, json_pack("{s:s,s:I,s:s}", "type", "end", "seq", (json_int_t)seq,
                                                "reason", "slow reader; resume with after_seq"));
            cb_http_stream_end(req);
            op->s->attached--;
            op_free(op);
        }
        return;
    }
    if (h->type == CB_MSG_END) {
        if (cb_proto_find(p, len, CB_F_NEXT_SEQ, &f) == 1)
            cb_field_u64(&f, &next);
        if (cb_proto_find(p, len, CB_F_DROPPED, &f) == 1)
            cb_field_u64(&f, &dropped);
        json_t *ev = json_pack("{s:s,s:I,s:I}", "type", "end", "next_seq", (json_int_t)next,
                               "dropped", (json_int_t)dropped);
        json_object_set_new(ev, "seq", json_integer((json_int_t)(next ? next - 1 : 0)));
        cb_http_stream_event(req, ev);
        cb_http_stream_end(req);
        op->s->attached--;
        op_free(op);
    }
}

static void output_abort(struct cb_http_req *req)
{
    struct proc_op *op = req->data;
    if (!op || op->ended)
        return;
    /* Leave the subscription to END on its own when not following; when
     * following, unsubscribe so init stops sending. */
    struct cb_builder b;
    if (!cb_initc_alive(op->s->initc))
        return;
    cb_builder_init(&b, CB_MSG_UNSUBSCRIBE, cb_initc_next_id(op->s->initc));
    cb_builder_u32(&b, CB_F_SUB_ID, op->sub_id);
    if (cb_builder_finish(&b) == 0)
        cb_initc_send(op->s->initc, &b, false, 0, NULL, NULL);
    cb_builder_free(&b);
}

static void output_ready(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct proc_op *op = arg;
    struct cb_http_req *req = op->req;
    if (err) {
        cb_http_respond_cb_error(req, err);
        op_free(op);
        return;
    }
    _cleanup_free_ char *after = cb_http_query(req, "after_seq");
    bool follow = cb_http_query_bool(req, "follow");
    req->format = cb_http_accept_stream(req);
    if (req->format == CB_FMT_NONE)
        req->format = CB_FMT_NDJSON;
    op->sub_id = cb_initc_next_id(s->initc);
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_SUBSCRIBE, op->sub_id);
    cb_builder_u32(&b, CB_F_PID, op->pid);
    cb_builder_u64(&b, CB_F_AFTER_SEQ, after ? strtoull(after, NULL, 10) : 0);
    cb_builder_u32(&b, CB_F_FOLLOW, follow);
    s->attached++;
    req->data = op;
    req->on_abort = output_abort;
    send_simple(op, &b, true, output_frame);
}

void cb_api_process_output(struct cb_http_req *req)
{
    struct proc_op *op = op_new(req, true);
    if (op)
        cb_sbx_ready(op->s, output_ready, op);
}

/* ---------------------------------------------------------- wait */

/* A wait has up to three owners: its answer, the LIST in flight and the
 * timer handle; the op is freed when the last lets go. */
static void wait_release(struct proc_op *op)
{
    if (--op->pending == 0)
        op_free(op);
}

static void wait_timer_closed(uv_handle_t *h)
{
    wait_release(h->data);
}

/* Answer once: with result, or with an error when result is NULL. */
static void wait_finish(struct proc_op *op, json_t *result, enum cb_error_kind kind,
                        const char *msg)
{
    if (op->ended) {
        json_decref(result);
        return;
    }
    op->ended = true;
    cb_sbx_remove_exit_listener(op->s, &op->exit_l);
    if (result)
        cb_http_respond_json(op->req, 200, result);
    else
        cb_http_respond_error(op->req, kind, "%s", msg);
    if (op->timer_on) {
        uv_timer_stop(&op->timer);
        uv_close((uv_handle_t *)&op->timer, wait_timer_closed);
    }
    wait_release(op);
}

static void wait_exit_cb(struct cb_exit_listener *l, const struct cb_exit_info *e)
{
    struct proc_op *op = (struct proc_op *)((char *)l - offsetof(struct proc_op, exit_l));
    if (e->lost) {
        wait_finish(op, NULL, CB_ERR_CONFLICT, "sandbox stopped");
        return;
    }
    json_t *o = json_pack("{s:I,s:s,s:o,s:o,s:b}", "pid", (json_int_t)op->pid, "state", "exited",
                          "exit_code", e->signo ? json_null() : json_integer(e->exit_code),
                          "signal", e->signo ? json_integer(e->signo) : json_null(),
                          "timed_out", e->timed_out);
    wait_finish(op, o, CB_ERR_INTERNAL, NULL);
}

static void wait_timeout_cb(uv_timer_t *t)
{
    struct proc_op *op = t->data;
    wait_finish(op, json_pack("{s:I,s:s,s:b}", "pid", (json_int_t)op->pid, "state", "running",
                              "wait_timed_out", 1), CB_ERR_INTERNAL, NULL);
}

static void wait_list_cb(void *arg, const struct cb_frame_header *h, const uint8_t *p,
                         size_t len, int *fds, int nfds)
{
    struct proc_op *op = arg;
    if (!h || h->type != CB_MSG_PROCS) {
        wait_finish(op, NULL, h ? CB_ERR_INTERNAL : CB_ERR_CONFLICT,
                    h ? "init refused the request" : "sandbox stopped");
        wait_release(op);
        return;
    }
    struct proc_match m = {.pid = op->pid, .items = json_array()};
    cb_api_for_each_proc(p, len, match_proc, &m);
    /* pid reuse: the newest record is the one the caller means */
    size_t n = json_array_size(m.items);
    json_t *found = n ? json_incref(json_array_get(m.items, n - 1)) : NULL;
    json_decref(m.items);
    if (!found)
        wait_finish(op, NULL, CB_ERR_NOT_FOUND, "no such process");
    else if (strcmp(json_string_value(json_object_get(found, "state")), "exited") == 0)
        wait_finish(op, found, CB_ERR_INTERNAL, NULL);
    else
        json_decref(found); /* still running: the exit listener or the timer answers */
    wait_release(op);
}

static void wait_ready(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct proc_op *op = arg;
    if (err) {
        cb_http_respond_cb_error(op->req, err);
        op_free(op);
        return;
    }
    _cleanup_free_ char *t = cb_http_query(op->req, "timeout");
    double timeout = t ? strtod(t, NULL) : 0;
    /* Listen first, then ask: an exit between the two is not missed. */
    op->exit_l = (struct cb_exit_listener){.pid = op->pid, .fn = wait_exit_cb};
    cb_sbx_add_exit_listener(s, &op->exit_l);
    op->pending = 2; /* the answer and the LIST */
    if (timeout > 0) {
        op->pending++;
        uv_timer_init(s->d->loop, &op->timer);
        op->timer.data = op;
        op->timer_on = true;
        uv_timer_start(&op->timer, wait_timeout_cb, (uint64_t)(timeout * 1000), 0);
    }
    if (cb_api_send_list(s->initc, wait_list_cb, op) < 0) {
        wait_finish(op, NULL, CB_ERR_CONFLICT, "sandbox stopped");
        wait_release(op);
    }
}

void cb_api_process_wait(struct cb_http_req *req)
{
    struct proc_op *op = op_new(req, true);
    if (op)
        cb_sbx_ready(op->s, wait_ready, op);
}
