#include "quota.h"

#include <fcntl.h>
#include <pthread.h>
#include <linux/dqblk_xfs.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/quota.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/wait.h>

#ifndef SYS_quotactl_fd
#define SYS_quotactl_fd 443
#endif
#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

static int quotactl_dir(const char *dir, int cmd, uint32_t id, void *addr)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = (int)syscall(SYS_quotactl_fd, fd, cmd, id, addr);
    int e = errno;
    close(fd);
    return r < 0 ? -e : 0;
}

/* Is dir an XFS mount with project quota enforcement on? */
static bool has_project_quota(const char *dir)
{
    struct statfs sfs;
    if (statfs(dir, &sfs) < 0 || sfs.f_type != XFS_SUPER_MAGIC)
        return false;
    struct fs_quota_stat qs;
    memset(&qs, 0, sizeof qs);
    if (quotactl_dir(dir, QCMD(Q_XGETQSTAT, PRJQUOTA), 0, &qs) < 0)
        return false;
    return (qs.qs_flags & FS_QUOTA_PDQ_ENFD) != 0;
}

/* Run a mkfs quietly: argv[0] is its usual absolute path; if that is
 * missing, the same program name is looked up in PATH. */
static int run_mkfs_argv(char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execv(argv[0], argv);
        const char *name = strrchr(argv[0], '/');
        execvp(name ? name + 1 : argv[0], argv);
        _exit(127);
    }
    int status;
    if (CB_RETRY(waitpid(pid, &status, 0)) < 0)
        return -errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

static int run_mkfs(const char *image)
{
    char *const argv[] = {"/usr/sbin/mkfs.xfs", "-q", "-f", (char *)image, NULL};
    return run_mkfs_argv(argv);
}

/* LOOP_CTL_GET_FREE hands the same free device to every thread that asks
 * before one of them configures it, and two threads would also race on the
 * private node below: the daemon's workers attach one at a time. Other
 * processes of the host may still take "our" device: that is the EBUSY
 * retry. */
static pthread_mutex_t attach_lock = PTHREAD_MUTEX_INITIALIZER;

static int attach_loop_locked(const char *state_dir, int image_fd, char *dev, size_t devsize);

/* Attach image to a free loop device that detaches itself on unmount. */
static int attach_loop(const char *state_dir, int image_fd, char *dev, size_t devsize)
{
    pthread_mutex_lock(&attach_lock);
    int r = attach_loop_locked(state_dir, image_fd, dev, devsize);
    pthread_mutex_unlock(&attach_lock);
    return r;
}

static int attach_loop_locked(const char *state_dir, int image_fd, char *dev, size_t devsize)
{
    _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return -errno;
    for (int attempt = 0; attempt < 64; attempt++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0)
            return -errno;
        snprintf(dev, devsize, "/dev/loop%d", n);
        int lfd = open(dev, O_RDWR | O_CLOEXEC);
        if (lfd < 0 && errno == ENOENT) {
            /* The kernel made the device but this /dev (a container's) has
             * no node for it: make a private node in our state dir. */
            snprintf(dev, devsize, "%s/.loop%d", state_dir, n);
            unlink(dev);
            if (mknod(dev, S_IFBLK | 0600, makedev(7, n)) < 0)
                return -errno;
            lfd = open(dev, O_RDWR | O_CLOEXEC);
        }
        if (lfd < 0)
            return -errno;
        struct loop_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.fd = (unsigned)image_fd;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
            return lfd;
        int e = errno;
        close(lfd);
        if (e != EBUSY)
            return -e;
    }
    return -EBUSY;
}

static int mount_volume(const char *state_dir, const char *volume, uint64_t bytes,
                        char **reason)
{
    _cleanup_free_ char *image = cb_xasprintf("%s/volume.img", state_dir);
    struct stat st;
    bool fresh = stat(image, &st) < 0;
    if (fresh) {
        _cleanup_close_ int fd = open(image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0) {
            *reason = cb_xasprintf("create volume image: %s", strerror(errno));
            return -1;
        }
        int r = run_mkfs(image);
        if (r < 0) {
            unlink(image);
            *reason = cb_xasprintf("mkfs.xfs failed: %s", strerror(-r));
            return -1;
        }
    }
    _cleanup_close_ int img = open(image, O_RDWR | O_CLOEXEC);
    if (img < 0) {
        *reason = cb_xasprintf("open volume image: %s", strerror(errno));
        return -1;
    }
    char dev[4096];
    int lfd = attach_loop(state_dir, img, dev, sizeof dev);
    if (lfd < 0) {
        *reason = cb_xasprintf("loop device: %s", strerror(-lfd));
        return -1;
    }
    int r = mount(dev, volume, "xfs", MS_NOSUID | MS_NODEV, "prjquota");
    int e = errno;
    close(lfd); /* autoclear: the mount holds the device now */
    if (strncmp(dev, "/dev/", 5) != 0)
        unlink(dev);
    if (r < 0) {
        /* EINVAL with prjquota: a kernel built without XFS quota support. */
        *reason = cb_xasprintf("mount quota volume with prjquota: %s%s", strerror(e),
                               e == EINVAL ? " (kernel without XFS quota support?)" : "");
        if (fresh)
            unlink(image);
        return -1;
    }
    return 0;
}

