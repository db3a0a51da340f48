/* holder.c — one thread with its own fd table holds references (holder.h). */
#include "holder.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util.h"

struct request {
    bool is_open;
    const char *path; /* open */
    int handle;       /* close; the open's result */
    bool sent;        /* close: the fd went to rx_fd */
    bool done;
    struct request *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER;
static struct request *queue;
static int state; /* 0: not started, 1: running, <0: could not start (-errno) */
/* A socket pair: the holder sends a handle's fd through its end (in its
 * own table) to the other (in everyone's), where a close receives it and
 * releases it in the closing thread, so releases run side by side instead
 * of one after the other in the holder (each can wait for an SRCU grace
 * period of the shrinkers: ~100 ms with 10,000 sandboxes). rx_lock pairs
 * each receive with its own send. */
static int tx_fd = -1, rx_fd = -1;
static pthread_mutex_t rx_lock = PTHREAD_MUTEX_INITIALIZER;

/* Send fd over sock with SCM_RIGHTS. 0 or -errno. */
static int send_fd(int sock, int fd)
{
    char byte = 0, ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = sizeof ctl};
    memset(ctl, 0, sizeof ctl);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    return sendmsg(sock, &m, MSG_NOSIGNAL) == 1 ? 0 : -errno;
}

/* The fd sent by send_fd, or -1. */
static int recv_fd(int sock)
{
    char byte, ctl[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                       .msg_controllen = sizeof ctl};
    if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
        c->cmsg_len != CMSG_LEN(sizeof(int)))
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static void serve(struct request *r)
{
    if (r->is_open) {
        int fd = open(r->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        r->handle = fd < 0 ? -errno : fd;
    } else {
        /* The message holds its own reference: closing ours is cheap. If
         * the send fails, the release happens here, in the holder. */
        r->sent = tx_fd >= 0 && send_fd(tx_fd, r->handle) == 0;
        close(r->handle);
    }
}

static void *holder_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (!queue)
            pthread_cond_wait(&work, &lock);
        struct request *r = queue;
        queue = r->next;
        pthread_mutex_unlock(&lock);
        serve(r); /* a close may take milliseconds: not under the lock */
        pthread_mutex_lock(&lock);
        r->done = true;
        pthread_cond_broadcast(&finished);
    }
    return NULL;
}

struct start {
    pthread_mutex_t m;
    pthread_cond_t c;
    int result; /* 1 until the thread reports */
};

/* The thread's first act: a private copy of the fd table, emptied of the
 * copies of everyone else's fds (closing a copy releases nothing) except
 * its end of the socket pair. */
static void *holder_boot(void *arg)
{
    struct start *s = arg;
    pthread_setname_np(pthread_self(), "cb-holder");
    int r = unshare(CLONE_FILES) < 0 ? -errno : 0;
    if (r == 0 && tx_fd >= 0) {
        if (tx_fd > 0)
            close_range(0, (unsigned)tx_fd - 1, 0);
        close_range((unsigned)tx_fd + 1, ~0U, 0);
    } else if (r == 0) {
        close_range(0, ~0U, 0);
    }
    pthread_mutex_lock(&s->m);
    s->result = r;
    pthread_cond_signal(&s->c);
    pthread_mutex_unlock(&s->m);
    return r == 0 ? holder_main(NULL) : NULL;
}

/* lock held */
static int ensure_started(void)
{
    if (state != 0)
        return state;
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) == 0) {
        tx_fd = pair[0];
        rx_fd = pair[1];
    }
    struct start s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 1};
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int e = pthread_create(&t, &attr, holder_boot, &s);
    pthread_attr_destroy(&attr);
    if (e != 0) {
        if (tx_fd >= 0) {
            close(tx_fd);
            close(rx_fd);
        }
        tx_fd = rx_fd = -1;
        return state = -e;
    }
    pthread_mutex_lock(&s.m);
    while (s.result == 1)
        pthread_cond_wait(&s.c, &s.m);
    pthread_mutex_unlock(&s.m);
    /* The holder has its own copy of tx_fd now; ours goes. If it failed to
     * start, nothing is ever sent: drop the other end too. */
    if (tx_fd >= 0)
        close(tx_fd);
    if (tx_fd >= 0 && s.result != 0) {
        close(rx_fd);
        rx_fd = tx_fd = -1;
    }
    return state = s.result == 0 ? 1 : s.result;
}

static void submit(struct request *r)
{
    pthread_mutex_lock(&lock);
    int st = ensure_started();
    if (st < 0) {
        pthread_mutex_unlock(&lock);
        r->handle = r->is_open ? st : r->handle;
        return;
    }
    r->next = queue;
    queue = r;
    pthread_cond_signal(&work);
    while (!r->done)
        pthread_cond_wait(&finished, &lock);
    pthread_mutex_unlock(&lock);
}

int cb_holder_open(const char *path)
{
    struct request r = {.is_open = true, .path = path};
    submit(&r);
    return r.handle;
}

int cb_holder_take(int handle)
{
    if (handle < 0)
        return -1;
    struct request r = {.is_open = false, .handle = handle};
    pthread_mutex_lock(&rx_lock);
    submit(&r);
    int fd = r.sent ? recv_fd(rx_fd) : -1;
    pthread_mutex_unlock(&rx_lock);
    return fd;
}

void cb_holder_close(int handle)
{
    /* The release (unmounts, for a sandbox's root) runs here, in parallel
     * with other closers. The fd sat in the shared table only between the
     * receive and this close. */
    int fd = cb_holder_take(handle);
    if (fd >= 0)
        close(fd);
}
