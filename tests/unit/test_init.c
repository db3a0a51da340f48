/* test_init.c — cellbox-init driven through its control socket.
 *
 * Each case starts the real static binary ($CB_BUILD/cellbox-init, default
 * build/cellbox-init) with --listen in a fresh temporary directory and
 * speaks the protocol with the blocking helpers from proto.c. Init runs in
 * its own process group with PDEATHSIG, and each case stops it with
 * SIGTERM, which makes a non-PID-1 init kill the process groups it created:
 * nothing outlives a case. Evidence comes from the host side where it can
 * (/proc for zombies and killed children), not only from init's replies. */
#include "proto.h"
#include "runner.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct initp {
    pid_t pid;
    char dir[64];
    char sock[100];
};

struct frame {
    struct cb_frame_header h;
    uint8_t *p;
    int fds[CB_PROTO_MAX_FDS];
    int nfds;
};

struct exit_ev {
    uint32_t pid;
    int32_t code;
    uint32_t signo, timed_out;
};

struct client {
    int fd;
    uint32_t next_id;
    struct exit_ev exits[512];
    int nexits;
};

static const char *init_binary(void)
{
    static char path[512];
    const char *b = getenv("CB_BUILD");
    snprintf(path, sizeof path, "%s/cellbox-init", b && *b ? b : "build");
    return path;
}

