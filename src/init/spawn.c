/* spawn.c — start one process for a SPAWN request.
 *
 * The child runs a fixed, ordered list of steps between clone and exec. Any
 * failure is recorded as {errno, step} and the child _exits; init answers
 * ERROR with "exec python4: No such file or directory" instead of SPAWNED
 * for a process that exits 127 a moment later (nsjail does the same).
 *
 * The child is made with clone(CLONE_VM | CLONE_VFORK), as posix_spawn()
 * does, not fork(): init is suspended until the child has exec'd or
 * exited, and the child runs on a stack of its own inside init's memory.
 * fork() copied init's page tables and then both sides took a copy-on-write
 * fault for every page either touched, on every exec; here nothing is
 * copied. Because the child shares init's memory it must not allocate, take
 * locks, or call libc wrappers that act on all threads (musl's setuid() &
 * co. do): the identity steps are raw syscalls, which is also what a
 * single-threaded child needs. Its error report goes through memory (the
 * struct it shares with init) rather than a pipe, which saves the pipe and
 * a wake-up: when clone() returns in init, the child has either exec'd
 * (report untouched) or written the report and exited.
 *
 * Security of the shared window: until execve the child runs init's code
 * on init's memory with init's credentials, as a fork child did; what is
 * new is that poking the child's memory would now change init's. Init is
 * non-dumpable (main.c) and dumpability belongs to the memory, so the child
 * is non-dumpable too: a sandbox process can attach to it only with
 * CAP_SYS_PTRACE over init's user namespace, which would let it attach to
 * init itself just as well. Init stays inside the sandbox's trust boundary
 * either way (the daemon treats its messages as hostile).
 *
 * Init blocks on the child while it sets itself up. This is a few tens of
 * microseconds of code that init itself runs (the child is still init's
 * code until execve); keeping it synchronous means there is no window in
 * which the process exists but its record does not. */
#include "init.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

enum spawn_step {
    STEP_SETSID = 1,
    STEP_SETPGID,
    STEP_CTTY,
    STEP_STDIO,
    STEP_CLOSE_FDS,
    STEP_SETGROUPS,
    STEP_SETGID,
    STEP_SETUID,
    STEP_CHDIR,
    STEP_EXEC,
    STEP_OOM_SCORE,
};

/* What the child leaves in the memory it shares with init. */
struct spawn_report {
    int err;
    int step; /* 0: exec succeeded (or the child was killed before it) */
};

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Everything the child reads, and the report it writes. */
struct spawn_child {
    const struct spawn_request *req;
    int in, out, err; /* become 0, 1, 2 */
    int pty_slave;    /* -1 unless PTY mode */
    struct spawn_report report;
};

/* Prepared once at init start (spawn_prepare) so that not even the first
 * exec pays for it: the child's stack, already faulted in, and the set of
 * signals whose disposition is not SIG_DFL in init. */
#define CHILD_STACK_SIZE (64u << 10)
#define CHILD_STACK_PREFAULT (8u << 10) /* steps + exec use ~6 KiB (PATH_MAX buffer) */
#define KERNEL_SIGSET_BYTES 8            /* x86-64 rt_sigaction / rt_sigprocmask */

static struct {
    uint8_t *stack_top;
    uint64_t not_default; /* bit sig-1: disposition other than SIG_DFL */
    bool reset_oom;       /* init is exempt from the OOM killer, its children not */
    bool ready;
} spawner;

/* The kernel's struct sigaction (not libc's, whose mask is 128 bytes). */
struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

static _Noreturn void child_fail(struct spawn_child *c, enum spawn_step step)
{
    c->report = (struct spawn_report){.err = errno ? errno : EINVAL, .step = (int)step};
    _exit(127);
}

/* The child must start with the signal state a program expects: init
 * blocks SIGCHLD & co. for its signalfd and ignores SIGPIPE (inherited
 * ignored, `yes | head` would spin forever). Caught signals are reset by
 * execve itself, ignored ones are not, so every disposition that is not
 * the default is reset here; spawn_prepare found which (a handful, not all
 * 64: each is a syscall that the sandbox's seccomp filter inspects). The
 * mask comes last: init blocked everything before clone so that nothing
 * could run a handler on the shared memory in between. */
static void child_reset_signals(void)
{
    struct kernel_sigaction dfl = {.handler = SIG_DFL};
    for (int sig = 1; sig <= 64; sig++)
        if (spawner.not_default & (1ull << (sig - 1)))
            syscall(SYS_rt_sigaction, sig, &dfl, NULL, KERNEL_SIGSET_BYTES);
    uint64_t none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, KERNEL_SIGSET_BYTES);
}

