/* files.c — the files API. Every operation resolves its path inside the
 * sandbox root through fsops.h (openat2 RESOLVE_IN_ROOT), on the worker pool,
 * never on the loop: a symlink planted by sandbox code cannot lead the
 * daemon (root on the host) out of the sandbox. Uploads are streamed to the
 * file with libuv's async writes, never buffered whole; downloads are read
 * in chunks and sent as the client takes them. */
#include <fcntl.h>
#include <sys/fsuid.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "fsops.h"
#include "json.h"
#include "log.h"

#define CHUNK (256 * 1024)

enum fs_kind {
    FS_STAT, FS_LIST, FS_MKDIR, FS_MOVE, FS_REMOVE, FS_OPEN_READ, FS_OPEN_WRITE,
    FS_EXTRACT, FS_ARCHIVE, FS_WATCH,
};

/* Tar entries one upload may create: far beyond real trees, but a bound on
 * the inodes and work a single request can cause. */
#define MAX_TAR_ENTRIES 1000000
/* After a failed extraction, read and drop at most this much of the rest of
 * the body so the client gets the error instead of a reset connection. */
#define MAX_DRAIN (16ULL * 1024 * 1024)

struct fs_job {
    uv_work_t w;
    struct cb_http_req *req;
    struct cb_sbx *s;
    enum fs_kind kind;
    int root;
    struct cb_fs_owner own;
    char *path, *path2;
    int depth;
    bool flag; /* parents / recursive / mkdirs */
    uint32_t mode;
    int result; /* fd for opens */
    struct cb_fs_stat st;
    struct cb_fs_stat *items;
    size_t count;
    struct cb_error *err;
    /* transfers */
    uv_fs_t fsreq;
    char *buf;
    uint64_t offset, remaining, written;
    bool writing, body_done, failed, reading, opened;
    uv_after_work_cb after;
    /* archives and watches: the loop's side is a libuv handle, freed only
     * once closed (handles counts the open ones; dead = job_free called) */
    int worker_fd;      /* pipe end the pool job uses; the job closes it */
    uv_pipe_t pipe;     /* the loop's end of that pipe */
    bool pipe_open;
    uv_write_t wreq;
    uv_poll_t poll;
    bool poll_open, polling;
    struct cb_fs_watch *watch;
    struct cb_exit_listener exit_l;
    bool attached, listening;
    bool worker_done, responded, draining, pipe_broken, eof;
    int handles;
    bool dead;
};

static void job_destroy(struct fs_job *j)
{
    if (j->root >= 0)
        close(j->root);
    if (j->result >= 0 && (j->kind == FS_OPEN_READ || j->kind == FS_OPEN_WRITE))
        close(j->result);
    free(j->path);
    free(j->path2);
    cb_fs_stat_clear(&j->st);
    for (size_t i = 0; i < j->count; i++)
        cb_fs_stat_clear(&j->items[i]);
    free(j->items);
    cb_error_free(j->err);
    free(j->buf);
    if (j->worker_fd >= 0)
        close(j->worker_fd);
    cb_fs_watch_close(j->watch); /* after its poll handle closed */
    cb_sbx_unref(j->s);
    free(j);
}

static void handle_closed(uv_handle_t *h)
{
    struct fs_job *j = h->data;
    if (--j->handles == 0 && j->dead)
        job_destroy(j);
}

static void pipe_close(struct fs_job *j)
{
    if (!j->pipe_open)
        return;
    j->pipe_open = false;
    uv_close((uv_handle_t *)&j->pipe, handle_closed); /* cancels a pending write */
}

/* Free now, or once the job's libuv handles have closed. Never called while
 * the pool job runs: only from its after callback or before it started. */
static void job_free(struct fs_job *j)
{
    j->dead = true;
    pipe_close(j);
    if (j->poll_open) {
        j->poll_open = false;
        uv_close((uv_handle_t *)&j->poll, handle_closed);
    }
    if (j->handles == 0)
        job_destroy(j);
}

static const char *type_name(enum cb_fs_type t)
{
    switch (t) {
    case CB_FS_FILE: return "file";
    case CB_FS_DIR: return "dir";
    case CB_FS_SYMLINK: return "symlink";
    case CB_FS_OTHER: return "other";
    }
    return "other";
}

