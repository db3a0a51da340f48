/* bench_runtime — container-tier latencies (a benchmark, never a test).
 *
 *   build/bench/bench_runtime [N_MAX=100] [--out PATH]
 *   build/bench/bench_runtime --idle N --json PATH   (see idle_main)
 *
 * Prints and writes PATH (default bench/results/runtime.json):
 * create+start+first exec p50/p99 for 1, 10, 100 live sandboxes made back
 * to back (a burst: what the runtime makes ahead runs out), and one at a
 * time with N_MAX alive; exec round trip (over one connection to init, as
 * cellboxd keeps) vs a bare posix_spawn+wait of /bin/true; pause/resume;
 * destroy; memory per idle
 * sandbox, all-in (the host memory that cannot be reclaimed, before and
 * after the N_MAX sandboxes: init, kernel objects, network namespace, the
 * shrinker maps every memory cgroup keeps; caches not counted) and what
 * of it is charged to the sandbox's own memory cgroup; and bwrap's
 * spawn of /bin/true in the same run as a ratio; the sustained create rate
 * (one thread per CPU creating and starting sandboxes back to back, 150
 * each, kept alive) and the rate at which they are then destroyed; and
 * create+first exec from a warm pool: a sandbox created and started
 * ahead, claimed (cb_container_claim, as cellboxd's pool does) and its
 * first process run.
 *
 * Host floors, same run: the figures above all run /bin/true, whose own
 * start is most of them on some hosts, so the run also measures a program
 * without libc (build/bench/noop) on the host, in a sandbox and from a
 * warm pool; the cost of one CPUID instruction (glibc 2.36's start runs
 * 68, each a trap to the hypervisor on a virtual machine); what the kernel
 * pins for one empty memory cgroup (every sandbox has one); and the two
 * ways into a cgroup v2 directory (cgroup2_join_ms). Needs root. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>
#include <spawn.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <linux/magic.h>
#include <linux/sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "clone3.h"
#include "fsops.h"
#include "proto.h"
#include "rootfs.h"
#include "runtime.h"
#include "tier.h"

extern char **environ;
static const struct cb_tier_ops *T;

/* ---- where the runtime's state goes ----
 *
 * On a file system of the bench's own: an ext4 image with a journal,
 * loop-mounted in a mount namespace private to this process (the image
 * file is unlinked once mounted, so the space goes back when the process
 * does). The sandboxes' directories, and their upper layers when they have
 * no disk image, are made and removed there by the thousand each run. On
 * a host whose state file system is ext4 without a journal (as /tmp is on
 * our build hosts) every new inode skips, one by one, those freed in the
 * last minutes: back-to-back runs slowed each other down (a new file
 * 18 us rested, ~300 us after a few runs), so figures depended on what ran
 * before. docs/operations.md asks for a journaled state file system; this
 * measures that. CB_BENCH_STATE_DIR=DIR puts the state under DIR instead
 * (its own file system, as it is). Returns the directory to make state
 * directories in. */
static const char *bench_base(void)
{
    static char base[128]; /* made once; "/tmp" after a failure */
    const char *dir = getenv("CB_BENCH_STATE_DIR");
    if (dir)
        return dir;
    if (base[0])
        return base;
    strcpy(base, "/tmp");
    char tmp[] = "/tmp/cb-bench-vol-XXXXXX", cmd[512];
    if (!mkdtemp(tmp) || chmod(tmp, 0711) < 0)
        return base;
    /* lazy_itable_init + noinit_itable: no inode-table zeroing, up front
     * or in a kernel thread during the run. */
    snprintf(cmd, sizeof cmd,
             "truncate -s 64G %s/vol.img && mkfs.ext4 -q -F -E lazy_itable_init=1,nodiscard "
             "%s/vol.img && mkdir %s/mnt",
             tmp, tmp, tmp);
    if (system(cmd) != 0)
        goto fallback;
    /* The mount point stays behind in the host's namespace, where this
     * process cannot remove it (a mount point here): a child left there
     * removes it once this process and its own children are gone. */
    int gone[2];
    if (pipe2(gone, O_CLOEXEC) < 0)
        goto fallback;
    pid_t k = fork();
    if (k == 0) {
        char c;
        close(gone[1]);
        while (read(gone[0], &c, 1) < 0 && errno == EINTR)
            ;
        snprintf(cmd, sizeof cmd, "%s/mnt", tmp);
        rmdir(cmd);
        rmdir(tmp);
        _exit(0);
    }
    close(gone[0]);
    if (k < 0)
        close(gone[1]);
    if (k < 0 || unshare(CLONE_NEWNS) < 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        goto fallback;
    snprintf(cmd, sizeof cmd, "mount -o loop,noinit_itable %s/vol.img %s/mnt", tmp, tmp);
    if (system(cmd) != 0)
        goto fallback;
    snprintf(cmd, sizeof cmd, "%s/vol.img", tmp);
    unlink(cmd);
    snprintf(base, sizeof base, "%s/mnt", tmp);
    printf("state on a journaled ext4 of the bench's own (%s)\n", base);
    return base;
fallback:
    fprintf(stderr, "bench: no ext4 volume of its own (mkfs.ext4, loop, mount): state in /tmp\n");
    if (cb_rootfs_remove_tree(tmp) < 0)
        fprintf(stderr, "bench: cannot remove %s\n", tmp);
    return base;
}

/* mkdtemp of base/name-XXXXXX into buf, mode 0711 (sandbox directories
 * below must be reachable by their uids). NULL on failure. */
static char *bench_dir(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s-XXXXXX", bench_base(), name);
    return mkdtemp(buf) && chmod(buf, 0711) == 0 ? buf : NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Bytes of slab objects in use in caches that are not reclaimable
 * (/proc/slabinfo's active objects times their size; a cache's
 * /sys/kernel/slab/<name>/reclaim_account says whether the kernel can
 * shrink it), or -1 if slabinfo cannot be read. Objects, not pages:
 * objects freed by earlier work (a previous run's memory cgroups) leave
 * slab pages with room, which new objects fill without growing
 * SUnreclaim; measured here, 40 empty memory cgroups grew SUnreclaim by
 * 16 KiB each while their objects took 1.1 MiB each. */
static long long slab_objects_unreclaimable(void)
{
    FILE *f = fopen("/proc/slabinfo", "r");
    if (!f)
        return -1;
    char line[512], name[128], path[256];
    long long total = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long active, num, size;
        if (sscanf(line, "%127s %lu %lu %lu", name, &active, &num, &size) != 4)
            continue; /* the two header lines */
        snprintf(path, sizeof path, "/sys/kernel/slab/%s/reclaim_account", name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        char c = '0';
        if (fd >= 0) {
            if (read(fd, &c, 1) != 1)
                c = '0';
            close(fd);
        }
        if (c != '1')
            total += (long long)active * (long long)size;
    }
    fclose(f);
    return total;
}

/* Memory the host cannot reclaim, in bytes: slab objects of caches that
 * are not reclaimable (slab_objects_unreclaimable; SUnreclaim where
 * slabinfo is unreadable), and from /proc/meminfo kernel stacks, page
 * tables, per-CPU data and anonymous memory. MemAvailable swings with
 * page cache and reclaim heuristics; this does not. */
static uint64_t pinned_memory(void)
{
    long long slab = slab_objects_unreclaimable();
    static const char *const keys[] = {"SUnreclaim:", "KernelStack:", "PageTables:",
                                       "Percpu:", "AnonPages:"};
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long long total = slab >= 0 ? (unsigned long long)slab : 0;
    while (f && fgets(line, sizeof line, f)) {
        for (size_t i = slab >= 0 ? 1 : 0; i < sizeof keys / sizeof *keys; i++) {
            size_t kl = strlen(keys[i]);
            unsigned long long kib;
            if (strncmp(line, keys[i], kl) == 0 && sscanf(line + kl, "%llu", &kib) == 1)
                total += kib * 1024;
        }
    }
    if (f)
        fclose(f);
    return total;
}

/* pinned_memory once it has stopped moving (three readings 0.5 s apart
 * within 256 KiB of each other, at most ~15 s): the kernel frees what
 * earlier work left (network namespaces, cgroups, RCU callbacks) in
 * batches, asynchronously. */
static uint64_t settled_pinned_memory(void)
{
    uint64_t prev = pinned_memory();
    int still = 0;
    for (int i = 0; i < 30 && still < 2; i++) {
        usleep(500000);
        uint64_t now = pinned_memory();
        uint64_t d = now > prev ? now - prev : prev - now;
        still = d < (256u << 10) ? still + 1 : 0;
        prev = now;
    }
    return prev;
}

/* The number of memory cgroups the kernel holds (/proc/cgroups), removed
 * ones still being freed included; -1 if unknown. */
static int memory_cgroups(void)
{
    FILE *f = fopen("/proc/cgroups", "r");
    char line[256], name[64];
    int hier, num = -1, enabled;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "%63s %d %d %d", name, &hier, &num, &enabled) == 4 &&
            strcmp(name, "memory") == 0)
            break;
        else
            num = -1;
    if (f)
        fclose(f);
    return num;
}

/* What the kernel pins for one empty memory cgroup at this moment: the
 * mean over 40 made under the runtime's parent (v1 memory hierarchy, else
 * the v2 tree) and removed again; 0 when unknown. Every sandbox has one.
 * Besides its own few KiB, each memory cgroup carries shrinker maps sized
 * by the most superblocks (file system instances: every sandbox has a
 * few) that ever existed at once since boot, so on a host that once ran
 * many sandboxes together this is most of the per-sandbox figure. */
static uint64_t empty_memcg_bytes(const char *parent)
{
    enum { PROBES = 40 };
    char base[192], path[224];
    snprintf(base, sizeof base, "/sys/fs/cgroup/memory/%s", parent);
    if (access(base, F_OK) != 0)
        snprintf(base, sizeof base, "/sys/fs/cgroup/%s", parent);
    if (access(base, F_OK) != 0)
        return 0;
    if (strncmp(base, "/sys/fs/cgroup/memory/", 22) != 0) {
        /* v2: children get a memory controller only if the parent hands it down */
        char ctl[256] = "";
        snprintf(path, sizeof path, "%s/cgroup.subtree_control", base);
        FILE *f = fopen(path, "r");
        bool has = f && fgets(ctl, sizeof ctl, f) && strstr(ctl, "memory");
        if (f)
            fclose(f);
        if (!has)
            return 0;
    }
    uint64_t before = settled_pinned_memory();
    int made = 0;
    for (int i = 0; i < PROBES; i++) {
        snprintf(path, sizeof path, "%s/memprobe%d", base, i);
        made += mkdir(path, 0755) == 0;
    }
    uint64_t after = settled_pinned_memory();
    int memcgs = memory_cgroups();
    for (int i = 0; i < PROBES; i++) {
        snprintf(path, sizeof path, "%s/memprobe%d", base, i);
        rmdir(path);
    }
    /* The kernel frees removed memory cgroups later, in its own workers
     * (each with its shrinker maps): wait until it has, so what the bench
     * times next does not share the CPUs with that. */
    for (int i = 0; i < 100 && memcgs >= 0 && memory_cgroups() > memcgs - made; i++)
        usleep(100000);
    settled_pinned_memory();
    return made && after > before ? (after - before) / (uint64_t)made : 0;
}

static double pct(uint64_t *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i] / 1e6; /* ms */
}

