/* spawn.c — fork and exec one process for a SPAWN request.
 *
 * The child runs a fixed, ordered list of steps between fork and exec. Any
 * failure is written as {errno, step} to a close-on-exec pipe and the child
 * _exits; the parent reads that pipe until EOF, so EOF without data means
 * exec succeeded and only then is SPAWNED sent. This gives the daemon
 * "exec python4: No such file or directory" instead of a process that exits
 * 127 a moment later (nsjail does the same).
 *
 * The parent blocks on that pipe while the child sets itself up. This is a
 * few hundred microseconds of code that init itself runs (the child is
 * still init's code until execve); keeping it synchronous means there is no
 * window in which the process exists but its record does not. */
#include "init.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>

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
};

struct spawn_report {
    int32_t err;
    int32_t step;
};

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* Fds the child needs, moved above 2 before stdio is set up. */
struct child_fds {
    int in, out, err; /* become 0, 1, 2 */
    int report;       /* becomes 3 */
};

static _Noreturn void child_fail(int report_fd, enum spawn_step step)
{
    struct spawn_report r = {.err = errno ? errno : EINVAL, .step = (int32_t)step};
    (void)!write(report_fd, &r, sizeof r);
    _exit(127);
}

/* Init blocks and ignores signals for its own loop; the child must start
 * with the defaults a program expects (SIGPIPE ignored would, for example,
 * make `yes | head` spin forever). */
static void child_reset_signals(void)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL); /* fails harmlessly for SIGKILL/SIGSTOP/reserved */
}

static const char *env_path(char *const *env)
{
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], "PATH=", 5) == 0)
            return env[i] + 5;
    return DEFAULT_PATH;
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
        execve(file, argv, env);
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
            execve(path, argv, env);
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

/* Move an fd to >= 10 so the dup2s onto 0..3 cannot clobber a source. */
static int move_high(int fd)
{
    if (fd < 0)
        return fd;
    return fcntl(fd, F_DUPFD_CLOEXEC, 10);
}

static void child_stdio(const struct child_fds *in)
{
    struct child_fds f = {move_high(in->in), move_high(in->out),
                          move_high(in->err), move_high(in->report)};
    if (f.report < 0)
        _exit(127);
    if (f.in < 0 || f.out < 0 || f.err < 0)
        child_fail(f.report, STEP_STDIO);
    if (dup2(f.in, 0) < 0 || dup2(f.out, 1) < 0 || dup2(f.err, 2) < 0 ||
        dup3(f.report, 3, O_CLOEXEC) < 0)
        child_fail(f.report, STEP_STDIO);
    /* Nothing of init's may leak into the sandbox's process: not the
     * control socket (that would hand the process init's API), not other
     * processes' pipes or pty masters. close_range is not wrapped by musl
     * 1.2.3, hence syscall(). */
    if (syscall(SYS_close_range, 4u, ~0u, 0u) < 0) {
        if (errno != ENOSYS)
            child_fail(3, STEP_CLOSE_FDS);
        for (int fd = 4; fd < 65536; fd++)
            close(fd);
    }
}

/* Drop to the requested identity. setgroups first (it needs the privilege
 * that setuid gives up); if the user namespace denies setgroups (the
 * runtime wrote "deny" to /proc/self/setgroups), continuing is safe only
 * when init carries no supplementary groups to begin with. */
static void child_identity(uint32_t uid, uint32_t gid)
{
    if (uid == 0 && gid == 0)
        return;
    gid_t g = (gid_t)gid;
    if (setgroups(1, &g) < 0 && !(errno == EPERM && getgroups(0, NULL) == 0))
        child_fail(3, STEP_SETGROUPS);
    if (setgid(g) < 0)
        child_fail(3, STEP_SETGID);
    if (setuid((uid_t)uid) < 0)
        child_fail(3, STEP_SETUID);
}

static _Noreturn void child_main(const struct spawn_request *req,
                                 const struct child_fds *fds, int pty_slave)
{
    child_reset_signals();
    if (req->mode == CB_SPAWN_PTY) {
        /* A session leader whose controlling tty is the pty: job control,
         * ^C and SIGWINCH reach the foreground group as in a terminal. */
        if (setsid() < 0)
            child_fail(fds->report, STEP_SETSID);
        if (ioctl(pty_slave, TIOCSCTTY, 0) < 0)
            child_fail(fds->report, STEP_CTTY);
    } else if (setpgid(0, 0) < 0) {
        /* Its own process group, so SIGNAL TREE and TIMEOUT_MS can reach
         * everything it starts with one kill(-pgid) and nothing else. */
        child_fail(fds->report, STEP_SETPGID);
    }
    child_stdio(fds);
    child_identity(req->uid, req->gid);
    if (chdir(req->cwd ? req->cwd : "/") < 0)
        child_fail(3, STEP_CHDIR);
    child_exec(req->argv, req->env);
    child_fail(3, STEP_EXEC);
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

/* Wait for the child's report: 0 when exec succeeded (EOF), else -errno. */
static int read_report(pid_t pid, int fd, const struct spawn_request *req,
                       char **msg)
{
    struct spawn_report r;
    ssize_t n = CB_RETRY(read(fd, &r, sizeof r));
    if (n == 0)
        return 0;
    if (n != (ssize_t)sizeof r)
        r = (struct spawn_report){.err = n < 0 ? errno : EIO, .step = 0};
    /* The child is ours and has exited or is about to: reap it here so the
     * SIGCHLD loop never sees a pid without a record. */
    CB_RETRY(waitpid(pid, NULL, 0));
    *msg = report_message(req, &r);
    return -(r.err > 0 ? r.err : EIO);
}

int spawn_process(const struct spawn_request *req, struct spawn_result *res,
                  char **msg)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, errp[2] = {-1, -1};
    int rep[2] = {-1, -1};
    int master = -1, slave = -1;
    int r;
    *res = (struct spawn_result){-1, -1, -1, -1, -1};
    if (req->mode == CB_SPAWN_PTY)
        r = open_pty(req, &master, &slave);
    else
        r = make_pipes(req->mode, in, out, errp);
    if (r == 0 && pipe2(rep, O_CLOEXEC) < 0)
        r = -errno;
    if (r < 0) {
        *msg = cb_xasprintf("%s: %s", req->mode == CB_SPAWN_PTY ? "open pty" : "pipe",
                            strerror(-r));
        goto fail;
    }
    pid_t pid = fork();
    if (pid < 0) {
        r = -errno;
        *msg = cb_xasprintf("fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        struct child_fds f = {in[0], out[1], errp[1], rep[1]};
        if (req->mode == CB_SPAWN_PTY)
            f = (struct child_fds){slave, slave, slave, rep[1]};
        child_main(req, &f, slave);
    }
    /* Close the child's ends so EOF on the report pipe (and on output
     * pipes later) means what it should. */
    close(rep[1]);
    rep[1] = -1;
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
    r = read_report(pid, rep[0], req, msg);
    if (r < 0)
        goto fail;
    close(rep[0]);
    *res = (struct spawn_result){pid, in[1], out[0], errp[0], master};
    return 0;
fail:
    close_pair(in);
    close_pair(out);
    close_pair(errp);
    close_pair(rep);
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
