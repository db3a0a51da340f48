/* proc.c — the process table, output rings, stdin and subscriptions.
 *
 * Memory is bounded everywhere a sandbox process or a peer could push:
 *  - output rings: each BACKGROUND stream keeps at most INIT_RING_BYTES
 *    (chunk headers included, so a process writing one byte at a time cannot
 *    multiply the bound by the per-chunk overhead); the oldest chunk of the
 *    stream goes first and is counted as dropped;
 *  - subscriptions copy chunks into a connection's send queue only while
 *    the queue is under INIT_SENDQ_SOFT; a BACKGROUND process whose output a
 *    subscriber cannot take fast enough is not read any more (back-pressure:
 *    its pipe fills and the writer blocks, which is what a slow terminal
 *    does to a program too); a PTY subscriber that falls behind is ended
 *    with END instead, because stopping a pty would freeze an interactive
 *    session for every other viewer;
 *  - stdin bytes waiting for the process are capped per process;
 *  - exited records are capped at INIT_MAX_EXITED, oldest dropped. */
#include "init.h"

#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>

static uint8_t read_scratch[INIT_CHUNK_MAX];

struct proc *proc_find(struct init_state *st, pid_t pid, bool running_only)
{
    /* Newest first: a recycled pid names the newest process that had it. */
    for (struct proc *p = st->procs_tail; p; p = p->prev) {
        if (p->pid != pid)
            continue;
        if (!running_only || p->state == CB_PROC_RUNNING)
            return p;
    }
    return NULL;
}

bool proc_output_open(const struct proc *p)
{
    return p->out.fd >= 0 || p->err.fd >= 0 || p->pty.fd >= 0;
}

static void proc_update_watches(struct init_state *st, struct proc *p)
{
    uint32_t in = p->paused ? 0 : EPOLLIN;
    init_watch_set(st, &p->out, in);
    init_watch_set(st, &p->err, in);
    init_watch_set(st, &p->pty, in | (p->in_len ? EPOLLOUT : 0));
    init_watch_set(st, &p->in, p->in_len ? EPOLLOUT : 0);
}

static void watch_init(struct watch *w, enum watch_kind kind, int fd,
                       uint8_t stream, void *owner)
{
    *w = (struct watch){.kind = kind, .fd = fd, .stream = stream, .owner = owner};
}

/* Keep argv for LIST, but bounded: a SPAWN may carry a megabyte of argv and
 * LIST must fit a thousand processes into one frame. */
static char **list_argv_copy(char *const *argv)
{
    size_t n = 0, budget = INIT_LIST_ARGV_BYTES;
    while (argv[n])
        n++;
    char **v = cb_xcalloc(n + 1, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < n && budget > 0; i++) {
        size_t len = strnlen(argv[i], budget);
        v[k++] = cb_xstrndup(argv[i], len);
        budget -= len < budget ? len : budget;
    }
    return v;
}

/* One recycled process record, for the same reason as conn.c's frame
 * buffer: an exec creates and frees one record, and with musl's allocator
 * that was an mmap, a page fault and an munmap every time. */
static struct proc *spare_proc;

static struct proc *proc_alloc(void)
{
    struct proc *p = steal_ptr(spare_proc);
    if (!p)
        return cb_xcalloc(1, sizeof *p);
    *p = (struct proc){0};
    return p;
}