static json_t *stat_json(const struct cb_fs_stat *st)
{
    json_t *o = json_pack("{s:s,s:s,s:I,s:s+,s:f,s:I,s:I}", "path", st->path ? st->path : "",
                          "type", type_name(st->type), "size", (json_int_t)st->size,
                          "mode", "0", "", "mtime", st->mtime, "uid", (json_int_t)st->uid,
                          "gid", (json_int_t)st->gid);
    char mode[8];
    snprintf(mode, sizeof(mode), "0%o", st->mode & 07777);
    json_object_set_new(o, "mode", json_string(mode));
    if (st->link_target)
        json_object_set_new(o, "link_target", json_string(st->link_target));
    return o;
}

/* Act as the sandbox user for the duration of the operation.
 *
 * The sandbox's overlay is mounted inside its user namespace, so the kernel
 * refuses to create an inode owned by an id that namespace does not map
 * (host root would get EOVERFLOW). Switching this worker thread's fsuid/fsgid
 * (per-thread on Linux; glibc does not broadcast setfsuid) to the host ids of
 * the in-sandbox user also drops the thread's file capabilities
 * (DAC_OVERRIDE, FOWNER, CHOWN...), so the files API gets exactly the
 * permissions that user has inside the sandbox, never more. */
static void become_owner(const struct cb_fs_owner *own)
{
    setfsgid(own->gid);
    setfsuid(own->uid);
}

static void become_root(void)
{
    setfsuid(0);
    setfsgid(0);
}

static void work_cb(uv_work_t *w)
{
    struct fs_job *j = w->data;
    become_owner(&j->own);
    switch (j->kind) {
    case FS_STAT: j->result = cb_fs_stat(j->root, j->path, &j->own, &j->st, &j->err); break;
    case FS_LIST:
        j->result = cb_fs_list(j->root, j->path, j->depth, &j->own, &j->items, &j->count, &j->err);
        break;
    case FS_MKDIR: j->result = cb_fs_mkdir(j->root, j->path, j->flag, 0755, &j->own, &j->err); break;
    case FS_MOVE: j->result = cb_fs_move(j->root, j->path, j->path2, &j->err); break;
    case FS_REMOVE: j->result = cb_fs_remove(j->root, j->path, j->flag, &j->err); break;
    case FS_OPEN_READ:
        j->result = cb_fs_open_read(j->root, j->path, &j->own, &j->st, &j->err);
        break;
    case FS_OPEN_WRITE:
        j->result = cb_fs_open_write(j->root, j->path, j->mode, j->flag, &j->own, &j->err);
        break;
    case FS_EXTRACT:
        j->result = cb_fs_archive_extract(j->root, j->path, j->worker_fd, &j->own,
                                          j->s->d->cfg.max_upload, MAX_TAR_ENTRIES, &j->err);
        break;
    case FS_ARCHIVE:
        j->result = cb_fs_archive_create_as(j->root, j->path, j->worker_fd, &j->own, &j->err);
        break;
    case FS_WATCH:
        j->result = cb_fs_watch_open(j->root, j->path, j->flag, &j->watch, &j->err);
        break;
    }
    become_root();
    if (j->kind == FS_EXTRACT || j->kind == FS_ARCHIVE) {
        /* Closing our end here, on the pool, is what tells the loop's side
         * the transfer is over: the uploader's writes fail with EPIPE
         * instead of blocking, the downloader reads EOF. */
        close(j->worker_fd);
        j->worker_fd = -1;
    }
}

static void after_simple(uv_work_t *w, int status)
{
    struct fs_job *j = w->data;
    struct cb_http_req *req = j->req;
    if (j->result < 0) {
        cb_http_respond_cb_error(req, j->err);
    } else if (j->kind == FS_STAT) {
        cb_http_respond_json(req, 200, stat_json(&j->st));
    } else if (j->kind == FS_LIST) {
        json_t *items = json_array();
        for (size_t i = 0; i < j->count; i++)
            json_array_append_new(items, stat_json(&j->items[i]));
        cb_http_respond_json(req, 200, json_pack("{s:o}", "items", items));
    } else {
        cb_http_respond_json(req, j->kind == FS_MKDIR ? 201 : 200, json_pack("{s:b}", "ok", 1));
    }
    job_free(j);
}

/* Common start: sandbox ready (woken if paused), root fd and owner ids
 * taken on the loop, then the blocking part on the pool. */
