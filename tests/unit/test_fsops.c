/* test_fsops.c — the files library against a temp "sandbox root" and a
 * canary directory next to it (outside the root) whose names, contents,
 * modes, link counts and mtimes must never change, whatever the sandbox
 * side plants: the canary is judged on the host, never by what fsops says. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "error.h"
#include "fsops.h"
#include "runner.h"

static char g_base[256], g_root[PATH_MAX], g_canary[PATH_MAX];
static int g_rootfd = -1;
static char *g_snapshot;
static const struct cb_fs_owner g_own = {
    .uid = 101000, .gid = 101000, .base_uid = 100000, .base_gid = 100000};

static FILE *g_snap_out;

static int snap_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    fprintf(g_snap_out, "%s %o %lld %lld.%09ld %lu %u\n", path + strlen(g_base),
            sb->st_mode, (long long)sb->st_size, (long long)sb->st_mtim.tv_sec,
            sb->st_mtim.tv_nsec, (unsigned long)sb->st_nlink, (unsigned)sb->st_uid);
    if (S_ISREG(sb->st_mode)) {
        char buf[256] = {0};
        int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t n = read(fd, buf, sizeof(buf) - 1);
            fprintf(g_snap_out, "  content=%.*s\n", (int)(n > 0 ? n : 0), buf);
            close(fd);
        }
    }
    return 0;
}

/* Everything under the base directory except the sandbox root: the canary
 * tree plus any name that might appear beside it. */
static char *snapshot(void)
{
    char *s = NULL;
    size_t len = 0;
    g_snap_out = open_memstream(&s, &len);
    nftw(g_canary, snap_cb, 16, FTW_PHYS);
    DIR *d = opendir(g_base);
    struct dirent *de;
    while (d && (de = readdir(d)))
        fprintf(g_snap_out, "base entry %s\n", de->d_name);
    if (d)
        closedir(d);
    fclose(g_snap_out);
    return s;
}

static void write_host_file(const char *path, const char *content)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, content, strlen(content)), (long long)strlen(content));
    close(fd);
}

static char *rp(const char *rel) { return cb_xasprintf("%s%s", g_root, rel); }

