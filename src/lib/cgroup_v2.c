/* cgroup_v2.c — the unified hierarchy: one directory per sandbox. Written
 * against the kernel's documented interface and unit-tested on a fake tree;
 * this build host only has v1 controllers. */
#include "cgroup.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void v2_layout(const struct cb_cgroup_manager *m, const char *id,
                      struct cb_cgroup *cg)
{
    cg->dirs[0] = cb_xasprintf("%s/%s/%s", m->root, m->parent, id);
    cg->ndirs = 1;
    cg->memory = cg->cpu = cg->cpuacct = cg->pids = cg->freezer = 0;
}

/* Controllers must be enabled in every ancestor's subtree_control for the
 * sandbox's cgroup to get its files. The root already delegates what the
 * host offers; we enable ours below the parent. */
static int v2_prepare_parent(struct cb_cgroup_manager *m, struct cb_error **err)
{
    _cleanup_free_ char *dir = cb_xasprintf("%s/%s", m->root, m->parent);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "mkdir %s", m->parent);
    static const char *const ctl[] = {"+memory", "+cpu", "+pids"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(ctl); i++) {
        if (cb_cgroup_write(m->root, "cgroup.subtree_control", ctl[i], err) < 0 ||
            cb_cgroup_write(dir, "cgroup.subtree_control", ctl[i], err) < 0)
            return -1;
    }
    /* The parent has the memory controller now (its parent enabled it):
     * memory.swap.max is there exactly when the kernel accounts swap. */
    _cleanup_free_ char *swap = cb_xasprintf("%s/memory.swap.max", dir);
    m->swap_uncapped = access(swap, F_OK) < 0 && errno == ENOENT;
    if (m->swap_uncapped)
        fprintf(stderr, "cellbox: this kernel does not account swap to cgroups (no "
                        "memory.swap.max: built without swap, or booted with swapaccount=0): "
                        "a sandbox's memory limit caps its RAM only\n");
    return 0;
}

static int v2_set_limits(struct cb_cgroup *cg, const struct cb_limits *l,
                         struct cb_error **err)
{
    const char *d = cg->dirs[0];
    char v[48];
    if (l->memory_bytes)
        snprintf(v, sizeof v, "%" PRIu64, l->memory_bytes);
    else
        snprintf(v, sizeof v, "max");
    if (cb_cgroup_write(d, "memory.max", v, err) < 0 ||
        (!cg->mgr->swap_uncapped && cb_cgroup_write(d, "memory.swap.max", "0", err) < 0) ||
        /* OOM kills only the chosen task, not the whole sandbox (init lives). */
        cb_cgroup_write(d, "memory.oom.group", "0", err) < 0)
        return -1;
    if (l->cpu > 0) {
        long quota = (long)(l->cpu * 100000.0);
        snprintf(v, sizeof v, "%ld 100000", quota < 1000 ? 1000 : quota);
    } else {
        snprintf(v, sizeof v, "max 100000");
    }
    if (cb_cgroup_write(d, "cpu.max", v, err) < 0)
        return -1;
    unsigned weight = l->cpu > 0 ? (unsigned)(l->cpu * 100.0) : 100;
    snprintf(v, sizeof v, "%u", weight < 1 ? 1 : weight > 10000 ? 10000 : weight);
    if (cb_cgroup_write(d, "cpu.weight", v, err) < 0)
        return -1;
    snprintf(v, sizeof v, "%u", l->pids ? l->pids : CB_CGROUP_DEFAULT_PIDS);
    return cb_cgroup_write(d, "pids.max", v, err);
}

static int v2_freeze(struct cb_cgroup *cg, bool frozen, struct cb_error **err)
{
    const char *d = cg->dirs[0];
    if (cb_cgroup_write(d, "cgroup.freeze", frozen ? "1" : "0", err) < 0)
        return -1;
    /* cgroup.events says "frozen 1" once every task has stopped. */
    for (int i = 0; i < 3000; i++) {
        uint64_t v;
        if (cb_cgroup_read_key(d, "cgroup.events", "frozen", &v) == 0 &&
            v == (frozen ? 1u : 0u))
            return 0;
        if (i > 50) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    return cb_error_set(err, ETIMEDOUT, CB_ERR_INTERNAL, "cgroup did not %s",
                        frozen ? "freeze" : "thaw");
}

static int v2_stats(struct cb_cgroup *cg, struct cb_sandbox_stats *out,
                    struct cb_error **err)
{
    const char *d = cg->dirs[0];
    uint64_t v;
    if (cb_cgroup_read_key(d, "cpu.stat", "usage_usec", &v) == 0)
        out->cpu_ns = v * 1000;
    if (cb_cgroup_read_u64(d, "memory.current", &v) == 0)
        out->memory_bytes = v;
    if (cb_cgroup_read_u64(d, "memory.peak", &v) == 0)
        out->memory_peak_bytes = v;
    if (cb_cgroup_read_key(d, "memory.events", "oom_kill", &v) == 0)
        out->oom_kills = v;
    if (cb_cgroup_read_u64(d, "pids.current", &v) == 0)
        out->pids = (uint32_t)v;
    return 0;
}

static int v2_kill_all(struct cb_cgroup *cg, struct cb_error **err)
{
    /* cgroup.kill (5.14+) kills atomically, forks included. */
    if (cb_cgroup_write(cg->dirs[0], "cgroup.kill", "1", NULL) == 0)
        return 0;
    int r = cb_cgroup_kill_procs(cg->dirs[0]);
    return r < 0 ? cb_error_set(err, -r, CB_ERR_INTERNAL, "kill cgroup") : 0;
}

const struct cb_cgroup_ops cb_cgroup_v2_ops = {
    .version = "v2",
    .layout = v2_layout,
    .prepare_parent = v2_prepare_parent,
    .set_limits = v2_set_limits,
    .freeze = v2_freeze,
    .stats = v2_stats,
    .kill_all = v2_kill_all,
};
