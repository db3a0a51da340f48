/* sbdir.c — sandbox directories made new or recycled (see sbdir.h). */
#include "sbdir.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "quota.h"
#include "rootfs.h"
#include "thread.h"
#include "util.h"

struct cb_sbdir_spares {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    char *parent; /* state_dir/sandboxes */
    int max, n;
    int ahead;    /* the maker keeps at least this many ready (0: no maker) */
    bool layers;  /* fresh spares get upper/ and work/ (cb_sbdir_open) */
    unsigned seq;
    bool closing, threaded;
    pthread_t thread;
    char *names[CB_SBDIR_SPARES_MAX];
    int listeners[CB_SBDIR_SPARES_MAX]; /* bound at names[i]/init.sock, or -1 */
};

/* What every sandbox directory holds again, emptied: the mount points
 * (rootfs, the template's idmapped lower, the disk image's), the files the
 * runtime rewrites in place (disk.loop: quota.c), and, for a sandbox
 * without a disk image (its layers are here, not in the image), the
 * skeleton of its upper layer that cb_rootfs_prepare_upper fills again
 * (rootfs.c: prepare_upper_contents; keep the two lists in step) and the
 * overlay's work directory. Kept directories are emptied; kept files are
 * truncated; both lose every extended attribute (overlay's opaque or
 * redirect marks, ACLs, whatever the sandbox set), and their owner and
 * mode are set again by the next create. Everything else is removed. */
struct keep {
    const char *name;
    bool dir;
    bool sock;              /* a socket kept as it is (not a file to truncate) */
    const struct keep *sub; /* what a kept directory keeps (NULL: nothing) */
    size_t nsub;
};
static const struct keep etc_kept[] = {{"hostname", false, false, NULL, 0},
                                       {"hosts", false, false, NULL, 0}};
static const struct keep home_kept[] = {{"user", true, false, NULL, 0}};
static const struct keep upper_kept[] = {
    {"home", true, false, home_kept, CB_ARRAY_SIZE(home_kept)},
    {"workspace", true, false, NULL, 0},
    {"tmp", true, false, NULL, 0},
    {"root", true, false, NULL, 0},
    {"etc", true, false, etc_kept, CB_ARRAY_SIZE(etc_kept)},
};
static const struct keep top_kept[] = {
    {"rootfs", true, false, NULL, 0},
    {"lower", true, false, NULL, 0},
    {CB_QUOTA_IMAGE_DIR, true, false, NULL, 0},
    {"upper", true, false, upper_kept, CB_ARRAY_SIZE(upper_kept)},
    {"work", true, false, NULL, 0}, /* emptied: overlay makes work/work fresh
                                        at each mount, faster than clearing one */
    {"runtime.state", false, false, NULL, 0},
    {"init.log", false, false, NULL, 0},
    {"disk.loop", false, false, NULL, 0},
    /* last: kept only with the listener bound there (cb_sbdir_retire) */
    {CB_SBDIR_SOCKET, false, true, NULL, 0},
};

/* The root of a sandbox's disk image (quota.h): its layers and the
 * lost+found directory mkfs made. */
static const struct keep image_kept[] = {
    {"upper", true, false, upper_kept, CB_ARRAY_SIZE(upper_kept)},
    {"work", true, false, NULL, 0},
    {"lost+found", true, false, NULL, 0},
};

static const struct keep *find_keep(const struct keep *k, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, k[i].name) == 0)
            return &k[i];
    return NULL;
}

/* Remove every extended attribute of the open file fd. 0 or -errno. */
static int clear_xattrs(int fd)
{
    char names[4096];
    ssize_t len = flistxattr(fd, names, sizeof names);
    if (len < 0)
        return errno == ENOTSUP ? 0 : -errno; /* too many to list: not kept */
    for (ssize_t i = 0; i < len; i += (ssize_t)strlen(names + i) + 1)
        if (fremovexattr(fd, names + i) < 0 && errno != ENODATA)
            return -errno;
    return 0;
}

