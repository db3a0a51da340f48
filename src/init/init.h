/* init.h — internal interfaces of cellbox-init (the sandbox's PID 1).
 *
 * One process, one thread, one epoll loop. Everything init owns hangs off
 * struct init_state: the control connections, the process table with each
 * process's output ring, and the subscriptions that stream output to a
 * connection. Objects that an epoll event may still point at are never
 * freed in the middle of a batch: they are marked dead and freed by
 * init_reap_graveyard() after the batch (see main.c). */
#ifndef CB_INIT_H
#define CB_INIT_H

#include "proto.h"
#include "util.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/types.h>

/* Bounds. Everything a peer or a sandbox process can make init hold is
 * capped by one of these. */
#define INIT_MAX_CONNS 64
#define INIT_MAX_SUBS_PER_CONN 1024
#define INIT_MAX_RUNNING 1024
#define INIT_MAX_EXITED 1024            /* newest exited records kept */
#define INIT_SENDQ_SOFT (4u << 20)      /* stop streaming / reading requests */
#define INIT_SENDQ_HARD (16u << 20)     /* peer does not read at all: close */
#define INIT_RING_BYTES (1u << 20)      /* per BACKGROUND stream */
#define INIT_PTY_RING_BYTES (256u << 10)
#define INIT_CHUNK_MAX (64u << 10)
#define INIT_STDIN_PENDING_MAX (1u << 20)
#define INIT_LIST_ARGV_BYTES 1024       /* argv kept for LIST, per process */
#define INIT_LIST_TAG_BYTES 256
#define INIT_MAX_HELD 256               /* PIPES processes' output held (HOLD_OUTPUT) */
#define INIT_MAX_DRAINING 64            /* ...of which handed over by DRAIN */
/* SIGHUP to SIGKILL for an exec hung up because its connection closed: the
 * daemon's EXEC_HANGUP_GRACE_MS for a client that goes (api/exec.c). */
#define INIT_HANGUP_GRACE_MS 5000

enum watch_kind {
    WATCH_LISTEN,
    WATCH_SIGNAL,
    WATCH_CONN,
    WATCH_OUT,   /* BACKGROUND stdout/stderr read end */
    WATCH_STDIN, /* BACKGROUND stdin write end */
    WATCH_PTY,   /* PTY master: output and stdin */
    WATCH_HELD,  /* PIPES stdout/stderr read end kept by HOLD_OUTPUT (drain.c) */
};

/* What epoll_event.data.ptr points at. events is what is registered now (0
 * means not in the epoll set at all: a registered fd with no events would
 * still report HUP/ERR forever on a closed pipe). */
struct watch {
    enum watch_kind kind;
    int fd;
    uint32_t events;
    uint8_t stream; /* enum cb_stream for WATCH_OUT / WATCH_PTY */
    void *owner;
};

struct chunk {
    struct chunk *prev, *next; /* every stream, seq order */
    struct chunk *stream_next; /* same stream, seq order */
    uint64_t seq;
    uint32_t len;
    uint8_t stream;
    uint8_t data[];
};

struct sub;

struct proc {
    struct proc *prev, *next; /* table, oldest first */
    bool dead;                /* forgotten; freed after the batch */
    pid_t pid;
    uint64_t proc_id;
    uint32_t mode, state, signo, uid;
    int32_t exit_code;
    bool timed_out;
    bool forget_on_exit;           /* PIPES: drop the record once EXIT is sent */
    uint64_t started_at, ended_at; /* unix ms */
    uint64_t deadline_ns;          /* monotonic; 0 = no timeout */
    uint64_t hangup_kill_ns;       /* monotonic: SIGKILL to its group then (a
                                      hang-up's grace, drain.c); 0 = none */
    char **argv;                   /* truncated copy for LIST */
    char *cwd, *tag;

    /* Output: one list in seq order, plus per-stream lists so the oldest
     * chunk of the stream that passed its bound is dropped in O(1). */
    struct chunk *head, *tail;
    struct chunk *stream_head[4], *stream_tail[4];
    size_t stream_bytes[4], stream_cap[4];
    uint64_t next_seq, dropped;

    struct watch out, err, pty, in;
    bool paused; /* back-pressure: output fds taken out of epoll */
    uint8_t *in_buf; /* stdin bytes accepted but not yet written */
    size_t in_len;
    bool in_eof;     /* close stdin once in_buf is written */

    struct sub *subs; /* linked by proc_next */
};

struct sub {
    struct sub *conn_next, *proc_next;
    struct conn *conn;
    struct proc *proc;
    uint32_t id; /* request_id of the SUBSCRIBE */
    uint64_t after_seq;
    uint64_t sent;
    bool follow;
    struct chunk *next_chunk; /* next kept chunk to send; NULL = caught up */
};

struct qent {
    struct qent *next;
    uint8_t *buf;
    size_t len, off;
    int fds[CB_PROTO_MAX_FDS];
    int nfds;
};

struct conn {
    struct conn *prev, *next;
    bool dead;
    struct watch w;
    uint8_t *rbuf;
    size_t rlen, rcap;
    struct qent *qhead, *qtail;
    size_t queued;
    struct sub *subs;
    unsigned nsubs;
};