struct proc *proc_create(struct init_state *st, const struct spawn_request *req,
                         const struct spawn_result *res)
{
    struct proc *p = proc_alloc();
    p->pid = res->pid;
    p->proc_id = ++st->next_proc_id;
    p->mode = req->mode;
    p->state = CB_PROC_RUNNING;
    p->exit_code = -1;
    p->uid = req->uid;
    p->forget_on_exit = req->forget_on_exit != 0;
    p->started_at = init_unix_ms();
    if (req->timeout_ms)
        p->deadline_ns = cb_now_ns() + req->timeout_ms * 1000000ull;
    p->argv = list_argv_copy(req->argv);
    p->cwd = cb_xstrdup(req->cwd ? req->cwd : "/");
    p->tag = req->tag ? cb_xstrndup(req->tag, INIT_LIST_TAG_BYTES) : NULL;
    p->next_seq = 1;
    p->stream_cap[CB_STREAM_STDOUT] = INIT_RING_BYTES;
    p->stream_cap[CB_STREAM_STDERR] = INIT_RING_BYTES;
    p->stream_cap[CB_STREAM_PTY] = INIT_PTY_RING_BYTES;
    int in = -1, out = -1, err = -1;
    if (req->mode == CB_SPAWN_BACKGROUND) {
        in = res->stdin_fd;
        out = res->stdout_fd;
        err = res->stderr_fd;
    }
    watch_init(&p->in, WATCH_STDIN, in, 0, p);
    watch_init(&p->out, WATCH_OUT, out, CB_STREAM_STDOUT, p);
    watch_init(&p->err, WATCH_OUT, err, CB_STREAM_STDERR, p);
    watch_init(&p->pty, WATCH_PTY, res->pty_fd, CB_STREAM_PTY, p);
    p->prev = st->procs_tail;
    if (st->procs_tail)
        st->procs_tail->next = p;
    else
        st->procs_head = p;
    st->procs_tail = p;
    st->nrunning++;
    proc_update_watches(st, p);
    return p;
}

/* ---- output ring ---- */

static size_t chunk_cost(const struct chunk *c)
{
    return sizeof *c + c->len;
}

static void ring_drop_oldest(struct proc *p, uint8_t stream)
{
    struct chunk *c = p->stream_head[stream];
    p->stream_head[stream] = c->stream_next;
    if (!c->stream_next)
        p->stream_tail[stream] = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        p->tail = c->prev;
    /* A subscriber about to send this chunk moves on to the next one; the
     * END it gets later counts the gap as dropped. */
    for (struct sub *s = p->subs; s; s = s->proc_next)
        if (s->next_chunk == c)
            s->next_chunk = c->next;
    p->stream_bytes[stream] -= chunk_cost(c);
    p->dropped++;
    free(c);
}

static void ring_append(struct proc *p, uint8_t stream, const uint8_t *data,
                        size_t n)
{
    struct chunk *c = cb_xmalloc(sizeof *c + n);
    *c = (struct chunk){.seq = p->next_seq++, .len = (uint32_t)n, .stream = stream};
    memcpy(c->data, data, n);
    c->prev = p->tail;
    if (p->tail)
        p->tail->next = c;
    else
        p->head = c;
    p->tail = c;
    if (p->stream_tail[stream])
        p->stream_tail[stream]->stream_next = c;
    else
        p->stream_head[stream] = c;
    p->stream_tail[stream] = c;
    p->stream_bytes[stream] += chunk_cost(c);
    for (struct sub *s = p->subs; s; s = s->proc_next)
        if (!s->next_chunk && c->seq > s->after_seq)
            s->next_chunk = c;
    while (p->stream_bytes[stream] > p->stream_cap[stream] &&
           p->stream_head[stream] != c)
        ring_drop_oldest(p, stream);
}

static void proc_free_chunks(struct proc *p)
{
    struct chunk *c = p->head;
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    p->head = p->tail = NULL;
}

/* ---- fd events ---- */

static void stdin_close(struct init_state *st, struct proc *p)
{
    free(p->in_buf);
    p->in_buf = NULL;
    p->in_len = 0;
    init_watch_close(st, &p->in);
}

