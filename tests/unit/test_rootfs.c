/* host template skeleton generation and safe tree removal. */
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "rootfs.h"
#include "runner.h"
#include "template.h"

TEST(rootfs_host_template)
{
    char tmpl[] = "/tmp/cb-rootfs-XXXXXX";
    ASSERT(mkdtemp(tmpl));
    ASSERT_EQ(cb_template_make_host(tmpl, NULL), 0);
    struct cb_template *t;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_template_load(tmpl, "host", &t, &err), 0);
    ASSERT(t->nbinds >= 2);
    ASSERT_STREQ(t->binds[0].source, "/usr");
    char *p = cb_xasprintf("%s/etc/passwd", t->rootfs);
    char *text = NULL;
    ASSERT_EQ(cb_read_file_at(AT_FDCWD, p, 4096, &text, NULL), 0);
    ASSERT(strstr(text, "user:x:1000:1000:user:/home/user:/bin/bash"));
    struct stat st;
    char *bin = cb_xasprintf("%s/bin", t->rootfs);
    ASSERT_EQ(lstat(bin, &st), 0);
    ASSERT(S_ISLNK(st.st_mode) || S_ISDIR(st.st_mode));
    const char *dirs[] = {"proc", "sys", "dev", "tmp", "home/user", "workspace", "usr", "var/tmp"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(dirs); i++) {
        char *d = cb_xasprintf("%s/%s", t->rootfs, dirs[i]);
        ASSERT_EQ(stat(d, &st), 0);
        ASSERT(S_ISDIR(st.st_mode));
        free(d);
    }
    /* /dev's entries are in the skeleton: mount points (empty files), pts,
     * shm 1777 and the links, so a sandbox makes none in its upper layer */
    const char *nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(nodes); i++) {
        char *n = cb_xasprintf("%s/dev/%s", t->rootfs, nodes[i]);
        ASSERT_EQ(lstat(n, &st), 0);
        ASSERT(S_ISREG(st.st_mode) && st.st_size == 0);
        free(n);
    }
    char *shm = cb_xasprintf("%s/dev/shm", t->rootfs);
    ASSERT_EQ(lstat(shm, &st), 0);
    ASSERT(S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 01777);
    char *ptmx = cb_xasprintf("%s/dev/ptmx", t->rootfs);
    char link[64] = {0};
    ASSERT(readlink(ptmx, link, sizeof link - 1) > 0);
    ASSERT_STREQ(link, "pts/ptmx");
    /* the host's /etc files programs expect: copies, or a link into /usr */
    const char *etc[] = {"protocols", "services", "shells", "os-release"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(etc); i++) {
        char *host = cb_xasprintf("/etc/%s", etc[i]);
        char *mine = cb_xasprintf("%s/etc/%s", t->rootfs, etc[i]);
        struct stat hst;
        if (lstat(host, &hst) == 0) {
            ASSERT_EQ(lstat(mine, &st), 0);
            ASSERT_EQ(S_ISLNK(st.st_mode), S_ISLNK(hst.st_mode));
            if (S_ISREG(hst.st_mode))
                ASSERT_EQ(st.st_size, hst.st_size);
        }
        free(host);
        free(mine);
    }
    /* the login shell's files are our own, never the host's */
    const char *own[] = {"profile", "bash.bashrc"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(own); i++) {
        char *mine = cb_xasprintf("%s/etc/%s", t->rootfs, own[i]);
        char *text2 = NULL;
        ASSERT_EQ(cb_read_file_at(AT_FDCWD, mine, 1 << 16, &text2, NULL), 0);
        ASSERT(strncmp(text2, "# cellbox:", 10) == 0);
        free(text2);
        free(mine);
    }
    if (access("/etc/protocols", R_OK) == 0) { /* an older skeleton gets them back */
        char *proto = cb_xasprintf("%s/etc/protocols", t->rootfs);
        ASSERT_EQ(unlink(proto), 0);
        ASSERT_EQ(cb_template_make_host(tmpl, NULL), 0);
        char *text2 = NULL;
        ASSERT_EQ(cb_read_file_at(AT_FDCWD, proto, 1 << 20, &text2, NULL), 0);
        ASSERT(strstr(text2, "tcp"));
        free(text2);
        free(proto);
    }
    /* a skeleton of an older version, without them, gets them at the next
     * make_host (the template is otherwise never rebuilt) */
    char *dev = cb_xasprintf("%s/dev", t->rootfs);
    ASSERT_EQ(cb_rootfs_remove_tree(dev), 0);
    ASSERT_EQ(mkdir(dev, 0755), 0);
    cb_template_free(t);
    ASSERT_EQ(cb_template_make_host(tmpl, NULL), 0); /* idempotent */
    ASSERT_EQ(lstat(shm, &st), 0);
    ASSERT(S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 01777);
    char *null = cb_xasprintf("%s/null", dev);
    ASSERT_EQ(lstat(null, &st), 0);
    ASSERT(S_ISREG(st.st_mode));
    free(null);
    free(dev);
    free(ptmx);
    free(shm);
    ASSERT_EQ(cb_rootfs_remove_tree(tmpl), 0);
    ASSERT(access(tmpl, F_OK) < 0);
}