static int connect_path(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void start_init(struct initp *ip)
{
    if (access(init_binary(), X_OK) != 0)
        SKIP("%s not built", init_binary());
    snprintf(ip->dir, sizeof ip->dir, "/tmp/cb-init-test-XXXXXX");
    ASSERT(mkdtemp(ip->dir) != NULL);
    snprintf(ip->sock, sizeof ip->sock, "%.60s/init.sock", ip->dir);
    ip->pid = fork();
    ASSERT(ip->pid >= 0);
    if (ip->pid == 0) {
        setpgid(0, 0); /* out of the runner's group: init cleans up itself */
        execl(init_binary(), "cellbox-init", "--listen", ip->sock, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        int fd = connect_path(ip->sock);
        if (fd >= 0) {
            close(fd);
            return;
        }
        usleep(10000);
    }
    FAIL("init did not start listening on %s", ip->sock);
}

static void stop_init(struct initp *ip)
{
    kill(ip->pid, SIGTERM);
    int status = 0;
    ASSERT_EQ(waitpid(ip->pid, &status, 0), ip->pid);
    ASSERT(WIFEXITED(status));
    unlink(ip->sock);
    rmdir(ip->dir);
}

static void client_open(struct client *c, const struct initp *ip)
{
    memset(c, 0, sizeof *c);
    c->fd = connect_path(ip->sock);
    ASSERT(c->fd >= 0);
    c->next_id = 1;
}

static void frame_free(struct frame *f)
{
    free(f->p);
    f->p = NULL;
    for (int i = 0; i < f->nfds; i++)
        close(f->fds[i]);
    f->nfds = 0;
}

static void recv_frame(struct client *c, struct frame *f)
{
    memset(f, 0, sizeof *f);
    int r = cb_proto_recv(c->fd, &f->h, &f->p, f->fds, &f->nfds);
    if (r < 0)
        FAIL("recv: %s", strerror(-r));
}

static uint32_t fu32(const struct frame *f, uint16_t tag)
{
    struct cb_field_view v;
    uint32_t x = 0;
    if (cb_proto_find(f->p, f->h.length, tag, &v) != 1 || cb_field_u32(&v, &x) < 0)
        FAIL("frame type %u lacks u32 field %u", f->h.type, tag);
    return x;
}

static uint64_t fu64(const struct frame *f, uint16_t tag)
{
    struct cb_field_view v;
    uint64_t x = 0;
    if (cb_proto_find(f->p, f->h.length, tag, &v) != 1 || cb_field_u64(&v, &x) < 0)
        FAIL("frame type %u lacks u64 field %u", f->h.type, tag);
    return x;
}

static char *fstr(const struct frame *f, uint16_t tag)
{
    struct cb_field_view v;
    if (cb_proto_find(f->p, f->h.length, tag, &v) != 1)
        return cb_xstrdup("");
    char *s = cb_field_strdup(&v);
    ASSERT(s != NULL);
    return s;
}

static void note_exit(struct client *c, const struct frame *f)
{
    ASSERT(c->nexits < (int)CB_ARRAY_SIZE(c->exits));
    struct cb_field_view v;
    int32_t code = 0;
    ASSERT_EQ(cb_proto_find(f->p, f->h.length, CB_F_EXIT_CODE, &v), 1);
    ASSERT_EQ(cb_field_i32(&v, &code), 0);
    c->exits[c->nexits++] = (struct exit_ev){fu32(f, CB_F_PID), code,
                                             fu32(f, CB_F_SIGNO),
                                             fu32(f, CB_F_TIMED_OUT)};
}

/* Next frame for request id (EXIT events are recorded on the way). */
static void recv_for(struct client *c, uint32_t id, struct frame *f)
{
    for (;;) {
        recv_frame(c, f);
        if (f->h.type == CB_MSG_EXIT && f->h.request_id == 0) {
            note_exit(c, f);
            frame_free(f);
            continue;
        }
        if (f->h.request_id == id)
            return;
        FAIL("unexpected frame type %u id %u (waiting for %u)", f->h.type,
             f->h.request_id, id);
    }
}

static struct exit_ev wait_exit(struct client *c, uint32_t pid)
{
    for (;;) {
        for (int i = 0; i < c->nexits; i++)
            if (c->exits[i].pid == pid)
                return c->exits[i];
        struct frame f;
        recv_frame(c, &f);
        if (f.h.type != CB_MSG_EXIT)
            FAIL("unexpected frame type %u while waiting for EXIT", f.h.type);
        note_exit(c, &f);
        frame_free(&f);
    }
}

static uint32_t send_req(struct client *c, struct cb_builder *b)
{
    ASSERT_EQ(cb_builder_finish(b), 0);
    ASSERT_EQ(cb_proto_send(c->fd, b, NULL, 0), 0);
    cb_builder_free(b);
    return c->next_id - 1;
}

static void begin(struct client *c, struct cb_builder *b, uint16_t type)
{
    cb_builder_init(b, type, c->next_id++);
}

static void simple(struct client *c, uint16_t type, uint16_t expect,
                   void (*add)(struct cb_builder *, const void *), const void *arg)
{
    struct cb_builder b;
    begin(c, &b, type);
    if (add)
        add(&b, arg);
    struct frame f;
    recv_for(c, send_req(c, &b), &f);
    if (f.h.type != expect) {
        char *m = fstr(&f, CB_F_MESSAGE);
        FAIL("type %u answered %u (%s), expected %u", type, f.h.type, m, expect);
    }
    frame_free(&f);
}

/* SPAWN; returns the frame (SPAWNED or ERROR) for the caller to inspect. */
static void spawn(struct client *c, uint32_t mode, const char *const *argv,
                  uint64_t timeout_ms, const char *cwd, struct frame *f)
{
    struct cb_builder b;
    begin(c, &b, CB_MSG_SPAWN);
    for (int i = 0; argv[i]; i++)
        cb_builder_str(&b, CB_F_ARGV, argv[i]);
    cb_builder_str(&b, CB_F_ENV, "PATH=/usr/local/bin:/usr/bin:/bin");
    cb_builder_str(&b, CB_F_ENV, "HOME=/");
    cb_builder_str(&b, CB_F_ENV, "TERM=dumb");
    cb_builder_u32(&b, CB_F_MODE, mode);
    if (timeout_ms)
        cb_builder_u64(&b, CB_F_TIMEOUT_MS, timeout_ms);
    if (cwd)
        cb_builder_str(&b, CB_F_CWD, cwd);
    recv_for(c, send_req(c, &b), f);
}

static uint32_t spawn_ok(struct client *c, uint32_t mode, const char *const *argv)
{
    struct frame f;
    spawn(c, mode, argv, 0, NULL, &f);
    if (f.h.type != CB_MSG_SPAWNED) {
        char *m = fstr(&f, CB_F_MESSAGE);
        FAIL("spawn %s: type %u: %s", argv[0], f.h.type, m);
    }
    uint32_t pid = fu32(&f, CB_F_PID);
    frame_free(&f);
    return pid;
}

struct output {
    char data[65536];
    size_t len, total;
    uint64_t first_seq, last_seq, next_seq, dropped;
    int chunks;
};

/* Send SUBSCRIBE (replay after `after`, then follow when asked); the
 * request id names its OUTPUT frames. */
static uint32_t send_subscribe(struct client *c, uint32_t pid, uint64_t after, bool follow)
{
    struct cb_builder b;
    begin(c, &b, CB_MSG_SUBSCRIBE);
    cb_builder_u32(&b, CB_F_PID, pid);
    cb_builder_u64(&b, CB_F_AFTER_SEQ, after);
    cb_builder_u32(&b, CB_F_FOLLOW, follow);
    return send_req(c, &b);
}

/* Send SIGNAL without waiting for its reply. */
static uint32_t send_signal_req(struct client *c, uint32_t pid, int sig, bool tree)
{
    struct cb_builder b;
    begin(c, &b, CB_MSG_SIGNAL);
    cb_builder_u32(&b, CB_F_PID, pid);
    cb_builder_u32(&b, CB_F_SIGNO, (uint32_t)sig);
    cb_builder_u32(&b, CB_F_TREE, tree);
    return send_req(c, &b);
}

/* SUBSCRIBE and collect OUTPUT until END. */
static void subscribe(struct client *c, uint32_t pid, uint64_t after, bool follow,
                      struct output *o)
{
    uint32_t id = send_subscribe(c, pid, after, follow);
    memset(o, 0, sizeof *o);
    for (;;) {
        struct frame f;
        recv_for(c, id, &f);
        if (f.h.type == CB_MSG_END) {
            o->next_seq = fu64(&f, CB_F_NEXT_SEQ);
            o->dropped = fu64(&f, CB_F_DROPPED);
            frame_free(&f);
            return;
        }
        ASSERT_EQ(f.h.type, CB_MSG_OUTPUT);
        uint64_t seq = fu64(&f, CB_F_SEQ);
        ASSERT(seq > after && seq > o->last_seq);
        if (!o->first_seq)
            o->first_seq = seq;
        o->last_seq = seq;
        o->chunks++;
        struct cb_field_view v;
        ASSERT_EQ(cb_proto_find(f.p, f.h.length, CB_F_DATA, &v), 1);
        size_t n = v.len < sizeof o->data - 1 - o->len ? v.len : sizeof o->data - 1 - o->len;
        memcpy(o->data + o->len, v.value, n);
        o->len += n;
        o->total += v.len;
        o->data[o->len] = '\0';
        frame_free(&f);
    }
}

static void add_pid(struct cb_builder *b, const void *arg)
{
    cb_builder_u32(b, CB_F_PID, *(const uint32_t *)arg);
}

static void send_stdin(struct client *c, uint32_t pid, const char *data, bool eof)
{
    struct cb_builder b;
    begin(c, &b, CB_MSG_STDIN);
    cb_builder_u32(&b, CB_F_PID, pid);
    if (data)
        cb_builder_bytes(&b, CB_F_DATA, data, strlen(data));
    if (eof)
        cb_builder_u32(&b, CB_F_EOF, 1);
    struct frame f;
    recv_for(c, send_req(c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_OK);
    frame_free(&f);
}

static void send_signal(struct client *c, uint32_t pid, int sig, bool tree)
{
    struct frame f;
    recv_for(c, send_signal_req(c, pid, sig, tree), &f);
    ASSERT_EQ(f.h.type, CB_MSG_OK);
    frame_free(&f);
}

static bool pid_alive(pid_t pid)
{
    /* A zombie counts as gone for "was it killed", but zombies are checked
     * separately by the reaping test. */
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

/* ---- cases ---- */

TEST(init_hello_ping)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    struct cb_builder b;
    begin(&c, &b, CB_MSG_HELLO);
    cb_builder_u32(&b, CB_F_VERSION, CB_PROTO_VERSION);
    struct frame f;
    recv_for(&c, send_req(&c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_HELLO_OK);
    ASSERT_EQ(fu32(&f, CB_F_VERSION), CB_PROTO_VERSION);
    ASSERT_EQ(fu32(&f, CB_F_PID), ip.pid);
    ASSERT_EQ(fu32(&f, CB_F_NPROCS), 0);
    frame_free(&f);
    simple(&c, CB_MSG_PING, CB_MSG_PONG, NULL, NULL);
    /* Unknown types are answered, and the connection stays usable. */
    simple(&c, 999, CB_MSG_ERROR, NULL, NULL);
    simple(&c, CB_MSG_PING, CB_MSG_PONG, NULL, NULL);
    stop_init(&ip);
}

TEST(init_pipes_echo)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    const char *argv[] = {"echo", "hi", NULL};
    struct frame f;
    spawn(&c, CB_SPAWN_PIPES, argv, 0, NULL, &f);
    ASSERT_EQ(f.h.type, CB_MSG_SPAWNED);
    ASSERT_EQ(f.nfds, 3);
    uint32_t pid = fu32(&f, CB_F_PID);
    ASSERT(fu64(&f, CB_F_PROC_ID) >= 1);
    ASSERT(fu64(&f, CB_F_STARTED_AT) > 1600000000000ull);
    char buf[64] = {0};
    ASSERT_EQ(cb_read_all(f.fds[1], buf, 3), 0);
    ASSERT_STREQ(buf, "hi\n");
    ASSERT_EQ(read(f.fds[1], buf, sizeof buf), 0); /* init kept no copy */
    frame_free(&f);
    struct exit_ev e = wait_exit(&c, pid);
    ASSERT_EQ(e.code, 0);
    ASSERT_EQ(e.signo, 0);
    stop_init(&ip);
}

/* What a spawned process starts with, read from its own /proc status: no
 * signal blocked or ignored (init blocks SIGCHLD & co. and ignores SIGPIPE;
 * SIGUSR2 arrives ignored from the test, as it could from a runtime), its
 * own process group, and only fds 0..2 (plus the one cat opens). The child
 * runs on a shared-memory clone, so this is where a step skipped by
 * mistake would show. */
static void read_to_eof(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = CB_RETRY(read(fd, buf + len, cap - 1 - len))) > 0)
        len += (size_t)n;
    buf[len] = '\0';
}

TEST(init_child_starts_clean)
{
    signal(SIGUSR2, SIG_IGN); /* inherited by init through exec */
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    const char *argv[] = {"cat", "/proc/self/status", NULL};
    struct frame f;
    spawn(&c, CB_SPAWN_PIPES, argv, 0, NULL, &f);
    ASSERT_EQ(f.h.type, CB_MSG_SPAWNED);
    uint32_t pid = fu32(&f, CB_F_PID);
    static char buf[16384];
    read_to_eof(f.fds[1], buf, sizeof buf);
    frame_free(&f);
    ASSERT(strstr(buf, "SigBlk:\t0000000000000000\n") != NULL);
    ASSERT(strstr(buf, "SigIgn:\t0000000000000000\n") != NULL);
    char want[64];
    snprintf(want, sizeof want, "NSpgid:\t%u\n", pid);
    ASSERT(strstr(buf, want) != NULL);
    struct exit_ev e = wait_exit(&c, pid);
    ASSERT_EQ(e.code, 0);
    const char *ls[] = {"ls", "/proc/self/fd", NULL};
    spawn(&c, CB_SPAWN_PIPES, ls, 0, NULL, &f);
    ASSERT_EQ(f.h.type, CB_MSG_SPAWNED);
    read_to_eof(f.fds[1], buf, sizeof buf);
    frame_free(&f);
    ASSERT_STREQ(buf, "0\n1\n2\n3\n"); /* 3: ls's own directory fd */
    stop_init(&ip);
}

TEST(init_exec_failure)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    const char *argv[] = {"python4-does-not-exist", NULL};
    struct frame f;
    spawn(&c, CB_SPAWN_BACKGROUND, argv, 0, NULL, &f);
    ASSERT_EQ(f.h.type, CB_MSG_ERROR);
    ASSERT_EQ(fu32(&f, CB_F_ERRNO), ENOENT);
    ASSERT_STREQ(fstr(&f, CB_F_MESSAGE),
                 "exec python4-does-not-exist: No such file or directory");
    frame_free(&f);
    const char *argv2[] = {"true", NULL};
    spawn(&c, CB_SPAWN_BACKGROUND, argv2, 0, "/nope-no-such-dir", &f);
    ASSERT_EQ(f.h.type, CB_MSG_ERROR);
    ASSERT_EQ(fu32(&f, CB_F_ERRNO), ENOENT);
    ASSERT(strncmp(fstr(&f, CB_F_MESSAGE), "chdir /nope-no-such-dir: ", 25) == 0);
    frame_free(&f);
    /* Nothing was recorded for the failures. */
    struct cb_builder b;
    begin(&c, &b, CB_MSG_LIST);
    recv_for(&c, send_req(&c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_PROCS);
    ASSERT_EQ(f.h.length, 0);
    frame_free(&f);
    stop_init(&ip);
}

/* FORGET_ON_EXIT (the exec path): the record goes once EXIT was sent, so
 * LIST is empty again without a FORGET; it is refused for modes whose
 * output init still holds after the exit. */
static void spawn_forgetting(struct client *c, uint32_t mode, struct frame *f)
{
    struct cb_builder b;
    begin(c, &b, CB_MSG_SPAWN);
    cb_builder_str(&b, CB_F_ARGV, "true");
    cb_builder_str(&b, CB_F_ENV, "PATH=/usr/bin:/bin");
    cb_builder_u32(&b, CB_F_MODE, mode);
    cb_builder_u32(&b, CB_F_FORGET_ON_EXIT, 1);
    recv_for(c, send_req(c, &b), f);
}

TEST(init_forget_on_exit)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    struct frame f;
    spawn_forgetting(&c, CB_SPAWN_PIPES, &f);
    ASSERT_EQ(f.h.type, CB_MSG_SPAWNED);
    uint32_t pid = fu32(&f, CB_F_PID);
    frame_free(&f);
    struct exit_ev e = wait_exit(&c, pid);
    ASSERT_EQ(e.code, 0);
    struct cb_builder b;
    begin(&c, &b, CB_MSG_LIST);
    recv_for(&c, send_req(&c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_PROCS);
    ASSERT_EQ(f.h.length, 0);
    frame_free(&f);
    spawn_forgetting(&c, CB_SPAWN_BACKGROUND, &f);
    ASSERT_EQ(f.h.type, CB_MSG_ERROR);
    ASSERT_EQ(fu32(&f, CB_F_ERRNO), EINVAL);
    frame_free(&f);
    stop_init(&ip);
}

TEST(init_background_replay)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    const char *argv[] = {"sh", "-c", "echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; echo out2", NULL};
    uint32_t pid = spawn_ok(&c, CB_SPAWN_BACKGROUND, argv);
    struct output o;
    subscribe(&c, pid, 0, true, &o); /* follow until the process ends */
    ASSERT_STREQ(o.data, "out1\nerr1\nout2\n");
    ASSERT_EQ(o.first_seq, 1);
    ASSERT_EQ(o.last_seq, 3);
    ASSERT_EQ(o.next_seq, 4);
    ASSERT_EQ(o.dropped, 0);
    ASSERT_EQ(wait_exit(&c, pid).code, 0);
    subscribe(&c, pid, 1, false, &o); /* replay after seq 1 */
    ASSERT_STREQ(o.data, "err1\nout2\n");
    subscribe(&c, pid, 3, false, &o);
    ASSERT_EQ(o.len, 0);
    ASSERT_EQ(o.next_seq, 4);
    stop_init(&ip);
}

