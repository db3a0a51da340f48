/* proto.h — the cellbox-init control protocol, version 1.
 *
 * One unix stream socket per connection between cellboxd (or a test) and the
 * cellbox-init that is PID 1 of a sandbox. Both directions carry frames:
 *
 *   struct cb_frame_header (12 bytes, little-endian)
 *     u32 length      bytes of payload that follow the header (<= CB_PROTO_MAX_PAYLOAD)
 *     u16 type        enum cb_msg_type
 *     u16 flags       0 (reserved; receivers reject unknown bits)
 *     u32 request_id  chosen by the daemon for a request; replies and the
 *                     stream of a subscription carry the same id; unsolicited
 *                     events (EXIT) carry 0.
 *   payload: a sequence of fields
 *     u16 tag         enum cb_field
 *     u16 reserved    0
 *     u32 length      bytes of value (the field must fit in the payload)
 *     value           u32/u64/i32 fields are 4/8/4 bytes LE; strings are bytes
 *                     without NUL (must not contain NUL); PROC fields hold a
 *                     nested field list. A tag may repeat (ARGV, ENV, PROC).
 *
 * File descriptors (SPAWN in pipe mode) travel as SCM_RIGHTS ancillary data
 * on the sendmsg() that carries the first byte of the reply frame.
 *
 * Both sides treat the other's bytes as hostile: lengths are checked before
 * use, unknown types are answered with ERROR (EPROTO) and unknown fields are
 * ignored, so versions can add fields. A frame whose header is malformed
 * ends the connection.
 *
 * This module is pure (no I/O beyond the helpers at the bottom, no
 * allocation beyond the builder's buffer) so it links into the static
 * cellbox-init and into cellboxd, and so it can be fuzzed. */
#ifndef CB_PROTO_H
#define CB_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CB_PROTO_VERSION 1
#define CB_PROTO_HEADER_SIZE 12
#define CB_PROTO_MAX_PAYLOAD (1u << 20) /* 1 MiB: caps what one frame can make us allocate */
#define CB_PROTO_MAX_FIELDS 4096        /* argv + env entries of one SPAWN */
#define CB_PROTO_MAX_FDS 3

enum cb_msg_type {
    /* daemon -> init requests */
    CB_MSG_HELLO = 1,       /* VERSION -> HELLO_OK {VERSION, PID(init's own, in-ns), NPROCS} */
    CB_MSG_SPAWN = 2,       /* see below -> SPAWNED or ERROR */
    CB_MSG_SIGNAL = 3,      /* PID, SIGNO, TREE -> OK or ERROR(ESRCH) */
    CB_MSG_LIST = 4,        /* -> PROCS {PROC...} every process init knows, running and exited */
    CB_MSG_SUBSCRIBE = 5,   /* PID, AFTER_SEQ, FOLLOW -> OUTPUT* then END (see below) */
    CB_MSG_UNSUBSCRIBE = 6, /* SUB_ID (the request_id of the SUBSCRIBE) -> OK */
    CB_MSG_STDIN = 7,       /* PID, DATA?, EOF? -> OK or ERROR (EPIPE when closed) */
    CB_MSG_RESIZE = 8,      /* PID, COLS, ROWS -> OK (PTY processes only) */
    CB_MSG_FORGET = 9,      /* PID -> OK: drop an exited process's record and output */
    CB_MSG_PING = 10,       /* -> PONG */
    CB_MSG_KILL_ALL = 11,   /* SIGNO -> OK: signal every process in the sandbox but init */
    CB_MSG_DRAIN = 12,      /* PROC_ID -> OK: init reads (and drops) the output pipes
                               of a PIPES process spawned with HOLD_OUTPUT until their
                               EOF, the sender having stopped reading them; ERROR
                               ESRCH: init holds none (every writer gone already, or
                               not held); ENOSPC: INIT_MAX_DRAINING reached. An init
                               that predates it answers ERROR EPROTO. */

    /* init -> daemon replies and events */
    CB_MSG_OK = 64,
    CB_MSG_ERROR = 65,    /* ERRNO, MESSAGE */
    CB_MSG_HELLO_OK = 66,
    CB_MSG_SPAWNED = 67,  /* PID, PROC_ID, STARTED_AT; fds attached in PIPES mode */
    CB_MSG_PROCS = 68,    /* PROC* */
    CB_MSG_OUTPUT = 69,   /* PID, STREAM, SEQ, DATA (one kept chunk) */
    CB_MSG_END = 70,      /* end of a subscription: PID, NEXT_SEQ, DROPPED? */
    CB_MSG_EXIT = 71,     /* event (request_id 0) to every connection: PID, PROC_ID,
                             EXIT_CODE, SIGNO, TIMED_OUT, STARTED_AT, ENDED_AT */
    CB_MSG_PONG = 72,
};