TEST(rootfs_template_conf_rejects_bad_paths)
{
    struct cb_template t = {0};
    struct cb_error *err = NULL;
    ASSERT(cb_template_parse("bind=relative\n", &t, &err) < 0);
    cb_error_free(err);
    err = NULL;
    ASSERT(cb_template_parse("bind=/a,upperdir=/x\n", &t, &err) < 0);
    cb_error_free(err);
    ASSERT(!cb_template_name_ok("../x"));
    ASSERT(cb_template_name_ok("host"));
}

/* cb_write_file_at rewrites in place (no O_TRUNC: ext4 flushes a file
 * truncated to zero at close) and must still end with exactly the new
 * bytes: shorter, empty, longer; same file; never through a symlink. */
TEST(write_file_rewrites_in_place_to_exact_length)
{
    char dir[] = "/tmp/cb-write-XXXXXX";
    ASSERT(mkdtemp(dir));
    char *f = cb_xasprintf("%s/record", dir);
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, f, "1234567", 7, 0600, 0), 0);
    struct stat a, b;
    ASSERT_EQ(stat(f, &a), 0);
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, f, "89", 2, 0600, 0), 0);
    char *text = NULL;
    size_t len = 0;
    ASSERT_EQ(cb_read_file_at(AT_FDCWD, f, 64, &text, &len), 0);
    ASSERT_EQ(len, 2);
    ASSERT(memcmp(text, "89", 2) == 0);
    free(text);
    ASSERT_EQ(stat(f, &b), 0);
    ASSERT_EQ(a.st_ino, b.st_ino);
    ASSERT_EQ(b.st_size, 2);
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, f, "", 0, 0600, 0), 0);
    ASSERT_EQ(stat(f, &b), 0);
    ASSERT_EQ(b.st_size, 0);
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, f, "abcdefghij", 10, 0600, 1), 0); /* atomic */
    ASSERT_EQ(cb_read_file_at(AT_FDCWD, f, 64, &text, &len), 0);
    ASSERT_EQ(len, 10);
    free(text);
    char *target = cb_xasprintf("%s/target", dir), *link = cb_xasprintf("%s/link", dir);
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, target, "keep", 4, 0600, 0), 0);
    ASSERT_EQ(symlink(target, link), 0);
    ASSERT(cb_write_file_at(AT_FDCWD, link, "x", 1, 0600, 0) < 0); /* O_NOFOLLOW */
    ASSERT_EQ(stat(target, &b), 0);
    ASSERT_EQ(b.st_size, 4);
    cb_rootfs_remove_tree(dir);
}

/* A tree far deeper than the daemon could hold a descriptor per level
 * for (a tenant's directory chain) is removed with a handful of them: run
 * with RLIMIT_NOFILE 32, 5,000 levels, files and side branches on the way. */
