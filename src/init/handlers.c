/* handlers.c — one function per request type (a table, as data).
 *
 * Every payload is first walked once in full (validate_fields): a field
 * list that does not parse ends the connection, as proto.h specifies.
 * After that the handlers read fields with cb_proto_find; a numeric field
 * of the wrong size or a string with a NUL inside is also a malformed
 * frame. Semantic problems (no such pid, bad mode) are answered with ERROR
 * and the connection stays. */
#include "init.h"

#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>

#define MSG_EPROTO (-EPROTO)

struct req {
    struct init_state *st;
    struct conn *c;
    uint32_t id;
    const uint8_t *p;
    size_t n;
};

/* Optional numeric fields: 1 found, 0 absent (out = def), -EPROTO. */
static int get_u32(const struct req *r, uint16_t tag, uint32_t def, uint32_t *out)
{
    struct cb_field_view f;
    *out = def;
    int k = cb_proto_find(r->p, r->n, tag, &f);
    if (k <= 0)
        return k;
    return cb_field_u32(&f, out) < 0 ? MSG_EPROTO : 1;
}

static int get_u64(const struct req *r, uint16_t tag, uint64_t def, uint64_t *out)
{
    struct cb_field_view f;
    *out = def;
    int k = cb_proto_find(r->p, r->n, tag, &f);
    if (k <= 0)
        return k;
    return cb_field_u64(&f, out) < 0 ? MSG_EPROTO : 1;
}

/* Walk the whole field list, and nested PROC lists too: a request has no
 * business carrying PROC, but a malformed one is still a malformed frame.
 * Nesting deeper than PROC-in-PROC is refused outright. */
static int validate_fields(const uint8_t *p, size_t n, size_t *count, int depth)
{
    size_t off = 0;
    struct cb_field_view f;
    int k;
    if (depth > 2)
        return MSG_EPROTO;
    while ((k = cb_proto_next_field(p, n, &off, &f)) > 0) {
        (*count)++;
        if (f.tag == CB_F_PROC && validate_fields(f.value, f.len, count, depth + 1) < 0)
            return MSG_EPROTO;
    }
    return k;
}

/* ---- HELLO, PING, KILL_ALL ---- */

static int on_hello(const struct req *r)
{
    uint32_t version;
    if (get_u32(r, CB_F_VERSION, CB_PROTO_VERSION, &version) < 0)
        return MSG_EPROTO;
    if (version != CB_PROTO_VERSION) {
        conn_reply_error(r->c, r->id, EPROTONOSUPPORT,
                         "protocol version %u not supported (init speaks %d)",
                         version, CB_PROTO_VERSION);
        return 0;
    }
    struct cb_builder b;
    init_builder(&b, CB_MSG_HELLO_OK, r->id);
    cb_builder_u32(&b, CB_F_VERSION, CB_PROTO_VERSION);
    cb_builder_u32(&b, CB_F_PID, (uint32_t)getpid());
    cb_builder_u32(&b, CB_F_NPROCS, r->st->nrunning);
    conn_queue(r->c, &b, NULL, 0);
    return 0;
}

static int on_ping(const struct req *r)
{
    conn_reply_simple(r->c, CB_MSG_PONG, r->id);
    return 0;
}

static int on_kill_all(const struct req *r)
{
    uint32_t signo;
    if (get_u32(r, CB_F_SIGNO, SIGKILL, &signo) < 0)
        return MSG_EPROTO;
    if (signo == 0 || signo >= NSIG) {
        conn_reply_error(r->c, r->id, EINVAL, "bad signal %u", signo);
        return 0;
    }
    /* As PID 1 of the namespace, kill(-1) reaches every process in it
     * except init itself (the kernel skips the caller). Outside of that
     * (tests), kill(-1) would reach the host, so only the process groups
     * init created are signalled. */
    if (r->st->is_pid1)
        kill(-1, (int)signo);
    else
        proc_kill_known_groups(r->st, (int)signo);
    conn_reply_simple(r->c, CB_MSG_OK, r->id);
    return 0;
}

/* ---- SPAWN ---- */