TEST(init_stdin_cat)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    const char *argv[] = {"cat", NULL};
    uint32_t pid = spawn_ok(&c, CB_SPAWN_BACKGROUND, argv);
    send_stdin(&c, pid, "hello ", false);
    send_stdin(&c, pid, "world\n", true);
    ASSERT_EQ(wait_exit(&c, pid).code, 0); /* cat saw EOF */
    struct output o;
    subscribe(&c, pid, 0, true, &o);
    ASSERT_STREQ(o.data, "hello world\n");
    /* stdin is closed now */
    struct cb_builder b;
    begin(&c, &b, CB_MSG_STDIN);
    cb_builder_u32(&b, CB_F_PID, pid);
    cb_builder_bytes(&b, CB_F_DATA, "x", 1);
    struct frame f;
    recv_for(&c, send_req(&c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_ERROR);
    ASSERT_EQ(fu32(&f, CB_F_ERRNO), EPIPE);
    frame_free(&f);
    stop_init(&ip);
}

TEST(init_signal_tree)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    const char *argv[] = {"sh", "-c", "sleep 1000 & echo $!; wait", NULL};
    uint32_t pid = spawn_ok(&c, CB_SPAWN_BACKGROUND, argv);
    /* Follow until the first chunk: the child's pid. */
    uint32_t id = send_subscribe(&c, pid, 0, true);
    struct frame f;
    recv_for(&c, id, &f);
    ASSERT_EQ(f.h.type, CB_MSG_OUTPUT);
    char *data = fstr(&f, CB_F_DATA);
    pid_t child = (pid_t)atoi(data);
    ASSERT(child > 0);
    ASSERT(pid_alive(child));
    frame_free(&f);
    send_signal(&c, pid, SIGKILL, true);
    struct exit_ev e = wait_exit(&c, pid);
    ASSERT_EQ(e.code, -1);
    ASSERT_EQ(e.signo, SIGKILL);
    for (int i = 0; i < 200 && pid_alive(child); i++)
        usleep(10000);
    ASSERT(!pid_alive(child)); /* the grandchild died with the group */
    recv_for(&c, id, &f);
    ASSERT_EQ(f.h.type, CB_MSG_END);
    frame_free(&f);
    /* Signalling an exited process is ESRCH. */
    recv_for(&c, send_signal_req(&c, pid, SIGTERM, false), &f);
    ASSERT_EQ(f.h.type, CB_MSG_ERROR);
    ASSERT_EQ(fu32(&f, CB_F_ERRNO), ESRCH);
    frame_free(&f);
    stop_init(&ip);
}

