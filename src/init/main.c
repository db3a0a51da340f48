/* main.c — cellbox-init: PID 1 of every sandbox.
 *
 *   cellbox-init --control-fd N   fd N: bound, listening AF_UNIX stream
 *                                 socket from the runtime (production)
 *   cellbox-init --listen PATH    bind and listen itself (tests)
 *   --allow-local-peers           accept connections from inside the
 *                                 sandbox's pid namespace (see conn.c)
 *
 * Hardening, in order, before the first connection is accepted:
 *  1. PR_SET_DUMPABLE 0. Init holds the control socket, every pty master
 *     and every process's stdin/output; a sandbox process running as the
 *     same uid must not ptrace it, read /proc/1/mem or steal its fds via
 *     /proc/1/fd or pidfd_getfd (all gated on dumpability for non-owners of
 *     CAP_SYS_PTRACE). execve() resets dumpability, so spawned programs
 *     behave normally. Root inside the sandbox keeps CAP_SYS_PTRACE over
 *     its own user namespace unless the runtime drops it from the bounding
 *     set and seccomp denies ptrace: that is the runtime's layer.
 *  2. PR_SET_CHILD_SUBREAPER, so orphans are reaped even when init is not
 *     PID 1 (tests); as PID 1 the kernel re-parents them to us anyway.
 *  3. Signals: SIGCHLD, SIGTERM, SIGINT, SIGHUP are blocked and read from a
 *     signalfd in the loop; SIGPIPE is ignored (a vanished peer or reader is
 *     an EPIPE, not init's death). As PID 1, the kernel only delivers
 *     signals that have a handler, so sandbox code cannot kill init; the
 *     runtime stops a sandbox with SIGKILL from outside. SIGTERM/SIGINT
 *     from outside are forwarded to every process of the sandbox and init
 *     stays up, so the runtime can still collect exit statuses; when init
 *     is not PID 1 (tests), it forwards to the groups it created and exits.
 *     SIGHUP is ignored. */
#include "init.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

uint64_t init_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void init_watch_set(struct init_state *st, struct watch *w, uint32_t events)
{
    if (w->fd < 0 || w->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    int op = events == 0 ? EPOLL_CTL_DEL : w->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (epoll_ctl(st->epfd, op, w->fd, &ev) == 0 || op == EPOLL_CTL_DEL)
        w->events = events;
}

void init_watch_close(struct init_state *st, struct watch *w)
{
    if (w->fd < 0)
        return;
    init_watch_set(st, w, 0);
    close(w->fd);
    w->fd = -1;
}

static int listen_path(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 64) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int adopt_control_fd(const char *arg)
{
    char *end;
    long fd = strtol(arg, &end, 10);
    if (*end || fd < 0 || fd > 65535) {
        errno = EBADF;
        return -1;
    }
    /* The runtime's fd must not leak into spawned processes (close_range
     * covers that too; CLOEXEC is the second lock) and must never block
     * the loop. */
    if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0 ||
        fcntl((int)fd, F_SETFL, fcntl((int)fd, F_GETFL) | O_NONBLOCK) < 0)
        return -1;
    return (int)fd;
}

static int parse_args(struct init_state *st, int argc, char **argv)
{
    st->listen_fd = -1;
    bool control = false;
    st->require_foreign_peer = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--control-fd") == 0 && i + 1 < argc) {
            st->listen_fd = adopt_control_fd(argv[++i]);
            control = true;
        } else if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            st->listen_fd = listen_path(argv[++i]);
        } else if (strcmp(argv[i], "--allow-local-peers") == 0) {
            st->require_foreign_peer = false;
        } else {
            fprintf(stderr, "usage: cellbox-init (--control-fd N | --listen PATH)"
                            " [--allow-local-peers]\n");
            return -1;
        }
        if (st->listen_fd < 0) {
            fprintf(stderr, "cellbox-init: %s: %s\n", argv[i], strerror(errno));
            return -1;
        }
    }
    if (st->listen_fd < 0) {
        fprintf(stderr, "cellbox-init: --control-fd or --listen is required\n");
        return -1;
    }
    /* Test mode (--listen) has its peers in the same namespace by design;
     * the peer check protects the production control socket. */
    if (!control || !st->is_pid1)
        st->require_foreign_peer = false;
    return 0;
}

static int setup_signals(struct init_state *st)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    signal(SIGPIPE, SIG_IGN);
    st->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return st->signal_fd < 0 ? -1 : 0;
}