void proc_on_output(struct init_state *st, struct watch *w, uint32_t events)
{
    struct proc *p = w->owner;
    if (p->dead || w->fd < 0)
        return;
    if (w->kind == WATCH_PTY && (events & EPOLLOUT))
        proc_on_stdin(st, w, events);
    if (w->fd < 0 || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    /* One read per wake-up keeps the loop fair between processes. */
    ssize_t n = read(w->fd, read_scratch, sizeof read_scratch);
    if (n > 0) {
        ring_append(p, w->stream, read_scratch, (size_t)n);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    /* EOF, or EIO from a pty master once every slave fd is closed. */
    if (w->kind == WATCH_PTY) {
        free(p->in_buf);
        p->in_buf = NULL;
        p->in_len = 0;
    }
    init_watch_close(st, w);
}

/* Write as much pending stdin as the pipe/pty takes now. */
static int stdin_flush(struct init_state *st, struct proc *p, int fd)
{
    while (p->in_len > 0) {
        ssize_t n = write(fd, p->in_buf, p->in_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0)
            return -EPIPE;
        memmove(p->in_buf, p->in_buf + n, p->in_len - (size_t)n);
        p->in_len -= (size_t)n;
    }
    if (p->in_len == 0 && p->in_eof && p->mode == CB_SPAWN_BACKGROUND)
        stdin_close(st, p);
    else
        proc_update_watches(st, p);
    return 0;
}

void proc_on_stdin(struct init_state *st, struct watch *w, uint32_t events)
{
    struct proc *p = w->owner;
    if (p->dead || w->fd < 0)
        return;
    if (stdin_flush(st, p, w->fd) < 0) {
        if (w->kind == WATCH_STDIN) {
            stdin_close(st, p);
        } else {
            p->in_len = 0;
            proc_update_watches(st, p);
        }
    }
}

int proc_write_stdin(struct init_state *st, struct proc *p, const uint8_t *data,
                     size_t len, bool eof)
{
    if (p->mode == CB_SPAWN_PIPES)
        return -EINVAL; /* the daemon holds this process's stdin itself */
    int fd = p->mode == CB_SPAWN_PTY ? p->pty.fd : p->in.fd;
    if (fd < 0 || p->in_eof)
        return -EPIPE;
    /* For a pty, "EOF" is the terminal's EOF character (^D), which the
     * line discipline turns into a zero read at the start of a line. */
    size_t extra = (eof && p->mode == CB_SPAWN_PTY) ? 1 : 0;
    if (len + extra > INIT_STDIN_PENDING_MAX - p->in_len)
        return -EAGAIN;
    p->in_buf = cb_xrealloc(p->in_buf, p->in_len + len + extra);
    if (len)
        memcpy(p->in_buf + p->in_len, data, len);
    p->in_len += len;
    if (extra)
        p->in_buf[p->in_len++] = 0x04;
    if (eof && p->mode == CB_SPAWN_BACKGROUND)
        p->in_eof = true;
    if (stdin_flush(st, p, fd) < 0) {
        if (p->mode == CB_SPAWN_BACKGROUND)
            stdin_close(st, p);
        else
            p->in_len = 0;
        return -EPIPE;
    }
    return 0;
}

/* ---- lifecycle ---- */

static void proc_broadcast_exit(struct init_state *st, const struct proc *p)
{
    for (struct conn *c = st->conns; c; c = c->next) {
        if (c->dead)
            continue;
        struct cb_builder b;
        init_builder(&b, CB_MSG_EXIT, 0);
        cb_builder_u32(&b, CB_F_PID, (uint32_t)p->pid);
        cb_builder_u64(&b, CB_F_PROC_ID, p->proc_id);
        cb_builder_i32(&b, CB_F_EXIT_CODE, p->exit_code);
        cb_builder_u32(&b, CB_F_SIGNO, p->signo);
        cb_builder_u32(&b, CB_F_TIMED_OUT, p->timed_out);
        cb_builder_u64(&b, CB_F_STARTED_AT, p->started_at);
        cb_builder_u64(&b, CB_F_ENDED_AT, p->ended_at);
        conn_queue(c, &b, NULL, 0);
    }
}

static void proc_mark_exited(struct init_state *st, struct proc *p, int status)
{
    p->state = CB_PROC_EXITED;
    p->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    p->signo = WIFSIGNALED(status) ? (uint32_t)WTERMSIG(status) : 0;
    p->ended_at = init_unix_ms();
    p->deadline_ns = 0;
    st->nrunning--;
    st->nexited++;
    proc_broadcast_exit(st, p);
}

void proc_reap(struct init_state *st)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            break; /* 0: children remain; -1 ECHILD: none at all */
        struct proc *p = proc_find(st, pid, true);
        if (p)
            proc_mark_exited(st, p, status);
        if (p && p->mode == CB_SPAWN_PIPES && st->held)
            held_exited(st, p->proc_id);
        if (p && p->forget_on_exit)
            proc_forget(st, p); /* EXIT is queued; nothing else to keep */
        /* else: an orphan re-parented to us (PID 1 or subreaper); reaping
         * it is all that is needed so no zombie accumulates. */
    }
    while (st->nexited > INIT_MAX_EXITED) {
        struct proc *p = st->procs_head;
        while (p && p->state != CB_PROC_EXITED)
            p = p->next;
        if (!p)
            break;
        proc_forget(st, p);
    }
}