static int spawn_collect(const struct req *r, struct spawn_request *sr)
{
    size_t off = 0, na = 0, ne = 0;
    struct cb_field_view f;
    while (cb_proto_next_field(r->p, r->n, &off, &f) > 0) {
        char **slot = NULL;
        if (f.tag == CB_F_ARGV)
            slot = &sr->argv[na++];
        else if (f.tag == CB_F_ENV)
            slot = &sr->env[ne++];
        else if (f.tag == CB_F_CWD && !sr->cwd)
            slot = &sr->cwd;
        else if (f.tag == CB_F_TAG && !sr->tag)
            slot = &sr->tag;
        if (slot && !(*slot = cb_field_strdup(&f)))
            return MSG_EPROTO;
    }
    return 0;
}

static int spawn_parse(const struct req *r, struct spawn_request *sr)
{
    size_t off = 0, na = 0, ne = 0;
    struct cb_field_view f;
    while (cb_proto_next_field(r->p, r->n, &off, &f) > 0) {
        na += f.tag == CB_F_ARGV;
        ne += f.tag == CB_F_ENV;
    }
    sr->argv = cb_xcalloc(na + 1, sizeof(char *));
    sr->env = cb_xcalloc(ne + 1, sizeof(char *));
    sr->argc = na;
    sr->envc = ne;
    if (spawn_collect(r, sr) < 0 ||
        get_u32(r, CB_F_UID, 0, &sr->uid) < 0 ||
        get_u32(r, CB_F_GID, 0, &sr->gid) < 0 ||
        get_u32(r, CB_F_MODE, CB_SPAWN_BACKGROUND, &sr->mode) < 0 ||
        get_u32(r, CB_F_COLS, 80, &sr->cols) < 0 ||
        get_u32(r, CB_F_ROWS, 24, &sr->rows) < 0 ||
        get_u32(r, CB_F_FORGET_ON_EXIT, 0, &sr->forget_on_exit) < 0 ||
        get_u32(r, CB_F_HOLD_OUTPUT, 0, &sr->hold_output) < 0 ||
        get_u64(r, CB_F_TIMEOUT_MS, 0, &sr->timeout_ms) < 0)
        return MSG_EPROTO;
    return 0;
}

/* Semantic checks; 0 or an errno with the message in msg. */
static int spawn_check(const struct init_state *st, const struct spawn_request *sr,
                       const char **msg)
{
    if (sr->argc == 0)
        return *msg = "ARGV is required", EINVAL;
    if (sr->mode < CB_SPAWN_PIPES || sr->mode > CB_SPAWN_PTY)
        return *msg = "unknown MODE", EINVAL;
    /* Only a PIPES process has nothing left in init once it exited; a
     * BACKGROUND or PTY one still has output to be read. */
    if (sr->forget_on_exit && sr->mode != CB_SPAWN_PIPES)
        return *msg = "FORGET_ON_EXIT is for PIPES mode only", EINVAL;
    if (sr->hold_output && sr->mode != CB_SPAWN_PIPES)
        return *msg = "HOLD_OUTPUT is for PIPES mode only", EINVAL;
    if (sr->cwd && sr->cwd[0] != '/')
        return *msg = "CWD must be absolute", EINVAL;
    if (sr->cols == 0 || sr->cols > 0xffff || sr->rows == 0 || sr->rows > 0xffff)
        return *msg = "COLS/ROWS out of range", EINVAL;
    if (sr->timeout_ms > 1000ull * 86400 * 365 * 100)
        return *msg = "TIMEOUT_MS out of range", EINVAL;
    if (st->nrunning >= INIT_MAX_RUNNING)
        return *msg = "too many running processes", EAGAIN;
    return 0;
}

static void spawn_reply(const struct req *r, const struct proc *p,
                        const struct spawn_request *sr, const struct spawn_result *res)
{
    struct cb_builder b;
    init_builder(&b, CB_MSG_SPAWNED, r->id);
    cb_builder_u32(&b, CB_F_PID, (uint32_t)p->pid);
    cb_builder_u64(&b, CB_F_PROC_ID, p->proc_id);
    cb_builder_u64(&b, CB_F_STARTED_AT, p->started_at);
    if (p->mode == CB_SPAWN_PIPES) {
        int fds[3] = {res->stdin_fd, res->stdout_fd, res->stderr_fd};
        if (sr->hold_output) /* copies, before the originals go (drain.c) */
            held_add(r->st, r->c, p->proc_id, res->stdout_fd, res->stderr_fd);
        conn_queue(r->c, &b, fds, 3); /* closed by init once sent */
    } else {
        conn_queue(r->c, &b, NULL, 0);
    }
}

