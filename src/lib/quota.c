#include "quota.h"

#include <dirent.h>
#include <endian.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
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
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <sys/wait.h>

#include "sbdir.h"
#include "thread.h"

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

/* Loop devices read and write their image with direct I/O: without it
 * every block of a sandbox's file system sits in the page cache twice
 * (the loop device's and the image file's on the host) and each write is
 * copied once more, by the loop worker, into the host's page cache, from
 * where the host's writeback writes it again. CB_LOOP_DIRECT_IO=0: the
 * buffered behaviour (comparisons; an escape hatch). */
static bool loop_direct_io(void)
{
    const char *env = getenv("CB_LOOP_DIRECT_IO");
    return !env || strcmp(env, "0") != 0;
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
        if (lfd < 0 && (errno == ENXIO || errno == ENODEV))
            continue; /* removed meanwhile by someone else: ask again */
        if (lfd < 0)
            return -errno;
        struct loop_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.fd = (unsigned)image_fd;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (loop_direct_io() ? LO_FLAGS_DIRECT_IO : 0);
        int r = ioctl(lfd, LOOP_CONFIGURE, &cfg);
        if (r < 0 && errno == EINVAL && (cfg.info.lo_flags & LO_FLAGS_DIRECT_IO)) {
            /* a backing file system without direct I/O (older kernels
             * refuse instead of falling back): buffered, as before */
            cfg.info.lo_flags &= ~(uint32_t)LO_FLAGS_DIRECT_IO;
            r = ioctl(lfd, LOOP_CONFIGURE, &cfg);
        }
        if (r == 0)
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
        /* Operators (and the tests of that path) can ask for the older
         * host-namespace mounts; see quota.h. */
        const char *hm = getenv("CB_DISK_HOST_MOUNT");
        q->host_mounts = hm && strcmp(hm, "1") == 0;
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

static void spares_close(struct cb_quota *q);

void cb_quota_clear(struct cb_quota *q)
{
    spares_close(q);
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

/* ---- per-sandbox images ----
 *
 * Making an image is a copy of a "golden" image formatted once per size
 * (state_dir/images/golden-<MiB>.img), not a mkfs per sandbox: mkfs.ext4's
 * fork+exec and its writes were ~8 ms of every create. A fresh ext4 holds
 * only a few MiB of data (superblocks, group descriptors, bitmaps, the root
 * directory); the copy is a reflink where the state file system has them,
 * else a copy of just the data extents into a sparse file of full size.
 *
 * Every copy carries the golden image's ext4 UUID. We rely on ext4 not
 * caring: the kernel mounts file systems with equal UUIDs side by side (the
 * UUID seeds metadata checksums, which are per image anyway), nothing in
 * cellbox looks an image up by UUID, and the images are never in fstab.
 * Only udev's /dev/disk/by-uuid link (when udev runs) points at one of them,
 * which no one uses. */

#define GOLDEN_DIR "images"
#define EXT4_MAGIC_OFFSET 1080 /* superblock at 1024, s_magic at +56 */
#define EXT4_COMPAT_OFFSET 1116 /* s_feature_compat at +0x5C */
#define EXT4_COMPAT_RESIZE_INODE 0x0010u

static int format_image(const char *image, uint64_t bytes)
{
    _cleanup_close_ int fd = open(image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0)
        return -errno;
    /* No journal: 8 ms to make instead of 23 ms, and nothing in a sandbox's
     * upper layer is fsynced by us anyway (after a host crash every sandbox
     * is stopped and its image is checked by the kernel on mount). -m 0: no
     * blocks reserved for root, the limit is the limit. Lazy init and no
     * discard keep the sparse file sparse. No resize_inode: its reserved
     * group-descriptor blocks (1 MiB of zeros for 2 GiB) were ~90% of the
     * 1.1 MiB every copy wrote (76 KiB without), and LOOP_CONFIGURE fsyncs
     * the backing file (6.x kernels), so each attach paid for writing them
     * to the disk (3.4 -> 0.9 ms measured); a sandbox's image is never
     * grown online, which is all they serve. */
    char *const argv[] = {"/usr/sbin/mkfs.ext4", "-q", "-F", "-m", "0",
                          "-O", "^has_journal,^resize_inode",
                          "-E", "lazy_itable_init=1,nodiscard", (char *)image, NULL};
    int r = run_mkfs_argv(argv);
    /* The golden image is the source of every later copy: it must be whole
     * on disk before the rename publishes it. */
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    return r;
}

/* Is fd a whole ext4 image of exactly bytes, in the current layout (no
 * resize_inode; goldens an older cellbox made are made again)? A crash
 * can only leave a temporary file, but an operator may truncate or
 * overwrite the golden. */
static bool golden_ok(int fd, uint64_t bytes)
{
    struct stat st;
    uint16_t magic = 0;
    uint32_t compat = htole32(EXT4_COMPAT_RESIZE_INODE); /* ext4 is little-endian */
    return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size == bytes &&
           pread(fd, &magic, sizeof magic, EXT4_MAGIC_OFFSET) == (ssize_t)sizeof magic &&
           magic == 0xEF53 &&
           pread(fd, &compat, sizeof compat, EXT4_COMPAT_OFFSET) == (ssize_t)sizeof compat &&
           !(le32toh(compat) & EXT4_COMPAT_RESIZE_INODE);
}

/* One formatter at a time: two threads asking for the same new size would
 * otherwise both run mkfs (harmless thanks to the rename, but wasted). */
static pthread_mutex_t golden_lock = PTHREAD_MUTEX_INITIALIZER;

static int make_golden(struct cb_quota *q, const char *path, uint64_t bytes)
{
    _cleanup_free_ char *dir = cb_xasprintf("%s/" GOLDEN_DIR, q->state_dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return -errno;
    _cleanup_free_ char *tmp = cb_xasprintf("%s.tmp.%d", path, (int)gettid());
    unlink(tmp);
    int r = format_image(tmp, bytes);
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        unlink(tmp);
    return r;
}

/* Open (making it first if missing or damaged) the golden image of bytes.
 * Returns an O_RDONLY fd or -errno. */
static int open_golden(struct cb_quota *q, uint64_t bytes)
{
    _cleanup_free_ char *path = cb_xasprintf("%s/" GOLDEN_DIR "/golden-%" PRIu64 ".img",
                                             q->state_dir, bytes >> 20);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd >= 0 && golden_ok(fd, bytes))
        return fd;
    if (fd >= 0)
        close(fd);
    pthread_mutex_lock(&golden_lock);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW); /* another thread made it? */
    if (fd < 0 || !golden_ok(fd, bytes)) {
        if (fd >= 0)
            close(fd);
        int r = make_golden(q, path, bytes);
        fd = r < 0 ? r : open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd == -1)
            fd = -errno;
    }
    pthread_mutex_unlock(&golden_lock);
    return fd;
}

