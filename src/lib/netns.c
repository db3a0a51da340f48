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
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/mount.h>
#include <linux/nsfs.h>
#include <time.h>
#include <unistd.h>

#include "thread.h"
#include "util.h"

#define SPARES_MAX 16
#define SYS_PROC_USES 64 /* namespaces per private proc instance (sysctl_dir) */
#define RETRY_S 1 /* after a failed make: a broken host is not retried in a loop */
#define RETIRED_MAX 16  /* namespaces waiting for the maker's check */
#define RECYCLED_MAX 16 /* checked namespaces kept for their group's next sandbox */
#define RECYCLED_KEEP_S 60 /* ... for at most this long */

struct spare {
    int netns, sysfs;
};

/* A namespace a destroyed sandbox used, for the next of its group. */
struct used {
    int netns, sysfs; /* sysfs: -1 until checked */
    char group[CB_NETNS_GROUP_MAX + 1];
    time_t since; /* CLOCK_MONOTONIC seconds when it was checked */
};

struct cb_netns_spares {
    int proc_fd;  /* the host's /proc (O_PATH): the maker leaves its tree */
    pthread_mutex_t sys_lock;
    int sys_proc; /* a detached proc instance of our own for /proc/sys, or -1 (sysctl_dir) */
    int sys_uses; /* namespaces looked up through it */
    bool sys_refused; /* no private proc on this host: the host's /proc */
    int parent;   /* the namespace spares are made from (parent_netns), or -1 */
    bool shared;  /* the maker's root is the shared sysfs (share_sysfs) */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct spare ready[SPARES_MAX];
    int n, max;
    struct used retired[RETIRED_MAX]; /* to check (check_used), oldest first */
    int nretired;
    bool in_check; /* the maker checks one it took off retired */
    struct used recycled[RECYCLED_MAX]; /* checked, oldest first */
    int nrecycled;
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

static int write_sysctl_at(int dir, const char *path, const char *value)
{
    int fd = openat(dir, path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, value, strlen(value));
    int r = n == (ssize_t)strlen(value) ? 0 : n < 0 ? -errno : -EIO;
    close(fd);
    return r;
}

/* The sysfs every sandbox sees: mounted from a network namespace made for
 * it and left at once, so that it shows no network device of the host's
 * or of any sandbox's (sysfs shows those of the namespace it was mounted
 * from; this one's loopback goes with it, once the kernel's asynchronous
 * teardown of the namespace has run: until then "lo" may still be listed).
 * A sandbox's own devices are where programs look for them: netlink,
 * ioctls, /proc/net. Costs a network namespace made and dropped, ~0.4 ms:
 * once per maker thread when shared, per start otherwise. Returns the detached mount or -errno;
 * -ENOTRECOVERABLE when the thread could not return to the host's
 * network namespace. */
static int mount_deviceless_sysfs(int home)
{
    if (unshare(CLONE_NEWNET) < 0)
        return -errno;
    int fs = mount_sysfs();
    if (setns(home, CLONE_NEWNET) < 0) {
        if (fs >= 0)
            close(fs);
        return -ENOTRECOVERABLE;
    }
    return fs;
}

/* Make one spare in the calling thread (the maker, or a start that found
 * none ready), which is in the namespace `from` (parent_netns), and return
 * the thread to `home`. Its sysfs is a clone of the shared one when the
 * caller is the maker and has it (share_sysfs), else a device-less one of
 * its own. -errno; a failed return is -ENOTRECOVERABLE: the maker stops
 * (its next namespaces would be made from inside one), any other thread
 * aborts the process. */
/* The calling thread's namespace's /proc/sys/net/ipv4 (O_PATH), or -errno.
 *
 * Why not through the host's /proc: every namespace's net/ipv4 dentry hangs
 * under the one /proc/sys/net dentry with the same name, so a lookup there
 * compares against one dentry per network namespace alive on the host
 * (~0.46 us each here: 0.9 ms per new namespace with 2,000 alive;
 * proc_sys_compare was 8% of all CPU while creating sandboxes with 2,500
 * alive). A proc instance of our own, detached and never attached
 * anywhere, holds only the dentries of the namespaces looked up through
 * it, and is made again every SYS_PROC_USES of them (~60 us to make and
 * drop one): the walk stays short whatever the host runs. /proc/sys/net
 * shows the namespace of the task that looks, so one instance serves
 * them all. Without the new mount API: the host's /proc. */
static int sysctl_ipv4_dir(struct cb_netns_spares *s)
{
    pthread_mutex_lock(&s->sys_lock);
    if (s->sys_proc >= 0 && s->sys_uses >= SYS_PROC_USES) {
        close(s->sys_proc);
        s->sys_proc = -1;
    }
    if (s->sys_proc < 0 && !s->sys_refused) {
        int fs = (int)syscall(SYS_fsopen, "proc", FSOPEN_CLOEXEC);
        if (fs >= 0 && syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
            s->sys_proc = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0);
        if (fs >= 0)
            close(fs);
        if (s->sys_proc < 0) {
            s->sys_proc = -1;
            s->sys_refused = true; /* not asked again for every namespace */
        }
        s->sys_uses = 0;
    }
    int base = s->sys_proc >= 0 ? s->sys_proc : s->proc_fd;
    s->sys_uses++;
    int fd = openat(base, "sys/net/ipv4", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int r = fd < 0 ? -errno : fd;
    pthread_mutex_unlock(&s->sys_lock);
    return r;
}

static int make_spare(struct cb_netns_spares *s, int from, int home, bool shared,
                      struct spare *sp)
{
    sp->sysfs = shared ? (int)syscall(SYS_open_tree, AT_FDCWD, "/",
                                      OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)
                       : mount_deviceless_sysfs(from);
    if (sp->sysfs < 0)
        return shared ? -errno : sp->sysfs;
    if (unshare(CLONE_NEWNET) < 0) {
        int e = errno;
        close(sp->sysfs);
        return -e;
    }
    int r = 0;
    sp->netns = openat(s->proc_fd, "thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (sp->netns < 0)
        r = -errno;
    /* What Docker's capabilities gave a sandbox's root in a namespace of its
     * own: low ports and ping, here for every user of the sandbox. */
    if (r == 0)
        r = cb_netns_loopback_up();
    int ipv4 = r == 0 ? sysctl_ipv4_dir(s) : -1;
    if (r == 0 && ipv4 < 0)
        r = ipv4;
    if (r == 0)
        r = write_sysctl_at(ipv4, "ip_unprivileged_port_start", "0");
    if (r == 0)
        r = write_sysctl_at(ipv4, "ping_group_range", "0 2147483647");
    if (ipv4 >= 0)
        close(ipv4);
    if (setns(home, CLONE_NEWNET) < 0)
        r = -ENOTRECOVERABLE;
    if (r < 0) {
        if (sp->netns >= 0)
            close(sp->netns);
        close(sp->sysfs);
    }
    return r;
}

/* One sysfs superblock for every sandbox the maker makes a namespace for,
 * instead of one per namespace. Why: every superblock registers a
 * memory-cgroup-aware shrinker, and every memory cgroup on the host keeps
 * bookkeeping for every such shrinker (1 KiB per 64, allocated when the
 * cgroup is made, sized by the most shrinkers the host has ever had at
 * once), so superblocks x sandboxes grows quadratically: at 10,000
 * sandboxes each superblock per sandbox costs every sandbox ~156 KiB.
 *
 * How: a detached mount cannot be cloned (before Linux 6.15), an attached
 * one can. The maker thread takes a mount namespace of its own, attaches
 * the device-less sysfs there and makes it its root, dropping the copy of
 * the host's tree (which would otherwise keep every host file system
 * mounted when the host unmounts it). Each spare then gets
 * open_tree(OPEN_TREE_CLONE) of "/": a new mount of the same superblock,
 * as read-only as the original (the superblock is "ro" and the host's user
 * namespace owns it). A start that finds no spare ready makes one in its
 * own thread, which cannot clone it: that sandbox gets a device-less sysfs
 * of its own, the same to look at. On any refusal here the thread returns
 * to the host's mount namespace and every spare mounts its own. 0 or
 * -errno. */
static int share_sysfs(struct cb_netns_spares *s, int host)
{
    int mnt = openat(s->proc_fd, "thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (mnt < 0)
        return -errno;
    /* A mount namespace (and file system context: CLONE_NEWNS implies
     * CLONE_FS) for this thread only. */
    if (unshare(CLONE_NEWNS) < 0) {
        int e = errno;
        close(mnt);
        return -e;
    }
    int r = 0, fs = -1;
    /* Nothing we do here may propagate to the host's mounts. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        r = -errno;
    if (r == 0 && (fs = mount_deviceless_sysfs(host)) < 0)
        r = fs;
    /* Attach it over /sys (of this namespace: a directory every Linux has)
     * and pivot into it; the old tree goes away with the detach. */
    if (r == 0 && move_mount(fs, "", AT_FDCWD, "/sys", MOVE_MOUNT_F_EMPTY_PATH) < 0)
        r = -errno;
    if (r == 0 && (chdir("/sys") < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
                   umount2(".", MNT_DETACH) < 0 || chdir("/") < 0))
        r = -errno;
    if (fs >= 0)
        close(fs);
    if (r < 0 && r != -ENOTRECOVERABLE && setns(mnt, CLONE_NEWNS) < 0)
        r = -ENOTRECOVERABLE;
    close(mnt);
    return r;
}

/* The namespace sandboxes' namespaces are made from: one of our own, so
 * that its net.ipv4.tcp_child_ehash_entries can be set without touching
 * the host's. The kernel reads that sysctl in the creating thread's
 * namespace when it makes a new one: with it set, each sandbox's
 * namespace gets a TCP connection table of its own instead of sharing the
 * host's global one (262,144 buckets on this 24 GiB host). Why: when a
 * namespace is torn down the kernel purges its TIME_WAIT sockets by
 * walking the whole table it used, so every sandbox destroy scanned the
 * host's entire table (0.55% of all CPU in a create+exec+delete churn, and
 * the table grows with the host's memory); a sandbox's own table is
 * small. Also keeps a tenant's connections out of the host's hash chains.
 * TCP_CHILD_EHASH buckets (8 bytes each) per sandbox. Made once, when
 * the spares open, so that the first sandbox's namespace is of the same
 * kind as the rest. Returns the namespace's fd, the calling thread back
 * in home, or -errno (a kernel before 6.1 has no such sysctl: namespaces
 * are then made from home, as before); -ENOTRECOVERABLE if the thread
 * could not go back. */
#define TCP_CHILD_EHASH "1024"
static int parent_netns(const struct cb_netns_spares *s, int home)
{
    if (unshare(CLONE_NEWNET) < 0)
        return -errno;
    int fd = openat(s->proc_fd, "thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int r = fd < 0 ? -errno
                   : write_sysctl_at(s->proc_fd, "sys/net/ipv4/tcp_child_ehash_entries",
                                     TCP_CHILD_EHASH);
    if (setns(home, CLONE_NEWNET) < 0)
        r = -ENOTRECOVERABLE;
    if (r < 0 && fd >= 0)
        close(fd);
    return r < 0 ? r : fd;
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

/* ---- reuse (cb_netns_retire) ---- */

static time_t mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec;
}

/* Is fd a network namespace of the kind the maker makes: owned by the
 * host's user namespace (ours; a sandbox's root administers nothing in it)
 * and neither our own nor the parent? A namespace a sandbox cloned for
 * itself (no spares on this host) belongs to the sandbox's user namespace,
 * where its root could have changed anything: never reused. */
static bool reusable_kind(const struct cb_netns_spares *s, int fd)
{
    if (ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET)
        return false;
    int owner = ioctl(fd, NS_GET_USERNS);
    if (owner < 0)
        return false;
    struct stat o, self, ns, other;
    bool ok = fstat(owner, &o) == 0 && fstatat(s->proc_fd, "self/ns/user", &self, 0) == 0 &&
              o.st_dev == self.st_dev && o.st_ino == self.st_ino && fstat(fd, &ns) == 0;
    close(owner);
    int host = cb_netns_host_fd();
    if (ok && host >= 0 && fstat(host, &other) == 0 && other.st_ino == ns.st_ino)
        ok = false;
    if (ok && s->parent >= 0 && fstat(s->parent, &other) == 0 && other.st_ino == ns.st_ino)
        ok = false;
    return ok;
}

/* Is "<key><number>" in text with the number 0? Missing: not. */
static bool counts_zero(const char *text, const char *key)
{
    const char *p = text ? strstr(text, key) : NULL;
    return p && strtoul(p + strlen(key), NULL, 10) == 0;
}

/* Is nothing of the last sandbox left in namespace fd? Every process of it
 * is dead, so what could remain is what the kernel keeps after them:
 * sockets still closing (a TCP connection's FIN after its process died),
 * TIME_WAIT entries (they hold ports: a server in the next sandbox could
 * not bind its port without SO_REUSEADDR), fragments being reassembled,
 * sockets the daemon still holds (a preview connection). All are counted
 * in the namespace's own /proc/net/sockstat{,6}, which shows the namespace
 * of the thread that reads it: the maker enters it to look (and at
 * /proc/net/dev: loopback must be its only device). 1 clean, 0 not,
 * -ENOTRECOVERABLE when the thread could not return to home. */
static int check_used(struct cb_netns_spares *s, int fd, int home)
{
    if (setns(fd, CLONE_NEWNET) < 0)
        return 0;
    _cleanup_free_ char *v4 = NULL, *v6 = NULL, *dev = NULL;
    int r4 = cb_read_file_at(s->proc_fd, "thread-self/net/sockstat", 4096, &v4, NULL);
    int r6 = cb_read_file_at(s->proc_fd, "thread-self/net/sockstat6", 4096, &v6, NULL);
    int rd = cb_read_file_at(s->proc_fd, "thread-self/net/dev", 65536, &dev, NULL);
    if (setns(home, CLONE_NEWNET) < 0)
        return -ENOTRECOVERABLE;
    /* Loopback and nothing else (two header lines, one device): a
     * namespace someone gave more (a veth of a network policy) is not
     * the kind a spare is. */
    int lines = 0;
    for (const char *c = rd == 0 ? dev : ""; *c; c++)
        lines += *c == '\n';
    return r4 == 0 && counts_zero(v4, "sockets: used ") && counts_zero(v4, " tw ") &&
           counts_zero(v4, "FRAG: inuse ") &&
           (r6 == -ENOENT /* no IPv6 */ || (r6 == 0 && counts_zero(v6, "FRAG6: inuse "))) &&
           lines == 3 && strstr(dev, " lo:");
}

static void drop_used(struct used *u)
{
    close(u->netns);
    if (u->sysfs >= 0)
        close(u->sysfs);
}

/* Lock held: drop what was kept too long (a group that stopped making
 * sandboxes should not keep namespaces alive). */
static void expire_recycled(struct cb_netns_spares *s)
{
    time_t now = mono_s();
    int keep = 0;
    for (int i = 0; i < s->nrecycled; i++) {
        if (now - s->recycled[i].since >= RECYCLED_KEEP_S)
            drop_used(&s->recycled[i]);
        else
            s->recycled[keep++] = s->recycled[i];
    }
    s->nrecycled = keep;
}

/* Lock held: keep a checked namespace (the oldest goes when full). */
static void keep_recycled(struct cb_netns_spares *s, struct used *u)
{
    if (s->nrecycled == RECYCLED_MAX) {
        drop_used(&s->recycled[0]);
        memmove(&s->recycled[0], &s->recycled[1], (RECYCLED_MAX - 1) * sizeof s->recycled[0]);
        s->nrecycled--;
    }
    u->since = mono_s();
    s->recycled[s->nrecycled++] = *u;
}

/* Maker, lock held on entry and return: check the oldest retired namespace
 * with the lock let go. -ENOTRECOVERABLE: the thread is stuck in it. */
static int check_retired(struct cb_netns_spares *s, int from)
{
    struct used u = s->retired[0];
    memmove(&s->retired[0], &s->retired[1], (size_t)(s->nretired - 1) * sizeof s->retired[0]);
    s->nretired--;
    s->in_check = true;
    pthread_mutex_unlock(&s->lock);
    int r = check_used(s, u.netns, from);
    if (r == 1)
        u.sysfs = (int)syscall(SYS_open_tree, AT_FDCWD, "/", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    pthread_mutex_lock(&s->lock);
    s->in_check = false;
    if (r == 1 && u.sysfs >= 0 && !s->closing)
        keep_recycled(s, &u);
    else
        drop_used(&u);
    return r < 0 ? r : 0;
}

void cb_netns_retire(struct cb_netns_spares *s, int netns, const char *group)
{
    if (netns < 0)
        return;
    bool kept = false;
    if (s && group && strlen(group) <= CB_NETNS_GROUP_MAX && reusable_kind(s, netns)) {
        pthread_mutex_lock(&s->lock);
        /* Only the maker with the shared sysfs checks them and gives each a
         * sysfs (check_retired). */
        if (s->threaded && s->shared && !s->closing && !s->broken &&
            s->nretired < RETIRED_MAX) {
            struct used *u = &s->retired[s->nretired++];
            u->netns = netns;
            u->sysfs = -1;
            snprintf(u->group, sizeof u->group, "%s", group);
            pthread_cond_signal(&s->cond);
            kept = true;
        }
        pthread_mutex_unlock(&s->lock);
    }
    if (!kept)
        close(netns);
}

int cb_netns_reusable(struct cb_netns_spares *s, const char *group)
{
    int n = 0;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->nrecycled; i++)
        n += strcmp(s->recycled[i].group, group) == 0;
    pthread_mutex_unlock(&s->lock);
    return n;
}

int cb_netns_checking(struct cb_netns_spares *s)
{
    pthread_mutex_lock(&s->lock);
    int n = s->nretired + s->in_check;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static void *maker_main(void *arg)
{
    struct cb_netns_spares *s = arg;
    int host = cb_netns_host_fd();
    int shared = host < 0 ? -EBADF : share_sysfs(s, host);
    pthread_mutex_lock(&s->lock);
    if (shared == -ENOTRECOVERABLE) {
        /* left in a namespace of its own: this thread makes none */
        pthread_mutex_unlock(&s->lock);
        return NULL;
    }
    s->shared = shared == 0;
    if (shared < 0)
        fprintf(stderr, "cellbox: no shared sysfs for sandboxes (%s): each mounts its own\n",
                strerror(-shared));
    /* From here on this thread lives in the parent namespace, if any. */
    int from = s->parent >= 0 && setns(s->parent, CLONE_NEWNET) == 0 ? s->parent : host;
    while (!s->closing && !s->broken) {
        expire_recycled(s);
        if (s->nretired > 0) {
            if (check_retired(s, from) == -ENOTRECOVERABLE)
                break; /* stuck in a namespace of a sandbox's: this thread makes no more */
            continue;
        }
        if (s->n >= s->max) {
            if (s->nrecycled == 0) {
                pthread_cond_wait(&s->cond, &s->lock);
            } else { /* wake to expire them */
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += RECYCLED_KEEP_S / 4;
                pthread_cond_timedwait(&s->cond, &s->lock, &until);
            }
            continue;
        }
        pthread_mutex_unlock(&s->lock);
        struct spare sp;
        int r = host < 0 ? -EBADF : make_spare(s, from, from, s->shared, &sp);
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
    s->proc_fd = open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
    s->sys_proc = -1;
    pthread_mutex_init(&s->sys_lock, NULL);
    s->parent = -1;
    s->max = max < 0 ? 0 : max > SPARES_MAX ? SPARES_MAX : max;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    int host = cb_netns_host_fd();
    int parent = host < 0 ? -EBADF : parent_netns(s, host);
    if (parent == -ENOTRECOVERABLE)
        abort(); /* this thread left in a namespace of ours: never go on */
    s->parent = parent >= 0 ? parent : -1;
    if (s->max == 0)
        return s;
    s->threaded = cb_thread_start(&s->thread, "cb-netns", maker_main, s) == 0;
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
    for (int i = 0; i < s->nretired; i++)
        drop_used(&s->retired[i]);
    for (int i = 0; i < s->nrecycled; i++)
        drop_used(&s->recycled[i]);
    if (s->proc_fd >= 0)
        close(s->proc_fd);
    if (s->sys_proc >= 0)
        close(s->sys_proc);
    pthread_mutex_destroy(&s->sys_lock);
    if (s->parent >= 0)
        close(s->parent);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int cb_netns_take(struct cb_netns_spares *s, const char *group, int *netns_fd, int *sysfs_fd)
{
    if (!s)
        return -EAGAIN;
    pthread_mutex_lock(&s->lock);
    for (int i = s->nrecycled - 1; group && i >= 0; i--) { /* newest first */
        if (strcmp(s->recycled[i].group, group) != 0)
            continue;
        *netns_fd = s->recycled[i].netns;
        *sysfs_fd = s->recycled[i].sysfs;
        memmove(&s->recycled[i], &s->recycled[i + 1],
                (size_t)(s->nrecycled - i - 1) * sizeof s->recycled[0]);
        s->nrecycled--;
        pthread_mutex_unlock(&s->lock);
        return 1;
    }
    if (s->n > 0) {
        struct spare sp = s->ready[--s->n];
        pthread_cond_signal(&s->cond); /* make the next one */
        pthread_mutex_unlock(&s->lock);
        *netns_fd = sp.netns;
        *sysfs_fd = sp.sysfs;
        return 0;
    }
    bool broken = s->broken;
    int parent = s->parent;
    pthread_mutex_unlock(&s->lock);
    if (broken)
        return -EAGAIN;
    /* None ready (a burst, or spares off): make one here, so that every
     * sandbox of this host gets the same kind of namespace whatever the
     * timing (from the maker's parent namespace when there is one). */
    int host = cb_netns_host_fd();
    int from = parent >= 0 && host >= 0 && setns(parent, CLONE_NEWNET) == 0 ? parent : host;
    struct spare sp;
    int r = host < 0 ? -EBADF : make_spare(s, from, host, false, &sp);
    /* A make that failed early leaves the thread where it started. */
    if (r < 0 && from != host && setns(host, CLONE_NEWNET) < 0)
        r = -ENOTRECOVERABLE;
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
