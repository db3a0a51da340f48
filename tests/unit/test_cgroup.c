/* cgroup v1 and v2 back ends against fake trees in a temp dir. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

#include "cgroup.h"
#include "rootfs.h"
#include "runner.h"

static char *fake_root(void)
{
    char tmpl[] = "/tmp/cb-cgroup-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    if (!d)
        FAIL("mkdtemp");
    return cb_xstrdup(d);
}

static void expect_file(const char *dir, const char *file, const char *want)
{
    char buf[256];
    int n = cb_cgroup_read(dir, file, buf, sizeof buf);
    if (n < 0)
        FAIL("read %s/%s: %d", dir, file, n);
    ASSERT_STREQ(buf, want);
}

/* A fake v1 root with one hierarchy per controller, none shared. */
static const char *const v1_hier[] = {"memory", "cpu", "cpuacct", "pids", "freezer"};

static char *fake_v1_root_swap(bool swap_accounted)
{
    char *root = fake_root();
    for (size_t i = 0; i < CB_ARRAY_SIZE(v1_hier); i++) {
        char *d = cb_xasprintf("%s/%s", root, v1_hier[i]);
        if (mkdir(d, 0755) < 0)
            FAIL("mkdir %s", d);
        free(d);
    }
    /* The root memory cgroup has memsw files exactly when swap is accounted. */
    char *mem = cb_xasprintf("%s/memory", root);
    if (swap_accounted && cb_cgroup_write(mem, "memory.memsw.limit_in_bytes", "-1", NULL) < 0)
        FAIL("fake memsw");
    free(mem);
    return root;
}

static char *fake_v1_root(void)
{
    return fake_v1_root_swap(true);
}

static bool exists_in(const char *dir, const char *file)
{
    char *p = cb_xasprintf("%s/%s", dir, file);
    bool r = access(p, F_OK) == 0;
    free(p);
    return r;
}

TEST(cgroup_v1_fake_tree)
{
    char *root = fake_v1_root();
    struct cb_cgroup_manager *m;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    ASSERT_STREQ(m->ops->version, "v1");
    struct cb_limits l = {.cpu = 1.5, .memory_bytes = 64 << 20, .pids = 0};
    struct cb_cgroup *cg;
    ASSERT_EQ(cb_cgroup_create(m, "sb_x", &l, &cg, &err), 0);
    ASSERT_EQ(cg->ndirs, 5);
    char *mem = cb_xasprintf("%s/memory/cellbox/sb_x", root);
    char *cpu = cb_xasprintf("%s/cpu/cellbox/sb_x", root);
    char *pids = cb_xasprintf("%s/pids/cellbox/sb_x", root);
    char *frz = cb_xasprintf("%s/freezer/cellbox/sb_x", root);
    expect_file(mem, "memory.limit_in_bytes", "67108864");
    expect_file(mem, "memory.memsw.limit_in_bytes", "67108864");
    expect_file(cpu, "cpu.cfs_quota_us", "150000");
    expect_file(cpu, "cpu.cfs_period_us", "100000");
    expect_file(cpu, "cpu.shares", "1536");
    expect_file(pids, "pids.max", "512");
    ASSERT_EQ(cb_cgroup_attach(cg, 4242, &err), 0);
    expect_file(frz, "cgroup.procs", "4242");
    ASSERT_EQ(m->ops->freeze(cg, true, &err), 0);
    expect_file(frz, "freezer.state", "FROZEN");
    ASSERT_EQ(m->ops->freeze(cg, false, &err), 0);
    expect_file(frz, "freezer.state", "THAWED");
    cb_cgroup_write(mem, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", NULL);
    cb_cgroup_write(pids, "pids.current", "7\n", NULL);
    struct cb_sandbox_stats st = {0};
    ASSERT_EQ(m->ops->stats(cg, &st, &err), 0);
    ASSERT_EQ(st.oom_kills, 3);
    ASSERT_EQ(st.pids, 7);
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);
    cb_rootfs_remove_tree(root);
}