TEST(rootfs_remove_tree_deep_chain_bounded_fds)
{
    char tree[] = "/tmp/cb-deep-XXXXXX";
    ASSERT(mkdtemp(tree));
    int fd = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT(fd >= 0);
    for (int i = 0; i < 5000; i++) {
        ASSERT_EQ(mkdirat(fd, "d", 0755), 0);
        if (i % 500 == 0) {
            ASSERT_EQ(cb_write_file_at(fd, "f", "x", 1, 0644, 0), 0);
            ASSERT_EQ(mkdirat(fd, "side", 0755), 0);
            ASSERT_EQ(mkdirat(fd, "side/inner", 0755), 0);
            char link[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d/side/inner/l", fd);
            ASSERT_EQ(symlink("/etc", link), 0);
        }
        int sub = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT(sub >= 0);
        close(fd);
        fd = sub;
    }
    close(fd);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        struct rlimit few = {32, 32};
        if (setrlimit(RLIMIT_NOFILE, &few) < 0)
            _exit(10);
        _exit(cb_rootfs_remove_tree(tree) == 0 ? 0 : 11);
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT(access(tree, F_OK) < 0);
    ASSERT_EQ(access("/etc/passwd", F_OK), 0); /* the symlinks' target stays */
}

TEST(rootfs_remove_tree_never_follows_symlinks)
{
    char outside[] = "/tmp/cb-outside-XXXXXX", tree[] = "/tmp/cb-tree-XXXXXX";
    ASSERT(mkdtemp(outside));
    ASSERT(mkdtemp(tree));
    char *canary = cb_xasprintf("%s/canary", outside);
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, canary, "x", 1, 0644, 0), 0);
    char *link = cb_xasprintf("%s/link", tree);
    ASSERT_EQ(symlink(outside, link), 0);
    char *sub = cb_xasprintf("%s/a/b", tree);
    char *a = cb_xasprintf("%s/a", tree);
    ASSERT_EQ(mkdir(a, 0755), 0);
    ASSERT_EQ(mkdir(sub, 0000), 0);
    ASSERT_EQ(cb_rootfs_remove_tree(tree), 0);
    ASSERT(access(tree, F_OK) < 0);
    ASSERT_EQ(access(canary, F_OK), 0);
    cb_rootfs_remove_tree(outside);
}

TEST(rootfs_prepare_upper_ownership)
{
    if (geteuid() != 0)
        SKIP("needs root (chown)");
    char tmpl[] = "/tmp/cb-upper-XXXXXX";
    ASSERT(mkdtemp(tmpl));
    char *upper = cb_xasprintf("%s/upper", tmpl), *work = cb_xasprintf("%s/work", tmpl);
    ASSERT_EQ(cb_rootfs_prepare_upper(upper, work, 200000, "box", NULL), 0);
    struct stat st;
    char *home = cb_xasprintf("%s/home/user", upper), *tmp = cb_xasprintf("%s/tmp", upper);
    ASSERT_EQ(stat(home, &st), 0);
    ASSERT_EQ(st.st_uid, 201000);
    ASSERT_EQ(stat(tmp, &st), 0);
    ASSERT_EQ(st.st_mode & 07777, 01777);
    ASSERT_EQ(stat(upper, &st), 0);
    ASSERT_EQ(st.st_uid, 200000);
    /* Prepared again over files already there (a recycled directory keeps
     * them): written in place, no O_TRUNC (rootfs.c), yet exactly the new
     * text, none of a longer old one left, same inode. */
    char *hosts = cb_xasprintf("%s/etc/hosts", upper);
    struct stat before;
    ASSERT_EQ(stat(hosts, &before), 0);
    FILE *f = fopen(hosts, "w");
    ASSERT(f);
    for (int i = 0; i < 64; i++)
        fputs("10.0.0.1 a-much-longer-line-from-an-earlier-sandbox\n", f);
    fclose(f);
    ASSERT_EQ(cb_rootfs_prepare_upper(upper, work, 200000, "b2", NULL), 0);
    _cleanup_free_ char *text = NULL;
    ASSERT_EQ(cb_read_file_at(AT_FDCWD, hosts, 65536, &text, NULL), 0);
    ASSERT_STREQ(text, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                       "127.0.1.1\tb2\n");
    ASSERT_EQ(stat(hosts, &st), 0);
    ASSERT_EQ(st.st_ino, before.st_ino);
    ASSERT_EQ(st.st_uid, 200000);
    /* What the last sandbox's root may have changed in entries a recycled
     * directory keeps is put back (only what differs is written: rootfs.c
     * own_fd), and a different uid slot re-owns them all. */
    char *hostname = cb_xasprintf("%s/etc/hostname", upper);
    ASSERT_EQ(chmod(tmp, 0700), 0);
    ASSERT_EQ(chown(home, 200005, 200005), 0);
    ASSERT_EQ(chmod(hostname, 04777), 0);
    ASSERT_EQ(chmod(upper, 0777), 0);
    ASSERT_EQ(cb_rootfs_prepare_upper(upper, work, 200000, "b3", NULL), 0);
    ASSERT_EQ(stat(tmp, &st), 0);
    ASSERT_EQ(st.st_mode & 07777, 01777);
    ASSERT_EQ(stat(home, &st), 0);
    ASSERT_EQ(st.st_uid, 201000);
    ASSERT_EQ(st.st_gid, 201000);
    ASSERT_EQ(stat(hostname, &st), 0);
    ASSERT_EQ(st.st_mode & 07777, 0644);
    ASSERT_EQ(stat(upper, &st), 0);
    ASSERT_EQ(st.st_mode & 07777, 0755);
    ASSERT_EQ(cb_rootfs_prepare_upper(upper, work, 300000, "b3", NULL), 0);
    const char *const entries[] = {"", "/home", "/tmp", "/root", "/etc", "/etc/hosts",
                                   "/etc/hostname"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(entries); i++) {
        _cleanup_free_ char *e = cb_xasprintf("%s%s", upper, entries[i]);
        ASSERT_EQ(stat(e, &st), 0);
        ASSERT_EQ(st.st_uid, 300000);
        ASSERT_EQ(st.st_gid, 300000);
    }
    ASSERT_EQ(stat(work, &st), 0);
    ASSERT_EQ(st.st_uid, 300000);
    ASSERT_EQ(st.st_mode & 07777, 0700);
    ASSERT_EQ(stat(home, &st), 0);
    ASSERT_EQ(st.st_uid, 301000);
    free(hostname);
    cb_rootfs_remove_tree(tmpl);
}

