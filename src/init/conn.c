/* conn.c — control connections: accept, frame reassembly, send queues.
 *
 * Sockets are non-blocking and every connection has its own send queue, so
 * one daemon connection that stops reading cannot stall init or the other
 * connections. The queue is bounded in two steps: above INIT_SENDQ_SOFT
 * init stops streaming output into it and stops reading requests from it
 * (a peer that floods PINGs without reading the PONGs just stalls itself);
 * above INIT_SENDQ_HARD (reachable only by events such as EXIT that must
 * not be dropped silently) the connection is closed. */
#include "init.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define RBUF_MIN 4096

static void queue_free(struct conn *c)
{
    struct qent *q = c->qhead;
    while (q) {
        struct qent *next = q->next;
        for (int i = 0; i < q->nfds; i++)
            close(q->fds[i]);
        free(q->buf);
        free(q);
        q = next;
    }
    c->qhead = c->qtail = NULL;
    c->queued = 0;
}

/* Only peers outside the sandbox's pid namespace may drive init in
 * production: SO_PEERCRED reports pid 0 for a process the reader's pid
 * namespace cannot see, i.e. the runtime or daemon on the host. Should the
 * socket ever become reachable from inside the sandbox, sandbox code must
 * not be able to spawn processes as any uid it likes through it. */
static bool peer_allowed(const struct init_state *st, int fd)
{
    if (!st->require_foreign_peer)
        return true;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return false;
    return cred.pid == 0;
}

void conn_accept(struct init_state *st)
{
    for (;;) {
        int fd = accept4(st->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, or EMFILE & co: try again on the next wake-up */
        }
        if (st->nconns >= INIT_MAX_CONNS || !peer_allowed(st, fd)) {
            close(fd);
            continue;
        }
        struct conn *c = cb_xcalloc(1, sizeof *c);
        c->w = (struct watch){.kind = WATCH_CONN, .fd = fd, .owner = c};
        c->next = st->conns;
        if (st->conns)
            st->conns->prev = c;
        st->conns = c;
        st->nconns++;
        init_watch_set(st, &c->w, EPOLLIN);
    }
}

void conn_close(struct init_state *st, struct conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    /* Subscriptions end silently: there is nobody to tell. The process and
     * its output live on for the next connection. */
    while (c->subs)
        sub_end(c->subs, false);
    held_conn_closed(st, c);
    init_watch_close(st, &c->w);
    queue_free(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        st->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    st->nconns--;
    c->next = st->dead_conns; /* freed after the current epoll batch */
    st->dead_conns = c;
}

void conn_free(struct conn *c)
{
    free(c->rbuf);
    free(c);
}

static int qent_send(struct conn *c, struct qent *q);

/* One recycled frame buffer. Replies are built, sent at once and freed,
 * one after the other; with musl's allocator a malloc/free per frame cost
 * an mmap, a page fault and an munmap each time (the size class's only
 * group is released when it empties), i.e. on every exec. Capped, so a
 * large LIST reply is not kept. */
#define SPARE_CAP_MAX 4096
static struct {
    uint8_t *buf;
    size_t cap;
} spare;

void init_builder(struct cb_builder *b, uint16_t type, uint32_t request_id)
{
    if (spare.buf)
        cb_builder_init_buffer(b, type, request_id, steal_ptr(spare.buf), spare.cap);
    else
        cb_builder_init(b, type, request_id);
}

void conn_prepare(void)
{
    if (spare.buf)
        return;
    spare.cap = 256;
    spare.buf = cb_xmalloc(spare.cap);
    memset(spare.buf, 0, spare.cap); /* fault it in now, not on the first reply */
}

static void builder_recycle(struct cb_builder *b)
{
    if (!spare.buf && b->buf && b->cap <= SPARE_CAP_MAX) {
        spare.cap = b->cap;
        spare.buf = steal_ptr(b->buf);
    }
    cb_builder_free(b);
}

void conn_queue(struct conn *c, struct cb_builder *b, const int *fds, int nfds)
{
    if (cb_builder_finish(b) < 0) {
        /* Only LIST can get near the frame limit and it retries compactly;
         * anything else reaching here is answered instead of dropped. */
        uint32_t id = b->buf ? (uint32_t)b->buf[8] | (uint32_t)b->buf[9] << 8 |
                                   (uint32_t)b->buf[10] << 16 |
                                   (uint32_t)b->buf[11] << 24
                             : 0;
        cb_builder_free(b);
        cb_builder_init(b, CB_MSG_ERROR, id);
        cb_builder_u32(b, CB_F_ERRNO, EMSGSIZE);
        cb_builder_str(b, CB_F_MESSAGE, "reply too large");
        cb_builder_finish(b);
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        nfds = 0;
    }
    if (c->dead) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        cb_builder_free(b);
        return;
    }
    struct qent now = {.buf = b->buf, .len = b->len};
    for (int i = 0; i < nfds && i < CB_PROTO_MAX_FDS; i++)
        now.fds[now.nfds++] = fds[i];
    c->queued += now.len;
    if (!c->qhead && qent_send(c, &now) == 1) {
        /* Nothing queued before it, so sending at once keeps the order,
         * and the common reply (SPAWNED, EXIT, OK) goes out without a
         * queue entry or a later flush pass. A socket that would block
         * (or failed: conn_service closes it) queues the rest below. */
        builder_recycle(b);
        return;
    }
    struct qent *q = cb_xmalloc(sizeof *q);
    *q = now;
    b->buf = NULL;
    cb_builder_free(b);
    if (c->qtail)
        c->qtail->next = q;
    else
        c->qhead = q;
    c->qtail = q;
}