/* Run path (no arguments) as root over s, a connection to a sandbox's
 * init, and wait for its exit. 0, or -1 if it could not run or did not
 * exit with 0 (a figure of a failure is no figure). */
static int exec_on(int s, const char *path)
{
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_SPAWN, 1);
    cb_builder_str(&b, CB_F_ARGV, path);
    cb_builder_str(&b, CB_F_ENV, "PATH=/usr/bin");
    cb_builder_str(&b, CB_F_CWD, "/");
    cb_builder_u32(&b, CB_F_UID, 0);
    cb_builder_u32(&b, CB_F_GID, 0);
    cb_builder_u32(&b, CB_F_MODE, CB_SPAWN_PIPES);
    cb_builder_finish(&b);
    cb_proto_send(s, &b, NULL, 0);
    cb_builder_free(&b);
    uint32_t pid = 0;
    for (;;) {
        struct cb_frame_header h;
        uint8_t *p = NULL;
        int fds[3], nfds = 0;
        if (cb_proto_recv(s, &h, &p, fds, &nfds) < 0)
            return -1;
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        struct cb_field_view f;
        uint32_t got = 0;
        int32_t code = -1;
        int done = 0; /* 1: exited 0; -1: failed or exited otherwise */
        if (h.type == CB_MSG_SPAWNED && cb_proto_find(p, h.length, CB_F_PID, &f) == 1)
            cb_field_u32(&f, &pid);
        if (h.type == CB_MSG_EXIT && cb_proto_find(p, h.length, CB_F_PID, &f) == 1 &&
            cb_field_u32(&f, &got) == 0 && got == pid)
            done = cb_proto_find(p, h.length, CB_F_EXIT_CODE, &f) == 1 &&
                           cb_field_i32(&f, &code) == 0 && code == 0
                       ? 1
                       : -1;
        free(p);
        if (h.type == CB_MSG_ERROR || done < 0) {
            fprintf(stderr, "bench: %s %s\n", path,
                    done < 0 ? "did not exit with 0" : "could not be run");
            return -1;
        }
        if (done)
            return 0;
    }
}

/* exec_on over a connection of its own, as a first exec does (the one
 * start kept: no connect). */
static int exec_path(struct cb_sandbox *sb, const char *path)
{
    int s;
    struct cb_error *err = NULL;
    if (T->connect(sb, &s, &err) < 0) {
        cb_error_free(err);
        return -1;
    }
    int r = exec_on(s, path);
    close(s);
    return r;
}

static int exec_true(struct cb_sandbox *sb)
{
    return exec_path(sb, "/bin/true");
}

/* rel under the build directory, $CB_BUILD (scripts/test.sh sets it) or
 * ./build, in buf. */
static const char *build_path(char *buf, size_t size, const char *rel)
{
    const char *b = getenv("CB_BUILD");
    snprintf(buf, size, "%s/%s", b ? b : "build", rel);
    return buf;
}

/* Where put_noop puts build/bench/noop in a sandbox. */
#define NOOP_IN_SANDBOX "/tmp/cb-noop"

/* Copy build/bench/noop into the sandbox (NOOP_IN_SANDBOX, mode 0755)
 * through its root as the files API writes files: with this thread's
 * fsuid/fsgid those of the sandbox's root (its overlay refuses inodes of
 * ids its user namespace does not map). 0 or -1. */