static void job_ready(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct fs_job *j = arg;
    const struct cb_tier_ops *t = s->d->tier;
    struct cb_error *e2 = NULL;
    if (err || t->root_fd(s->h, &j->root, &e2) < 0) {
        j->root = -1;
        cb_http_respond_cb_error(j->req, err ? err : e2);
        cb_error_free(e2);
        job_free(j);
        return;
    }
    uid_t hu, bu;
    gid_t hg, bg;
    t->map_ids(s->h, 1000, 1000, &hu, &hg);
    t->map_ids(s->h, 0, 0, &bu, &bg);
    j->own = (struct cb_fs_owner){hu, hg, bu, bg};
    j->w.data = j;
    uv_queue_work(s->d->loop, &j->w, work_cb, j->after);
}

static struct fs_job *new_job(struct cb_http_req *req, enum fs_kind kind, const char *path)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return NULL;
    struct cb_error *err = NULL;
    char *norm = path ? cb_fs_normalize(path, &err) : NULL;
    if (!norm) {
        if (!err)
            cb_error_set(&err, 0, CB_ERR_BAD_REQUEST, "'path' is required");
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        return NULL;
    }
    struct fs_job *j = cb_xcalloc(1, sizeof(*j));
    j->req = req;
    j->s = s;
    cb_sbx_ref(s);
    j->kind = kind;
    j->root = -1;
    j->result = -1;
    j->worker_fd = -1;
    j->path = norm;
    return j;
}

static void start_job(struct fs_job *j, uv_after_work_cb after)
{
    if (strcmp(j->s->rec.state, "stopped") == 0) {
        cb_http_respond_error(j->req, CB_ERR_CONFLICT, "sandbox is stopped; start it first");
        job_free(j);
        return;
    }
    j->after = after;
    cb_sbx_ready(j->s, job_ready, j);
}

static struct fs_job *query_job(struct cb_http_req *req, enum fs_kind kind)
{
    _cleanup_free_ char *path = cb_http_query(req, "path");
    return new_job(req, kind, path);
}

void cb_api_files_stat(struct cb_http_req *req)
{
    struct fs_job *j = query_job(req, FS_STAT);
    if (j)
        start_job(j, after_simple);
}

void cb_api_files_list(struct cb_http_req *req)
{
    _cleanup_free_ char *depth = cb_http_query(req, "depth");
    long d = depth ? strtol(depth, NULL, 10) : 1;
    if (d < 1 || d > 64) {
        cb_http_respond_error(req, CB_ERR_BAD_REQUEST, "'depth' must be 1..64");
        return;
    }
    struct fs_job *j = query_job(req, FS_LIST);
    if (!j)
        return;
    j->depth = (int)d;
    start_job(j, after_simple);
}

void cb_api_files_delete(struct cb_http_req *req)
{
    struct fs_job *j = query_job(req, FS_REMOVE);
    if (!j)
        return;
    j->flag = cb_http_query_bool(req, "recursive");
    start_job(j, after_simple);
}

void cb_api_files_mkdir(struct cb_http_req *req)
{
    json_t *body = cb_api_body(req, false);
    if (!body)
        return;
    const char *path = NULL;
    bool parents = true;
    struct cb_error *err = NULL;
    if (cb_json_get_string(body, "path", CB_FS_MAX_PATH, &path, &err) < 0 ||
        cb_json_get_bool(body, "parents", &parents, &err) < 0) {
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        json_decref(body);
        return;
    }
    struct fs_job *j = new_job(req, FS_MKDIR, path);
    json_decref(body);
    if (!j)
        return;
    j->flag = parents;
    start_job(j, after_simple);
}

void cb_api_files_move(struct cb_http_req *req)
{
    json_t *body = cb_api_body(req, false);
    if (!body)
        return;
    const char *from = NULL, *to = NULL;
    struct cb_error *err = NULL;
    if (cb_json_get_string(body, "from", CB_FS_MAX_PATH, &from, &err) < 0 ||
        cb_json_get_string(body, "to", CB_FS_MAX_PATH, &to, &err) < 0 || !to) {
        if (!err)
            cb_error_set(&err, 0, CB_ERR_BAD_REQUEST, "'from' and 'to' are required");
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        json_decref(body);
        return;
    }
    struct fs_job *j = new_job(req, FS_MOVE, from);
    if (j) {
        j->path2 = cb_fs_normalize(to, &err);
        if (!j->path2) {
            cb_http_respond_cb_error(req, err);
            cb_error_free(err);
            job_free(j);
            j = NULL;
        }
    }
    json_decref(body);
    if (j)
        start_job(j, after_simple);
}

/* ------------------------------------------------------------- reading */

static void read_next(struct fs_job *j);

