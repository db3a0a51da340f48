/* proto.c — the cellbox-init control protocol (see proto.h for the wire
 * format).
 *
 * Every byte handed to the parse functions comes from the other side of a
 * trust boundary (a sandbox's PID 1 talking to the daemon, or the daemon
 * talking to an init that may have been replaced by sandbox code), so each
 * length is checked against what is left in the buffer before it is used,
 * and all arithmetic is done on sizes already known to fit. Nothing here
 * allocates more than a frame's declared payload, which is itself capped
 * at CB_PROTO_MAX_PAYLOAD.
 *
 * The file builds against glibc (cellboxd, tests) and musl (the static
 * cellbox-init): only plain POSIX and Linux socket calls are used. */
#include "proto.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define FIELD_HEADER_SIZE 8

/* ---- little-endian helpers (no unaligned access, no host-order tricks) ---- */

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- parsing ---- */

int cb_proto_parse_header(const uint8_t *buf, size_t len,
                          struct cb_frame_header *out)
{
    if (!buf || !out || len < CB_PROTO_HEADER_SIZE)
        return -EPROTO;
    struct cb_frame_header h = {
        .length = get_le32(buf),
        .type = get_le16(buf + 4),
        .flags = get_le16(buf + 6),
        .request_id = get_le32(buf + 8),
    };
    /* Flags are reserved: accepting unknown bits would let a peer rely on
     * meanings this version does not implement. */
    if (h.flags != 0)
        return -EPROTO;
    /* Type 0 is never valid; unknown non-zero types are well-formed frames
     * that the receiver answers with ERROR (so versions can grow). */
    if (h.type == 0)
        return -EPROTO;
    if (h.length > CB_PROTO_MAX_PAYLOAD)
        return -EMSGSIZE;
    *out = h;
    return 0;
}

int cb_proto_next_field(const uint8_t *payload, size_t len, size_t *off,
                        struct cb_field_view *out)
{
    if (!off || !out || (!payload && len > 0))
        return -EPROTO;
    size_t pos = *off;
    if (pos == len)
        return 0;
    if (pos > len || len - pos < FIELD_HEADER_SIZE)
        return -EPROTO;
    const uint8_t *p = payload + pos;
    uint16_t tag = get_le16(p);
    uint16_t reserved = get_le16(p + 2);
    uint32_t flen = get_le32(p + 4);
    if (tag == 0 || reserved != 0)
        return -EPROTO;
    /* Compare against what is left rather than computing pos + 8 + flen,
     * which could wrap on a 32-bit size_t. */
    if ((size_t)flen > len - pos - FIELD_HEADER_SIZE)
        return -EPROTO;
    out->tag = tag;
    out->len = flen;
    out->value = p + FIELD_HEADER_SIZE;
    *off = pos + FIELD_HEADER_SIZE + flen;
    return 1;
}

int cb_field_u32(const struct cb_field_view *f, uint32_t *out)
{
    if (!f || !out || f->len != 4)
        return -EPROTO;
    *out = get_le32(f->value);
    return 0;
}

int cb_field_u64(const struct cb_field_view *f, uint64_t *out)
{
    if (!f || !out || f->len != 8)
        return -EPROTO;
    *out = (uint64_t)get_le32(f->value) | ((uint64_t)get_le32(f->value + 4) << 32);
    return 0;
}

int cb_field_i32(const struct cb_field_view *f, int32_t *out)
{
    uint32_t u;
    int r = cb_field_u32(f, &u);
    if (r < 0)
        return r;
    *out = (int32_t)u; /* two's complement on every target we build for */
    return 0;
}

char *cb_field_strdup(const struct cb_field_view *f)
{
    if (!f || (f->len > 0 && !f->value))
        return NULL;
    /* An embedded NUL would make the C string differ from what the peer
     * sent (e.g. "/bin/sh\0/evil" checked as one thing, used as another). */
    if (f->len > 0 && memchr(f->value, 0, f->len))
        return NULL;
    char *s = cb_xmalloc((size_t)f->len + 1);
    if (f->len > 0)
        memcpy(s, f->value, f->len);
    s[f->len] = '\0';
    return s;
}

int cb_proto_find(const uint8_t *payload, size_t len, uint16_t tag,
                  struct cb_field_view *out)
{
    size_t off = 0;
    struct cb_field_view f;
    int r;
    while ((r = cb_proto_next_field(payload, len, &off, &f)) > 0) {
        if (f.tag == tag) {
            if (out)
                *out = f;
            return 1;
        }
    }
    return r;
}

