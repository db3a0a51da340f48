/* fsops.c — file operations inside a sandbox root (see fsops.h).
 *
 * Every sandbox path is resolved by safepath.c below `root`; operations on a
 * final component that must not be followed (write, stat, remove, mkdir,
 * move) use an fd of the parent and the bare name with the *at() calls that
 * never follow a final symlink. Trees (list, remove -r, watch) are walked
 * with directory fds opened O_NOFOLLOW relative to their parent fd. Sandbox
 * code racing against us can therefore only ever redirect an operation to
 * another place *inside* its own root. */
#include "fsops.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rootfs.h"
#include "safepath.h"

/* Trees deeper than this are refused by remove -r (each level holds a
 * descriptor of the daemon's). A path of CB_FS_MAX_PATH bytes cannot name
 * deeper trees through the API anyway except with 1-byte names. */
#define REMOVE_MAX_DEPTH 256
/* Entries remove -r deletes in one call: bounds the time a sandbox that
 * keeps creating files can hold a worker thread. */
#define REMOVE_MAX_ENTRIES 10000000L
/* How often remove retries a directory the sandbox keeps refilling or
 * swapping for a symlink. */
#define REMOVE_ATTEMPTS 8
/* list depth is clamped to this. */
#define LIST_MAX_DEPTH 64
/* How often open_write retries when the sandbox keeps swapping the final
 * component between "missing" and "symlink". */
#define WRITE_ATTEMPTS 16

void cb_fs_stat_clear(struct cb_fs_stat *st)
{
    if (!st)
        return;
    free(st->path);
    free(st->link_target);
    st->path = NULL;
    st->link_target = NULL;
}

char *cb_fs_normalize(const char *path, struct cb_error **err)
{
    if (!path || !*path) {
        cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "empty path");
        return NULL;
    }
    size_t len = strnlen(path, CB_FS_MAX_PATH + 1);
    if (len > CB_FS_MAX_PATH) {
        cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "path longer than %d bytes",
                     CB_FS_MAX_PATH);
        return NULL;
    }
    char *out = cb_xmalloc(len + 2);
    size_t o = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        size_t clen = strcspn(p, "/");
        if (clen == 0)
            break;
        if (clen > NAME_MAX) {
            free(out);
            cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                         "path component longer than %d bytes", NAME_MAX);
            return NULL;
        }
        if (!(clen == 1 && p[0] == '.')) {
            out[o++] = '/';
            memcpy(out + o, p, clen);
            o += clen;
        }
        p += clen;
    }
    if (o == 0)
        out[o++] = '/';
    out[o] = '\0';
    return out;
}

/* ---- read / write / stat ------------------------------------------------ */

int cb_fs_open_read(int root, const char *path, const struct cb_fs_owner *own,
                    struct cb_fs_stat *st, struct cb_error **err)
{
    _cleanup_free_ char *norm = cb_fs_normalize(path, err);
    if (!norm)
        return -1;
    /* O_PATH first: opening a FIFO or device for reading could block or have
     * side effects, so the type is checked before any open for I/O. */
    _cleanup_close_ int p = cb_safepath_open(root, norm, O_PATH, 0);
    if (p < 0)
        return cb_safepath_error(err, -p, "read", norm);
    struct stat sb;
    if (fstat(p, &sb) < 0)
        return cb_safepath_error(err, errno, "read", norm);
    if (S_ISDIR(sb.st_mode))
        return cb_error_set(err, EISDIR, CB_ERR_BAD_REQUEST, "read %s", norm);
    if (!S_ISREG(sb.st_mode))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "read %s: not a regular file", norm);
    int r = cb_safepath_check_fs(p);
    if (r < 0)
        return cb_safepath_error(err, -r, "read", norm);
    int fd = cb_safepath_reopen(p, O_RDONLY);
    if (fd < 0)
        return cb_safepath_error(err, -fd, "read", norm);
    if (st) {
        if (fstat(fd, &sb) < 0) {
            int e = errno;
            close(fd);
            return cb_safepath_error(err, e, "read", norm);
        }
        cb_safepath_fill_stat(st, &sb, cb_xstrdup(norm), NULL, own);
    }
    return fd;
}

