#include "mounts.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

/* /proc entries that expose or control the host kernel; masked with
 * /dev/null (files) or a read-only bind of an empty directory (directories),
 * as Docker and runc do (they mount an empty tmpfs; see cb_mounts_build for
 * why we bind instead). */
static const char *const proc_masked_files[] = {
    "kcore",          /* physical memory of the host */
    "keys",           /* host keyrings */
    "timer_list",     /* host timers and task names */
    "timer_stats",
    "sched_debug",    /* every host task */
    "latency_stats",
    "sysrq-trigger",  /* reboot/crash the host */
    "kallsyms",       /* kernel addresses (zeroed for non-root, still) */
    "kmsg",           /* host kernel log */
    "config.gz",
};
static const char *const proc_masked_dirs[] = {"acpi", "scsi", "asound", "driver"};
/* Writable knobs with host-wide effect: visible but read-only. */
static const char *const proc_readonly[] = {"bus", "fs", "irq", "sys"};

/* Device nodes bound from the host: the harmless character devices every
 * program expects. The host's /dev itself is never visible. */
static const char *const dev_nodes[] = {"null", "zero", "full", "random",
                                        "urandom", "tty"};

static const char *keep(struct cb_mount_table *t, char *s)
{
    if (t->nstrings == t->capstrings) {
        t->capstrings = t->capstrings ? t->capstrings * 2 : 64;
        t->strings = cb_xrealloc(t->strings, t->capstrings * sizeof *t->strings);
    }
    t->strings[t->nstrings++] = s;
    return s;
}

static struct cb_mount_step *add(struct cb_mount_table *t, enum cb_mount_kind kind)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->steps = cb_xrealloc(t->steps, t->cap * sizeof *t->steps);
    }
    struct cb_mount_step *s = &t->steps[t->n++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    return s;
}

static const char *under(struct cb_mount_table *t, const char *root, const char *p)
{
    return keep(t, cb_xasprintf("%s/%s", root, p[0] == '/' ? p + 1 : p));
}

/* Flags that the kernel locks on a mount copied into a less privileged
 * namespace: a read-only remount must repeat them or fails with EPERM. */
static unsigned long locked_flags(const char *path)
{
    struct statvfs sv;
    unsigned long f = 0;
    if (statvfs(path, &sv) < 0)
        return 0;
    if (sv.f_flag & ST_NOSUID) f |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV) f |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
    if (sv.f_flag & ST_NOATIME) f |= MS_NOATIME;
    if (sv.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
    if (sv.f_flag & ST_RELATIME) f |= MS_RELATIME;
    return f;
}

static void add_mount(struct cb_mount_table *t, const char *src, const char *target,
                      const char *fstype, unsigned long flags, const char *data)
{
    struct cb_mount_step *s = add(t, CB_MNT_MOUNT);
    s->source = src;
    s->target = target;
    s->fstype = fstype;
    s->flags = flags;
    s->data = data;
}

/* Hide directory target behind a read-only, nosuid, nodev, noexec bind of
 * the runtime's empty directory. A bind costs no superblock, where a tmpfs
 * per mask would cost one each: every superblock registers a memcg-aware
 * shrinker, and every memory cgroup on the host then holds per-shrinker
 * bookkeeping, so superblocks x sandboxes grows quadratically. The
 * directory is root-owned 0555 on the host: in the sandbox that owner is
 * unmapped (nobody), so even the sandbox's root cannot create anything in
 * it, and the bind is read-only besides. */
static void add_mask_dir(struct cb_mount_table *t, const char *target, const char *empty_dir,
                         unsigned long empty_flags)
{
    struct cb_mount_step *s = add(t, CB_MNT_MASK_DIR);
    s->source = empty_dir;
    s->target = target;
    s->remount_flags = empty_flags;
    s->optional = true;
}

