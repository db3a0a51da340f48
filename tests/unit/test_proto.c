/* test_proto.c — the control protocol's parser, builder and blocking I/O. */
#include "proto.h"
#include "runner.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

/* A frame builder's payload as (pointer, length). */
static const uint8_t *payload_of(const struct cb_builder *b, size_t *n)
{
    *n = b->len - CB_PROTO_HEADER_SIZE;
    return b->buf + CB_PROTO_HEADER_SIZE;
}

TEST(proto_roundtrip_all_types)
{
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_SPAWN, 0xdeadbeef);
    cb_builder_u32(&b, CB_F_UID, 4000000000u);
    cb_builder_u64(&b, CB_F_TIMEOUT_MS, 0x0123456789abcdefull);
    cb_builder_i32(&b, CB_F_EXIT_CODE, -1);
    cb_builder_str(&b, CB_F_ARGV, "echo");
    cb_builder_str(&b, CB_F_ARGV, "");
    cb_builder_bytes(&b, CB_F_DATA, "a\0b", 3);
    cb_builder_begin(&b, CB_F_PROC);
    cb_builder_u32(&b, CB_F_PID, 42);
    cb_builder_str(&b, CB_F_CWD, "/tmp");
    cb_builder_end(&b);
    cb_builder_u32(&b, CB_F_PID, 7);
    ASSERT_EQ(cb_builder_finish(&b), 0);

    struct cb_frame_header h;
    ASSERT_EQ(cb_proto_parse_header(b.buf, b.len, &h), 0);
    ASSERT_EQ(h.type, CB_MSG_SPAWN);
    ASSERT_EQ(h.flags, 0);
    ASSERT_EQ(h.request_id, 0xdeadbeef);
    ASSERT_EQ(h.length, b.len - CB_PROTO_HEADER_SIZE);

    size_t n, off = 0;
    const uint8_t *p = payload_of(&b, &n);
    struct cb_field_view f;
    uint32_t u32;
    uint64_t u64;
    int32_t i32;
    ASSERT_EQ(cb_proto_next_field(p, n, &off, &f), 1);
    ASSERT_EQ(f.tag, CB_F_UID);
    ASSERT_EQ(cb_field_u32(&f, &u32), 0);
    ASSERT_EQ(u32, 4000000000u);
    ASSERT_EQ(cb_proto_next_field(p, n, &off, &f), 1);
    ASSERT_EQ(cb_field_u64(&f, &u64), 0);
    ASSERT(u64 == 0x0123456789abcdefull);
    ASSERT_EQ(cb_proto_next_field(p, n, &off, &f), 1);
    ASSERT_EQ(cb_field_i32(&f, &i32), 0);
    ASSERT_EQ(i32, -1);
    ASSERT_EQ(cb_proto_next_field(p, n, &off, &f), 1);
    char *s = cb_field_strdup(&f);
    ASSERT_STREQ(s, "echo");
    free(s);
    ASSERT_EQ(cb_proto_next_field(p, n, &off, &f), 1);
    s = cb_field_strdup(&f);
    ASSERT_STREQ(s, "");
    free(s);
    ASSERT_EQ(cb_proto_next_field(p, n, &off, &f), 1);
    ASSERT_EQ(f.tag, CB_F_DATA);
    ASSERT_EQ(f.len, 3);
    ASSERT(memcmp(f.value, "a\0b", 3) == 0);
    ASSERT(cb_field_strdup(&f) == NULL); /* NUL inside a string */
    ASSERT_EQ(cb_proto_next_field(p, n, &off, &f), 1);
    ASSERT_EQ(f.tag, CB_F_PROC);
    struct cb_field_view in;
    ASSERT_EQ(cb_proto_find(f.value, f.len, CB_F_CWD, &in), 1);
    s = cb_field_strdup(&in);
    ASSERT_STREQ(s, "/tmp");
    free(s);
    ASSERT_EQ(cb_proto_find(f.value, f.len, CB_F_PID, &in), 1);
    ASSERT_EQ(cb_field_u32(&in, &u32), 0);
    ASSERT_EQ(u32, 42);
    ASSERT_EQ(cb_proto_next_field(p, n, &off, &f), 1);
    ASSERT_EQ(f.tag, CB_F_PID);
    ASSERT_EQ(cb_proto_next_field(p, n, &off, &f), 0);
    ASSERT_EQ(cb_proto_find(p, n, CB_F_SIGNO, &f), 0);
    ASSERT_EQ(cb_proto_find(p, n, CB_F_PID, &f), 1);
    ASSERT_EQ(cb_field_u32(&f, &u32), 0);
    ASSERT_EQ(u32, 7); /* the top-level PID, not the nested one */
    cb_builder_free(&b);
}