static int on_spawn(const struct req *r, size_t nfields)
{
    if (nfields > CB_PROTO_MAX_FIELDS) {
        conn_reply_error(r->c, r->id, E2BIG, "more than %d fields",
                         CB_PROTO_MAX_FIELDS);
        return 0;
    }
    struct spawn_request sr = {0};
    int ret = spawn_parse(r, &sr);
    const char *what = NULL;
    int e = ret < 0 ? 0 : spawn_check(r->st, &sr, &what);
    if (ret == 0 && e) {
        conn_reply_error(r->c, r->id, e, "%s", what);
    } else if (ret == 0) {
        struct spawn_result res;
        char *msg = NULL;
        int k = spawn_process(&sr, &res, &msg);
        if (k < 0) {
            conn_reply_error(r->c, r->id, -k, "%s", msg ? msg : "spawn failed");
            free(msg);
        } else {
            struct proc *p = proc_create(r->st, &sr, &res);
            spawn_reply(r, p, &sr, &res);
        }
    }
    spawn_request_free(&sr);
    return ret;
}

/* ---- per-process requests ---- */

/* PID field -> process (newest with that pid). NULL with an ERROR queued;
 * *bad set when the frame is malformed. */
static struct proc *req_proc(const struct req *r, bool *bad)
{
    uint32_t pid;
    int k = get_u32(r, CB_F_PID, 0, &pid);
    *bad = k < 0;
    if (k < 0)
        return NULL;
    struct proc *p = k ? proc_find(r->st, (pid_t)pid, false) : NULL;
    if (!p)
        conn_reply_error(r->c, r->id, ESRCH, "no process %u", pid);
    return p;
}

static int on_signal(const struct req *r)
{
    bool bad;
    struct proc *p = req_proc(r, &bad);
    uint32_t signo, tree;
    if (bad || get_u32(r, CB_F_SIGNO, SIGTERM, &signo) < 0 ||
        get_u32(r, CB_F_TREE, 0, &tree) < 0)
        return MSG_EPROTO;
    if (!p)
        return 0;
    if (signo >= NSIG) {
        conn_reply_error(r->c, r->id, EINVAL, "bad signal %u", signo);
        return 0;
    }
    /* Only a process init has not reaped yet: its pid cannot have been
     * reused, so the signal cannot hit a stranger. */
    if (p->state != CB_PROC_RUNNING) {
        conn_reply_error(r->c, r->id, ESRCH, "process %d has exited", (int)p->pid);
        return 0;
    }
    if (kill(tree ? -p->pid : p->pid, (int)signo) < 0 &&
        !(tree && errno == ESRCH && kill(p->pid, (int)signo) == 0)) {
        conn_reply_error(r->c, r->id, errno, "kill %d: %s", (int)p->pid,
                         strerror(errno));
        return 0;
    }
    conn_reply_simple(r->c, CB_MSG_OK, r->id);
    return 0;
}

static int on_list(const struct req *r)
{
    for (int compact = 0; compact < 2; compact++) {
        struct cb_builder b;
        init_builder(&b, CB_MSG_PROCS, r->id);
        for (struct proc *p = r->st->procs_head; p; p = p->next)
            proc_build(&b, p, compact);
        if (!b.overflow || compact) {
            conn_queue(r->c, &b, NULL, 0);
            return 0;
        }
        cb_builder_free(&b);
    }
    return 0;
}

static int on_subscribe(const struct req *r)
{
    bool bad;
    struct proc *p = req_proc(r, &bad);
    uint64_t after;
    uint32_t follow;
    if (bad || get_u64(r, CB_F_AFTER_SEQ, 0, &after) < 0 ||
        get_u32(r, CB_F_FOLLOW, 0, &follow) < 0)
        return MSG_EPROTO;
    if (p && sub_start(r->st, r->c, p, r->id, after, follow != 0) < 0)
        conn_reply_error(r->c, r->id, EMFILE, "too many subscriptions");
    return 0;
}

static int on_unsubscribe(const struct req *r)
{
    uint32_t id;
    if (get_u32(r, CB_F_SUB_ID, 0, &id) < 0)
        return MSG_EPROTO;
    /* Idempotent: the subscription may have ended on its own meanwhile. */
    for (struct sub *s = r->c->subs; s; s = s->conn_next)
        if (s->id == id) {
            sub_end(s, false);
            break;
        }
    conn_reply_simple(r->c, CB_MSG_OK, r->id);
    return 0;
}