static void build_proc(struct cb_mount_table *t, const char *rootfs, const char *empty_dir,
                       unsigned long empty_flags)
{
    /* A fresh proc for the sandbox's pid namespace. No hidepid: the pid
     * namespace already limits it to the sandbox, and ps/top run by the
     * sandbox user should see the sandbox's root-owned init like on any
     * Linux machine. */
    const char *proc = under(t, rootfs, "proc");
    add_mount(t, "proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    for (size_t i = 0; i < CB_ARRAY_SIZE(proc_masked_files); i++) {
        struct cb_mount_step *s = add(t, CB_MNT_MASK_FILE);
        s->target = under(t, proc, proc_masked_files[i]);
        s->optional = true;
    }
    for (size_t i = 0; i < CB_ARRAY_SIZE(proc_masked_dirs); i++)
        add_mask_dir(t, under(t, proc, proc_masked_dirs[i]), empty_dir, empty_flags);
    for (size_t i = 0; i < CB_ARRAY_SIZE(proc_readonly); i++) {
        struct cb_mount_step *s = add(t, CB_MNT_READONLY);
        s->target = under(t, proc, proc_readonly[i]);
        s->optional = true;
    }
}

static void build_sys(struct cb_mount_table *t, const char *rootfs, const char *empty_dir,
                      unsigned long empty_flags)
{
    /* A read-only sysfs of the sandbox's own network namespace: tools read
     * CPU topology and limits there (nproc fallbacks, lscpu, node). Firmware
     * tables (ACPI, EFI variables, DMI serials) are hidden. */
    const char *sys = under(t, rootfs, "sys");
    add_mount(t, "sysfs", sys, "sysfs",
              MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    add_mask_dir(t, under(t, sys, "firmware"), empty_dir, empty_flags);
}

/* /dev as the sandbox sees it: its entries, made by the template's
 * skeleton (cb_mounts_make_dev_skeleton) or, for a template without them,
 * by the child in the sandbox's upper layer at its first start. */
static const char *const dev_dirs[] = {"pts", "shm"};
static const char *const dev_links[][2] = {
    {"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
    {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
};

static unsigned dev_dir_mode(const char *name)
{
    /* /dev/shm like /tmp: everyone creates, only owners delete */
    return strcmp(name, "shm") == 0 ? 01777 : 0755;
}

static void build_dev(struct cb_mount_table *t, const char *rootfs)
{
    /* /dev is a directory of the sandbox's own root, not a tmpfs: one
     * superblock less per sandbox (every superblock costs memory in every
     * memory cgroup of the host, docs/security.md) and no file system to
     * make and tear down per start. /dev/shm is a directory beside it, on
     * the sandbox's disk like /tmp (counted in its disk quota; its pages
     * are page cache charged to the sandbox's memory cgroup either way).
     * The device nodes are binds of the host's (their own mount flags),
     * mounted on empty files of the template's skeleton.
     *
     * These steps run before pivot_root, on paths the tenant controlled
     * when the sandbox last ran (/dev is no mount point any more, so it
     * could be renamed and replaced by a symlink to a host path): the
     * MKDIR and MKFILE steps make sure each is a real directory or file,
     * replacing what is not, before anything is created or mounted below
     * it. Nothing of the tenant runs during a start, so what they checked
     * cannot change under them. */
    const char *dev = under(t, rootfs, "dev");
    add(t, CB_MNT_MKDIR)->target = dev;
    for (size_t i = 0; i < CB_ARRAY_SIZE(dev_nodes); i++) {
        const char *target = under(t, dev, dev_nodes[i]);
        add(t, CB_MNT_MKFILE)->target = target;
        add_mount(t, keep(t, cb_xasprintf("/dev/%s", dev_nodes[i])), target, NULL,
                  MS_BIND, NULL);
    }
    for (size_t i = 0; i < CB_ARRAY_SIZE(dev_dirs); i++) {
        struct cb_mount_step *s = add(t, CB_MNT_MKDIR);
        s->target = under(t, dev, dev_dirs[i]);
        s->mode = dev_dir_mode(dev_dirs[i]);
    }
    /* newinstance: the sandbox's own pty numbering, never the host's ptys. */
    add_mount(t, "devpts", under(t, dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=620");
    for (size_t i = 0; i < CB_ARRAY_SIZE(dev_links); i++) {
        struct cb_mount_step *s = add(t, CB_MNT_SYMLINK);
        s->source = dev_links[i][0];
        s->target = under(t, dev, dev_links[i][1]);
    }
}

bool cb_mounts_has_dev_skeleton(const char *rootfs)
{
    /* made last by cb_mounts_make_dev_skeleton */
    _cleanup_free_ char *last = cb_xasprintf("%s/dev/%s", rootfs,
                                             dev_nodes[CB_ARRAY_SIZE(dev_nodes) - 1]);
    return access(last, F_OK) == 0;
}

int cb_mounts_make_dev_skeleton(const char *rootfs)
{
    _cleanup_free_ char *dev = cb_xasprintf("%s/dev", rootfs);
    if (mkdir(dev, 0755) < 0 && errno != EEXIST)
        return -errno;
    _cleanup_close_ int d = open(dev, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d < 0)
        return -errno;
    for (size_t i = 0; i < CB_ARRAY_SIZE(dev_dirs); i++) {
        if (mkdirat(d, dev_dirs[i], 0755) < 0 && errno != EEXIST)
            return -errno;
        /* fchmodat, not mkdir's mode: the umask would strip 1777's bits */
        if (fchmodat(d, dev_dirs[i], dev_dir_mode(dev_dirs[i]), 0) < 0)
            return -errno;
    }
    for (size_t i = 0; i < CB_ARRAY_SIZE(dev_links); i++)
        if (symlinkat(dev_links[i][0], d, dev_links[i][1]) < 0 && errno != EEXIST)
            return -errno;
    /* The node files last: their presence says the skeleton is complete. */
    for (size_t i = 0; i < CB_ARRAY_SIZE(dev_nodes); i++) {
        int fd = openat(d, dev_nodes[i], O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0)
            return -errno;
        close(fd);
    }
    return 0;
}

int cb_mounts_build(struct cb_mount_table *t, const char *rootfs,
                    const char *lower, const char *upper, const char *work,
                    const struct cb_template_bind *binds, size_t nbinds,
                    const char *empty_dir, bool durable, struct cb_error **err)
{
    memset(t, 0, sizeof *t);
    /* userxattr: overlay keeps its metadata in user.* xattrs, the only ones
     * an unprivileged (user-namespace) mounter may write.
     * volatile: overlay never syncs its upper file system. Without it, the
     * unmount at every teardown wrote the sandbox's dirty data out to its
     * disk image (sync_filesystem of the upper) just before a destroy threw
     * that data away (1% of all CPU in a create+exec+delete churn, plus
     * the loop device's writes), and each tenant fsync did the same work.
     * Durability is what the image already gives (quota.c mount_detached,
     * nobarrier): data reaches the disk by writeback, at stop (the image's
     * own unmount syncs it) or on a graceful host shutdown, not at a
     * tenant's fsync: it does not survive a host crash or power loss in
     * between (docs/operations.md). Overlay leaves work/work/incompat/
     * volatile/dirty behind and refuses a later mount while it is there (it
     * cannot know whether the host crashed): a start after a stop removes
     * it first, accepting the upper as the file system holds it (also
     * when durable: a start after a run without it). --durable-disks
     * (durable) keeps the syncs. */
    const char *opts = keep(t, cb_xasprintf("lowerdir=%s,upperdir=%s,workdir=%s,userxattr%s",
                                            lower, upper, work, durable ? "" : ",volatile"));
    if (strlen(opts) >= 4000)
        return cb_error_set(err, ENAMETOOLONG, CB_ERR_INTERNAL, "overlay options too long");
    static const char *const volatile_marks[] = {"work/incompat/volatile/dirty",
                                                 "work/incompat/volatile", "work/incompat"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(volatile_marks); i++) {
        struct cb_mount_step *s = add(t, CB_MNT_REMOVE);
        s->target = under(t, work, volatile_marks[i]);
        s->optional = true;
    }
    t->root = keep(t, cb_xstrdup(rootfs));
    add_mount(t, "overlay", t->root, "overlay", MS_NOSUID | MS_NODEV, opts);
    for (size_t i = 0; i < nbinds; i++) {
        struct cb_mount_step *s = add(t, CB_MNT_BIND_RO);
        s->source = keep(t, cb_xstrdup(binds[i].source));
        s->target = under(t, rootfs, binds[i].target);
        s->remount_flags = locked_flags(binds[i].source);
        s->optional = true; /* a bind whose host path vanished is skipped */
    }
    const char *empty = keep(t, cb_xstrdup(empty_dir));
    unsigned long empty_flags = locked_flags(empty_dir) | MS_NOEXEC;
    build_proc(t, rootfs, empty, empty_flags);
    build_sys(t, rootfs, empty, empty_flags);
    build_dev(t, rootfs);
    return 0;
}

static void add_bind_ro(struct cb_mount_table *t, const char *source, const char *target,
                        unsigned long extra_flags)
{
    struct cb_mount_step *s = add(t, CB_MNT_BIND_RO);
    s->source = keep(t, cb_xstrdup(source));
    s->target = target;
    s->remount_flags = locked_flags(source) | extra_flags;
    s->optional = true; /* a directory gone meanwhile: nothing to show */
}

void cb_mounts_show_cgroup(struct cb_mount_table *t, const char *rootfs, const char *view_dir,
                           const char *const *sources, const char *const *names, int n)
{
    if (!t->root || n <= 0)
        return;
    const char *at = under(t, rootfs, "sys/fs/cgroup");
    if (view_dir)
        add_bind_ro(t, view_dir, at, MS_NOSUID | MS_NODEV | MS_NOEXEC);
    for (int i = 0; i < n && (view_dir || i == 0); i++)
        add_bind_ro(t, sources[i], view_dir ? under(t, at, names[i]) : at, 0);
}

void cb_mounts_attach_sysfs(struct cb_mount_table *t, int fd)
{
    for (size_t i = 0; i < t->n; i++) {
        struct cb_mount_step *s = &t->steps[i];
        if (s->kind == CB_MNT_MOUNT && s->fstype && strcmp(s->fstype, "sysfs") == 0) {
            s->kind = CB_MNT_ATTACH;
            s->fd = fd;
            return;
        }
    }
}

void cb_mount_table_free(struct cb_mount_table *t)
{
    for (size_t i = 0; i < t->nstrings; i++)
        free(t->strings[i]);
    free(t->strings);
    free(t->steps);
    memset(t, 0, sizeof *t);
}

const char *cb_mount_step_name(const struct cb_mount_step *s)
{
    switch (s->kind) {
    case CB_MNT_MOUNT: return s->fstype ? s->fstype : "bind";
    case CB_MNT_BIND_RO: return "read-only bind";
    case CB_MNT_MASK_FILE: return "mask file";
    case CB_MNT_MASK_DIR: return "mask directory";
    case CB_MNT_READONLY: return "read-only remount";
    case CB_MNT_MKDIR: return "mkdir";
    case CB_MNT_MKFILE: return "mount point file";
    case CB_MNT_SYMLINK: return "symlink";
    case CB_MNT_ATTACH: return "attach";
    case CB_MNT_REMOVE: return "remove";
    }
    return "?";
}

/* ---- child side: syscalls only ---- */

static int bind_readonly(const char *src, const char *target, unsigned long keep_flags)
{
    if (mount(src, target, NULL, MS_BIND, NULL) < 0)
        return -errno;
    if (mount(NULL, target, NULL,
              MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | keep_flags,
              NULL) < 0)
        return -errno;
    return 0;
}

/* An optional step whose source or target is missing (a /proc file this
 * kernel does not have, a host path that vanished) is skipped: mount says
 * ENOENT for either, so no stat first (one path walk less for each of
 * ~30 steps per start). */
static int skip_missing(const struct cb_mount_step *s, int r)
{
    return r == -ENOENT && s->optional ? 0 : r;
}

/* p below the root (cwd once the root is mounted) relative to it: a path
 * walk of one or two components instead of the state dir's whole path. */
static const char *below(const char *p, const char *root, size_t rootlen)
{
    return rootlen && strncmp(p, root, rootlen) == 0 && p[rootlen] == '/' ? p + rootlen + 1 : p;
}

/* Make target a directory (dir) or a file that is neither a directory nor
 * a symlink, keeping one that is already so (it may come from the template:
 * opened for writing it would be copied up into the upper layer). Anything
 * else there is removed first (build_dev says why). A directory made here
 * gets mode (0: 0755). */
static int make_real(const char *target, bool dir, unsigned mode)
{
    for (int tries = 0; tries < 2; tries++) {
        if (dir) {
            if (mkdir(target, 0755) == 0)
                /* chmod, not mkdir's mode: the umask we inherited would
                 * strip 1777's group and other write bits. */
                return mode && chmod(target, mode) < 0 ? -errno : 0;
        } else {
            int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (fd >= 0) {
                close(fd);
                return 0;
            }
        }
        if (errno != EEXIST)
            return -errno;
        struct stat st;
        if (lstat(target, &st) < 0)
            return -errno;
        if (dir ? S_ISDIR(st.st_mode) : !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode))
            return 0;
        if ((S_ISDIR(st.st_mode) ? rmdir(target) : unlink(target)) < 0)
            return -errno;
    }
    return -EEXIST;
}

static int apply_one(const struct cb_mount_step *s, const char *root, size_t rootlen)
{
    const char *target = below(s->target, root, rootlen);
    const char *source = s->source ? below(s->source, root, rootlen) : NULL;
    switch (s->kind) {
    case CB_MNT_MOUNT:
        return mount(source, target, s->fstype, s->flags, s->data) < 0 ? -errno : 0;
    case CB_MNT_BIND_RO:
    case CB_MNT_MASK_DIR:
        return skip_missing(s, bind_readonly(source, target, s->remount_flags));
    case CB_MNT_MASK_FILE:
        return skip_missing(s, mount("/dev/null", target, NULL, MS_BIND, NULL) < 0 ? -errno : 0);
    case CB_MNT_READONLY:
        return skip_missing(s, bind_readonly(target, target, MS_NOEXEC));
    case CB_MNT_MKDIR:
        return make_real(target, true, s->mode);
    case CB_MNT_MKFILE:
        return make_real(target, false, 0);
    case CB_MNT_SYMLINK:
        /* source is the link's text, never a path of ours to shorten */
        return symlink(s->source, target) < 0 && errno != EEXIST ? -errno : 0;
    case CB_MNT_ATTACH:
        return move_mount(s->fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0 ? -errno : 0;
    case CB_MNT_REMOVE:
        if (rmdir(target) == 0 || (errno == ENOTDIR && unlink(target) == 0))
            return 0;
        return skip_missing(s, -errno);
    }
    return -EINVAL;
}

int cb_mounts_apply(const struct cb_mount_table *t, size_t *failed, uint64_t *times)
{
    size_t rootlen = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct cb_mount_step *s = &t->steps[i];
        int r = apply_one(s, t->root, rootlen);
        if (times)
            times[i] = cb_now_ns();
        if (r < 0) {
            *failed = i;
            return r;
        }
        /* The root is mounted: from here on walk from it. The caller
         * (pivot_root) sets its own cwd next. */
        if (!rootlen && t->root && s->kind == CB_MNT_MOUNT && strcmp(s->target, t->root) == 0 &&
            chdir(t->root) == 0)
            rootlen = strlen(t->root);
    }
    return 0;
}