TEST(proto_wire_format_is_little_endian)
{
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_PING, 0x01020304);
    cb_builder_u32(&b, CB_F_PID, 0x0a0b0c0d);
    ASSERT_EQ(cb_builder_finish(&b), 0);
    const uint8_t want[] = {12, 0, 0, 0, 10, 0, 0, 0, 4, 3, 2, 1,
                            11, 0, 0, 0, 4, 0, 0, 0, 0x0d, 0x0c, 0x0b, 0x0a};
    ASSERT_EQ(b.len, sizeof want);
    ASSERT(memcmp(b.buf, want, sizeof want) == 0);
    cb_builder_free(&b);
}

TEST(proto_bad_headers)
{
    struct cb_frame_header h;
    uint8_t ok[12] = {0, 0, 0, 0, 10, 0, 0, 0, 1, 0, 0, 0};
    ASSERT_EQ(cb_proto_parse_header(ok, 12, &h), 0);
    ASSERT_EQ(cb_proto_parse_header(ok, 11, &h), -EPROTO); /* short */
    uint8_t flags[12] = {0, 0, 0, 0, 10, 0, 1, 0, 1, 0, 0, 0};
    ASSERT_EQ(cb_proto_parse_header(flags, 12, &h), -EPROTO);
    uint8_t type0[12] = {0};
    ASSERT_EQ(cb_proto_parse_header(type0, 12, &h), -EPROTO);
    uint8_t big[12] = {0, 0, 0, 0x80, 10, 0, 0, 0, 1, 0, 0, 0};
    ASSERT_EQ(cb_proto_parse_header(big, 12, &h), -EMSGSIZE);
    uint8_t max[12] = {0, 0, 0x10, 0, 10, 0, 0, 0, 1, 0, 0, 0}; /* exactly 1 MiB */
    ASSERT_EQ(cb_proto_parse_header(max, 12, &h), 0);
    max[0] = 1; /* 1 MiB + 1 */
    ASSERT_EQ(cb_proto_parse_header(max, 12, &h), -EMSGSIZE);
    /* unknown types parse: the receiver answers ERROR */
    uint8_t unknown[12] = {0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0};
    ASSERT_EQ(cb_proto_parse_header(unknown, 12, &h), 0);
}

