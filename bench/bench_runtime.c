/* bench_runtime — container-tier latencies (a benchmark, never a test).
 *
 *   build/bench/bench_runtime [N_MAX=100]
 *   build/bench/bench_runtime --idle N --json PATH   (see idle_main)
 *
 * Prints and writes bench/results/runtime.json: create+start+first exec
 * p50/p99 for 1, 10, 100 live sandboxes; exec round trip vs a bare
 * posix_spawn+wait of /bin/true; pause/resume; destroy; memory per idle
 * sandbox, all-in (the host memory that cannot be reclaimed, before and
 * after the N_MAX sandboxes: init, kernel objects, network namespace, the
 * shrinker maps every memory cgroup keeps; caches not counted) and what
 * of it is charged to the sandbox's own memory cgroup; and bwrap's
 * spawn of /bin/true in the same run as a ratio; the sustained create rate
 * (one thread per CPU creating and starting sandboxes back to back, 150
 * each, kept alive) and the rate at which they are then destroyed; and
 * create+first exec from a warm pool: a sandbox created and started
 * ahead, claimed (cb_container_claim, as cellboxd's pool does) and its
 * first process run. Needs root. */
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <unistd.h>
#include <spawn.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "proto.h"
#include "runtime.h"
#include "tier.h"

extern char **environ;
static const struct cb_tier_ops *T;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Memory the host cannot reclaim, in bytes, from /proc/meminfo: kernel
 * objects that are not caches (SUnreclaim), kernel stacks, page tables,
 * per-CPU data and anonymous memory. MemAvailable swings with page cache
 * and reclaim heuristics; this does not. */
static uint64_t pinned_memory(void)
{
    static const char *const keys[] = {"SUnreclaim:", "KernelStack:", "PageTables:",
                                       "Percpu:", "AnonPages:"};
    FILE *f = fopen("/proc/meminfo", "r");
    char line[128];
    unsigned long long total = 0;
    while (f && fgets(line, sizeof line, f)) {
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
            size_t kl = strlen(keys[i]);
            unsigned long long kib;
            if (strncmp(line, keys[i], kl) == 0 && sscanf(line + kl, "%llu", &kib) == 1)
                total += kib;
        }
    }
    if (f)
        fclose(f);
    return (uint64_t)total * 1024;
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

static double pct(uint64_t *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i] / 1e6; /* ms */
}