/* A host that does not charge swap to memory cgroups (swapaccount=0, or
 * no CONFIG_SWAP) has no memsw files: a create must not fail on them, and
 * the sandbox is kept out of swap the way v1 allows. */
TEST(cgroup_v1_without_swap_accounting)
{
    char *root = fake_v1_root_swap(false);
    struct cb_cgroup_manager *m;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    ASSERT(m->swap_uncapped);
    struct cb_limits l = {.memory_bytes = 64 << 20};
    struct cb_cgroup *cg;
    ASSERT_EQ(cb_cgroup_create(m, "sb_ns", &l, &cg, &err), 0);
    char *mem = cb_xasprintf("%s/memory/cellbox/sb_ns", root);
    expect_file(mem, "memory.limit_in_bytes", "67108864");
    expect_file(mem, "memory.swappiness", "0");
    ASSERT(!(exists_in(mem, "memory.memsw.limit_in_bytes")));
    l.memory_bytes = 256 << 20; /* raising and removing take the same path */
    ASSERT_EQ(m->ops->set_limits(cg, &l, &err), 0);
    expect_file(mem, "memory.limit_in_bytes", "268435456");
    l.memory_bytes = 0;
    ASSERT_EQ(m->ops->set_limits(cg, &l, &err), 0);
    expect_file(mem, "memory.limit_in_bytes", "-1");
    ASSERT(!(exists_in(mem, "memory.memsw.limit_in_bytes")));
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);
    /* With accounting, swap is capped with memsw and swappiness untouched. */
    char *root2 = fake_v1_root();
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root2, "cellbox", &m, &err), 0);
    ASSERT(!(m->swap_uncapped));
    ASSERT_EQ(cb_cgroup_create(m, "sb_s", &l, &cg, &err), 0);
    char *mem2 = cb_xasprintf("%s/memory/cellbox/sb_s", root2);
    expect_file(mem2, "memory.memsw.limit_in_bytes", "-1");
    ASSERT(!(exists_in(mem2, "memory.swappiness")));
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);
    cb_rootfs_remove_tree(root);
    cb_rootfs_remove_tree(root2);
}

TEST(cgroup_v1_shared_hierarchy)
{
    /* cpu -> cpu,cpuacct symlink: one directory, used once */
    char *root = fake_root();
    char *both = cb_xasprintf("%s/cpu,cpuacct", root);
    ASSERT_EQ(mkdir(both, 0755), 0);
    char *cpu = cb_xasprintf("%s/cpu", root), *acct = cb_xasprintf("%s/cpuacct", root);
    ASSERT_EQ(symlink("cpu,cpuacct", cpu), 0);
    ASSERT_EQ(symlink("cpu,cpuacct", acct), 0);
    struct cb_cgroup_manager *m;
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, NULL), 0);
    struct cb_cgroup *cg = cb_cgroup_open(m, "sb_y");
    ASSERT_EQ(cg->ndirs, 1);
    ASSERT_EQ(cg->cpu, cg->cpuacct);
    ASSERT_EQ(cg->memory, -1);
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);
    cb_rootfs_remove_tree(root);
}

/* A fake v2 root whose parent cgroup "cellbox" has memory.swap.max when
 * swap is accounted (the kernel shows it in every non-root memory cgroup). */
static char *fake_v2_root(bool swap_accounted)
{
    char *root = fake_root();
    char *parent = cb_xasprintf("%s/cellbox", root);
    if (mkdir(parent, 0755) < 0)
        FAIL("mkdir %s", parent);
    if (swap_accounted && cb_cgroup_write(parent, "memory.swap.max", "max", NULL) < 0)
        FAIL("fake memory.swap.max");
    free(parent);
    return root;
}

