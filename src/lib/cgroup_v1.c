/* cgroup_v1.c — one directory per controller hierarchy (memory, cpu,
 * cpuacct, pids, freezer). Where two controllers share a hierarchy
 * ("cpu,cpuacct") the directory is used once. */
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const v1_controllers[] = {"memory", "cpu", "cpuacct", "pids",
                                             "freezer"};
enum { C_MEMORY, C_CPU, C_CPUACCT, C_PIDS, C_FREEZER }; /* their indices */

static int *controller_slot(struct cb_cgroup *cg, int i)
{
    int *slots[] = {[C_MEMORY] = &cg->memory, [C_CPU] = &cg->cpu, [C_CPUACCT] = &cg->cpuacct,
                    [C_PIDS] = &cg->pids, [C_FREEZER] = &cg->freezer};
    return slots[i];
}

static void v1_layout(const struct cb_cgroup_manager *m, const char *id,
                      struct cb_cgroup *cg)
{
    /* Hierarchies were resolved once (v1_prepare_parent): this runs several
     * times per sandbox life, and stat + realpath of five hierarchies cost
     * ~40 syscalls each time. */
    for (int h = 0; h < m->nhier; h++)
        cg->dirs[cg->ndirs++] = cb_xasprintf("%s/%s/%s", m->hier[h], m->parent, id);
    for (int i = 0; i < (int)CB_ARRAY_SIZE(v1_controllers); i++)
        *controller_slot(cg, i) = m->hier_of[i];
}

/* The real path of each controller's hierarchy; where two controllers share
 * one under two names (cpu -> cpu,cpuacct) it is noted once. */
static void v1_resolve_hierarchies(struct cb_cgroup_manager *m)
{
    for (int i = 0; i < (int)CB_ARRAY_SIZE(v1_controllers); i++) {
        m->hier_of[i] = -1;
        _cleanup_free_ char *hier = cb_xasprintf("%s/%s", m->root, v1_controllers[i]);
        struct stat st;
        char real[PATH_MAX];
        if (stat(hier, &st) < 0 || !S_ISDIR(st.st_mode) || !realpath(hier, real))
            continue;
        for (int h = 0; h < m->nhier; h++)
            if (strcmp(m->hier[h], real) == 0)
                m->hier_of[i] = h;
        if (m->hier_of[i] < 0) {
            m->hier_of[i] = m->nhier;
            m->hier[m->nhier++] = cb_xstrdup(real);
        }
    }
}

/* The value of a cpuset file of dir without its newline; 0 when it
 * names at least one CPU or node. */
static int read_cpuset_list(const char *dir, const char *file, char *buf, size_t size)
{
    int n = cb_cgroup_read(dir, file, buf, size);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return n > 0 ? 0 : -1;
}

/* The cpuset cgroup all sandboxes share (cb_cgroup_manager.cpuset): only
 * where cpuset has a hierarchy of its own (co-mounted with a controller
 * we give each sandbox a directory of, it would need per-sandbox lists;
 * no host we know does that). A new v1 cpuset cgroup has empty CPU and
 * node lists and refuses tasks until both are written: the hierarchy
 * root's go in, again at each start (CPUs brought online since). Failing
 * costs only the view, so it is said and not fatal. */