/* Open `leaf` in dirfd for writing: create it (O_EXCL, so nothing existing
 * is ever followed) or, when a regular file is there, truncate that very
 * inode. A symlink in the way is unlinked, never followed; a directory,
 * FIFO, device or socket is refused. *created says which case happened. */
static int create_or_truncate(int dirfd, const char *leaf, bool *created)
{
    for (int attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
        int fd = CB_RETRY(openat(dirfd, leaf,
                                 O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                                     O_CLOEXEC | O_NOCTTY,
                                 0600));
        if (fd >= 0) {
            *created = true;
            return fd;
        }
        if (errno != EEXIST)
            return -errno;
        _cleanup_close_ int p =
            CB_RETRY(openat(dirfd, leaf, O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (p < 0) {
            if (errno == ENOENT)
                continue;
            return -errno;
        }
        struct stat sb;
        if (fstat(p, &sb) < 0)
            return -errno;
        if (S_ISLNK(sb.st_mode)) {
            if (unlinkat(dirfd, leaf, 0) < 0 && errno != ENOENT)
                return -errno;
            continue;
        }
        if (S_ISDIR(sb.st_mode))
            return -EISDIR;
        if (!S_ISREG(sb.st_mode))
            return -ENODEV;
        int r = cb_safepath_check_fs(p);
        if (r < 0)
            return r;
        *created = false;
        return cb_safepath_reopen(p, O_WRONLY | O_TRUNC);
    }
    return -EBUSY;
}

int cb_fs_open_write(int root, const char *path, uint32_t mode, bool mkdirs,
                     const struct cb_fs_owner *own, struct cb_error **err)
{
    _cleanup_free_ char *norm = cb_fs_normalize(path, err);
    if (!norm)
        return -1;
    _cleanup_free_ char *parent = NULL;
    const char *leaf = NULL;
    _cleanup_close_ int pfd = cb_safepath_open_parent(root, norm, &parent, &leaf);
    if (pfd == -ENOENT && mkdirs && parent == NULL) {
        /* Split again to learn the parent's path, then create it. */
        _cleanup_free_ char *dir = cb_xstrdup(norm);
        char *slash = strrchr(dir, '/');
        slash[slash == dir ? 1 : 0] = '\0';
        _cleanup_close_ int made = cb_safepath_mkdirs(root, dir, 0755, own, err);
        if (made < 0)
            return cb_error_wrap(err, "write %s", norm);
        pfd = cb_safepath_open_parent(root, norm, &parent, &leaf);
    }
    if (pfd < 0)
        return cb_safepath_error(err, -pfd, "write", norm);
    int r = cb_safepath_check_fs(pfd);
    if (r < 0)
        return cb_safepath_error(err, -r, "write", norm);
    bool created = false;
    _cleanup_close_ int fd = create_or_truncate(pfd, leaf, &created);
    if (fd == -ENODEV)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "write %s: not a regular file", norm);
    if (fd < 0)
        return cb_safepath_error(err, -fd, "write", norm);
    /* A new file belongs to the sandbox user with the requested mode; an
     * existing file keeps its owner and mode, as with `cat > file`. */
    if (created) {
        r = cb_safepath_own(fd, mode, own);
        if (r < 0)
            return cb_safepath_error(err, -r, "write", norm);
    }
    return steal_fd(fd);
}

int cb_fs_stat(int root, const char *path, const struct cb_fs_owner *own,
               struct cb_fs_stat *out, struct cb_error **err)
{
    _cleanup_free_ char *norm = cb_fs_normalize(path, err);
    if (!norm)
        return -1;
    /* O_PATH|O_NOFOLLOW yields the final symlink itself (intermediate ones
     * are followed, below root only); fstat and readlinkat(fd, "") then
     * describe exactly that inode. */
    _cleanup_close_ int p = cb_safepath_open(root, norm, O_PATH | O_NOFOLLOW, 0);
    if (p < 0)
        return cb_safepath_error(err, -p, "stat", norm);
    struct stat sb;
    if (fstat(p, &sb) < 0)
        return cb_safepath_error(err, errno, "stat", norm);
    char *target = S_ISLNK(sb.st_mode) ? cb_safepath_readlink(p, "") : NULL;
    cb_safepath_fill_stat(out, &sb, cb_xstrdup(norm), target, own);
    return 0;
}

/* ---- list --------------------------------------------------------------- */

struct list_ctx {
    struct cb_fs_stat *items;
    size_t count, cap;
    int max_depth;
    const struct cb_fs_owner *own;
    const char *top; /* for messages */
};

static void list_free(struct list_ctx *c)
{
    for (size_t i = 0; i < c->count; i++)
        cb_fs_stat_clear(&c->items[i]);
    free(c->items);
    c->items = NULL;
    c->count = c->cap = 0;
}

static DIR *open_dir_stream(int dfd)
{
    int dup = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0)
        return NULL;
    DIR *d = fdopendir(dup);
    if (!d)
        close(dup);
    return d;
}

