/* cbrun — a small command-line driver of the container runtime for tests
 * and benchmarks.
 *
 *   cbrun --state DIR [--init PATH] [--no-quota] create ID [--memory MB]
 *         [--pids N] [--cpu C] [--disk MB] [--weaken seccomp,caps,proc|all]
 *   cbrun --state DIR start|pause|resume|stop|destroy|stats|pid ID
 *   cbrun --state DIR exec ID [--uid N] [--cwd DIR] -- argv...
 *
 * exec runs argv inside the sandbox through cellbox-init (SPAWN, pipes),
 * copies its stdout/stderr and exits with its exit code (128+signal when
 * killed). Errors go to stderr with exit code 125. */
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "proto.h"
#include "tier.h"

static const struct cb_tier_ops *tier;

static int fail(struct cb_error *e, const char *what)
{
    fprintf(stderr, "cbrun: %s: %s\n", what, e ? e->message : "failed");
    cb_error_free(e);
    return 125;
}

/* "--weaken seccomp,caps,proc" (or "all"): the security battery's control
 * runs, each a sandbox missing one defence (tier.h CB_WEAKEN_*). */
static int parse_weaken(const char *list, unsigned *out)
{
    static const struct {
        const char *name;
        unsigned bit;
    } names[] = {{"seccomp", CB_WEAKEN_NO_SECCOMP},
                 {"caps", CB_WEAKEN_ALL_CAPS},
                 {"proc", CB_WEAKEN_OPEN_PROC},
                 {"all", CB_WEAKEN_NO_SECCOMP | CB_WEAKEN_ALL_CAPS | CB_WEAKEN_OPEN_PROC}};
    *out = 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        size_t i = 0;
        while (i < sizeof names / sizeof names[0] &&
               (strlen(names[i].name) != len || strncmp(names[i].name, p, len) != 0))
            i++;
        if (i == sizeof names / sizeof names[0]) {
            fprintf(stderr, "cbrun: unknown weakening %.*s\n", (int)len, p);
            return -1;
        }
        *out |= names[i].bit;
        p += len + (p[len] == ',');
    }
    return 0;
}

static int do_create(struct cb_runtime *rt, const char *id, int argc, char **argv)
{
    struct cb_sandbox_spec spec = {.id = id, .hostname = id, .template_name = "host"};
    for (int i = 0; i + 1 < argc; i += 2) {
        double v = strtod(argv[i + 1], NULL);
        if (strcmp(argv[i], "--memory") == 0)
            spec.limits.memory_bytes = (uint64_t)(v * 1048576.0);
        else if (strcmp(argv[i], "--pids") == 0)
            spec.limits.pids = (uint32_t)v;
        else if (strcmp(argv[i], "--cpu") == 0)
            spec.limits.cpu = v;
        else if (strcmp(argv[i], "--disk") == 0)
            spec.limits.disk_bytes = (uint64_t)(v * 1048576.0);
        else if (strcmp(argv[i], "--template") == 0)
            spec.template_name = argv[i + 1];
        else if (strcmp(argv[i], "--weaken") == 0) {
            if (parse_weaken(argv[i + 1], &spec.weaken) < 0)
                return 2;
        }
        else {
            fprintf(stderr, "cbrun: unknown create option %s\n", argv[i]);
            return 2;
        }
    }
    struct cb_error *err = NULL;
    if (cb_template_ensure_host(rt, &err) < 0)
        return fail(err, "host template");
    struct cb_sandbox *sb;
    if (tier->create(rt, &spec, &sb, &err) < 0)
        return fail(err, "create");
    tier->release(sb);
    return 0;
}

static int copy_fd(int from, int to)
{
    char buf[65536];
    ssize_t n = read(from, buf, sizeof buf);
    if (n <= 0)
        return -1;
    return cb_write_all(to, buf, (size_t)n) < 0 ? -1 : 0;
}