TEST(proto_bad_fields)
{
    struct cb_field_view f;
    size_t off = 0;
    /* shorter than a field header */
    uint8_t shortf[7] = {11, 0, 0, 0, 4, 0, 0};
    ASSERT_EQ(cb_proto_next_field(shortf, sizeof shortf, &off, &f), -EPROTO);
    /* length past the end */
    uint8_t past[10] = {11, 0, 0, 0, 4, 0, 0, 0, 1, 2};
    off = 0;
    ASSERT_EQ(cb_proto_next_field(past, sizeof past, &off, &f), -EPROTO);
    /* length near UINT32_MAX must not wrap */
    uint8_t wrap[12] = {11, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    off = 0;
    ASSERT_EQ(cb_proto_next_field(wrap, sizeof wrap, &off, &f), -EPROTO);
    /* reserved bits set */
    uint8_t resv[8] = {11, 0, 1, 0, 0, 0, 0, 0};
    off = 0;
    ASSERT_EQ(cb_proto_next_field(resv, sizeof resv, &off, &f), -EPROTO);
    /* tag 0 */
    uint8_t tag0[8] = {0};
    off = 0;
    ASSERT_EQ(cb_proto_next_field(tag0, sizeof tag0, &off, &f), -EPROTO);
    /* offset beyond the buffer */
    off = 100;
    ASSERT_EQ(cb_proto_next_field(resv, sizeof resv, &off, &f), -EPROTO);
    /* a good field followed by trailing garbage */
    uint8_t trail[14] = {11, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 9, 9};
    off = 0;
    ASSERT_EQ(cb_proto_next_field(trail, sizeof trail, &off, &f), 1);
    ASSERT_EQ(cb_proto_next_field(trail, sizeof trail, &off, &f), -EPROTO);
    ASSERT_EQ(cb_proto_find(trail, sizeof trail, CB_F_SIGNO, &f), -EPROTO);
    /* nested PROC whose inner field overruns it */
    uint8_t nest[16] = {CB_F_PROC, 0, 0, 0, 8, 0, 0, 0,
                        CB_F_PROC, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f};
    off = 0;
    ASSERT_EQ(cb_proto_next_field(nest, sizeof nest, &off, &f), 1);
    size_t ioff = 0;
    struct cb_field_view in;
    ASSERT_EQ(cb_proto_next_field(f.value, f.len, &ioff, &in), -EPROTO);
    /* empty payload: no fields, not an error */
    off = 0;
    ASSERT_EQ(cb_proto_next_field(NULL, 0, &off, &f), 0);
}

TEST(proto_bad_typed_values)
{
    uint8_t v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct cb_field_view f = {.tag = CB_F_PID, .len = 3, .value = v};
    uint32_t u32;
    uint64_t u64;
    int32_t i32;
    ASSERT_EQ(cb_field_u32(&f, &u32), -EPROTO);
    ASSERT_EQ(cb_field_i32(&f, &i32), -EPROTO);
    ASSERT_EQ(cb_field_u64(&f, &u64), -EPROTO);
    f.len = 8;
    ASSERT_EQ(cb_field_u32(&f, &u32), -EPROTO);
    ASSERT_EQ(cb_field_u64(&f, &u64), 0);
    ASSERT(u64 == 0x0807060504030201ull);
    f.len = 4;
    ASSERT_EQ(cb_field_u64(&f, &u64), -EPROTO);
}

TEST(proto_builder_overflow)
{
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_OUTPUT, 1);
    size_t big = CB_PROTO_MAX_PAYLOAD - 8; /* exactly fills the payload */
    uint8_t *data = cb_xcalloc(1, big + 1);
    cb_builder_bytes(&b, CB_F_DATA, data, big);
    ASSERT(!b.overflow);
    ASSERT_EQ(cb_builder_finish(&b), 0);
    ASSERT_EQ(b.len, CB_PROTO_HEADER_SIZE + CB_PROTO_MAX_PAYLOAD);
    cb_builder_u32(&b, CB_F_PID, 1); /* one more field is too much */
    ASSERT(b.overflow);
    ASSERT_EQ(cb_builder_finish(&b), -EMSGSIZE);
    cb_builder_free(&b);

    cb_builder_init(&b, CB_MSG_OUTPUT, 1);
    cb_builder_bytes(&b, CB_F_DATA, data, big + 1);
    ASSERT_EQ(cb_builder_finish(&b), -EMSGSIZE);
    cb_builder_free(&b);

    /* many small fields overflow too */
    cb_builder_init(&b, CB_MSG_PROCS, 1);
    for (int i = 0; i < 200000; i++)
        cb_builder_u64(&b, CB_F_SEQ, (uint64_t)i);
    ASSERT_EQ(cb_builder_finish(&b), -EMSGSIZE);
    cb_builder_free(&b);

    /* unbalanced nesting is refused, not sent corrupt */
    cb_builder_init(&b, CB_MSG_PROCS, 1);
    cb_builder_begin(&b, CB_F_PROC);
    ASSERT_EQ(cb_builder_finish(&b), -EMSGSIZE);
    cb_builder_free(&b);
    cb_builder_init(&b, CB_MSG_PROCS, 1);
    cb_builder_end(&b);
    ASSERT_EQ(cb_builder_finish(&b), -EMSGSIZE);
    cb_builder_free(&b);
    free(data);
}

TEST(proto_send_recv_with_fds)
{
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_SPAWNED, 9);
    cb_builder_u32(&b, CB_F_PID, 1234);
    ASSERT_EQ(cb_builder_finish(&b), 0);
    int fds[2] = {p[0], p[1]};
    ASSERT_EQ(cb_proto_send(sv[0], &b, fds, 2), 0);
    cb_builder_free(&b);
    close(p[0]);
    close(p[1]);

    struct cb_frame_header h;
    uint8_t *payload = NULL;
    int got[CB_PROTO_MAX_FDS];
    int ngot = -1;
    ASSERT_EQ(cb_proto_recv(sv[1], &h, &payload, got, &ngot), 0);
    ASSERT_EQ(h.type, CB_MSG_SPAWNED);
    ASSERT_EQ(h.request_id, 9);
    ASSERT_EQ(ngot, 2);
    ASSERT_EQ(fcntl(got[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    ASSERT_EQ(write(got[1], "x", 1), 1); /* the fds are the pipe's ends */
    char c = 0;
    ASSERT_EQ(read(got[0], &c, 1), 1);
    ASSERT_EQ(c, 'x');
    struct cb_field_view f;
    ASSERT_EQ(cb_proto_find(payload, h.length, CB_F_PID, &f), 1);
    free(payload);
    close(got[0]);
    close(got[1]);

    /* a header cut short by EOF is a protocol error; clean EOF is EPIPE */
    uint8_t partial[5] = {0, 0, 0, 0, 10};
    ASSERT_EQ(write(sv[0], partial, sizeof partial), 5);
    shutdown(sv[0], SHUT_WR);
    ASSERT_EQ(cb_proto_recv(sv[1], &h, &payload, got, &ngot), -EPROTO);
    close(sv[0]);
    close(sv[1]);
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    close(sv[0]);
    ASSERT_EQ(cb_proto_recv(sv[1], &h, &payload, NULL, NULL), -EPIPE);
    close(sv[1]);
}

TEST(proto_recv_rejects_oversized_and_closes_extra_fds)
{
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    uint8_t huge[12] = {0, 0, 0, 0x80, 10, 0, 0, 0, 1, 0, 0, 0};
    ASSERT_EQ(write(sv[0], huge, sizeof huge), 12);
    struct cb_frame_header h;
    uint8_t *payload = NULL;
    ASSERT_EQ(cb_proto_recv(sv[1], &h, &payload, NULL, NULL), -EMSGSIZE);
    ASSERT(payload == NULL);
    close(sv[0]);
    close(sv[1]);

    /* five fds sent, three kept, the other two closed by recv */
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_PING, 1);
    ASSERT_EQ(cb_builder_finish(&b), 0);
    char ctl[CMSG_SPACE(sizeof(int) * 5)] = {0};
    struct iovec iov = {.iov_base = b.buf, .iov_len = b.len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                         .msg_controllen = sizeof ctl};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * 5);
    int five[5] = {devnull, devnull, devnull, devnull, devnull};
    memcpy(CMSG_DATA(cm), five, sizeof five);
    ASSERT_EQ(sendmsg(sv[0], &msg, 0), (ssize_t)b.len);
    cb_builder_free(&b);
    int before = 0;
    for (int fd = 0; fd < 1024; fd++)
        before += fcntl(fd, F_GETFD) >= 0;
    int got[CB_PROTO_MAX_FDS], ngot = 0;
    ASSERT_EQ(cb_proto_recv(sv[1], &h, &payload, got, &ngot), 0);
    free(payload);
    ASSERT_EQ(ngot, CB_PROTO_MAX_FDS);
    int after = 0;
    for (int fd = 0; fd < 1024; fd++)
        after += fcntl(fd, F_GETFD) >= 0;
    ASSERT_EQ(after, before + CB_PROTO_MAX_FDS);
}