static void v1_prepare_cpuset(struct cb_cgroup_manager *m)
{
    _cleanup_free_ char *hier = cb_xasprintf("%s/cpuset", m->root);
    char real[PATH_MAX], cpus[8192], mems[1024];
    struct stat st;
    if (stat(hier, &st) < 0 || !S_ISDIR(st.st_mode) || !realpath(hier, real))
        return;
    for (int h = 0; h < m->nhier; h++)
        if (strcmp(m->hier[h], real) == 0)
            return;
    _cleanup_free_ char *dir = cb_xasprintf("%s/%s", real, m->parent);
    const char *why = NULL;
    if (read_cpuset_list(real, "cpuset.cpus", cpus, sizeof cpus) < 0 ||
        read_cpuset_list(real, "cpuset.mems", mems, sizeof mems) < 0)
        why = "cannot read its root's CPUs and memory nodes";
    else if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        why = strerror(errno);
    else if (cb_cgroup_write_changed(dir, "cpuset.cpus", cpus, NULL) < 0 ||
             cb_cgroup_write_changed(dir, "cpuset.mems", mems, NULL) < 0)
        why = "cannot give it the root's CPUs and memory nodes";
    if (why) {
        fprintf(stderr, "cellbox: no cpuset cgroup for sandboxes at %s (%s): the JVM in a "
                        "sandbox will not see its memory limit\n", dir, why);
        return;
    }
    m->cpuset_hier = cb_xstrdup(real);
    m->cpuset = cb_xstrdup(dir);
}

static int v1_prepare_parent(struct cb_cgroup_manager *m, struct cb_error **err)
{
    v1_resolve_hierarchies(m);
    if (!m->nhier)
        return cb_error_set(err, ENOENT, CB_ERR_UNAVAILABLE,
                            "no cgroup v1 controller hierarchies under %s", m->root);
    /* The memsw files are in every memory cgroup, the root's too, exactly
     * when the kernel accounts swap. */
    if (m->hier_of[C_MEMORY] >= 0) {
        _cleanup_free_ char *memsw =
            cb_xasprintf("%s/memory.memsw.limit_in_bytes", m->hier[m->hier_of[C_MEMORY]]);
        m->swap_uncapped = access(memsw, F_OK) < 0 && errno == ENOENT;
        if (m->swap_uncapped)
            fprintf(stderr, "cellbox: this kernel does not account swap to memory cgroups "
                            "(no memory.memsw.* files; boot with swapaccount=1 to have it): a "
                            "sandbox's memory limit caps its RAM, and its memory.swappiness "
                            "is 0 to keep it out of swap\n");
    }
    for (int h = 0; h < m->nhier; h++) {
        _cleanup_free_ char *dir = cb_xasprintf("%s/%s", m->hier[h], m->parent);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return cb_error_set(err, errno, CB_ERR_INTERNAL, "mkdir %s", dir);
    }
    v1_prepare_cpuset(m);
    return 0;
}

static int v1_set_memory(const char *dir, uint64_t bytes, bool swap_uncapped,
                         struct cb_error **err)
{
    char v[32];
    if (bytes)
        snprintf(v, sizeof v, "%" PRIu64, bytes);
    else
        snprintf(v, sizeof v, "-1");
    if (swap_uncapped && cb_cgroup_write_changed(dir, "memory.swappiness", "0", err) < 0)
        return -1;
    /* memsw (memory+swap) must stay >= limit: setting both to the same value
     * turns swap off. Lowering works limit-first, raising memsw-first; try
     * the first order and fall back to the second. */
    int r = cb_cgroup_write(dir, "memory.limit_in_bytes", v, NULL);
    if (r == 0 && swap_uncapped)
        return 0;
    if (r == 0)
        return cb_cgroup_write(dir, "memory.memsw.limit_in_bytes", v, err);
    /* Below what the sandbox uses now, v1 reclaims what it can and then
     * refuses (EBUSY) where v2 would OOM-kill inside: the caller's error,
     * said as such (the old limit stays). */
    if (r == -EBUSY)
        return cb_error_set(err, EBUSY, CB_ERR_CONFLICT,
                            "memory limit of %" PRIu64 " MiB is below what the sandbox uses "
                            "now and the kernel could not reclaim enough; the limit is "
                            "unchanged",
                            bytes >> 20);
    if (swap_uncapped)
        return cb_cgroup_write(dir, "memory.limit_in_bytes", v, err);
    if (cb_cgroup_write(dir, "memory.memsw.limit_in_bytes", v, err) < 0)
        return -1;
    return cb_cgroup_write(dir, "memory.limit_in_bytes", v, err);
}