TEST(init_timeout)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    const char *argv[] = {"sleep", "30", NULL};
    struct frame f;
    uint64_t t0 = cb_now_ns();
    spawn(&c, CB_SPAWN_BACKGROUND, argv, 200, NULL, &f);
    ASSERT_EQ(f.h.type, CB_MSG_SPAWNED);
    uint32_t pid = fu32(&f, CB_F_PID);
    frame_free(&f);
    struct exit_ev e = wait_exit(&c, pid);
    uint64_t ms = (cb_now_ns() - t0) / 1000000;
    ASSERT_EQ(e.timed_out, 1);
    ASSERT_EQ(e.signo, SIGKILL);
    ASSERT_GE(ms, 190);
    ASSERT(ms < 5000);
    stop_init(&ip);
}

/* Follow a PTY process until its output contains needle. */
static void pty_expect(struct client *c, uint32_t pid, uint64_t *after,
                       const char *needle)
{
    char acc[8192] = {0};
    size_t len = 0;
    uint64_t deadline = cb_now_ns() + 5000000000ull;
    while (!strstr(acc, needle)) {
        if (cb_now_ns() > deadline)
            FAIL("pty output never contained \"%s\": \"%s\"", needle, acc);
        struct output o;
        subscribe(c, pid, *after, false, &o);
        if (o.last_seq)
            *after = o.last_seq;
        size_t n = o.len < sizeof acc - 1 - len ? o.len : sizeof acc - 1 - len;
        memcpy(acc + len, o.data, n);
        len += n;
        if (!o.len)
            usleep(20000);
    }
}

TEST(init_pty)
{
    struct initp ip;
    start_init(&ip);
    if (access("/dev/ptmx", R_OK | W_OK) != 0)
        SKIP("no /dev/ptmx");
    struct client c;
    client_open(&c, &ip);
    const char *argv[] = {"sh", NULL};
    uint32_t pid = spawn_ok(&c, CB_SPAWN_PTY, argv);
    uint64_t after = 0;
    send_stdin(&c, pid, "echo $((40+2))\n", false);
    pty_expect(&c, pid, &after, "42\r\n");
    struct cb_builder b;
    begin(&c, &b, CB_MSG_RESIZE);
    cb_builder_u32(&b, CB_F_PID, pid);
    cb_builder_u32(&b, CB_F_COLS, 101);
    cb_builder_u32(&b, CB_F_ROWS, 33);
    struct frame f;
    recv_for(&c, send_req(&c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_OK);
    frame_free(&f);
    send_stdin(&c, pid, "stty size\n", false);
    pty_expect(&c, pid, &after, "33 101");
    send_stdin(&c, pid, "exit 3\n", false);
    ASSERT_EQ(wait_exit(&c, pid).code, 3);
    stop_init(&ip);
}

TEST(init_reconnect)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    const char *argv[] = {"sh", "-c", "echo one; exec sleep 30", NULL};
    uint32_t pid = spawn_ok(&c, CB_SPAWN_BACKGROUND, argv);
    const char *argv2[] = {"echo", "two", NULL};
    uint32_t pid2 = spawn_ok(&c, CB_SPAWN_BACKGROUND, argv2);
    wait_exit(&c, pid2);
    close(c.fd);
    usleep(50000);
    client_open(&c, &ip);
    struct cb_builder b;
    begin(&c, &b, CB_MSG_LIST);
    struct frame f;
    recv_for(&c, send_req(&c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_PROCS);
    size_t off = 0;
    struct cb_field_view v;
    int found = 0;
    while (cb_proto_next_field(f.p, f.h.length, &off, &v) > 0) {
        ASSERT_EQ(v.tag, CB_F_PROC);
        struct frame inner = {.h.length = v.len, .p = (uint8_t *)v.value};
        uint32_t p = fu32(&inner, CB_F_PID);
        uint32_t state = fu32(&inner, CB_F_STATE);
        if (p == pid) {
            ASSERT_EQ(state, CB_PROC_RUNNING);
            ASSERT_STREQ(fstr(&inner, CB_F_ARGV), "sh");
            found++;
        } else if (p == pid2) {
            ASSERT_EQ(state, CB_PROC_EXITED);
            found++;
        }
    }
    ASSERT_EQ(found, 2);
    frame_free(&f);
    static struct output o;
    for (int i = 0; i < 100 && o.len == 0; i++) {
        subscribe(&c, pid, 0, false, &o);
        if (!o.len)
            usleep(10000);
    }
    ASSERT_STREQ(o.data, "one\n");
    subscribe(&c, pid2, 0, false, &o);
    ASSERT_STREQ(o.data, "two\n");
    /* FORGET: a running process refuses, an exited one goes away. */
    simple(&c, CB_MSG_FORGET, CB_MSG_ERROR, add_pid, &pid);
    simple(&c, CB_MSG_FORGET, CB_MSG_OK, add_pid, &pid2);
    simple(&c, CB_MSG_SUBSCRIBE, CB_MSG_ERROR, add_pid, &pid2);
    stop_init(&ip);
}

/* Zombie children of pid: entries in /proc whose ppid is pid and state Z. */
static int count_zombies_of(pid_t parent)
{
    DIR *d = opendir("/proc");
    ASSERT(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 &&
            ppid == parent && state == 'Z')
            n++;
    }
    closedir(d);
    return n;
}