/* Clear the inode flags a tenant may set on its own files (chattr: sync
 * writes, no atime, ...), so a kept directory behaves for the next one as
 * a new one would. File systems without them: nothing to clear. */
static void clear_flags(int fd)
{
    const int tenant = FS_SYNC_FL | FS_DIRSYNC_FL | FS_NOATIME_FL | FS_NODUMP_FL |
                        FS_TOPDIR_FL | FS_NOCOW_FL | FS_COMPR_FL | FS_NOCOMP_FL;
    int flags = 0; /* the kernel reads and writes an int, whatever the macro says */
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags & tenant)) {
        flags &= ~tenant;
        ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
}

static int clean_dir(int dfd, dev_t dev, const struct keep *keep, size_t nkeep, int depth);

/* Keep one entry of a retired directory (emptied), or remove it. A mount
 * point is an error: something of the sandbox still holds it. */
static int clean_entry(int dfd, dev_t dev, const char *name, const struct keep *keep,
                       size_t nkeep, int depth)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (S_ISDIR(st.st_mode) && st.st_dev != dev)
        return -EBUSY;
    const struct keep *k = find_keep(keep, nkeep, name);
    if (k && k->sock)
        /* the bound name of the listener the caller keeps: nothing of a
         * sandbox in it (a socket file holds no data) */
        return S_ISSOCK(st.st_mode) && st.st_nlink == 1 ? 0 : cb_rootfs_remove_tree_at(dfd, name);
    if (k && k->dir && S_ISDIR(st.st_mode)) {
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        struct stat fst;
        int r = fstat(fd, &fst) < 0 ? -errno : fst.st_dev != dev ? -EBUSY : 0;
        if (r == 0)
            r = clean_dir(fd, dev, k->sub, k->nsub, depth + 1);
        if (r == 0)
            r = clear_xattrs(fd);
        if (r == 0)
            clear_flags(fd);
        close(fd);
        return r;
    }
    if (k && !k->dir && S_ISREG(st.st_mode) && st.st_nlink == 1) {
        /* Truncated: nothing the old sandbox wrote (its init's log, its
         * state, its /etc/hosts) reaches the next one. Only a file with no
         * other name: truncating a hard link would empty whatever else it
         * names (the fstat below rechecks on the open file, against a
         * swap). */
        int fd = openat(dfd, name, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        struct stat fst;
        int r = fstat(fd, &fst) < 0 ? -errno : 0;
        if (r == 0 && (!S_ISREG(fst.st_mode) || fst.st_nlink != 1 || fst.st_dev != dev))
            r = -EXDEV;
        /* Modes other than the two kept files are made with go back to
         * 0600 (the next create sets its own either way); one of those is
         * left as it is: a chmod is a journaled change here and another
         * at the next create, which sets /etc/hosts' 0644 again. */
        mode_t mode = fst.st_mode & 07777;
        if (r == 0 && (ftruncate(fd, 0) < 0 ||
                       (mode != 0600 && mode != 0644 && fchmod(fd, 0600) < 0)))
            r = -errno;
        if (r == 0)
            r = clear_xattrs(fd);
        if (r == 0)
            clear_flags(fd);
        close(fd);
        return r == -EXDEV ? cb_rootfs_remove_tree_at(dfd, name) : r;
    }
    return cb_rootfs_remove_tree_at(dfd, name);
}

/* Empty the directory dfd down to the kept entries. */
struct clean_ctx {
    dev_t dev;
    const struct keep *keep;
    size_t nkeep;
    int depth;
};

static int clean_one(int dfd, const char *name, void *arg)
{
    const struct clean_ctx *c = arg;
    int r = clean_entry(dfd, c->dev, name, c->keep, c->nkeep, c->depth);
    return r > 0 ? 0 : r;
}

static int clean_dir(int dfd, dev_t dev, const struct keep *keep, size_t nkeep, int depth)
{
    if (depth > 8)
        return -ELOOP;
    struct clean_ctx c = {dev, keep, nkeep, depth};
    return cb_dir_each(dfd, clean_one, &c);
}