static int v1_set_limits(struct cb_cgroup *cg, const struct cb_limits *l,
                         struct cb_error **err)
{
    char v[32];
    if (cg->memory >= 0 &&
        v1_set_memory(cg->dirs[cg->memory], l->memory_bytes, cg->mgr->swap_uncapped, err) < 0)
        return -1;
    if (cg->cpu >= 0) {
        const char *d = cg->dirs[cg->cpu];
        long quota = l->cpu > 0 ? (long)(l->cpu * 100000.0) : -1;
        if (quota > 0 && quota < 1000)
            quota = 1000; /* the kernel's minimum quota is 1 ms */
        unsigned shares = l->cpu > 0 ? (unsigned)(l->cpu * 1024.0) : 1024;
        if (shares < 2)
            shares = 2;
        if (cb_cgroup_write_changed(d, "cpu.cfs_period_us", "100000", err) < 0)
            return -1;
        snprintf(v, sizeof v, "%ld", quota);
        if (cb_cgroup_write_changed(d, "cpu.cfs_quota_us", v, err) < 0)
            return -1;
        snprintf(v, sizeof v, "%u", shares);
        if (cb_cgroup_write_changed(d, "cpu.shares", v, err) < 0)
            return -1;
    }
    if (cg->pids >= 0) {
        snprintf(v, sizeof v, "%u", l->pids ? l->pids : CB_CGROUP_DEFAULT_PIDS);
        if (cb_cgroup_write_changed(cg->dirs[cg->pids], "pids.max", v, err) < 0)
            return -1;
    }
    return 0;
}

static int v1_freeze(struct cb_cgroup *cg, bool frozen, struct cb_error **err)
{
    if (cg->freezer < 0)
        return cb_error_set(err, ENOTSUP, CB_ERR_UNAVAILABLE, "no freezer hierarchy");
    const char *d = cg->dirs[cg->freezer];
    const char *want = frozen ? "FROZEN" : "THAWED";
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/freezer.state", d) >= sizeof path)
        return cb_error_set(err, ENAMETOOLONG, CB_ERR_INTERNAL, "freezer path");
    /* One descriptor for the write and every read after it: each read at
     * offset 0 asks the kernel again (and rechecks the tasks). O_CREAT |
     * O_TRUNC as cb_cgroup_write: nothing on cgroupfs, where the file
     * exists; a plain file in tests' fake trees. */
    int fd = CB_RETRY(open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (fd < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "open %s", path);
    size_t wlen = strlen(want);
    if (CB_RETRY(write(fd, want, wlen)) != (ssize_t)wlen) {
        int e = errno;
        close(fd);
        return cb_error_set(err, e, CB_ERR_INTERNAL, "write %s", path);
    }
    /* Writing FROZEN starts freezing; the state reads FREEZING until every
     * task has stopped, which each does when it next runs: yield the CPU
     * while polling (on a small host the task to freeze may be waiting
     * for this very CPU), then sleep in small steps, up to ~2 s. */
    char buf[32];
    for (int i = 0; i < 3000; i++) {
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        if (n > 0 && strncmp(buf, want, wlen) == 0) {
            close(fd);
            return 0;
        }
        if (i > 50) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        } else {
            sched_yield();
        }
        if (frozen && i > 0 && i % 100 == 0 && pwrite(fd, want, wlen, 0) < 0) {
            /* retry stragglers; a failure shows in the next read */
        }
    }
    close(fd);
    return cb_error_set(err, ETIMEDOUT, CB_ERR_INTERNAL, "freezer did not reach %s", want);
}

