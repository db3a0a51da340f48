#include "initc.h"

#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>

#include "util.h"

#define FD_QUEUE_MAX 48

struct pending {
    uint32_t id;
    bool multi;
    int want_fds;
    cb_initc_reply_cb cb;
    void *arg;
    struct pending *next;
};

struct cb_initc {
    uv_poll_t poll;
    int fd;
    bool dead, polling_out;
    int poll_events; /* what uv_poll_start was last given; 0 = not started */
    uint32_t next_id;
    cb_initc_event_cb on_event;
    cb_initc_closed_cb on_closed;
    void *arg;
    struct pending *pending;
    uint8_t *in;  /* received bytes not yet parsed */
    size_t in_len, in_cap;
    int fdq[FD_QUEUE_MAX]; /* fds received, in order, not yet claimed */
    int nfdq;
    uint8_t *out; /* frames not yet sent */
    size_t out_len;
};

static void poll_cb(uv_poll_t *p, int status, int events);

static void update_poll(struct cb_initc *c)
{
    if (c->dead)
        return;
    int ev = UV_READABLE | UV_DISCONNECT | (c->out_len ? UV_WRITABLE : 0);
    /* uv_poll_start stops and re-adds the fd (two epoll_ctl calls) even
     * when nothing changed; this runs after every frame, so only tell
     * libuv about an actual change. */
    if (ev == c->poll_events)
        return;
    c->poll_events = ev;
    uv_poll_start(&c->poll, ev, poll_cb);
}

struct cb_initc *cb_initc_open(uv_loop_t *loop, int fd, cb_initc_event_cb on_event,
                               cb_initc_closed_cb on_closed, void *arg)
{
    struct cb_initc *c = cb_xcalloc(1, sizeof(*c));
    c->fd = fd;
    c->on_event = on_event;
    c->on_closed = on_closed;
    c->arg = arg;
    c->next_id = 1;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    uv_poll_init(loop, &c->poll, fd);
    c->poll.data = c;
    update_poll(c);
    return c;
}

uint32_t cb_initc_next_id(struct cb_initc *c)
{
    if (++c->next_id == 0)
        c->next_id = 1; /* 0 is for events */
    return c->next_id;
}

bool cb_initc_alive(const struct cb_initc *c) { return c && !c->dead; }

static void closed_cb(uv_handle_t *h)
{
    struct cb_initc *c = h->data;
    for (int i = 0; i < c->nfdq; i++)
        close(c->fdq[i]);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Fail every pending request, then release the handle. */
static void shut(struct cb_initc *c, bool notify)
{
    if (c->dead)
        return;
    c->dead = true;
    uv_poll_stop(&c->poll);
    while (c->pending) {
        struct pending *p = c->pending;
        c->pending = p->next;
        if (p->cb)
            p->cb(p->arg, NULL, NULL, 0, NULL, 0);
        free(p);
    }
    if (notify && c->on_closed)
        c->on_closed(c->arg);
    uv_close((uv_handle_t *)&c->poll, closed_cb);
}

void cb_initc_close(struct cb_initc *c)
{
    if (c)
        shut(c, false);
}

static int flush_out(struct cb_initc *c)
{
    while (c->out_len) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0)
            return -EPIPE;
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    return 0;
}

int cb_initc_send(struct cb_initc *c, struct cb_builder *b, bool multi, int want_fds,
                  cb_initc_reply_cb cb, void *arg)
{
    if (!c || c->dead)
        return -EPIPE;
    struct cb_frame_header h;
    if (cb_proto_parse_header(b->buf, b->len, &h) < 0)
        return -EPROTO;
    struct pending *p = cb_xcalloc(1, sizeof(*p));
    *p = (struct pending){h.request_id, multi, want_fds, cb, arg, NULL};
    /* Append, so replies find the oldest request first. */
    struct pending **pp = &c->pending;
    while (*pp)
        pp = &(*pp)->next;
    *pp = p;
    c->out = cb_xrealloc(c->out, c->out_len + b->len);
    memcpy(c->out + c->out_len, b->buf, b->len);
    c->out_len += b->len;
    if (flush_out(c) < 0) {
        shut(c, true);
        return 0; /* the callback ran with hdr == NULL */
    }
    update_poll(c);
    return 0;
}

int cb_initc_signal(struct cb_initc *c, uint32_t pid, int signo, bool tree)
{
    if (!c || c->dead)
        return -EPIPE;
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_SIGNAL, cb_initc_next_id(c));
    cb_builder_u32(&b, CB_F_PID, pid);
    cb_builder_u32(&b, CB_F_SIGNO, (uint32_t)signo);
    cb_builder_u32(&b, CB_F_TREE, tree ? 1 : 0);
    int r = cb_builder_finish(&b) == 0 ? cb_initc_send(c, &b, false, 0, NULL, NULL) : -EMSGSIZE;
    cb_builder_free(&b);
    return r;
}

void cb_initc_cancel(struct cb_initc *c, uint32_t request_id)
{
    if (!c)
        return;
    for (struct pending *p = c->pending; p; p = p->next)
        if (p->id == request_id)
            p->cb = NULL; /* frames still arriving are dropped; END frees it */
}