static void closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

static int list_dir(struct list_ctx *c, int dfd, const char *dirpath, int level,
                    struct cb_error **err);

/* Add one entry of dfd; descend into it when it is a real directory (never
 * through a symlink: O_NOFOLLOW) and the depth allows. */
static int list_entry(struct list_ctx *c, int dfd, const char *dirpath,
                      const char *name, int level, struct cb_error **err)
{
    if (c->count >= CB_FS_MAX_LIST)
        return cb_error_set(err, 0, CB_ERR_TOO_LARGE,
                            "list %s: more than %d entries", c->top, CB_FS_MAX_LIST);
    struct stat sb;
    if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        return 0; /* removed meanwhile */
    if (c->count == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->items = cb_xrealloc(c->items, c->cap * sizeof(*c->items));
    }
    char *target = S_ISLNK(sb.st_mode) ? cb_safepath_readlink(dfd, name) : NULL;
    _cleanup_free_ char *path = cb_safepath_join(dirpath, name);
    cb_safepath_fill_stat(&c->items[c->count++], &sb, cb_xstrdup(path), target, c->own);
    if (!S_ISDIR(sb.st_mode) || level >= c->max_depth)
        return 0;
    _cleanup_close_ int sub =
        CB_RETRY(openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (sub < 0 && cb_safepath_out_of_resources(errno))
        return cb_safepath_error(err, errno, "list", c->top);
    if (sub < 0)
        return 0; /* swapped for something else meanwhile: list it, skip it */
    return list_dir(c, sub, path, level + 1, err);
}

/* The walks below read each directory through its own descriptor
 * (cb_dir_each): one descriptor per level of a tree, not two (a DIR
 * stream's copy), so a deep tree costs the daemon half as many. */
struct list_walk {
    struct list_ctx *c;
    const char *dirpath;
    int level;
    struct cb_error **err;
};

static int list_one(int dfd, const char *name, void *arg)
{
    struct list_walk *w = arg;
    return list_entry(w->c, dfd, w->dirpath, name, w->level, w->err) < 0 ? 1 : 0;
}

static int list_dir(struct list_ctx *c, int dfd, const char *dirpath, int level,
                    struct cb_error **err)
{
    struct list_walk w = {c, dirpath, level, err};
    int r = cb_dir_each(dfd, list_one, &w);
    if (r < 0)
        return cb_safepath_error(err, -r, "list", c->top);
    return r > 0 ? -1 : 0;
}

static int compare_stat_path(const void *a, const void *b)
{
    return strcmp(((const struct cb_fs_stat *)a)->path,
                  ((const struct cb_fs_stat *)b)->path);
}

int cb_fs_list(int root, const char *path, int depth,
               const struct cb_fs_owner *own, struct cb_fs_stat **items,
               size_t *count, struct cb_error **err)
{
    *items = NULL;
    *count = 0;
    _cleanup_free_ char *norm = cb_fs_normalize(path, err);
    if (!norm)
        return -1;
    if (depth < 1)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "list %s: depth must be >= 1", norm);
    _cleanup_close_ int dfd = cb_safepath_open(root, norm, O_RDONLY | O_DIRECTORY, 0);
    if (dfd < 0)
        return cb_safepath_error(err, -dfd, "list", norm);
    struct list_ctx c = {
        .max_depth = depth > LIST_MAX_DEPTH ? LIST_MAX_DEPTH : depth,
        .own = own,
        .top = norm,
    };
    if (list_dir(&c, dfd, norm, 1, err) < 0) {
        list_free(&c);
        return -1;
    }
    if (c.count)
        qsort(c.items, c.count, sizeof(*c.items), compare_stat_path);
    *items = c.items;
    *count = c.count;
    return 0;
}