static void read_cb(uv_fs_t *r)
{
    struct fs_job *j = r->data;
    ssize_t n = r->result;
    uv_fs_req_cleanup(r);
    j->reading = false;
    if (n <= 0 || j->req->aborted) {
        /* A file that shrank under us ends the body early: the client sees
         * a short body against Content-Length and knows it is incomplete. */
        cb_http_stream_end(j->req);
        job_free(j);
        return;
    }
    cb_http_stream_write(j->req, j->buf, (size_t)n);
    j->offset += (uint64_t)n;
    j->remaining -= (uint64_t)n;
    if (j->remaining == 0) {
        cb_http_stream_end(j->req);
        job_free(j);
        return;
    }
    if (!cb_http_congested(j->req))
        read_next(j);
    /* else: on_drain calls read_next */
}

static void read_next(struct fs_job *j)
{
    size_t want = j->remaining < CHUNK ? (size_t)j->remaining : CHUNK;
    uv_buf_t b = uv_buf_init(j->buf, (unsigned)want);
    j->fsreq.data = j;
    j->reading = true;
    if (uv_fs_read(j->s->d->loop, &j->fsreq, j->result, &b, 1, (int64_t)j->offset, read_cb) < 0) {
        cb_http_stream_end(j->req);
        job_free(j);
    }
}

static void read_drain_hook(struct cb_http_req *req)
{
    struct fs_job *j = req->data;
    if (!j->reading && j->remaining > 0)
        read_next(j);
}

