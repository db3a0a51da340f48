/* hostile_init.c — a compromised PID 1 for the security battery.
 *
 * Stands in for cellbox-init when a sandbox's root has taken over PID 1:
 * the daemon's side of the control socket then talks to code the attacker
 * wrote. Built static at test time with the real cellbox-init embedded
 * (REAL_INIT, .incbin), it decides by its hostname (the sandbox name, set
 * before init is exec'd) how to behave:
 *
 *   flood-garbage  random bytes, endless, on every connection
 *   flood-hugelen  a header announcing a 4 GiB payload, then endless bytes
 *   flood-fast     a valid HELLO_OK, then valid EXIT frames as fast as it can
 *   flood-slow     a valid HELLO_OK, one byte per second
 *   flood-fdspam   valid HELLO_OK, then frames each carrying 250 fds
 *   flood-exit     half a frame, then exits (the sandbox dies mid-frame)
 *   anything else  the real cellbox-init, exec'd from a memfd with the same
 *                  argv, so a normal sandbox of the same daemon works
 *
 * Usage (from the runtime): hostile_init --control-fd N */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef REAL_INIT
#error "build with -DREAL_INIT=\"path/to/cellbox-init\""
#endif

__asm__(".section .rodata\n"
        ".global real_init_start\n"
        "real_init_start:\n"
        ".incbin \"" REAL_INIT "\"\n"
        ".global real_init_end\n"
        "real_init_end:\n"
        ".previous\n");
extern const char real_init_start[], real_init_end[];

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* One frame: header + u32 fields (tag, value). Returns its size. */
static size_t frame(uint8_t *out, uint16_t type, uint32_t req, const uint16_t *tags,
                    const uint32_t *vals, int n)
{
    size_t off = 12;
    for (int i = 0; i < n; i++) {
        put16(out + off, tags[i]);
        put16(out + off + 2, 0);
        put32(out + off + 4, 4);
        put32(out + off + 8, vals[i]);
        off += 12;
    }
    put32(out, (uint32_t)(off - 12));
    put16(out + 4, type);
    put16(out + 6, 0);
    put32(out + 8, req);
    return off;
}

/* Read the daemon's HELLO (header + payload) and answer HELLO_OK. */
static int handshake(int c)
{
    uint8_t hdr[12];
    size_t got = 0;
    while (got < sizeof hdr) {
        ssize_t r = read(c, hdr + got, sizeof hdr - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    uint32_t len, req;
    memcpy(&len, hdr, 4);
    memcpy(&req, hdr + 8, 4);
    uint8_t skip[256];
    while (len > 0) {
        ssize_t r = read(c, skip, len < sizeof skip ? len : sizeof skip);
        if (r <= 0)
            return -1;
        len -= (uint32_t)r;
    }
    uint8_t out[64];
    const uint16_t tags[] = {1, 11, 32}; /* VERSION, PID, NPROCS */
    const uint32_t vals[] = {1, 1, 0};
    return write_all(c, out, frame(out, 66, req, tags, vals, 3));
}

static void garbage(int c, int hugelen)
{
    uint8_t buf[65536];
    if (hugelen) {
        const uint16_t none[1] = {0};
        const uint32_t nv[1] = {0};
        frame(buf, 66, 1, none, nv, 0);
        put32(buf, 0xffffffffu); /* 4 GiB payload announced */
        if (write_all(c, buf, 12) < 0)
            return;
    }
    for (uint32_t x = 2463534242u;;) {
        for (size_t i = 0; i < sizeof buf; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            buf[i] = (uint8_t)x;
        }
        if (write_all(c, buf, sizeof buf) < 0)
            return;
    }
}

static void fast(int c)
{
    uint8_t buf[60 * 1000];
    size_t n = 0;
    const uint16_t tags[] = {11, 24, 13}; /* PID, EXIT_CODE, SIGNO */
    for (uint32_t pid = 2; n + 48 <= sizeof buf; pid++) {
        const uint32_t vals[] = {pid, 0, 0};
        n += frame(buf + n, 71, 0, tags, vals, 3);
    }
    while (write_all(c, buf, n) == 0) {
    }
}

static void slow(int c)
{
    uint8_t buf[64];
    const uint16_t tags[] = {11};
    const uint32_t vals[] = {2};
    size_t n = frame(buf, 71, 0, tags, vals, 1);
    put32(buf, 1u << 20); /* a whole MiB announced, a byte a second */
    for (size_t i = 0;; i++) {
        if (write_all(c, buf + (i < n ? i : n - 1), 1) < 0)
            return;
        sleep(1);
    }
}

static void fdspam(int c)
{
    int fds[250];
    for (int i = 0; i < 250; i++)
        fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
    uint8_t buf[48];
    const uint16_t tags[] = {11, 24, 13};
    const uint32_t vals[] = {2, 0, 0};
    size_t n = frame(buf, 71, 0, tags, vals, 3);
    union {
        char b[CMSG_SPACE(sizeof fds)];
        struct cmsghdr align;
    } u;
    for (;;) {
        struct iovec iov = {buf, n};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b,
                           .msg_controllen = sizeof u.b};
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof fds);
        memcpy(CMSG_DATA(cm), fds, sizeof fds);
        if (sendmsg(c, &m, MSG_NOSIGNAL) < 0 && errno != EINTR)
            return;
    }
}

static void exec_real(char **argv)
{
    int fd = (int)syscall(SYS_memfd_create, "cellbox-init", 0);
    if (fd < 0 || write_all(fd, real_init_start, (size_t)(real_init_end - real_init_start)) < 0) {
        perror("hostile_init: memfd");
        _exit(111);
    }
    extern char **environ;
    syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
    perror("hostile_init: execveat");
    _exit(112);
}

int main(int argc, char **argv)
{
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    if (strncmp(host, "flood-", 6) != 0)
        exec_real(argv);
    int lfd = -1;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--control-fd") == 0)
            lfd = atoi(argv[i + 1]);
    if (lfd < 0)
        return 2;
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) & ~O_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);
    const char *how = host + 6;
    for (;;) {
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return 3;
        }
        if (strcmp(how, "garbage") == 0) {
            garbage(c, 0);
        } else if (strcmp(how, "hugelen") == 0) {
            garbage(c, 1);
        } else if (strcmp(how, "exit") == 0) {
            uint8_t half[6] = {8, 0, 0, 0, 66, 0};
            write_all(c, half, sizeof half);
            _exit(0);
        } else if (handshake(c) == 0) {
            if (strcmp(how, "fast") == 0)
                fast(c);
            else if (strcmp(how, "slow") == 0)
                slow(c);
            else if (strcmp(how, "fdspam") == 0)
                fdspam(c);
        }
        close(c);
    }
}