/* ---- building ---- */

void cb_builder_init(struct cb_builder *b, uint16_t type, uint32_t request_id)
{
    cb_builder_init_buffer(b, type, request_id, cb_xmalloc(256), 256);
}

void cb_builder_init_buffer(struct cb_builder *b, uint16_t type, uint32_t request_id,
                            uint8_t *buf, size_t cap)
{
    b->cap = cap;
    b->buf = buf;
    b->len = CB_PROTO_HEADER_SIZE;
    b->nest_start = 0;
    b->overflow = false;
    put_le32(b->buf, 0);
    put_le16(b->buf + 4, type);
    put_le16(b->buf + 6, 0);
    put_le32(b->buf + 8, request_id);
}

/* Reserve n more bytes; returns where they start, or NULL (and marks the
 * builder overflowed) when the payload would pass CB_PROTO_MAX_PAYLOAD. */
static uint8_t *builder_reserve(struct cb_builder *b, size_t n)
{
    if (b->overflow || !b->buf)
        return NULL;
    size_t payload = b->len - CB_PROTO_HEADER_SIZE;
    if (n > CB_PROTO_MAX_PAYLOAD || payload > CB_PROTO_MAX_PAYLOAD - n) {
        b->overflow = true;
        return NULL;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap;
        while (cap < b->len + n)
            cap *= 2;
        b->buf = cb_xrealloc(b->buf, cap);
        b->cap = cap;
    }
    uint8_t *p = b->buf + b->len;
    b->len += n;
    return p;
}

static void builder_field(struct cb_builder *b, uint16_t tag, const void *v,
                          size_t n)
{
    if (n > UINT32_MAX) {
        b->overflow = true;
        return;
    }
    uint8_t *p = builder_reserve(b, FIELD_HEADER_SIZE + n);
    if (!p)
        return;
    put_le16(p, tag);
    put_le16(p + 2, 0);
    put_le32(p + 4, (uint32_t)n);
    if (n > 0)
        memcpy(p + FIELD_HEADER_SIZE, v, n);
}

void cb_builder_u32(struct cb_builder *b, uint16_t tag, uint32_t v)
{
    uint8_t tmp[4];
    put_le32(tmp, v);
    builder_field(b, tag, tmp, sizeof tmp);
}

void cb_builder_u64(struct cb_builder *b, uint16_t tag, uint64_t v)
{
    uint8_t tmp[8];
    put_le32(tmp, (uint32_t)v);
    put_le32(tmp + 4, (uint32_t)(v >> 32));
    builder_field(b, tag, tmp, sizeof tmp);
}

void cb_builder_i32(struct cb_builder *b, uint16_t tag, int32_t v)
{
    cb_builder_u32(b, tag, (uint32_t)v);
}

void cb_builder_str(struct cb_builder *b, uint16_t tag, const char *s)
{
    s = s ? s : "";
    builder_field(b, tag, s, strlen(s));
}

void cb_builder_bytes(struct cb_builder *b, uint16_t tag, const void *p, size_t n)
{
    builder_field(b, tag, p, n);
}

void cb_builder_begin(struct cb_builder *b, uint16_t tag)
{
    /* One level of nesting is all the protocol uses (PROC); a second open
     * level is a programming error that must not produce a corrupt frame. */
    if (b->nest_start != 0) {
        b->overflow = true;
        return;
    }
    size_t start = b->len;
    uint8_t *p = builder_reserve(b, FIELD_HEADER_SIZE);
    if (!p)
        return;
    put_le16(p, tag);
    put_le16(p + 2, 0);
    put_le32(p + 4, 0);
    b->nest_start = start;
}

void cb_builder_end(struct cb_builder *b)
{
    if (b->nest_start == 0) {
        if (!b->overflow)
            b->overflow = true; /* end without begin: refuse to finish */
        return;
    }
    if (!b->overflow) {
        size_t inner = b->len - b->nest_start - FIELD_HEADER_SIZE;
        put_le32(b->buf + b->nest_start + 4, (uint32_t)inner);
    }
    b->nest_start = 0;
}

int cb_builder_finish(struct cb_builder *b)
{
    if (!b->buf || b->overflow || b->nest_start != 0)
        return -EMSGSIZE;
    put_le32(b->buf, (uint32_t)(b->len - CB_PROTO_HEADER_SIZE));
    return 0;
}