TEST(init_reaps_orphans)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    /* The inner sh exits at once; its sleep is orphaned, re-parented to
     * init (subreaper), and must be reaped when it ends. */
    const char *argv[] = {"sh", "-c", "sh -c 'sleep 0.2 >/dev/null 2>&1 &' ; exit 0", NULL};
    uint32_t pid = spawn_ok(&c, CB_SPAWN_BACKGROUND, argv);
    wait_exit(&c, pid);
    usleep(600000);
    ASSERT_EQ(count_zombies_of(ip.pid), 0);
    simple(&c, CB_MSG_PING, CB_MSG_PONG, NULL, NULL);
    stop_init(&ip);
}

static void expect_closed(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ASSERT_EQ(poll(&p, 1, 5000), 1);
    char buf[256];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        ; /* an ERROR reply may come first; then EOF */
    ASSERT(n == 0 || errno == ECONNRESET);
}

static void hostile(const struct initp *ip, const void *bytes, size_t len)
{
    int fd = connect_path(ip->sock);
    ASSERT(fd >= 0);
    ASSERT_EQ(cb_write_all(fd, bytes, len), 0);
    expect_closed(fd);
    close(fd);
    struct client c;
    client_open(&c, ip);
    simple(&c, CB_MSG_PING, CB_MSG_PONG, NULL, NULL);
    close(c.fd);
}

TEST(init_hostile_input)
{
    struct initp ip;
    start_init(&ip);
    uint8_t garbage[300];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (uint8_t)(i * 37 + 11);
    hostile(&ip, garbage, sizeof garbage);
    /* length 2^31 */
    uint8_t huge[12] = {0, 0, 0, 0x80, CB_MSG_PING, 0, 0, 0, 1, 0, 0, 0};
    hostile(&ip, huge, sizeof huge);
    /* flags set */
    uint8_t flags[12] = {0, 0, 0, 0, CB_MSG_PING, 0, 1, 0, 1, 0, 0, 0};
    hostile(&ip, flags, sizeof flags);
    /* a field whose length runs past the payload */
    uint8_t trunc[12 + 8 + 2] = {10, 0, 0, 0, CB_MSG_SIGNAL, 0, 0, 0, 1, 0, 0, 0,
                                 CB_F_PID, 0, 0, 0, 4, 0, 0, 0, 7, 0};
    hostile(&ip, trunc, sizeof trunc);
    /* a PROC field that claims to contain more than itself */
    uint8_t loop[12 + 16] = {16, 0, 0, 0, CB_MSG_SPAWN, 0, 0, 0, 2, 0, 0, 0,
                             CB_F_PROC, 0, 0, 0, 8, 0, 0, 0,
                             CB_F_PROC, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f};
    hostile(&ip, loop, sizeof loop);
    /* a u32 field of the wrong size */
    uint8_t badsize[12 + 10] = {10, 0, 0, 0, CB_MSG_SIGNAL, 0, 0, 0, 3, 0, 0, 0,
                                CB_F_PID, 0, 0, 0, 2, 0, 0, 0, 1, 1};
    hostile(&ip, badsize, sizeof badsize);
    /* a string with a NUL inside */
    uint8_t nul[12 + 10] = {10, 0, 0, 0, CB_MSG_SPAWN, 0, 0, 0, 4, 0, 0, 0,
                            CB_F_ARGV, 0, 0, 0, 2, 0, 0, 0, 'a', 0};
    hostile(&ip, nul, sizeof nul);
    /* a header cut short, then the peer vanishes */
    int fd = connect_path(ip.sock);
    ASSERT_EQ(cb_write_all(fd, huge, 5), 0);
    close(fd);
    struct client c;
    client_open(&c, &ip);
    simple(&c, CB_MSG_PING, CB_MSG_PONG, NULL, NULL);
    stop_init(&ip);
}

TEST(init_concurrent_spawns)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    enum { N = 100 };
    for (int i = 0; i < N; i++) {
        struct cb_builder b;
        begin(&c, &b, CB_MSG_SPAWN);
        cb_builder_str(&b, CB_F_ARGV, "sh");
        cb_builder_str(&b, CB_F_ARGV, "-c");
        cb_builder_str(&b, CB_F_ARGV, "exit $(( $$ % 7 ))");
        cb_builder_u32(&b, CB_F_MODE, CB_SPAWN_BACKGROUND);
        send_req(&c, &b);
    }
    uint32_t pids[N];
    int got = 0;
    while (got < N) {
        struct frame f;
        recv_frame(&c, &f);
        if (f.h.type == CB_MSG_EXIT) {
            note_exit(&c, &f);
        } else {
            ASSERT_EQ(f.h.type, CB_MSG_SPAWNED);
            ASSERT_EQ(f.h.request_id, (uint32_t)got + 1); /* in order */
            pids[got++] = fu32(&f, CB_F_PID);
        }
        frame_free(&f);
    }
    for (int i = 0; i < N; i++)
        ASSERT_EQ(wait_exit(&c, pids[i]).code, (int32_t)(pids[i] % 7));
    stop_init(&ip);
}

TEST(init_control_fd_mode)
{
    if (access(init_binary(), X_OK) != 0)
        SKIP("%s not built", init_binary());
    char dir[] = "/tmp/cb-init-test-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    char path[64];
    snprintf(path, sizeof path, "%.40s/ctl.sock", dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    ASSERT_EQ(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(lfd, 8), 0);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        char num[16];
        snprintf(num, sizeof num, "%d", lfd);
        execl(init_binary(), "cellbox-init", "--control-fd", num, (char *)NULL);
        _exit(127);
    }
    close(lfd);
    struct initp ip = {.pid = pid};
    snprintf(ip.dir, sizeof ip.dir, "%s", dir);
    snprintf(ip.sock, sizeof ip.sock, "%s", path);
    struct client c;
    client_open(&c, &ip); /* the backlog accepts before init runs */
    simple(&c, CB_MSG_PING, CB_MSG_PONG, NULL, NULL);
    stop_init(&ip);
}

TEST(init_ring_is_bounded)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    const char *argv[] = {"head", "-c", "3000000", "/dev/zero", NULL};
    uint32_t pid = spawn_ok(&c, CB_SPAWN_BACKGROUND, argv);
    ASSERT_EQ(wait_exit(&c, pid).code, 0);
    static struct output o;
    for (int i = 0; i < 100; i++) { /* until init has drained the pipe */
        subscribe(&c, pid, 0, false, &o);
        if (o.total > 0 && o.dropped > 0 && o.next_seq == o.last_seq + 1)
            break;
        usleep(20000);
    }
    ASSERT(o.total > 0);
    ASSERT(o.total <= 1024 * 1024);          /* the stream's bound */
    ASSERT(o.first_seq > 1);                 /* the oldest went first */
    ASSERT_EQ(o.dropped, o.first_seq - 1);   /* and were counted */
    ASSERT_EQ((uint64_t)o.chunks, o.last_seq - o.first_seq + 1); /* no holes */
    stop_init(&ip);
}

/* An ASan build of init (CB_BUILD pointing at one) has a shadow heap that
 * makes RSS bounds meaningless; the static musl build is what they are for. */
static bool is_sanitized(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    bool san = false;
    while (f && !san && fgets(line, sizeof line, f))
        san = strstr(line, "libasan") != NULL;
    if (f)
        fclose(f);
    return san;
}