/* A builder started on a caller's small buffer (init recycles one) grows
 * out of it like a fresh one and produces the same frame. */
TEST(proto_builder_on_given_buffer)
{
    char big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct cb_builder a, b;
    cb_builder_init(&a, CB_MSG_EXIT, 0);
    cb_builder_init_buffer(&b, CB_MSG_EXIT, 0, cb_xmalloc(64), 64);
    struct cb_builder *both[] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        cb_builder_u32(both[i], CB_F_PID, 42);
        cb_builder_str(both[i], CB_F_MESSAGE, big);
        cb_builder_u64(both[i], CB_F_ENDED_AT, 1);
        ASSERT_EQ(cb_builder_finish(both[i]), 0);
    }
    ASSERT_EQ(b.len, a.len);
    ASSERT(b.cap >= b.len);
    ASSERT(memcmp(a.buf, b.buf, a.len) == 0);
    struct cb_field_view f;
    size_t n;
    const uint8_t *p = payload_of(&b, &n);
    ASSERT_EQ(cb_proto_find(p, n, CB_F_MESSAGE, &f), 1);
    ASSERT_EQ(f.len, sizeof big - 1);
    cb_builder_free(&a);
    cb_builder_free(&b);
}

/* A blocking socket's receive timeout is a timeout: cb_proto_recv answers
 * -ETIMEDOUT when the peer says nothing (before, it went on to wait
 * without end: a paused sandbox's frozen init held cellboxd's start-up),
 * also in the middle of a frame. A non-blocking socket is still waited on. */
TEST(proto_recv_honours_the_receive_timeout)
{
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct timeval tv = {0, 100000};
    ASSERT_EQ(setsockopt(sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    struct cb_frame_header h;
    uint8_t *payload = NULL;
    int fds[CB_PROTO_MAX_FDS], nfds = 0;
    ASSERT_EQ(cb_proto_recv(sv[0], &h, &payload, fds, &nfds), -ETIMEDOUT);
    ASSERT_EQ(write(sv[1], "\x01\x02", 2), 2); /* half a header */
    ASSERT_EQ(cb_proto_recv(sv[0], &h, &payload, fds, &nfds), -ETIMEDOUT);
    /* non-blocking: waits until the frame is there */
    int nb[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, nb), 0);
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_PING, 7);
    ASSERT_EQ(cb_builder_finish(&b), 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        usleep(100000);
        _exit(write(nb[1], b.buf, b.len) == (ssize_t)b.len ? 0 : 1);
    }
    ASSERT_EQ(cb_proto_recv(nb[0], &h, &payload, fds, &nfds), 0);
    ASSERT_EQ(h.type, CB_MSG_PING);
    ASSERT_EQ(h.request_id, 7u);
    free(payload);
    cb_builder_free(&b);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    for (int i = 0; i < 2; i++) {
        close(sv[i]);
        close(nb[i]);
    }
}
