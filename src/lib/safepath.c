/* safepath.c — confined resolution below a sandbox root; see safepath.h. */
#include "safepath.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

/* How often an openat2 that failed with EAGAIN (a rename raced with a
 * RESOLVE_IN_ROOT lookup) is retried. Sandbox code can rename in a loop, so
 * this must be bounded: after it we report the error instead of spinning. */
#define OPENAT2_EAGAIN_RETRIES 128

/* The kernel's overflow id: what a file owned by an unmapped id looks like
 * inside a user namespace. */
#define OVERFLOW_ID 65534u
#define ID_RANGE 65536u

int cb_safepath_open(int root, const char *path, int flags, mode_t mode)
{
    /* RESOLVE_IN_ROOT: "/" and ".." stop at root, absolute symlinks are
     * taken relative to root, so no lookup can leave the sandbox.
     * RESOLVE_NO_MAGICLINKS: /proc/<pid>/fd/N and friends inside the sandbox
     * would otherwise jump to any file some process there has open, which
     * includes fds the sandbox may have received from outside. */
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    for (int attempt = 0;; attempt++) {
        long fd = syscall(SYS_openat2, root, path, &how, sizeof(how));
        if (fd >= 0)
            return (int)fd;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN && attempt < OPENAT2_EAGAIN_RETRIES)
            continue;
        return -errno;
    }
}

int cb_safepath_open_parent(int root, const char *norm, char **parent_out,
                            const char **leaf)
{
    *parent_out = NULL;
    *leaf = NULL;
    if (norm[0] != '/' || norm[1] == '\0')
        return -EINVAL;
    char *copy = cb_xstrdup(norm);
    char *slash = strrchr(copy, '/');
    const char *name = slash + 1;
    /* ".." as the last component names no entry of a parent directory:
     * unlinkat/renameat on it would be refused by the kernel anyway, and
     * accepting it would make "remove /a/.." mean something surprising. */
    if (strcmp(name, "..") == 0 || name[0] == '\0') {
        free(copy);
        return -EINVAL;
    }
    const char *parent = "/";
    if (slash != copy) {
        *slash = '\0';
        parent = copy;
    }
    int fd = cb_safepath_open(root, parent, O_PATH | O_DIRECTORY, 0);
    if (fd < 0) {
        free(copy);
        return fd;
    }
    if (slash == copy) {
        /* Keep the leaf inside the returned allocation in both cases. */
        memmove(copy, copy + 1, strlen(copy));
        *leaf = copy;
    } else {
        *leaf = slash + 1;
    }
    *parent_out = copy;
    return fd;
}

int cb_safepath_reopen(int opath_fd, int flags)
{
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", opath_fd);
    int fd = CB_RETRY(open(proc, flags | O_CLOEXEC | O_NOCTTY));
    return fd < 0 ? -errno : fd;
}

int cb_safepath_own(int fd, uint32_t mode, const struct cb_fs_owner *own)
{
    if (own && fchown(fd, own->uid, own->gid) < 0)
        return -errno;
    if (fchmod(fd, mode & 07777) < 0)
        return -errno;
    return 0;
}

/* Create one directory `name` below the open directory `dirfd` and give it
 * owner and mode. The directory is opened O_NOFOLLOW before chown/chmod: if
 * the sandbox swapped a symlink in, the open fails and nothing is changed. */
static int mkdir_one(int dirfd, const char *name, uint32_t mode,
                     const struct cb_fs_owner *own)
{
    /* mkdir in a cgroupfs mounted inside the sandbox creates a cgroup. */
    int r = cb_safepath_check_fs(dirfd);
    if (r < 0)
        return r;
    /* 0700 until it is chowned, so nobody else uses it half-made. */
    if (mkdirat(dirfd, name, 0700) < 0)
        return errno == EEXIST ? 0 : -errno;
    _cleanup_close_ int fd =
        CB_RETRY(openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd < 0)
        return 0; /* replaced meanwhile: the caller's re-resolution decides */
    return cb_safepath_own(fd, mode, own);
}

int cb_safepath_mkdirs(int root, const char *norm, uint32_t mode,
                       const struct cb_fs_owner *own, struct cb_error **err)
{
    _cleanup_close_ int cur = cb_safepath_open(root, "/", O_PATH | O_DIRECTORY, 0);
    if (cur < 0)
        return cb_safepath_error(err, -cur, "open", "/");
    size_t len = strlen(norm);
    _cleanup_free_ char *prefix = cb_xcalloc(1, len + 2);
    size_t plen = 0;
    const char *p = norm;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        size_t clen = strcspn(p, "/");
        _cleanup_free_ char *comp = cb_xstrndup(p, clen);
        p += clen;
        prefix[plen++] = '/';
        memcpy(prefix + plen, comp, clen);
        plen += clen;
        prefix[plen] = '\0';
        /* Resolve the prefix from root each time (symlinks inside the
         * sandbox are honoured, but only below root); create what is
         * missing relative to the fd of the previous step. */
        int next = cb_safepath_open(root, prefix, O_PATH | O_DIRECTORY, 0);
        if (next == -ENOENT && strcmp(comp, "..") != 0) {
            int r = mkdir_one(cur, comp, mode, own);
            if (r < 0)
                return cb_safepath_error(err, -r, "mkdir", prefix);
            next = cb_safepath_open(root, prefix, O_PATH | O_DIRECTORY, 0);
        }
        if (next < 0)
            return cb_safepath_error(err, -next, "mkdir", prefix);
        close(cur);
        cur = next;
    }
    return steal_fd(cur);
}