/* The output pipes of a PIPES process spawned with HOLD_OUTPUT (drain.c):
 * init's own copies of the read ends, watched for the hang-up that says
 * every writer is gone, and read (the data dropped) once a DRAIN hands
 * them over. Outlives the process record: what holds the pipes then is
 * what the process left behind. */
struct held {
    struct held *prev, *next;
    bool dead;            /* closed; freed after the batch */
    bool draining;
    uint64_t proc_id;
    struct conn *conn;    /* the connection that spawned it; NULL once draining */
    struct watch out[2];  /* stdout, stderr */
};

struct init_state {
    int epfd;
    int listen_fd, signal_fd;
    bool is_pid1;
    bool require_foreign_peer;
    struct watch listen_w, signal_w;
    struct conn *conns;
    unsigned nconns;
    struct proc *procs_head, *procs_tail;
    unsigned nrunning, nexited;
    uint64_t next_proc_id;
    struct conn *dead_conns;
    struct proc *dead_procs;
    struct held *held, *dead_held;
    unsigned nheld, ndraining;
};

/* main.c */
void init_watch_set(struct init_state *st, struct watch *w, uint32_t events);
void init_watch_close(struct init_state *st, struct watch *w);
uint64_t init_unix_ms(void);

/* conn.c */
void conn_accept(struct init_state *st);
void conn_on_event(struct init_state *st, struct conn *c, uint32_t events);
void conn_close(struct init_state *st, struct conn *c);
/* Queue a built frame (takes the buffer; fds are sent then closed). */
void conn_queue(struct conn *c, struct cb_builder *b, const int *fds, int nfds);
/* Allocate (and fault in) the recycled frame buffer at start. */
void conn_prepare(void);
/* cb_builder_init on init's recycled frame buffer when there is one. */
void init_builder(struct cb_builder *b, uint16_t type, uint32_t request_id);
void conn_reply_error(struct conn *c, uint32_t request_id, int err,
                      const char *fmt, ...) CB_PRINTF(4, 5);
void conn_reply_simple(struct conn *c, uint16_t type, uint32_t request_id);
void conn_service_all(struct init_state *st);
void conn_free(struct conn *c);

/* handlers.c */
/* Handle one request frame. Returns 0, or -EPROTO to close the connection. */
int handle_request(struct init_state *st, struct conn *c,
                   const struct cb_frame_header *h, const uint8_t *p);

/* proc.c */
struct proc *proc_find(struct init_state *st, pid_t pid, bool running_only);
/* Record a process that spawn_process() started; takes its fds. */
struct spawn_request;
struct spawn_result;
struct proc *proc_create(struct init_state *st, const struct spawn_request *req,
                         const struct spawn_result *res);
void proc_on_output(struct init_state *st, struct watch *w, uint32_t events);
void proc_on_stdin(struct init_state *st, struct watch *w, uint32_t events);
int proc_write_stdin(struct init_state *st, struct proc *p, const uint8_t *data,
                     size_t len, bool eof);
void proc_reap(struct init_state *st);
void proc_forget(struct init_state *st, struct proc *p);
void proc_expire_timeouts(struct init_state *st);
int proc_next_timeout_ms(struct init_state *st);
void proc_service_all(struct init_state *st);
void proc_kill_known_groups(struct init_state *st, int signo);
void proc_free(struct proc *p);
bool proc_output_open(const struct proc *p);
void proc_build(struct cb_builder *b, const struct proc *p, bool compact);

/* sub (in proc.c) */
int sub_start(struct init_state *st, struct conn *c, struct proc *p,
              uint32_t id, uint64_t after_seq, bool follow);
void sub_end(struct sub *s, bool send_end);
bool sub_pump(struct sub *s);

/* drain.c */
/* Keep copies of a just spawned PIPES process's stdout/stderr read ends
 * for connection c (nothing when INIT_MAX_HELD are held already). */
void held_add(struct init_state *st, struct conn *c, uint64_t proc_id, int out_fd,
              int err_fd);
/* The process proc_id was reaped: let go of pipes without writers, watch
 * the others for their hang-up. */
void held_exited(struct init_state *st, uint64_t proc_id);
void held_on_event(struct init_state *st, struct watch *w, uint32_t events);
/* DRAIN: 0, -ESRCH (none held for proc_id) or -ENOSPC. */
int held_drain(struct init_state *st, uint64_t proc_id);
/* c closed: the copies it did not hand over are closed. */
void held_conn_closed(struct init_state *st, struct conn *c);
void held_free_dead(struct init_state *st);

/* spawn.c */
struct spawn_request {
    char **argv, **env; /* NULL-terminated, owned */
    size_t argc, envc;
    char *cwd, *tag;
    uint32_t uid, gid, mode, cols, rows, forget_on_exit, hold_output;
    uint64_t timeout_ms;
};
struct spawn_result {
    pid_t pid;
    int stdin_fd, stdout_fd, stderr_fd, pty_fd;
};
/* Map the child stack and note init's signal dispositions, so the first
 * spawn costs what every later one does. Call once at start, after the
 * signal setup; spawn_process calls it too if it was not. 0 or -errno. */
int spawn_prepare(void);
/* Clone and exec; returns 0 once exec succeeded, or -errno with *msg set
 * (malloc'd, "exec python4: No such file or directory"). */
int spawn_process(const struct spawn_request *req, struct spawn_result *res,
                  char **msg);
void spawn_request_free(struct spawn_request *req);

#endif