static int v1_stats(struct cb_cgroup *cg, struct cb_sandbox_stats *out,
                    struct cb_error **err)
{
    uint64_t v;
    if (cg->cpuacct >= 0 && cb_cgroup_read_u64(cg->dirs[cg->cpuacct], "cpuacct.usage", &v) == 0)
        out->cpu_ns = v;
    if (cg->memory >= 0) {
        const char *d = cg->dirs[cg->memory];
        if (cb_cgroup_read_u64(d, "memory.usage_in_bytes", &v) == 0)
            out->memory_bytes = v;
        if (cb_cgroup_read_u64(d, "memory.max_usage_in_bytes", &v) == 0)
            out->memory_peak_bytes = v;
        if (cb_cgroup_read_key(d, "memory.oom_control", "oom_kill", &v) == 0)
            out->oom_kills = v;
    }
    if (cg->pids >= 0 && cb_cgroup_read_u64(cg->dirs[cg->pids], "pids.current", &v) == 0)
        out->pids = (uint32_t)v;
    return 0;
}

static int v1_kill_all(struct cb_cgroup *cg, struct cb_error **err)
{
    /* Freeze first so nothing can fork while we walk the list. */
    bool froze = cg->freezer >= 0 && v1_freeze(cg, true, NULL) == 0;
    int r = cb_cgroup_kill_procs(cg->dirs[0]);
    if (froze)
        v1_freeze(cg, false, NULL); /* SIGKILL is delivered on thaw */
    return r < 0 ? cb_error_set(err, -r, CB_ERR_INTERNAL, "kill cgroup") : 0;
}

/* What a recycled cgroup must not carry over, controller by controller
 * (cgroup.h "Recycled cgroups"). cpu needs nothing: every create writes
 * its period, quota and shares again. */
static bool memory_clean(const char *dir)
{
    uint64_t oom_kills = 1, charged = UINT64_MAX;
    if (cb_cgroup_read_key(dir, "memory.oom_control", "oom_kill", &oom_kills) < 0 ||
        oom_kills != 0 || cb_cgroup_read_u64(dir, "memory.usage_in_bytes", &charged) < 0 ||
        charged > CB_CGROUP_SPARE_MAX_CHARGE)
        return false;
    /* Peaks and failure counts the next sandbox would read at
     * /sys/fs/cgroup/memory. memsw files exist only with swap accounting,
     * kmem ones on kernels that still have v1's kernel-memory counters:
     * their absence is fine. */
    static const char *const optional[] = {
        "memory.memsw.max_usage_in_bytes", "memory.memsw.failcnt",
        "memory.kmem.max_usage_in_bytes",  "memory.kmem.failcnt",
        "memory.kmem.tcp.max_usage_in_bytes", "memory.kmem.tcp.failcnt"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(optional); i++)
        cb_cgroup_write(dir, optional[i], "0", NULL);
    return cb_cgroup_write(dir, "memory.max_usage_in_bytes", "0", NULL) == 0 &&
           cb_cgroup_write(dir, "memory.failcnt", "0", NULL) == 0;
}

static bool controller_clean(int controller, const char *dir)
{
    uint64_t v = 1;
    char buf[32];
    switch (controller) {
    case C_MEMORY:
        return memory_clean(dir);
    case C_CPUACCT: /* the metrics' CPU seconds start from zero */
        return cb_cgroup_write(dir, "cpuacct.usage", "0", NULL) == 0 &&
               cb_cgroup_read_u64(dir, "cpuacct.usage", &v) == 0 && v == 0;
    case C_PIDS: /* a refused fork is counted for good */
        return cb_cgroup_read_key(dir, "pids.events", "max", &v) == 0 && v == 0;
    case C_FREEZER:
        return cb_cgroup_read(dir, "freezer.state", buf, sizeof buf) > 0 &&
               strncmp(buf, "THAWED", 6) == 0;
    default:
        return true;
    }
}