/* keep_sock: the caller keeps the listener bound at init.sock (the last
 * of top_kept); without it init.sock goes with everything else. */
static int clean_path(const char *path, bool keep_sock)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int r = fstat(fd, &st) < 0 || fchmod(fd, 0700) < 0 ? -errno : 0;
    if (r == 0)
        r = clean_dir(fd, st.st_dev, top_kept, CB_ARRAY_SIZE(top_kept) - !keep_sock, 0);
    close(fd);
    return r;
}

int cb_sbdir_listen(int dirfd)
{
    /* Through /proc/self/fd: sun_path's 108 bytes never limit how deep the
     * state directory may be. */
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/" CB_SBDIR_SOCKET, dirfd);
    unlinkat(dirfd, CB_SBDIR_SOCKET, 0);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        fchmodat(dirfd, CB_SBDIR_SOCKET, 0600, 0) < 0 || listen(s, 64) < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    return s;
}

int cb_sbdir_listener_reusable(int fd)
{
    int v = 0;
    socklen_t len = sizeof v;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode) ||
        getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) < 0 || v != AF_UNIX ||
        getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) < 0 || v != SOCK_STREAM ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0 || v != 1)
        return -EINVAL;
    /* Connections queued and never accepted (a connect racing the last
     * sandbox's end) are refused, never handed to the next init. */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    for (int c; (c = accept4(fd, NULL, NULL, SOCK_CLOEXEC)) >= 0;)
        close(c);
    return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
}

/* Spares are private to the process that retired them (.spare-dir-<pid>-<n>):
 * another runtime on the same state dir (cbrun beside a daemon, a daemon
 * restarting) never takes or cleans one that its owner may be renaming
 * into place at that moment. Spares of a process that no longer exists are
 * removed; a live owner removes its own at close. */
static void remove_dead_spares(const char *parent)
{
    DIR *d = opendir(parent);
    if (!d)
        return;
    struct dirent *de;
    size_t plen = strlen(CB_SBDIR_SPARE_PREFIX);
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, CB_SBDIR_SPARE_PREFIX, plen) != 0)
            continue;
        long pid = strtol(de->d_name + plen, NULL, 10);
        if (pid > 0 && pid != getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue;
        _cleanup_free_ char *path = cb_xasprintf("%s/%s", parent, de->d_name);
        cb_rootfs_remove_tree(path);
    }
    closedir(d);
}

/* A new spare: the directory and everything a sandbox's create would make
 * in it (rootfs/, the upper layer's skeleton, work/, runtime.state,
 * init.log), owned by root until a create takes it and sets owners and
 * contents (cb_rootfs_prepare_upper is idempotent). A sandbox with a disk
 * image leaves upper/ and work/ unused: they are in its image, so where
 * sandboxes have images (!layers) they are not made: ten inodes fewer per
 * spare, each 0.1-0.3 ms on ext4 without a journal after churn. */
static int make_fresh(const char *path, bool layers, int *listener)
{
    *listener = -1;
    if (mkdir(path, 0700) < 0) /* a spare: no one's business (cb_sbdir_make) */
        return -errno;
    _cleanup_free_ char *rootfs = cb_xasprintf("%s/rootfs", path);
    _cleanup_free_ char *upper = cb_xasprintf("%s/upper", path);
    _cleanup_free_ char *work = cb_xasprintf("%s/work", path);
    int r = mkdir(rootfs, 0755) < 0 ? -errno : 0;
    if (r == 0 && layers && cb_rootfs_prepare_upper(upper, work, 0, "", NULL) < 0)
        r = -EIO;
    static const char *const files[] = {"runtime.state", "init.log"};
    for (size_t i = 0; r == 0 && i < CB_ARRAY_SIZE(files); i++) {
        _cleanup_free_ char *f = cb_xasprintf("%s/%s", path, files[i]);
        r = cb_write_file_at(AT_FDCWD, f, "", 0, 0600, 0);
    }
    if (r == 0) { /* the control socket's name too (sbdir.h); none: made at start */
        int dfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
        *listener = dfd < 0 ? -1 : cb_sbdir_listen(dfd);
        if (*listener < 0)
            *listener = -1;
        if (dfd >= 0)
            close(dfd);
    }
    if (r < 0)
        cb_rootfs_remove_tree(path);
    return r;
}

