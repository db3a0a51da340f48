/* blocks — the building blocks of a sandbox start, and nothing else, timed
 * on this host: what issue 2's cold-start target was set against ("a full
 * namespace sandbox with overlay, pivot_root, /proc, seccomp and a tiny
 * init: 0.41 ms p50, 0.83 ms with a fresh network namespace", measured on
 * the build machine when the issue was written).
 *
 * One sample (its fresh upper and work directories made before the clock
 * starts, so the figure is the kernel's part alone): clone a child into new
 * user, mount, pid, ipc and uts namespaces (and a new network namespace in
 * the second series), write its uid/gid maps, let it become the namespace's
 * root and mount an overlay (volatile and with user xattrs, as cellbox's;
 * a small lower layer made once, owned by the mapped root), bind the host's
 * /usr read-only, mount /proc, pivot_root and detach the old root, set
 * no_new_privs, load cellbox's own seccomp program, and exec a program
 * without libc that exits at once; the sample ends when the parent has
 * reaped it. No cgroup, no /dev, no masks, no control socket, no state:
 * everything cellbox adds to this is the difference.
 *
 * bench_runtime runs it in the same run as its own cold starts, on the
 * same file system, and prints the ratio. Alone:
 *     blocks DIR NOOP [N]
 * DIR: an empty directory (mode 0711 or wider along its path: the child
 * runs as an unprivileged host uid); NOOP: build/bench/noop. Prints
 * "blocks p50_ms=... p99_ms=... newnet_p50_ms=... newnet_p99_ms=...".
 * Root only. */
#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rootfs.h"
#include "seccomp_bpf.h"
#include "util.h"

/* Host ids of the probe's root and the 65,535 after it: far above the
 * ranges cellbox hands to sandboxes (idmap.h), so nothing here can own a
 * sandbox's files. */
#define BLOCKS_ID_BASE 4000000000u

struct sample {
    const char *merged, *lower, *upper, *work;
    struct sock_fprog prog;
    int sync[2];
    char err[96];
};

static char stack_mem[256 << 10] __attribute__((aligned(16)));

/* The child: everything between the clone and the exec. It shares our
 * memory (CLONE_VM) until the exec, so it only makes system calls and
 * writes its failure into s->err. */
static int child_main(void *arg)
{
    struct sample *s = arg;
    char go, opts[1024], path[512];
    close(s->sync[1]);
    if (read(s->sync[0], &go, 1) != 1)
        _exit(120);
    /* Until now the child's ids are the host's root, unmapped here. */
    const char *step = "become the namespace's root";
    if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
        goto fail;
    step = "mount / private";
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        goto fail;
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s,userxattr,volatile", s->lower,
             s->upper, s->work);
    step = "overlay";
    if (mount("overlay", s->merged, "overlay", 0, opts) < 0)
        goto fail;
    snprintf(path, sizeof path, "%s/usr", s->merged);
    step = "bind /usr";
    if (mount("/usr", path, NULL, MS_BIND | MS_REC, NULL) < 0 ||
        mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV,
              NULL) < 0)
        goto fail;
    snprintf(path, sizeof path, "%s/proc", s->merged);
    step = "proc";
    if (mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        goto fail;
    step = "pivot_root";
    if (chdir(s->merged) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
        umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
        goto fail;
    step = "seccomp";
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &s->prog) < 0)
        goto fail;
    char *argv[] = {"/noop", NULL}, *envp[] = {NULL};
    execve("/noop", argv, envp);
    step = "exec";
fail:
    snprintf(s->err, sizeof s->err, "%s: %s", step, strerror(errno));
    _exit(121);
}

static int write_file(pid_t pid, const char *name, const char *text)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : write(fd, text, strlen(text));
    if (fd >= 0)
        close(fd);
    return n == (ssize_t)strlen(text) ? 0 : -1;
}

static int mkdir_owned(const char *path)
{
    return mkdir(path, 0755) < 0 || chown(path, BLOCKS_ID_BASE, BLOCKS_ID_BASE) < 0 ? -1 : 0;
}

/* One start of the building blocks in dir/s<i>; its time in ns, 0 on
 * failure (said on stderr). */