static int send_spawn(int s, uint32_t uid, const char *cwd, char **argv)
{
    struct cb_builder b;
    cb_builder_init(&b, CB_MSG_SPAWN, 2);
    for (char **a = argv; *a; a++)
        cb_builder_str(&b, CB_F_ARGV, *a);
    cb_builder_str(&b, CB_F_ENV, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin");
    cb_builder_str(&b, CB_F_ENV, uid == 0 ? "HOME=/root" : "HOME=/home/user");
    cb_builder_str(&b, CB_F_ENV, "LANG=C.UTF-8");
    cb_builder_str(&b, CB_F_CWD, cwd ? cwd : uid == 0 ? "/root" : "/home/user");
    cb_builder_u32(&b, CB_F_UID, uid);
    cb_builder_u32(&b, CB_F_GID, uid);
    cb_builder_u32(&b, CB_F_MODE, CB_SPAWN_PIPES);
    int r = cb_builder_finish(&b);
    if (r == 0)
        r = cb_proto_send(s, &b, NULL, 0);
    cb_builder_free(&b);
    return r;
}

/* Wait for the EXIT event of pid on s; returns the shell-style status. */
static int wait_exit(int s, uint32_t pid)
{
    for (;;) {
        struct cb_frame_header h;
        uint8_t *p = NULL;
        int fds[CB_PROTO_MAX_FDS], nfds = 0;
        if (cb_proto_recv(s, &h, &p, fds, &nfds) < 0)
            return 125;
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        struct cb_field_view f;
        uint32_t got = 0, signo = 0;
        int32_t code = -1;
        if (h.type == CB_MSG_EXIT && cb_proto_find(p, h.length, CB_F_PID, &f) == 1 &&
            cb_field_u32(&f, &got) == 0 && got == pid) {
            if (cb_proto_find(p, h.length, CB_F_EXIT_CODE, &f) == 1)
                cb_field_i32(&f, &code);
            if (cb_proto_find(p, h.length, CB_F_SIGNO, &f) == 1)
                cb_field_u32(&f, &signo);
            free(p);
            return signo ? 128 + (int)signo : code < 0 ? 125 : code;
        }
        free(p);
    }
}

static int do_exec(struct cb_sandbox *sb, int argc, char **argv)
{
    uint32_t uid = 0;
    const char *cwd = NULL;
    int i = 0;
    for (; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
        if (i + 1 >= argc)
            return 2;
        if (strcmp(argv[i], "--uid") == 0)
            uid = (uint32_t)atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--cwd") == 0)
            cwd = argv[i + 1];
    }
    if (i >= argc - 1) {
        fprintf(stderr, "cbrun: exec needs -- argv\n");
        return 2;
    }
    struct cb_error *err = NULL;
    int s;
    if (tier->connect(sb, &s, &err) < 0)
        return fail(err, "connect");
    if (send_spawn(s, uid, cwd, argv + i + 1) < 0)
        return fail(NULL, "send SPAWN");
    struct cb_frame_header h;
    uint8_t *p = NULL;
    int fds[CB_PROTO_MAX_FDS], nfds = 0;
    if (cb_proto_recv(s, &h, &p, fds, &nfds) < 0)
        return fail(NULL, "SPAWN reply");
    struct cb_field_view f;
    uint32_t pid = 0;
    if (h.type != CB_MSG_SPAWNED || nfds != 3 || cb_proto_find(p, h.length, CB_F_PID, &f) != 1 ||
        cb_field_u32(&f, &pid) < 0) {
        if (h.type == CB_MSG_ERROR && cb_proto_find(p, h.length, CB_F_MESSAGE, &f) == 1)
            fprintf(stderr, "cbrun: spawn: %.*s\n", (int)f.len, (const char *)f.value);
        return 125;
    }
    free(p);
    close(fds[0]); /* no stdin */
    struct pollfd pf[2] = {{.fd = fds[1], .events = POLLIN}, {.fd = fds[2], .events = POLLIN}};
    int open_streams = 2;
    while (open_streams > 0) {
        if (poll(pf, 2, -1) < 0)
            continue;
        for (int k = 0; k < 2; k++)
            if (pf[k].fd >= 0 && pf[k].revents && copy_fd(pf[k].fd, k + 1) < 0) {
                close(pf[k].fd);
                pf[k].fd = -1;
                open_streams--;
            }
    }
    int status = wait_exit(s, pid);
    close(s);
    return status;
}

static int do_stats(struct cb_sandbox *sb)
{
    struct cb_sandbox_stats st;
    struct cb_error *err = NULL;
    if (tier->stats(sb, &st, &err) < 0)
        return fail(err, "stats");
    printf("{\"cpu_ns\": %llu, \"memory_bytes\": %llu, \"memory_peak_bytes\": %llu, "
           "\"disk_bytes\": %llu, \"pids\": %u, \"oom_kills\": %llu, \"state\": %d}\n",
           (unsigned long long)st.cpu_ns, (unsigned long long)st.memory_bytes,
           (unsigned long long)st.memory_peak_bytes, (unsigned long long)st.disk_bytes,
           st.pids, (unsigned long long)st.oom_kills, (int)tier->state(sb));
    return 0;
}

static int run_command(struct cb_runtime *rt, const char *cmd, const char *id, int argc,
                       char **argv)
{
    if (strcmp(cmd, "create") == 0)
        return do_create(rt, id, argc, argv);
    if (strcmp(cmd, "info") == 0) { /* cbrun --state DIR info - */
        const char *reason = NULL;
        bool q = cb_runtime_disk_quota(rt, &reason);
        printf("{\"cgroup\": \"%s\", \"disk_quota\": %s, \"reason\": \"%s\"}\n",
               cb_runtime_cgroup_version(rt), q ? "true" : "false", reason ? reason : "");
        return 0;
    }
    struct cb_error *err = NULL;
    struct cb_sandbox *sb;
    if (tier->adopt(rt, id, &sb, &err) < 0)
        return fail(err, "adopt");
    int r = 0;
    if (strcmp(cmd, "start") == 0)
        r = tier->start(sb, &err);
    else if (strcmp(cmd, "pause") == 0)
        r = tier->pause(sb, &err);
    else if (strcmp(cmd, "resume") == 0)
        r = tier->resume(sb, &err);
    else if (strcmp(cmd, "stop") == 0)
        r = tier->stop(sb, &err);
    else if (strcmp(cmd, "destroy") == 0)
        r = tier->destroy(sb, &err);
    else if (strcmp(cmd, "exec") == 0)
        r = do_exec(sb, argc, argv);
    else if (strcmp(cmd, "stats") == 0)
        r = do_stats(sb);
    else if (strcmp(cmd, "pid") == 0) {
        int pidfd = tier->init_pidfd(sb);
        if (pidfd < 0)
            r = fail(NULL, "not running");
        else {
            char path[64], line[256];
            snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
            FILE *f = fopen(path, "re");
            while (f && fgets(line, sizeof line, f))
                if (strncmp(line, "Pid:", 4) == 0)
                    printf("%d\n", atoi(line + 4));
            if (f)
                fclose(f);
        }
    } else {
        fprintf(stderr, "cbrun: unknown command %s\n", cmd);
        r = 2;
    }
    if (r < 0)
        r = fail(err, cmd);
    tier->release(sb);
    return r;
}

int main(int argc, char **argv)
{
    /* allow_weaken: this test driver is the one place --weaken is honoured */
    struct cb_runtime_config cfg = {.allow_weaken = true};
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--no-quota") == 0)
            cfg.no_disk_quota = true;
        else if (i + 1 < argc && strcmp(argv[i], "--state") == 0)
            cfg.state_dir = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--init") == 0)
            cfg.init_path = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--cgroup-parent") == 0)
            cfg.cgroup_parent = argv[++i];
        else
            break;
    }
    if (!cfg.state_dir || argc - i < 2) {
        fprintf(stderr, "usage: cbrun --state DIR [--init PATH] COMMAND ID [args]\n");
        return 2;
    }
    if (!cfg.init_path)
        cfg.init_path = getenv("CB_INIT") ? getenv("CB_INIT") : "build/cellbox-init";
    tier = cb_tier_lookup("container");
    struct cb_runtime *rt;
    struct cb_error *err = NULL;
    if (cb_runtime_open(&cfg, &rt, &err) < 0)
        return fail(err, "runtime");
    int r = run_command(rt, argv[i], argv[i + 1], argc - i - 2, argv + i + 2);
    cb_runtime_free(rt);
    return r;
}