void conn_reply_simple(struct conn *c, uint16_t type, uint32_t request_id)
{
    struct cb_builder b;
    init_builder(&b, type, request_id);
    conn_queue(c, &b, NULL, 0);
}

void conn_reply_error(struct conn *c, uint32_t request_id, int err,
                      const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct cb_builder b;
    init_builder(&b, CB_MSG_ERROR, request_id);
    cb_builder_u32(&b, CB_F_ERRNO, (uint32_t)err);
    cb_builder_str(&b, CB_F_MESSAGE, msg);
    conn_queue(c, &b, NULL, 0);
}

/* Send one queue entry; fds go with its first byte. 1 done, 0 would block,
 * -1 connection broken. */
static int qent_send(struct conn *c, struct qent *q)
{
    union {
        char buf[CMSG_SPACE(sizeof(int) * CB_PROTO_MAX_FDS)];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = q->buf + q->off, .iov_len = q->len - q->off};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (q->off == 0 && q->nfds > 0) {
        memset(&ctl, 0, sizeof ctl);
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)q->nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)q->nfds);
        memcpy(CMSG_DATA(cm), q->fds, sizeof(int) * (size_t)q->nfds);
    }
    ssize_t n = CB_RETRY(sendmsg(c->w.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT));
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    if (q->off == 0) {
        /* The peer has its own copies now; init keeps none (PIPES mode). */
        for (int i = 0; i < q->nfds; i++)
            close(q->fds[i]);
        q->nfds = 0;
    }
    q->off += (size_t)n;
    c->queued -= (size_t)n;
    return q->off == q->len;
}

static int conn_flush(struct conn *c)
{
    while (c->qhead) {
        struct qent *q = c->qhead;
        int r = qent_send(c, q);
        if (r <= 0)
            return r;
        c->qhead = q->next;
        if (!c->qhead)
            c->qtail = NULL;
        free(q->buf);
        free(q);
    }
    return 1;
}

static void conn_service(struct init_state *st, struct conn *c)
{
    for (;;) {
        if (conn_flush(c) < 0) {
            conn_close(st, c);
            return;
        }
        bool more = false;
        struct sub *next;
        for (struct sub *s = c->subs; s && c->queued < INIT_SENDQ_SOFT; s = next) {
            next = s->conn_next;
            more |= sub_pump(s);
        }
        if (!more)
            break;
    }
    if (c->queued > INIT_SENDQ_HARD) {
        conn_close(st, c);
        return;
    }
    uint32_t ev = (c->queued < INIT_SENDQ_SOFT ? EPOLLIN : 0) |
                  (c->qhead ? EPOLLOUT : 0);
    init_watch_set(st, &c->w, ev);
}

void conn_service_all(struct init_state *st)
{
    struct conn *next;
    for (struct conn *c = st->conns; c; c = next) {
        next = c->next;
        if (!c->dead)
            conn_service(st, c);
    }
}

/* Handle every complete frame in rbuf. -1 when the connection must close. */
static int conn_process(struct init_state *st, struct conn *c)
{
    size_t off = 0;
    int r = 0;
    while (c->rlen - off >= CB_PROTO_HEADER_SIZE) {
        struct cb_frame_header h;
        if (cb_proto_parse_header(c->rbuf + off, c->rlen - off, &h) < 0) {
            r = -1;
            break;
        }
        if (c->rlen - off - CB_PROTO_HEADER_SIZE < h.length)
            break;
        if (handle_request(st, c, &h, c->rbuf + off + CB_PROTO_HEADER_SIZE) < 0) {
            r = -1;
            break;
        }
        off += CB_PROTO_HEADER_SIZE + h.length;
    }
    if (off > 0) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
    return r;
}

/* Bytes the next read should make room for: the rest of the current frame
 * (whose length the header already told us, capped by parse_header). */
static size_t conn_need(const struct conn *c)
{
    struct cb_frame_header h;
    if (c->rlen >= CB_PROTO_HEADER_SIZE &&
        cb_proto_parse_header(c->rbuf, c->rlen, &h) == 0)
        return CB_PROTO_HEADER_SIZE + h.length;
    return RBUF_MIN;
}

static void conn_read(struct init_state *st, struct conn *c)
{
    size_t need = conn_need(c);
    if (need < RBUF_MIN)
        need = RBUF_MIN;
    if (c->rcap < need) {
        c->rbuf = cb_xrealloc(c->rbuf, need);
        c->rcap = need;
    }
    ssize_t n = recv(c->w.fd, c->rbuf + c->rlen, c->rcap - c->rlen, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(st, c);
        return;
    }
    c->rlen += (size_t)n;
    if (conn_process(st, c) < 0) {
        conn_close(st, c);
        return;
    }
    /* Give back a large frame's buffer once it is handled: an idle init
     * should hold almost nothing. */
    if (c->rlen == 0 && c->rcap > 4 * RBUF_MIN) {
        free(c->rbuf);
        c->rbuf = NULL;
        c->rcap = 0;
    }
}

void conn_on_event(struct init_state *st, struct conn *c, uint32_t events)
{
    if (c->dead)
        return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        conn_read(st, c);
    /* EPOLLOUT: conn_service_all() flushes after the batch. */
}