static int setup(struct init_state *st)
{
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0 && !st->is_pid1)
        return -1;
    if (!st->is_pid1) {
        /* Tests: when the test process that started us dies, shut down
         * and take our process groups with us instead of lingering. */
        prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
    }
    if (setup_signals(st) < 0)
        return -1;
    /* After the signal setup: the spawner records which dispositions the
     * children must reset. */
    if (spawn_prepare() < 0)
        return -1;
    /* The first exec should cost what every later one does: the reply
     * buffer it needs is faulted in now, while nobody waits. (Pre-making
     * the process record as well was tried: it moved musl's group churn
     * into the steady state, an mmap+munmap on every exec; not worth it.) */
    conn_prepare();
    st->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (st->epfd < 0)
        return -1;
    st->listen_w = (struct watch){.kind = WATCH_LISTEN, .fd = st->listen_fd};
    st->signal_w = (struct watch){.kind = WATCH_SIGNAL, .fd = st->signal_fd};
    init_watch_set(st, &st->listen_w, EPOLLIN);
    init_watch_set(st, &st->signal_w, EPOLLIN);
    return (st->listen_w.events && st->signal_w.events) ? 0 : -1;
}

/* Signals arrive through the signalfd; several at once are read in one
 * call. A short read means the queue was empty (a signal that comes later
 * makes the fd readable again), which spares the read that would answer
 * EAGAIN. */
#define SIGINFO_BATCH 8

static bool on_signal(struct init_state *st, int sig)
{
    if (sig == SIGCHLD || sig == SIGHUP)
        return true;
    if (st->is_pid1) {
        kill(-1, sig);
        return true;
    }
    proc_kill_known_groups(st, SIGKILL);
    return false;
}

/* Returns false when init should exit (only ever when not PID 1). */
static bool on_signals(struct init_state *st)
{
    struct signalfd_siginfo si[SIGINFO_BATCH];
    bool keep_running = true;
    ssize_t n;
    do {
        n = read(st->signal_fd, si, sizeof si);
        for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof si[0]; i++)
            keep_running &= on_signal(st, (int)si[i].ssi_signo);
    } while (n == (ssize_t)sizeof si || (n < 0 && errno == EINTR));
    proc_reap(st);
    return keep_running;
}

static void dispatch(struct init_state *st, struct watch *w, uint32_t events)
{
    switch (w->kind) {
    case WATCH_LISTEN: conn_accept(st); break;
    case WATCH_SIGNAL: break; /* handled by the caller */
    case WATCH_CONN: conn_on_event(st, w->owner, events); break;
    case WATCH_OUT:
    case WATCH_PTY: proc_on_output(st, w, events); break;
    case WATCH_STDIN: proc_on_stdin(st, w, events); break;
    case WATCH_HELD: held_on_event(st, w, events); break;
    }
}

static void free_graveyard(struct init_state *st)
{
    while (st->dead_conns) {
        struct conn *c = st->dead_conns;
        st->dead_conns = c->next;
        conn_free(c);
    }
    while (st->dead_procs) {
        struct proc *p = st->dead_procs;
        st->dead_procs = p->next;
        proc_free(p);
    }
    held_free_dead(st);
}

static int run(struct init_state *st)
{
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(st->epfd, evs, (int)CB_ARRAY_SIZE(evs),
                           proc_next_timeout_ms(st));
        if (n < 0 && errno != EINTR)
            return 1;
        for (int i = 0; i < n; i++) {
            struct watch *w = evs[i].data.ptr;
            if (w->kind == WATCH_SIGNAL) {
                if (!on_signals(st))
                    return 0;
                continue;
            }
            if (w->fd >= 0)
                dispatch(st, w, evs[i].events);
        }
        proc_expire_timeouts(st);
        conn_service_all(st);
        proc_service_all(st);
        conn_service_all(st); /* ENDs queued by PTY eviction */
        free_graveyard(st);
    }
}

/* --probe-time-ns (the runtime, once, on the host: cb_ns_probe_time_ns):
 * exit 0 when this process is in the time namespace its children get, 1
 * when exec left it in its old one, 2 when that cannot be read. */
static int probe_time_ns(void)
{
    struct stat now, children;
    if (stat("/proc/self/ns/time", &now) < 0 ||
        stat("/proc/self/ns/time_for_children", &children) < 0)
        return 2;
    return now.st_ino == children.st_ino && now.st_dev == children.st_dev ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--probe-time-ns") == 0)
        return probe_time_ns();
    static struct init_state st;
    st.is_pid1 = getpid() == 1;
    if (parse_args(&st, argc, argv) < 0)
        return 2;
    if (setup(&st) < 0) {
        fprintf(stderr, "cellbox-init: setup: %s\n", strerror(errno));
        return 1;
    }
    return run(&st);
}