static void cb_quota_open_xfs(struct cb_quota *q, const char *state_dir, uint64_t volume_bytes,
                              bool disabled);

/* Can this host give each sandbox its own ext4 image? Checked once. */
static bool images_possible(char **reason)
{
    FILE *f = fopen("/proc/filesystems", "re");
    bool ext4 = false;
    char line[128];
    while (f && fgets(line, sizeof line, f))
        ext4 = ext4 || strstr(line, "\text4\n") != NULL;
    if (f)
        fclose(f);
    const char *why = !ext4 ? "kernel has no ext4"
                      : access("/dev/loop-control", R_OK | W_OK) < 0 ? "no /dev/loop-control"
                      : access("/usr/sbin/mkfs.ext4", X_OK) < 0 ? "mkfs.ext4 not installed (e2fsprogs)"
                                                                : NULL;
    if (why)
        *reason = cb_xstrdup(why);
    return why == NULL;
}

static void open_fallback(struct cb_quota *q)
{
    char *why = NULL;
    if (images_possible(&why)) {
        q->images = true;
        return;
    }
    char *old = q->reason;
    q->reason = cb_xasprintf("%s; per-sandbox disk images unavailable too: %s",
                             old ? old : "no project quota", why);
    free(old);
    free(why);
}

void cb_quota_open(struct cb_quota *q, const char *state_dir, uint64_t volume_bytes,
                   bool disabled)
{
    cb_quota_open_xfs(q, state_dir, volume_bytes, disabled);
    if (!q->enabled && !disabled)
        open_fallback(q);
}

static void cb_quota_open_xfs(struct cb_quota *q, const char *state_dir, uint64_t volume_bytes,
                              bool disabled)
{
    memset(q, 0, sizeof *q);
    q->state_dir = cb_xstrdup(state_dir);
    q->volume_dir = cb_xasprintf("%s/volume", state_dir);
    if (mkdir(q->volume_dir, 0711) < 0 && errno != EEXIST) {
        q->reason = cb_xasprintf("mkdir volume: %s", strerror(errno));
        return;
    }
    if (disabled) {
        q->reason = cb_xstrdup("disabled by configuration");
        return;
    }
    if (has_project_quota(q->volume_dir)) { /* state_dir on XFS, or a restart */
        q->enabled = true;
        return;
    }
    if (mount_volume(state_dir, q->volume_dir, volume_bytes ? volume_bytes
                                                           : CB_QUOTA_DEFAULT_VOLUME,
                     &q->reason) < 0)
        return;
    chmod(q->volume_dir, 0711); /* sandbox roots must traverse it */
    if (!has_project_quota(q->volume_dir)) {
        q->reason = cb_xstrdup("volume mounted without project quota enforcement");
        return;
    }
    q->enabled = true;
}

void cb_quota_clear(struct cb_quota *q)
{
    free(q->state_dir);
    free(q->volume_dir);
    free(q->reason);
    memset(q, 0, sizeof *q);
}

int cb_quota_set(struct cb_quota *q, const char *dir, uint32_t project,
                 uint64_t bytes, struct cb_error **err)
{
    if (!q->enabled)
        return 0;
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "open sandbox volume dir");
    struct fsxattr fsx;
    if (ioctl(fd, FS_IOC_FSGETXATTR, &fsx) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "get project id");
    /* PROJINHERIT: everything created below inherits the project, so the
     * whole layer counts against the sandbox's limit. */
    fsx.fsx_projid = project;
    fsx.fsx_xflags |= FS_XFLAG_PROJINHERIT;
    if (ioctl(fd, FS_IOC_FSSETXATTR, &fsx) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "set project id");
    struct fs_disk_quota dq;
    memset(&dq, 0, sizeof dq);
    dq.d_version = FS_DQUOT_VERSION;
    dq.d_id = project;
    dq.d_flags = FS_PROJ_QUOTA;
    dq.d_fieldmask = FS_DQ_BSOFT | FS_DQ_BHARD | FS_DQ_ISOFT | FS_DQ_IHARD;
    dq.d_blk_hardlimit = dq.d_blk_softlimit = bytes / 512;
    uint64_t inodes = bytes ? bytes / 1024 : 0;
    dq.d_ino_hardlimit = dq.d_ino_softlimit = inodes && inodes < 4096 ? 4096 : inodes;
    int r = quotactl_dir(q->volume_dir, QCMD(Q_XSETQLIM, PRJQUOTA), project, &dq);
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "set disk quota");
    return 0;
}