static int copy_range(int in, int out, off_t from, off_t to)
{
    while (from < to) {
        loff_t off_in = from, off_out = from;
        ssize_t n = copy_file_range(in, &off_in, out, &off_out, (size_t)(to - from), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        from += n;
    }
    return 0;
}

/* out := in, keeping holes. FICLONE shares every block (btrfs, XFS with
 * reflink); elsewhere only the data extents are copied into a file
 * ftruncate'd to the full size, so the copy is as sparse as the golden. */
static int copy_sparse(int in, int out, uint64_t bytes)
{
    if (ioctl(out, FICLONE, in) == 0)
        return 0;
    if (ftruncate(out, (off_t)bytes) < 0)
        return -errno;
    off_t off = 0;
    for (;;) {
        off_t data = lseek(in, off, SEEK_DATA);
        if (data < 0)
            return errno == ENXIO ? 0 : -errno; /* ENXIO: no data after off */
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            return -errno;
        int r = copy_range(in, out, data, hole);
        if (r < 0)
            return r;
        off = hole;
    }
}

static int copy_golden(struct cb_quota *q, const char *image, uint64_t bytes)
{
    _cleanup_close_ int golden = open_golden(q, bytes);
    if (golden < 0)
        return golden;
    _cleanup_close_ int fd = open(image, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    return copy_sparse(golden, fd, bytes);
}

/* Is the image still open elsewhere, i.e. attached to a loop device that
 * has not been released yet (the mount namespace of a stopped sandbox is
 * torn down after its init is reaped)? Two ext4 superblocks on one image
 * would corrupt it, so attaching waits for this to clear. A write lease is
 * granted only when no other open file description of the inode exists;
 * a loop device holds one. -EINVAL (leases disabled on this host): we
 * cannot tell and go ahead, as the host-mount path always did. */
static int image_busy(int fd)
{
    if (fcntl(fd, F_SETLEASE, F_WRLCK) == 0) {
        fcntl(fd, F_SETLEASE, F_UNLCK);
        return 0;
    }
    return errno == EAGAIN || errno == EBUSY ? 1 : 0;
}

static int wait_image_free(int fd)
{
    for (int waited_ms = 0; image_busy(fd); waited_ms++) {
        if (waited_ms >= 5000)
            return -EBUSY;
        usleep(1000);
    }
    return 0;
}

/* Mount dev (ext4) as a detached mount: a mount fd attached to no mount
 * namespace until someone move_mount()s it. nosuid/nodev: a file the
 * sandbox plants there means nothing wherever the mount ends up.
 * noinit_itable: the kernel's lazyinit thread would otherwise zero every
 * inode table in the background, un-sparsing the image (32 MiB per 2 GiB)
 * for nothing; uninitialized groups are flagged as such in the image.
 * nobarrier: the file system never asks its device for a cache flush.
 * Each flush of a loop device is an fsync of the image file on the host,
 * and with it a flush of the host disk's cache: one at every sandbox
 * teardown (overlay syncs its upper when unmounted: a destroy waited on
 * the host disk for data about to be thrown away), and one per fsync a
 * tenant makes, so a sandbox looping on fsync kept the host's disk
 * flushing for everyone. Data still reaches the image file at once (the
 * loop device writes with direct I/O) and ordinary writeback persists it;
 * what a tenant's fsync no longer promises is survival of a host power
 * loss (as with Firecracker's default "Unsafe" block cache: docs/
 * operations.md). --durable-disks (durable) keeps the flushes. */
static int mount_detached(const char *dev, bool durable)
{
    _cleanup_close_ int fs = fsopen("ext4", FSOPEN_CLOEXEC);
    if (fs < 0)
        return -errno;
    if (fsconfig(fs, FSCONFIG_SET_STRING, "source", dev, 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "errors", "remount-ro", 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_FLAG, "noinit_itable", NULL, 0) < 0 ||
        (!durable && fsconfig(fs, FSCONFIG_SET_FLAG, "nobarrier", NULL, 0) < 0) ||
        fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return -errno;
    int mfd = fsmount(fs, FSMOUNT_CLOEXEC,
                      MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOATIME);
    return mfd < 0 ? -errno : mfd;
}

/* LOOP_CTL_GET_FREE creates loop devices on demand and the kernel never
 * removes them: each idle one keeps ~220 KiB of kernel memory (measured
 * here: the 10,000 left behind by a 10,000-sandbox peak held 2.2 GiB). So
 * the number of the device a sandbox's image was attached to is kept in
 * <dir>/disk.loop, and once the sandbox is done with it the device is
 * retired: kept for re-use while it is among the newest few, else removed
 * (below). The kernel refuses (EBUSY) to remove a device that is bound or
 * open, so one that someone else has taken meanwhile stays. The devices
 * the host made at boot (loop0 .. max_loop-1) are the host's and stay. */
#define LOOP_RECORD "disk.loop"

static long boot_loop_devices(void)
{
    _cleanup_free_ char *text = NULL;
    if (cb_read_file_at(AT_FDCWD, "/sys/module/loop/parameters/max_loop", 32, &text, NULL) < 0)
        return 8; /* CONFIG_BLK_DEV_LOOP_MIN_COUNT's usual value */
    long n = strtol(text, NULL, 10);
    return n > 0 ? n : 8;
}

static void remember_loop(const char *dir, const char *dev)
{
    const char *digits = strrchr(dev, 'p'); /* /dev/loopN or <state>/.loopN */
    if (!digits || !digits[1])
        return;
    _cleanup_free_ char *path = cb_xasprintf("%s/" LOOP_RECORD, dir);
    cb_write_file_at(AT_FDCWD, path, digits + 1, strlen(digits + 1), 0600, 0);
}

/* Retired devices: the ones our sandboxes' images used, oldest first.
 *
 * Removing a device is slow (LOOP_CTL_REMOVE's del_gendisk waits for RCU
 * grace periods: 40-56 ms each measured here), and a new sandbox needs a
 * device again a moment later: LOOP_CTL_GET_FREE hands out the lowest
 * unbound one, so an idle device kept is a device re-used, and one removed
 * is one the kernel must make again (add_disk, uevents). So the newest
 * LOOP_RESERVE retired devices stay for re-use (CB_LOOP_RESERVE=N in the
 * environment; ~220 KiB of kernel memory each when idle) and only older
 * ones are removed, by one thread of ours, never by a teardown and never
 * under attach_lock: the kernel itself keeps a device being removed out
 * of GET_FREE's hands, and an attach that finds its device gone asks
 * again (attach_loop_locked). A device still bound (its image not yet let
 * go by autoclear, 2-90 ms after the last unmount, or taken again by a new
 * sandbox) is retried for up to 10 s, then left to whoever holds it: a
 * sandbox of ours retires it again when it is done. */
#define LOOP_RESERVE_DEFAULT 16
#define LOOP_REMOVE_GIVE_UP_NS (10ull * 1000 * 1000 * 1000)
static struct {
    pthread_mutex_t lock;
    long *dev;
    uint64_t *since;
    int n, cap;
    bool running;
} retired = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int loop_reserve(void)
{
    const char *env = getenv("CB_LOOP_RESERVE");
    int n = env ? atoi(env) : LOOP_RESERVE_DEFAULT;
    return n < 0 ? 0 : n;
}

/* 0 when gone (removed, or no such device), else -errno (-EBUSY: bound
 * or open). */
static int remove_loop(long n)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return -errno;
    int r = ioctl(ctl, LOOP_CTL_REMOVE, (int)n) < 0 ? -errno : 0;
    close(ctl);
    return r == -ENODEV || r == -ENXIO ? 0 : r;
}

/* retired.lock held. */
static int retired_find(long n)
{
    for (int i = 0; i < retired.n; i++)
        if (retired.dev[i] == n)
            return i;
    return -1;
}

/* retired.lock held. */
static void retired_drop(int i)
{
    memmove(retired.dev + i, retired.dev + i + 1, (size_t)(retired.n - i - 1) * sizeof *retired.dev);
    memmove(retired.since + i, retired.since + i + 1,
            (size_t)(retired.n - i - 1) * sizeof *retired.since);
    retired.n--;
}

/* retired.lock held. */
static void retired_push(long n, uint64_t since)
{
    if (retired.n == retired.cap) {
        int cap = retired.cap ? retired.cap * 2 : 64;
        long *dev = realloc(retired.dev, (size_t)cap * sizeof *dev);
        uint64_t *sn = dev ? realloc(retired.since, (size_t)cap * sizeof *sn) : NULL;
        if (dev)
            retired.dev = dev;
        if (!dev || !sn)
            return; /* the device stays (kernel memory only) */
        retired.since = sn;
        retired.cap = cap;
    }
    retired.dev[retired.n] = n;
    retired.since[retired.n++] = since;
}

static void *loop_remover(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "cb-loop-rm");
    pthread_mutex_lock(&retired.lock);
    int busy = 0; /* bound devices in a row: a whole pass of them waits a little */
    while (retired.n > loop_reserve()) {
        long n = retired.dev[0];
        uint64_t since = retired.since[0];
        retired_drop(0);
        pthread_mutex_unlock(&retired.lock);
        bool keep = remove_loop(n) == -EBUSY && cb_now_ns() - since < LOOP_REMOVE_GIVE_UP_NS;
        pthread_mutex_lock(&retired.lock);
        /* Still bound: back at the end (with its first retirement's time),
         * unless a sandbox retired it again meanwhile. */
        if (keep && retired_find(n) < 0)
            retired_push(n, since);
        busy = keep ? busy + 1 : 0;
        if (busy >= retired.n) {
            pthread_mutex_unlock(&retired.lock);
            usleep(10000);
            pthread_mutex_lock(&retired.lock);
            busy = 0;
        }
    }
    retired.running = false;
    pthread_mutex_unlock(&retired.lock);
    return NULL;
}

/* A sandbox is done with device n: keep it for re-use, and let the remover
 * remove what is beyond the reserve. */
static void retire_loop(long n)
{
    pthread_mutex_lock(&retired.lock);
    int i = retired_find(n);
    if (i >= 0)
        retired_drop(i);
    retired_push(n, cb_now_ns()); /* newest last */
    if (retired.n > loop_reserve() && !retired.running) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* A failed start leaves the entries to the next retirement. */
        retired.running = pthread_create(&t, &attr, loop_remover, NULL) == 0;
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&retired.lock);
}