static bool v1_spare_clean(const struct cb_cgroup_manager *m, int h, const char *dir)
{
    /* A child cgroup (only the host can make one) would go with the
     * rename into the next sandbox; kernfs counts subdirectories in a
     * directory's link count. */
    struct stat st;
    if (stat(dir, &st) < 0 || st.st_nlink > 2)
        return false;
    char procs[64];
    if (cb_cgroup_read(dir, "cgroup.procs", procs, sizeof procs) != 0)
        return false; /* a process, or unreadable */
    for (int i = 0; i < (int)CB_ARRAY_SIZE(v1_controllers); i++)
        if (m->hier_of[i] == h && !controller_clean(i, dir))
            return false;
    return true;
}

/* The controllers a sandbox is shown (cgroup.h cb_cgroup_view): what
 * libuv, Go, .NET and the JVM read (the JVM's v1 support wants cpuset,
 * cpu, cpuacct and memory, or it uses none of them), then the shared
 * cpuset cgroup. Each shown hierarchy costs every start one bind:
 * 2-4 on v1 hosts, by how many of these share a hierarchy. */
static const int view_controllers[] = {C_MEMORY, C_CPU, C_CPUACCT};

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static const char *hier_name(const struct cb_cgroup_manager *m, int h)
{
    return base_name(m->hier[h]);
}

void cb_cgroup_view(const struct cb_cgroup *cg, struct cb_cgroup_view *v)
{
    const struct cb_cgroup_manager *m = cg->mgr;
    v->n = 0;
    if (m->ops != &cb_cgroup_v1_ops) {
        v->sources[v->n] = cg->dirs[0];
        v->names[v->n++] = NULL;
        return;
    }
    bool seen[CB_CGROUP_MAX_DIRS] = {false};
    for (size_t i = 0; i < CB_ARRAY_SIZE(view_controllers); i++) {
        int h = m->hier_of[view_controllers[i]];
        if (h < 0 || h >= cg->ndirs || seen[h])
            continue; /* absent, or shared with one shown already */
        seen[h] = true;
        v->sources[v->n] = cg->dirs[h];
        v->names[v->n++] = hier_name(m, h);
    }
    if (m->cpuset) {
        v->sources[v->n] = m->cpuset;
        v->names[v->n++] = base_name(m->cpuset_hier);
    }
}

int cb_cgroup_make_view_dir(const struct cb_cgroup_manager *m, const char *dir)
{
    if (m->ops != &cb_cgroup_v1_ops)
        return 0;
    if (mkdir(dir, 0555) < 0 && errno != EEXIST)
        return -errno;
    _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (dfd < 0)
        return -errno;
    if (fstat(dfd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & 0222))
        return -EPERM; /* not ours, or writable: never shown in a sandbox */
    bool shown[CB_CGROUP_MAX_DIRS] = {false};
    for (size_t i = 0; i < CB_ARRAY_SIZE(view_controllers); i++) {
        int h = m->hier_of[view_controllers[i]];
        if (h < 0)
            continue;
        shown[h] = true;
        if (mkdirat(dfd, hier_name(m, h), 0555) < 0 && errno != EEXIST)
            return -errno;
    }
    if (m->cpuset && mkdirat(dfd, base_name(m->cpuset_hier), 0555) < 0 && errno != EEXIST)
        return -errno;
    /* Every controller of a shown hierarchy by its own name too. */
    for (int c = 0; c < (int)CB_ARRAY_SIZE(v1_controllers); c++) {
        int h = m->hier_of[c];
        if (h >= 0 && shown[h] && strcmp(hier_name(m, h), v1_controllers[c]) != 0 &&
            symlinkat(hier_name(m, h), dfd, v1_controllers[c]) < 0 && errno != EEXIST)
            return -errno;
    }
    return 0;
}

const struct cb_cgroup_ops cb_cgroup_v1_ops = {
    .version = "v1",
    .layout = v1_layout,
    .prepare_parent = v1_prepare_parent,
    .set_limits = v1_set_limits,
    .freeze = v1_freeze,
    .stats = v1_stats,
    .kill_all = v1_kill_all,
    .spare_clean = v1_spare_clean,
};
