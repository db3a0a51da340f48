/* fsarchive.c — tar extraction into and creation from a sandbox tree.
 *
 * libarchive only parses and produces the tar stream here. We never use
 * archive_write_disk: it works on path strings relative to the process cwd
 * and follows whatever the sandbox has planted between two members. Each
 * member is instead created by us relative to an fd of the target
 * directory, walking its parent components with openat(O_NOFOLLOW), so:
 *
 *   - a leading "/" is stripped and ".." is resolved lexically inside the
 *     member name; a member that would climb above the target directory
 *     ("../x", "a/../../x") is REFUSED (the extraction fails with
 *     BAD_REQUEST naming the member; members before it stay extracted);
 *   - a symlink is created as-is but never followed by a later member: a
 *     member "l/pwned" below a symlink "l" fails (ENOTDIR/ELOOP) and the
 *     extraction fails with BAD_REQUEST;
 *   - a hard link is made only to a regular file reached the same way
 *     inside the target directory (linkat of that fd, AT_EMPTY_PATH);
 *   - device nodes, FIFOs and sockets are skipped;
 *   - everything created belongs to the sandbox user (own), whatever ids
 *     the archive names; set-id bits are dropped. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsops.h"
#include "rootfs.h"
#include "safepath.h"

#define MEMBER_MAX_COMPONENTS 1024
#define ARCHIVE_BLOCK 65536
/* archive_create walks at most this deep and this many entries. */
#define CREATE_MAX_DEPTH 256
#define CREATE_MAX_ENTRIES 1000000L

static void archive_read_freep(struct archive **a)
{
    if (*a)
        archive_read_free(*a);
}
static void archive_write_freep(struct archive **a)
{
    if (*a)
        archive_write_free(*a);
}
static void archive_entry_freep(struct archive_entry **e)
{
    if (*e)
        archive_entry_free(*e);
}

struct extract_ctx {
    int dirfd;       /* the target directory */
    const char *dir; /* its sandbox path, for messages */
    const struct cb_fs_owner *own;
    uint64_t max_bytes, bytes;
    uint64_t max_entries, entries;
    int written;
};

/* A member name split into components relative to the target directory. */
struct member_path {
    char *buf;                            /* copy of the name, split in place */
    char *comp[MEMBER_MAX_COMPONENTS];
    int n;
    char *display; /* dir + "/" + components: a sandbox path for messages */
};

static void member_path_clear(struct member_path *m)
{
    free(m->buf);
    free(m->display);
    m->buf = m->display = NULL;
    m->n = 0;
}

/* Returns 0, or -EXDEV when ".." climbs above the target directory, or
 * -ENAMETOOLONG / -EINVAL for over-long or empty names. */
