#include "rootfs.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_file(const char *dir, const char *name, const char *text, int mode)
{
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return -errno;
    int r = cb_write_file_at(dfd, name, text, strlen(text), mode, 1);
    close(dfd);
    return r;
}

static int mkdir_p(const char *path, int mode)
{
    /* The whole path first: it is there already on every create but the
     * first of a directory (each mkdir of an ancestor walks the path from
     * "/" again: 14 of them per create). */
    if (mkdir(path, mode) == 0 || errno == EEXIST)
        return 0;
    if (errno != ENOENT)
        return -errno;
    _cleanup_free_ char *p = cb_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static const char skel_passwd[] =
    "root:x:0:0:root:/root:/bin/bash\n"
    "user:x:1000:1000:user:/home/user:/bin/bash\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
static const char skel_group[] =
    "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n";
static const char skel_nsswitch[] =
    "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
    "networks: files\nprotocols: files\nservices: files\n";
/* The network issue will point this at the daemon's resolver. */
static const char skel_resolv[] = "nameserver 127.0.0.1\n";

static int make_bind_point(const char *rootfs, const struct cb_template_bind *b)
{
    struct stat st;
    if (stat(b->source, &st) < 0)
        return 0; /* absent on this host: the bind is skipped at mount time */
    _cleanup_free_ char *target = cb_xasprintf("%s%s", rootfs, b->target);
    _cleanup_free_ char *parent = cb_xstrdup(target);
    *strrchr(parent, '/') = '\0';
    int r = mkdir_p(parent, 0755);
    if (r < 0)
        return r;
    if (S_ISDIR(st.st_mode))
        return mkdir(target, 0755) < 0 && errno != EEXIST ? -errno : 0;
    int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

/* /bin, /lib, ... : a real directory on the host becomes a bind mount point
 * (the caller lists it as a bind); a symlink (merged-/usr) is mirrored. */
static int mirror_top_links(const char *rootfs)
{
    static const char *const tops[] = {"bin", "sbin", "lib", "lib32", "lib64", "libx32"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(tops); i++) {
        char host[32], target[256];
        snprintf(host, sizeof host, "/%s", tops[i]);
        ssize_t n = readlink(host, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        _cleanup_free_ char *link = cb_xasprintf("%s/%s", rootfs, tops[i]);
        if (symlink(target, link) < 0 && errno != EEXIST)
            return -errno;
    }
    return 0;
}

/* Host /etc files that programs read, data of the host's packages that is
 * the same in every sandbox and holds nothing of the host's own, copied
 * into the skeleton (a bind each would cost every start a mount):
 * getprotobyname("tcp") and getservbyname read protocols and services
 * (Perl's IO::Socket::INET, Python's socket, nc), install scripts source
 * os-release, chsh and some daemons check shells, readline reads inputrc
 * (Home/End keys), Python's mimetypes and web servers mime.types. A
 * symlink into /usr (Debian's os-release -> ../usr/lib/os-release) is
 * mirrored, since /usr is the host's in the sandbox; any other file is
 * copied. A host file absent, unreadable or over 1 MiB is left out. */
static const char *const host_etc_copies[] = {
    "protocols", "services", "shells", "debian_version", "os-release", "inputrc", "mime.types",
};

/* The login shell's files are our own, never the host's: an admin's
 * /etc/profile may export a proxy password or a token, and must not reach
 * a sandbox. What a terminal needs of them: the user@host:dir prompt. */
static const char skel_profile[] =
    "# cellbox: read by login shells (a terminal's bash -l)\n"
    "if [ \"${PS1-}\" ] && [ \"${BASH-}\" ] && [ \"$BASH\" != /bin/sh ] && "
    "[ -f /etc/bash.bashrc ]; then\n"
    "  . /etc/bash.bashrc\n"
    "fi\n"
    "if [ -d /etc/profile.d ]; then\n"
    "  for i in /etc/profile.d/*.sh; do [ -r \"$i\" ] && . \"$i\"; done\n"
    "  unset i\n"
    "fi\n";
static const char skel_bashrc[] =
    "# cellbox: read by interactive bash shells\n"
    "[ -z \"${PS1-}\" ] && return\n"
    "shopt -s checkwinsize\n"
    "PS1='\\u@\\h:\\w\\$ '\n";
static const struct {
    const char *name, *text;
} skel_etc_files[] = {{"profile", skel_profile}, {"bash.bashrc", skel_bashrc}};

static bool link_into_usr(const char *target)
{
    return strncmp(target, "/usr/", 5) == 0 || strncmp(target, "../usr/", 7) == 0;
}

int cb_rootfs_add_host_etc(const char *rootfs)
{
    _cleanup_free_ char *etc = cb_xasprintf("%s/etc", rootfs);
    _cleanup_close_ int dfd = open(etc, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    struct stat st;
    for (size_t i = 0; i < CB_ARRAY_SIZE(skel_etc_files); i++) {
        if (fstatat(dfd, skel_etc_files[i].name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            continue; /* made before */
        const char *text = skel_etc_files[i].text;
        int r = cb_write_file_at(dfd, skel_etc_files[i].name, text, strlen(text), 0644, 1);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < CB_ARRAY_SIZE(host_etc_copies); i++) {
        const char *name = host_etc_copies[i];
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            continue; /* made before, or the template's own */
        char host[64], target[256];
        snprintf(host, sizeof host, "/etc/%s", name);
        ssize_t n = readlink(host, target, sizeof target - 1);
        if (n > 0) {
            target[n] = '\0';
            if (link_into_usr(target)) {
                if (symlinkat(target, dfd, name) < 0 && errno != EEXIST)
                    return -errno;
                continue;
            }
        }
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (lstat(host, &st) < 0 || !S_ISREG(st.st_mode) ||
            cb_read_file_at(AT_FDCWD, host, 1 << 20, &text, &len) < 0)
            continue;
        int r = cb_write_file_at(dfd, name, text, len, 0644, 1);
        if (r < 0)
            return r;
    }
    return 0;
}

int cb_rootfs_make_host_skeleton(const char *rootfs, const struct cb_template_bind *binds,
                                 size_t nbinds, struct cb_error **err)
{
    static const char *const dirs[] = {"proc", "sys", "dev", "tmp", "home/user",
                                       "workspace", "root", "etc", "run", "var/tmp",
                                       "mnt", "usr", "opt", "srv"};
    int r = mkdir_p(rootfs, 0755);
    for (size_t i = 0; r == 0 && i < CB_ARRAY_SIZE(dirs); i++) {
        _cleanup_free_ char *d = cb_xasprintf("%s/%s", rootfs, dirs[i]);
        r = mkdir_p(d, 0755);
    }
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "template skeleton directories");
    _cleanup_free_ char *etc = cb_xasprintf("%s/etc", rootfs);
    if ((r = write_file(etc, "passwd", skel_passwd, 0644)) < 0 ||
        (r = write_file(etc, "group", skel_group, 0644)) < 0 ||
        (r = write_file(etc, "nsswitch.conf", skel_nsswitch, 0644)) < 0 ||
        (r = write_file(etc, "resolv.conf", skel_resolv, 0644)) < 0 ||
        (r = write_file(etc, "hostname", "sandbox\n", 0644)) < 0 ||
        (r = write_file(etc, "hosts", "127.0.0.1 localhost\n", 0644)) < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "template skeleton /etc");
    if ((r = cb_rootfs_add_host_etc(rootfs)) < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "template skeleton /etc");
    if ((r = mirror_top_links(rootfs)) < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "template skeleton links");
    if ((r = cb_mounts_make_dev_skeleton(rootfs)) < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "template skeleton /dev");
    for (size_t i = 0; i < nbinds; i++)
        if ((r = make_bind_point(rootfs, &binds[i])) < 0)
            return cb_error_set(err, -r, CB_ERR_INTERNAL, "template mount point %s",
                                binds[i].target);
    return 0;
}

/* Give the open file fd owner uid:gid and mode (permission and special
 * bits), on the fd so that the name cannot be swapped for a symlink.
 * Only what differs is changed: a sandbox directory recycled for the same
 * uid slot (the common case: a released slot is taken back first) has its
 * entries right already, and every chown or chmod, even to the values an
 * inode has, is a metadata change its file system journals (~20 of them
 * per create). fchown also clears set-id bits of files; the mode is
 * compared after it. */
static int own_fd_stat(int fd, struct stat st, mode_t mode, uid_t uid, gid_t gid)
{
    bool owner_differs = st.st_uid != uid || st.st_gid != gid;
    if (owner_differs && (fchown(fd, uid, gid) < 0 || fstat(fd, &st) < 0))
        return -errno;
    if ((st.st_mode & 07777) != mode && fchmod(fd, mode) < 0)
        return -errno;
    return 0;
}

static int own_fd(int fd, mode_t mode, uid_t uid, gid_t gid)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    return own_fd_stat(fd, st, mode, uid, gid);
}

static int make_owned_dir(int parent, const char *name, int mode, uid_t uid, gid_t gid)
{
    /* Already right (the common case, as for own_fd): one look, not a
     * mkdir, an open, a stat and a close. Not followed if it is a
     * symlink; a name with a '/' ("home/user") comes after its parent was
     * made or checked here, and nothing of a tenant runs while a sandbox
     * is created, so that parent is still the directory it was. Anything
     * else takes the way below, which opens what it changes. */
    struct stat st;
    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode) &&
        st.st_uid == uid && st.st_gid == gid && (st.st_mode & 07777) == (mode_t)mode)
        return 0;
    if (mkdirat(parent, name, mode) < 0 && errno != EEXIST)
        return -errno;
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = own_fd(fd, (mode_t)mode, uid, gid);
    close(fd);
    return r;
}

static int write_owned_file(int dirfd, const char *name, const char *text, uid_t uid, gid_t gid)
{
    /* Not atomic and no fsync: the directory was made by us a moment ago,
     * nothing reads it before the sandbox starts, and a crash mid-create
     * leaves a sandbox that create never reported (its files are removed).
     * The file may be one a retired sandbox left (sbdir.c keeps it,
     * truncated): owner and mode are set on the open file either way.
     * No O_TRUNC, for the reason in cb_write_file_at (util.c): that file
     * is empty, and truncating it to zero again made ext4 flush the new
     * bytes at close, a writeback per sandbox create. */
    int fd = CB_RETRY(openat(dirfd, name, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (fd < 0)
        return -errno;
    size_t len = strlen(text);
    struct stat st;
    int r = fstat(fd, &st) < 0 ? -errno : 0;
    if (r == 0)
        r = cb_write_all(fd, text, len);
    /* Only a longer file (one the sandbox's root rewrote before a stop
     * that was not recycled) has a tail to cut. */
    if (r == 0 && st.st_size > (off_t)len && ftruncate(fd, (off_t)len) < 0)
        r = -errno;
    /* Our write keeps owner and mode (set-id bits too: we hold
     * CAP_FSETID), so the stat from before it still tells. */
    if (r == 0)
        r = own_fd_stat(fd, st, 0644, uid, gid);
    close(fd);
    return r;
}

/* Fill the upper directory u (owned by base already). sbdir.c keeps these
 * entries, emptied, when it recycles a sandbox directory (its upper_kept
 * list): keep the two in step. Each is made, or re-owned and re-moded when
 * it is there already. */
static int prepare_upper_contents(int u, uint32_t base, const char *hostname,
                                  struct cb_error **err)
{
    int r;
    uid_t user = base + 1000;
    if ((r = make_owned_dir(u, "home", 0755, base, base)) < 0 ||
        (r = make_owned_dir(u, "home/user", 0755, user, user)) < 0 ||
        (r = make_owned_dir(u, "workspace", 0755, user, user)) < 0 ||
        (r = make_owned_dir(u, "tmp", 01777, base, base)) < 0 ||
        (r = make_owned_dir(u, "root", 0700, base, base)) < 0 ||
        (r = make_owned_dir(u, "etc", 0755, base, base)) < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "sandbox directories");
    _cleanup_close_ int etc = openat(u, "etc", O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (etc < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "open upper etc");
    _cleanup_free_ char *hn = cb_xasprintf("%s\n", hostname);
    _cleanup_free_ char *hosts = cb_xasprintf(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "127.0.1.1\t%s\n", hostname);
    if ((r = write_owned_file(etc, "hostname", hn, base, base)) < 0 ||
        (r = write_owned_file(etc, "hosts", hosts, base, base)) < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "sandbox /etc files");
    return 0;
}

int cb_rootfs_prepare_upper(const char *upper, const char *work, uint32_t base,
                            const char *hostname, struct cb_error **err)
{
    int r;
    if ((r = mkdir_p(upper, 0755)) < 0 || (r = mkdir_p(work, 0700)) < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "sandbox layer directories");
    /* upper is the sandbox's "/" (owned by its root); work belongs to the
     * overlay mounter, which is the sandbox's root too. */
    _cleanup_close_ int u = open(upper, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    _cleanup_close_ int w = open(work, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (u < 0 || w < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "open sandbox layers");
    if ((r = own_fd(u, 0755, base, base)) < 0 || (r = own_fd(w, 0700, base, base)) < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "chown sandbox layers");
    return prepare_upper_contents(u, base, hostname, err);
}

int cb_rootfs_prepare_layers_at(int layer_fd, uint32_t base, const char *hostname,
                                struct cb_error **err)
{
    int r;
    /* upper is the sandbox's "/" (owned by its root); work belongs to the
     * overlay mounter, which is the sandbox's root too. */
    if ((r = make_owned_dir(layer_fd, "upper", 0755, base, base)) < 0 ||
        (r = make_owned_dir(layer_fd, "work", 0700, base, base)) < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "sandbox layer directories");
    _cleanup_close_ int u = openat(layer_fd, "upper", O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (u < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "open upper");
    return prepare_upper_contents(u, base, hostname, err);
}

int cb_dir_each(int dfd, int (*fn)(int dfd, const char *name, void *arg), void *arg)
{
    if (lseek(dfd, 0, SEEK_SET) < 0)
        return -errno;
    char buf[4096];
    for (;;) {
        ssize_t n = getdents64(dfd, buf, sizeof buf);
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        for (ssize_t off = 0; off < n;) {
            struct dirent64 *de = (struct dirent64 *)(buf + off);
            off += de->d_reclen;
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            int r = fn(dfd, de->d_name, arg);
            if (r != 0)
                return r;
        }
    }
}

/* One entry of unlink_level: unlinked as a file or an empty directory, or
 * (1) the first directory that is not empty, its name in *full. */
static int unlink_entry(int dfd, const char *name, void *arg)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    int e = errno;
    if (e != EISDIR && e != EPERM)
        return -e;
    if (unlinkat(dfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
        return 0;
    if (errno == ENOTDIR)
        return -e; /* a file unlink refused (EPERM) */
    if (errno != ENOTEMPTY && errno != EEXIST)
        return -errno;
    *(char **)arg = cb_xstrdup(name);
    return 1;
}

/* Remove every entry of the directory dfd that unlinks as a file or as
 * an empty directory; *full gets the name of the first directory that is
 * not empty (NULL: dfd is empty now). 0 or -errno. */
static int unlink_level(int dfd, char **full)
{
    *full = NULL;
    int r = cb_dir_each(dfd, unlink_entry, full);
    return r > 0 ? 0 : r;
}

/* A directory the walk went down into: its name in its parent and what it
 * is, to know it again when coming back up through "..". */
struct level {
    char *name;
    dev_t dev;
    ino_t ino;
};

/* Empty the directory top, depth first, with two descriptors open at most
 * whatever the depth: a tenant's chain of directories 3,000 deep held
 * 6,000 of the daemon's descriptors while it was removed one open level at
 * a time (and a deeper one was refused and left behind). Going up is
 * openat(".."), checked against the parent noted on the way down; a level
 * is read again from its start after each return, which costs only what
 * is still in it. Nothing moves the tree meanwhile (its sandbox is gone);
 * if something did, the walk stops with ESTALE instead of leaving it. */
static int remove_contents(int top)
{
    struct stat st;
    if (fstat(top, &st) < 0)
        return -errno;
    struct level *stack = NULL;
    size_t depth = 0, cap = 0;
    int fd = fcntl(top, F_DUPFD_CLOEXEC, 0);
    int r = fd < 0 ? -errno : 0;
    while (r == 0) {
        char *full = NULL;
        if ((r = unlink_level(fd, &full)) < 0)
            break;
        if (full) { /* go down into it */
            int sub = openat(fd, full, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            struct stat sst;
            if (sub < 0 && errno == ENOENT) { /* removed meanwhile */
                free(full);
                continue;
            }
            if (sub < 0 || fstat(sub, &sst) < 0) {
                r = -errno;
                if (sub >= 0)
                    close(sub);
                free(full);
                break;
            }
            if (depth == cap) {
                cap = cap ? cap * 2 : 64;
                stack = cb_xrealloc(stack, cap * sizeof *stack);
            }
            stack[depth++] = (struct level){full, sst.st_dev, sst.st_ino};
            close(fd);
            fd = sub;
            continue;
        }
        if (depth == 0)
            break; /* top is empty */
        /* fd is empty: up to its parent, which removes it */
        struct level *l = &stack[depth - 1];
        dev_t pdev = depth > 1 ? stack[depth - 2].dev : st.st_dev;
        ino_t pino = depth > 1 ? stack[depth - 2].ino : st.st_ino;
        int up = openat(fd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat ust, cst;
        if (up < 0) {
            r = -errno;
            break;
        }
        if (fstat(up, &ust) < 0 || ust.st_dev != pdev || ust.st_ino != pino ||
            fstatat(up, l->name, &cst, AT_SYMLINK_NOFOLLOW) < 0 || cst.st_dev != l->dev ||
            cst.st_ino != l->ino)
            r = -ESTALE;
        else if (unlinkat(up, l->name, AT_REMOVEDIR) < 0 && errno != ENOENT)
            r = -errno;
        close(fd);
        fd = up;
        free(l->name);
        depth--;
    }
    if (fd >= 0)
        close(fd);
    while (depth > 0)
        free(stack[--depth].name);
    free(stack);
    return r;
}

int cb_rootfs_remove_tree_at(int dirfd, const char *name)
{
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    int sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0)
        return errno == ENOENT ? 0 : -errno;
    int r = remove_contents(sub);
    close(sub);
    if (r == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        r = -errno;
    return r;
}

int cb_rootfs_remove_tree(const char *path)
{
    _cleanup_free_ char *dir = cb_xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (!slash || !slash[1])
        return -EINVAL;
    *slash = '\0';
    int dfd = open(*dir ? dir : "/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return errno == ENOENT ? 0 : -errno;
    int r = cb_rootfs_remove_tree_at(dfd, slash + 1);
    close(dfd);
    return r;
}