TEST(cgroup_v2_without_swap_accounting)
{
    char *root = fake_v2_root(false);
    struct cb_cgroup_manager *m;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V2, root, "cellbox", &m, &err), 0);
    ASSERT(m->swap_uncapped);
    struct cb_limits l = {.memory_bytes = 128 << 20};
    struct cb_cgroup *cg;
    ASSERT_EQ(cb_cgroup_create(m, "sb_ns", &l, &cg, &err), 0);
    char *d = cb_xasprintf("%s/cellbox/sb_ns", root);
    expect_file(d, "memory.max", "134217728");
    ASSERT(!(exists_in(d, "memory.swap.max")));
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);
    cb_rootfs_remove_tree(root);
}

TEST(cgroup_v2_fake_tree)
{
    char *root = fake_v2_root(true);
    struct cb_cgroup_manager *m;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V2, root, "cellbox", &m, &err), 0);
    ASSERT(!(m->swap_uncapped));
    char *parent = cb_xasprintf("%s/cellbox", root);
    expect_file(parent, "cgroup.subtree_control", "+pids"); /* last write wins in a fake file */
    struct cb_limits l = {.cpu = 0.5, .memory_bytes = 128 << 20, .pids = 64};
    struct cb_cgroup *cg;
    ASSERT_EQ(cb_cgroup_create(m, "sb_z", &l, &cg, &err), 0);
    char *d = cb_xasprintf("%s/cellbox/sb_z", root);
    expect_file(d, "memory.max", "134217728");
    expect_file(d, "memory.swap.max", "0");
    expect_file(d, "cpu.max", "50000 100000");
    expect_file(d, "cpu.weight", "50");
    expect_file(d, "pids.max", "64");
    cb_cgroup_write(d, "cgroup.events", "populated 1\nfrozen 1\n", NULL);
    ASSERT_EQ(m->ops->freeze(cg, true, &err), 0);
    expect_file(d, "cgroup.freeze", "1");
    cb_cgroup_write(d, "cpu.stat", "usage_usec 250\nuser_usec 100\n", NULL);
    cb_cgroup_write(d, "memory.current", "4096\n", NULL);
    cb_cgroup_write(d, "memory.peak", "8192\n", NULL);
    cb_cgroup_write(d, "memory.events", "low 0\noom 1\noom_kill 2\n", NULL);
    struct cb_sandbox_stats st = {0};
    ASSERT_EQ(m->ops->stats(cg, &st, &err), 0);
    ASSERT_EQ(st.cpu_ns, 250000);
    ASSERT_EQ(st.memory_bytes, 4096);
    ASSERT_EQ(st.memory_peak_bytes, 8192);
    ASSERT_EQ(st.oom_kills, 2);
    l.memory_bytes = 0;
    l.cpu = 0;
    ASSERT_EQ(m->ops->set_limits(cg, &l, &err), 0);
    expect_file(d, "memory.max", "max");
    expect_file(d, "cpu.max", "max 100000");
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);
    cb_rootfs_remove_tree(root);
}

TEST(cgroup_parent_validated)
{
    struct cb_cgroup_manager *m;
    struct cb_error *err = NULL;
    ASSERT(cb_cgroup_manager_open(CB_CGROUP_V2, "/tmp", "../etc", &m, &err) < 0);
    ASSERT_EQ(err->kind, CB_ERR_BAD_REQUEST);
    cb_error_free(err);
}

/* Make the fake memory cgroup of id look like an empty cgroup the kernel
 * would show after its sandbox died (oom_kills given). */
static char *fake_dead_memcg(const char *root, const char *id, int oom_kills)
{
    char *mem = cb_xasprintf("%s/memory/cellbox/%s", root, id);
    char oom[64];
    snprintf(oom, sizeof oom, "oom_kill_disable 0\nunder_oom 0\noom_kill %d\n", oom_kills);
    cb_cgroup_write(mem, "memory.oom_control", oom, NULL);
    cb_cgroup_write(mem, "memory.usage_in_bytes", "4096\n", NULL);
    cb_cgroup_write(mem, "memory.max_usage_in_bytes", "777\n", NULL);
    cb_cgroup_write(mem, "memory.kmem.max_usage_in_bytes", "555\n", NULL);
    cb_cgroup_write(mem, "memory.kmem.tcp.failcnt", "3\n", NULL);
    cb_cgroup_write(mem, "cgroup.procs", "", NULL);
    return mem;
}