static uint64_t one(const char *dir, const char *lower, struct sock_fprog prog, int i,
                    bool newnet)
{
    char base[512], upper[560], work[560], merged[560];
    snprintf(base, sizeof base, "%s/s%d", dir, i);
    snprintf(upper, sizeof upper, "%s/upper", base);
    snprintf(work, sizeof work, "%s/work", base);
    snprintf(merged, sizeof merged, "%s/merged", base);
    struct sample s = {.merged = merged, .lower = lower, .upper = upper, .work = work,
                       .prog = prog};
    if (mkdir(base, 0711) < 0 || mkdir_owned(upper) < 0 || mkdir_owned(work) < 0 ||
        mkdir_owned(merged) < 0 || pipe2(s.sync, O_CLOEXEC) < 0) {
        perror("blocks: sample directories");
        return 0;
    }
    uint64_t t0 = cb_now_ns(), t = 0;
    int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
                CLONE_VM | SIGCHLD | (newnet ? CLONE_NEWNET : 0);
    pid_t pid = clone(child_main, stack_mem + sizeof stack_mem, flags, &s);
    close(s.sync[0]);
    char map[64];
    snprintf(map, sizeof map, "0 %u 65536\n", BLOCKS_ID_BASE);
    bool mapped = pid > 0 && write_file(pid, "uid_map", map) == 0 &&
                  write_file(pid, "setgroups", "deny") == 0 &&
                  write_file(pid, "gid_map", map) == 0;
    if (pid > 0 && mapped && write(s.sync[1], "g", 1) != 1)
        mapped = false;
    close(s.sync[1]); /* an unmapped child reads EOF and exits */
    int status = -1;
    if (pid > 0)
        while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR)
            ;
    if (pid > 0 && mapped && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        t = cb_now_ns() - t0;
    else
        fprintf(stderr, "blocks: sample %d: %s\n", i,
                pid < 0 ? strerror(errno) : !mapped ? "uid map" : s.err[0] ? s.err : "exit");
    cb_rootfs_remove_tree(base);
    return t;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_u64);
    return v[(int)(p * (n - 1) + 0.5)] / 1e6;
}

/* The lower layer, made once: the mount points and the program. */
static int make_lower(const char *lower, const char *noop)
{
    char path[600];
    static const char *const dirs[] = {"", "/usr", "/proc", "/tmp"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(path, sizeof path, "%s%s", lower, dirs[i]);
        if (mkdir_owned(path) < 0)
            return -1;
    }
    snprintf(path, sizeof path, "%s/noop", lower);
    int in = open(noop, O_RDONLY | O_CLOEXEC);
    int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    char buf[16384];
    ssize_t n;
    int r = in >= 0 && out >= 0 ? 0 : -1;
    while (r == 0 && (n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t)n) != n)
            r = -1;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) < 0)
        r = -1;
    return r < 0 || chown(path, BLOCKS_ID_BASE, BLOCKS_ID_BASE) < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    int n = argc > 3 ? atoi(argv[3]) : 30;
    if (argc < 3 || argc > 4 || n < 1 || n > 10000) {
        fprintf(stderr, "usage: blocks DIR NOOP [N=30]\n");
        return 2;
    }
    char lower[512];
    snprintf(lower, sizeof lower, "%s/lower", argv[1]);
    struct cb_seccomp_program prog = {0};
    struct cb_error *err = NULL;
    if (cb_seccomp_compile(&prog, &err) < 0) {
        fprintf(stderr, "blocks: seccomp: %s\n", err->message);
        return 1;
    }
    if (make_lower(lower, argv[2]) < 0) {
        fprintf(stderr, "blocks: lower layer in %s: %s\n", argv[1], strerror(errno));
        cb_rootfs_remove_tree(lower);
        cb_seccomp_program_clear(&prog);
        return 1;
    }
    struct sock_fprog fprog = {.len = prog.len, .filter = prog.insns};
    uint64_t *plain = calloc((size_t)n, sizeof *plain), *net = calloc((size_t)n, sizeof *net);
    int status = 0;
    /* Alternating, so that both series see the same moments of the host. */
    for (int i = 0; i < n && status == 0; i++)
        if (!(plain[i] = one(argv[1], lower, fprog, 2 * i, false)) ||
            !(net[i] = one(argv[1], lower, fprog, 2 * i + 1, true)))
            status = 1;
    if (status == 0)
        printf("blocks p50_ms=%.3f p99_ms=%.3f newnet_p50_ms=%.3f newnet_p99_ms=%.3f\n",
               pct(plain, n, 0.5), pct(plain, n, 0.99), pct(net, n, 0.5), pct(net, n, 0.99));
    cb_rootfs_remove_tree(lower);
    cb_seccomp_program_clear(&prog);
    free(plain);
    free(net);
    return status;
}