/* The mount table as data: which steps make a superblock of their own. */
static size_t count_new_superblocks(const struct cb_mount_table *t, const char **types, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct cb_mount_step *s = &t->steps[i];
        /* a CB_MNT_MOUNT with a file system type makes a new superblock;
         * binds (fstype NULL) and every other kind reuse an existing one */
        if (s->kind == CB_MNT_MOUNT && s->fstype && n < cap)
            types[n++] = s->fstype;
    }
    return n;
}

TEST(mounts_masks_are_binds_of_the_empty_dir)
{
    struct cb_template_bind binds[] = {{"/usr", "/usr"}, {"/etc/ssl", "/etc/ssl"}};
    struct cb_mount_table t;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_mounts_build(&t, "/r", "/l", "/u", "/w", binds, 2, "/state/empty", false, &err), 0);
    const char *types[16];
    size_t n = count_new_superblocks(&t, types, 16);
    /* overlay, proc, sysfs, devpts: nothing else (/dev is a directory of
     * the root, /dev/shm one of /dev) */
    ASSERT_EQ(n, 4);
    const char *want[] = {"overlay", "proc", "sysfs", "devpts"};
    for (size_t i = 0; i < n; i++)
        ASSERT_STREQ(types[i], want[i]);
    size_t masks = 0;
    bool shm_dir = false;
    for (size_t i = 0; i < t.n; i++) {
        const struct cb_mount_step *s = &t.steps[i];
        if (s->kind == CB_MNT_MASK_DIR) {
            masks++;
            ASSERT_STREQ(s->source, "/state/empty");
            ASSERT(s->remount_flags & MS_NOEXEC);
            ASSERT(s->optional);
        }
        if (strcmp(s->target, "/r/dev/shm") == 0) {
            ASSERT_EQ(s->kind, CB_MNT_MKDIR); /* a directory, not a mount */
            ASSERT_EQ(s->mode, 01777);
            shm_dir = true;
        }
    }
    ASSERT_EQ(masks, 5); /* /proc/{acpi,scsi,asound,driver}, /sys/firmware */
    ASSERT(shm_dir);
    /* the root's overlay: volatile (no syncs of the upper), after the
     * removal of the marker an earlier volatile mount left in work/ */
    size_t ovl = t.n, marks = 0;
    for (size_t i = 0; i < t.n && ovl == t.n; i++) {
        if (t.steps[i].kind == CB_MNT_MOUNT && strcmp(t.steps[i].fstype, "overlay") == 0)
            ovl = i;
        else if (t.steps[i].kind == CB_MNT_REMOVE && strstr(t.steps[i].target, "/work/incompat"))
            marks++;
    }
    ASSERT(ovl < t.n);
    ASSERT_EQ(marks, 3);
    ASSERT(strstr(t.steps[ovl].data, "lowerdir=/l,") != NULL);
    ASSERT(strstr(t.steps[ovl].data, ",volatile") != NULL);
    cb_mount_table_free(&t);
    /* --durable-disks: the overlay keeps its syncs */
    ASSERT_EQ(cb_mounts_build(&t, "/r", "/l", "/u", "/w", binds, 2, "/state/empty", true, &err), 0);
    for (size_t i = 0; i < t.n; i++)
        if (t.steps[i].kind == CB_MNT_MOUNT && t.steps[i].fstype &&
            strcmp(t.steps[i].fstype, "overlay") == 0)
            ASSERT(strstr(t.steps[i].data, "volatile") == NULL);
    cb_mount_table_free(&t);
}