TEST(cgroup_v1_memory_cgroup_recycled)
{
    char *root = fake_root();
    char *memh = cb_xasprintf("%s/memory", root);
    ASSERT_EQ(mkdir(memh, 0755), 0);
    struct cb_cgroup_manager *m;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    struct cb_limits l = {.memory_bytes = 64 << 20};
    struct cb_cgroup *cg;
    ASSERT_EQ(cb_cgroup_create(m, "sb_a", &l, &cg, &err), 0);
    char *mem_a = fake_dead_memcg(root, "sb_a", 0);
    /* Clean and empty: renamed to a spare instead of removed, peak reset. */
    ASSERT_EQ(cb_cgroup_destroy(cg, 0, &err), 0);
    cb_cgroup_free(cg);
    ASSERT_EQ(cb_cgroup_spare_count(m), 1);
    struct stat st;
    ASSERT_EQ(stat(mem_a, &st), -1);
    /* The next create takes it (its files came along) under the new id. */
    ASSERT_EQ(cb_cgroup_create(m, "sb_b", &l, &cg, &err), 0);
    ASSERT_EQ(cb_cgroup_spare_count(m), 0);
    char *mem_b = cb_xasprintf("%s/memory/cellbox/sb_b", root);
    expect_file(mem_b, "memory.max_usage_in_bytes", "0");
    expect_file(mem_b, "memory.kmem.max_usage_in_bytes", "0"); /* the sandbox reads them */
    expect_file(mem_b, "memory.kmem.tcp.failcnt", "0");
    expect_file(mem_b, "memory.limit_in_bytes", "67108864");
    /* An OOM kill cannot be reset: such a cgroup is never handed on. */
    fake_dead_memcg(root, "sb_b", 2);
    cb_cgroup_destroy(cg, 0, NULL); /* rmdir fails on the fake tree's files */
    cb_error_free(err);
    err = NULL;
    cb_cgroup_free(cg);
    ASSERT_EQ(cb_cgroup_spare_count(m), 0);
    ASSERT_EQ(stat(mem_b, &st), 0);
    /* A spare left by an earlier process is adopted by the next manager. */
    char *left = cb_xasprintf("%s/memory/cellbox/" CB_CGROUP_SPARE_PREFIX "1-0", root);
    ASSERT_EQ(rename(mem_b, left), 0);
    fake_dead_memcg(root, CB_CGROUP_SPARE_PREFIX "1-0", 0);
    struct cb_cgroup_manager *m2;
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m2, &err), 0);
    ASSERT_EQ(cb_cgroup_spare_count(m2), 1);
    cb_cgroup_manager_free(m2);
    cb_cgroup_manager_free(m);
    cb_rootfs_remove_tree(root);
}

static int count_spares(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strncmp(e->d_name, CB_CGROUP_SPARE_PREFIX, strlen(CB_CGROUP_SPARE_PREFIX)) == 0;
    if (d)
        closedir(d);
    return n;
}

/* The fake cgroups of id in every hierarchy, as the kernel would show
 * them after the sandbox died: pids.max refused `refused` forks, the
 * freezer is in `freezer`. */
static void fake_dead_sandbox(const char *root, const char *id, int refused, const char *freezer)
{
    free(fake_dead_memcg(root, id, 0));
    static const char *const others[] = {"cpu", "cpuacct", "pids", "freezer"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(others); i++) {
        char *dir = cb_xasprintf("%s/%s/cellbox/%s", root, others[i], id);
        cb_cgroup_write(dir, "cgroup.procs", "", NULL); /* empty */
        free(dir);
    }
    char *d = cb_xasprintf("%s/cpuacct/cellbox/%s", root, id);
    cb_cgroup_write(d, "cpuacct.usage", "123456789\n", NULL);
    free(d);
    d = cb_xasprintf("%s/pids/cellbox/%s", root, id);
    char ev[32];
    snprintf(ev, sizeof ev, "max %d\n", refused);
    cb_cgroup_write(d, "pids.events", ev, NULL);
    free(d);
    d = cb_xasprintf("%s/freezer/cellbox/%s", root, id);
    cb_cgroup_write(d, "freezer.state", freezer, NULL);
    free(d);
}