/* Range: bytes=a-b | a- | -n (one range only). */
static int parse_range(const char *h, uint64_t size, uint64_t *start, uint64_t *len)
{
    if (strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return -1;
    const char *p = h + 6;
    char *end;
    if (*p == '-') {
        unsigned long long n = strtoull(p + 1, &end, 10);
        if (*end || n == 0)
            return -1;
        *start = n >= size ? 0 : size - n;
        *len = size - *start;
        return 0;
    }
    unsigned long long a = strtoull(p, &end, 10);
    if (*end != '-' || a >= size)
        return -1;
    unsigned long long b = end[1] ? strtoull(end + 1, &end, 10) : size - 1;
    if (*end || b < a)
        return -1;
    if (b >= size)
        b = size - 1;
    *start = a;
    *len = b - a + 1;
    return 0;
}

static void after_open_read(uv_work_t *w, int status)
{
    struct fs_job *j = w->data;
    struct cb_http_req *req = j->req;
    if (j->result < 0) {
        cb_http_respond_cb_error(req, j->err);
        job_free(j);
        return;
    }
    uint64_t size = j->st.size, start = 0, len = size;
    const char *range = cb_http_header(req, "range");
    char extra[160] = "Accept-Ranges: bytes\r\n";
    int status_code = 200;
    if (range && size > 0) {
        if (parse_range(range, size, &start, &len) < 0) {
            char cr[64];
            snprintf(cr, sizeof(cr), "Content-Range: bytes */%llu\r\n", (unsigned long long)size);
            cb_http_respond_status(req, 416, "bad_request", "range not satisfiable", cr);
            job_free(j);
            return;
        }
        status_code = 206;
        snprintf(extra, sizeof(extra), "Accept-Ranges: bytes\r\nContent-Range: bytes %llu-%llu/%llu\r\n",
                 (unsigned long long)start, (unsigned long long)(start + len - 1),
                 (unsigned long long)size);
    }
    cb_http_stream_begin(req, status_code, "application/octet-stream", (int64_t)len, extra);
    if (len == 0) {
        cb_http_stream_end(req);
        job_free(j);
        return;
    }
    j->offset = start;
    j->remaining = len;
    j->buf = cb_xmalloc(CHUNK);
    req->data = j;
    req->on_drain = read_drain_hook;
    read_next(j);
}

void cb_api_files_read(struct cb_http_req *req)
{
    struct fs_job *j = query_job(req, FS_OPEN_READ);
    if (j)
        start_job(j, after_open_read);
}

/* ------------------------------------------------------------- writing */

struct chunk {
    struct chunk *next;
    size_t len;
    char data[];
};

static void write_done_respond(struct fs_job *j)
{
    if (j->failed)
        return;
    cb_http_respond_json(j->req, 201, json_pack("{s:s,s:I}", "path", j->path, "size",
                                                (json_int_t)j->written));
    job_free(j);
}

static void write_cb(uv_fs_t *r)
{
    struct fs_job *j = r->data;
    ssize_t n = r->result;
    uv_fs_req_cleanup(r);
    j->writing = false;
    free(j->buf);
    j->buf = NULL;
    if (n < 0) {
        j->failed = true;
        cb_http_respond_error(j->req, n == -EDQUOT || n == -ENOSPC ? CB_ERR_LIMIT
                                                                      : CB_ERR_INTERNAL,
                              "writing %s: %s", j->path, uv_strerror((int)n));
        job_free(j);
        return;
    }
    j->written += (uint64_t)n;
    if (j->body_done)
        write_done_respond(j);
    else
        cb_http_body_resume(j->req);
}

/* Is the rest of the body known (Content-Length) and small enough to drain? */
static bool put_rest_small(const struct fs_job *j)
{
    const struct cb_http_req *req = j->req;
    return req->content_length != UINT64_MAX &&
           req->content_length - req->body_len <= MAX_DRAIN;
}

/* The open failed before the body was over: answer once the (small) rest
 * has been read, so the client sees the error rather than a reset. */
static void write_fail_respond(struct fs_job *j)
{
    j->req->data = NULL;
    cb_http_respond_cb_error(j->req, j->err);
    job_free(j);
}

static int write_body(struct cb_http_req *req, const char *data, size_t len)
{
    struct fs_job *j = req->data;
    if (!j || j->failed || j->draining)
        return 0;
    if (!j->opened) {
        /* The file is being opened on the pool: keep this chunk and pause
         * the parser; after_open_write writes it and resumes. */
        j->buf = cb_xmalloc(len);
        memcpy(j->buf, data, len);
        j->remaining = len;
        return 1;
    }
    /* One write in flight: copy the chunk, pause the parser until written. */
    j->buf = cb_xmalloc(len);
    memcpy(j->buf, data, len);
    uv_buf_t b = uv_buf_init(j->buf, (unsigned)len);
    j->fsreq.data = j;
    j->writing = true;
    if (uv_fs_write(j->s->d->loop, &j->fsreq, j->result, &b, 1, -1, write_cb) < 0) {
        j->writing = false;
        j->failed = true;
        cb_http_respond_error(req, CB_ERR_INTERNAL, "write failed");
        job_free(j);
        return -1;
    }
    return 1;
}

static void write_body_end(struct cb_http_req *req)
{
    struct fs_job *j = req->data;
    if (j && j->draining) {
        write_fail_respond(j);
        return;
    }
    if (!j || j->failed)
        return;
    j->body_done = true;
    if (!j->writing && j->opened)
        write_done_respond(j);
}

static void write_abort(struct cb_http_req *req)
{
    struct fs_job *j = req->data;
    if (j && j->draining) {
        write_fail_respond(j);
        return;
    }
    if (!j || j->writing || j->failed)
        return; /* write_cb sees the abort through the response no-op */
    j->failed = true;
    cb_http_respond(req, 400, NULL, NULL, NULL, 0);
    job_free(j);
}

static void after_open_write(uv_work_t *w, int status)
{
    struct fs_job *j = w->data;
    struct cb_http_req *req = j->req;
    if (j->result < 0) {
        if (!req->message_complete && !req->aborted && put_rest_small(j)) {
            free(j->buf); /* a chunk kept while opening */
            j->buf = NULL;
            j->draining = true;
            cb_http_body_resume(req);
            return;
        }
        j->failed = true;
        write_fail_respond(j);
        return;
    }
    if (req->aborted) {
        write_abort(req);
        return;
    }
    j->opened = true;
    if (j->buf) {
        uv_buf_t b = uv_buf_init(j->buf, (unsigned)j->remaining);
        j->fsreq.data = j;
        j->writing = true;
        if (uv_fs_write(j->s->d->loop, &j->fsreq, j->result, &b, 1, -1, write_cb) < 0) {
            j->failed = true;
            cb_http_respond_error(req, CB_ERR_INTERNAL, "write failed");
            job_free(j);
        }
        return;
    }
    if (j->body_done) {
        write_done_respond(j); /* empty body, already over */
        return;
    }
    cb_http_body_resume(req);
}

void cb_api_files_write(struct cb_http_req *req)
{
    _cleanup_free_ char *mode_s = cb_http_query(req, "mode");
    unsigned long mode = 0644;
    if (mode_s) {
        char *end;
        mode = strtoul(mode_s, &end, 8);
        if (*end || mode > 07777) {
            cb_http_respond_error(req, CB_ERR_BAD_REQUEST, "'mode' must be octal, e.g. 0644");
            return;
        }
    }
    struct fs_job *j = query_job(req, FS_OPEN_WRITE);
    if (!j)
        return;
    j->mode = (uint32_t)(mode & 0777); /* no setuid/setgid bits from the API */
    j->flag = cb_http_query_bool(req, "mkdirs");
    req->data = j;
    req->on_body = write_body;
    req->on_body_end = write_body_end;
    req->on_abort = write_abort;
    start_job(j, after_open_write);
}

/* ------------------------------------------------------ tar upload
 *
 * The body goes into a pipe whose read end a pool job hands to
 * cb_fs_archive_extract (as the sandbox user). The loop writes with
 * uv_try_write and, when the pipe is full, queues the rest and pauses the
 * parser until it has gone in: at most one chunk is ever held in memory.
 * The pool job closes the read end when it is done; the request is answered
 * once both the job has finished and the body has been read (or dropped). */

static void put_progress(struct fs_job *j);

static void put_respond(struct fs_job *j)
{
    j->responded = true;
    if (j->result < 0)
        cb_http_respond_cb_error(j->req, j->err);
    else
        cb_http_respond_json(j->req, 201, json_pack("{s:s,s:i}", "path", j->path, "entries",
                                                    j->result));
    job_free(j);
}

static void put_progress(struct fs_job *j)
{
    if (j->responded || j->writing)
        return;
    if (j->worker_done) {
        if (j->body_done || j->req->aborted || (j->result < 0 && !put_rest_small(j))) {
            put_respond(j);
            return;
        }
        /* The archive ended (or failed) before the body did: read and drop
         * the rest (tar padding, usually) so the client gets the answer. */
        j->draining = true;
        cb_http_body_resume(j->req);
        return;
    }
    if (j->pipe_broken)
        return; /* the job is ending; its after callback comes next */
    if (j->body_done || j->req->aborted) {
        pipe_close(j); /* EOF for the extractor */
        return;
    }
    cb_http_body_resume(j->req);
}

static void put_write_cb(uv_write_t *w, int status)
{
    struct fs_job *j = w->data;
    free(j->buf);
    j->buf = NULL;
    j->writing = false;
    if (status == UV_ECANCELED)
        return; /* the pipe is closing: job_free or an abort closed it */
    if (status < 0)
        j->pipe_broken = true;
    put_progress(j);
}

static int put_body(struct cb_http_req *req, const char *data, size_t len)
{
    struct fs_job *j = req->data;
    if (j->draining || j->worker_done || j->pipe_broken || !j->pipe_open)
        return 0;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&j->pipe, &b, 1);
    if (n == (int)len)
        return 0;
    if (n < 0 && n != UV_EAGAIN) {
        /* EPIPE: the extractor stopped reading (it failed or the archive
         * ended); wait for its answer with the parser paused. */
        j->pipe_broken = true;
        return 1;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    j->buf = cb_xmalloc(len - done);
    memcpy(j->buf, data + done, len - done);
    b = uv_buf_init(j->buf, (unsigned)(len - done));
    j->wreq.data = j;
    if (uv_write(&j->wreq, (uv_stream_t *)&j->pipe, &b, 1, put_write_cb) < 0) {
        free(j->buf);
        j->buf = NULL;
        j->pipe_broken = true;
        return 1;
    }
    j->writing = true;
    return 1;
}

static void put_body_end(struct cb_http_req *req)
{
    struct fs_job *j = req->data;
    j->body_done = true;
    put_progress(j);
}

static void put_abort(struct cb_http_req *req)
{
    struct fs_job *j = req->data;
    /* The extractor may be blocked reading: EOF ends it (with an error, the
     * archive being truncated); its after callback finishes the request. */
    j->writing = false;
    pipe_close(j);
    put_progress(j); /* answers now if the job is already over (draining) */
}

static void after_extract(uv_work_t *w, int status)
{
    struct fs_job *j = w->data;
    j->worker_done = true;
    put_progress(j);
}

/* A pipe for a transfer: the pool job's end stays blocking, the loop's end
 * goes to libuv (which makes it non-blocking). loop_is_writer picks which. */
static int transfer_pipe(struct fs_job *j, bool loop_is_writer)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        cb_http_respond_error(j->req, CB_ERR_INTERNAL, "pipe: %s", strerror(errno));
        return -1;
    }
    /* A bigger pipe means fewer wake-ups per MiB; failure is harmless. */
    (void)fcntl(fds[1], F_SETPIPE_SZ, 1024 * 1024);
    int loop_fd = loop_is_writer ? fds[1] : fds[0];
    j->worker_fd = loop_is_writer ? fds[0] : fds[1];
    uv_pipe_init(j->s->d->loop, &j->pipe, 0);
    j->pipe.data = j;
    j->handles++;
    j->pipe_open = true;
    if (uv_pipe_open(&j->pipe, loop_fd) < 0) {
        close(loop_fd);
        cb_http_respond_error(j->req, CB_ERR_INTERNAL, "pipe: cannot attach to the loop");
        return -1;
    }
    return 0;
}