TEST(mounts_mask_dir_applies_as_readonly_bind)
{
    if (geteuid() != 0)
        SKIP("needs root (mount namespace)");
    char dir[] = "/tmp/cb-mask-XXXXXX";
    ASSERT(mkdtemp(dir));
    char *empty = cb_xasprintf("%s/empty", dir), *target = cb_xasprintf("%s/target", dir);
    char *hidden = cb_xasprintf("%s/target/secret", dir);
    ASSERT_EQ(mkdir(empty, 0555), 0);
    ASSERT_EQ(mkdir(target, 0755), 0);
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, hidden, "s", 1, 0644, 0), 0);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        /* our own mount namespace: nothing reaches the host's */
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
            _exit(10);
        struct cb_mount_step step = {.kind = CB_MNT_MASK_DIR, .source = empty,
                                     .target = target, .remount_flags = MS_NOEXEC,
                                     .optional = true};
        struct cb_mount_table t = {.steps = &step, .n = 1};
        size_t failed = 0;
        if (cb_mounts_apply(&t, &failed, NULL) < 0)
            _exit(11);
        if (access(hidden, F_OK) == 0)
            _exit(12); /* still visible */
        char *probe = cb_xasprintf("%s/new", target);
        int fd = open(probe, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        _exit(fd < 0 && errno == EROFS ? 0 : 13); /* read-only even for root */
    }
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    ASSERT_EQ(access(hidden, F_OK), 0); /* the host's view is unchanged */
    ASSERT_EQ(rmdir(empty), 0);         /* and the empty dir stayed empty */
    cb_rootfs_remove_tree(dir);
}

/* The sandbox's own cgroup at /sys/fs/cgroup: read-only binds, no new
 * superblock; v1 puts the view directory first and each hierarchy on its
 * name in it, v2 binds its one directory there. */
TEST(mounts_show_cgroup_binds)
{
    struct cb_template_bind binds[] = {{"/usr", "/usr"}};
    struct cb_mount_table t;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_mounts_build(&t, "/r", "/l", "/u", "/w", binds, 1, "/state/empty", false, &err), 0);
    size_t before = t.n;
    const char *src[] = {"/sys/fs/cgroup/memory/cellbox/sb", "/sys/fs/cgroup/cpu,cpuacct/cellbox/sb"};
    const char *names[] = {"memory", "cpu,cpuacct"};
    cb_mounts_show_cgroup(&t, "/r", "/state/cgroup-view", src, names, 2);
    ASSERT_EQ(t.n, before + 3);
    const char *types[32];
    ASSERT_EQ(count_new_superblocks(&t, types, 32), 4); /* as without them */
    const struct cb_mount_step *s = &t.steps[before];
    ASSERT_EQ(s->kind, CB_MNT_BIND_RO);
    ASSERT_STREQ(s->source, "/state/cgroup-view");
    ASSERT_STREQ(s->target, "/r/sys/fs/cgroup");
    ASSERT(s->remount_flags & MS_NOEXEC);
    ASSERT_STREQ(t.steps[before + 1].source, src[0]);
    ASSERT_STREQ(t.steps[before + 1].target, "/r/sys/fs/cgroup/memory");
    ASSERT_STREQ(t.steps[before + 2].target, "/r/sys/fs/cgroup/cpu,cpuacct");
    ASSERT_EQ(t.steps[before + 2].kind, CB_MNT_BIND_RO);
    cb_mount_table_free(&t);
    ASSERT_EQ(cb_mounts_build(&t, "/r", "/l", "/u", "/w", binds, 1, "/state/empty", false, &err), 0);
    before = t.n;
    const char *v2[] = {"/sys/fs/cgroup/cellbox/sb"};
    cb_mounts_show_cgroup(&t, "/r", NULL, v2, NULL, 1);
    ASSERT_EQ(t.n, before + 1);
    ASSERT_STREQ(t.steps[before].source, v2[0]);
    ASSERT_STREQ(t.steps[before].target, "/r/sys/fs/cgroup");
    ASSERT_EQ(t.steps[before].kind, CB_MNT_BIND_RO);
    cb_mount_table_free(&t);
}