void cb_builder_free(struct cb_builder *b)
{
    free(b->buf);
    b->buf = NULL;
    b->len = b->cap = 0;
    b->nest_start = 0;
}

/* ---- blocking helpers ---- */

/* After EAGAIN: wait until the socket is ready, which lets the helpers
 * work on non-blocking sockets too. On a blocking socket EAGAIN means its
 * SO_RCVTIMEO/SO_SNDTIMEO ran out: -ETIMEDOUT, not a wait without end
 * (a frozen or hung init held cellboxd's start-up forever that way). */
static int wait_fd(int sock, short events)
{
    int fl = fcntl(sock, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        return -ETIMEDOUT;
    struct pollfd pfd = {.fd = sock, .events = events};
    int r = CB_RETRY(poll(&pfd, 1, -1));
    return r < 0 ? -errno : 0;
}

int cb_proto_send(int sock, const struct cb_builder *b, const int *fds, int nfds)
{
    if (!b || !b->buf || b->len < CB_PROTO_HEADER_SIZE || nfds < 0 ||
        nfds > CB_PROTO_MAX_FDS || (nfds > 0 && !fds))
        return -EINVAL;
    size_t off = 0;
    while (off < b->len) {
        struct iovec iov = {.iov_base = b->buf + off, .iov_len = b->len - off};
        union {
            char buf[CMSG_SPACE(sizeof(int) * CB_PROTO_MAX_FDS)];
            struct cmsghdr align;
        } ctl;
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        /* The fds ride on the sendmsg that carries the frame's first byte,
         * so the receiver finds them with the header. */
        if (off == 0 && nfds > 0) {
            memset(&ctl, 0, sizeof ctl);
            msg.msg_control = ctl.buf;
            msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
            struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
            memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
        }
        /* MSG_NOSIGNAL: a vanished peer is an EPIPE, not a dead process. */
        ssize_t n = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int r = wait_fd(sock, POLLOUT);
                if (r < 0)
                    return r;
                continue;
            }
            return -errno;
        }
        off += (size_t)n;
    }
    return 0;
}

static void collect_fds(struct msghdr *msg, int *fds, int *nfds)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const uint8_t *data = CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, data + i * sizeof(int), sizeof fd);
            /* More fds than the protocol allows are closed at once so a
             * hostile peer cannot exhaust our fd table. */
            if (fds && nfds && *nfds < CB_PROTO_MAX_FDS)
                fds[(*nfds)++] = fd;
            else
                close(fd);
        }
    }
}

/* Read exactly len bytes, collecting fds on the way. 0, -EPIPE on EOF before
 * the first byte (when at_start), -EPROTO on EOF inside, or -errno. */
static int recv_exact(int sock, uint8_t *buf, size_t len, bool at_start,
                      int *fds, int *nfds)
{
    size_t off = 0;
    while (off < len) {
        union {
            char buf[CMSG_SPACE(sizeof(int) * 8)];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {.iov_base = buf + off, .iov_len = len - off};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = ctl.buf,
                             .msg_controllen = sizeof ctl.buf};
        ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                int r = wait_fd(sock, POLLIN);
                if (r < 0)
                    return r;
                continue;
            }
            return -errno;
        }
        collect_fds(&msg, fds, nfds);
        if (n == 0)
            return (at_start && off == 0) ? -EPIPE : -EPROTO;
        off += (size_t)n;
    }
    return 0;
}

static void close_fds(int *fds, int *nfds)
{
    if (!fds || !nfds)
        return;
    for (int i = 0; i < *nfds; i++)
        close(fds[i]);
    *nfds = 0;
}

int cb_proto_recv(int sock, struct cb_frame_header *hdr, uint8_t **payload,
                  int *fds, int *nfds)
{
    uint8_t head[CB_PROTO_HEADER_SIZE];
    if (!hdr || !payload)
        return -EINVAL;
    *payload = NULL;
    if (nfds)
        *nfds = 0;
    int r = recv_exact(sock, head, sizeof head, true, fds, nfds);
    if (r == 0)
        r = cb_proto_parse_header(head, sizeof head, hdr);
    if (r < 0) {
        close_fds(fds, nfds);
        return r;
    }
    uint8_t *p = cb_xmalloc(hdr->length ? hdr->length : 1);
    r = recv_exact(sock, p, hdr->length, false, fds, nfds);
    if (r < 0) {
        free(p);
        close_fds(fds, nfds);
        return r;
    }
    *payload = p;
    return 0;
}