/* Retire the loop device recorded for dir (above) and empty the record. */
static void forget_loop(const char *dir)
{
    _cleanup_free_ char *path = cb_xasprintf("%s/" LOOP_RECORD, dir);
    _cleanup_free_ char *text = NULL;
    if (cb_read_file_at(AT_FDCWD, path, 32, &text, NULL) < 0)
        return;
    char *end;
    long n = strtol(text, &end, 10);
    if (end != text && n >= boot_loop_devices() && n < (1 << 20))
        retire_loop(n);
    /* Emptied, not unlinked: the record's inode serves the next start and,
     * when the directory is recycled (sbdir.h), the next sandbox. An empty
     * record names no device. A failure leaves the number, which names a
     * device already removed (or one the host kept): harmless. */
    if (truncate(path, 0) < 0 && errno != ENOENT)
        unlink(path);
}

int cb_quota_image_open(struct cb_quota *q, const char *dir, struct cb_error **err)
{
    _cleanup_free_ char *image = cb_xasprintf("%s/disk.img", dir);
    _cleanup_close_ int img = open(image, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (img < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "disk image %s", image);
    int r = wait_image_free(img);
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "disk image still in use");
    forget_loop(dir); /* the device of this image's previous start */
    char dev[4096];
    int lfd = attach_loop(q->state_dir, img, dev, sizeof dev);
    if (lfd < 0)
        return cb_error_set(err, -lfd, CB_ERR_INTERNAL, "loop device for disk image");
    remember_loop(dir, dev);
    int mfd = mount_detached(dev, q->durable);
    close(lfd); /* autoclear: the mount holds the device now */
    if (strncmp(dev, "/dev/", 5) != 0)
        unlink(dev);
    if (mfd < 0)
        return cb_error_set(err, -mfd, CB_ERR_INTERNAL, "mount disk image");
    return mfd;
}