void proc_forget(struct init_state *st, struct proc *p)
{
    while (p->subs)
        sub_end(p->subs, true);
    init_watch_close(st, &p->out);
    init_watch_close(st, &p->err);
    init_watch_close(st, &p->pty);
    stdin_close(st, p);
    if (p->prev)
        p->prev->next = p->next;
    else
        st->procs_head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        st->procs_tail = p->prev;
    if (p->state == CB_PROC_EXITED)
        st->nexited--;
    else
        st->nrunning--;
    p->dead = true;
    p->next = st->dead_procs; /* freed after the current epoll batch */
    st->dead_procs = p;
}

void proc_free(struct proc *p)
{
    proc_free_chunks(p);
    for (size_t i = 0; p->argv && p->argv[i]; i++)
        free(p->argv[i]);
    free(p->argv);
    free(p->cwd);
    free(p->tag);
    free(p->in_buf);
    if (!spare_proc)
        spare_proc = p;
    else
        free(p);
}

/* The earlier of a running process's two deadlines (its own timeout, a
 * hang-up's grace); 0 when it has neither. */
static uint64_t next_deadline(const struct proc *p)
{
    if (p->state != CB_PROC_RUNNING)
        return 0;
    uint64_t a = p->deadline_ns, b = p->hangup_kill_ns;
    return !a ? b : !b ? a : a < b ? a : b;
}

void proc_expire_timeouts(struct init_state *st)
{
    uint64_t now = cb_now_ns();
    for (struct proc *p = st->procs_head; p; p = p->next) {
        uint64_t at = next_deadline(p);
        if (!at || at > now)
            continue;
        /* The whole group: a timed-out shell's children go with it. The
         * leader is not reaped yet, so its pid (and pgid) cannot have been
         * reused. */
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        p->timed_out = p->deadline_ns && p->deadline_ns <= now;
        p->deadline_ns = p->hangup_kill_ns = 0;
    }
}

int proc_next_timeout_ms(struct init_state *st)
{
    uint64_t best = 0;
    for (struct proc *p = st->procs_head; p; p = p->next) {
        uint64_t at = next_deadline(p);
        if (at && (!best || at < best))
            best = at;
    }
    if (!best)
        return -1;
    uint64_t now = cb_now_ns();
    if (best <= now)
        return 0;
    uint64_t ms = (best - now + 999999) / 1000000;
    return ms > 60000 ? 60000 : (int)ms;
}

void proc_kill_known_groups(struct init_state *st, int signo)
{
    for (struct proc *p = st->procs_head; p; p = p->next)
        if (p->state == CB_PROC_RUNNING) {
            kill(-p->pid, signo);
            kill(p->pid, signo);
        }
}

/* Back-pressure (BACKGROUND) and slow-viewer eviction (PTY), decided after
 * each batch once the connections have been flushed. */
void proc_service_all(struct init_state *st)
{
    for (struct proc *p = st->procs_head; p; p = p->next) {
        if (!p->subs && !p->paused)
            continue;
        bool congested = false;
        struct sub *next;
        for (struct sub *s = p->subs; s; s = next) {
            next = s->proc_next;
            if (!s->next_chunk || s->conn->queued < INIT_SENDQ_SOFT)
                continue;
            if (p->mode == CB_SPAWN_PTY)
                sub_end(s, true);
            else
                congested = true;
        }
        if (congested != p->paused) {
            p->paused = congested;
            proc_update_watches(st, p);
        }
    }
}

