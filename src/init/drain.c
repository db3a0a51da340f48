/* drain.c — output pipes init holds for the exec path (HOLD_OUTPUT, DRAIN).
 *
 * An exec answers at its command's exit. What the command left running
 * (`npm run dev &`, `sh -c 'server &'`) may still hold its stdout and
 * stderr, and the daemon drops what it writes there from then on. When
 * the daemon was the pipes' last reader, its restart closed them and the
 * left-behind process died of SIGPIPE (or stopped on EPIPE) at its next
 * log line. So for such a spawn init keeps its own copies of the read
 * ends, unread; the daemon, once it answered and stops reading, sends
 * DRAIN and closes its copies; init reads and drops what comes until EOF.
 * Init outlives daemon restarts, so the process keeps running. An exec
 * still running when its connection closes gets the hang-up its gone
 * client would have given it, SIGHUP then SIGKILL (held_conn_closed).
 *
 * The copies are not read until a DRAIN. At the process's exit a pipe
 * without writers is let go, else watched for EPOLLHUP only (every
 * writer gone): an exec whose pipes close at its exit costs init two
 * dups, a poll and two closes, and no read. A connection that closes without having
 * sent DRAIN (the daemon died before answering) takes the copies with it:
 * that command's client is gone, and its process meets a closed pipe as
 * it did before. Bounded: INIT_MAX_HELD held, INIT_MAX_DRAINING of them
 * drained; beyond either, init holds nothing and the daemon is told so. */
#include "init.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Per event, at most this much is read from one pipe: a writer that never
 * pauses (`yes &`) gets its turn again at the next epoll_wait, other
 * connections and processes theirs in between. */
#define DRAIN_READS_PER_EVENT 16

/* Freed records kept for the next exec: with musl's allocator a malloc
 * and free per exec would map and unmap a page each time (conn.c says
 * the same of frame buffers). */
#define HELD_SPARES 8
static struct held *spares;
static int nspares;

static struct held *held_alloc(void)
{
    struct held *h = spares;
    if (!h)
        return calloc(1, sizeof *h);
    spares = h->next;
    nspares--;
    memset(h, 0, sizeof *h);
    return h;
}

static void held_close_watch(struct init_state *st, struct held *h, struct watch *w)
{
    init_watch_close(st, w);
    if (h->out[0].fd >= 0 || h->out[1].fd >= 0 || h->dead)
        return;
    h->dead = true;
    if (h->draining)
        st->ndraining--;
    st->nheld--;
    if (h->prev)
        h->prev->next = h->next;
    else
        st->held = h->next;
    if (h->next)
        h->next->prev = h->prev;
    h->next = st->dead_held; /* an event of this batch may still point here */
    st->dead_held = h;
}

void held_add(struct init_state *st, struct conn *c, uint64_t proc_id, int out_fd,
              int err_fd)
{
    if (st->nheld >= INIT_MAX_HELD)
        return;
    int fds[2] = {fcntl(out_fd, F_DUPFD_CLOEXEC, 3), fcntl(err_fd, F_DUPFD_CLOEXEC, 3)};
    if (fds[0] < 0 || fds[1] < 0) {
        for (int i = 0; i < 2; i++)
            if (fds[i] >= 0)
                close(fds[i]);
        return; /* out of fds: the exec works, its leftovers are not kept */
    }
    struct held *h = held_alloc();
    if (!h) {
        close(fds[0]);
        close(fds[1]);
        return;
    }
    h->proc_id = proc_id;
    h->conn = c;
    /* Not watched yet: nothing to do before the process exits (held_exited)
     * or the pipes are handed over (held_drain). */
    for (int i = 0; i < 2; i++)
        h->out[i] = (struct watch){.kind = WATCH_HELD, .fd = fds[i], .owner = h};
    h->next = st->held;
    if (st->held)
        st->held->prev = h;
    st->held = h;
    st->nheld++;
}