/* Every v1 hierarchy is recycled, each only when clean: cpuacct's usage
 * starts from zero again, a cgroup that refused a fork at pids.max or is
 * not thawed is removed instead. */
TEST(cgroup_v1_all_hierarchies_recycled)
{
    char *root = fake_v1_root();
    struct cb_cgroup_manager *m;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    struct cb_limits l = {.memory_bytes = 64 << 20, .pids = 100};
    struct cb_cgroup *cg;
    ASSERT_EQ(cb_cgroup_create(m, "sb_a", &l, &cg, &err), 0);
    fake_dead_sandbox(root, "sb_a", 0, "THAWED\n");
    ASSERT_EQ(cb_cgroup_destroy(cg, 0, &err), 0);
    cb_cgroup_free(cg);
    for (size_t i = 0; i < CB_ARRAY_SIZE(v1_hier); i++) {
        char *parent = cb_xasprintf("%s/%s/cellbox", root, v1_hier[i]);
        ASSERT_EQ(count_spares(parent), 1);
        free(parent);
    }
    ASSERT_EQ(cb_cgroup_spare_count(m), 1);
    /* The next sandbox takes them all, its counters from zero. */
    ASSERT_EQ(cb_cgroup_create(m, "sb_b", &l, &cg, &err), 0);
    ASSERT_EQ(cb_cgroup_spare_count(m), 0);
    char *acct_b = cb_xasprintf("%s/cpuacct/cellbox/sb_b", root);
    expect_file(acct_b, "cpuacct.usage", "0");
    char *pids_b = cb_xasprintf("%s/pids/cellbox/sb_b", root);
    expect_file(pids_b, "pids.max", "100");
    /* A refused fork and a frozen freezer cannot be hidden: removed. */
    fake_dead_sandbox(root, "sb_b", 3, "FROZEN\n");
    cb_cgroup_destroy(cg, 0, NULL); /* rmdir fails on the fake tree's files */
    cb_error_free(err);
    err = NULL;
    cb_cgroup_free(cg);
    struct stat st;
    ASSERT_EQ(stat(pids_b, &st), 0); /* not renamed to a spare */
    char *pids_parent = cb_xasprintf("%s/pids/cellbox", root);
    char *freezer_parent = cb_xasprintf("%s/freezer/cellbox", root);
    char *mem_parent = cb_xasprintf("%s/memory/cellbox", root);
    ASSERT_EQ(count_spares(pids_parent), 0);
    ASSERT_EQ(count_spares(freezer_parent), 0);
    ASSERT_EQ(count_spares(mem_parent), 1); /* the clean ones still are */
    cb_cgroup_manager_free(m);
    free(acct_b);
    free(pids_b);
    free(pids_parent);
    free(freezer_parent);
    free(mem_parent);
    cb_rootfs_remove_tree(root);
    free(root);
}

TEST(cgroup_write_changed_skips_equal_value)
{
    char *root = fake_root();
    ASSERT_EQ(cb_cgroup_write(root, "cpu.cfs_quota_us", "-1\n", NULL), 0);
    struct stat before, after;
    char *f = cb_xasprintf("%s/cpu.cfs_quota_us", root);
    ASSERT_EQ(stat(f, &before), 0);
    ASSERT_EQ(cb_cgroup_write_changed(root, "cpu.cfs_quota_us", "-1", NULL), 0);
    ASSERT_EQ(stat(f, &after), 0);
    ASSERT_EQ(after.st_size, before.st_size); /* "-1\n" untouched, not rewritten as "-1" */
    ASSERT_EQ(cb_cgroup_write_changed(root, "cpu.cfs_quota_us", "50000", NULL), 0);
    expect_file(root, "cpu.cfs_quota_us", "50000");
    cb_rootfs_remove_tree(root);
}