/* ---- mkdir / move ------------------------------------------------------- */

int cb_fs_mkdir(int root, const char *path, bool parents, uint32_t mode,
                const struct cb_fs_owner *own, struct cb_error **err)
{
    _cleanup_free_ char *norm = cb_fs_normalize(path, err);
    if (!norm)
        return -1;
    if (parents) {
        _cleanup_close_ int fd = cb_safepath_mkdirs(root, norm, mode, own, err);
        return fd < 0 ? -1 : 0;
    }
    _cleanup_free_ char *parent = NULL;
    const char *leaf = NULL;
    _cleanup_close_ int pfd = cb_safepath_open_parent(root, norm, &parent, &leaf);
    if (pfd == -EINVAL) /* "/" or ".../..": always an existing directory */
        return cb_error_set(err, EEXIST, CB_ERR_BAD_REQUEST, "mkdir %s", norm);
    if (pfd < 0)
        return cb_safepath_error(err, -pfd, "mkdir", norm);
    int r = cb_safepath_check_fs(pfd);
    if (r < 0)
        return cb_safepath_error(err, -r, "mkdir", norm);
    /* mkdirat never follows: an existing symlink named leaf gives EEXIST. */
    if (mkdirat(pfd, leaf, 0700) < 0)
        return cb_safepath_error(err, errno, "mkdir", norm);
    _cleanup_close_ int fd =
        CB_RETRY(openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd < 0)
        return cb_safepath_error(err, errno, "mkdir", norm);
    r = cb_safepath_own(fd, mode, own);
    return r < 0 ? cb_safepath_error(err, -r, "mkdir", norm) : 0;
}

int cb_fs_move(int root, const char *from, const char *to,
               struct cb_error **err)
{
    _cleanup_free_ char *nf = cb_fs_normalize(from, err);
    if (!nf)
        return -1;
    _cleanup_free_ char *nt = cb_fs_normalize(to, err);
    if (!nt)
        return -1;
    _cleanup_free_ char *pf = NULL, *pt = NULL;
    const char *lf = NULL, *lt = NULL;
    _cleanup_close_ int dfrom = cb_safepath_open_parent(root, nf, &pf, &lf);
    if (dfrom < 0)
        return cb_safepath_error(err, -dfrom, "move", nf);
    _cleanup_close_ int dto = cb_safepath_open_parent(root, nt, &pt, &lt);
    if (dto < 0)
        return cb_safepath_error(err, -dto, "move to", nt);
    int r = cb_safepath_check_fs(dfrom);
    if (r == 0)
        r = cb_safepath_check_fs(dto);
    if (r < 0)
        return cb_safepath_error(err, -r, "move", nf);
    /* renameat2 works on the two names in their parent fds: a symlink as
     * either final component is moved or replaced, never followed. */
    if (renameat2(dfrom, lf, dto, lt, 0) < 0)
        return cb_error_set(err, errno,
                            errno == ENOTEMPTY ? CB_ERR_CONFLICT
                            : errno == ENOENT  ? CB_ERR_NOT_FOUND
                                               : CB_ERR_BAD_REQUEST,
                            "move %s to %s", nf, nt);
    return 0;
}

/* ---- remove ------------------------------------------------------------- */

struct remove_ctx {
    long budget;
    const char *top;
};

static int remove_tree(struct remove_ctx *c, int dfd, int depth, struct cb_error **err);

/* Remove entry `name` of dfd: unlinkat first (files, symlinks, fifos: the
 * name itself goes, nothing is followed); a directory is opened O_NOFOLLOW
 * relative to dfd, emptied, then removed. */