static int member_path_split(const char *dir, const char *name, struct member_path *m)
{
    memset(m, 0, sizeof(*m));
    if (strnlen(name, CB_FS_MAX_PATH + 1) > CB_FS_MAX_PATH)
        return -ENAMETOOLONG;
    m->buf = cb_xstrdup(name);
    char *save = NULL;
    for (char *c = strtok_r(m->buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (!strcmp(c, "."))
            continue;
        if (!strcmp(c, "..")) {
            if (m->n == 0)
                return -EXDEV;
            m->n--;
            continue;
        }
        if (strlen(c) > NAME_MAX)
            return -ENAMETOOLONG;
        if (m->n == MEMBER_MAX_COMPONENTS)
            return -ENAMETOOLONG;
        m->comp[m->n++] = c;
    }
    size_t len = strlen(dir) + 2;
    for (int i = 0; i < m->n; i++)
        len += strlen(m->comp[i]) + 1;
    m->display = cb_xmalloc(len);
    strcpy(m->display, dir);
    for (int i = 0; i < m->n; i++) {
        size_t dl = strlen(m->display);
        if (dl == 0 || m->display[dl - 1] != '/')
            strcat(m->display, "/");
        strcat(m->display, m->comp[i]);
    }
    return 0;
}

/* Open the directory made of m->comp[0 .. upto-1] below the target
 * directory, one component at a time with O_NOFOLLOW: a symlink (planted by
 * the sandbox or by an earlier member) or a file in the way fails with
 * ELOOP/ENOTDIR instead of being followed. Missing directories are created
 * (owned by own) when create is set. Returns an fd or -errno. */
static int open_member_parent(struct extract_ctx *c, const struct member_path *m,
                              int upto, bool create)
{
    _cleanup_close_ int cur = fcntl(c->dirfd, F_DUPFD_CLOEXEC, 0);
    if (cur < 0)
        return -errno;
    for (int i = 0; i < upto; i++) {
        const char *name = m->comp[i];
        int next = CB_RETRY(openat(cur, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (next < 0 && errno == ENOENT && create) {
            int fsr = cb_safepath_check_fs(cur);
            if (fsr < 0)
                return fsr;
            if (mkdirat(cur, name, 0700) < 0 && errno != EEXIST)
                return -errno;
            next = CB_RETRY(openat(cur, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (next >= 0) {
                int r = cb_safepath_own(next, 0755, c->own);
                if (r < 0) {
                    close(next);
                    return r;
                }
            }
        }
        if (next < 0)
            return -errno;
        close(cur);
        cur = next;
    }
    /* Never create members on a pseudo file system mounted in the tree. */
    int r = cb_safepath_check_fs(cur);
    if (r < 0)
        return r;
    return steal_fd(cur);
}

/* Make room for a new non-directory entry `leaf`: an existing file or
 * symlink is unlinked (the name goes, nothing is followed); an existing
 * directory is left alone and the member refused. */
static int clear_leaf(int pfd, const char *leaf)
{
    struct stat sb;
    if (fstatat(pfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (S_ISDIR(sb.st_mode))
        return -EISDIR;
    if (unlinkat(pfd, leaf, 0) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

static int bad_archive(struct cb_error **err, struct archive *a, const char *dir)
{
    const char *msg = archive_error_string(a);
    return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "extract %s: bad archive: %s",
                        dir, msg ? msg : "unknown error");
}

static int write_block(int fd, const void *buf, size_t size, int64_t offset)
{
    const char *p = buf;
    while (size > 0) {
        ssize_t n = CB_RETRY(pwrite(fd, p, size, offset));
        if (n < 0)
            return -errno;
        p += n;
        size -= (size_t)n;
        offset += n;
    }
    return 0;
}

/* Stream the member's data into fd, counting it against max_bytes. Sparse
 * members arrive as blocks at offsets; the holes cost nothing. */
static int extract_data(struct extract_ctx *c, struct archive *a,
                        struct archive_entry *e, int fd, const char *display,
                        struct cb_error **err)
{
    for (;;) {
        const void *buf;
        size_t size;
        la_int64_t offset;
        int r = archive_read_data_block(a, &buf, &size, &offset);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN)
            return bad_archive(err, a, c->dir);
        if (offset < 0)
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "extract %s: bad offset", display);
        c->bytes += size;
        if (c->max_bytes && c->bytes > c->max_bytes)
            return cb_error_set(err, 0, CB_ERR_TOO_LARGE,
                                "extract %s: more than %llu bytes of file data",
                                c->dir, (unsigned long long)c->max_bytes);
        int w = write_block(fd, buf, size, offset);
        if (w < 0)
            return cb_safepath_error(err, -w, "extract", display);
    }
    /* A sparse file may end in a hole: give it its full size. */
    if (archive_entry_size_is_set(e) && archive_entry_size(e) > 0) {
        struct stat sb;
        if (fstat(fd, &sb) == 0 && sb.st_size < archive_entry_size(e) &&
            ftruncate(fd, archive_entry_size(e)) < 0)
            return cb_safepath_error(err, errno, "extract", display);
    }
    return 0;
}

static int extract_file(struct extract_ctx *c, struct archive *a,
                        struct archive_entry *e, int pfd, const char *leaf,
                        const char *display, struct cb_error **err)
{
    int r = clear_leaf(pfd, leaf);
    if (r < 0)
        return cb_safepath_error(err, -r, "extract", display);
    /* O_EXCL|O_NOFOLLOW: we only ever write into a file we just created. */
    _cleanup_close_ int fd = CB_RETRY(openat(
        pfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600));
    if (fd < 0)
        return cb_safepath_error(err, errno, "extract", display);
    r = cb_safepath_own(fd, archive_entry_perm(e) & 0777, c->own);
    if (r < 0)
        return cb_safepath_error(err, -r, "extract", display);
    return extract_data(c, a, e, fd, display, err);
}

static int extract_dir(struct extract_ctx *c, struct archive_entry *e, int pfd,
                       const char *leaf, const char *display, struct cb_error **err)
{
    bool created = mkdirat(pfd, leaf, 0700) == 0;
    if (!created && errno == EEXIST) {
        struct stat sb;
        if (fstatat(pfd, leaf, &sb, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(sb.st_mode)) {
            /* A file or symlink where the archive has a directory: replace
             * the name (never follow it). */
            if (unlinkat(pfd, leaf, 0) < 0)
                return cb_safepath_error(err, errno, "extract", display);
            if (mkdirat(pfd, leaf, 0700) < 0)
                return cb_safepath_error(err, errno, "extract", display);
            created = true;
        }
    } else if (!created) {
        return cb_safepath_error(err, errno, "extract", display);
    }
    _cleanup_close_ int fd =
        CB_RETRY(openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd < 0)
        return cb_safepath_error(err, errno, "extract", display);
    uint32_t mode = created ? archive_entry_perm(e) & 01777 : 0;
    if (created) {
        int r = cb_safepath_own(fd, mode, c->own);
        if (r < 0)
            return cb_safepath_error(err, -r, "extract", display);
    }
    return 0;
}

static int extract_symlink(struct extract_ctx *c, struct archive_entry *e, int pfd,
                           const char *leaf, const char *display, struct cb_error **err)
{
    const char *target = archive_entry_symlink(e);
    if (!target || !*target || strnlen(target, PATH_MAX) >= PATH_MAX)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "extract %s: bad symlink", display);
    int r = clear_leaf(pfd, leaf);
    if (r < 0)
        return cb_safepath_error(err, -r, "extract", display);
    /* The target is stored verbatim: it is only ever resolved later below
     * the sandbox root (by the sandbox itself, or by us with
     * RESOLVE_IN_ROOT), so "/etc" here means the sandbox's /etc. */
    if (symlinkat(target, pfd, leaf) < 0)
        return cb_safepath_error(err, errno, "extract", display);
    if (c->own && fchownat(pfd, leaf, c->own->uid, c->own->gid, AT_SYMLINK_NOFOLLOW) < 0)
        return cb_safepath_error(err, errno, "extract", display);
    return 0;
}

static int extract_hardlink(struct extract_ctx *c, struct archive_entry *e, int pfd,
                            const char *leaf, const char *display, struct cb_error **err)
{
    _cleanup_(member_path_clear) struct member_path t;
    int r = member_path_split(c->dir, archive_entry_hardlink(e), &t);
    if (r == 0 && t.n == 0)
        r = -EINVAL;
    if (r < 0)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "extract %s: hard link target outside %s", display, c->dir);
    _cleanup_close_ int tpfd = open_member_parent(c, &t, t.n - 1, false);
    if (tpfd < 0)
        return cb_error_set(err, -tpfd, CB_ERR_BAD_REQUEST,
                            "extract %s: hard link target %s", display, t.display);
    _cleanup_close_ int tfd =
        CB_RETRY(openat(tpfd, t.comp[t.n - 1], O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat sb;
    if (tfd < 0 || fstat(tfd, &sb) < 0 || !S_ISREG(sb.st_mode))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "extract %s: hard link target %s is not a file in %s",
                            display, t.display, c->dir);
    r = clear_leaf(pfd, leaf);
    if (r < 0)
        return cb_safepath_error(err, -r, "extract", display);
    /* Link the inode we checked, by fd: nothing can be swapped in between.
     * (AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH, which the daemon has.) */
    if (linkat(tfd, "", pfd, leaf, AT_EMPTY_PATH) < 0)
        return cb_safepath_error(err, errno, "extract", display);
    return 0;
}

static bool is_special(mode_t type)
{
    return type == AE_IFCHR || type == AE_IFBLK || type == AE_IFIFO || type == AE_IFSOCK;
}

static int extract_member(struct extract_ctx *c, struct archive *a,
                          struct archive_entry *e, struct cb_error **err)
{
    const char *name = archive_entry_pathname(e);
    if (!name)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "extract %s: member without a name", c->dir);
    _cleanup_(member_path_clear) struct member_path m;
    int r = member_path_split(c->dir, name, &m);
    if (r == -EXDEV)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "extract %s: member %s leaves the target directory", c->dir, name);
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_BAD_REQUEST, "extract %s: member name", c->dir);
    const char *hardlink = archive_entry_hardlink(e);
    mode_t type = archive_entry_filetype(e);
    if (m.n == 0 || (!hardlink && is_special(type)))
        return 0; /* the target itself ("./"), or a device/fifo/socket: skipped */
    if (!hardlink && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
        return 0;
    _cleanup_close_ int pfd = open_member_parent(c, &m, m.n - 1, true);
    if (pfd < 0)
        return cb_safepath_error(err, -pfd, "extract", m.display);
    const char *leaf = m.comp[m.n - 1];
    if (hardlink)
        r = extract_hardlink(c, e, pfd, leaf, m.display, err);
    else if (type == AE_IFREG)
        r = extract_file(c, a, e, pfd, leaf, m.display, err);
    else if (type == AE_IFDIR)
        r = extract_dir(c, e, pfd, leaf, m.display, err);
    else
        r = extract_symlink(c, e, pfd, leaf, m.display, err);
    if (r < 0)
        return r;
    if (c->written < INT_MAX)
        c->written++;
    return 0;
}

/* Only filters built into libarchive: archive_read_support_filter_all would
 * also register lzop/lrzip/grzip, which libarchive runs as external
 * programs — the daemon must not fork helpers on untrusted input. */
static struct archive *new_reader(void)
{
    struct archive *a = archive_read_new();
    if (!a)
        abort();
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_format_tar(a); /* ustar, pax, GNU tar */
    return a;
}

int cb_fs_archive_extract(int root, const char *dir, int in_fd,
                          const struct cb_fs_owner *own, uint64_t max_bytes,
                          uint64_t max_entries, struct cb_error **err)
{
    _cleanup_free_ char *norm = cb_fs_normalize(dir, err);
    if (!norm)
        return -1;
    _cleanup_close_ int dfd = cb_safepath_mkdirs(root, norm, 0755, own, err);
    if (dfd < 0)
        return cb_error_wrap(err, "extract");
    struct extract_ctx c = {
        .dirfd = dfd, .dir = norm, .own = own,
        .max_bytes = max_bytes, .max_entries = max_entries,
    };
    _cleanup_(archive_read_freep) struct archive *a = new_reader();
    if (archive_read_open_fd(a, in_fd, ARCHIVE_BLOCK) != ARCHIVE_OK)
        return bad_archive(err, a, norm);
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN)
            return bad_archive(err, a, norm);
        if (max_entries && ++c.entries > max_entries)
            return cb_error_set(err, 0, CB_ERR_TOO_LARGE,
                                "extract %s: more than %llu entries", norm,
                                (unsigned long long)max_entries);
        if (extract_member(&c, a, e, err) < 0)
            return -1;
    }
    return c.written;
}

/* ---- create ------------------------------------------------------------- */

struct create_ctx {
    struct archive *a;
    const struct cb_fs_owner *own;
    long budget;
    const char *top;
};

static int write_failed(struct create_ctx *c, struct cb_error **err)
{
    const char *msg = archive_error_string(c->a);
    return cb_error_set(err, 0, CB_ERR_INTERNAL, "archive %s: %s", c->top,
                        msg ? msg : "write failed");
}

/* One header. Ids are stored as seen inside the sandbox; without an owner
 * they are stored as 0: host ids would mean nothing there and would reveal
 * the host's id allocation. */
static int write_header(struct create_ctx *c, const char *name, const struct stat *sb,
                        const char *link_target, struct cb_error **err)
{
    _cleanup_(archive_entry_freep) struct archive_entry *e = archive_entry_new();
    if (!e)
        abort();
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, sb->st_mode & S_IFMT);
    archive_entry_set_perm(e, sb->st_mode & 07777);
    archive_entry_set_mtime(e, sb->st_mtim.tv_sec, sb->st_mtim.tv_nsec);
    archive_entry_set_uid(e, c->own ? cb_safepath_sandbox_uid(sb->st_uid, c->own) : 0);
    archive_entry_set_gid(e, c->own ? cb_safepath_sandbox_gid(sb->st_gid, c->own) : 0);
    archive_entry_set_size(e, S_ISREG(sb->st_mode) ? sb->st_size : 0);
    if (link_target)
        archive_entry_set_symlink(e, link_target);
    if (archive_write_header(c->a, e) < ARCHIVE_WARN)
        return write_failed(c, err);
    return 0;
}

/* Copy exactly the size recorded in the header; a file that shrinks
 * meanwhile is padded with zeros by libarchive, one that grows is cut. */
static int write_file_data(struct create_ctx *c, int fd, off_t size, struct cb_error **err)
{
    static __thread char buf[ARCHIVE_BLOCK];
    off_t left = size;
    while (left > 0) {
        size_t want = left < (off_t)sizeof(buf) ? (size_t)left : sizeof(buf);
        ssize_t n = CB_RETRY(read(fd, buf, want));
        if (n < 0)
            return cb_safepath_error(err, errno, "archive", c->top);
        if (n == 0)
            break;
        if (archive_write_data(c->a, buf, (size_t)n) < 0)
            return write_failed(c, err);
        left -= n;
    }
    return archive_write_finish_entry(c->a) < ARCHIVE_WARN ? write_failed(c, err) : 0;
}

/* A regular file, opened for reading only after O_NOFOLLOW|O_NONBLOCK
 * (a FIFO swapped in cannot block us) and checked by fstat on that fd. */
static int add_file(struct create_ctx *c, int dfd, const char *name, const char *rel,
                    struct cb_error **err)
{
    _cleanup_close_ int fd = CB_RETRY(
        openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    struct stat sb;
    if (fd < 0 && cb_safepath_out_of_resources(errno))
        return cb_safepath_error(err, errno, "archive", c->top);
    if (fd < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode))
        return 0; /* gone or replaced meanwhile */
    if (cb_safepath_check_fs(fd) < 0)
        return 0; /* /proc, /sys...: host kernel files, not archived */
    if (write_header(c, rel, &sb, NULL, err) < 0)
        return -1;
    return write_file_data(c, fd, sb.st_size, err);
}

static int add_tree(struct create_ctx *c, int dfd, const char *prefix, int depth,
                    struct cb_error **err);

static int add_entry(struct create_ctx *c, int dfd, const char *name, const char *prefix,
                     int depth, struct cb_error **err)
{
    if (--c->budget < 0)
        return cb_error_set(err, 0, CB_ERR_TOO_LARGE, "archive %s: more than %ld entries",
                            c->top, CREATE_MAX_ENTRIES);
    _cleanup_free_ char *rel = *prefix ? cb_xasprintf("%s/%s", prefix, name) : cb_xstrdup(name);
    struct stat sb;
    if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    if (S_ISREG(sb.st_mode))
        return add_file(c, dfd, name, rel, err);
    if (S_ISLNK(sb.st_mode)) {
        _cleanup_free_ char *target = cb_safepath_readlink(dfd, name);
        return target ? write_header(c, rel, &sb, target, err) : 0;
    }
    if (!S_ISDIR(sb.st_mode))
        return 0; /* devices, fifos, sockets are not archived */
    _cleanup_close_ int sub =
        CB_RETRY(openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (sub < 0 && cb_safepath_out_of_resources(errno))
        return cb_safepath_error(err, errno, "archive", c->top);
    if (sub < 0 || fstat(sub, &sb) < 0 || cb_safepath_check_fs(sub) < 0)
        return 0; /* gone, or a pseudo file system: not descended */
    if (write_header(c, rel, &sb, NULL, err) < 0)
        return -1;
    return add_tree(c, sub, rel, depth + 1, err);
}

struct tree_walk {
    struct create_ctx *c;
    const char *prefix;
    int depth;
    struct cb_error **err;
};

static int add_one(int dfd, const char *name, void *arg)
{
    struct tree_walk *w = arg;
    return add_entry(w->c, dfd, name, w->prefix, w->depth, w->err) < 0 ? 1 : 0;
}

static int add_tree(struct create_ctx *c, int dfd, const char *prefix, int depth,
                    struct cb_error **err)
{
    if (depth > CREATE_MAX_DEPTH)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "archive %s: tree deeper than %d levels", c->top, CREATE_MAX_DEPTH);
    /* One descriptor per level (cb_dir_each reads dfd itself), not two. */
    struct tree_walk w = {c, prefix, depth, err};
    int r = cb_dir_each(dfd, add_one, &w);
    if (r < 0)
        return cb_safepath_error(err, -r, "archive", c->top);
    return r > 0 ? -1 : 0;
}

int cb_fs_archive_create_as(int root, const char *path, int out_fd,
                            const struct cb_fs_owner *own, struct cb_error **err)
{
    _cleanup_free_ char *norm = cb_fs_normalize(path, err);
    if (!norm)
        return -1;
    _cleanup_close_ int p = cb_safepath_open(root, norm, O_PATH, 0);
    if (p < 0)
        return cb_safepath_error(err, -p, "archive", norm);
    struct stat sb;
    if (fstat(p, &sb) < 0)
        return cb_safepath_error(err, errno, "archive", norm);
    if (!S_ISDIR(sb.st_mode) && !S_ISREG(sb.st_mode))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "archive %s: not a file or directory", norm);
    int fsr = cb_safepath_check_fs(p);
    if (fsr < 0)
        return cb_safepath_error(err, -fsr, "archive", norm);
    _cleanup_(archive_write_freep) struct archive *a = archive_write_new();
    if (!a)
        abort();
    struct create_ctx c = {.a = a, .own = own, .budget = CREATE_MAX_ENTRIES, .top = norm};
    if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
        archive_write_open_fd(a, out_fd) != ARCHIVE_OK)
        return write_failed(&c, err);
    int r;
    if (S_ISDIR(sb.st_mode)) {
        /* Members are named relative to the directory, so extracting the
         * archive into another directory reproduces the tree there. */
        _cleanup_close_ int dfd = cb_safepath_reopen(p, O_RDONLY | O_DIRECTORY);
        if (dfd < 0)
            return cb_safepath_error(err, -dfd, "archive", norm);
        r = add_tree(&c, dfd, "", 0, err);
    } else {
        /* A single file is stored under its own name. */
        const char *base = strrchr(norm, '/') + 1;
        _cleanup_close_ int fd = cb_safepath_reopen(p, O_RDONLY | O_NONBLOCK);
        if (fd < 0)
            return cb_safepath_error(err, -fd, "archive", norm);
        r = fstat(fd, &sb) < 0 ? cb_safepath_error(err, errno, "archive", norm)
            : write_header(&c, *base ? base : "file", &sb, NULL, err);
        if (r == 0)
            r = write_file_data(&c, fd, sb.st_size, err);
    }
    if (r < 0)
        return r;
    if (archive_write_close(a) != ARCHIVE_OK)
        return write_failed(&c, err);
    return 0;
}

int cb_fs_archive_create(int root, const char *path, int out_fd,
                         struct cb_error **err)
{
    return cb_fs_archive_create_as(root, path, out_fd, NULL, err);
}