/* Wait up to ~5 s until every hierarchy of m holds n spares. */
static bool spares_reach(const struct cb_cgroup_manager *m, int n)
{
    for (int i = 0; i < 500; i++) {
        if (cb_cgroup_spare_count_min(m) == n && cb_cgroup_spare_count(m) == n)
            return true;
        usleep(10000);
    }
    return false;
}

TEST(cgroup_v1_spares_made_ahead)
{
    unsetenv("CB_CGROUP_AHEAD");
    char *root = fake_root();
    const char *hier[] = {"memory", "pids", "freezer"};
    char *parents[3];
    for (int i = 0; i < 3; i++) {
        char *h = cb_xasprintf("%s/%s", root, hier[i]);
        ASSERT_EQ(mkdir(h, 0755), 0);
        free(h);
        parents[i] = cb_xasprintf("%s/%s/cellbox", root, hier[i]);
    }
    struct cb_cgroup_manager *m;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    ASSERT_EQ(cb_cgroup_spare_count(m), 0); /* nothing until asked */
    cb_cgroup_spares_ahead(m, 3);
    ASSERT(spares_reach(m, 3));
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(count_spares(parents[i]), 3);
    /* A burst of creates: each renames a set made ahead; the maker makes
     * the next ones, back to the same count. */
    struct cb_limits l = {.memory_bytes = 64 << 20};
    struct cb_cgroup *cg[5];
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "sb_%d", i);
        ASSERT_EQ(cb_cgroup_create(m, id, &l, &cg[i], &err), 0);
        for (int h = 0; h < 3; h++) {
            char *dir = cb_xasprintf("%s/%s", parents[h], id);
            struct stat st;
            ASSERT_EQ(stat(dir, &st), 0);
            free(dir);
        }
    }
    expect_file(cg[4]->dirs[cg[4]->memory], "memory.limit_in_bytes", "67108864");
    ASSERT(spares_reach(m, 3));
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(count_spares(parents[i]), 3);
    /* Asking again changes nothing; freeing the manager stops the maker
     * and removes its spares, not the sandboxes' cgroups. */
    cb_cgroup_spares_ahead(m, 3);
    cb_cgroup_manager_free(m);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(count_spares(parents[i]), 0);
        char *dir = cb_xasprintf("%s/sb_4", parents[i]);
        struct stat st;
        ASSERT_EQ(stat(dir, &st), 0);
        free(dir);
    }
    for (int i = 0; i < 5; i++)
        cb_cgroup_free(cg[i]);
    /* CB_CGROUP_AHEAD=0: none made ahead. */
    setenv("CB_CGROUP_AHEAD", "0", 1);
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    cb_cgroup_spares_ahead(m, 3);
    usleep(100000);
    ASSERT_EQ(cb_cgroup_spare_count(m), 0);
    cb_cgroup_manager_free(m);
    unsetenv("CB_CGROUP_AHEAD");
    for (int i = 0; i < 3; i++)
        free(parents[i]);
    cb_rootfs_remove_tree(root);
    free(root);
}

TEST(cgroup_clone_into_fd_v2_only)
{
    char *root = fake_root();
    struct cb_cgroup_manager *m;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V2, root, "cellbox", &m, &err), 0);
    ASSERT(!cb_cgroup_can_rename(m)); /* a claim under another id is refused */
    struct cb_cgroup *cg = cb_cgroup_open(m, "sb_x");
    ASSERT_EQ(cb_cgroup_open_clone_into_fd(cg), -ENOENT); /* not made yet */
    ASSERT_EQ(mkdir(cg->dirs[0], 0755), 0);
    int fd = cb_cgroup_open_clone_into_fd(cg);
    ASSERT(fd >= 0);
    struct stat a, b;
    ASSERT_EQ(fstat(fd, &a), 0);
    ASSERT_EQ(stat(cg->dirs[0], &b), 0);
    ASSERT(a.st_ino == b.st_ino && S_ISDIR(a.st_mode));
    ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    close(fd);
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);
    cb_rootfs_remove_tree(root);
    free(root);
    /* v1 sandboxes join through their tasks files instead */
    root = fake_v1_root();
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    ASSERT(cb_cgroup_can_rename(m));
    cg = cb_cgroup_open(m, "sb_x");
    ASSERT_EQ(cb_cgroup_open_clone_into_fd(cg), -EOPNOTSUPP);
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);
    cb_rootfs_remove_tree(root);
    free(root);
}