static int put_noop(struct cb_sandbox *sb)
{
    int root = -1, out = -1, r = -1;
    struct cb_error *err = NULL;
    struct cb_fs_owner own = {0};
    T->map_ids(sb, 0, 0, &own.uid, &own.gid);
    own.base_uid = own.uid, own.base_gid = own.gid;
    char noop[4096];
    int in = open(build_path(noop, sizeof noop, "bench/noop"), O_RDONLY | O_CLOEXEC);
    setfsgid(own.gid);
    setfsuid(own.uid);
    if (in >= 0 && T->root_fd(sb, &root, &err) == 0 &&
        (out = cb_fs_open_write(root, NOOP_IN_SANDBOX, 0755, false, &own, &err)) >= 0) {
        char buf[16384];
        ssize_t n;
        r = 0;
        while (r == 0 && (n = read(in, buf, sizeof buf)) > 0)
            if (write(out, buf, (size_t)n) != n)
                r = -1;
    }
    setfsuid(0);
    setfsgid(0);
    if (in < 0)
        fprintf(stderr, "bench: %s: %s\n", noop, strerror(errno));
    else if (err)
        fprintf(stderr, "bench: noop into %s: %s\n", cb_container_id(sb), err->message);
    cb_error_free(err);
    cb_closep(&in);
    cb_closep(&root);
    cb_closep(&out);
    return r;
}

/* One CPUID instruction, in microseconds (mean of 500), or -1 without
 * one. On a virtual machine every CPUID traps to the hypervisor. */
static double cpuid_us(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    uint64_t t0 = cb_now_ns();
    for (int i = 0; i < 500; i++)
        __cpuid_count(4, 0, a, b, c, d);
    return (double)(cb_now_ns() - t0) / 500 / 1e3;
#else
    return -1;
#endif
}

static int exit_at_once(void *arg) { return 0; }

/* The two ways into a cgroup v2 directory, p50 in ms of 15 each after
 * 50 ms of quiet (a sandbox start every so often): writing a process's
 * pid to cgroup.procs, which takes the kernel's global threadgroup rwsem
 * for writing and so waits for an RCU grace period unless a writer came
 * just before; and a clone3 born in the cgroup (CLONE_INTO_CGROUP: the
 * whole clone, with no such wait), how cellbox starts sandboxes on v2.
 * On the cgroup2 mount there is (the host's on v2, the unified one of a
 * hybrid v1 host, where no controller is needed for this). out[] -1 when
 * there is none or clone3 is not available. */
static void cgroup2_join_ms(double out[2])
{
    enum { N = 15 };
    out[0] = out[1] = -1;
    const char *root = NULL;
    static const char *const roots[] = {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"};
    for (size_t i = 0; i < sizeof roots / sizeof *roots && !root; i++) {
        struct statfs sf;
        if (statfs(roots[i], &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC)
            root = roots[i];
    }
    char dir[128];
    snprintf(dir, sizeof dir, "%s/cellbox-bench-join", root ? root : "");
    if (!root || (mkdir(dir, 0755) < 0 && errno != EEXIST))
        return;
    uint64_t w[N], c[N];
    int nw = 0, nc = 0;
    void *stack = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    char procs[160];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", dir);
    int fd = open(procs, O_WRONLY | O_CLOEXEC);
    int cg = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (int i = 0; i < N && fd >= 0 && cg >= 0 && stack != MAP_FAILED; i++) {
        usleep(50000);
        pid_t p = fork();
        if (p == 0) {
            pause();
            _exit(0);
        }
        if (p > 0) {
            char b[24];
            int n = snprintf(b, sizeof b, "%d", (int)p);
            uint64_t t0 = cb_now_ns();
            if (write(fd, b, (size_t)n) == n)
                w[nw++] = cb_now_ns() - t0;
            kill(p, SIGKILL);
            waitpid(p, NULL, 0);
        }
        usleep(50000);
        int pidfd = -1;
        uint64_t t0 = cb_now_ns();
        long r = cb_clone3_vm(CLONE_VM | CLONE_PIDFD, 0, &pidfd, cg, stack, 64 << 10,
                              exit_at_once, NULL);
        uint64_t t1 = cb_now_ns();
        if (r > 0) {
            siginfo_t si;
            waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | __WALL);
            close(pidfd);
            c[nc++] = t1 - t0;
        }
    }
    if (fd >= 0)
        close(fd);
    if (cg >= 0)
        close(cg);
    if (stack != MAP_FAILED)
        munmap(stack, 64 << 10);
    rmdir(dir);
    if (nw)
        out[0] = pct(w, nw, 0.5);
    if (nc)
        out[1] = pct(c, nc, 0.5);
}

/* One byte's round trip between two processes over a unix socket pair,
 * in microseconds (p50 of 1,000): the caller on CPU a, its echoing child
 * on CPU b. With a != b every hop wakes a task on the other CPU; on a
 * virtual machine whose idle vCPUs halt at once (no guest halt polling)
 * that wake-up is the hypervisor's to deliver, and a sandbox's start and
 * every exec make several. -1 when it cannot be measured (a CPU that
 * cannot be chosen ends the child, and the caller reads its EOF). */
static double pingpong_us(int a, int b)
{
    enum { TRIPS = 1000 };
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    cpu_set_t set;
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        CPU_ZERO(&set);
        CPU_SET(b, &set);
        char c;
        if (sched_setaffinity(0, sizeof set, &set) < 0)
            _exit(1);
        while (read(sv[1], &c, 1) == 1)
            if (send(sv[1], &c, 1, MSG_NOSIGNAL) != 1)
                _exit(1);
        _exit(0);
    }
    close(sv[1]);
    cpu_set_t old;
    sched_getaffinity(0, sizeof old, &old);
    CPU_ZERO(&set);
    CPU_SET(a, &set);
    static uint64_t t[TRIPS];
    int n = 0;
    if (pid > 0 && sched_setaffinity(0, sizeof set, &set) == 0) {
        char c = 'x';
        for (; n < TRIPS; n++) {
            uint64_t t0 = cb_now_ns();
            if (send(sv[0], &c, 1, MSG_NOSIGNAL) != 1 || read(sv[0], &c, 1) != 1)
                break;
            t[n] = cb_now_ns() - t0;
        }
    }
    sched_setaffinity(0, sizeof old, &old);
    close(sv[0]); /* the child reads EOF and exits */
    if (pid > 0)
        waitpid(pid, NULL, 0);
    return n == TRIPS ? pct(t, TRIPS, 0.5) * 1e3 : -1;
}

/* The first two CPUs this process may run on, into cpu[]; how many. */
static int two_cpus(int cpu[2])
{
    cpu_set_t set;
    int n = 0;
    cpu[0] = cpu[1] = 0;
    if (sched_getaffinity(0, sizeof set, &set) < 0)
        return 1;
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
        if (CPU_ISSET(c, &set))
            cpu[n++] = c;
    return n ? n : 1;
}

/* build/bench/blocks (bench/blocks.c) in a directory of the bench's file
 * system: the bare building blocks of a start, for n samples. 0 and the
 * p50/p99 of both series (ms), or -1. */
static int run_blocks(const char *noop, int n, double out[4])
{
    char dir[192], prog[4096], count[16], line[256] = "";
    if (!bench_dir(dir, sizeof dir, "cb-bench-blocks"))
        return -1;
    snprintf(count, sizeof count, "%d", n);
    char *argv[] = {(char *)build_path(prog, sizeof prog, "bench/blocks"), dir, (char *)noop,
                    count, NULL};
    /* No shell: the paths ($CB_BUILD, CB_BENCH_STATE_DIR) are the user's. */
    int fds[2], got = 0, status = -1;
    pid_t pid = -1;
    posix_spawn_file_actions_t fa;
    if (pipe2(fds, O_CLOEXEC) == 0) {
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
        if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0)
            pid = -1;
        posix_spawn_file_actions_destroy(&fa);
        close(fds[1]);
        FILE *f = fdopen(fds[0], "r");
        if (f && fgets(line, sizeof line, f))
            got = sscanf(line, "blocks p50_ms=%lf p99_ms=%lf newnet_p50_ms=%lf newnet_p99_ms=%lf",
                         &out[0], &out[1], &out[2], &out[3]);
        if (f)
            fclose(f);
        else
            close(fds[0]);
    }
    if (pid > 0)
        waitpid(pid, &status, 0);
    rmdir(dir);
    return got == 4 && status == 0 ? 0 : -1;
}

