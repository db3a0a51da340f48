/* uid slot allocation: unique, never overlapping, released on request. */
#include <fcntl.h>
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