void proc_build(struct cb_builder *b, const struct proc *p, bool compact)
{
    cb_builder_begin(b, CB_F_PROC);
    cb_builder_u32(b, CB_F_PID, (uint32_t)p->pid);
    cb_builder_u64(b, CB_F_PROC_ID, p->proc_id);
    cb_builder_u32(b, CB_F_MODE, p->mode);
    cb_builder_u32(b, CB_F_STATE, p->state);
    cb_builder_i32(b, CB_F_EXIT_CODE, p->exit_code);
    cb_builder_u32(b, CB_F_SIGNO, p->signo);
    cb_builder_u32(b, CB_F_TIMED_OUT, p->timed_out);
    cb_builder_u64(b, CB_F_STARTED_AT, p->started_at);
    cb_builder_u64(b, CB_F_ENDED_AT, p->ended_at);
    cb_builder_u32(b, CB_F_UID, p->uid);
    cb_builder_u64(b, CB_F_NEXT_SEQ, p->next_seq);
    cb_builder_u64(b, CB_F_DROPPED, p->dropped);
    /* A terminal's current size: it changes with every RESIZE, so it is read
     * from the PTY rather than remembered. */
    struct winsize ws;
    if (p->mode == CB_SPAWN_PTY && p->pty.fd >= 0 && ioctl(p->pty.fd, TIOCGWINSZ, &ws) == 0) {
        cb_builder_u32(b, CB_F_COLS, ws.ws_col);
        cb_builder_u32(b, CB_F_ROWS, ws.ws_row);
    }
    if (!compact) {
        for (size_t i = 0; p->argv[i]; i++)
            cb_builder_str(b, CB_F_ARGV, p->argv[i]);
        cb_builder_str(b, CB_F_CWD, p->cwd);
        if (p->tag)
            cb_builder_str(b, CB_F_TAG, p->tag);
    }
    cb_builder_end(b);
}

/* ---- subscriptions ---- */

int sub_start(struct init_state *st, struct conn *c, struct proc *p,
              uint32_t id, uint64_t after_seq, bool follow)
{
    if (c->nsubs >= INIT_MAX_SUBS_PER_CONN)
        return -EMFILE;
    struct sub *s = cb_xcalloc(1, sizeof *s);
    *s = (struct sub){.conn = c, .proc = p, .id = id, .after_seq = after_seq,
                      .follow = follow};
    for (struct chunk *ch = p->head; ch; ch = ch->next)
        if (ch->seq > after_seq) {
            s->next_chunk = ch;
            break;
        }
    s->conn_next = c->subs;
    c->subs = s;
    c->nsubs++;
    s->proc_next = p->subs;
    p->subs = s;
    return 0;
}

static void sub_unlink(struct sub **head, struct sub *s, bool by_conn)
{
    for (struct sub **pp = head; *pp;
         pp = by_conn ? &(*pp)->conn_next : &(*pp)->proc_next) {
        if (*pp == s) {
            *pp = by_conn ? s->conn_next : s->proc_next;
            return;
        }
    }
}

void sub_end(struct sub *s, bool send_end)
{
    struct proc *p = s->proc;
    if (send_end && !s->conn->dead) {
        /* NEXT_SEQ is where a new SUBSCRIBE should resume (AFTER_SEQ =
         * NEXT_SEQ - 1); DROPPED counts the seqs in between that this
         * subscriber never got because the ring had let them go. */
        uint64_t next = s->next_chunk ? s->next_chunk->seq : p->next_seq;
        uint64_t span = next - 1 > s->after_seq ? next - 1 - s->after_seq : 0;
        struct cb_builder b;
        init_builder(&b, CB_MSG_END, s->id);
        cb_builder_u32(&b, CB_F_PID, (uint32_t)p->pid);
        cb_builder_u64(&b, CB_F_NEXT_SEQ, next);
        cb_builder_u64(&b, CB_F_DROPPED, span > s->sent ? span - s->sent : 0);
        conn_queue(s->conn, &b, NULL, 0);
    }
    sub_unlink(&s->conn->subs, s, true);
    s->conn->nsubs--;
    sub_unlink(&p->subs, s, false);
    free(s);
}

bool sub_pump(struct sub *s)
{
    struct proc *p = s->proc;
    bool queued = false;
    while (s->next_chunk && s->conn->queued < INIT_SENDQ_SOFT) {
        const struct chunk *ch = s->next_chunk;
        struct cb_builder b;
        init_builder(&b, CB_MSG_OUTPUT, s->id);
        cb_builder_u32(&b, CB_F_PID, (uint32_t)p->pid);
        cb_builder_u32(&b, CB_F_STREAM, ch->stream);
        cb_builder_u64(&b, CB_F_SEQ, ch->seq);
        cb_builder_bytes(&b, CB_F_DATA, ch->data, ch->len);
        conn_queue(s->conn, &b, NULL, 0);
        s->sent++;
        s->next_chunk = ch->next;
        queued = true;
    }
    if (!s->next_chunk &&
        (!s->follow || (p->state == CB_PROC_EXITED && !proc_output_open(p)))) {
        sub_end(s, true);
        queued = true;
    }
    return queued;
}