static long vm_rss_kib(pid_t pid)
{
    if (is_sanitized(pid))
        return 1; /* not measurable, see above */
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    ASSERT(f != NULL);
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

TEST(init_backpressure)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    /* `yes` starts after the subscription is in place: before that, the
     * output of a process nobody follows goes to the bounded ring, whose
     * oldest chunks may go (by design). Spawning is fast enough now that
     * on a loaded host `yes` filled the ring before SUBSCRIBE arrived. */
    const char *argv[] = {"/bin/sh", "-c", "sleep 0.5; exec yes 0123456789abcdef0123456789abcdef",
                          NULL};
    uint32_t pid = spawn_ok(&c, CB_SPAWN_BACKGROUND, argv);
    uint32_t id = send_subscribe(&c, pid, 0, true);
    sleep(2); /* do not read: init must stop reading `yes`, not buffer */
    long rss = vm_rss_kib(ip.pid);
    ASSERT(rss > 0 && rss < 16 * 1024);
    /* Every chunk arrives, in order, none lost to the ring. */
    uint64_t expect = 1;
    size_t bytes = 0;
    while (bytes < 16u << 20) {
        struct frame f;
        recv_for(&c, id, &f);
        ASSERT_EQ(f.h.type, CB_MSG_OUTPUT);
        ASSERT_EQ(fu64(&f, CB_F_SEQ), expect);
        expect++;
        struct cb_field_view v;
        ASSERT_EQ(cb_proto_find(f.p, f.h.length, CB_F_DATA, &v), 1);
        bytes += v.len;
        frame_free(&f);
    }
    /* Kill it; replies interleave with the stream still in flight. */
    uint32_t sig_id = send_signal_req(&c, pid, SIGKILL, true);
    bool ok = false, end = false;
    while (!ok || !end) {
        struct frame f;
        recv_frame(&c, &f);
        if (f.h.type == CB_MSG_EXIT)
            note_exit(&c, &f);
        else if (f.h.request_id == sig_id)
            ok = f.h.type == CB_MSG_OK;
        else if (f.h.request_id == id && f.h.type == CB_MSG_END)
            end = true;
        else if (f.h.request_id != id || f.h.type != CB_MSG_OUTPUT)
            FAIL("unexpected frame type %u id %u", f.h.type, f.h.request_id);
        frame_free(&f);
    }
    ASSERT_EQ(wait_exit(&c, pid).signo, SIGKILL);
    stop_init(&ip);
}

TEST(init_unsubscribe_and_idle_memory)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    const char *argv[] = {"sleep", "30", NULL};
    uint32_t pid = spawn_ok(&c, CB_SPAWN_BACKGROUND, argv);
    struct cb_builder b;
    uint32_t sub = send_subscribe(&c, pid, 0, true);
    begin(&c, &b, CB_MSG_UNSUBSCRIBE);
    cb_builder_u32(&b, CB_F_SUB_ID, sub);
    struct frame f;
    recv_for(&c, send_req(&c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_OK);
    frame_free(&f);
    /* The subscription is gone: the next frame on the connection is the
     * PONG, not an END for it. */
    simple(&c, CB_MSG_PING, CB_MSG_PONG, NULL, NULL);
    ASSERT(vm_rss_kib(ip.pid) < 1024);
    stop_init(&ip);
}

/* Init as PID 1 of a fresh pid namespace, in production mode: the control
 * socket accepts the test (outside the namespace) but refuses a process
 * inside the sandbox; KILL_ALL reaches every process but init. */