static const char *env_path(char *const *env)
{
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], "PATH=", 5) == 0)
            return env[i] + 5;
    return DEFAULT_PATH;
}

/* execve, retried while the file is busy for writing (ETXTBSY): 10 more
 * tries over ~55 ms, init waiting meanwhile (vfork semantics). A script
 * just written through the files API can still be open for writing for a
 * moment in a process the daemon was cloning at that instant (another
 * sandbox starting: its first act is to close what it copied, but on a
 * loaded host it may wait milliseconds to be scheduled). A file a process
 * really keeps open for writing still fails, later. */
static void exec_file(const char *path, char *const *argv, char *const *env)
{
    for (int attempt = 0;; attempt++) {
        execve(path, argv, env);
        if (errno != ETXTBSY || attempt >= 10)
            return;
        struct timespec ts = {0, (long)(attempt + 1) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* execvpe() looks PATH up in init's own environment; the spec wants the
 * PATH of the environment given in the request, so search here. Returns
 * only on failure with errno set the way execvp would report it. */
static void child_exec(char *const *argv, char *const *env)
{
    const char *file = argv[0];
    if (file[0] == '\0') {
        errno = ENOENT;
        return;
    }
    if (strchr(file, '/')) {
        exec_file(file, argv, env);
        return;
    }
    size_t flen = strlen(file);
    if (flen > NAME_MAX) {
        errno = ENAMETOOLONG;
        return;
    }
    bool seen_eacces = false;
    const char *p = env_path(env);
    for (;;) {
        const char *end = strchrnul(p, ':');
        size_t dlen = (size_t)(end - p);
        char path[PATH_MAX];
        if (dlen + 1 + flen < sizeof path) {
            memcpy(path, p, dlen);
            size_t off = dlen;
            if (dlen == 0)
                path[off++] = '.'; /* empty PATH entry means cwd (POSIX) */
            path[off++] = '/';
            memcpy(path + off, file, flen + 1);
            exec_file(path, argv, env);
            if (errno == EACCES)
                seen_eacces = true;
            else if (errno != ENOENT && errno != ENOTDIR)
                return; /* a real error for an existing file: report it */
        }
        if (*end == '\0')
            break;
        p = end + 1;
    }
    errno = seen_eacces ? EACCES : ENOENT;
}

/* Move an fd to >= 10 so the dup2s onto 0..2 cannot clobber a source.
 * Raw fcntl: musl's adds a second F_SETFD call for F_DUPFD_CLOEXEC. */
static int move_high(int fd)
{
    return (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 10);
}

static void child_stdio(struct spawn_child *c)
{
    int in = c->in, out = c->out, err = c->err;
    /* Sources are pipe/pty fds init just opened, so >= 3 whenever init's
     * own 0..2 are open; only if one is not could a dup2 below overwrite a
     * source that is still needed (or leave close-on-exec set on it). */
    if (in < 3 || out < 3 || err < 3) {
        in = move_high(in);
        out = move_high(out);
        err = move_high(err);
        if (in < 0 || out < 0 || err < 0)
            child_fail(c, STEP_STDIO);
    }
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
        child_fail(c, STEP_STDIO);
    /* Nothing of init's may leak into the sandbox's process: not the
     * control socket (that would hand the process init's API), not other
     * processes' pipes or pty masters. close_range is not wrapped by musl
     * 1.2.3, hence syscall(). */
    if (syscall(SYS_close_range, 3u, ~0u, 0u) < 0) {
        if (errno != ENOSYS)
            child_fail(c, STEP_CLOSE_FDS);
        for (int fd = 3; fd < 65536; fd++)
            close(fd);
    }
}

/* Drop to the requested identity. setgroups first (it needs the privilege
 * that setuid gives up); if the user namespace denies setgroups (the
 * runtime wrote "deny" to /proc/self/setgroups), continuing is safe only
 * when init carries no supplementary groups to begin with. Raw syscalls:
 * libc's wrappers apply the change to every thread (musl signals them all
 * and waits), which a single-threaded child sharing init's memory must
 * not do; the syscalls change this process only, which is all there is. */
static void child_identity(struct spawn_child *c)
{
    uint32_t uid = c->req->uid, gid = c->req->gid;
    if (uid == 0 && gid == 0)
        return;
    gid_t g = (gid_t)gid;
    if (syscall(SYS_setgroups, 1, &g) < 0 &&
        !(errno == EPERM && syscall(SYS_getgroups, 0, NULL) == 0))
        child_fail(c, STEP_SETGROUPS);
    if (syscall(SYS_setgid, g) < 0)
        child_fail(c, STEP_SETGID);
    if (syscall(SYS_setuid, (uid_t)uid) < 0)
        child_fail(c, STEP_SETUID);
}

/* The runtime exempted init from the OOM killer (lib/ns.c says why); its
 * processes are ordinary OOM candidates again: 0, a raise any process may
 * make. The floor stays 0 (the runtime set init's value without lowering
 * it), so nothing here can make itself exempt later. A process that would
 * stay exempt is not started. */
static void child_reset_oom(struct spawn_child *c)
{
    if (!spawner.reset_oom)
        return;
    /* Raw syscalls, as in child_identity: nothing of libc's state (its
     * cancellation and aio bookkeeping in open/close) in the child that
     * shares init's memory. */
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/oom_score_adj",
                          O_WRONLY | O_CLOEXEC);
    if (fd < 0 || syscall(SYS_write, fd, "0", 1) != 1)
        child_fail(c, STEP_OOM_SCORE);
    syscall(SYS_close, fd);
}

/* The child: runs on spawner's stack in init's memory until execve. */
static int child_main(void *arg)
{
    struct spawn_child *c = arg;
    const struct spawn_request *req = c->req;
    child_reset_signals();
    child_reset_oom(c);
    if (req->mode == CB_SPAWN_PTY) {
        /* A session leader whose controlling tty is the pty: job control,
         * ^C and SIGWINCH reach the foreground group as in a terminal. */
        if (setsid() < 0)
            child_fail(c, STEP_SETSID);
        if (ioctl(c->pty_slave, TIOCSCTTY, 0) < 0)
            child_fail(c, STEP_CTTY);
    } else if (setpgid(0, 0) < 0) {
        /* Its own process group, so SIGNAL TREE and TIMEOUT_MS can reach
         * everything it starts with one kill(-pgid) and nothing else. */
        child_fail(c, STEP_SETPGID);
    }
    child_stdio(c);
    child_identity(c);
    if (chdir(req->cwd ? req->cwd : "/") < 0)
        child_fail(c, STEP_CHDIR);
    child_exec(req->argv, req->env);
    child_fail(c, STEP_EXEC);
}

int spawn_prepare(void)
{
    if (spawner.ready)
        return 0;
    /* A guard page below the stack turns an overflow into a crash of the
     * child instead of a write into init's memory. */
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint8_t *m = mmap(NULL, CHILD_STACK_SIZE + page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (m == MAP_FAILED)
        return -errno;
    if (mprotect(m, page, PROT_NONE) < 0) {
        int e = errno;
        munmap(m, CHILD_STACK_SIZE + page);
        return -e;
    }
    spawner.stack_top = m + page + CHILD_STACK_SIZE;
    /* Fault in the part the child uses now: page faults are expensive on
     * these hosts and would otherwise land on the first exec. */
    memset(spawner.stack_top - CHILD_STACK_PREFAULT, 0, CHILD_STACK_PREFAULT);
    for (int sig = 1; sig <= 64; sig++) {
        struct kernel_sigaction old;
        if (syscall(SYS_rt_sigaction, sig, NULL, &old, KERNEL_SIGSET_BYTES) == 0 &&
            old.handler != SIG_DFL)
            spawner.not_default |= 1ull << (sig - 1);
    }
    /* Set before init ran (lib/ns.c), so read once. */
    char adj[16] = {0};
    int fd = open("/proc/self/oom_score_adj", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, adj, sizeof adj - 1) > 0)
            spawner.reset_oom = atoi(adj) < 0;
        close(fd);
    }
    spawner.ready = true;
    return 0;
}

static void close_pair(int p[2])
{
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0) {
            close(p[i]);
            p[i] = -1;
        }
}