void held_exited(struct init_state *st, uint64_t proc_id)
{
    struct held *h = st->held; /* newest first: the exec that just ended */
    while (h && h->proc_id != proc_id)
        h = h->next;
    if (!h || h->draining)
        return;
    /* The process's own ends closed before it could be reaped; a pipe that
     * hangs up now had no other writer, the common case: let go at once
     * (the daemon's copy still reads what is in it). One left behind holds
     * the rest: watched for its hang-up only. EPOLLHUP is reported whatever
     * is asked; asking for it alone keeps the fd in the set without waking
     * on data meant for the daemon. */
    struct pollfd pf[2] = {{.fd = h->out[0].fd}, {.fd = h->out[1].fd}};
    if (poll(pf, 2, 0) < 0)
        pf[0].revents = pf[1].revents = 0;
    for (int i = 0; i < 2; i++) {
        if (pf[i].revents & (POLLHUP | POLLERR | POLLNVAL))
            held_close_watch(st, h, &h->out[i]);
        else
            init_watch_set(st, &h->out[i], EPOLLHUP);
    }
}

static void drain_some(struct init_state *st, struct held *h, struct watch *w)
{
    char buf[16384];
    for (int i = 0; i < DRAIN_READS_PER_EVENT; i++) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n > 0)
            continue; /* dropped, as the daemon dropped it after its answer */
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        held_close_watch(st, h, w); /* EOF: every writer is gone */
        return;
    }
}

void held_on_event(struct init_state *st, struct watch *w, uint32_t events)
{
    struct held *h = w->owner;
    if (h->dead || w->fd < 0)
        return;
    if (h->draining)
        drain_some(st, h, w);
    else if (events & (EPOLLHUP | EPOLLERR))
        held_close_watch(st, h, w); /* the daemon reads what is left */
}

int held_drain(struct init_state *st, uint64_t proc_id)
{
    struct held *h = st->held;
    while (h && h->proc_id != proc_id)
        h = h->next;
    if (!h)
        return -ESRCH;
    if (h->draining)
        return 0;
    if (st->ndraining >= INIT_MAX_DRAINING)
        return -ENOSPC;
    h->draining = true;
    h->conn = NULL;
    st->ndraining++;
    for (int i = 0; i < 2; i++) {
        struct watch *w = &h->out[i];
        if (w->fd < 0)
            continue;
        /* The same open file as the daemon's copy, which is non-blocking
         * already (libuv); said again for init's reads. */
        fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) | O_NONBLOCK);
        init_watch_set(st, w, EPOLLIN);
    }
    return 0;
}

/* The process proc_id while it runs (not reaped: its pid is its own). */
static struct proc *running_proc(struct init_state *st, uint64_t proc_id)
{
    for (struct proc *p = st->procs_head; p; p = p->next)
        if (p->proc_id == proc_id && p->state == CB_PROC_RUNNING && !p->dead)
            return p;
    return NULL;
}

void held_conn_closed(struct init_state *st, struct conn *c)
{
    struct held *next;
    for (struct held *h = st->held; h; h = next) {
        next = h->next;
        if (h->conn != c)
            continue;
        /* An exec still running whose connection is gone (the daemon
         * stopped or died): its client went with it. What the daemon does
         * when an exec's client goes, it gets here: SIGHUP to its tree, as
         * a closed terminal would, and SIGKILL to it if the command still
         * runs INIT_HANGUP_GRACE_MS later (proc_expire_timeouts), which
         * the daemon is no longer there to send. */
        struct proc *p = running_proc(st, h->proc_id);
        if (p) {
            if (kill(-p->pid, SIGHUP) < 0 && errno == ESRCH)
                kill(p->pid, SIGHUP);
            p->hangup_kill_ns = cb_now_ns() + INIT_HANGUP_GRACE_MS * 1000000ull;
        }
        for (int i = 0; i < 2; i++)
            if (h->out[i].fd >= 0)
                held_close_watch(st, h, &h->out[i]);
    }
}

void held_free_dead(struct init_state *st)
{
    while (st->dead_held) {
        struct held *h = st->dead_held;
        st->dead_held = h->next;
        if (nspares < HELD_SPARES) {
            h->next = spares;
            spares = h;
            nspares++;
        } else {
            free(h);
        }
    }
}