static void setup(void)
{
    snprintf(g_base, sizeof(g_base), "/tmp/cb-fsops.XXXXXX");
    ASSERT(mkdtemp(g_base));
    snprintf(g_root, sizeof(g_root), "%s/root", g_base);
    snprintf(g_canary, sizeof(g_canary), "%s/canary", g_base);
    ASSERT_EQ(mkdir(g_root, 0755), 0);
    ASSERT_EQ(mkdir(g_canary, 0755), 0);
    char *p = cb_xasprintf("%s/file", g_canary);
    write_host_file(p, "CANARY");
    free(p);
    p = cb_xasprintf("%s/sub", g_canary);
    ASSERT_EQ(mkdir(p, 0755), 0);
    free(p);
    p = cb_xasprintf("%s/sub/deep", g_canary);
    write_host_file(p, "DEEP");
    free(p);
    /* Old mtimes, so that any write shows up even within one second. */
    g_rootfd = open(g_root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    ASSERT(g_rootfd >= 0);
    g_snapshot = snapshot();
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

/* Check the canary, then remove the whole temp tree. */
static void teardown(void)
{
    char *now = snapshot();
    if (strcmp(now, g_snapshot) != 0)
        FAIL("canary changed:\nbefore:\n%s\nafter:\n%s", g_snapshot, now);
    free(now);
    close(g_rootfd);
    nftw(g_base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void assert_canary(void)
{
    char *now = snapshot();
    if (strcmp(now, g_snapshot) != 0)
        FAIL("canary changed:\nbefore:\n%s\nafter:\n%s", g_snapshot, now);
    free(now);
}

#define ASSERT_ERR(expr, kind_)                                                \
    do {                                                                       \
        struct cb_error *e_ = NULL;                                            \
        struct cb_error **err = &e_;                                           \
        long long r_ = (long long)(expr);                                      \
        if (r_ >= 0)                                                           \
            FAIL("%s succeeded, expected an error", #expr);                    \
        if (!e_)                                                               \
            FAIL("%s: no error object", #expr);                                \
        if (e_->kind != (kind_))                                               \
            FAIL("%s: kind %d (%s), expected %s", #expr, e_->kind,             \
                 e_->message, #kind_);                                         \
        if (strstr(e_->message, g_root))                                       \
            FAIL("message names a host path: %s", e_->message);                \
        cb_error_free(e_);                                                     \
    } while (0)

#define ASSERT_OK(expr)                                                        \
    ({                                                                         \
        struct cb_error *e_ = NULL;                                            \
        struct cb_error **err = &e_;                                           \
        long long r_ = (long long)(expr);                                      \
        if (r_ < 0)                                                            \
            FAIL("%s: %s", #expr, e_ ? e_->message : "(no error)");            \
        r_;                                                                    \
    })

static void write_file(const char *path, const char *content, uint32_t mode, bool mkdirs)
{
    int fd = (int)ASSERT_OK(cb_fs_open_write(g_rootfd, path, mode, mkdirs, &g_own, err));
    ASSERT_EQ(cb_write_all(fd, content, strlen(content)), 0);
    close(fd);
}

static char *read_file(const char *path)
{
    int fd = (int)ASSERT_OK(cb_fs_open_read(g_rootfd, path, &g_own, NULL, err));
    char *buf = cb_xcalloc(1, 65536);
    ssize_t n = read(fd, buf, 65535);
    ASSERT(n >= 0);
    close(fd);
    return buf;
}

static bool host_exists(const char *rel)
{
    struct stat sb;
    char *p = rp(rel);
    bool r = lstat(p, &sb) == 0;
    free(p);
    return r;
}

static struct stat host_lstat(const char *rel)
{
    struct stat sb;
    char *p = rp(rel);
    if (lstat(p, &sb) < 0)
        FAIL("lstat %s failed", rel);
    free(p);
    return sb;
}

static void host_symlink(const char *target, const char *rel)
{
    char *p = rp(rel);
    ASSERT_EQ(symlink(target, p), 0);
    free(p);
}

static void host_mkdir(const char *rel)
{
    char *p = rp(rel);
    ASSERT_EQ(mkdir(p, 0755), 0);
    free(p);
}

/* ---- tar building (libarchive writer: it stores any name we give) ----- */

struct member {
    const char *name;
    mode_t type;        /* AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFCHR, 0 = hardlink */
    const char *data;   /* file content, symlink or hardlink target */
    size_t size;        /* file size when data is NULL (filled with 'x') */
};

static int make_tar(const struct member *m, size_t n, bool gzip)
{
    int fd = memfd_create("tar", MFD_CLOEXEC);
    ASSERT(fd >= 0);
    struct archive *a = archive_write_new();
    ASSERT_EQ(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    if (gzip)
        ASSERT_EQ(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    ASSERT_EQ(archive_write_open_fd(a, fd), ARCHIVE_OK);
    for (size_t i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, m[i].name);
        archive_entry_set_perm(e, m[i].type == AE_IFDIR ? 0755 : 0644);
        archive_entry_set_mtime(e, 1000000, 0);
        if (m[i].type == 0) {
            archive_entry_set_filetype(e, AE_IFREG);
            archive_entry_set_hardlink(e, m[i].data);
        } else {
            archive_entry_set_filetype(e, m[i].type);
        }
        size_t size = 0;
        if (m[i].type == AE_IFREG)
            size = m[i].data ? strlen(m[i].data) : m[i].size;
        if (m[i].type == AE_IFLNK)
            archive_entry_set_symlink(e, m[i].data);
        if (m[i].type == AE_IFCHR)
            archive_entry_set_rdev(e, makedev(1, 3));
        archive_entry_set_size(e, (la_int64_t)size);
        ASSERT(archive_write_header(a, e) >= ARCHIVE_WARN);
        if (m[i].type == AE_IFREG && m[i].data)
            archive_write_data(a, m[i].data, size);
        for (size_t left = m[i].data ? 0 : size; left > 0;) {
            char chunk[4096];
            memset(chunk, 'x', sizeof(chunk));
            size_t k = left < sizeof(chunk) ? left : sizeof(chunk);
            archive_write_data(a, chunk, k);
            left -= k;
        }
        archive_entry_free(e);
    }
    ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    ASSERT_EQ(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* ---- normal behaviour ---------------------------------------------------- */

TEST(fs_normalize)
{
    struct cb_error *e = NULL;
    char *n = cb_fs_normalize("a//b/./c/", &e);
    ASSERT_STREQ(n, "/a/b/c");
    free(n);
    n = cb_fs_normalize("/x/../y", &e);
    ASSERT_STREQ(n, "/x/../y");
    free(n);
    n = cb_fs_normalize("///", &e);
    ASSERT_STREQ(n, "/");
    free(n);
    n = cb_fs_normalize(".", &e);
    ASSERT_STREQ(n, "/");
    free(n);
    ASSERT(cb_fs_normalize("", &e) == NULL);
    ASSERT_EQ(e->kind, CB_ERR_BAD_REQUEST);
    cb_error_free(e);
    e = NULL;
    char *longp = cb_xcalloc(1, 5000);
    memset(longp, 'a', 4999);
    for (int i = 1; i < 4999; i += 2)
        longp[i] = '/';
    ASSERT(cb_fs_normalize(longp, &e) == NULL);
    cb_error_free(e);
    e = NULL;
    char comp[300];
    memset(comp, 'b', sizeof(comp) - 1);
    comp[299] = '\0';
    ASSERT(cb_fs_normalize(comp, &e) == NULL);
    ASSERT_EQ(e->kind, CB_ERR_BAD_REQUEST);
    cb_error_free(e);
    free(longp);
}

TEST(fs_write_read_stat)
{
    setup();
    write_file("/a/b/c.txt", "hello", 0640, true);
    struct cb_fs_stat st = {0};
    int fd = (int)ASSERT_OK(cb_fs_open_read(g_rootfd, "/a/b/c.txt", &g_own, &st, err));
    char buf[16] = {0};
    ASSERT_EQ(read(fd, buf, sizeof(buf)), 5);
    close(fd);
    ASSERT_STREQ(buf, "hello");
    ASSERT_STREQ(st.path, "/a/b/c.txt");
    ASSERT_EQ(st.type, CB_FS_FILE);
    ASSERT_EQ(st.size, 5);
    ASSERT_EQ(st.mode, 0640);
    ASSERT_EQ(st.uid, 1000);
    ASSERT_EQ(st.gid, 1000);
    cb_fs_stat_clear(&st);
    struct stat hs = host_lstat("/a/b");
    ASSERT_EQ(hs.st_uid, 101000);
    ASSERT(S_ISDIR(hs.st_mode));
    /* Overwrite truncates and keeps owner and mode. */
    write_file("/a/b/c.txt", "x", 0600, false);
    ASSERT_STREQ(read_file("a/b/c.txt"), "x");
    ASSERT_EQ(host_lstat("/a/b/c.txt").st_mode & 07777, 0640);
    /* Missing parent without mkdirs, reading a missing file or a directory. */
    ASSERT_ERR(cb_fs_open_write(g_rootfd, "/nope/f", 0644, false, &g_own, err), CB_ERR_NOT_FOUND);
    ASSERT_ERR(cb_fs_open_read(g_rootfd, "/nope", &g_own, NULL, err), CB_ERR_NOT_FOUND);
    ASSERT_ERR(cb_fs_open_read(g_rootfd, "/a", &g_own, NULL, err), CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_open_write(g_rootfd, "/a", 0644, false, &g_own, err), CB_ERR_BAD_REQUEST);
    teardown();
}

TEST(fs_stat_types_and_ids)
{
    setup();
    write_file("/f", "12345", 0644, false);
    host_mkdir("/d");
    host_symlink("/f", "/l");
    char *p = rp("/d");
    ASSERT_EQ(lchown(p, 5, 5), 0); /* outside the id range */
    free(p);
    struct cb_fs_stat st = {0};
    ASSERT_OK(cb_fs_stat(g_rootfd, "/f", &g_own, &st, err));
    ASSERT_EQ(st.type, CB_FS_FILE);
    ASSERT_EQ(st.size, 5);
    ASSERT(st.link_target == NULL);
    ASSERT(st.mtime > 1e9);
    cb_fs_stat_clear(&st);
    ASSERT_OK(cb_fs_stat(g_rootfd, "/d", &g_own, &st, err));
    ASSERT_EQ(st.type, CB_FS_DIR);
    ASSERT_EQ(st.uid, 65534);
    ASSERT_EQ(st.gid, 65534);
    cb_fs_stat_clear(&st);
    ASSERT_OK(cb_fs_stat(g_rootfd, "/l", &g_own, &st, err));
    ASSERT_EQ(st.type, CB_FS_SYMLINK);
    ASSERT_STREQ(st.link_target, "/f");
    cb_fs_stat_clear(&st);
    ASSERT_OK(cb_fs_stat(g_rootfd, "/", &g_own, &st, err));
    ASSERT_EQ(st.type, CB_FS_DIR);
    ASSERT_STREQ(st.path, "/");
    cb_fs_stat_clear(&st);
    ASSERT_ERR(cb_fs_stat(g_rootfd, "/missing", &g_own, &st, err), CB_ERR_NOT_FOUND);
    teardown();
}

TEST(fs_list_depth)
{
    setup();
    write_file("/top/a", "1", 0644, true);
    write_file("/top/sub/b", "2", 0644, true);
    write_file("/top/sub/deeper/c", "3", 0644, true);
    host_symlink("/top/sub", "/top/link");
    struct cb_fs_stat *items = NULL;
    size_t n = 0;
    ASSERT_OK(cb_fs_list(g_rootfd, "/top", 1, &g_own, &items, &n, err));
    ASSERT_EQ(n, 3);
    ASSERT_STREQ(items[0].path, "/top/a");
    ASSERT_STREQ(items[1].path, "/top/link");
    ASSERT_EQ(items[1].type, CB_FS_SYMLINK);
    ASSERT_STREQ(items[1].link_target, "/top/sub");
    ASSERT_STREQ(items[2].path, "/top/sub");
    ASSERT_EQ(items[2].type, CB_FS_DIR);
    for (size_t i = 0; i < n; i++)
        cb_fs_stat_clear(&items[i]);
    free(items);
    ASSERT_OK(cb_fs_list(g_rootfd, "/top", 2, &g_own, &items, &n, err));
    ASSERT_EQ(n, 5); /* a, link (not descended), sub, sub/b, sub/deeper */
    ASSERT_STREQ(items[3].path, "/top/sub/b");
    ASSERT_STREQ(items[4].path, "/top/sub/deeper");
    for (size_t i = 0; i < n; i++)
        cb_fs_stat_clear(&items[i]);
    free(items);
    ASSERT_ERR(cb_fs_list(g_rootfd, "/top/a", 1, &g_own, &items, &n, err), CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_list(g_rootfd, "/nope", 1, &g_own, &items, &n, err), CB_ERR_NOT_FOUND);
    teardown();
}

TEST(fs_mkdir_move_remove)
{
    setup();
    ASSERT_OK(cb_fs_mkdir(g_rootfd, "/p/q/r", true, 0750, &g_own, err));
    ASSERT_EQ(host_lstat("/p/q/r").st_mode & 07777, 0750);
    ASSERT_EQ(host_lstat("/p/q/r").st_uid, 101000);
    ASSERT_OK(cb_fs_mkdir(g_rootfd, "/p/q/r", true, 0750, &g_own, err)); /* -p: exists ok */
    ASSERT_ERR(cb_fs_mkdir(g_rootfd, "/p/q/r", false, 0750, &g_own, err), CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_mkdir(g_rootfd, "/x/y", false, 0750, &g_own, err), CB_ERR_NOT_FOUND);
    ASSERT_OK(cb_fs_mkdir(g_rootfd, "/single", false, 0700, &g_own, err));
    write_file("/p/f", "data", 0644, false);
    ASSERT_OK(cb_fs_move(g_rootfd, "/p/f", "/p/q/g", err));
    ASSERT(!host_exists("/p/f"));
    ASSERT_STREQ(read_file("/p/q/g"), "data");
    ASSERT_ERR(cb_fs_move(g_rootfd, "/p/nothing", "/p/x", err), CB_ERR_NOT_FOUND);
    ASSERT_ERR(cb_fs_remove(g_rootfd, "/p", false, err), CB_ERR_CONFLICT);
    ASSERT_OK(cb_fs_remove(g_rootfd, "/p/q/g", false, err));
    ASSERT(!host_exists("/p/q/g"));
    write_file("/p/q/r/s/t/u", "deep", 0644, true);
    ASSERT_OK(cb_fs_remove(g_rootfd, "/p", true, err));
    ASSERT(!host_exists("/p"));
    ASSERT_ERR(cb_fs_remove(g_rootfd, "/p", true, err), CB_ERR_NOT_FOUND);
    ASSERT_ERR(cb_fs_remove(g_rootfd, "/", true, err), CB_ERR_BAD_REQUEST);
    ASSERT(host_exists("/single"));
    teardown();
}

TEST(fs_archive_roundtrip)
{
    setup();
    write_file("/src/a.txt", "alpha", 0600, true);
    write_file("/src/sub/b.txt", "beta", 0644, true);
    ASSERT_OK(cb_fs_mkdir(g_rootfd, "/src/empty", false, 0700, &g_own, err));
    host_symlink("/src/a.txt", "/src/abs-link");
    host_symlink("../a.txt", "/src/sub/rel-link");
    host_symlink(g_canary, "/src/canary-link");
    int tar = memfd_create("out", MFD_CLOEXEC);
    ASSERT_OK(cb_fs_archive_create_as(g_rootfd, "/src", tar, &g_own, err));
    ASSERT_EQ(lseek(tar, 0, SEEK_SET), 0);
    int n = (int)ASSERT_OK(cb_fs_archive_extract(g_rootfd, "/dst", tar, &g_own, 0, 0, err));
    ASSERT_EQ(n, 7);
    ASSERT_STREQ(read_file("/dst/a.txt"), "alpha");
    ASSERT_STREQ(read_file("/dst/sub/b.txt"), "beta");
    ASSERT_STREQ(read_file("/dst/sub/rel-link"), "alpha");
    ASSERT_EQ(host_lstat("/dst/a.txt").st_mode & 07777, 0600);
    ASSERT_EQ(host_lstat("/dst/a.txt").st_uid, 101000);
    ASSERT(S_ISDIR(host_lstat("/dst/empty").st_mode));
    ASSERT(S_ISLNK(host_lstat("/dst/abs-link").st_mode));
    /* The link to the canary is stored as a link and stays one; reading
     * through it resolves below the root and finds nothing. */
    ASSERT(S_ISLNK(host_lstat("/dst/canary-link").st_mode));
    ASSERT_ERR(cb_fs_open_read(g_rootfd, "/dst/canary-link/file", &g_own, NULL, err),
               CB_ERR_NOT_FOUND);
    /* In-sandbox ids in the tar. */
    ASSERT_EQ(lseek(tar, 0, SEEK_SET), 0);
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    ASSERT_EQ(archive_read_open_fd(a, tar, 4096), ARCHIVE_OK);
    struct archive_entry *e;
    int seen = 0;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        /* Made by fsops: owned by sandbox uid 1000. The test's own symlinks
         * belong to host root, outside the range: the overflow id. */
        bool ours = archive_entry_filetype(e) != AE_IFLNK;
        ASSERT_EQ(archive_entry_uid(e), ours ? 1000 : 65534);
        seen++;
    }
    ASSERT_EQ(seen, 7);
    archive_read_free(a);
    close(tar);
    /* A single file, gzip-compressed input. */
    struct member gz[] = {{"z/one", AE_IFREG, "gz!", 0}};
    int gzfd = make_tar(gz, 1, true);
    ASSERT_EQ(ASSERT_OK(cb_fs_archive_extract(g_rootfd, "/gz", gzfd, &g_own, 0, 0, err)), 1);
    ASSERT_STREQ(read_file("/gz/z/one"), "gz!");
    close(gzfd);
    teardown();
}

static bool wait_events(struct cb_fs_watch *w, struct cb_fs_event **all, int *nall,
                        enum cb_fs_event_type type, const char *path)
{
    for (int tries = 0; tries < 50; tries++) {
        for (int i = 0; i < *nall; i++)
            if ((*all)[i].type == type && !strcmp((*all)[i].path, path))
                return true;
        struct pollfd pfd = {.fd = cb_fs_watch_fd(w), .events = POLLIN};
        poll(&pfd, 1, 100);
        struct cb_fs_event *ev = NULL;
        int n = (int)ASSERT_OK(cb_fs_watch_read(w, &ev, err));
        *all = cb_xrealloc(*all, (size_t)(*nall + n + 1) * sizeof(**all));
        memcpy(*all + *nall, ev, (size_t)n * sizeof(*ev));
        *nall += n;
        free(ev);
    }
    return false;
}

TEST(fs_watch_recursive)
{
    setup();
    write_file("/w/existing/x", "", 0644, true);
    struct cb_fs_watch *w = NULL;
    ASSERT_OK(cb_fs_watch_open(g_rootfd, "/w", true, &w, err));
    struct cb_fs_event *all = NULL;
    int n = 0;
    write_file("/w/new.txt", "1", 0644, false);
    ASSERT(wait_events(w, &all, &n, CB_FS_EV_CREATE, "/w/new.txt"));
    ASSERT(wait_events(w, &all, &n, CB_FS_EV_MODIFY, "/w/new.txt"));
    write_file("/w/existing/x", "changed", 0644, false);
    ASSERT(wait_events(w, &all, &n, CB_FS_EV_MODIFY, "/w/existing/x"));
    ASSERT_OK(cb_fs_move(g_rootfd, "/w/new.txt", "/w/moved.txt", err));
    ASSERT(wait_events(w, &all, &n, CB_FS_EV_MOVE, "/w/new.txt"));
    ASSERT(wait_events(w, &all, &n, CB_FS_EV_MOVE, "/w/moved.txt"));
    ASSERT_OK(cb_fs_remove(g_rootfd, "/w/moved.txt", false, err));
    ASSERT(wait_events(w, &all, &n, CB_FS_EV_DELETE, "/w/moved.txt"));
    /* A directory created after the watch started is watched too. */
    ASSERT_OK(cb_fs_mkdir(g_rootfd, "/w/later", false, 0755, &g_own, err));
    ASSERT(wait_events(w, &all, &n, CB_FS_EV_CREATE, "/w/later"));
    write_file("/w/later/inner", "i", 0644, false);
    ASSERT(wait_events(w, &all, &n, CB_FS_EV_CREATE, "/w/later/inner"));
    ASSERT(wait_events(w, &all, &n, CB_FS_EV_MODIFY, "/w/later/inner"));
    cb_fs_events_free(all, n);
    cb_fs_watch_close(w);
    ASSERT_ERR(cb_fs_watch_open(g_rootfd, "/nope", true, &w, err), CB_ERR_NOT_FOUND);
    teardown();
}

/* ---- hostile ------------------------------------------------------------- */

TEST(fs_hostile_dotdot_and_symlinks_out)
{
    setup();
    host_symlink(g_canary, "/abs");               /* absolute, at the canary */
    host_symlink("../../../../../../../..", "/up"); /* relative, climbing out */
    char *rel = cb_xasprintf("../../../../../..%s", g_canary);
    host_symlink(rel, "/relcanary");
    free(rel);
    char *dd = cb_xasprintf("/../../../..%s/file", g_canary);
    ASSERT_ERR(cb_fs_open_read(g_rootfd, dd, &g_own, NULL, err), CB_ERR_NOT_FOUND);
    ASSERT_ERR(cb_fs_open_read(g_rootfd, "/abs/file", &g_own, NULL, err), CB_ERR_NOT_FOUND);
    ASSERT_ERR(cb_fs_open_read(g_rootfd, "/relcanary/file", &g_own, NULL, err), CB_ERR_NOT_FOUND);
    char *viaup = cb_xasprintf("/up%s/file", g_canary);
    ASSERT_ERR(cb_fs_open_read(g_rootfd, viaup, &g_own, NULL, err), CB_ERR_NOT_FOUND);
    struct cb_fs_stat st = {0};
    ASSERT_ERR(cb_fs_stat(g_rootfd, "/abs/file", &g_own, &st, err), CB_ERR_NOT_FOUND);
    struct cb_fs_stat *items;
    size_t n;
    ASSERT_ERR(cb_fs_list(g_rootfd, "/abs", 1, &g_own, &items, &n, err), CB_ERR_NOT_FOUND);
    ASSERT_ERR(cb_fs_remove(g_rootfd, "/abs/file", false, err), CB_ERR_NOT_FOUND);
    ASSERT_ERR(cb_fs_remove(g_rootfd, "/abs/sub", true, err), CB_ERR_NOT_FOUND);
    ASSERT_ERR(cb_fs_move(g_rootfd, "/abs/file", "/stolen", err), CB_ERR_NOT_FOUND);
    /* Writes through those names land below the root, never in the canary. */
    write_file(dd, "dd", 0644, true);
    write_file(viaup, "up", 0644, true);
    write_file("/relcanary/file", "rel", 0644, true);
    char *inroot = cb_xasprintf("%s/file", g_canary);
    ASSERT_STREQ(read_file(inroot), "rel");
    ASSERT_STREQ(read_file("/abs/file"), "rel"); /* the same in-root file */
    assert_canary();
    /* Removing through the link now removes the in-root copy only. */
    ASSERT_OK(cb_fs_remove(g_rootfd, "/abs/file", false, err));
    assert_canary();
    /* Archive of a symlink to the canary: follows it below the root only. */
    int out = memfd_create("o", MFD_CLOEXEC);
    ASSERT_ERR(cb_fs_archive_create(g_rootfd, "/abs/sub", out, err), CB_ERR_NOT_FOUND);
    ASSERT_OK(cb_fs_archive_create(g_rootfd, "/abs", out, err));
    close(out);
    struct cb_fs_watch *w = NULL;
    ASSERT_ERR(cb_fs_watch_open(g_rootfd, "/abs/sub", true, &w, err), CB_ERR_NOT_FOUND);
    free(dd);
    free(viaup);
    free(inroot);
    teardown();
}

TEST(fs_hostile_symlink_loop)
{
    setup();
    host_symlink("/loop2", "/loop1");
    host_symlink("/loop1", "/loop2");
    ASSERT_ERR(cb_fs_open_read(g_rootfd, "/loop1", &g_own, NULL, err), CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_open_read(g_rootfd, "/loop1/x", &g_own, NULL, err), CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_open_write(g_rootfd, "/loop1/x", 0644, true, &g_own, err), CB_ERR_BAD_REQUEST);
    struct cb_fs_stat st = {0};
    ASSERT_OK(cb_fs_stat(g_rootfd, "/loop1", &g_own, &st, err)); /* the link itself */
    ASSERT_EQ(st.type, CB_FS_SYMLINK);
    cb_fs_stat_clear(&st);
    struct cb_fs_stat *items;
    size_t n;
    ASSERT_ERR(cb_fs_list(g_rootfd, "/loop1", 1, &g_own, &items, &n, err), CB_ERR_BAD_REQUEST);
    ASSERT_OK(cb_fs_remove(g_rootfd, "/loop1", true, err));
    ASSERT(!host_exists("/loop1"));
    teardown();
}

TEST(fs_hostile_final_symlink)
{
    setup();
    char *cfile = cb_xasprintf("%s/file", g_canary);
    host_symlink(cfile, "/wlink");
    host_symlink(g_canary, "/dlink");
    host_symlink(g_canary, "/mlink");
    host_symlink(cfile, "/target");
    /* write: the link is replaced by a regular file. */
    write_file("/wlink", "mine", 0644, false);
    ASSERT(S_ISREG(host_lstat("/wlink").st_mode));
    ASSERT_STREQ(read_file("/wlink"), "mine");
    /* mkdir on a symlink name: exists, nothing followed. */
    ASSERT_ERR(cb_fs_mkdir(g_rootfd, "/dlink", false, 0755, &g_own, err), CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_mkdir(g_rootfd, "/dlink/newdir", false, 0755, &g_own, err), CB_ERR_NOT_FOUND);
    /* remove: the link goes, its target stays (recursive too). */
    ASSERT_OK(cb_fs_remove(g_rootfd, "/dlink", true, err));
    ASSERT(!host_exists("/dlink"));
    /* move onto a symlink replaces the link; moving a link moves the link. */
    write_file("/src", "moved", 0644, false);
    ASSERT_OK(cb_fs_move(g_rootfd, "/src", "/target", err));
    ASSERT(S_ISREG(host_lstat("/target").st_mode));
    ASSERT_OK(cb_fs_move(g_rootfd, "/mlink", "/mlink2", err));
    ASSERT(S_ISLNK(host_lstat("/mlink2").st_mode));
    /* chmod/chown never reached the canary: checked by teardown. */
    free(cfile);
    teardown();
}

TEST(fs_hostile_fifo)
{
    setup();
    char *p = rp("/fifo");
    ASSERT_EQ(mkfifo(p, 0644), 0);
    free(p);
    ASSERT_ERR(cb_fs_open_read(g_rootfd, "/fifo", &g_own, NULL, err), CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_open_write(g_rootfd, "/fifo", 0644, false, &g_own, err), CB_ERR_BAD_REQUEST);
    struct cb_fs_stat st = {0};
    ASSERT_OK(cb_fs_stat(g_rootfd, "/fifo", &g_own, &st, err));
    ASSERT_EQ(st.type, CB_FS_OTHER);
    cb_fs_stat_clear(&st);
    int out = memfd_create("o", MFD_CLOEXEC);
    ASSERT_OK(cb_fs_archive_create(g_rootfd, "/", out, err)); /* skips it, no hang */
    close(out);
    ASSERT_OK(cb_fs_remove(g_rootfd, "/fifo", false, err));
    teardown();
}

TEST(fs_hostile_remove_tree_with_canary_link)
{
    setup();
    write_file("/t/a/b/file", "x", 0644, true);
    host_symlink(g_canary, "/t/a/canary");
    char *rel = cb_xasprintf("../../../../../../../..%s", g_canary);
    host_symlink(rel, "/t/a/b/relcanary");
    free(rel);
    ASSERT_OK(cb_fs_remove(g_rootfd, "/t", true, err));
    ASSERT(!host_exists("/t"));
    teardown();
}

/* ---- race ----------------------------------------------------------------- */

static atomic_bool g_stop;

/* The "sandbox": keeps swapping /race between a directory and a symlink to
 * the canary directory (absolute and relative forms). */
static void *swapper(void *arg)
{
    char *name = rp("/race");
    char *tmpdir = rp("/race.dir");
    char *tmplink = rp("/race.lnk");
    char *rel = cb_xasprintf("../../../../../..%s", g_canary);
    for (unsigned i = 0; !atomic_load(&g_stop); i++) {
        unlink(tmplink);
        if (symlink(i & 1 ? g_canary : rel, tmplink) < 0)
            continue;
        renameat2(AT_FDCWD, tmplink, AT_FDCWD, name, RENAME_EXCHANGE);
        rename(tmplink, name); /* first round: nothing to exchange with */
        mkdir(tmpdir, 0755);
        renameat2(AT_FDCWD, tmpdir, AT_FDCWD, name, RENAME_EXCHANGE);
        nftw(tmpdir, rm_cb, 8, FTW_DEPTH | FTW_PHYS);
        unlink(tmpdir);
    }
    return NULL;
}

TEST(fs_hostile_race_swap)
{
    setup();
    struct member m[] = {{"f", AE_IFREG, "tar!", 0}, {"d/g", AE_IFREG, "g", 0}};
    pthread_t th;
    atomic_store(&g_stop, false);
    ASSERT_EQ(pthread_create(&th, NULL, swapper, NULL), 0);
    int ok = 0;
    for (int i = 0; i < 2000; i++) {
        struct cb_error *e = NULL;
        int fd = cb_fs_open_write(g_rootfd, "/race/file", 0644, i % 2, &g_own, &e);
        if (fd >= 0) {
            ok++;
            cb_write_all(fd, "PWNED", 5);
            close(fd);
        }
        cb_error_free(e);
        e = NULL;
        fd = cb_fs_open_read(g_rootfd, "/race/file", &g_own, NULL, &e);
        if (fd >= 0)
            close(fd);
        cb_error_free(e);
        e = NULL;
        cb_fs_remove(g_rootfd, i % 3 ? "/race/file" : "/race/sub", true, &e);
        cb_error_free(e);
        e = NULL;
        cb_fs_mkdir(g_rootfd, "/race/sub", i % 2, 0777, &g_own, &e);
        cb_error_free(e);
        e = NULL;
        if (i % 10 == 0) {
            int tfd = make_tar(m, 2, false);
            cb_fs_archive_extract(g_rootfd, "/race", tfd, &g_own, 0, 0, &e);
            cb_error_free(e);
            e = NULL;
            close(tfd);
            int out = memfd_create("o", MFD_CLOEXEC);
            cb_fs_archive_create(g_rootfd, "/race", out, &e);
            cb_error_free(e);
            e = NULL;
            close(out);
        }
    }
    atomic_store(&g_stop, true);
    pthread_join(th, NULL);
    ASSERT(ok > 0); /* the operations really ran */
    teardown();
}

/* ---- tar ------------------------------------------------------------------ */

static int extract(const struct member *m, size_t n, const char *dir, uint64_t max_bytes,
                   struct cb_error **err)
{
    int fd = make_tar(m, n, false);
    int r = cb_fs_archive_extract(g_rootfd, dir, fd, &g_own, max_bytes, 0, err);
    close(fd);
    return r;
}

TEST(fs_tar_dotdot_and_absolute)
{
    setup();
    struct member up[] = {{"../x", AE_IFREG, "x", 0}};
    ASSERT_ERR(extract(up, 1, "/d1", 0, err), CB_ERR_BAD_REQUEST);
    ASSERT(!host_exists("/x"));
    struct member up2[] = {{"ok", AE_IFREG, "ok", 0}, {"a/../../x", AE_IFREG, "x", 0}};
    ASSERT_ERR(extract(up2, 2, "/d2", 0, err), CB_ERR_BAD_REQUEST);
    ASSERT(!host_exists("/x"));
    ASSERT(host_exists("/d2/ok")); /* members before the bad one stay */
    char *abs = cb_xasprintf("%s/abs", g_canary);
    struct member ab[] = {{"/abs", AE_IFREG, "abs", 0}, {abs, AE_IFREG, "c", 0},
                          {"a/./b/../c", AE_IFREG, "c", 0}};
    ASSERT_EQ(ASSERT_OK(extract(ab, 3, "/d3", 0, err)), 3);
    ASSERT_STREQ(read_file("/d3/abs"), "abs");
    ASSERT_STREQ(read_file("/d3/a/c"), "c");
    char *inside = cb_xasprintf("/d3%s/abs", g_canary);
    ASSERT_STREQ(read_file(inside), "c");
    free(abs);
    free(inside);
    teardown();
}

TEST(fs_tar_symlink_then_member_below_it)
{
    setup();
    struct member m[] = {{"l", AE_IFLNK, g_canary, 0}, {"l/pwned", AE_IFREG, "pwned", 0}};
    ASSERT_ERR(extract(m, 2, "/d", 0, err), CB_ERR_BAD_REQUEST);
    ASSERT(S_ISLNK(host_lstat("/d/l").st_mode));
    struct member rel[] = {{"r", AE_IFLNK, "../../../../../../..", 0},
                           {"r/tmp/pwned", AE_IFREG, "pwned", 0}};
    ASSERT_ERR(extract(rel, 2, "/d", 0, err), CB_ERR_BAD_REQUEST);
    /* A sandbox-planted symlink inside the target dir is not followed either. */
    host_symlink(g_canary, "/d/planted");
    struct member pl[] = {{"planted/file", AE_IFREG, "pwned", 0}};
    ASSERT_ERR(extract(pl, 1, "/d", 0, err), CB_ERR_BAD_REQUEST);
    /* The target directory itself being a symlink to the canary resolves
     * below the root, where it dangles: like mkdir -p, that is an error. */
    host_symlink(g_canary, "/dl");
    struct member f[] = {{"file", AE_IFREG, "pwned", 0}};
    ASSERT_ERR(extract(f, 1, "/dl", 0, err), CB_ERR_NOT_FOUND);
    /* Once the sandbox has that directory, the archive lands there. */
    char *made = cb_xasprintf("%s", g_canary);
    ASSERT_OK(cb_fs_mkdir(g_rootfd, made, true, 0755, &g_own, err));
    ASSERT_EQ(ASSERT_OK(extract(f, 1, "/dl", 0, err)), 1);
    char *inside = cb_xasprintf("%s/file", g_canary);
    ASSERT_STREQ(read_file(inside), "pwned");
    free(made);
    free(inside);
    teardown();
}

TEST(fs_tar_hardlinks)
{
    setup();
    char *cfile = cb_xasprintf("%s/file", g_canary);
    struct member m1[] = {{"h", 0, cfile, 0}};
    ASSERT_ERR(extract(m1, 1, "/d", 0, err), CB_ERR_BAD_REQUEST);
    char *climb = cb_xasprintf("../../../../../../..%s", cfile);
    struct member m2[] = {{"h", 0, climb, 0}};
    ASSERT_ERR(extract(m2, 1, "/d", 0, err), CB_ERR_BAD_REQUEST);
    host_symlink(g_canary, "/d/cl");
    struct member m3[] = {{"h", 0, "cl/file", 0}};
    ASSERT_ERR(extract(m3, 1, "/d", 0, err), CB_ERR_BAD_REQUEST);
    struct member ok[] = {{"orig", AE_IFREG, "same", 0}, {"link", 0, "orig", 0}};
    ASSERT_EQ(ASSERT_OK(extract(ok, 2, "/d", 0, err)), 2);
    ASSERT_EQ(host_lstat("/d/link").st_ino, host_lstat("/d/orig").st_ino);
    free(cfile);
    free(climb);
    teardown();
}

TEST(fs_tar_device_skipped_and_limits)
{
    setup();
    struct member m[] = {{"null", AE_IFCHR, NULL, 0}, {"fifo", AE_IFIFO, NULL, 0},
                         {"file", AE_IFREG, "f", 0}};
    ASSERT_EQ(ASSERT_OK(extract(m, 3, "/d", 0, err)), 1);
    ASSERT(!host_exists("/d/null"));
    ASSERT(!host_exists("/d/fifo"));
    struct member big[] = {{"small", AE_IFREG, "s", 0}, {"big", AE_IFREG, NULL, 100000}};
    ASSERT_ERR(extract(big, 2, "/lim", 1000, err), CB_ERR_TOO_LARGE);
    if (host_exists("/lim/big"))
        ASSERT(host_lstat("/lim/big").st_size <= 1000 + 65536);
    int fd = make_tar(m, 3, false);
    ASSERT_ERR(cb_fs_archive_extract(g_rootfd, "/e", fd, &g_own, 0, 2, err), CB_ERR_TOO_LARGE);
    close(fd);
    /* Garbage is a bad request, not a crash. */
    int junk = memfd_create("j", MFD_CLOEXEC);
    ASSERT_EQ(write(junk, "this is not a tar archive at all", 32), 32);
    lseek(junk, 0, SEEK_SET);
    ASSERT_ERR(cb_fs_archive_extract(g_rootfd, "/j", junk, &g_own, 0, 0, err), CB_ERR_BAD_REQUEST);
    close(junk);
    teardown();
}

/* procfs and sysfs mounted inside the sandbox are the host kernel's
 * interface to us (root in the initial user namespace): nothing there may
 * be written, created, removed, read or archived. The mounts live in a
 * private mount namespace of this test's child and vanish with it. */
TEST(fs_hostile_pseudo_fs)
{
    if (unshare(CLONE_NEWNS) < 0)
        SKIP("unshare(CLONE_NEWNS) not permitted");
    ASSERT_EQ(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0);
    setup();
    host_mkdir("/proc");
    host_mkdir("/sys");
    char *proc = rp("/proc"), *sys = rp("/sys");
    ASSERT_EQ(mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL), 0);
    ASSERT_EQ(mount("sysfs", sys, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL), 0);
    char before[4096] = {0}, after[4096] = {0};
    int fd = open("/proc/sys/kernel/core_pattern", O_RDONLY | O_CLOEXEC);
    ASSERT(fd >= 0 && read(fd, before, sizeof(before) - 1) >= 0);
    close(fd);
    ASSERT_ERR(cb_fs_open_write(g_rootfd, "/proc/sys/kernel/core_pattern", 0644, false, &g_own, err),
               CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_open_read(g_rootfd, "/proc/version", &g_own, NULL, err), CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_open_read(g_rootfd, "/proc/sys/kernel/core_pattern", &g_own, NULL, err),
               CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_mkdir(g_rootfd, "/sys/kernel/x", false, 0755, &g_own, err), CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_mkdir(g_rootfd, "/sys/kernel/x/y", true, 0755, &g_own, err), CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_remove(g_rootfd, "/proc/sys", true, err), CB_ERR_BAD_REQUEST);
    ASSERT_ERR(cb_fs_move(g_rootfd, "/proc/sys", "/moved", err), CB_ERR_BAD_REQUEST);
    struct member m[] = {{"kernel/core_pattern", AE_IFREG, "|/tmp/pwn", 0}};
    ASSERT(extract(m, 1, "/proc/sys", 0, NULL) < 0);
    int out = memfd_create("o", MFD_CLOEXEC);
    ASSERT_ERR(cb_fs_archive_create(g_rootfd, "/proc", out, err), CB_ERR_BAD_REQUEST);
    ASSERT_OK(cb_fs_archive_create(g_rootfd, "/", out, err)); /* skips them */
    close(out);
    /* Metadata stays visible. */
    struct cb_fs_stat st = {0};
    ASSERT_OK(cb_fs_stat(g_rootfd, "/proc/sys/kernel/core_pattern", &g_own, &st, err));
    cb_fs_stat_clear(&st);
    fd = open("/proc/sys/kernel/core_pattern", O_RDONLY | O_CLOEXEC);
    ASSERT(fd >= 0 && read(fd, after, sizeof(after) - 1) >= 0);
    close(fd);
    ASSERT_STREQ(after, before);
    umount2(proc, MNT_DETACH);
    umount2(sys, MNT_DETACH);
    free(proc);
    free(sys);
    teardown();
}