static int remove_entry(struct remove_ctx *c, int dfd, const char *name,
                        int depth, struct cb_error **err)
{
    if (--c->budget < 0)
        return cb_error_set(err, 0, CB_ERR_LIMIT,
                            "remove %s: more than %ld entries", c->top,
                            REMOVE_MAX_ENTRIES);
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR)
        return cb_safepath_error(err, errno, "remove", c->top);
    _cleanup_close_ int sub =
        CB_RETRY(openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (sub < 0 && cb_safepath_out_of_resources(errno))
        return cb_safepath_error(err, errno, "remove", c->top);
    if (sub < 0)
        return 0; /* swapped meanwhile; the final rmdir of the parent tells */
    if (remove_tree(c, sub, depth + 1, err) < 0)
        return -1;
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && errno != ENOTEMPTY)
        return cb_safepath_error(err, errno, "remove", c->top);
    return 0;
}

struct remove_walk {
    struct remove_ctx *c;
    int depth;
    struct cb_error **err;
};

static int remove_one(int dfd, const char *name, void *arg)
{
    struct remove_walk *w = arg;
    return remove_entry(w->c, dfd, name, w->depth, w->err) < 0 ? 1 : 0;
}

static int remove_tree(struct remove_ctx *c, int dfd, int depth, struct cb_error **err)
{
    /* A pseudo file system mounted inside the tree (a cgroupfs: rmdir
     * would remove cgroups) stops the removal. */
    int r = cb_safepath_check_fs(dfd);
    if (r < 0)
        return cb_safepath_error(err, -r, "remove", c->top);
    if (depth > REMOVE_MAX_DEPTH)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "remove %s: tree deeper than %d levels", c->top,
                            REMOVE_MAX_DEPTH);
    struct remove_walk w = {c, depth, err};
    r = cb_dir_each(dfd, remove_one, &w);
    if (r < 0)
        return cb_safepath_error(err, -r, "remove", c->top);
    return r > 0 ? -1 : 0;
}

int cb_fs_remove(int root, const char *path, bool recursive,
                 struct cb_error **err)
{
    _cleanup_free_ char *norm = cb_fs_normalize(path, err);
    if (!norm)
        return -1;
    _cleanup_free_ char *parent = NULL;
    const char *leaf = NULL;
    _cleanup_close_ int pfd = cb_safepath_open_parent(root, norm, &parent, &leaf);
    if (pfd == -EINVAL)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "remove %s: refusing to remove this path", norm);
    if (pfd < 0)
        return cb_safepath_error(err, -pfd, "remove", norm);
    int r = cb_safepath_check_fs(pfd);
    if (r < 0)
        return cb_safepath_error(err, -r, "remove", norm);
    struct remove_ctx c = {.budget = REMOVE_MAX_ENTRIES, .top = norm};
    for (int attempt = 0; attempt < REMOVE_ATTEMPTS; attempt++) {
        if (unlinkat(pfd, leaf, 0) == 0)
            return 0;
        if (errno != EISDIR)
            return cb_safepath_error(err, errno, "remove", norm);
        if (!recursive) {
            if (unlinkat(pfd, leaf, AT_REMOVEDIR) == 0)
                return 0;
            return cb_safepath_error(err, errno, "remove", norm);
        }
        _cleanup_close_ int dfd =
            CB_RETRY(openat(pfd, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (dfd < 0) {
            if (errno == ENOTDIR || errno == ELOOP || errno == ENOENT)
                continue; /* swapped for a symlink or file: unlink that */
            return cb_safepath_error(err, errno, "remove", norm);
        }
        if (remove_tree(&c, dfd, 0, err) < 0)
            return -1;
        if (unlinkat(pfd, leaf, AT_REMOVEDIR) == 0)
            return 0;
        if (errno != ENOTEMPTY && errno != ENOTDIR)
            return cb_safepath_error(err, errno, "remove", norm);
    }
    return cb_error_set(err, 0, CB_ERR_CONFLICT,
                        "remove %s: directory keeps changing", norm);
}

/* ---- watch -------------------------------------------------------------- */

#define WATCH_MAX_DIRS 8192
#define WATCH_MAX_DEPTH 64
/* Events decoded per cb_fs_watch_read call; the fd stays readable when more
 * are pending, so a busy sandbox cannot hold the caller in one call. */
#define WATCH_MAX_EVENTS 4096
#define WATCH_MASK                                                             \
    (IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM |      \
     IN_MOVED_TO | IN_ONLYDIR | IN_EXCL_UNLINK)

struct watch_dir {
    int wd;
    char *path; /* sandbox path of the watched directory */
};

struct cb_fs_watch {
    int ifd;
    int root; /* dup of the sandbox root, for directories created later */
    bool recursive;
    struct watch_dir *dirs;
    size_t ndirs, cap;
};

struct event_list {
    struct cb_fs_event *v;
    size_t n, cap;
};

static void event_push(struct event_list *l, enum cb_fs_event_type type,
                       const char *path)
{
    /* One write usually yields IN_MODIFY then IN_CLOSE_WRITE: report once. */
    if (l->n && l->v[l->n - 1].type == type && !strcmp(l->v[l->n - 1].path, path))
        return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->v = cb_xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = (struct cb_fs_event){.type = type, .path = cb_xstrdup(path)};
}

static struct watch_dir *watch_find(struct cb_fs_watch *w, int wd)
{
    for (size_t i = 0; i < w->ndirs; i++)
        if (w->dirs[i].wd == wd)
            return &w->dirs[i];
    return NULL;
}

/* Watch the directory open as dirfd (a real or O_PATH fd obtained safely).
 * inotify_add_watch only takes a path, so it is given the /proc/self/fd
 * magic link of that fd, which names exactly that inode. */
static int watch_add(struct cb_fs_watch *w, int dirfd, const char *path,
                     struct cb_error **err)
{
    char proc[64];
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dirfd);
    int wd = inotify_add_watch(w->ifd, proc, WATCH_MASK);
    if (wd < 0)
        return cb_error_set(err, errno, errno == ENOSPC ? CB_ERR_LIMIT : CB_ERR_INTERNAL,
                            "watch %s", path);
    struct watch_dir *known = watch_find(w, wd);
    if (known) { /* same directory seen again (moved): keep the new name */
        free(known->path);
        known->path = cb_xstrdup(path);
        return 0;
    }
    if (w->ndirs >= WATCH_MAX_DIRS) {
        inotify_rm_watch(w->ifd, wd);
        return cb_error_set(err, 0, CB_ERR_LIMIT,
                            "watch %s: more than %d directories", path, WATCH_MAX_DIRS);
    }
    if (w->ndirs == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 16;
        w->dirs = cb_xrealloc(w->dirs, w->cap * sizeof(*w->dirs));
    }
    w->dirs[w->ndirs++] = (struct watch_dir){.wd = wd, .path = cb_xstrdup(path)};
    return 0;
}