/* Open a pty master and its slave. TIOCGPTPEER opens the slave from the
 * master without a path lookup, so a sandbox that replaced /dev/pts with
 * something else cannot hand init a different file. */
static int open_pty(const struct spawn_request *req, int *master_out,
                    int *slave_out)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return -errno;
    if (grantpt(m) < 0 || unlockpt(m) < 0) {
        int e = errno;
        close(m);
        return -e;
    }
    int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0) {
        char name[64];
        if (ptsname_r(m, name, sizeof name) != 0 ||
            (s = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
            int e = errno;
            close(m);
            return -e;
        }
    }
    struct winsize ws = {.ws_col = (unsigned short)(req->cols ? req->cols : 80),
                         .ws_row = (unsigned short)(req->rows ? req->rows : 24)};
    ioctl(m, TIOCSWINSZ, &ws);
    *master_out = m;
    *slave_out = s;
    return 0;
}

static const char *step_name(int step)
{
    static const char *const names[] = {
        [STEP_SETSID] = "setsid",       [STEP_SETPGID] = "setpgid",
        [STEP_CTTY] = "set controlling tty", [STEP_STDIO] = "set up stdio",
        [STEP_CLOSE_FDS] = "close fds", [STEP_SETGROUPS] = "setgroups",
        [STEP_SETGID] = "setgid",       [STEP_SETUID] = "setuid",
        [STEP_CHDIR] = "chdir",         [STEP_EXEC] = "exec",
        [STEP_OOM_SCORE] = "reset oom_score_adj",
    };
    if (step <= 0 || step >= (int)CB_ARRAY_SIZE(names) || !names[step])
        return "spawn";
    return names[step];
}