/* What a sandbox is shown of its cgroup (cb_cgroup_view) and the v1 view
 * directory the hierarchies are bound in. */
TEST(cgroup_view_v1_and_v2)
{
    /* separate cpu and cpuacct hierarchies */
    char *root = fake_v1_root();
    struct cb_cgroup_manager *m;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    struct cb_cgroup *cg = cb_cgroup_open(m, "sb_v");
    struct cb_cgroup_view v;
    cb_cgroup_view(cg, &v);
    ASSERT_EQ(v.n, 3); /* no cpuset hierarchy in this tree */
    ASSERT_STREQ(v.names[0], "memory");
    ASSERT_STREQ(v.names[1], "cpu");
    ASSERT_STREQ(v.names[2], "cpuacct");
    ASSERT_STREQ(v.sources[0], cg->dirs[cg->memory]);
    ASSERT_STREQ(v.sources[2], cg->dirs[cg->cpuacct]);
    char *view = cb_xasprintf("%s/view", root);
    ASSERT_EQ(cb_cgroup_make_view_dir(m, view), 0);
    ASSERT_EQ(cb_cgroup_make_view_dir(m, view), 0); /* again: nothing changes */
    struct stat st;
    ASSERT_EQ(stat(view, &st), 0);
    ASSERT_EQ(st.st_mode & 07777, 0555);
    ASSERT(exists_in(view, "memory") && exists_in(view, "cpu") && exists_in(view, "cpuacct"));
    ASSERT(!exists_in(view, "pids") && !exists_in(view, "freezer") && !exists_in(view, "cpuset"));
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);
    /* a writable view directory is never used */
    ASSERT_EQ(chmod(view, 0755), 0);
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    ASSERT_EQ(cb_cgroup_make_view_dir(m, view), -EPERM);
    cb_cgroup_manager_free(m);
    cb_rootfs_remove_tree(root);

    /* cpu and cpuacct in one hierarchy "cpu,cpuacct": shown once, under
     * that name, with the controllers' names as links */
    root = fake_root();
    const char *dirs[] = {"memory", "cpu,cpuacct"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(dirs); i++) {
        char *d = cb_xasprintf("%s/%s", root, dirs[i]);
        ASSERT_EQ(mkdir(d, 0755), 0);
        free(d);
    }
    char *cpu = cb_xasprintf("%s/cpu", root), *acct = cb_xasprintf("%s/cpuacct", root);
    ASSERT_EQ(symlink("cpu,cpuacct", cpu), 0);
    ASSERT_EQ(symlink("cpu,cpuacct", acct), 0);
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    cg = cb_cgroup_open(m, "sb_w");
    cb_cgroup_view(cg, &v);
    ASSERT_EQ(v.n, 2); /* cpuacct comes with cpu */
    ASSERT_STREQ(v.names[1], "cpu,cpuacct");
    view = cb_xasprintf("%s/view", root);
    ASSERT_EQ(cb_cgroup_make_view_dir(m, view), 0);
    const char *links[] = {"cpu", "cpuacct"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(links); i++) {
        char *link = cb_xasprintf("%s/%s", view, links[i]);
        char text[64] = {0};
        ASSERT(readlink(link, text, sizeof text - 1) > 0);
        ASSERT_STREQ(text, "cpu,cpuacct");
        free(link);
    }
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);
    cb_rootfs_remove_tree(root);

    /* v2: the one directory, no view directory */
    root = fake_v2_root(true);
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V2, root, "cellbox", &m, &err), 0);
    cg = cb_cgroup_open(m, "sb_z");
    cb_cgroup_view(cg, &v);
    ASSERT_EQ(v.n, 1);
    ASSERT_STREQ(v.sources[0], cg->dirs[0]);
    ASSERT(v.names[0] == NULL);
    view = cb_xasprintf("%s/view", root);
    ASSERT_EQ(cb_cgroup_make_view_dir(m, view), 0);
    ASSERT(access(view, F_OK) < 0);
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);
    cb_rootfs_remove_tree(root);
}