/* Watch every subdirectory of dfd (opened O_NOFOLLOW: symlinks are never
 * descended). When ev is set, also report each entry found as created: they
 * appeared in a new directory before its watch existed. */
static int watch_walk(struct cb_fs_watch *w, int dfd, const char *path, int depth,
                      struct event_list *ev, struct cb_error **err)
{
    if (depth > WATCH_MAX_DEPTH)
        return 0;
    _cleanup_(closedirp) DIR *d = open_dir_stream(dfd);
    if (!d)
        return cb_safepath_error(err, errno, "watch", path);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        _cleanup_free_ char *sub = cb_safepath_join(path, de->d_name);
        if (ev)
            event_push(ev, CB_FS_EV_CREATE, sub);
        if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
            continue;
        _cleanup_close_ int sfd = CB_RETRY(
            openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (sfd < 0)
            continue;
        if (watch_add(w, sfd, sub, err) < 0 || watch_walk(w, sfd, sub, depth + 1, ev, err) < 0)
            return -1;
    }
    return 0;
}

int cb_fs_watch_open(int root, const char *path, bool recursive,
                     struct cb_fs_watch **out, struct cb_error **err)
{
    *out = NULL;
    _cleanup_free_ char *norm = cb_fs_normalize(path, err);
    if (!norm)
        return -1;
    _cleanup_close_ int dfd = cb_safepath_open(root, norm, O_RDONLY | O_DIRECTORY, 0);
    if (dfd < 0)
        return cb_safepath_error(err, -dfd, "watch", norm);
    struct cb_fs_watch *w = cb_xcalloc(1, sizeof(*w));
    w->recursive = recursive;
    w->root = fcntl(root, F_DUPFD_CLOEXEC, 0);
    w->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->root < 0 || w->ifd < 0) {
        int e = errno;
        cb_fs_watch_close(w);
        return cb_error_set(err, e, e == EMFILE ? CB_ERR_LIMIT : CB_ERR_INTERNAL,
                            "watch %s", norm);
    }
    if (watch_add(w, dfd, norm, err) < 0 ||
        (recursive && watch_walk(w, dfd, norm, 1, NULL, err) < 0)) {
        cb_fs_watch_close(w);
        return -1;
    }
    *out = w;
    return 0;
}