void cb_api_archive_put(struct cb_http_req *req)
{
    struct fs_job *j = query_job(req, FS_EXTRACT);
    if (!j)
        return;
    if (transfer_pipe(j, true) < 0) {
        job_free(j);
        return;
    }
    req->data = j;
    req->on_body = put_body;
    req->on_body_end = put_body_end;
    req->on_abort = put_abort;
    start_job(j, after_extract);
}

/* ---------------------------------------------------- tar download
 *
 * A pool job writes the tar into a pipe; the loop reads it and sends it
 * chunked, stopping reads while the client's write queue is full (the job
 * then blocks on the full pipe: memory stays bounded). Headers go out with
 * the first bytes, so an error found before any output (no such path) is a
 * proper error response. One found later can only cut the stream short: the
 * tar then lacks its end blocks and tar readers report it truncated. */

static void get_finish(struct fs_job *j)
{
    if (!j->worker_done || !j->eof || j->responded)
        return;
    j->responded = true;
    if (j->result < 0 && !j->req->headers_sent)
        cb_http_respond_cb_error(j->req, j->err);
    else if (j->result < 0) {
        /* Failed mid-body: a clean end would hand the client a shorter
         * archive as if it were whole. Cut the connection instead (no
         * final chunk), which every HTTP client reports as an error. */
        cb_log_warn(j->s->rec.id, "archive of %s failed mid-body: %s", j->path,
                    j->err && j->err->message ? j->err->message : "?");
        cb_http_stream_abort(j->req);
    } else
        cb_http_stream_end(j->req);
    job_free(j);
}