static uint64_t spawn_wait(char *const argv[])
{
    uint64_t t0 = cb_now_ns();
    pid_t pid;
    if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0)
        return 0;
    waitpid(pid, NULL, 0);
    return cb_now_ns() - t0;
}

/* An OCI bundle for runc made of the same host binds as our host template
 * (read-only /usr, merged-/usr symlinks), rootless-style config (user
 * namespace), process /bin/true. Built once; 0 on success. */
static int make_runc_bundle(const char *dir)
{
    char path[1024];
    static const char *const dirs[] = {"rootfs", "rootfs/usr", "rootfs/proc", "rootfs/dev",
                                       "rootfs/sys", "rootfs/tmp", "rootfs/etc"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, dirs[i]);
        if (mkdir(path, 0755) < 0)
            return -1;
    }
    static const char *const links[][2] = {{"usr/bin", "bin"}, {"usr/lib", "lib"},
                                           {"usr/lib64", "lib64"}, {"usr/sbin", "sbin"}};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/rootfs/%s", dir, links[i][1]);
        if (symlink(links[i][0], path) < 0)
            return -1;
    }
    char *spec[] = {"runc", "spec", "--rootless", "--bundle", (char *)dir, NULL};
    pid_t pid;
    int st = -1;
    if (posix_spawnp(&pid, "runc", NULL, NULL, spec, environ) != 0 ||
        waitpid(pid, &st, 0) < 0 || st != 0)
        return -1;
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *cfg = json_load_file(path, 0, NULL);
    if (!cfg)
        return -1;
    json_t *proc = json_object_get(cfg, "process");
    json_object_set_new(proc, "terminal", json_false());
    json_object_set_new(proc, "args", json_pack("[s]", "/bin/true"));
    json_object_set_new(json_object_get(cfg, "root"), "readonly", json_true());
    json_array_append_new(json_object_get(cfg, "mounts"),
                          json_pack("{s:s,s:s,s:s,s:[s,s,s]}", "destination", "/usr", "type",
                                    "bind", "source", "/usr", "options", "rbind", "ro",
                                    "nosuid"));
    int r = json_dump_file(cfg, path, JSON_INDENT(2));
    json_decref(cfg);
    return r;
}

static uint64_t runc_run(const char *root, const char *bundle, int i)
{
    char name[32];
    snprintf(name, sizeof name, "cbbench%d", i);
    char *argv[] = {"/usr/sbin/runc", "--root", (char *)root, "run", "--bundle",
                    (char *)bundle, name, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    uint64_t t0 = cb_now_ns();
    pid_t pid;
    int status = -1;
    if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) == 0)
        waitpid(pid, &status, 0);
    posix_spawn_file_actions_destroy(&fa);
    return status == 0 ? cb_now_ns() - t0 : 0;
}

/* ---- --idle N: does start slow down as idle sandboxes accumulate? ----
 *
 *   build/bench/bench_runtime --idle N --json PATH [--samples S] [--disk-mb M]
 *
 * Starts N idle sandboxes (create+start, nothing running but init), then
 * times S rounds of create, start, first exec and destroy of one more
 * sandbox, prints p50/p99 of each phase and writes them as JSON to PATH.
 * Sandboxes get a disk limit of M MiB (default 2048, the warm pool's; 0 =
 * none) so the disk-image path (loop device + ext4) is measured where the
 * host has no project quotas. Everything it made is destroyed at the end. */
struct idle_opts {
    int idle, samples;
    uint64_t disk_bytes;
    const char *json;
};

/* The last is the sum of the first three: issue 2's create+first exec. */
enum { IDLE_PHASES = 5 };
static const char *const idle_phase_names[IDLE_PHASES] = {"create", "start", "exec", "destroy",
                                                          "create_start_exec"};

static int idle_parse(int argc, char **argv, struct idle_opts *o)
{
    *o = (struct idle_opts){.idle = -1, .samples = 40, .disk_bytes = 2048ull << 20};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--idle") == 0)
            o->idle = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--samples") == 0)
            o->samples = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--disk-mb") == 0)
            o->disk_bytes = strtoull(argv[i + 1], NULL, 10) << 20;
        else if (strcmp(argv[i], "--json") == 0)
            o->json = argv[i + 1];
        else
            return -1;
    }
    return o->idle < 0 || o->idle > 20000 || o->samples < 1 || o->samples > 10000 || !o->json
               ? -1 : 0;
}

static int idle_make(struct cb_runtime *rt, const char *id, uint64_t disk_bytes,
                     struct cb_sandbox **out, struct cb_error **err)
{
    struct cb_sandbox_spec spec = {.id = id, .template_name = "host",
                                   .limits = {.disk_bytes = disk_bytes}};
    if (T->create(rt, &spec, out, err) < 0)
        return -1;
    if (T->start(*out, err) == 0)
        return 0;
    T->destroy(*out, NULL);
    T->release(*out);
    *out = NULL;
    return -1;
}

static void rmdir_cgroups(const char *parent)
{
    const char *hier[] = {"memory", "cpu", "cpuacct", "pids", "freezer", "cpuset", ""};
    for (size_t i = 0; i < sizeof hier / sizeof *hier; i++) {
        char p[128];
        snprintf(p, sizeof p, "/sys/fs/cgroup/%s%s%s", hier[i], *hier[i] ? "/" : "", parent);
        rmdir(p);
    }
}

/* One timed round: create, start, first exec, destroy. */
static int idle_round(struct cb_runtime *rt, int i, uint64_t disk_bytes,
                      uint64_t *t[IDLE_PHASES], struct cb_error **err)
{
    char id[32];
    snprintf(id, sizeof id, "sb_sample%d", i);
    struct cb_sandbox_spec spec = {.id = id, .template_name = "host",
                                   .limits = {.disk_bytes = disk_bytes}};
    struct cb_sandbox *sb;
    uint64_t t0 = cb_now_ns();
    if (T->create(rt, &spec, &sb, err) < 0)
        return -1;
    uint64_t t1 = cb_now_ns();
    int r = T->start(sb, err);
    uint64_t t2 = cb_now_ns();
    if (r == 0)
        r = exec_true(sb);
    uint64_t t3 = cb_now_ns();
    if (T->destroy(sb, r == 0 ? err : NULL) < 0)
        r = -1;
    uint64_t t4 = cb_now_ns();
    T->release(sb);
    t[0][i] = t1 - t0, t[1][i] = t2 - t1, t[2][i] = t3 - t2, t[3][i] = t4 - t3;
    t[4][i] = t3 - t0;
    return r;
}

static void idle_report(const struct idle_opts *o, uint64_t *t[IDLE_PHASES], int n)
{
    FILE *f = fopen(o->json, "w");
    if (f)
        fprintf(f, "{\n  \"idle\": %d,\n  \"samples\": %d,\n  \"disk_mb\": %llu", o->idle, n,
                (unsigned long long)(o->disk_bytes >> 20));
    printf("%d idle sandboxes, n=%d, disk %llu MiB\n", o->idle, n,
           (unsigned long long)(o->disk_bytes >> 20));
    for (int k = 0; k < IDLE_PHASES; k++) {
        double p50 = pct(t[k], n, 0.5), p99 = pct(t[k], n, 0.99);
        printf("  %-17s p50 %7.3f ms  p99 %7.3f ms\n", idle_phase_names[k], p50, p99);
        if (f)
            fprintf(f, ",\n  \"%s_ms\": {\"p50\": %.3f, \"p99\": %.3f}", idle_phase_names[k],
                    p50, p99);
    }
    if (f) {
        fputs("\n}\n", f);
        fclose(f);
    }
}