static int on_stdin(const struct req *r)
{
    bool bad;
    struct proc *p = req_proc(r, &bad);
    uint32_t eof;
    struct cb_field_view data = {0};
    if (bad || get_u32(r, CB_F_EOF, 0, &eof) < 0 ||
        cb_proto_find(r->p, r->n, CB_F_DATA, &data) < 0)
        return MSG_EPROTO;
    if (!p)
        return 0;
    int k = p->state == CB_PROC_RUNNING
                ? proc_write_stdin(r->st, p, data.value, data.len, eof != 0)
                : -EPIPE;
    if (k < 0)
        conn_reply_error(r->c, r->id, -k, "stdin of %d: %s", (int)p->pid,
                         k == -EINVAL ? "not a BACKGROUND or PTY process"
                                      : strerror(-k));
    else
        conn_reply_simple(r->c, CB_MSG_OK, r->id);
    return 0;
}

static int on_resize(const struct req *r)
{
    bool bad;
    struct proc *p = req_proc(r, &bad);
    uint32_t cols, rows;
    if (bad || get_u32(r, CB_F_COLS, 0, &cols) < 0 ||
        get_u32(r, CB_F_ROWS, 0, &rows) < 0)
        return MSG_EPROTO;
    if (!p)
        return 0;
    if (p->mode != CB_SPAWN_PTY || p->pty.fd < 0 || cols == 0 || rows == 0 ||
        cols > 0xffff || rows > 0xffff) {
        conn_reply_error(r->c, r->id, EINVAL, "resize needs a live PTY and 1..65535");
        return 0;
    }
    struct winsize ws = {.ws_col = (unsigned short)cols, .ws_row = (unsigned short)rows};
    if (ioctl(p->pty.fd, TIOCSWINSZ, &ws) < 0)
        conn_reply_error(r->c, r->id, errno, "resize: %s", strerror(errno));
    else
        conn_reply_simple(r->c, CB_MSG_OK, r->id);
    return 0;
}

static int on_forget(const struct req *r)
{
    bool bad;
    struct proc *p = req_proc(r, &bad);
    if (bad)
        return MSG_EPROTO;
    if (!p)
        return 0;
    if (p->state == CB_PROC_RUNNING) {
        conn_reply_error(r->c, r->id, EBUSY, "process %d is running", (int)p->pid);
        return 0;
    }
    proc_forget(r->st, p);
    conn_reply_simple(r->c, CB_MSG_OK, r->id);
    return 0;
}

static int on_drain(const struct req *r)
{
    uint64_t proc_id;
    if (get_u64(r, CB_F_PROC_ID, 0, &proc_id) < 0)
        return MSG_EPROTO;
    int e = held_drain(r->st, proc_id);
    if (e == -ESRCH)
        conn_reply_error(r->c, r->id, ESRCH, "no output held for process %llu",
                         (unsigned long long)proc_id);
    else if (e < 0)
        conn_reply_error(r->c, r->id, -e, "%d processes' output drained already",
                         INIT_MAX_DRAINING);
    else
        conn_reply_simple(r->c, CB_MSG_OK, r->id);
    return 0;
}

int handle_request(struct init_state *st, struct conn *c,
                   const struct cb_frame_header *h, const uint8_t *p)
{
    size_t nfields = 0;
    if (validate_fields(p, h->length, &nfields, 0) < 0)
        return MSG_EPROTO;
    struct req r = {.st = st, .c = c, .id = h->request_id, .p = p, .n = h->length};
    switch (h->type) {
    case CB_MSG_HELLO: return on_hello(&r);
    case CB_MSG_SPAWN: return on_spawn(&r, nfields);
    case CB_MSG_SIGNAL: return on_signal(&r);
    case CB_MSG_LIST: return on_list(&r);
    case CB_MSG_SUBSCRIBE: return on_subscribe(&r);
    case CB_MSG_UNSUBSCRIBE: return on_unsubscribe(&r);
    case CB_MSG_STDIN: return on_stdin(&r);
    case CB_MSG_RESIZE: return on_resize(&r);
    case CB_MSG_FORGET: return on_forget(&r);
    case CB_MSG_PING: return on_ping(&r);
    case CB_MSG_KILL_ALL: return on_kill_all(&r);
    case CB_MSG_DRAIN: return on_drain(&r);
    default:
        /* Unknown (or reply-only) types: answer, keep the connection, so a
         * newer daemon can probe an older init. */
        conn_reply_error(c, h->request_id, EPROTO, "unknown message type %u",
                         (unsigned)h->type);
        return 0;
    }
}
