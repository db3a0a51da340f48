/* uid slot allocation: unique, never overlapping, released on request. */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "idmap.h"
#include "rootfs.h"
#include "runner.h"

TEST(idmap_slots_unique_and_released)
{
    char tmpl[] = "/tmp/cb-idmap-XXXXXX";
    ASSERT(mkdtemp(tmpl));
    int dfd = open(tmpl, O_PATH | O_DIRECTORY | O_CLOEXEC);
    uint32_t a, b, c;
    ASSERT_EQ(cb_idmap_alloc_slot(dfd, 3, "sb_a", &a, NULL), 0);
    ASSERT_EQ(cb_idmap_alloc_slot(dfd, 3, "sb_b", &b, NULL), 0);
    ASSERT_EQ(cb_idmap_alloc_slot(dfd, 3, "sb_c", &c, NULL), 0);
    ASSERT(a != b && b != c && a != c);
    struct cb_error *err = NULL;
    uint32_t d;
    ASSERT(cb_idmap_alloc_slot(dfd, 3, "sb_d", &d, &err) < 0);
    ASSERT_EQ(err->kind, CB_ERR_LIMIT);
    cb_error_free(err);
    ASSERT_EQ(cb_idmap_release_slot(dfd, b, NULL), 0);
    ASSERT_EQ(cb_idmap_alloc_slot(dfd, 3, "sb_d", &d, NULL), 0);
    ASSERT_EQ(d, b);
    ASSERT_EQ(cb_idmap_release_slot(dfd, b, NULL), 0);
    ASSERT_EQ(cb_idmap_release_slot(dfd, b, NULL), 0); /* idempotent */
    /* ranges never overlap */
    ASSERT_EQ(cb_idmap_base(1u << 30, 1) - cb_idmap_base(1u << 30, 0), CB_IDMAP_RANGE);
    close(dfd);
    cb_rootfs_remove_tree(tmpl);
}

TEST(idmap_concurrent_allocation)
{
    char tmpl[] = "/tmp/cb-idmap-XXXXXX";
    ASSERT(mkdtemp(tmpl));
    int dfd = open(tmpl, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int pipefd[2];
    ASSERT_EQ(pipe(pipefd), 0);
    for (int i = 0; i < 8; i++) {
        if (fork() == 0) {
            uint32_t s;
            for (int k = 0; k < 4; k++)
                if (cb_idmap_alloc_slot(dfd, 1000, "x", &s, NULL) == 0)
                    if (write(pipefd[1], &s, sizeof s) != sizeof s)
                        _exit(1);
            _exit(0);
        }
    }
    close(pipefd[1]);
    for (int i = 0; i < 8; i++)
        wait(NULL);
    char seen[1000] = {0};
    uint32_t s;
    int n = 0;
    while (read(pipefd[0], &s, sizeof s) == sizeof s) {
        ASSERT(s < 1000);
        ASSERT_EQ(seen[s], 0);
        seen[s] = 1;
        n++;
    }
    ASSERT_EQ(n, 32);
    close(dfd);
    cb_rootfs_remove_tree(tmpl);
}

/* A released slot's file is kept (.free-<n>) and renamed back by reuse:
 * no new inode for a slot used before. Taken exactly while <n> exists,
 * whichever way it was taken, so the two ways never hand one slot out
 * twice. */
TEST(idmap_released_slot_file_reused)
{
    char tmpl[] = "/tmp/cb-idmap-XXXXXX";
    ASSERT(mkdtemp(tmpl));
    int dfd = open(tmpl, O_PATH | O_DIRECTORY | O_CLOEXEC);
    uint32_t a;
    ASSERT_EQ(cb_idmap_alloc_slot(dfd, 4, "sb_first_owner_long_name", &a, NULL), 0);
    struct stat before, after;
    char name[16];
    snprintf(name, sizeof name, "%u", a);
    ASSERT_EQ(fstatat(dfd, name, &before, 0), 0);
    ASSERT(cb_idmap_reuse_slot(dfd, a, "sb_x") < 0); /* taken, nothing released */
    ASSERT_EQ(cb_idmap_release_slot(dfd, a, NULL), 0);
    ASSERT(fstatat(dfd, name, &after, 0) < 0); /* released: <n> is gone */
    ASSERT_EQ(cb_idmap_reuse_slot(dfd, a, "sb_second"), 0);
    ASSERT_EQ(fstatat(dfd, name, &after, 0), 0);
    ASSERT_EQ(after.st_ino, before.st_ino); /* the same file */
    _cleanup_free_ char *owner = NULL;
    ASSERT_EQ(cb_read_file_at(dfd, name, 128, &owner, NULL), 0);
    ASSERT_STREQ(owner, "sb_second"); /* no tail of the longer old owner */
    ASSERT_EQ(cb_idmap_reuse_slot(dfd, a, "sb_third"), -ENOENT); /* nothing released */
    /* a stale .free file (a crash between steps) never hands out a taken slot */
    char free_name[24];
    snprintf(free_name, sizeof free_name, ".free-%u", a);
    int ffd = openat(dfd, free_name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    ASSERT(ffd >= 0);
    close(ffd);
    ASSERT_EQ(cb_idmap_reuse_slot(dfd, a, "sb_fourth"), -EEXIST);
    /* An O_EXCL allocation skips it while taken, whatever .free files exist */
    uint32_t b;
    ASSERT_EQ(cb_idmap_alloc_slot_from(dfd, 4, a, "sb_b", &b, NULL), 0);
    ASSERT(b != a);
    close(dfd);
    cb_rootfs_remove_tree(tmpl);
}
