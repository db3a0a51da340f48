/* netns.c — network namespaces made ahead of time (netns.h). */
#include "netns.h"

#include <fcntl.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "thread.h"
#include "util.h"

#define SPARES_MAX 16
#define RETRY_S 1 /* after a failed make: a broken host is not retried in a loop */

struct spare {
    int netns, sysfs;
};

struct cb_netns_spares {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct spare ready[SPARES_MAX];
    int n, max;
    bool closing;
    bool broken; /* this host will not make them: callers clone their own */
    bool warned;
    bool threaded;
    pthread_t thread;
};

static int host_fd = -1, host_errno;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static void open_host(void)
{
    host_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    host_errno = host_fd < 0 ? errno : 0;
}

int cb_netns_host_fd(void)
{
    pthread_once(&host_once, open_host);
    return host_fd >= 0 ? host_fd : -host_errno;
}

static int write_sysctl(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, value, strlen(value));
    int r = n == (ssize_t)strlen(value) ? 0 : n < 0 ? -errno : -EIO;
    close(fd);
    return r;
}

int cb_netns_loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    int r = 0;
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        r = -errno;
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (r == 0 && ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        r = -errno;
    close(s);
    return r;
}

/* The calling thread's network namespace's sysfs as a detached mount,
 * read-only down to the superblock: the superblock belongs to the host's
 * user namespace, so no sandbox can make it writable again. */
static int mount_sysfs(void)
{
    int fs = fsopen("sysfs", FSOPEN_CLOEXEC);
    if (fs < 0)
        return -errno;
    int m = -1;
    if (fsconfig(fs, FSCONFIG_SET_STRING, "source", "sysfs", 0) == 0 &&
        fsconfig(fs, FSCONFIG_SET_FLAG, "ro", NULL, 0) == 0 &&
        fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
        m = fsmount(fs, FSMOUNT_CLOEXEC,
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    int r = m >= 0 ? m : -errno;
    close(fs);
    return r;
}

/* Make one spare in the calling thread (the maker, or a start that found
 * none ready) and return the thread to the host's namespace. -errno; a
 * failed return is -ENOTRECOVERABLE: the maker stops (its next namespaces
 * would be made from inside one), any other thread aborts the process. */
static int make_spare(int host, struct spare *sp)
{
    if (unshare(CLONE_NEWNET) < 0)
        return -errno;
    int r = 0;
    sp->sysfs = -1;
    sp->netns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (sp->netns < 0)
        r = -errno;
    /* What Docker's capabilities gave a sandbox's root in a namespace of its
     * own: low ports and ping, here for every user of the sandbox. */
    if (r == 0)
        r = cb_netns_loopback_up();
    if (r == 0)
        r = write_sysctl("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0");
    if (r == 0)
        r = write_sysctl("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
    if (r == 0 && (sp->sysfs = mount_sysfs()) < 0)
        r = sp->sysfs;
    if (setns(host, CLONE_NEWNET) < 0)
        r = -ENOTRECOVERABLE;
    if (r < 0) {
        if (sp->netns >= 0)
            close(sp->netns);
        if (sp->sysfs >= 0)
            close(sp->sysfs);
    }
    return r;
}

/* A make failed (lock held): say so once; a host that refuses for good
 * (no permission, no network namespaces) is not asked again. */
static void make_failed(struct cb_netns_spares *s, int r)
{
    if (!s->warned)
        fprintf(stderr, "cellbox: cannot make a network namespace owned by the host (%s); "
                        "sandboxes clone their own\n", strerror(-r));
    s->warned = true;
    if (r == -EPERM || r == -ENOSYS || r == -EINVAL || r == -EBADF)
        s->broken = true;
}

static void *maker_main(void *arg)
{
    struct cb_netns_spares *s = arg;
    int host = cb_netns_host_fd();
    pthread_mutex_lock(&s->lock);
    while (!s->closing && !s->broken) {
        if (s->n >= s->max) {
            pthread_cond_wait(&s->cond, &s->lock);
            continue;
        }
        pthread_mutex_unlock(&s->lock);
        struct spare sp;
        int r = host < 0 ? -EBADF : make_spare(host, &sp);
        pthread_mutex_lock(&s->lock);
        if (r == -ENOTRECOVERABLE)
            break; /* stuck in a namespace of its own: this thread makes no more */
        if (r == 0) {
            if (s->closing || s->n >= s->max) {
                close(sp.netns);
                close(sp.sysfs);
            } else {
                s->ready[s->n++] = sp;
            }
            continue;
        }
        make_failed(s, r);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += RETRY_S;
        while (!s->closing && !s->broken &&
               pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

struct cb_netns_spares *cb_netns_open(int max)
{
    const char *env = getenv("CB_NETNS_SPARES");
    if (env)
        max = atoi(env);
    struct cb_netns_spares *s = cb_xcalloc(1, sizeof *s);
    s->max = max < 0 ? 0 : max > SPARES_MAX ? SPARES_MAX : max;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (s->max == 0)
        return s;
    s->threaded = cb_thread_start(&s->thread, maker_main, s) == 0;
    return s;
}

void cb_netns_close(struct cb_netns_spares *s)
{
    if (!s)
        return;
    if (s->threaded)
        cb_thread_stop(s->thread, &s->lock, &s->cond, &s->closing);
    for (int i = 0; i < s->n; i++) {
        close(s->ready[i].netns);
        close(s->ready[i].sysfs);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int cb_netns_take(struct cb_netns_spares *s, int *netns_fd, int *sysfs_fd)
{
    if (!s)
        return -EAGAIN;
    pthread_mutex_lock(&s->lock);
    if (s->n > 0) {
        struct spare sp = s->ready[--s->n];
        pthread_cond_signal(&s->cond); /* make the next one */
        pthread_mutex_unlock(&s->lock);
        *netns_fd = sp.netns;
        *sysfs_fd = sp.sysfs;
        return 0;
    }
    bool broken = s->broken;
    pthread_mutex_unlock(&s->lock);
    if (broken)
        return -EAGAIN;
    /* None ready (a burst, or spares off): make one here, so that every
     * sandbox of this host gets the same kind of namespace whatever the
     * timing. */
    int host = cb_netns_host_fd();
    struct spare sp;
    int r = host < 0 ? -EBADF : make_spare(host, &sp);
    if (r == -ENOTRECOVERABLE)
        abort(); /* a worker thread left in a sandbox's network: never go on */
    if (r < 0) {
        pthread_mutex_lock(&s->lock);
        make_failed(s, r);
        pthread_mutex_unlock(&s->lock);
        return -EAGAIN;
    }
    *netns_fd = sp.netns;
    *sysfs_fd = sp.sysfs;
    return 0;
}