static void get_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct fs_job *j = h->data;
    (void)suggested;
    if (!j->buf)
        j->buf = cb_xmalloc(CHUNK);
    *b = uv_buf_init(j->buf, CHUNK);
}

static void get_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct fs_job *j = st->data;
    (void)b;
    if (n == 0)
        return;
    if (n < 0) { /* EOF (the job closed its end) or a read error */
        j->eof = true;
        pipe_close(j);
        get_finish(j);
        return;
    }
    if (!j->req->headers_sent)
        cb_http_stream_begin(j->req, 200, "application/x-tar", -1, NULL);
    cb_http_stream_write(j->req, j->buf, (size_t)n);
    if (cb_http_congested(j->req)) {
        j->reading = false;
        uv_read_stop(st);
    }
}

static void get_drain(struct cb_http_req *req)
{
    struct fs_job *j = req->data;
    if (!j->reading && j->pipe_open && !j->responded) {
        j->reading = true;
        uv_read_start((uv_stream_t *)&j->pipe, get_alloc, get_read);
    }
}

static void get_abort(struct cb_http_req *req)
{
    struct fs_job *j = req->data;
    /* Closing our end makes the job's next write fail (EPIPE; SIGPIPE is
     * ignored by the daemon), so it ends instead of blocking forever. */
    j->eof = true;
    pipe_close(j);
    get_finish(j);
}

static void after_archive(uv_work_t *w, int status)
{
    struct fs_job *j = w->data;
    j->worker_done = true;
    get_finish(j);
}

void cb_api_archive_get(struct cb_http_req *req)
{
    struct fs_job *j = query_job(req, FS_ARCHIVE);
    if (!j)
        return;
    if (transfer_pipe(j, false) < 0) {
        job_free(j);
        return;
    }
    req->data = j;
    req->on_drain = get_drain;
    req->on_abort = get_abort;
    j->reading = true;
    uv_read_start((uv_stream_t *)&j->pipe, get_alloc, get_read);
    start_job(j, after_archive);
}

/* ---------------------------------------------------------- watching
 *
 * The inotify instance is opened on the pool (it resolves the path); its fd
 * is then polled on the loop. cb_fs_watch_read is non-blocking, but it
 * opens newly created directories below the root to watch them, so it runs
 * as the sandbox user like every other path resolution. The stream ends
 * when the client goes away or the sandbox's init connection ends (stop,
 * delete, init death), and counts as attached for the idle sweep. */

static const char *event_name(enum cb_fs_event_type t)
{
    switch (t) {
    case CB_FS_EV_CREATE: return "create";
    case CB_FS_EV_MODIFY: return "modify";
    case CB_FS_EV_DELETE: return "delete";
    case CB_FS_EV_MOVE: return "move";
    }
    return "other";
}