/* Received fds are kept only while a request still waits for them (a
 * spawn's pipes, at most CB_PROTO_MAX_FDS each): an init that sends fds
 * nobody asked for has them closed at once. Before, up to 48 were kept per
 * connection until it closed, so a tenant's hostile sandboxes could pin
 * 48 of the daemon's descriptors each (its file limit is sized for one
 * per sandbox, docs/operations.md) and starve everyone's creates. */
static int fds_wanted(const struct cb_initc *c)
{
    int n = 0;
    for (const struct pending *p = c->pending; p; p = p->next)
        n += p->want_fds;
    return n;
}

static void take_fds(struct cb_initc *c, struct msghdr *m)
{
    int room = -1; /* counted at the first fd: most reads carry none */
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(m); cm; cm = CMSG_NXTHDR(m, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *fds = (int *)CMSG_DATA(cm);
        if (room < 0 && n > 0)
            room = fds_wanted(c) - c->nfdq;
        for (size_t i = 0; i < n; i++) {
            if (room > 0 && c->nfdq < FD_QUEUE_MAX) {
                c->fdq[c->nfdq++] = fds[i];
                room--;
            } else {
                close(fds[i]); /* init sent more than any request asked for */
            }
        }
    }
}

static void dispatch(struct cb_initc *c, const struct cb_frame_header *h,
                     const uint8_t *payload)
{
    if (h->request_id == 0) {
        if (c->on_event)
            c->on_event(c->arg, h, payload, h->length);
        return;
    }
    struct pending **pp = &c->pending, *p = NULL;
    while (*pp && (*pp)->id != h->request_id)
        pp = &(*pp)->next;
    p = *pp;
    if (!p)
        return; /* a reply to nothing we asked: ignore */
    bool last = !p->multi || h->type == CB_MSG_END || h->type == CB_MSG_ERROR;
    int fds[CB_PROTO_MAX_FDS];
    int nfds = 0;
    if (h->type == CB_MSG_SPAWNED && p->want_fds > 0) {
        while (nfds < p->want_fds && nfds < CB_PROTO_MAX_FDS && c->nfdq > 0) {
            fds[nfds++] = c->fdq[0];
            memmove(c->fdq, c->fdq + 1, (size_t)(--c->nfdq) * sizeof(int));
        }
        p->want_fds = 0; /* answered: its fds are taken (fds_wanted) */
    }
    if (last)
        *pp = p->next;
    if (p->cb)
        p->cb(p->arg, h, payload, h->length, fds, nfds);
    else
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
    if (last)
        free(p);
}

static int parse_frames(struct cb_initc *c)
{
    size_t off = 0;
    while (!c->dead && c->in_len - off >= CB_PROTO_HEADER_SIZE) {
        struct cb_frame_header h;
        if (cb_proto_parse_header(c->in + off, c->in_len - off, &h) < 0)
            return -EPROTO;
        if (c->in_len - off < CB_PROTO_HEADER_SIZE + (size_t)h.length)
            break;
        dispatch(c, &h, c->in + off + CB_PROTO_HEADER_SIZE);
        off += CB_PROTO_HEADER_SIZE + h.length;
    }
    if (c->dead)
        return 0;
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
    return 0;
}

/* Room the next read needs: the whole frame whose header is already in
 * (its length is capped by parse_header), else IN_MIN. Growing on demand
 * keeps a connection that only ever sees small frames (SPAWNED, EXIT, OK)
 * on a small heap buffer instead of 1 MiB mapped per sandbox, and spares
 * the first exec of every sandbox that mapping and its page faults. */
#define IN_MIN (64u << 10)

static size_t in_needed(const struct cb_initc *c)
{
    struct cb_frame_header h;
    size_t need = IN_MIN;
    if (c->in_len >= CB_PROTO_HEADER_SIZE &&
        cb_proto_parse_header(c->in, c->in_len, &h) == 0 &&
        CB_PROTO_HEADER_SIZE + (size_t)h.length > need)
        need = CB_PROTO_HEADER_SIZE + (size_t)h.length;
    return need;
}

static int read_some(struct cb_initc *c)
{
    for (int rounds = 0; rounds < 16 && !c->dead; rounds++) {
        size_t want = in_needed(c);
        if (c->in_cap < want) {
            c->in = cb_xrealloc(c->in, want);
            c->in_cap = want;
        }
        char cbuf[CMSG_SPACE(sizeof(int) * CB_PROTO_MAX_FDS * 4)];
        struct iovec iov = {c->in + c->in_len, c->in_cap - c->in_len};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                           .msg_controllen = sizeof(cbuf)};
        ssize_t n = recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n <= 0)
            return -EPIPE;
        take_fds(c, &m);
        c->in_len += (size_t)n;
        if (parse_frames(c) < 0)
            return -EPROTO;
        /* A short read took everything queued (or stopped at an fd-passing
         * boundary): rather than another recvmsg that answers EAGAIN,
         * return; the poll is level-triggered and reports what is left. */
        if ((size_t)n < iov.iov_len)
            return 0;
    }
    return 0;
}

static void poll_cb(uv_poll_t *p, int status, int events)
{
    struct cb_initc *c = p->data;
    if (status < 0) {
        shut(c, true);
        return;
    }
    if ((events & UV_WRITABLE) && flush_out(c) < 0) {
        shut(c, true);
        return;
    }
    if (events & (UV_READABLE | UV_DISCONNECT)) {
        if (read_some(c) < 0) {
            shut(c, true);
            return;
        }
    }
    update_poll(c);
}