static int idle_destroy_all(struct cb_sandbox **sbs, int n)
{
    int failed = 0;
    for (int i = 0; i < n; i++) {
        struct cb_error *err = NULL;
        if (sbs[i] && T->destroy(sbs[i], &err) < 0) {
            fprintf(stderr, "bench: destroy: %s\n", err->message);
            cb_error_free(err);
            failed = 1;
        }
        if (sbs[i])
            T->release(sbs[i]);
    }
    return failed;
}

static int idle_measure(struct cb_runtime *rt, const struct idle_opts *o,
                        struct cb_sandbox **sbs)
{
    struct cb_error *err = NULL;
    for (int i = 0; i < o->idle; i++) {
        char id[32];
        snprintf(id, sizeof id, "sb_idle%d", i);
        if (idle_make(rt, id, o->disk_bytes, &sbs[i], &err) < 0) {
            fprintf(stderr, "bench: idle %d: %s\n", i, err ? err->message : "?");
            return -1;
        }
        if ((i + 1) % 500 == 0)
            fprintf(stderr, "bench: %d idle\n", i + 1);
    }
    uint64_t *t[IDLE_PHASES];
    for (int k = 0; k < IDLE_PHASES; k++)
        t[k] = calloc((size_t)o->samples, sizeof **t);
    int r = 0, n = 0;
    for (; n < o->samples && r == 0; n++)
        if ((r = idle_round(rt, n, o->disk_bytes, t, &err)) < 0)
            fprintf(stderr, "bench: sample %d: %s\n", n, err ? err->message : "exec");
    if (r == 0)
        idle_report(o, t, n);
    for (int k = 0; k < IDLE_PHASES; k++)
        free(t[k]);
    return r;
}

static int idle_main(int argc, char **argv)
{
    struct idle_opts o;
    if (idle_parse(argc, argv, &o) < 0) {
        fprintf(stderr, "usage: bench_runtime --idle N --json PATH [--samples S] [--disk-mb M]\n");
        return 2;
    }
    char state[192];
    if (!bench_dir(state, sizeof state, "cb-bench-idle"))
        return 1;
    char initp[4096];
    char *init = realpath(build_path(initp, sizeof initp, "cellbox-init"), NULL);
    struct cb_runtime_config cfg = {.state_dir = state, .init_path = init,
                                    .cgroup_parent = "cellbox-bench-idle"};
    struct cb_runtime *rt;
    struct cb_error *err = NULL;
    if (!init || cb_runtime_open(&cfg, &rt, &err) < 0 || cb_template_ensure_host(rt, &err) < 0) {
        fprintf(stderr, "bench: %s\n", err ? err->message : "no cellbox-init");
        return 1;
    }
    T = cb_tier_lookup("container");
    struct cb_sandbox **sbs = calloc((size_t)o.idle + 1, sizeof *sbs);
    int r = idle_measure(rt, &o, sbs);
    r |= idle_destroy_all(sbs, o.idle);
    free(sbs);
    cb_runtime_free(rt);
    free(init);
    rmdir_cgroups("cellbox-bench-idle");
    return (cb_rootfs_remove_tree(state) == 0 && r == 0) ? 0 : 1;
}

/* Sustained create rate: threads creating and starting sandboxes back to
 * back (they stay alive; the same threads destroy them afterwards, timed
 * as the destroy rate). */
struct rate_job {
    struct cb_runtime *rt;
    struct cb_sandbox **sbs;
    int t, n, done;
    bool destroy;
    uint64_t disk_bytes; /* 0: no disk limit */
};

static void *rate_worker(void *arg)
{
    struct rate_job *j = arg;
    for (int i = 0; i < j->n; i++) {
        struct cb_error *err = NULL;
        if (j->destroy) {
            if (j->sbs[i]) {
                T->destroy(j->sbs[i], NULL);
                T->release(j->sbs[i]);
                j->done++;
            }
            continue;
        }
        char id[48];
        snprintf(id, sizeof id, "sb_rate%d_%d", j->t, i);
        struct cb_sandbox_spec spec = {.id = id, .template_name = "host",
                                       .limits = {.disk_bytes = j->disk_bytes}};
        if (T->create(j->rt, &spec, &j->sbs[i], &err) < 0) {
            j->sbs[i] = NULL;
            cb_error_free(err);
            continue;
        }
        if (T->start(j->sbs[i], &err) < 0)
            cb_error_free(err);
        else
            j->done++;
    }
    return NULL;
}

/* Per second over all threads; *count gets how many succeeded. */
static double rate_run(struct rate_job *jobs, int threads, bool destroy, int *count)
{
    pthread_t th[8];
    uint64_t t0 = cb_now_ns();
    for (int t = 0; t < threads; t++) {
        jobs[t].destroy = destroy;
        jobs[t].done = 0;
        pthread_create(&th[t], NULL, rate_worker, &jobs[t]);
    }
    *count = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        *count += jobs[t].done;
    }
    return *count / ((double)(cb_now_ns() - t0) / 1e9);
}

/* One thread per CPU (at most 8) creating and starting 150 sandboxes each,
 * then destroying them: the create rate, *destroy_rate. */
static double rate_measure(struct cb_runtime *rt, uint64_t disk_bytes, int *threads,
                           int *created, double *destroy_rate)
{
    enum { RATE_PER_THREAD = 150 };
    int n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    n = n < 1 ? 1 : n > 8 ? 8 : n;
    struct rate_job jobs[8];
    for (int t = 0; t < n; t++)
        jobs[t] = (struct rate_job){.rt = rt, .t = t, .n = RATE_PER_THREAD,
                                    .disk_bytes = disk_bytes,
                                    .sbs = calloc(RATE_PER_THREAD, sizeof(struct cb_sandbox *))};
    int destroyed = 0;
    double rate = rate_run(jobs, n, false, created);
    *destroy_rate = rate_run(jobs, n, true, &destroyed);
    for (int t = 0; t < n; t++)
        free(jobs[t].sbs);
    *threads = n;
    return rate;
}

/* n cold create+start+first exec each of /bin/true (into t_true[]) and of
 * the no-op (t_noop[]), alternating, one sandbox at a time with the N_MAX
 * sandboxes alive: the no-op's copy into its sandbox (between start and
 * exec) is not counted. Each sandbox is destroyed after. */
static int cold_round(struct cb_runtime *rt, uint64_t *t_true, uint64_t *t_noop, int n)
{
    struct cb_error *err = NULL;
    for (int i = 0; i < 2 * n; i++) {
        bool noop = i % 2;
        char id[32];
        snprintf(id, sizeof id, "sb_cold%d", i);
        struct cb_sandbox_spec spec = {.id = id, .template_name = "host"};
        struct cb_sandbox *sb = NULL;
        uint64_t t0 = cb_now_ns();
        int r = T->create(rt, &spec, &sb, &err);
        if (r == 0)
            r = T->start(sb, &err);
        uint64_t t1 = cb_now_ns();
        if (r == 0 && noop)
            r = put_noop(sb);
        uint64_t t2 = cb_now_ns();
        if (r == 0)
            r = exec_path(sb, noop ? NOOP_IN_SANDBOX : "/bin/true");
        (noop ? t_noop : t_true)[i / 2] = (t1 - t0) + (cb_now_ns() - t2);
        if (getenv("CB_TRACE_START")) /* which sample the trace lines above were */
            fprintf(stderr, "cold sample %d (%s): create+start %llu us, first exec %llu us\n", i,
                    noop ? "no-op" : "/bin/true", (unsigned long long)((t1 - t0) / 1000),
                    (unsigned long long)((cb_now_ns() - t2) / 1000));
        if (sb) {
            T->destroy(sb, NULL);
            T->release(sb);
        }
        if (r < 0) {
            fprintf(stderr, "bench: cold round: %s\n", err ? err->message : "exec");
            cb_error_free(err);
            return -1;
        }
    }
    return 0;
}