int64_t cb_quota_used(struct cb_quota *q, uint32_t project)
{
    if (!q->enabled)
        return -1;
    struct fs_disk_quota dq;
    memset(&dq, 0, sizeof dq);
    if (quotactl_dir(q->volume_dir, QCMD(Q_XGETQUOTA, PRJQUOTA), project, &dq) < 0)
        return -1;
    return (int64_t)dq.d_bcount * 512;
}

/* ---- per-sandbox images ---- */

static int format_image(const char *image, uint64_t bytes)
{
    _cleanup_close_ int fd = open(image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0)
        return -errno;
    /* No journal: 8 ms to make instead of 23 ms, and nothing in a sandbox's
     * upper layer is fsynced by us anyway (after a host crash every sandbox
     * is stopped and its image is checked by the kernel on mount). -m 0: no
     * blocks reserved for root, the limit is the limit. Lazy init and no
     * discard keep the sparse file sparse. */
    char *const argv[] = {"/usr/sbin/mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
                          "-E", "lazy_itable_init=1,nodiscard", (char *)image, NULL};
    return run_mkfs_argv(argv);
}

/* Mount <dir>/disk.img at <dir>/disk unless something is mounted there. */
int cb_quota_image_mount(struct cb_quota *q, const char *dir, struct cb_error **err)
{
    _cleanup_free_ char *image = cb_xasprintf("%s/disk.img", dir);
    _cleanup_free_ char *mnt = cb_xasprintf("%s/" CB_QUOTA_IMAGE_DIR, dir);
    if (cb_quota_image_used(mnt) >= 0)
        return 0; /* already mounted (a restart of a stopped sandbox) */
    _cleanup_close_ int img = open(image, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (img < 0 || (mkdir(mnt, 0711) < 0 && errno != EEXIST))
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "disk image %s", image);
    char dev[4096];
    int lfd = attach_loop(q->state_dir, img, dev, sizeof dev);
    if (lfd < 0)
        return cb_error_set(err, -lfd, CB_ERR_INTERNAL, "loop device for disk image");
    /* nosuid/nodev: a file the sandbox plants there means nothing to the
     * host even though the mount is in the host's namespace. */
    int r = mount(dev, mnt, "ext4", MS_NOSUID | MS_NODEV | MS_NOATIME, "errors=remount-ro");
    int e = errno;
    close(lfd); /* autoclear: the mount holds the device now */
    if (strncmp(dev, "/dev/", 5) != 0)
        unlink(dev);
    if (r < 0)
        return cb_error_set(err, e, CB_ERR_INTERNAL, "mount disk image");
    chmod(mnt, 0711); /* the sandbox's root (an unprivileged uid) traverses it */
    return 0;
}

int cb_quota_image_create(struct cb_quota *q, const char *dir, uint64_t bytes,
                          struct cb_error **err)
{
    if (!q->images)
        return cb_error_set(err, ENOTSUP, CB_ERR_INTERNAL, "disk images unavailable");
    if (bytes < (8ull << 20))
        bytes = 8ull << 20; /* ext4's metadata needs a few MiB */
    _cleanup_free_ char *image = cb_xasprintf("%s/disk.img", dir);
    int r = format_image(image, bytes);
    if (r < 0) {
        unlink(image);
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "format disk image");
    }
    if (cb_quota_image_mount(q, dir, err) < 0) {
        unlink(image);
        return -1;
    }
    return 0;
}

int cb_quota_image_remove(const char *dir)
{
    _cleanup_free_ char *image = cb_xasprintf("%s/disk.img", dir);
    _cleanup_free_ char *mnt = cb_xasprintf("%s/" CB_QUOTA_IMAGE_DIR, dir);
    int r = 0;
    /* MNT_DETACH: a sandbox being set up at this moment may still hold a
     * copy of the host's mounts; the loop device goes when the last does. */
    if (umount2(mnt, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 && errno != EINVAL && errno != ENOENT)
        r = -errno;
    if (unlink(image) < 0 && errno != ENOENT && r == 0)
        r = -errno;
    return r;
}

int64_t cb_quota_image_used(const char *mnt)
{
    struct statfs sfs;
    if (statfs(mnt, &sfs) < 0 || sfs.f_type != EXT4_SUPER_MAGIC)
        return -1;
    return (int64_t)(sfs.f_blocks - sfs.f_bfree) * (int64_t)sfs.f_bsize;
}
