#include "util.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

void *cb_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

void *cb_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p)
        abort();
    return p;
}

void *cb_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        abort();
    return q;
}

char *cb_xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        abort();
    return d;
}

char *cb_xstrndup(const char *s, size_t n)
{
    char *d = strndup(s, n);
    if (!d)
        abort();
    return d;
}

char *cb_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (r < 0)
        abort();
    return s;
}

int cb_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int cb_read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EPIPE;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int cb_write_file_at(int dirfd, const char *name, const void *data, size_t len,
                     int mode, int atomic)
{
    char tmp[4096];
    const char *target = name;
    if (atomic) {
        if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%d", name, getpid()) >=
            sizeof tmp)
            return -ENAMETOOLONG;
        target = tmp;
    }
    /* No O_TRUNC: ext4 (auto_da_alloc) flushes a file truncated to zero
     * when it is closed, a synchronous writeback in the caller's thread for
     * every small record rewritten (disk.loop at each start). Writing over
     * the old bytes and cutting the file to the new length afterwards ends
     * with the same content without the flush. Files that are not regular
     * (EINVAL) have no length of ours to set. */
    int fd = CB_RETRY(openat(dirfd, target, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode));
    if (fd < 0)
        return -errno;
    int r = cb_write_all(fd, data, len);
    if (r == 0 && ftruncate(fd, (off_t)len) < 0 && errno != EINVAL)
        r = -errno;
    if (r == 0 && atomic && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && r == 0)
        r = -errno;
    if (r == 0 && atomic && renameat(dirfd, tmp, dirfd, name) < 0)
        r = -errno;
    if (r < 0 && atomic)
        unlinkat(dirfd, tmp, 0);
    return r;
}

int cb_read_file_at(int dirfd, const char *name, size_t max, char **out,
                    size_t *len_out)
{
    int fd = CB_RETRY(openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (fd < 0)
        return -errno;
    size_t cap = 256, len = 0;
    char *buf = cb_xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > max) {
                free(buf);
                close(fd);
                return -EFBIG;
            }
            cap *= 2;
            buf = cb_xrealloc(buf, cap);
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            close(fd);
            return -e;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max) {
            free(buf);
            close(fd);
            return -EFBIG;
        }
    }
    close(fd);
    buf[len] = 0;
    *out = buf;
    if (len_out)
        *len_out = len;
    return 0;
}

uint64_t cb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double cb_wall_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cb_random_hex(char *out, size_t n)
{
    unsigned char buf[64];
    static const char hex[] = "0123456789abcdef";
    if (n > sizeof buf)
        n = sizeof buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(buf + got, n - got, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            abort();
        }
        got += (size_t)r;
    }
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[buf[i] >> 4];
        out[2 * i + 1] = hex[buf[i] & 15];
    }
    out[2 * n] = 0;
}