/* v1 with a cpuset hierarchy: one cpuset cgroup shared by every sandbox,
 * given the root's CPUs and nodes (a new one has none and refuses tasks),
 * joined by each sandbox after its own directories and shown to it: the
 * JVM's v1 support reads nothing without a cpuset. */
TEST(cgroup_v1_shared_cpuset)
{
    char *root = fake_v1_root();
    char *hier = cb_xasprintf("%s/cpuset", root);
    ASSERT_EQ(mkdir(hier, 0755), 0);
    /* A root with empty lists (unreadable in effect): no cpuset, said, and
     * sandboxes work as before. */
    struct cb_cgroup_manager *m;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    ASSERT(m->cpuset == NULL);
    struct cb_cgroup *cg = cb_cgroup_open(m, "sb_c");
    struct cb_cgroup_view v;
    cb_cgroup_view(cg, &v);
    ASSERT_EQ(v.n, 3);
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);

    ASSERT_EQ(cb_cgroup_write(hier, "cpuset.cpus", "0-3\n", NULL), 0);
    ASSERT_EQ(cb_cgroup_write(hier, "cpuset.mems", "0\n", NULL), 0);
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    char *shared = cb_xasprintf("%s/cellbox", hier);
    ASSERT_STREQ(m->cpuset, shared);
    expect_file(shared, "cpuset.cpus", "0-3");
    expect_file(shared, "cpuset.mems", "0");
    struct cb_limits l = {.memory_bytes = 64 << 20};
    ASSERT_EQ(cb_cgroup_create(m, "sb_c", &l, &cg, &err), 0);
    ASSERT_EQ(cg->ndirs, 5); /* no cpuset directory of its own */
    for (int i = 0; i < cg->ndirs; i++) /* cgroupfs has them; the fake tree not */
        ASSERT_EQ(cb_cgroup_write(cg->dirs[i], "tasks", "", NULL), 0);
    ASSERT_EQ(cb_cgroup_write(shared, "tasks", "", NULL), 0);
    int fds[CB_CGROUP_MAX_JOIN];
    ASSERT_EQ(cb_cgroup_open_join_fds(cg, fds, &err), 6);
    ASSERT_EQ(write(fds[5], "0", 1), 1);
    for (int i = 0; i < 6; i++)
        close(fds[i]);
    expect_file(shared, "tasks", "0");
    ASSERT_EQ(cb_cgroup_attach(cg, 4242, &err), 0);
    expect_file(shared, "cgroup.procs", "4242");
    cb_cgroup_view(cg, &v);
    ASSERT_EQ(v.n, 4);
    ASSERT_STREQ(v.names[3], "cpuset");
    ASSERT_STREQ(v.sources[3], shared);
    char *view = cb_xasprintf("%s/view", root);
    ASSERT_EQ(cb_cgroup_make_view_dir(m, view), 0);
    ASSERT(exists_in(view, "cpuset"));
    cb_cgroup_free(cg);
    cb_cgroup_manager_free(m);
    struct stat st; /* the shared cgroup stays for the next daemon */
    ASSERT_EQ(stat(shared, &st), 0);

    /* cpuset sharing a hierarchy with a controller we join: not shared */
    cb_rootfs_remove_tree(hier);
    ASSERT_EQ(symlink("memory", hier), 0);
    ASSERT_EQ(cb_cgroup_manager_open(CB_CGROUP_V1, root, "cellbox", &m, &err), 0);
    ASSERT(m->cpuset == NULL);
    cb_cgroup_manager_free(m);
    free(view);
    free(shared);
    free(hier);
    cb_rootfs_remove_tree(root);
    free(root);
}