static char *report_message(const struct spawn_request *req,
                            const struct spawn_report *r)
{
    const char *what = step_name(r->step);
    const char *arg = "";
    if (r->step == STEP_EXEC)
        arg = req->argv[0];
    else if (r->step == STEP_CHDIR)
        arg = req->cwd ? req->cwd : "/";
    return cb_xasprintf("%s%s%s: %s", what, *arg ? " " : "", arg,
                        strerror(r->err));
}

/* Pipes for the three streams; ends init keeps are O_NONBLOCK except in
 * PIPES mode, where they go to the daemon unchanged. */
static int make_pipes(uint32_t mode, int in[2], int out[2], int errp[2])
{
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
        pipe2(errp, O_CLOEXEC) < 0)
        return -errno;
    if (mode == CB_SPAWN_BACKGROUND) {
        fcntl(in[1], F_SETFL, O_NONBLOCK);
        fcntl(out[0], F_SETFL, O_NONBLOCK);
        fcntl(errp[0], F_SETFL, O_NONBLOCK);
    }
    return 0;
}

/* The child's outcome: 0 when exec succeeded, else -errno with *msg. */
static int check_report(pid_t pid, const struct spawn_child *c, char **msg)
{
    if (c->report.step == 0)
        return 0;
    /* The child has exited: reap it here so the SIGCHLD loop never sees a
     * pid without a record. */
    CB_RETRY(waitpid(pid, NULL, 0));
    *msg = report_message(c->req, &c->report);
    return -(c->report.err > 0 ? c->report.err : EIO);
}

/* clone(CLONE_VM | CLONE_VFORK) with every signal blocked around it, so no
 * handler can run in the child while it shares init's memory and signal
 * dispositions are not yet reset (the child unblocks once they are). */
static pid_t clone_child(struct spawn_child *c)
{
    uint64_t all = ~0ull, old;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, KERNEL_SIGSET_BYTES);
    pid_t pid = clone(child_main, spawner.stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, c);
    int e = errno;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, NULL, KERNEL_SIGSET_BYTES);
    errno = e;
    return pid;
}

int spawn_process(const struct spawn_request *req, struct spawn_result *res,
                  char **msg)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    int master = -1, slave = -1;
    int r = spawn_prepare();
    *res = (struct spawn_result){-1, -1, -1, -1, -1};
    if (r < 0) {
        *msg = cb_xasprintf("child stack: %s", strerror(-r));
        return r;
    }
    if (req->mode == CB_SPAWN_PTY)
        r = open_pty(req, &master, &slave);
    else
        r = make_pipes(req->mode, in, out, errp);
    if (r < 0) {
        *msg = cb_xasprintf("%s: %s", req->mode == CB_SPAWN_PTY ? "open pty" : "pipe",
                            strerror(-r));
        goto fail;
    }
    struct spawn_child c = {.req = req, .in = in[0], .out = out[1], .err = errp[1],
                            .pty_slave = -1};
    if (req->mode == CB_SPAWN_PTY)
        c.in = c.out = c.err = c.pty_slave = slave;
    pid_t pid = clone_child(&c);
    if (pid < 0) {
        r = -errno;
        *msg = cb_xasprintf("clone: %s", strerror(errno));
        goto fail;
    }
    /* Close the child's ends so EOF on the output pipes means what it
     * should. */
    if (slave >= 0)
        close(slave);
    slave = -1;
    if (in[0] >= 0)
        close(in[0]);
    if (out[1] >= 0)
        close(out[1]);
    if (errp[1] >= 0)
        close(errp[1]);
    in[0] = out[1] = errp[1] = -1;
    r = check_report(pid, &c, msg);
    if (r < 0)
        goto fail;
    *res = (struct spawn_result){pid, in[1], out[0], errp[0], master};
    return 0;
fail:
    close_pair(in);
    close_pair(out);
    close_pair(errp);
    if (master >= 0)
        close(master);
    if (slave >= 0)
        close(slave);
    return r;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

void spawn_request_free(struct spawn_request *req)
{
    free_strv(req->argv);
    free_strv(req->env);
    free(req->cwd);
    free(req->tag);
    *req = (struct spawn_request){0};
}