/* The maker: keeps `ahead` spares ready, so that a create finds a
 * directory with its few entries made even when no destroy has left one
 * (a burst of creates, a fresh daemon). Each entry is an inode on the
 * state file system, 0.1-0.3 ms each on ext4 without a journal under churn
 * (sbdir.h): a dozen of them were most of a cold create there. */
static void *maker_main(void *arg)
{
    struct cb_sbdir_spares *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->closing) {
        if (s->n >= s->ahead || s->n >= s->max) {
            pthread_cond_wait(&s->cond, &s->lock);
            continue;
        }
        char name[48];
        snprintf(name, sizeof name, CB_SBDIR_SPARE_PREFIX "%d-%u", (int)getpid(), s->seq++);
        pthread_mutex_unlock(&s->lock);
        _cleanup_free_ char *path = cb_xasprintf("%s/%s", s->parent, name);
        int listener;
        int r = make_fresh(path, s->layers, &listener);
        pthread_mutex_lock(&s->lock);
        if (r < 0) {
            /* Creates make their own as before; not retried in a loop. */
            fprintf(stderr, "cellbox: cannot make sandbox directories ahead (%s)\n",
                    strerror(-r));
            break;
        }
        if (s->closing || s->n >= s->max) {
            pthread_mutex_unlock(&s->lock);
            if (listener >= 0)
                close(listener);
            cb_rootfs_remove_tree(path);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        s->listeners[s->n] = listener;
        s->names[s->n++] = cb_xstrdup(name);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

struct cb_sbdir_spares *cb_sbdir_open(const char *sandboxes_dir, int max, bool layers)
{
    struct cb_sbdir_spares *s = cb_xcalloc(1, sizeof *s);
    s->layers = layers;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->parent = cb_xstrdup(sandboxes_dir);
    /* CB_SBDIR_SPARES=0: every destroy removes its directory (the behaviour
     * before recycling; for comparisons and as an escape hatch). */
    const char *env = getenv("CB_SBDIR_SPARES");
    s->max = env && strcmp(env, "0") == 0 ? 0 : max;
    if (s->max > CB_SBDIR_SPARES_MAX)
        s->max = CB_SBDIR_SPARES_MAX;
    remove_dead_spares(s->parent);
    const char *ahead = getenv("CB_SBDIR_AHEAD");
    s->ahead = ahead ? atoi(ahead) : CB_SBDIR_AHEAD_DEFAULT;
    if (s->ahead > s->max)
        s->ahead = s->max;
    if (s->ahead > 0)
        s->threaded = cb_thread_start(&s->thread, "cb-sbdirs", maker_main, s) == 0;
    return s;
}

void cb_sbdir_close(struct cb_sbdir_spares *s)
{
    if (!s)
        return;
    if (s->threaded)
        cb_thread_stop(s->thread, &s->lock, &s->cond, &s->closing);
    for (int i = 0; i < s->n; i++) {
        _cleanup_free_ char *path = cb_xasprintf("%s/%s", s->parent, s->names[i]);
        cb_rootfs_remove_tree(path);
        free(s->names[i]);
        if (s->listeners[i] >= 0)
            close(s->listeners[i]);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->parent);
    free(s);
}

int cb_sbdir_ready(struct cb_sbdir_spares *s)
{
    if (!s)
        return 0;
    pthread_mutex_lock(&s->lock);
    int n = s->n;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static char *pop_spare(struct cb_sbdir_spares *s, int *listener)
{
    pthread_mutex_lock(&s->lock);
    char *name = NULL;
    *listener = -1;
    if (s->n > 0) {
        name = s->names[--s->n];
        *listener = s->listeners[s->n];
    }
    /* The maker makes the next one, if that leaves it something to do: a
     * wake-up of a thread on the other CPU that finds nothing to make is
     * a cost on every create (and it then contends for this lock). */
    if (s->n < s->ahead && s->n < s->max)
        pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return name;
}

int cb_sbdir_make(struct cb_sbdir_spares *s, const char *dir, int *listener)
{
    int l = -1;
    *listener = -1;
    _cleanup_free_ char *name = s ? pop_spare(s, &l) : NULL;
    if (name) {
        _cleanup_free_ char *path = cb_xasprintf("%s/%s", s->parent, name);
        /* RENAME_NOREPLACE: an existing sandbox of that id is never replaced. */
        /* Spares are 0700: a fresh one's skeleton belongs to the host's
         * uid 1000 until a create re-owns it (rootfs.c, base 0), and no
         * host user may plant anything in a future sandbox. In place, the
         * sandbox's root (an unprivileged host uid) must pass through. */
        if (renameat2(AT_FDCWD, path, AT_FDCWD, dir, RENAME_NOREPLACE) == 0) {
            if (chmod(dir, 0711) < 0) {
                int e = errno;
                if (l >= 0)
                    close(l);
                return -e;
            }
            *listener = l; /* bound at dir/init.sock now: the rename moved its name */
            return 0;
        }
        int e = errno;
        if (e == EEXIST) {
            pthread_mutex_lock(&s->lock);
            if (s->n < s->max) {
                s->listeners[s->n] = l;
                s->names[s->n++] = steal_ptr(name);
                l = -1;
            }
            pthread_mutex_unlock(&s->lock);
            if (l >= 0)
                close(l);
            if (name)
                cb_rootfs_remove_tree(path);
            return -EEXIST;
        }
        if (l >= 0)
            close(l);
        cb_rootfs_remove_tree(path);
    }
    return mkdir(dir, 0711) < 0 ? -errno : 0;
}

/* Rename dir to a new spare name under the lock (RENAME_NOREPLACE, a few
 * tries past names an older daemon left). 0 when kept. */
static int keep_spare(struct cb_sbdir_spares *s, const char *dir, int listener)
{
    int r = -ENOSPC;
    pthread_mutex_lock(&s->lock);
    for (int tries = 0; s->n < s->max && tries < 4 && r < 0; tries++) {
        char name[32];
        snprintf(name, sizeof name, CB_SBDIR_SPARE_PREFIX "%d-%u", (int)getpid(), s->seq++);
        _cleanup_free_ char *path = cb_xasprintf("%s/%s", s->parent, name);
        if (renameat2(AT_FDCWD, dir, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
            s->listeners[s->n] = listener;
            s->names[s->n++] = cb_xstrdup(name);
            r = 0;
        } else if (errno != EEXIST) {
            r = -errno;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

int cb_sbdir_retire(struct cb_sbdir_spares *s, const char *dir, int listener)
{
    /* Kept with its name only: a listener whose init.sock is gone (or is
     * no socket) would take connections no one can make. */
    _cleanup_free_ char *sock = cb_xasprintf("%s/" CB_SBDIR_SOCKET, dir);
    struct stat st;
    bool keep_sock = listener >= 0 && lstat(sock, &st) == 0 && S_ISSOCK(st.st_mode) &&
                     cb_sbdir_listener_reusable(listener) == 0;
    if (!keep_sock && listener >= 0) {
        close(listener);
        listener = -1;
    }
    if (s && s->max > 0 && clean_path(dir, keep_sock) == 0 && keep_spare(s, dir, listener) == 0)
        return 0;
    if (listener >= 0)
        close(listener);
    return cb_rootfs_remove_tree(dir);
}

int cb_sbdir_clean_image(int dirfd)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int r = fstat(fd, &st) < 0 ? -errno : 0;
    if (r == 0)
        r = clean_dir(fd, st.st_dev, image_kept, CB_ARRAY_SIZE(image_kept), 0);
    close(fd);
    return r;
}