enum cb_field {
    CB_F_VERSION = 1,    /* u32 */
    CB_F_ARGV = 2,       /* string, repeated, in order; at least one */
    CB_F_ENV = 3,        /* "KEY=VALUE", repeated; the complete environment */
    CB_F_CWD = 4,        /* string, absolute path inside the sandbox */
    CB_F_UID = 5,        /* u32, in-sandbox uid */
    CB_F_GID = 6,        /* u32, in-sandbox gid */
    CB_F_MODE = 7,       /* u32 enum cb_spawn_mode */
    CB_F_COLS = 8,       /* u32 */
    CB_F_ROWS = 9,       /* u32 */
    CB_F_TIMEOUT_MS = 10,/* u64; 0 = none. init kills the process group with
                            SIGKILL at expiry and reports TIMED_OUT=1 */
    CB_F_PID = 11,       /* u32, pid inside the sandbox's pid namespace */
    CB_F_PROC_ID = 12,   /* u64, never reused within one init's life */
    CB_F_SIGNO = 13,     /* u32 */
    CB_F_TREE = 14,      /* u32 bool: signal the whole process group */
    CB_F_AFTER_SEQ = 15, /* u64: replay chunks with seq > AFTER_SEQ */
    CB_F_FOLLOW = 16,    /* u32 bool: keep streaming until the process ends */
    CB_F_SUB_ID = 17,    /* u32 */
    CB_F_DATA = 18,      /* bytes */
    CB_F_EOF = 19,       /* u32 bool */
    CB_F_STREAM = 20,    /* u32 enum cb_stream */
    CB_F_SEQ = 21,       /* u64, per process, starts at 1, one per kept chunk */
    CB_F_NEXT_SEQ = 22,  /* u64 */
    CB_F_DROPPED = 23,   /* u64: chunks lost to the ring's bound before AFTER_SEQ */
    CB_F_EXIT_CODE = 24, /* i32, -1 while running or when killed by a signal */
    CB_F_TIMED_OUT = 25, /* u32 bool */
    CB_F_STARTED_AT = 26,/* u64 unix time in ms */
    CB_F_ENDED_AT = 27,  /* u64 unix time in ms */
    CB_F_STATE = 28,     /* u32 enum cb_proc_state */
    CB_F_PROC = 29,      /* nested field list: PID PROC_ID MODE STATE EXIT_CODE SIGNO
                            TIMED_OUT STARTED_AT ENDED_AT ARGV* CWD UID, and
                            COLS ROWS for a live PTY (its current size) */
    CB_F_ERRNO = 30,     /* u32 */
    CB_F_MESSAGE = 31,   /* string */
    CB_F_NPROCS = 32,    /* u32 */
    CB_F_TAG = 33,       /* string: free label from the daemon, echoed in PROC */
    CB_F_FORGET_ON_EXIT = 34, /* u32 bool, SPAWN in PIPES mode only: drop the
                            record right after the EXIT event instead of
                            waiting for FORGET (saves the exec path a round
                            trip). An optional field: an init that predates
                            it ignores it and keeps the record, which its
                            INIT_MAX_EXITED bound still caps. */
    CB_F_HOLD_OUTPUT = 35, /* u32 bool, SPAWN in PIPES mode only: init keeps its
                            own copies of the stdout and stderr read ends (not
                            read) until their writers are all gone, or hands
                            them to DRAIN. A process the command left behind
                            (`server &`) holding the pipes then outlives the
                            daemon's reader, instead of dying of SIGPIPE at its
                            next write once the daemon restarts. Copies held
                            for a connection that closes without a DRAIN are
                            closed with it. Ignored by an init that predates it. */
};

enum cb_spawn_mode {
    CB_SPAWN_PIPES = 1,      /* stdin/stdout/stderr are fresh pipes; init answers
                                SPAWNED with 3 fds [stdin write end, stdout read
                                end, stderr read end] and keeps none of them */
    CB_SPAWN_BACKGROUND = 2, /* init reads stdout/stderr into bounded rings
                                (per process, default 1 MiB each stream); stdin
                                is a pipe fed by STDIN messages */
    CB_SPAWN_PTY = 3,        /* a pty from the sandbox's devpts; the process is
                                a session leader with it as controlling tty;
                                output (STREAM_PTY) kept in a >= 256 KiB ring */
};

enum cb_stream { CB_STREAM_STDOUT = 1, CB_STREAM_STDERR = 2, CB_STREAM_PTY = 3 };
enum cb_proc_state { CB_PROC_RUNNING = 1, CB_PROC_EXITED = 2 };

/* SUBSCRIBE: init first replays every kept chunk with seq > AFTER_SEQ as
 * OUTPUT frames, then, if FOLLOW and the process still runs, sends each new
 * chunk as it is read; then END (after the process has exited and all its
 * output was sent, or at once without FOLLOW). Chunks are at most 64 KiB.
 * If the daemon's connection does not drain, init stops reading that
 * process's pipes (back-pressure) rather than buffering without bound; for
 * PTY processes it drops the slow connection's subscription instead. */