/* n warm-pool members made and started ahead (ids prefix0..), then each
 * claimed and its first process run (noop: the no-op, copied in before the
 * claim; NULL: /bin/true), timed into t[]; all destroyed after. */
static int warm_pool_round(struct cb_runtime *rt, const char *prefix, const char *noop,
                           uint64_t *t, int n)
{
    struct cb_sandbox *members[64];
    struct cb_error *err = NULL;
    int made = 0, r = 0;
    for (; made < n && made < 64; made++) {
        char id[32];
        snprintf(id, sizeof id, "%s%d", prefix, made);
        struct cb_sandbox_spec spec = {.id = id, .template_name = "host"};
        if (T->create(rt, &spec, &members[made], &err) < 0)
            break;
        if (T->start(members[made], &err) < 0 || (noop && put_noop(members[made]) < 0)) {
            made++;
            break;
        }
    }
    if (made < n || err) {
        fprintf(stderr, "bench: warm pool: %s\n", err ? err->message : "noop");
        r = -1;
    }
    usleep(100 * 1000); /* the members' starts settled */
    for (int i = 0; r == 0 && i < n; i++) {
        struct cb_limits defaults = {0};
        uint64_t t0 = cb_now_ns();
        if (cb_container_claim(members[i], cb_container_id(members[i]), NULL, &defaults, &err) < 0 ||
            exec_path(members[i], noop ? noop : "/bin/true") < 0) {
            fprintf(stderr, "bench: claim: %s\n", err ? err->message : "exec");
            r = -1;
        }
        t[i] = cb_now_ns() - t0;
    }
    for (int i = 0; i < made; i++) {
        T->destroy(members[i], NULL);
        T->release(members[i]);
    }
    cb_error_free(err);
    return r;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--idle") == 0)
        return idle_main(argc, argv);
    int nmax = 100;
    const char *out = "bench/results/runtime.json";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
            out = argv[++i];
        else if ((nmax = atoi(argv[i])) < 1) {
            fprintf(stderr, "usage: bench_runtime [N_MAX=100] [--out PATH]\n"
                            "       bench_runtime --idle N --json PATH [--samples S] "
                            "[--disk-mb M]\n");
            return 2;
        }
    }
    char state[192];
    if (!bench_dir(state, sizeof state, "cb-bench"))
        return 1;
    char initp[4096], noop[4096];
    char *init = realpath(build_path(initp, sizeof initp, "cellbox-init"), NULL);
    struct cb_runtime_config cfg = {.state_dir = state, .init_path = init,
                                    .cgroup_parent = "cellbox-bench", .no_disk_quota = true};
    struct cb_runtime *rt;
    struct cb_error *err = NULL;
    if (!init || cb_runtime_open(&cfg, &rt, &err) < 0 || cb_template_ensure_host(rt, &err) < 0) {
        fprintf(stderr, "bench: %s\n", err ? err->message : "no build/cellbox-init");
        return 1;
    }
    T = cb_tier_lookup("container");
    struct cb_sandbox **sbs = calloc((size_t)nmax, sizeof *sbs);
    uint64_t *lat = calloc((size_t)nmax, sizeof *lat);
    double p50[3] = {0}, p99[3] = {0};
    int marks[3] = {1, nmax < 10 ? nmax : 10, nmax}; /* ascending: each is reached */
    int mi = 0;
    uint64_t pinned0 = settled_pinned_memory();
    int memcgs0 = memory_cgroups();
    for (int i = 0; i < nmax; i++) {
        char id[32];
        snprintf(id, sizeof id, "sb_bench%d", i);
        struct cb_sandbox_spec spec = {.id = id, .template_name = "host"};
        uint64_t t0 = cb_now_ns();
        if (T->create(rt, &spec, &sbs[i], &err) < 0 || T->start(sbs[i], &err) < 0 ||
            exec_true(sbs[i]) < 0) {
            fprintf(stderr, "bench: %s\n", err ? err->message : "exec");
            return 1;
        }
        lat[i] = cb_now_ns() - t0;
        while (mi < 3 && i + 1 == marks[mi]) {
            uint64_t *copy = malloc(sizeof *lat * (size_t)(i + 1));
            memcpy(copy, lat, sizeof *lat * (size_t)(i + 1));
            p50[mi] = pct(copy, i + 1, 0.5);
            p99[mi] = pct(copy, i + 1, 0.99);
            free(copy);
            mi++;
        }
    }
    enum { R = 200 };
    uint64_t ex[R], host[R], pa[R], re[R], ex_noop[R], host_noop[R];
    char *true_argv[] = {"/bin/true", NULL};
    char *noop_argv[] = {(char *)build_path(noop, sizeof noop, "bench/noop"), NULL};
    /* Over one connection, as cellboxd keeps one per sandbox (initc.h). */
    int conn = -1;
    if (put_noop(sbs[0]) < 0 || T->connect(sbs[0], &conn, &err) < 0) {
        fprintf(stderr, "bench: %s\n", err ? err->message : "noop");
        return 1;
    }
    for (int i = 0; i < R; i++) {
        uint64_t t0 = cb_now_ns();
        int r = exec_on(conn, "/bin/true");
        ex[i] = cb_now_ns() - t0;
        t0 = cb_now_ns();
        if (r == 0)
            r = exec_on(conn, NOOP_IN_SANDBOX);
        ex_noop[i] = cb_now_ns() - t0;
        if (r < 0) {
            fprintf(stderr, "bench: exec round trip failed\n");
            return 1;
        }
        host[i] = spawn_wait(true_argv);
        host_noop[i] = spawn_wait(noop_argv);
        t0 = cb_now_ns();
        T->pause(sbs[0], NULL);
        pa[i] = cb_now_ns() - t0;
        t0 = cb_now_ns();
        T->resume(sbs[0], NULL);
        re[i] = cb_now_ns() - t0;
    }
    close(conn);
    /* Idle memory all-in: what the host pins for the nmax live sandboxes
     * (their spares made ahead included); and the part charged to each
     * sandbox's own memory cgroup (init, its page tables, the kernel
     * objects it allocated itself: not its network namespace, made by the
     * runtime, nor the shrinker maps, kept per memory cgroup). */
    uint64_t pinned1 = settled_pinned_memory();
    int memcgs1 = memory_cgroups();
    uint64_t host_mem = pinned1 > pinned0 ? (pinned1 - pinned0) / (uint64_t)nmax : 0;
    uint64_t mem = 0;
    for (int i = 0; i < nmax; i++) {
        struct cb_sandbox_stats st;
        if (T->stats(sbs[i], &st, NULL) == 0)
            mem += st.memory_bytes;
    }
    uint64_t memcg_bytes = empty_memcg_bytes(cfg.cgroup_parent);
    double cpuid = cpuid_us();
    /* From a warm pool: members made ahead under the id their sandbox gets
     * (cellboxd's pool.h), each claimed with the default shape and its
     * first process run. The claim is what a create then does. Once with
     * /bin/true, once with the no-op (put in each member beforehand). */
    enum { WARM = 30 };
    uint64_t warm[WARM], warm_noop[WARM], cold_true[WARM], cold_noop[WARM];
    if (cold_round(rt, cold_true, cold_noop, WARM) < 0)
        return 1;
    double blocks[4];
    bool have_blocks = run_blocks(noop, WARM, blocks) == 0;
    if (!have_blocks)
        fprintf(stderr, "bench: the building-blocks probe failed (above)\n");
    int cpu[2];
    int ncpu = two_cpus(cpu);
    double wake_same = pingpong_us(cpu[0], cpu[0]);
    double wake_cross = ncpu > 1 ? pingpong_us(cpu[0], cpu[1]) : -1;
    double v2join[2];
    cgroup2_join_ms(v2join);
    if (warm_pool_round(rt, "sb_warm", NULL, warm, WARM) < 0 ||
        warm_pool_round(rt, "sb_warmnoop", NOOP_IN_SANDBOX, warm_noop, WARM) < 0)
        return 1;
    uint64_t bw[20];
    char *bwrap_argv[] = {"/usr/bin/bwrap", "--unshare-all", "--ro-bind", "/usr", "/usr",
                          "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                          "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev",
                          "/bin/true", NULL};
    for (int i = 0; i < 20; i++)
        bw[i] = spawn_wait(bwrap_argv);
    /* runc: same machine, same moment, same binds; p50 of 20 runs. */
    enum { RUNC_N = 20 };
    uint64_t rc[RUNC_N];
    int nrc = 0;
    char bundle[256], runc_root[256];
    snprintf(bundle, sizeof bundle, "%s/runc-bundle", state);
    snprintf(runc_root, sizeof runc_root, "%s/runc-state", state);
    if (mkdir(bundle, 0755) == 0 && make_runc_bundle(bundle) == 0)
        for (int i = 0; i < RUNC_N; i++)
            if ((rc[nrc] = runc_run(runc_root, bundle, i)) > 0)
                nrc++;
    double rc50 = nrc ? pct(rc, nrc, 0.5) : 0;
    uint64_t de[1024];
    int nd = nmax < 1024 ? nmax : 1024;
    for (int i = 0; i < nd; i++) {
        uint64_t t0 = cb_now_ns();
        if (T->destroy(sbs[i], &err) < 0)
            fprintf(stderr, "destroy: %s\n", err->message);
        de[i] = cb_now_ns() - t0;
        T->release(sbs[i]);
    }
    /* Sustained create rate, without and with a disk image per sandbox
     * (this host's disk limit without project quotas: loop + ext4). */
    int threads = 0, created = 0, created_img = 0;
    double destroy_rate = 0, destroy_rate_img = 0;
    double create_rate = rate_measure(rt, 0, &threads, &created, &destroy_rate);
    double create_rate_img = -1;
    char img_state[192];
    struct cb_runtime_config icfg = {.state_dir = img_state, .init_path = init,
                                     .cgroup_parent = "cellbox-bench-img"};
    struct cb_runtime *irt = NULL;
    if (bench_dir(img_state, sizeof img_state, "cb-bench-img") &&
        cb_runtime_open(&icfg, &irt, &err) == 0 && cb_template_ensure_host(irt, &err) == 0 &&
        cb_runtime_disk_images(irt))
        create_rate_img = rate_measure(irt, 2048ull << 20, &threads, &created_img,
                                       &destroy_rate_img);
    else
        fprintf(stderr, "bench: no disk images on this host: %s\n", err ? err->message : "quota");
    cb_runtime_free(irt);
    rmdir_cgroups("cellbox-bench-img");
    if (cb_rootfs_remove_tree(img_state) < 0)
        fprintf(stderr, "bench: cannot remove %s\n", img_state);
    double bw50 = pct(bw, 20, 0.5);
    printf("create+start+first exec, %d sandboxes back to back: p50 %.3f ms  p99 %.3f ms\n", nmax,
           p50[2], p99[2]);
    double warm50 = pct(warm, WARM, 0.5), warm99 = pct(warm, WARM, 0.99);
    printf("create+first exec from a warm pool (claim a started sandbox): p50 %.3f ms  "
           "p99 %.3f ms\n", warm50, warm99);
    printf("memory per idle sandbox (%d live): %.0f KiB of host memory all-in (target < 1024), "
           "%.0f KiB of it charged to its own memory cgroup\n",
           nmax, host_mem / 1024.0, mem / (double)nmax / 1024.0);
    /* Each sandbox adds one memory cgroup; fewer means the kernel freed
     * removed ones (each with its shrinker maps) in the window, or spare
     * cgroups of an earlier runtime were reused: the all-in figure then
     * reads low for a host without either. */
    if (memcgs0 >= 0 && memcgs1 >= 0 && memcgs1 - memcgs0 < nmax - 2)
        printf("  (%d memory cgroups fewer than sandboxes: removed ones freed by the kernel "
               "meanwhile, or spares reused; the all-in figure reads low)\n",
               nmax - (memcgs1 - memcgs0));
    printf("sustained create+start: %.0f/s (%d threads, %d sandboxes kept alive); destroy %.0f/s\n",
           create_rate, threads, created, destroy_rate);
    if (create_rate_img >= 0)
        printf("  the same with a 2 GiB disk image each: %.0f/s (%d sandboxes); destroy %.0f/s\n",
               create_rate_img, created_img, destroy_rate_img);
    printf("  %-28s %8s %8s\n", "", "p50 ms", "ours/it");
    printf("  %-28s %8.3f %8.2f\n", "bwrap /bin/true", bw50, p50[2] / bw50);
    if (nrc)
        printf("  %-28s %8.3f %8.2f\n", "runc run /bin/true", rc50, p50[2] / rc50);
    else
        printf("  runc: failed (see stderr)\n");
    printf("  %-28s %8.3f\n", "host posix_spawn /bin/true", pct(host, R, 0.5));
    /* The floors: what this host charges any process and any sandbox, so
     * that the figures above can be read against another host's. */
    double host50 = pct(host, R, 0.5), hostn50 = pct(host_noop, R, 0.5);
    double warmn50 = pct(warm_noop, WARM, 0.5), warmn99 = pct(warm_noop, WARM, 0.99);
    printf("host floors, same run:\n");
    printf("  posix_spawn+wait on the host: /bin/true %.3f ms, a program without libc %.3f ms "
           "(libc's start: %.3f ms)\n", host50, hostn50, host50 - hostn50);
    if (cpuid >= 0)
        printf("  one CPUID instruction: %.1f us (glibc's start runs dozens: 68 in Debian 12's "
               "/bin/true; a hypervisor traps each)\n", cpuid);
    printf("  exec round trip in a sandbox: /bin/true %.3f ms (%.2fx the host's), "
           "no-op %.3f ms (%.2fx)\n", pct(ex, R, 0.5), pct(ex, R, 0.5) / host50,
           pct(ex_noop, R, 0.5), pct(ex_noop, R, 0.5) / hostn50);
    printf("  create+start+first exec, one at a time, %d live: /bin/true p50 %.3f ms  p99 %.3f "
           "ms; no-op p50 %.3f ms  p99 %.3f ms\n", nmax, pct(cold_true, WARM, 0.5),
           pct(cold_true, WARM, 0.99), pct(cold_noop, WARM, 0.5), pct(cold_noop, WARM, 0.99));
    printf("  create+first exec from a warm pool, no-op: p50 %.3f ms  p99 %.3f ms\n", warmn50,
           warmn99);
    if (wake_same >= 0 && wake_cross >= 0)
        printf("  a one-byte round trip between two processes: same CPU %.1f us, across CPUs "
               "%.1f us (a start and an exec hand off between the caller, the sandbox's child or "
               "init and the process several times; each crossing to an idle CPU costs half of "
               "that)\n", wake_same, wake_cross);
    else if (wake_same >= 0)
        printf("  a one-byte round trip between two processes on one CPU: %.1f us\n", wake_same);
    if (v2join[0] >= 0 && v2join[1] >= 0)
        printf("  into a cgroup v2 after 50 ms of quiet: writing a pid to cgroup.procs %.3f ms "
               "(an RCU grace period); a clone3 born in it %.3f ms, the whole clone (how "
               "sandboxes start on v2)\n", v2join[0], v2join[1]);
    double coldn50 = pct(cold_noop, WARM, 0.5);
    if (have_blocks)
        printf("  the bare building blocks of a start (bench/blocks.c: namespaces, overlay, /usr, "
               "/proc, pivot_root, seccomp, exec of the no-op; no cgroups, /dev, /proc masks or "
               "init): p50 %.3f ms, with a fresh network namespace %.3f ms; the cold no-op above "
               "is %.2fx the first (issue 2 set 1.5 ms against 0.41 ms measured then: 3.66x)\n",
               blocks[0], blocks[2], coldn50 / blocks[0]);
    if (memcg_bytes)
        printf("  an empty memory cgroup pins %.0f KiB now (shrinker maps sized by the most "
               "superblocks alive at once since boot); the rest of the %.0f KiB per idle "
               "sandbox above: %.0f KiB\n", memcg_bytes / 1024.0, host_mem / 1024.0,
               host_mem > memcg_bytes ? (host_mem - memcg_bytes) / 1024.0 : 0.0);
    char runc_json[160];
    if (nrc)
        snprintf(runc_json, sizeof runc_json,
                 "\"runc_true_ms_p50\": %.3f,\n  \"ratio_create_exec_vs_runc\": %.3f", rc50,
                 p50[2] / rc50);
    else
        snprintf(runc_json, sizeof runc_json, "\"runc_true_ms_p50\": null");
    /* One entry per live-sandbox count measured: 1, 10 and N_MAX, each once
     * (N_MAX may be 1 or 10 itself). */
    char sizes[256];
    int k = snprintf(sizes, sizeof sizes, "\"1\": {\"p50\": %.3f, \"p99\": %.3f}", p50[0], p99[0]);
    if (nmax > 10)
        k += snprintf(sizes + k, sizeof sizes - (size_t)k, ", \"10\": {\"p50\": %.3f, \"p99\": %.3f}",
                      p50[1], p99[1]);
    if (nmax > 1)
        snprintf(sizes + k, sizeof sizes - (size_t)k, ", \"%d\": {\"p50\": %.3f, \"p99\": %.3f}", nmax,
                 p50[2], p99[2]);
    char blocks_json[256], wake_json[320];
    if (have_blocks)
        snprintf(blocks_json, sizeof blocks_json,
                 "\"blocks_ms\": {\"p50\": %.3f, \"p99\": %.3f},\n"
                 "  \"blocks_newnet_ms\": {\"p50\": %.3f, \"p99\": %.3f},\n"
                 "  \"ratio_create_exec_noop_vs_blocks\": %.3f",
                 blocks[0], blocks[1], blocks[2], blocks[3], coldn50 / blocks[0]);
    else
        snprintf(blocks_json, sizeof blocks_json, "\"blocks_ms\": null");
    char same_json[32] = "null", cross_json[32] = "null";
    if (wake_same >= 0)
        snprintf(same_json, sizeof same_json, "%.1f", wake_same);
    if (wake_cross >= 0)
        snprintf(cross_json, sizeof cross_json, "%.1f", wake_cross);
    char v2w_json[32] = "null", v2c_json[32] = "null";
    if (v2join[0] >= 0)
        snprintf(v2w_json, sizeof v2w_json, "%.3f", v2join[0]);
    if (v2join[1] >= 0)
        snprintf(v2c_json, sizeof v2c_json, "%.3f", v2join[1]);
    snprintf(wake_json, sizeof wake_json,
             "\"host_roundtrip_same_cpu_us\": %s,\n  \"host_roundtrip_cross_cpu_us\": %s,\n"
             "  \"host_cgroup2_pid_write_ms_p50\": %s,\n  \"host_cgroup2_clone_into_ms_p50\": %s",
             same_json, cross_json, v2w_json, v2c_json);
    char json[4096];
    snprintf(json, sizeof json,
             "{\n  \"create_exec_ms\": {%s},\n"
             "  \"warm_pool_create_exec_ms\": {\"p50\": %.3f, \"p99\": %.3f},\n"
             "  \"exec_roundtrip_ms_p50\": %.3f,\n  \"host_posix_spawn_true_ms_p50\": %.3f,\n"
             "  \"pause_ms_p50\": %.3f,\n  \"resume_ms_p50\": %.3f,\n  \"destroy_ms_p50\": %.3f,\n"
             "  \"host_memory_bytes_per_sandbox\": %llu,\n"
             "  \"target_host_memory_bytes_per_sandbox\": 1048576,\n"
             "  \"cgroup_charge_bytes_per_sandbox\": %llu,\n  \"bwrap_true_ms_p50\": %.3f,\n"
             "  \"ratio_create_exec_vs_bwrap\": %.3f,\n"
             "  \"create_rate_per_s\": %.0f,\n  \"create_rate_threads\": %d,\n"
             "  \"create_rate_sandboxes\": %d,\n  \"destroy_rate_per_s\": %.0f,\n"
             "  \"create_rate_disk_image_per_s\": %.0f,\n"
             "  \"destroy_rate_disk_image_per_s\": %.0f,\n"
             "  \"host_posix_spawn_noop_ms_p50\": %.3f,\n"
             "  \"exec_roundtrip_noop_ms_p50\": %.3f,\n"
             "  \"create_exec_one_at_a_time_ms\": {\"p50\": %.3f, \"p99\": %.3f},\n"
             "  \"create_exec_noop_ms\": {\"p50\": %.3f, \"p99\": %.3f},\n"
             "  \"warm_pool_create_exec_noop_ms\": {\"p50\": %.3f, \"p99\": %.3f},\n"
             "  \"host_cpuid_us\": %.2f,\n"
             "  \"host_empty_memory_cgroup_bytes\": %llu,\n"
             "  %s,\n  %s,\n  %s\n}\n",
             sizes, warm50, warm99, pct(ex, R, 0.5),
             pct(host, R, 0.5), pct(pa, R, 0.5), pct(re, R, 0.5), pct(de, nd, 0.5),
             (unsigned long long)host_mem, (unsigned long long)(mem / (uint64_t)nmax), bw50, p50[2] / bw50, create_rate,
             threads, created, destroy_rate, create_rate_img, destroy_rate_img, hostn50,
             pct(ex_noop, R, 0.5), pct(cold_true, WARM, 0.5), pct(cold_true, WARM, 0.99),
             pct(cold_noop, WARM, 0.5), pct(cold_noop, WARM, 0.99),
             warmn50, warmn99, cpuid, (unsigned long long)memcg_bytes,
             blocks_json, wake_json, runc_json);
    fputs(json, stdout);
    FILE *f = fopen(out, "w");
    int status = f ? 0 : 1;
    if (f && fputs(json, f) < 0)
        status = 1;
    if (f && fclose(f) != 0)
        status = 1;
    if (status)
        fprintf(stderr, "bench: cannot write %s\n", out);
    cb_runtime_free(rt);
    rmdir_cgroups("cellbox-bench");
    free(init);
    free(sbs);
    free(lat);
    return cb_rootfs_remove_tree(state) == 0 ? status : 1;
}
