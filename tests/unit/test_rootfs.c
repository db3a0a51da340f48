/* host template skeleton generation and safe tree removal. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

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
    cb_template_free(t);
    ASSERT_EQ(cb_template_make_host(tmpl, NULL), 0); /* idempotent */
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
    cb_rootfs_remove_tree(tmpl);
}