/* Decisions fixed by the first implementation (cellbox-init, v1):
 * - SPAWN without MODE is BACKGROUND; COLS/ROWS default 80x24, CWD "/",
 *   UID/GID 0. More than CB_PROTO_MAX_FIELDS fields -> ERROR E2BIG.
 * - PROC entries also carry UID, TAG, NEXT_SEQ and DROPPED; LIST caps argv
 *   at 1 KiB per process and drops ARGV/CWD/TAG when the reply would pass
 *   the frame maximum.
 * - END's NEXT_SEQ is where to resume: SUBSCRIBE again with
 *   AFTER_SEQ = NEXT_SEQ - 1. DROPPED counts seqs of the requested range the
 *   subscriber never received.
 * - HELLO_OK's NPROCS counts running processes.
 * - UNSUBSCRIBE answers OK even when the subscription already ended (no END).
 * - STDIN with EOF on a PTY process sends ^D.
 * - EXIT is sent when the process is reaped, possibly before all of its
 *   output was read: for complete output wait for the subscription's END
 *   (BACKGROUND/PTY) or the pipes' EOF (PIPES).
 * - In production (--control-fd, PID 1) init accepts connections only from
 *   peers outside its pid namespace (SO_PEERCRED pid 0), so a sandbox process
 *   that somehow reached the socket cannot drive init. */

/* ---- decoded views (pointers into the received buffer; no copies) ---- */

struct cb_field_view {
    uint16_t tag;
    uint32_t len;
    const uint8_t *value;
};

struct cb_frame_header {
    uint32_t length;
    uint16_t type;
    uint16_t flags;
    uint32_t request_id;
};

/* Parse and validate a 12-byte header. Returns 0 or -EPROTO / -EMSGSIZE. */
int cb_proto_parse_header(const uint8_t *buf, size_t len,
                          struct cb_frame_header *out);

/* Iterate over the fields of a payload (or of a nested PROC value).
 *   size_t off = 0; struct cb_field_view f; int r;
 *   while ((r = cb_proto_next_field(p, n, &off, &f)) > 0) { ... }
 * Returns 1 with a field, 0 at the end, -EPROTO on a malformed list. */
int cb_proto_next_field(const uint8_t *payload, size_t len, size_t *off,
                        struct cb_field_view *out);

/* Typed accessors on one field; return 0 or -EPROTO (wrong size / NUL inside). */
int cb_field_u32(const struct cb_field_view *f, uint32_t *out);
int cb_field_u64(const struct cb_field_view *f, uint64_t *out);
int cb_field_i32(const struct cb_field_view *f, int32_t *out);
/* Copy a string field into a new NUL-terminated buffer (malloc); NULL on NUL
 * inside the value. */
char *cb_field_strdup(const struct cb_field_view *f);

/* Find the first field with a tag; returns 1 found, 0 absent, -EPROTO. */
int cb_proto_find(const uint8_t *payload, size_t len, uint16_t tag,
                  struct cb_field_view *out);

/* ---- building frames ---- */

struct cb_builder {
    uint8_t *buf; /* header + payload, malloc'd, owned by the builder */
    size_t len;
    size_t cap;
    size_t nest_start; /* offset of an open nested field, 0 if none */
    bool overflow;     /* set when the payload would pass the maximum */
};

void cb_builder_init(struct cb_builder *b, uint16_t type, uint32_t request_id);
/* Same, on a buffer the caller gives away (malloc'd, cap >= 64 bytes), so a
 * sender that builds many small frames can recycle one buffer instead of a
 * malloc/free per frame. */
void cb_builder_init_buffer(struct cb_builder *b, uint16_t type, uint32_t request_id,
                            uint8_t *buf, size_t cap);
void cb_builder_u32(struct cb_builder *b, uint16_t tag, uint32_t v);
void cb_builder_u64(struct cb_builder *b, uint16_t tag, uint64_t v);
void cb_builder_i32(struct cb_builder *b, uint16_t tag, int32_t v);
void cb_builder_str(struct cb_builder *b, uint16_t tag, const char *s);
void cb_builder_bytes(struct cb_builder *b, uint16_t tag, const void *p, size_t n);
/* Open / close one level of nesting (PROC). */
void cb_builder_begin(struct cb_builder *b, uint16_t tag);
void cb_builder_end(struct cb_builder *b);
/* Fill in the header's length. Returns 0 or -EMSGSIZE (overflow). After it,
 * b->buf / b->len are the complete frame. */
int cb_builder_finish(struct cb_builder *b);
void cb_builder_free(struct cb_builder *b);

/* ---- blocking helpers (used by cellbox-init's tests, the runtime's
 * readiness handshake, and simple clients; the daemon does its own async
 * I/O with the parse functions above) ---- */

/* Send a finished frame, with up to CB_PROTO_MAX_FDS fds. 0 or -errno. */
int cb_proto_send(int sock, const struct cb_builder *b, const int *fds, int nfds);
/* Receive one whole frame into *payload (malloc'd, caller frees), collecting
 * any SCM_RIGHTS fds (O_CLOEXEC) into fds[*nfds] (max CB_PROTO_MAX_FDS; extra
 * fds are closed). 0, -EPIPE at EOF, -EPROTO/-EMSGSIZE, or -errno. */
int cb_proto_recv(int sock, struct cb_frame_header *hdr, uint8_t **payload,
                  int *fds, int *nfds);

#endif