int cb_safepath_check_fs(int fd)
{
    static const unsigned long denied[] = {
        PROC_SUPER_MAGIC, SYSFS_MAGIC,    CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC,
        DEBUGFS_MAGIC,    TRACEFS_MAGIC,  SECURITYFS_MAGIC,   SELINUX_MAGIC,
        SMACK_MAGIC,      BPF_FS_MAGIC,   PSTOREFS_MAGIC,     EFIVARFS_MAGIC,
        BINFMTFS_MAGIC,   NSFS_MAGIC,     FUSE_SUPER_MAGIC,
        0x62656570UL, /* configfs */
    };
    struct statfs sfs;
    if (CB_RETRY(fstatfs(fd, &sfs)) < 0)
        return -errno;
    for (size_t i = 0; i < CB_ARRAY_SIZE(denied); i++)
        if ((unsigned long)sfs.f_type == denied[i])
            return -EPERM;
    return 0;
}

static enum cb_error_kind kind_of_errno(int code)
{
    switch (code) {
    case ENOENT:
        return CB_ERR_NOT_FOUND;
    case ENOTEMPTY:
        return CB_ERR_CONFLICT;
    case EDQUOT:
    case ENOSPC:
        return CB_ERR_LIMIT;
    case EFBIG:
        return CB_ERR_TOO_LARGE;
    case ELOOP:
    case ENOTDIR:
    case EISDIR:
    case EEXIST:
    case EINVAL:
    case ENAMETOOLONG:
    case EXDEV:
    case EPERM:
    case EACCES:
    case EBUSY:
    case ETXTBSY:
    case EROFS:
    case EMLINK:
    case ENXIO:
    case ENODEV:
        return CB_ERR_BAD_REQUEST;
    default:
        return CB_ERR_INTERNAL;
    }
}

int cb_safepath_error(struct cb_error **err, int code, const char *op,
                      const char *path)
{
    enum cb_error_kind kind = kind_of_errno(code);
    if (kind == CB_ERR_LIMIT) {
        int r = cb_error_set(err, 0, kind, "%s %s: disk quota exceeded", op, path);
        if (err && *err)
            (*err)->code = code;
        return r < 0 && code > 0 ? -code : r;
    }
    if (code == EINVAL)
        return cb_error_set(err, code, kind, "%s %s: invalid path", op, path);
    if (code == EPERM)
        return cb_error_set(err, 0, kind, "%s %s: not permitted here", op, path);
    return cb_error_set(err, code, kind, "%s %s", op, path);
}

static uint32_t to_sandbox_id(uint32_t host, uint32_t base)
{
    if (host < base || host - base >= ID_RANGE)
        return OVERFLOW_ID;
    return host - base;
}

uint32_t cb_safepath_sandbox_uid(uid_t host, const struct cb_fs_owner *own)
{
    return own ? to_sandbox_id(host, own->base_uid) : host;
}

uint32_t cb_safepath_sandbox_gid(gid_t host, const struct cb_fs_owner *own)
{
    return own ? to_sandbox_id(host, own->base_gid) : host;
}

void cb_safepath_fill_stat(struct cb_fs_stat *out, const struct stat *sb,
                           char *path, char *link_target,
                           const struct cb_fs_owner *own)
{
    memset(out, 0, sizeof(*out));
    out->path = path;
    if (S_ISREG(sb->st_mode))
        out->type = CB_FS_FILE;
    else if (S_ISDIR(sb->st_mode))
        out->type = CB_FS_DIR;
    else if (S_ISLNK(sb->st_mode))
        out->type = CB_FS_SYMLINK;
    else
        out->type = CB_FS_OTHER;
    out->size = sb->st_size > 0 ? (uint64_t)sb->st_size : 0;
    out->mode = sb->st_mode & 07777;
    out->mtime = (double)sb->st_mtim.tv_sec + (double)sb->st_mtim.tv_nsec / 1e9;
    out->uid = cb_safepath_sandbox_uid(sb->st_uid, own);
    out->gid = cb_safepath_sandbox_gid(sb->st_gid, own);
    out->link_target = out->type == CB_FS_SYMLINK ? link_target : NULL;
    if (out->type != CB_FS_SYMLINK)
        free(link_target);
}

char *cb_safepath_readlink(int dirfd, const char *name)
{
    char buf[PATH_MAX];
    ssize_t n = readlinkat(dirfd, name, buf, sizeof(buf) - 1);
    if (n < 0)
        return NULL;
    buf[n] = '\0';
    return cb_xstrdup(buf);
}

char *cb_safepath_join(const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    if (dl > 0 && dir[dl - 1] == '/')
        return cb_xasprintf("%s%s", dir, name);
    return cb_xasprintf("%s/%s", dir, name);
}