static int exec_true(struct cb_sandbox *sb)
{
    int s;
    struct cb_error *err = NULL;
    if (T->connect(sb, &s, &err) < 0)
        return -1;
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_SPAWN, 1);
    cb_builder_str(&b, CB_F_ARGV, "/bin/true");
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
            break;
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        struct cb_field_view f;
        uint32_t got = 0;
        int done = h.type == CB_MSG_ERROR;
        if (h.type == CB_MSG_SPAWNED && cb_proto_find(p, h.length, CB_F_PID, &f) == 1)
            cb_field_u32(&f, &pid);
        if (h.type == CB_MSG_EXIT && cb_proto_find(p, h.length, CB_F_PID, &f) == 1 &&
            cb_field_u32(&f, &got) == 0 && got == pid)
            done = 1;
        free(p);
        if (done)
            break;
    }
    close(s);
    return 0;
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
    char path[1024], cmd[1200];
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
    snprintf(cmd, sizeof cmd, "runc spec --rootless --bundle %s", dir);
    if (system(cmd) != 0)
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
    const char *hier[] = {"memory", "cpu", "cpuacct", "pids", "freezer", ""};
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
    char state[] = "/tmp/cb-bench-idle-XXXXXX";
    if (!mkdtemp(state) || chmod(state, 0711) < 0)
        return 1;
    const char *b = getenv("CB_BUILD");
    char initp[4096];
    snprintf(initp, sizeof initp, "%s/cellbox-init", b ? b : "build");
    char *init = realpath(initp, NULL);
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
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", state);
    return (system(cmd) == 0 && r == 0) ? 0 : 1;
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

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--idle") == 0)
        return idle_main(argc, argv);
    int nmax = argc > 1 ? atoi(argv[1]) : 100;
    char state[] = "/tmp/cb-bench-XXXXXX";
    if (!mkdtemp(state))
        return 1;
    char *init = realpath("build/cellbox-init", NULL);
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
    int marks[3] = {1, 10, nmax};
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
    uint64_t ex[R], host[R], pa[R], re[R];
    char *true_argv[] = {"/bin/true", NULL};
    for (int i = 0; i < R; i++) {
        uint64_t t0 = cb_now_ns();
        exec_true(sbs[0]);
        ex[i] = cb_now_ns() - t0;
        host[i] = spawn_wait(true_argv);
        t0 = cb_now_ns();
        T->pause(sbs[0], NULL);
        pa[i] = cb_now_ns() - t0;
        t0 = cb_now_ns();
        T->resume(sbs[0], NULL);
        re[i] = cb_now_ns() - t0;
    }
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
    /* From a warm pool: members made ahead under the id their sandbox gets
     * (cellboxd's pool.h), each claimed with the default shape and its
     * first process run. The claim is what a create then does. */
    enum { WARM = 30 };
    uint64_t warm[WARM];
    struct cb_sandbox *members[WARM];
    for (int i = 0; i < WARM; i++) {
        char id[32];
        snprintf(id, sizeof id, "sb_warm%d", i);
        struct cb_sandbox_spec spec = {.id = id, .template_name = "host"};
        if (T->create(rt, &spec, &members[i], &err) < 0 || T->start(members[i], &err) < 0) {
            fprintf(stderr, "bench: warm pool: %s\n", err->message);
            return 1;
        }
    }
    usleep(100 * 1000); /* the members' starts settled */
    for (int i = 0; i < WARM; i++) {
        struct cb_limits defaults = {0};
        uint64_t t0 = cb_now_ns();
        if (cb_container_claim(members[i], cb_container_id(members[i]), NULL, &defaults, &err) < 0 ||
            exec_true(members[i]) < 0) {
            fprintf(stderr, "bench: claim: %s\n", err ? err->message : "exec");
            return 1;
        }
        warm[i] = cb_now_ns() - t0;
    }
    for (int i = 0; i < WARM; i++) {
        T->destroy(members[i], NULL);
        T->release(members[i]);
    }
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
    char img_state[] = "/tmp/cb-bench-img-XXXXXX";
    struct cb_runtime_config icfg = {.state_dir = img_state, .init_path = init,
                                     .cgroup_parent = "cellbox-bench-img"};
    struct cb_runtime *irt = NULL;
    if (mkdtemp(img_state) && chmod(img_state, 0711) == 0 &&
        cb_runtime_open(&icfg, &irt, &err) == 0 && cb_template_ensure_host(irt, &err) == 0 &&
        cb_runtime_disk_images(irt))
        create_rate_img = rate_measure(irt, 2048ull << 20, &threads, &created_img,
                                       &destroy_rate_img);
    else
        fprintf(stderr, "bench: no disk images on this host: %s\n", err ? err->message : "quota");
    cb_runtime_free(irt);
    rmdir_cgroups("cellbox-bench-img");
    char rmcmd[128];
    snprintf(rmcmd, sizeof rmcmd, "rm -rf %s", img_state);
    if (system(rmcmd) != 0)
        fprintf(stderr, "bench: cannot remove %s\n", img_state);
    double bw50 = pct(bw, 20, 0.5);
    printf("create+start+first exec, %d sandboxes: p50 %.3f ms  p99 %.3f ms\n", nmax, p50[2], p99[2]);
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
    char json[2048];
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
             "  %s\n}\n",
             sizes, warm50, warm99, pct(ex, R, 0.5),
             pct(host, R, 0.5), pct(pa, R, 0.5), pct(re, R, 0.5), pct(de, nd, 0.5),
             (unsigned long long)host_mem, (unsigned long long)(mem / (uint64_t)nmax), bw50, p50[2] / bw50, create_rate,
             threads, created, destroy_rate, create_rate_img, destroy_rate_img, runc_json);
    fputs(json, stdout);
    FILE *f = fopen("bench/results/runtime.json", "w");
    if (f) {
        fputs(json, f);
        fclose(f);
    }
    cb_runtime_free(rt);
    rmdir_cgroups("cellbox-bench");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", state);
    return system(cmd) == 0 ? 0 : 1;
}
