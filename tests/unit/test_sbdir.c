/* sbdir (recycled sandbox directories) and holder (references outside the
 * fd table): what a retired directory keeps, that nothing in it is followed
 * out of it, that spares are private to their process, and that the
 * holder's references are in no table a child would copy. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "holder.h"
#include "rootfs.h"
#include "runner.h"
#include "sbdir.h"
#include "util.h"

static char *make_temp(void)
{
    char *t = cb_xstrdup("/tmp/cb-sbdir-XXXXXX");
    ASSERT(mkdtemp(t) != NULL);
    return t;
}

static void write_text(const char *path, const char *text)
{
    ASSERT_EQ(cb_write_file_at(AT_FDCWD, path, text, strlen(text), 0600, 0), 0);
}

static int count_entries(const char *path, const char *prefix);

static int count_fds(void)
{
    return count_entries("/proc/self/fd", "") - 1; /* less opendir's own */
}

static int count_entries(const char *path, const char *prefix)
{
    DIR *d = opendir(path);
    ASSERT(d != NULL);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
            strncmp(de->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

/* A directory full of what a sandbox could have left — data in kept
 * directories, symlinks under kept names pointing at a host canary, a hard
 * link to it, deep trees, extended attributes (overlay's opaque mark) on
 * its upper layer's skeleton — is retired: the canary is untouched, the
 * spare holds only the emptied kept entries, without attributes, and the
 * next make returns it. */
TEST(sbdir_retire_keeps_only_empty_skeleton)
{
    setenv("CB_SBDIR_AHEAD", "0", 1); /* only what retire keeps */
    char *tmp = make_temp();
    char *canary = cb_xasprintf("%s/canary", tmp);
    write_text(canary, "host secret\n");
    char *parent = cb_xasprintf("%s/sandboxes", tmp);
    ASSERT_EQ(mkdir(parent, 0711), 0);
    struct cb_sbdir_spares *s = cb_sbdir_open(parent, 4, true);
    int l;
    char *dir = cb_xasprintf("%s/sb_a", parent);
    ASSERT_EQ(cb_sbdir_make(s, dir, &l), 0);
    char *p;
    ASSERT_EQ(mkdir((p = cb_xasprintf("%s/rootfs", dir)), 0755), 0);
    free(p);
    write_text((p = cb_xasprintf("%s/rootfs/leftover", dir)), "x");
    free(p);
    write_text((p = cb_xasprintf("%s/disk.loop", dir)), "42");
    free(p);
    ASSERT_EQ(mkdir((p = cb_xasprintf("%s/lower", dir)), 0755), 0);
    free(p);
    ASSERT_EQ(symlink(canary, (p = cb_xasprintf("%s/init.log", dir))), 0); /* kept name, a symlink */
    free(p);
    ASSERT_EQ(symlink(tmp, (p = cb_xasprintf("%s/disk", dir))), 0); /* kept dir name, a symlink */
    free(p);
    ASSERT_EQ(link(canary, (p = cb_xasprintf("%s/runtime.state", dir))), 0); /* hard link out */
    free(p);
    ASSERT_EQ(mkdir((p = cb_xasprintf("%s/upper", dir)), 0755), 0);
    free(p);
    ASSERT_EQ(mkdir((p = cb_xasprintf("%s/upper/a", dir)), 0755), 0);
    free(p);
    write_text((p = cb_xasprintf("%s/upper/a/file", dir)), "tenant data");
    free(p);
    /* The upper layer's skeleton (a sandbox without a disk image): /etc
     * made opaque by the tenant, its hostname file with data and an
     * attribute, hosts a hard link out, /tmp a symlink out. */
    ASSERT_EQ(mkdir((p = cb_xasprintf("%s/upper/etc", dir)), 0777), 0);
    ASSERT_EQ(setxattr(p, "user.overlay.opaque", "y", 1, 0), 0);
    free(p);
    write_text((p = cb_xasprintf("%s/upper/etc/hostname", dir)), "tenant's name");
    ASSERT_EQ(setxattr(p, "user.overlay.metacopy", "", 0, 0), 0);
    ASSERT_EQ(chmod(p, 06777), 0); /* set-id and writable by all: not kept */
    free(p);
    write_text((p = cb_xasprintf("%s/disk.loop", dir)), "42");
    ASSERT_EQ(chmod(p, 0644), 0); /* a mode files are made with: left */
    free(p);
    ASSERT_EQ(link(canary, (p = cb_xasprintf("%s/upper/etc/hosts", dir))), 0);
    free(p);
    ASSERT_EQ(symlink(tmp, (p = cb_xasprintf("%s/upper/tmp", dir))), 0);
    free(p);
    ASSERT_EQ(cb_sbdir_retire(s, dir, -1), 0);
    ASSERT(access(dir, F_OK) < 0);
    char *text = NULL;
    ASSERT_EQ(cb_read_file_at(AT_FDCWD, canary, 64, &text, NULL), 0);
    ASSERT_STREQ(text, "host secret\n"); /* neither truncated through the link nor removed */
    free(text);
    ASSERT_EQ(count_entries(tmp, "canary"), 1);
    ASSERT_EQ(count_entries(parent, CB_SBDIR_SPARE_PREFIX), 1);
    /* The next sandbox gets the spare: rootfs/ and lower/ emptied, the
     * emptied disk.loop, upper/ down to its skeleton (etc/ and an empty
     * etc/hostname, neither with any attribute left); the symlinks, the
     * hard links and the tenant's files went. */
    char *next = cb_xasprintf("%s/sb_b", parent);
    ASSERT_EQ(cb_sbdir_make(s, next, &l), 0);
    ASSERT_EQ(count_entries(parent, CB_SBDIR_SPARE_PREFIX), 0);
    ASSERT_EQ(count_entries(next, ""), 4);
    ASSERT_EQ(count_entries((p = cb_xasprintf("%s/rootfs", next)), ""), 0);
    free(p);
    ASSERT_EQ(count_entries((p = cb_xasprintf("%s/upper", next)), ""), 1);
    free(p);
    ASSERT_EQ(count_entries((p = cb_xasprintf("%s/upper/etc", next)), ""), 1);
    ASSERT_EQ(listxattr(p, NULL, 0), 0);
    free(p);
    struct stat hst;
    ASSERT_EQ(lstat((p = cb_xasprintf("%s/upper/etc/hostname", next)), &hst), 0);
    ASSERT(S_ISREG(hst.st_mode) && hst.st_size == 0);
    ASSERT_EQ(hst.st_mode & 07777, 0600);
    ASSERT_EQ(listxattr(p, NULL, 0), 0);
    free(p);
    ASSERT_EQ(count_entries(tmp, ""), 2); /* canary and sandboxes: nothing followed */
    struct stat st;
    ASSERT_EQ(stat((p = cb_xasprintf("%s/lower", next)), &st), 0);
    free(p);
    ASSERT(S_ISDIR(st.st_mode));
    ASSERT_EQ(lstat((p = cb_xasprintf("%s/disk.loop", next)), &st), 0);
    free(p);
    ASSERT(S_ISREG(st.st_mode));
    ASSERT_EQ((long long)st.st_size, 0);
    ASSERT_EQ(st.st_mode & 07777, 0644);
    ASSERT_EQ(stat(next, &st), 0);
    ASSERT_EQ(st.st_mode & 07777, 0711);
    cb_sbdir_close(s);
    cb_rootfs_remove_tree(tmp);
    free(next);
    free(dir);
    free(parent);
    free(canary);
    free(tmp);
}

/* make never replaces an existing directory (a sandbox of that id): the
 * spare stays a spare, the caller gets EEXIST. */
TEST(sbdir_make_existing_is_eexist)
{
    setenv("CB_SBDIR_AHEAD", "0", 1); /* only what retire keeps */
    char *tmp = make_temp();
    struct cb_sbdir_spares *s = cb_sbdir_open(tmp, 4, true);
    int l;
    char *a = cb_xasprintf("%s/sb_a", tmp), *b = cb_xasprintf("%s/sb_b", tmp);
    ASSERT_EQ(cb_sbdir_make(s, a, &l), 0);
    ASSERT_EQ(cb_sbdir_retire(s, a, -1), 0);
    ASSERT_EQ(mkdir(b, 0711), 0);
    char *mine = cb_xasprintf("%s/mine", b);
    write_text(mine, "keep");
    ASSERT_EQ(cb_sbdir_make(s, b, &l), -EEXIST);
    ASSERT_EQ(access(mine, F_OK), 0);
    ASSERT_EQ(count_entries(tmp, CB_SBDIR_SPARE_PREFIX), 1);
    /* A directory with a mount point inside (something still holds it) is
     * never kept as a spare: retire fails (EBUSY) and the directory stays. */
    char *rootfs = cb_xasprintf("%s/rootfs", b);
    ASSERT_EQ(mkdir(rootfs, 0755), 0);
    if (mount("tmpfs", rootfs, "tmpfs", 0, "size=64k") == 0) {
        ASSERT(cb_sbdir_retire(s, b, -1) < 0);
        ASSERT_EQ(access(b, F_OK), 0);
        ASSERT_EQ(count_entries(tmp, CB_SBDIR_SPARE_PREFIX), 1);
        ASSERT_EQ(umount2(rootfs, MNT_DETACH), 0);
    }
    ASSERT_EQ(cb_sbdir_retire(s, b, -1), 0);
    ASSERT_EQ(count_entries(tmp, CB_SBDIR_SPARE_PREFIX), 2);
    cb_sbdir_close(s);
    ASSERT_EQ(count_entries(tmp, CB_SBDIR_SPARE_PREFIX), 0); /* close removes its own */
    cb_rootfs_remove_tree(tmp);
    free(rootfs);
    free(mine);
    free(a);
    free(b);
    free(tmp);
}

/* Spares of a process that no longer exists are removed by the next open;
 * those of a live process (here: our parent) are left alone. */
TEST(sbdir_open_removes_only_dead_owners_spares)
{
    setenv("CB_SBDIR_AHEAD", "0", 1); /* only what retire keeps */
    char *tmp = make_temp();
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    ASSERT(child > 0);
    waitpid(child, NULL, 0);
    char *dead = cb_xasprintf("%s/" CB_SBDIR_SPARE_PREFIX "%d-0", tmp, (int)child);
    char *live = cb_xasprintf("%s/" CB_SBDIR_SPARE_PREFIX "%d-0", tmp, (int)getppid());
    ASSERT_EQ(mkdir(dead, 0711), 0);
    ASSERT_EQ(mkdir(live, 0711), 0);
    struct cb_sbdir_spares *s = cb_sbdir_open(tmp, 4, true);
    ASSERT(access(dead, F_OK) < 0);
    ASSERT_EQ(access(live, F_OK), 0);
    cb_sbdir_close(s);
    ASSERT_EQ(access(live, F_OK), 0);
    cb_rootfs_remove_tree(tmp);
    free(dead);
    free(live);
    free(tmp);
}

static int connect_to(const char *path)
{
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    if (c >= 0 && connect(c, (struct sockaddr *)&addr, sizeof addr) < 0) {
        close(c);
        return -1;
    }
    return c;
}

/* A listener bound at init.sock goes with its directory into the spare set
 * and out to the next make: the same socket inode under the new name (no
 * inode made), listening; a connection queued on it before the retire is
 * refused, never handed to the next sandbox; a later connect through the
 * new name reaches it. Anything but a listening unix stream socket is not
 * kept, and neither is its name. */
TEST(sbdir_listener_travels_with_the_spare)
{
    setenv("CB_SBDIR_AHEAD", "0", 1);
    char *tmp = make_temp();
    struct cb_sbdir_spares *s = cb_sbdir_open(tmp, 4, true);
    char *a = cb_xasprintf("%s/sb_a", tmp), *b = cb_xasprintf("%s/sb_b", tmp);
    char *asock = cb_xasprintf("%s/init.sock", a), *bsock = cb_xasprintf("%s/init.sock", b);
    int l;
    ASSERT_EQ(cb_sbdir_make(s, a, &l), 0);
    ASSERT_EQ(l, -1); /* no spare yet */
    int dfd = open(a, O_PATH | O_DIRECTORY | O_CLOEXEC);
    l = cb_sbdir_listen(dfd);
    close(dfd);
    ASSERT(l >= 0);
    struct stat st1, st2;
    ASSERT_EQ(lstat(asock, &st1), 0);
    ASSERT(S_ISSOCK(st1.st_mode) && (st1.st_mode & 0777) == 0600);
    int queued = connect_to(asock);
    ASSERT(queued >= 0);
    ASSERT_EQ(cb_sbdir_retire(s, a, l), 0);
    int l2;
    ASSERT_EQ(cb_sbdir_make(s, b, &l2), 0);
    ASSERT(l2 >= 0);
    ASSERT_EQ(lstat(bsock, &st2), 0);
    ASSERT(S_ISSOCK(st2.st_mode) && st2.st_ino == st1.st_ino);
    char c;
    ASSERT(read(queued, &c, 1) <= 0); /* refused at the retire */
    close(queued);
    int fresh = connect_to(bsock);
    ASSERT(fresh >= 0);
    int acc = accept4(l2, NULL, NULL, SOCK_CLOEXEC);
    ASSERT(acc >= 0);
    ASSERT_EQ(write(fresh, "x", 1), 1);
    ASSERT_EQ(read(acc, &c, 1), 1);
    close(acc);
    close(fresh);
    /* not a listener (one end of a pair): closed, init.sock not kept */
    int pair[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
    close(pair[1]);
    ASSERT_EQ(cb_sbdir_retire(s, b, pair[0]), 0);
    ASSERT_EQ(cb_sbdir_make(s, a, &l), 0);
    ASSERT_EQ(l, -1);
    ASSERT(access(asock, F_OK) < 0);
    /* a listener with no name of its own here: init.sock is no socket */
    ASSERT_EQ(cb_sbdir_retire(s, a, l2), 0);
    ASSERT_EQ(cb_sbdir_make(s, b, &l), 0);
    ASSERT_EQ(l, -1);
    ASSERT(access(bsock, F_OK) < 0);
    cb_sbdir_close(s);
    cb_rootfs_remove_tree(tmp);
    free(asock);
    free(bsock);
    free(a);
    free(b);
    free(tmp);
}

/* CB_SBDIR_SPARES=0: retire removes the directory. */
TEST(sbdir_disabled_removes)
{
    setenv("CB_SBDIR_AHEAD", "0", 1); /* only what retire keeps */
    setenv("CB_SBDIR_SPARES", "0", 1);
    char *tmp = make_temp();
    struct cb_sbdir_spares *s = cb_sbdir_open(tmp, 4, true);
    int l;
    char *a = cb_xasprintf("%s/sb_a", tmp);
    ASSERT_EQ(cb_sbdir_make(s, a, &l), 0);
    ASSERT_EQ(cb_sbdir_retire(s, a, -1), 0);
    ASSERT(access(a, F_OK) < 0);
    ASSERT_EQ(count_entries(tmp, ""), 0);
    cb_sbdir_close(s);
    cb_rootfs_remove_tree(tmp);
    free(a);
    free(tmp);
}

/* The holder's references are in no fd table of ours (a child forked now
 * copies nothing), yet keep what they name in use: a tmpfs the holder has
 * open cannot be unmounted (EBUSY) until the holder lets go. */
/* With no destroy to leave one, a thread makes spares ahead: each has the
 * entries a create makes (so the create allocates no inode), a make takes
 * one, the thread makes the next, and close removes them all. */
TEST(sbdir_made_ahead)
{
    setenv("CB_SBDIR_AHEAD", "3", 1);
    char *tmp = make_temp();
    char *parent = cb_xasprintf("%s/sandboxes", tmp);
    ASSERT_EQ(mkdir(parent, 0711), 0);
    struct cb_sbdir_spares *s = cb_sbdir_open(parent, 64, true);
    /* registered, not only on disk: the maker mkdirs first, then fills */
    for (int i = 0; i < 500 && cb_sbdir_ready(s) < 3; i++)
        usleep(10000);
    ASSERT_EQ(count_entries(parent, CB_SBDIR_SPARE_PREFIX), 3);
    /* Closed to the host's users while spares: the skeleton's home/user
     * and workspace belong to the host's uid 1000 until a create. */
    DIR *pd = opendir(parent);
    ASSERT(pd != NULL);
    struct dirent *de;
    while ((de = readdir(pd)) != NULL) {
        if (strncmp(de->d_name, CB_SBDIR_SPARE_PREFIX, strlen(CB_SBDIR_SPARE_PREFIX)) != 0)
            continue;
        struct stat sst;
        char *sp = cb_xasprintf("%s/%s", parent, de->d_name);
        ASSERT_EQ(stat(sp, &sst), 0);
        ASSERT_EQ(sst.st_mode & 07777, 0700);
        free(sp);
    }
    closedir(pd);
    char *dir = cb_xasprintf("%s/sb_a", parent);
    int l;
    ASSERT_EQ(cb_sbdir_make(s, dir, &l), 0);
    /* and the control socket's name, bound, with its listener */
    ASSERT(l >= 0);
    close(l);
    static const char *const made[] = {"rootfs", "upper/etc/hosts", "upper/home/user",
                                       "upper/workspace", "work", "runtime.state", "init.log",
                                       "init.sock"};
    for (size_t i = 0; i < sizeof made / sizeof *made; i++) {
        char *p = cb_xasprintf("%s/%s", dir, made[i]);
        if (access(p, F_OK) != 0)
            FAIL("%s missing", made[i]);
        free(p);
    }
    struct stat st;
    ASSERT_EQ(stat(dir, &st), 0);
    ASSERT_EQ(st.st_mode & 07777, 0711);
    /* registered, not only on disk: the maker mkdirs first, then fills */
    for (int i = 0; i < 500 && cb_sbdir_ready(s) < 3; i++)
        usleep(10000);
    ASSERT_EQ(count_entries(parent, CB_SBDIR_SPARE_PREFIX), 3); /* made again */
    cb_sbdir_close(s);
    ASSERT_EQ(count_entries(parent, CB_SBDIR_SPARE_PREFIX), 0);
    cb_rootfs_remove_tree(tmp);
    free(dir);
    free(parent);
    free(tmp);
}

/* Where sandboxes keep their layers in disk images (layers false), spares
 * made ahead have no upper/ or work/ (ten inodes each would go unused);
 * the rest is there. */
TEST(sbdir_made_ahead_without_layers)
{
    setenv("CB_SBDIR_AHEAD", "1", 1);
    char *tmp = make_temp();
    struct cb_sbdir_spares *s = cb_sbdir_open(tmp, 4, false);
    for (int i = 0; i < 500 && cb_sbdir_ready(s) < 1; i++)
        usleep(10000);
    char *dir = cb_xasprintf("%s/sb_img", tmp);
    int l;
    ASSERT_EQ(cb_sbdir_make(s, dir, &l), 0);
    if (l >= 0)
        close(l);
    static const char *const made[] = {"rootfs", "runtime.state", "init.log"};
    for (size_t i = 0; i < sizeof made / sizeof *made; i++) {
        char *p = cb_xasprintf("%s/%s", dir, made[i]);
        if (access(p, F_OK) != 0)
            FAIL("%s missing", made[i]);
        free(p);
    }
    char *upper = cb_xasprintf("%s/upper", dir), *work = cb_xasprintf("%s/work", dir);
    ASSERT(access(upper, F_OK) < 0 && access(work, F_OK) < 0);
    cb_sbdir_close(s);
    cb_rootfs_remove_tree(tmp);
    free(upper);
    free(work);
    free(dir);
    free(tmp);
}

TEST(holder_keeps_references_outside_the_fd_table)
{
    char *tmp = make_temp();
    if (mount("tmpfs", tmp, "tmpfs", 0, "size=64k") < 0)
        SKIP("cannot mount tmpfs: %s", strerror(errno));
    cb_holder_close(cb_holder_open("/")); /* started: its socket end is ours */
    int before = count_fds();
    int h = cb_holder_open(tmp);
    ASSERT(h >= 0);
    ASSERT_EQ(count_fds(), before); /* not in our table */
    ASSERT(umount2(tmp, 0) < 0);
    ASSERT_EQ(errno, EBUSY); /* held */
    ASSERT_EQ(cb_holder_open("/nonexistent-cellbox-path"), -ENOENT);
    cb_holder_close(h);
    ASSERT_EQ(count_fds(), before); /* the handed-back fd was closed */
    ASSERT_EQ(umount2(tmp, 0), 0);  /* released */
    cb_holder_close(-1);            /* ignored */
    rmdir(tmp);
    free(tmp);
}