int cb_fs_watch_fd(struct cb_fs_watch *w) { return w->ifd; }

static void watch_forget(struct cb_fs_watch *w, int wd)
{
    struct watch_dir *d = watch_find(w, wd);
    if (!d)
        return;
    free(d->path);
    *d = w->dirs[--w->ndirs];
}

/* A directory appeared under a recursive watch: watch it and what is
 * already inside. It is opened by its sandbox path below root, O_NOFOLLOW:
 * if it has been swapped for a symlink meanwhile, nothing is added. */
static int watch_new_dir(struct cb_fs_watch *w, const char *path,
                         struct event_list *ev, struct cb_error **err)
{
    _cleanup_close_ int dfd =
        cb_safepath_open(w->root, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW, 0);
    if (dfd < 0)
        return 0;
    if (watch_add(w, dfd, path, err) < 0)
        return -1;
    return watch_walk(w, dfd, path, 1, ev, err);
}

static int watch_decode(struct cb_fs_watch *w, const struct inotify_event *ie,
                        struct event_list *ev, struct cb_error **err)
{
    if (ie->mask & IN_Q_OVERFLOW)
        return cb_error_set(err, 0, CB_ERR_LIMIT,
                            "watch: too many events, some were lost");
    if (ie->mask & IN_IGNORED) {
        watch_forget(w, ie->wd);
        return 0;
    }
    struct watch_dir *d = watch_find(w, ie->wd);
    if (!d || ie->len == 0 || ie->name[0] == '\0')
        return 0;
    _cleanup_free_ char *path = cb_safepath_join(d->path, ie->name);
    if (ie->mask & IN_CREATE)
        event_push(ev, CB_FS_EV_CREATE, path);
    else if (ie->mask & (IN_MOVED_TO | IN_MOVED_FROM))
        event_push(ev, CB_FS_EV_MOVE, path);
    else if (ie->mask & (IN_MODIFY | IN_CLOSE_WRITE))
        event_push(ev, CB_FS_EV_MODIFY, path);
    else if (ie->mask & IN_DELETE)
        event_push(ev, CB_FS_EV_DELETE, path);
    if (w->recursive && (ie->mask & IN_ISDIR) && (ie->mask & (IN_CREATE | IN_MOVED_TO)))
        return watch_new_dir(w, path, ev, err);
    return 0;
}

int cb_fs_watch_read(struct cb_fs_watch *w, struct cb_fs_event **events,
                     struct cb_error **err)
{
    *events = NULL;
    struct event_list ev = {0};
    char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (ev.n < WATCH_MAX_EVENTS) {
        ssize_t n = read(w->ifd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            cb_fs_events_free(ev.v, (int)ev.n);
            return cb_error_set(err, e, CB_ERR_INTERNAL, "watch: read events");
        }
        for (ssize_t off = 0; off < n;) {
            const struct inotify_event *ie = (const struct inotify_event *)(buf + off);
            off += (ssize_t)(sizeof(*ie) + ie->len);
            if (watch_decode(w, ie, &ev, err) < 0) {
                cb_fs_events_free(ev.v, (int)ev.n);
                return -1;
            }
        }
    }
    *events = ev.v;
    return (int)ev.n;
}

void cb_fs_events_free(struct cb_fs_event *events, int count)
{
    for (int i = 0; i < count; i++)
        free(events[i].path);
    free(events);
}

void cb_fs_watch_close(struct cb_fs_watch *w)
{
    if (!w)
        return;
    if (w->ifd >= 0)
        close(w->ifd);
    if (w->root >= 0)
        close(w->root);
    for (size_t i = 0; i < w->ndirs; i++)
        free(w->dirs[i].path);
    free(w->dirs);
    free(w);
}