/* Is something mounted at mnt (its own device, unlike its parent)? */
static bool is_mount_point(const char *dir, const char *mnt)
{
    struct stat a, b;
    return stat(dir, &a) == 0 && lstat(mnt, &b) == 0 && S_ISDIR(b.st_mode) && a.st_dev != b.st_dev;
}

bool cb_quota_image_host_mounted(const char *dir)
{
    _cleanup_free_ char *mnt = cb_xasprintf("%s/" CB_QUOTA_IMAGE_DIR, dir);
    return is_mount_point(dir, mnt);
}

int cb_quota_image_mount(struct cb_quota *q, const char *dir, struct cb_error **err)
{
    _cleanup_free_ char *mnt = cb_xasprintf("%s/" CB_QUOTA_IMAGE_DIR, dir);
    if (is_mount_point(dir, mnt))
        return 0; /* already mounted (a restart of a stopped sandbox) */
    if (mkdir(mnt, 0711) < 0 && errno != EEXIST)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "disk mount point");
    _cleanup_close_ int mfd = cb_quota_image_open(q, dir, err);
    if (mfd < 0)
        return -1;
    if (move_mount(mfd, "", AT_FDCWD, mnt, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "mount disk image");
    return 0;
}

/* The size an image of bytes really gets. */
static uint64_t image_bytes(uint64_t bytes)
{
    if (bytes < (8ull << 20))
        bytes = 8ull << 20; /* ext4's metadata needs a few MiB */
    return bytes & ~((1ull << 20) - 1); /* whole MiB: one golden image per size */
}

