/* util.h — small helpers shared by every part of cellbox.
 *
 * Cleanup attributes in the style of crun/systemd: a variable declared with
 * _cleanup_free_ is freed when it leaves scope; ownership is handed on only
 * with steal_ptr()/steal_fd(), which make the move visible at the call site.
 *
 * This header must stay usable from cellbox-init (static, libc only). */
#ifndef CB_UTIL_H
#define CB_UTIL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define CB_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define CB_UNUSED __attribute__((unused))
#define CB_PRINTF(f, a) __attribute__((format(printf, f, a)))

static inline void cb_freep(void *p) { free(*(void **)p); }
static inline void cb_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

#define _cleanup_(fn) __attribute__((cleanup(fn)))
#define _cleanup_free_ _cleanup_(cb_freep)
#define _cleanup_close_ _cleanup_(cb_closep)

static inline void *cb_steal_ptr_(void **p)
{
    void *v = *p;
    *p = NULL;
    return v;
}
static inline int cb_steal_fd_(int *fd)
{
    int v = *fd;
    *fd = -1;
    return v;
}
#define steal_ptr(p) cb_steal_ptr_((void **)&(p))
#define steal_fd(fd) cb_steal_fd_(&(fd))

/* Retry a syscall expression while it fails with EINTR. */
#define CB_RETRY(expr)                                                         \
    ({                                                                         \
        __typeof__(expr) r_;                                                   \
        do                                                                     \
            r_ = (expr);                                                       \
        while (r_ == -1 && errno == EINTR);                                    \
        r_;                                                                    \
    })

/* Out of memory is not an error we recover from (STYLE rule 4): abort. */
void *cb_xmalloc(size_t n);
void *cb_xcalloc(size_t count, size_t n);
void *cb_xrealloc(void *p, size_t n);
char *cb_xstrdup(const char *s);
char *cb_xstrndup(const char *s, size_t n);
char *cb_xasprintf(const char *fmt, ...) CB_PRINTF(1, 2);

/* Full read/write loops on blocking fds; return 0 or -errno. */
int cb_write_all(int fd, const void *buf, size_t len);
int cb_read_all(int fd, void *buf, size_t len);

/* Write a small file (tmp + fsync + rename when atomic is set). -errno on error. */
int cb_write_file_at(int dirfd, const char *name, const void *data, size_t len,
                     int mode, int atomic);
/* Read a whole small file (<= max bytes) into a NUL-terminated buffer. */
int cb_read_file_at(int dirfd, const char *name, size_t max, char **out,
                    size_t *len_out);

/* Monotonic clock in nanoseconds / wall clock in seconds. */
uint64_t cb_now_ns(void);
double cb_wall_time(void);

/* Random bytes from getrandom(), hex-encoded into out (2*n+1 bytes). */
void cb_random_hex(char *out, size_t n);

#endif