TEST(init_pid1_namespace)
{
    if (access(init_binary(), X_OK) != 0)
        SKIP("%s not built", init_binary());
    if (access("/usr/bin/python3", X_OK) != 0)
        SKIP("no /usr/bin/python3");
    char dir[] = "/tmp/cb-init-test-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    struct initp ip;
    snprintf(ip.dir, sizeof ip.dir, "%s", dir);
    snprintf(ip.sock, sizeof ip.sock, "%.40s/ctl.sock", dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", ip.sock);
    ASSERT_EQ(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ASSERT_EQ(listen(lfd, 8), 0);
    if (unshare(CLONE_NEWPID) < 0)
        SKIP("unshare(CLONE_NEWPID): %s", strerror(errno));
    ip.pid = fork(); /* PID 1 of the new namespace */
    ASSERT(ip.pid >= 0);
    if (ip.pid == 0) {
        char num[16];
        snprintf(num, sizeof num, "%d", lfd);
        execl(init_binary(), "cellbox-init", "--control-fd", num, (char *)NULL);
        _exit(127);
    }
    close(lfd);
    struct client c;
    client_open(&c, &ip);
    struct cb_builder b;
    begin(&c, &b, CB_MSG_HELLO);
    struct frame f;
    recv_for(&c, send_req(&c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_HELLO_OK);
    ASSERT_EQ(fu32(&f, CB_F_PID), 1);
    frame_free(&f);

    char script[512];
    snprintf(script, sizeof script,
             "import socket\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "s.connect('%s')\n"
             "try:\n"
             "    s.sendall(bytes([0,0,0,0,10,0,0,0,1,0,0,0]))\n"
             "    print('got', len(s.recv(100)))\n"
             "except (BrokenPipeError, ConnectionResetError):\n"
             "    print('got 0')\n", ip.sock);
    const char *argv[] = {"/usr/bin/python3", "-c", script, NULL};
    uint32_t py = spawn_ok(&c, CB_SPAWN_BACKGROUND, argv);
    int32_t py_code = wait_exit(&c, py).code;
    static struct output o;
    for (int i = 0; i < 100; i++) {
        subscribe(&c, py, 0, false, &o);
        if (strchr(o.data, '\n'))
            break;
        usleep(10000);
    }
    if (py_code != 0)
        FAIL("python exited %d: %s", py_code, o.data);
    ASSERT_STREQ(o.data, "got 0\n"); /* closed without an answer */

    const char *sl[] = {"sleep", "100", NULL};
    uint32_t s1 = spawn_ok(&c, CB_SPAWN_BACKGROUND, sl);
    uint32_t s2 = spawn_ok(&c, CB_SPAWN_PTY, sl);
    begin(&c, &b, CB_MSG_KILL_ALL);
    cb_builder_u32(&b, CB_F_SIGNO, SIGKILL);
    recv_for(&c, send_req(&c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_OK);
    frame_free(&f);
    ASSERT_EQ(wait_exit(&c, s1).signo, SIGKILL);
    ASSERT_EQ(wait_exit(&c, s2).signo, SIGKILL);
    simple(&c, CB_MSG_PING, CB_MSG_PONG, NULL, NULL); /* init survived */
    /* SIGTERM from outside is forwarded, init stays */
    uint32_t s3 = spawn_ok(&c, CB_SPAWN_BACKGROUND, sl);
    kill(ip.pid, SIGTERM);
    ASSERT_EQ(wait_exit(&c, s3).signo, SIGTERM);
    simple(&c, CB_MSG_PING, CB_MSG_PONG, NULL, NULL);
    kill(ip.pid, SIGKILL); /* tears the namespace down */
    waitpid(ip.pid, NULL, 0);
    unlink(ip.sock);
    rmdir(ip.dir);
}

/* HOLD_OUTPUT and DRAIN (drain.c): the exec path's output pipes outlive
 * the daemon's reader once it hands them over, and init holds nothing
 * once every writer is gone. */
static uint32_t spawn_held(struct client *c, const char *cmd, uint64_t *proc_id,
                           int fds[3])
{
    struct cb_builder b;
    begin(c, &b, CB_MSG_SPAWN);
    cb_builder_str(&b, CB_F_ARGV, "sh");
    cb_builder_str(&b, CB_F_ARGV, "-c");
    cb_builder_str(&b, CB_F_ARGV, cmd);
    cb_builder_str(&b, CB_F_ENV, "PATH=/usr/bin:/bin");
    cb_builder_u32(&b, CB_F_MODE, CB_SPAWN_PIPES);
    cb_builder_u32(&b, CB_F_FORGET_ON_EXIT, 1);
    cb_builder_u32(&b, CB_F_HOLD_OUTPUT, 1);
    struct frame f;
    recv_for(c, send_req(c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_SPAWNED);
    ASSERT_EQ(f.nfds, 3);
    uint32_t pid = fu32(&f, CB_F_PID);
    *proc_id = fu64(&f, CB_F_PROC_ID);
    memcpy(fds, f.fds, sizeof f.fds[0] * 3);
    f.nfds = 0; /* ours now */
    frame_free(&f);
    return pid;
}

static void add_proc_id(struct cb_builder *b, const void *arg)
{
    cb_builder_u64(b, CB_F_PROC_ID, *(const uint64_t *)arg);
}

static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    ASSERT(d != NULL);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 2;
}

static int fds_settle(pid_t pid, int want)
{
    int n = -1;
    for (int i = 0; i < 200 && (n = count_fds(pid)) != want; i++)
        usleep(10000);
    return n;
}

/* The writer starts once the reader's copies are gone: a megabyte, far
 * more than a pipe holds; its status tells whether a write met EPIPE. */
#define LATE_WRITER "sleep 0.3; head -c 1000000 /dev/zero; exit $?"

TEST(init_hold_output_drain)
{
    struct initp ip;
    start_init(&ip);
    struct client c, watcher;
    client_open(&c, &ip);
    client_open(&watcher, &ip);
    simple(&watcher, CB_MSG_PING, CB_MSG_PONG, NULL, NULL); /* accepted before the spawns */
    int base = count_fds(ip.pid);

    /* Handed over with DRAIN, then the reader goes: init reads to EOF. */
    uint64_t proc_id;
    int fds[3];
    uint32_t pid = spawn_held(&c, LATE_WRITER, &proc_id, fds);
    simple(&c, CB_MSG_DRAIN, CB_MSG_OK, add_proc_id, &proc_id);
    simple(&c, CB_MSG_DRAIN, CB_MSG_OK, add_proc_id, &proc_id); /* again: still OK */
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    struct exit_ev e = wait_exit(&watcher, pid);
    ASSERT_EQ(e.code, 0);
    ASSERT_EQ(fds_settle(ip.pid, base), base); /* nothing held after EOF */

    /* Not handed over, and the connection that spawned it closes (a daemon
     * gone before it answered): the copies go with it, as before, and the
     * command is hung up as its gone client would have. One that ignores
     * the hang-up meets the closed pipe. */
    char ready[128], cmd[256];
    snprintf(ready, sizeof ready, "%s/hup-ignored", ip.dir);
    snprintf(cmd, sizeof cmd, "trap '' HUP; touch %s; " LATE_WRITER, ready);
    pid = spawn_held(&c, cmd, &proc_id, fds);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    uint32_t sleeper = spawn_held(&c, "exec sleep 30", &proc_id, fds);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    /* the trap in place first (a slow guest ran the close before it) */
    for (int i = 0; i < 1000 && access(ready, F_OK) < 0; i++)
        usleep(10000);
    ASSERT_EQ(access(ready, F_OK), 0);
    unlink(ready);
    close(c.fd);
    e = wait_exit(&watcher, pid);
    ASSERT_EQ(e.code, 128 + SIGPIPE);
    e = wait_exit(&watcher, sleeper);
    ASSERT_EQ(e.signo, SIGHUP);

    /* An exec whose pipes close at its exit: init lets go without a DRAIN,
     * and a DRAIN then finds nothing. */
    client_open(&c, &ip);
    simple(&c, CB_MSG_PING, CB_MSG_PONG, NULL, NULL);
    pid = spawn_held(&c, "echo hi", &proc_id, fds);
    char buf[8] = {0};
    ASSERT_EQ(cb_read_all(fds[1], buf, 3), 0);
    ASSERT_STREQ(buf, "hi\n");
    ASSERT_EQ(wait_exit(&c, pid).code, 0);
    ASSERT_EQ(read(fds[1], buf, sizeof buf), 0);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    ASSERT_EQ(fds_settle(ip.pid, base), base);
    simple(&c, CB_MSG_DRAIN, CB_MSG_ERROR, add_proc_id, &proc_id);
    /* One it left behind holds them past its exit: init lets go when that
     * one does, still without a DRAIN. */
    pid = spawn_held(&c, "sleep 30 & echo $!", &proc_id, fds);
    ASSERT_EQ(wait_exit(&c, pid).code, 0);
    ASSERT_EQ(count_fds(ip.pid), base + 2);
    char spid[32] = {0};
    ASSERT(read(fds[1], spid, sizeof spid - 1) > 0);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    ASSERT_EQ(kill(atoi(spid), SIGKILL), 0);
    ASSERT_EQ(fds_settle(ip.pid, base), base);

    /* Only for PIPES. */
    struct cb_builder b;
    begin(&c, &b, CB_MSG_SPAWN);
    cb_builder_str(&b, CB_F_ARGV, "true");
    cb_builder_u32(&b, CB_F_MODE, CB_SPAWN_BACKGROUND);
    cb_builder_u32(&b, CB_F_HOLD_OUTPUT, 1);
    struct frame f;
    recv_for(&c, send_req(&c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_ERROR);
    ASSERT_EQ(fu32(&f, CB_F_ERRNO), EINVAL);
    frame_free(&f);
    stop_init(&ip);
}

/* A command hung up because its connection closed (the daemon died) and
 * that ignores the hang-up without writing is killed after the grace, as
 * a live daemon kills it when an exec's client goes; the rest of its
 * process group with it. */
#define HANGUP_GRACE_MS 5000 /* INIT_HANGUP_GRACE_MS, src/init/init.h */
TEST(init_hung_up_exec_killed_after_grace)
{
    struct initp ip;
    start_init(&ip);
    struct client c, watcher;
    client_open(&c, &ip);
    client_open(&watcher, &ip);
    simple(&watcher, CB_MSG_PING, CB_MSG_PONG, NULL, NULL);
    char ready[128], cmd[384];
    snprintf(ready, sizeof ready, "%s/hup-ignored", ip.dir);
    snprintf(cmd, sizeof cmd,
             "trap '' HUP; sleep 60 & echo $! > %s.child; touch %s; "
             "while :; do sleep 0.1; done", ready, ready);
    uint64_t proc_id;
    int fds[3];
    uint32_t pid = spawn_held(&c, cmd, &proc_id, fds);
    for (int i = 0; i < 3; i++)
        close(fds[i]);
    for (int i = 0; i < 1000 && access(ready, F_OK) < 0; i++)
        usleep(10000);
    ASSERT_EQ(access(ready, F_OK), 0);
    char child_file[160], spid[32] = {0};
    snprintf(child_file, sizeof child_file, "%s.child", ready);
    int cf = open(child_file, O_RDONLY);
    ASSERT(cf >= 0);
    ASSERT(read(cf, spid, sizeof spid - 1) > 0);
    close(cf);
    pid_t child = atoi(spid);
    ASSERT(child > 0);
    uint64_t closed = cb_now_ns();
    close(c.fd);
    struct exit_ev e = wait_exit(&watcher, pid);
    uint64_t waited_ms = (cb_now_ns() - closed) / 1000000;
    ASSERT_EQ(e.signo, SIGKILL);
    /* not killed before the grace: it had its chance to end on SIGHUP */
    ASSERT(waited_ms >= HANGUP_GRACE_MS - 100);
    /* its background sleep (same group, ignoring HUP too) went with it */
    for (int i = 0; i < 500 && kill(child, 0) == 0; i++)
        usleep(10000);
    ASSERT(kill(child, 0) < 0);
    stop_init(&ip);
}

/* At most INIT_MAX_DRAINING handed over: the next DRAIN is refused
 * (ENOSPC) and the daemon keeps reading that one itself. */
#define DRAINING_BOUND 64 /* INIT_MAX_DRAINING, src/init/init.h */
TEST(init_drain_is_bounded)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    for (int i = 0; i <= DRAINING_BOUND; i++) {
        uint64_t proc_id;
        int fds[3];
        spawn_held(&c, "exec sleep 30", &proc_id, fds);
        for (int k = 0; k < 3; k++)
            close(fds[k]);
        struct cb_builder b;
        begin(&c, &b, CB_MSG_DRAIN);
        add_proc_id(&b, &proc_id);
        struct frame f;
        recv_for(&c, send_req(&c, &b), &f);
        if (i < DRAINING_BOUND) {
            ASSERT_EQ(f.h.type, CB_MSG_OK);
        } else {
            ASSERT_EQ(f.h.type, CB_MSG_ERROR);
            ASSERT_EQ(fu32(&f, CB_F_ERRNO), ENOSPC);
        }
        frame_free(&f);
    }
    stop_init(&ip);
}

/* At most INIT_MAX_HELD execs' pipes held: the next exec still runs, init
 * keeps nothing of it (its DRAIN finds nothing: ESRCH, and the daemon
 * drains it itself), and the held ones are still handed over. */
#define HELD_BOUND 256 /* INIT_MAX_HELD, src/init/init.h */
TEST(init_held_is_bounded)
{
    struct initp ip;
    start_init(&ip);
    struct client c;
    client_open(&c, &ip);
    simple(&c, CB_MSG_PING, CB_MSG_PONG, NULL, NULL);
    int base = count_fds(ip.pid);
    uint64_t first = 0, proc_id = 0;
    for (int i = 0; i <= HELD_BOUND; i++) {
        int fds[3];
        ASSERT(spawn_held(&c, "exec sleep 30", &proc_id, fds) > 0);
        for (int k = 0; k < 3; k++)
            close(fds[k]);
        if (i == 0)
            first = proc_id;
        /* settled: init closes its ends of the pipes it sent just after
         * the send, which the SPAWNED frame may beat here */
        if (i == HELD_BOUND - 1)
            ASSERT_EQ(fds_settle(ip.pid, base + 2 * HELD_BOUND), base + 2 * HELD_BOUND);
    }
    /* nothing more kept */
    ASSERT_EQ(fds_settle(ip.pid, base + 2 * HELD_BOUND), base + 2 * HELD_BOUND);
    struct cb_builder b;
    begin(&c, &b, CB_MSG_DRAIN);
    add_proc_id(&b, &proc_id);
    struct frame f;
    recv_for(&c, send_req(&c, &b), &f);
    ASSERT_EQ(f.h.type, CB_MSG_ERROR);
    ASSERT_EQ(fu32(&f, CB_F_ERRNO), ESRCH);
    frame_free(&f);
    simple(&c, CB_MSG_DRAIN, CB_MSG_OK, add_proc_id, &first);
    stop_init(&ip);
}

/* Init exempt from the OOM killer (the runtime's -17 in oom_adj): every
 * process it starts is an ordinary candidate again, and the floor it
 * inherits is 0, so it cannot exempt itself (a root test process could,
 * by its capability on the host; the e2e test checks inside a sandbox). */
static int read_adj(const char *file)
{
    char buf[16] = {0};
    int fd = open(file, O_RDONLY);
    ASSERT(fd >= 0);
    ASSERT(read(fd, buf, sizeof buf - 1) > 0);
    close(fd);
    return atoi(buf);
}

TEST(init_children_not_oom_exempt)
{
    /* As the runtime does (lib/ns.c), on this case's own process: init
     * inherits it. It takes CAP_SYS_RESOURCE, which some hosts' root
     * lacks (this build machine's). */
    int fd = open("/proc/self/oom_adj", O_WRONLY);
    ASSERT(fd >= 0);
    if (write(fd, "-17", 3) != 3)
        SKIP("cannot lower oom_adj here (%s): no CAP_SYS_RESOURCE", strerror(errno));
    close(fd);
    struct initp ip;
    start_init(&ip);
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/oom_score_adj", (int)ip.pid);
    ASSERT_EQ(read_adj(path), -1000);
    snprintf(path, sizeof path, "/proc/%d/oom_adj", (int)ip.pid);
    ASSERT_EQ(read_adj(path), -17);
    struct client c;
    client_open(&c, &ip);
    const char *argv[] = {"cat", "/proc/self/oom_score_adj", NULL};
    struct frame f;
    spawn(&c, CB_SPAWN_PIPES, argv, 0, NULL, &f);
    ASSERT_EQ(f.h.type, CB_MSG_SPAWNED);
    char buf[32];
    read_to_eof(f.fds[1], buf, sizeof buf);
    ASSERT_STREQ(buf, "0\n");
    frame_free(&f);
    /* A process it starts in the background, and what that one starts. */
    const char *sh[] = {"sh", "-c", "cat /proc/self/oom_score_adj", NULL};
    spawn(&c, CB_SPAWN_PIPES, sh, 0, NULL, &f);
    ASSERT_EQ(f.h.type, CB_MSG_SPAWNED);
    read_to_eof(f.fds[1], buf, sizeof buf);
    ASSERT_STREQ(buf, "0\n");
    frame_free(&f);
    stop_init(&ip);
}