int cb_quota_image_create(struct cb_quota *q, const char *dir, uint64_t bytes,
                          struct cb_error **err)
{
    if (!q->images)
        return cb_error_set(err, ENOTSUP, CB_ERR_INTERNAL, "disk images unavailable");
    bytes = image_bytes(bytes);
    _cleanup_free_ char *image = cb_xasprintf("%s/disk.img", dir);
    _cleanup_free_ char *mnt = cb_xasprintf("%s/" CB_QUOTA_IMAGE_DIR, dir);
    int r = copy_golden(q, image, bytes);
    if (r == 0 && mkdir(mnt, 0711) < 0 && errno != EEXIST)
        r = -errno;
    if (r < 0) {
        unlink(image);
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "make disk image");
    }
    return 0;
}

int cb_quota_image_remove(const char *dir)
{
    _cleanup_free_ char *image = cb_xasprintf("%s/disk.img", dir);
    _cleanup_free_ char *mnt = cb_xasprintf("%s/" CB_QUOTA_IMAGE_DIR, dir);
    int r = 0;
    /* Only a host-namespace mount (fallback or older layout) needs this;
     * a detached-then-moved one died with the sandbox's mount namespace.
     * MNT_DETACH: a sandbox being set up at this moment may still hold a
     * copy of the host's mounts; the loop device goes when the last does. */
    if (is_mount_point(dir, mnt) && umount2(mnt, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
        r = -errno;
    /* The loop device of a just-killed sandbox may still hold the image
     * for a moment: its removal waits for that in the background
     * (forget_loop). Unlinking is fine meanwhile: the inode goes when the
     * device lets go. */
    forget_loop(dir);
    if (unlink(image) < 0 && errno != ENOENT && r == 0)
        r = -errno;
    return r;
}

int64_t cb_quota_image_used_fd(int fd)
{
    struct statfs sfs;
    if (fstatfs(fd, &sfs) < 0)
        return -1;
    return (int64_t)(sfs.f_blocks - sfs.f_bfree) * (int64_t)sfs.f_bsize;
}

int64_t cb_quota_image_used(const char *dir)
{
    _cleanup_free_ char *mnt = cb_xasprintf("%s/" CB_QUOTA_IMAGE_DIR, dir);
    if (is_mount_point(dir, mnt)) {
        struct statfs sfs;
        if (statfs(mnt, &sfs) < 0 || sfs.f_type != EXT4_SUPER_MAGIC)
            return -1;
        return (int64_t)(sfs.f_blocks - sfs.f_bfree) * (int64_t)sfs.f_bsize;
    }
    /* Not mounted here (a stopped sandbox): what the image occupies on the
     * host, a few MiB of ext4 metadata more than its files. */
    _cleanup_free_ char *image = cb_xasprintf("%s/disk.img", dir);
    struct stat st;
    return stat(image, &st) < 0 ? -1 : (int64_t)st.st_blocks * 512;
}

/* ---- images made ahead (quota.h cb_quota_image_take) ---- */

#define IMAGE_SPARES_DEFAULT 2
#define IMAGE_SPARES_MAX 8
#define SPARE_PREFIX ".spare-"

struct spare_image {
    char *path; /* state_dir/images/.spare-<pid>-<n>.img */
    char dev[64]; /* the loop device's number, for disk.loop */
    int mfd;      /* the detached ext4 mount */
    uint64_t bytes;
};

struct cb_image_spares {
    struct cb_quota *q;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct spare_image ready[IMAGE_SPARES_MAX];
    int n, max;
    uint64_t bytes; /* the size last asked for; 0: none yet, make nothing */
    unsigned seq;
    bool closing, broken;
    pthread_t thread;
};

static void spare_drop(struct spare_image *sp)
{
    close(sp->mfd); /* the mount goes, then autoclear lets go of the loop device */
    unlink(sp->path);
    free(sp->path);
    sp->path = NULL;
}

/* One image of bytes, attached and mounted (detached), under path. */
static int make_spare_image(struct cb_quota *q, const char *path, uint64_t bytes,
                            struct spare_image *sp)
{
    int r = copy_golden(q, path, bytes);
    _cleanup_close_ int img = r < 0 ? -1 : open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (r == 0 && img < 0)
        r = -errno;
    char dev[4096];
    int lfd = r < 0 ? r : attach_loop(q->state_dir, img, dev, sizeof dev);
    if (lfd < 0) {
        unlink(path);
        return lfd;
    }
    int mfd = mount_detached(dev, q->durable);
    close(lfd); /* autoclear: the mount holds the device now */
    if (strncmp(dev, "/dev/", 5) != 0)
        unlink(dev);
    if (mfd < 0) {
        unlink(path);
        return mfd;
    }
    const char *digits = strrchr(dev, 'p'); /* /dev/loopN or <state>/.loopN */
    snprintf(sp->dev, sizeof sp->dev, "/dev/loop%s", digits ? digits + 1 : "");
    sp->mfd = mfd;
    sp->bytes = bytes;
    sp->path = cb_xstrdup(path);
    return 0;
}

static void *image_maker(void *arg)
{
    struct cb_image_spares *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->closing) {
        if (s->broken || !s->bytes || s->n >= s->max || s->q->host_mounts) {
            pthread_cond_wait(&s->cond, &s->lock);
            continue;
        }
        uint64_t bytes = s->bytes;
        char *path = cb_xasprintf("%s/" GOLDEN_DIR "/" SPARE_PREFIX "%d-%u.img", s->q->state_dir,
                                  (int)getpid(), s->seq++);
        pthread_mutex_unlock(&s->lock);
        struct spare_image sp;
        int r = make_spare_image(s->q, path, bytes, &sp);
        free(path);
        pthread_mutex_lock(&s->lock);
        if (r < 0) {
            /* Creates make their own as before; not retried in a loop. */
            fprintf(stderr, "cellbox: cannot make disk images ahead of time (%s)\n", strerror(-r));
            s->broken = true;
        } else if (s->closing || sp.bytes != s->bytes || s->n >= s->max) {
            spare_drop(&sp);
        } else {
            s->ready[s->n++] = sp;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Spares of processes that are gone: their mounts went with them. */
static void remove_dead_spares(const char *state_dir)
{
    _cleanup_free_ char *dir = cb_xasprintf("%s/" GOLDEN_DIR, state_dir);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, SPARE_PREFIX, strlen(SPARE_PREFIX)) != 0)
            continue;
        long pid = strtol(de->d_name + strlen(SPARE_PREFIX), NULL, 10);
        if (pid > 0 && pid != getpid() && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue; /* a live process's */
        unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

void cb_quota_spares_open(struct cb_quota *q)
{
    const char *env = getenv("CB_IMAGE_SPARES");
    int max = env ? atoi(env) : IMAGE_SPARES_DEFAULT;
    if (!q->images || max <= 0)
        return;
    remove_dead_spares(q->state_dir);
    struct cb_image_spares *s = cb_xcalloc(1, sizeof *s);
    s->q = q;
    s->max = max > IMAGE_SPARES_MAX ? IMAGE_SPARES_MAX : max;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (cb_thread_start(&s->thread, "cb-images", image_maker, s) != 0) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s);
        return;
    }
    q->spares = s;
}

static void spares_close(struct cb_quota *q)
{
    struct cb_image_spares *s = q->spares;
    if (!s)
        return;
    cb_thread_stop(s->thread, &s->lock, &s->cond, &s->closing);
    for (int i = 0; i < s->n; i++)
        spare_drop(&s->ready[i]);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
    q->spares = NULL;
}

int cb_quota_image_take(struct cb_quota *q, const char *dir, uint64_t bytes)
{
    struct cb_image_spares *s = q->spares;
    if (!s || __atomic_load_n(&q->host_mounts, __ATOMIC_RELAXED))
        return -EAGAIN;
    bytes = image_bytes(bytes);
    struct spare_image sp = {.mfd = -1};
    pthread_mutex_lock(&s->lock);
    for (int i = s->n - 1; i >= 0; i--) { /* newest first: a recycled one is warm */
        if (s->ready[i].bytes == bytes) {
            sp = s->ready[i];
            memmove(&s->ready[i], &s->ready[i + 1], (size_t)(s->n - i - 1) * sizeof *s->ready);
            s->n--;
            break;
        }
    }
    if (s->bytes != bytes) { /* make this size from now on */
        s->bytes = bytes;
        for (int i = 0; i < s->n; i++)
            spare_drop(&s->ready[i]);
        s->n = 0;
    }
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    if (sp.mfd < 0)
        return -EAGAIN;
    _cleanup_free_ char *image = cb_xasprintf("%s/disk.img", dir);
    _cleanup_free_ char *mnt = cb_xasprintf("%s/" CB_QUOTA_IMAGE_DIR, dir);
    /* Same file system (the state dir): the loop device keeps its file. */
    bool moved = renameat2(AT_FDCWD, sp.path, AT_FDCWD, image, RENAME_NOREPLACE) == 0;
    if (!moved || (mkdir(mnt, 0711) < 0 && errno != EEXIST)) {
        int e = errno;
        if (moved)
            unlink(image); /* ours; an existing disk.img (EEXIST) is left alone */
        spare_drop(&sp);
        return -e;
    }
    free(sp.path);
    remember_loop(dir, sp.dev);
    return sp.mfd;
}

/* ---- images recycled (quota.h cb_quota_image_recycle) ---- */

/* Is dev (a loop device node) bound to the file img? */
static bool loop_backs(const char *dev, int img)
{
    struct stat st;
    struct loop_info64 info;
    _cleanup_close_ int lfd = open(dev, O_RDONLY | O_CLOEXEC);
    return lfd >= 0 && fstat(img, &st) == 0 && ioctl(lfd, LOOP_GET_STATUS64, &info) == 0 &&
           info.lo_inode == st.st_ino && info.lo_device == st.st_dev;
}

/* Above this many bytes of the image file on the host beyond what a fresh
 * copy holds, the freed blocks are given back (FITRIM: ext4 discards its
 * free space, the loop device punches those holes into the file). */
#define RECYCLE_TRIM_BYTES (16ull << 20)
/* Above this many inodes in use, emptying the image would cost more than
 * removing it (one unlink per file, in the teardown): a tenant that made
 * a million files gets its image removed, as before recycling. */
#define RECYCLE_MAX_INODES 4096

int cb_quota_image_recycle(struct cb_quota *q, const char *dir, int rootfd)
{
    struct cb_image_spares *s = q->spares;
    if (!s || __atomic_load_n(&q->host_mounts, __ATOMIC_RELAXED))
        return -EAGAIN;
    _cleanup_free_ char *image = cb_xasprintf("%s/disk.img", dir);
    _cleanup_free_ char *record = cb_xasprintf("%s/" LOOP_RECORD, dir);
    _cleanup_close_ int img = open(image, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (img < 0 || fstat(img, &st) < 0)
        return -errno;
    uint64_t bytes = (uint64_t)st.st_size;
    pthread_mutex_lock(&s->lock);
    /* Up to IMAGE_SPARES_MAX, beyond the maker's own number: a recycled
     * image is cheaper than any the maker could make, which then has
     * nothing to do while creates and destroys keep pace. */
    bool wanted = !s->closing && s->bytes == bytes && s->n < IMAGE_SPARES_MAX;
    pthread_mutex_unlock(&s->lock);
    if (!wanted)
        return -EAGAIN;
    /* The device the sandbox's image is on, still bound to this file: the
     * superblock is alive (rootfd holds it), so mounting the device again
     * gives a new mount of that same superblock, not a second one. */
    _cleanup_free_ char *text = NULL;
    if (cb_read_file_at(AT_FDCWD, record, 32, &text, NULL) < 0)
        return -ENOENT;
    char *end;
    long n = strtol(text, &end, 10);
    if (end == text || n < 0 || n >= (1 << 20))
        return -EINVAL;
    char dev[64];
    snprintf(dev, sizeof dev, "/dev/loop%ld", n);
    struct statfs sfs;
    if (!loop_backs(dev, img) || fstatfs(rootfd, &sfs) < 0 || sfs.f_type != EXT4_SUPER_MAGIC ||
        (sfs.f_flags & ST_RDONLY))
        return -EINVAL; /* gone read-only after an error, or not ours: not reused */
    if (sfs.f_files - sfs.f_ffree > RECYCLE_MAX_INODES)
        return -EFBIG;
    int r = cb_sbdir_clean_image(rootfd);
    if (r < 0)
        return r;
    _cleanup_close_ int golden = open_golden(q, bytes);
    struct stat gst;
    _cleanup_close_ int dirfd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (golden >= 0 && fstat(golden, &gst) == 0 && fstat(img, &st) == 0 && dirfd >= 0 &&
        (st.st_blocks - gst.st_blocks) * 512 > (blkcnt_t)RECYCLE_TRIM_BYTES) {
        struct fstrim_range range = {.start = 0, .len = UINT64_MAX, .minlen = 0};
        if (ioctl(dirfd, FITRIM, &range) < 0) {
            /* no discard here: the file keeps its size on the host */
        }
    }
    int mfd = mount_detached(dev, q->durable);
    if (mfd < 0)
        return mfd;
    struct stat a, b;
    if (fstat(mfd, &a) < 0 || fstat(rootfd, &b) < 0 || a.st_dev != b.st_dev) {
        close(mfd); /* a superblock of its own: never two on one image */
        return -EXDEV;
    }
    pthread_mutex_lock(&s->lock);
    struct spare_image sp = {.mfd = mfd, .bytes = bytes};
    snprintf(sp.dev, sizeof sp.dev, "%s", dev);
    sp.path = cb_xasprintf("%s/" GOLDEN_DIR "/" SPARE_PREFIX "%d-%u.img", q->state_dir,
                           (int)getpid(), s->seq++);
    r = -EAGAIN;
    if (!s->closing && s->bytes == bytes && s->n < IMAGE_SPARES_MAX) {
        if (renameat2(AT_FDCWD, image, AT_FDCWD, sp.path, RENAME_NOREPLACE) == 0) {
            s->ready[s->n++] = sp;
            r = 0;
        } else {
            r = -errno;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (r < 0) {
        close(mfd);
        free(sp.path);
        return r;
    }
    /* The device went with the image: the record names none now (the old
     * directory is retired with it, sbdir.h). Emptied through an open
     * file, not truncate(2) by path: ext4 marks a file cut to zero for a
     * flush at its next close, which was then the next sandbox's write of
     * its own record (a writeback per start); this close takes the mark
     * with nothing to write. */
    if (cb_write_file_at(AT_FDCWD, record, "", 0, 0600, 0) < 0)
        unlink(record);
    return 0;
}