static void watch_end(struct fs_job *j, json_t *last)
{
    if (j->responded)
        return;
    j->responded = true;
    if (j->listening)
        cb_sbx_remove_exit_listener(j->s, &j->exit_l);
    if (j->attached)
        j->s->attached--;
    if (last)
        cb_http_stream_event(j->req, last);
    cb_http_stream_end(j->req);
    job_free(j); /* closes the poll handle, then the inotify fd */
}

static void watch_poll_cb(uv_poll_t *p, int status, int events)
{
    struct fs_job *j = p->data;
    (void)events;
    if (status < 0) {
        watch_end(j, json_pack("{s:s,s:s}", "type", "error", "message", uv_strerror(status)));
        return;
    }
    struct cb_fs_event *ev = NULL;
    struct cb_error *err = NULL;
    become_owner(&j->own);
    int n = cb_fs_watch_read(j->watch, &ev, &err);
    become_root();
    for (int i = 0; i < n; i++)
        cb_http_stream_event(j->req, json_pack("{s:s,s:s}", "type", event_name(ev[i].type),
                                               "path", ev[i].path));
    if (n > 0)
        cb_fs_events_free(ev, n);
    if (n < 0) {
        /* Lost events (queue overflow) or a broken instance: say so and
         * end, the client re-lists and re-watches. */
        json_t *last = json_pack("{s:s,s:s}", "type", "error", "message",
                                 err && err->message ? err->message : "watch failed");
        cb_error_free(err);
        watch_end(j, last);
        return;
    }
    if (n > 0)
        cb_sbx_touch(j->s);
    if (cb_http_congested(j->req) && j->polling) {
        j->polling = false; /* events wait in the kernel queue meanwhile */
        uv_poll_stop(p);
    }
}

static void watch_drain(struct cb_http_req *req)
{
    struct fs_job *j = req->data;
    if (!j->polling && j->poll_open && !j->responded) {
        j->polling = true;
        uv_poll_start(&j->poll, UV_READABLE, watch_poll_cb);
    }
}

static void watch_abort(struct cb_http_req *req)
{
    watch_end(req->data, NULL);
}

static void watch_sandbox_gone(struct cb_exit_listener *l, const struct cb_exit_info *info)
{
    struct fs_job *j = (struct fs_job *)((char *)l - offsetof(struct fs_job, exit_l));
    (void)info;
    j->listening = false; /* notify_exit removed it already */
    watch_end(j, json_pack("{s:s,s:s}", "type", "end", "reason", "sandbox stopped"));
}

static void after_watch_open(uv_work_t *w, int status)
{
    struct fs_job *j = w->data;
    struct cb_http_req *req = j->req;
    if (j->result < 0 || req->aborted) {
        j->responded = true;
        if (j->result < 0)
            cb_http_respond_cb_error(req, j->err);
        else
            cb_http_respond_error(req, CB_ERR_BAD_REQUEST, "client went away");
        job_free(j);
        return;
    }
    if (!j->s->initc) { /* stopped while the watch was being set up */
        j->responded = true;
        cb_http_respond_error(req, CB_ERR_CONFLICT, "sandbox is stopped; start it first");
        job_free(j);
        return;
    }
    uv_poll_init(j->s->d->loop, &j->poll, cb_fs_watch_fd(j->watch));
    j->poll.data = j;
    j->handles++;
    j->poll_open = true;
    j->polling = true;
    uv_poll_start(&j->poll, UV_READABLE, watch_poll_cb);
    /* Any pid never matches: only the "connection lost" broadcast calls it. */
    j->exit_l = (struct cb_exit_listener){.pid = UINT32_MAX, .fn = watch_sandbox_gone};
    cb_sbx_add_exit_listener(j->s, &j->exit_l);
    j->listening = true;
    j->s->attached++;
    j->attached = true;
    req->data = j;
    req->on_drain = watch_drain;
    req->on_abort = watch_abort;
    cb_http_stream_begin_events(req, req->format);
}

void cb_api_files_watch(struct cb_http_req *req)
{
    req->format = cb_http_accept_stream(req);
    if (req->format == CB_FMT_NONE)
        req->format = CB_FMT_NDJSON;
    struct fs_job *j = query_job(req, FS_WATCH);
    if (!j)
        return;
    j->flag = cb_http_query_bool(req, "recursive");
    start_job(j, after_watch_open);
}
