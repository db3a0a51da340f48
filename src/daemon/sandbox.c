#include "sandbox.h"

#include <string.h>

#include "log.h"
#include "pool.h"
#include "runtime.h"

/* OP_KILL is the first half of a delete: every process killed and reaped
 * (tier kill, else stop); the handle then goes to the background teardown
 * (cb_pool_reap). OP_DESTROY does both halves in place (no pool). */
enum op_kind { OP_START, OP_STOP, OP_PAUSE, OP_RESUME, OP_KILL, OP_DESTROY, OP_LIMITS, OP_READY };

struct cb_sbx_work {
    uv_work_t w;
    struct cb_sbx *s;
    enum op_kind kind;
    struct cb_limits limits;
    int fd;          /* control connection made by START */
    struct cb_sandbox *pooled; /* START of a new sandbox: warm pool member to claim */
    bool from_pool;  /* START: the claim succeeded */
    char *pool_miss; /* START: why the claimed member was given up (logged) */
    bool resumed;    /* READY found it paused and resumed it */
    bool hold;       /* KILL: the tier's kill (unmounts left to destroy), not stop */
    int result;
    struct cb_error *err;
    char *reason;
    cb_sbx_cb cb;
    void *arg;
    /* Where an operation's time goes (logged at debug level, CELLBOX_DEBUG):
     * queued behind the sandbox's other operations, waiting for a worker
     * thread, running on it, waiting for the loop to take the result. */
    uint64_t t_queued, t_dispatched, t_work_start, t_work_end;
    struct cb_sbx_work *next;
};

static const char *const op_names[] = {
    [OP_START] = "start", [OP_STOP] = "stop", [OP_PAUSE] = "pause", [OP_RESUME] = "resume",
    [OP_KILL] = "kill", [OP_DESTROY] = "destroy", [OP_LIMITS] = "limits", [OP_READY] = "ready"};

static void log_op_timing(struct cb_sbx *s, const struct cb_sbx_work *w)
{
    if (!w->t_work_start)
        return; /* answered on the loop */
    uint64_t now = cb_now_ns();
    cb_log_debug(s->rec.id,
                 "op %s%s: queued %.2f ms, thread wait %.2f ms, worker %.2f ms, loop wait %.2f ms",
                 op_names[w->kind], w->from_pool ? " (warm pool)" : "",
                 (double)(w->t_dispatched - w->t_queued) / 1e6,
                 (double)(w->t_work_start - w->t_dispatched) / 1e6,
                 (double)(w->t_work_end - w->t_work_start) / 1e6,
                 (double)(now - w->t_work_end) / 1e6);
}

static void run_next(struct cb_sbx *s);

void cb_sbx_ref(struct cb_sbx *s) { s->refs++; }

void cb_sbx_unref(struct cb_sbx *s)
{
    if (--s->refs > 0)
        return;
    if (s->h && s->d->tier)
        s->d->tier->release(s->h);
    if (s->reserved && s->d->tier) { /* never started (daemon stopping) */
        s->d->tier->destroy(s->reserved, NULL);
        s->d->tier->release(s->reserved);
    }
    json_decref(s->spec);
    cb_sb_record_clear(&s->rec);
    free(s);
}

const char *cb_sbx_state(const struct cb_sbx *s) { return s->rec.state; }

static void set_state(struct cb_sbx *s, const char *state)
{
    free(s->rec.state);
    s->rec.state = cb_xstrdup(state);
}

void cb_sbx_touch(struct cb_sbx *s) { s->last_active = cb_wall_time(); }

int cb_sbx_save(struct cb_sbx *s, struct cb_error **err)
{
    char *spec = json_dumps(s->spec, JSON_COMPACT | JSON_SORT_KEYS);
    free(s->rec.spec_json);
    s->rec.spec_json = spec ? spec : cb_xstrdup("{}");
    if (s->stored)
        return cb_store_sandbox_update(s->d->store, &s->rec, err);
    if (cb_store_sandbox_insert(s->d->store, &s->rec, err) < 0)
        return -1;
    s->stored = true;
    return 0;
}

static void save_or_log(struct cb_sbx *s)
{
    struct cb_error *err = NULL;
    if (cb_sbx_save(s, &err) < 0) {
        cb_log_error(s->rec.id, "saving state: %s", err->message);
        cb_error_free(err);
    }
}

struct cb_sbx *cb_sbx_find(struct cb_daemon *d, const char *tenant, bool is_admin,
                           const char *id_or_name)
{
    if (!id_or_name)
        return NULL;
    struct cb_sbx *by_name = NULL;
    for (struct cb_sbx *s = d->sandboxes; s; s = s->next) {
        if (s->deleted || (!is_admin && strcmp(s->rec.tenant, tenant) != 0))
            continue;
        if (strcmp(s->rec.id, id_or_name) == 0)
            return s;
        if (!by_name && s->rec.name && strcmp(s->rec.name, id_or_name) == 0)
            by_name = s;
    }
    return by_name;
}

void cb_sbx_limits(const struct cb_sbx *s, struct cb_limits *out)
{
    cb_limits_from_spec(s->spec, out);
}

void cb_limits_from_spec(const json_t *spec, struct cb_limits *out)
{
    json_t *l = json_object_get(spec, "limits");
    memset(out, 0, sizeof(*out));
    out->cpu = json_number_value(json_object_get(l, "cpu"));
    out->memory_bytes = (uint64_t)json_integer_value(json_object_get(l, "memory_mb")) << 20;
    out->disk_bytes = (uint64_t)json_integer_value(json_object_get(l, "disk_mb")) << 20;
    out->pids = (uint32_t)json_integer_value(json_object_get(l, "pids"));
}

static struct cb_sbx *sbx_new(struct cb_daemon *d, json_t *spec)
{
    struct cb_sbx *s = cb_xcalloc(1, sizeof(*s));
    s->refs = 1;
    s->d = d;
    s->spec = spec ? spec : json_object();
    s->last_active = cb_wall_time();
    return s;
}

static void registry_add(struct cb_daemon *d, struct cb_sbx *s)
{
    struct cb_sbx **pp = &d->sandboxes;
    while (*pp)
        pp = &(*pp)->next;
    *pp = s;
}

static void registry_remove(struct cb_daemon *d, struct cb_sbx *s)
{
    for (struct cb_sbx **pp = &d->sandboxes; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    s->next = NULL;
}

struct cb_sbx *cb_sbx_register(struct cb_daemon *d, struct cb_sb_record *rec,
                               json_t *spec, struct cb_error **err)
{
    struct cb_sbx *s = sbx_new(d, spec);
    s->rec = *rec;
    memset(rec, 0, sizeof(*rec));
    registry_add(d, s);
    return s;
}

/* ------------------------------------------------------ exit listeners */

int cb_exit_info_parse(const uint8_t *payload, size_t len, struct cb_exit_info *out)
{
    memset(out, 0, sizeof(*out));
    out->exit_code = -1;
    size_t off = 0;
    struct cb_field_view f;
    int r;
    uint32_t u;
    while ((r = cb_proto_next_field(payload, len, &off, &f)) > 0) {
        switch (f.tag) {
        case CB_F_PID: cb_field_u32(&f, &out->pid); break;
        case CB_F_PROC_ID: cb_field_u64(&f, &out->proc_id); break;
        case CB_F_EXIT_CODE: cb_field_i32(&f, &out->exit_code); break;
        case CB_F_SIGNO: cb_field_u32(&f, &out->signo); break;
        case CB_F_TIMED_OUT:
            if (cb_field_u32(&f, &u) == 0)
                out->timed_out = u != 0;
            break;
        case CB_F_STARTED_AT: cb_field_u64(&f, &out->started_at_ms); break;
        case CB_F_ENDED_AT: cb_field_u64(&f, &out->ended_at_ms); break;
        default: break;
        }
    }
    return r;
}

void cb_sbx_add_exit_listener(struct cb_sbx *s, struct cb_exit_listener *l)
{
    l->next = s->exit_listeners;
    s->exit_listeners = l;
}

void cb_sbx_remove_exit_listener(struct cb_sbx *s, struct cb_exit_listener *l)
{
    for (struct cb_exit_listener **pp = &s->exit_listeners; *pp; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            l->next = NULL;
            return;
        }
    }
}

static void notify_exit(struct cb_sbx *s, const struct cb_exit_info *info)
{
    struct cb_exit_listener *l = s->exit_listeners, *next;
    for (; l; l = next) {
        next = l->next;
        if (info->lost || (l->pid == info->pid &&
                           (l->proc_id == 0 || l->proc_id == info->proc_id))) {
            cb_sbx_remove_exit_listener(s, l);
            l->fn(l, info);
        }
    }
}

static void on_init_event(void *arg, const struct cb_frame_header *h,
                          const uint8_t *payload, size_t len)
{
    struct cb_sbx *s = arg;
    if (h->type != CB_MSG_EXIT)
        return;
    struct cb_exit_info info;
    if (cb_exit_info_parse(payload, len, &info) < 0)
        return;
    notify_exit(s, &info);
}

static void fail_listeners(struct cb_sbx *s)
{
    struct cb_exit_info lost = {.lost = true, .exit_code = -1, .signo = 9};
    notify_exit(s, &lost);
}

/* The control connection ended without us asking: init died. */
static void on_init_closed(void *arg)
{
    struct cb_sbx *s = arg;
    s->initc = NULL;
    fail_listeners(s);
    if (s->busy || s->deleted)
        return;
    cb_log_warn(s->rec.id, "init exited; sandbox stopped (filesystem kept)");
    set_state(s, "stopped");
    free(s->rec.stop_reason);
    s->rec.stop_reason = cb_xstrdup("init exited");
    cb_store_event_add(s->d->store, s->rec.id, "init_exited", NULL, NULL);
    save_or_log(s);
}

static void detach_initc(struct cb_sbx *s)
{
    if (s->initc) {
        struct cb_initc *c = s->initc;
        s->initc = NULL;
        cb_initc_close(c);
    }
    fail_listeners(s);
}

static void attach_initc(struct cb_sbx *s, int fd)
{
    detach_initc(s);
    s->initc = cb_initc_open(s->d->loop, fd, on_init_event, on_init_closed, s);
}

/* ------------------------------------------------------- operation queue */

/* Give a warm-pool member this sandbox's identity. On failure the member
 * is destroyed (whatever half of the claim happened) and the caller falls
 * back to a cold create under the same id. */
static void claim_pooled(struct cb_sbx *s, struct cb_sbx_work *w)
{
    const struct cb_tier_ops *t = s->d->tier;
    struct cb_sandbox *h = steal_ptr(w->pooled);
    struct cb_error *err = NULL;
    if (cb_container_claim(h, s->rec.id, s->rec.name ? s->rec.name : s->rec.id, &w->limits,
                           &err) == 0) {
        /* No longer a member: from here a crash leaves an unrecorded
         * sandbox directory, which the next start tears down (pool.h). */
        int r = cb_pool_unmark(s->d->cfg.state_dir, s->rec.id);
        if (r == 0) {
            s->h = h;
            w->from_pool = true;
            return;
        }
        cb_error_set(&err, -r, CB_ERR_INTERNAL, "remove the pool member marker");
    }
    w->pool_miss = cb_xstrdup(err ? err->message : "claim failed");
    cb_error_free(err);
    t->destroy(h, NULL);
    t->release(h);
}

static int work_start(struct cb_sbx *s, struct cb_sbx_work *w)
{
    const struct cb_tier_ops *t = s->d->tier;
    if (!s->h && w->pooled)
        claim_pooled(s, w);
    if (!s->h && (w->from_pool || w->pool_miss ||
                  t->adopt(s->d->rt, s->rec.id, &s->h, NULL) < 0)) {
        s->h = NULL;
        struct cb_sandbox_spec spec = {
            .id = s->rec.id,
            .hostname = s->rec.name ? s->rec.name : s->rec.id,
            .template_name = s->rec.template_name,
            .limits = w->limits,
            .net_group = s->rec.tenant,
            .internet = json_is_true(json_object_get(
                json_object_get(s->spec, "network"), "internet")),
        };
        if (t->create(s->d->rt, &spec, &s->h, &w->err) < 0) {
            s->h = NULL;
            return -1;
        }
    }
    if (t->state(s->h) != CB_RUN_RUNNING && t->state(s->h) != CB_RUN_PAUSED &&
        t->start(s->h, &w->err) < 0)
        return -1;
    if (t->state(s->h) == CB_RUN_PAUSED && t->resume(s->h, &w->err) < 0)
        return -1;
    return t->connect(s->h, &w->fd, &w->err);
}

static void work_cb(uv_work_t *req)
{
    struct cb_sbx_work *w = req->data;
    struct cb_sbx *s = w->s;
    const struct cb_tier_ops *t = s->d->tier;
    int r = 0;
    w->t_work_start = cb_now_ns();
    switch (w->kind) {
    case OP_START: r = work_start(s, w); break;
    case OP_STOP: r = s->h ? t->stop(s->h, &w->err) : 0; break;
    case OP_PAUSE: r = t->pause(s->h, &w->err); break;
    case OP_RESUME: r = t->resume(s->h, &w->err); break;
    case OP_KILL:
    case OP_DESTROY:
        if (!s->h && t->adopt(s->d->rt, s->rec.id, &s->h, NULL) < 0)
            s->h = NULL;
        /* Its network namespace goes to its tenant's next sandboxes only
         * (netns.h: they see its loopback counters). */
        if (s->h && t == &cb_tier_container)
            cb_container_set_net_group(s->h, s->rec.tenant);
        if (s->h)
            r = w->kind == OP_KILL ? (w->hold ? t->kill : t->stop)(s->h, &w->err)
                                   : t->destroy(s->h, &w->err);
        break;
    case OP_LIMITS: r = s->h ? t->set_limits(s->h, &w->limits, &w->err) : 0; break;
    case OP_READY:
        if (s->h && strcmp(s->rec.state, "paused") == 0) {
            r = t->resume(s->h, &w->err);
            w->resumed = r == 0;
        }
        break;
    }
    w->result = r;
    w->t_work_end = cb_now_ns();
}

static void finish_op(struct cb_sbx *s, struct cb_sbx_work *w)
{
    switch (w->kind) {
    case OP_START:
        if (w->pool_miss)
            cb_log_warn(s->rec.id, "warm pool member unusable, created cold: %s", w->pool_miss);
        if (w->from_pool)
            cb_log_info(s->rec.id, "claimed from the warm pool");
        if (w->result == 0) {
            attach_initc(s, w->fd);
            set_state(s, "running");
            free(s->rec.stop_reason);
            s->rec.stop_reason = NULL;
            if (!s->stored) {
                /* The first save of a new sandbox is the insert of its
                 * whole record: the create's one transaction. No record,
                 * no sandbox: on failure the create fails and its caller
                 * deletes what was started. */
                if (!s->deleted && cb_sbx_save(s, &w->err) < 0) {
                    w->result = -1;
                    cb_error_wrap(&w->err, "create");
                }
                return;
            }
        } else if (strcmp(s->rec.state, "creating") == 0) {
            set_state(s, "stopped");
            if (!s->stored)
                return; /* never created: nothing to record */
        }
        break;
    case OP_STOP:
        if (w->result == 0) {
            set_state(s, "stopped");
            free(s->rec.stop_reason);
            s->rec.stop_reason = cb_xstrdup(w->reason ? w->reason : "stopped");
        }
        break;
    case OP_PAUSE:
        if (w->result == 0)
            set_state(s, "paused");
        break;
    case OP_RESUME:
        if (w->result == 0)
            set_state(s, "running");
        break;
    case OP_READY:
        if (w->resumed) {
            set_state(s, "running");
            cb_log_info(s->rec.id, "resumed on request");
        }
        break;
    case OP_KILL:
    case OP_DESTROY:
    case OP_LIMITS:
        return;
    }
    if (!s->deleted)
        save_or_log(s);
}

static void after_work_cb(uv_work_t *req, int status)
{
    struct cb_sbx_work *w = req->data;
    struct cb_sbx *s = w->s;
    log_op_timing(s, w);
    if (w->kind == OP_READY && w->result == 0 && strcmp(s->rec.state, "running") != 0 &&
        !w->resumed)
        w->result = cb_error_set(&w->err, 0, CB_ERR_CONFLICT, "sandbox is %s",
                                 s->rec.state);
    finish_op(s, w);
    if (w->result < 0 && !w->err)
        cb_error_set(&w->err, 0, CB_ERR_INTERNAL, "sandbox operation failed");
    s->busy = false;
    if (w->cb)
        w->cb(s, w->result < 0 ? w->err : NULL, w->arg);
    cb_error_free(w->err);
    free(w->reason);
    free(w->pool_miss);
    free(w);
    run_next(s);
    cb_sbx_unref(s);
}

static void run_next(struct cb_sbx *s)
{
    if (s->busy || !s->queue)
        return;
    struct cb_sbx_work *w = s->queue;
    s->queue = w->next;
    s->busy = true;
    w->w.data = w;
    if (s->deleted) {
        /* Queued behind the delete: the sandbox is gone (its remains may
         * still be torn down in the background — never start or touch
         * them). */
        w->result = cb_error_set(&w->err, 0, CB_ERR_NOT_FOUND, "sandbox was deleted");
        /* Its id was this sandbox's, seen by its tenant (listed while
         * creating): torn down, never handed to another create. */
        if (s->reserved && s->d->pool)
            cb_pool_reap(s->d->pool, steal_ptr(s->reserved), s->rec.id);
        after_work_cb(&w->w, 0);
        return;
    }
    /* A brand-new sandbox (no tier handle, never started) of the pool's
     * shape claims the warm member its create took (whose id it has), or
     * takes one now; the claim runs on the worker below. */
    if (w->kind == OP_START && !s->h && strcmp(s->rec.state, "creating") == 0)
        w->pooled = s->reserved ? steal_ptr(s->reserved)
                                : cb_pool_take(s->d->pool, s->rec.template_name, s->rec.tier,
                                               &w->limits, s->rec.tenant);
    if (w->kind == OP_STOP || w->kind == OP_KILL || w->kind == OP_DESTROY)
        detach_initc(s); /* we end init on purpose: no "init died" record */
    /* A kill leaves the dead sandbox's file systems mounted for the
     * background teardown (DELETE answers sooner) unless many teardowns
     * already wait: then its init's exit unmounts them, as a stop does,
     * and the queue holds nothing costly (pool.h). */
    if (w->kind == OP_KILL)
        w->hold = s->d->tier->kill && s->d->pool &&
                  cb_pool_reaping(s->d->pool) < CB_POOL_REAP_BACKLOG;
    if (w->kind == OP_READY && strcmp(s->rec.state, "running") == 0 &&
        cb_initc_alive(s->initc)) {
        /* Fast path: nothing to do on a worker thread. */
        after_work_cb(&w->w, 0);
        return;
    }
    w->t_dispatched = cb_now_ns();
    uv_queue_work(s->d->loop, &w->w, work_cb, after_work_cb);
}

static void enqueue(struct cb_sbx *s, enum op_kind kind, const char *reason, cb_sbx_cb cb,
                    void *arg)
{
    struct cb_sbx_work *w = cb_xcalloc(1, sizeof(*w));
    w->s = s;
    w->kind = kind;
    w->fd = -1;
    w->cb = cb;
    w->arg = arg;
    w->reason = reason ? cb_xstrdup(reason) : NULL;
    w->t_queued = cb_now_ns();
    cb_sbx_limits(s, &w->limits);
    cb_sbx_ref(s);
    struct cb_sbx_work **pp = &s->queue;
    while (*pp)
        pp = &(*pp)->next;
    *pp = w;
    run_next(s);
}

void cb_sbx_start(struct cb_sbx *s, cb_sbx_cb cb, void *arg) { enqueue(s, OP_START, NULL, cb, arg); }
void cb_sbx_stop(struct cb_sbx *s, const char *reason, cb_sbx_cb cb, void *arg)
{
    enqueue(s, OP_STOP, reason, cb, arg);
}
void cb_sbx_pause(struct cb_sbx *s, cb_sbx_cb cb, void *arg) { enqueue(s, OP_PAUSE, NULL, cb, arg); }
void cb_sbx_resume(struct cb_sbx *s, cb_sbx_cb cb, void *arg) { enqueue(s, OP_RESUME, NULL, cb, arg); }
void cb_sbx_set_limits(struct cb_sbx *s, cb_sbx_cb cb, void *arg) { enqueue(s, OP_LIMITS, NULL, cb, arg); }

void cb_sbx_ready(struct cb_sbx *s, cb_sbx_cb cb, void *arg)
{
    cb_sbx_touch(s);
    if (!s->busy && !s->queue && strcmp(s->rec.state, "running") == 0 &&
        cb_initc_alive(s->initc)) {
        cb(s, NULL, arg);
        return;
    }
    enqueue(s, OP_READY, NULL, cb, arg);
}

struct delete_ctx {
    cb_sbx_cb cb;
    void *arg;
    bool teardown_later; /* OP_KILL: the rest of the teardown is still to do */
};

/* The record goes in the same step as the registry entry: a delete that
 * cannot remove it fails (the sandbox stays, stopped — its processes are
 * dead — and the delete can be retried), so a 204 always means "no record". */
static void delete_done(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct delete_ctx *dc = arg;
    struct cb_error *store_err = NULL;
    if (!err && s->stored && cb_store_sandbox_delete(s->d->store, s->rec.id, &store_err) < 0) {
        cb_log_error(s->rec.id, "delete record: %s", store_err->message);
        set_state(s, "stopped");
        err = store_err;
    }
    bool gone = err == NULL;
    if (gone) {
        s->deleted = true;
        registry_remove(s->d, s);
        cb_log_info(s->rec.id, "deleted");
        /* Everything in it is dead: the rest (cgroups, files, uid slot)
         * is torn down after the caller's answer (pool.h). */
        if (dc->teardown_later && s->d->pool)
            cb_pool_reap(s->d->pool, steal_ptr(s->h), s->rec.id);
        else if (dc->teardown_later && s->h)
            /* Killed while the daemon stops (its pool, which runs
             * teardowns, is closed): finish here, blocking the loop. */
            s->d->tier->destroy(s->h, NULL);
    } else {
        s->deleting = false;
    }
    if (dc->cb)
        dc->cb(s, err, dc->arg);
    free(dc);
    cb_error_free(store_err);
    if (gone)
        cb_sbx_unref(s); /* the registry's reference */
}

void cb_sbx_delete(struct cb_sbx *s, cb_sbx_cb cb, void *arg)
{
    struct delete_ctx *dc = cb_xcalloc(1, sizeof(*dc));
    dc->cb = cb;
    dc->arg = arg;
    s->deleting = true;
    dc->teardown_later = s->d->pool != NULL;
    enqueue(s, dc->teardown_later ? OP_KILL : OP_DESTROY, NULL, delete_done, dc);
}

/* ---------------------------------------------------------- recovery */

/* The control connection to an adopted sandbox's init. A paused one's
 * init is frozen and cannot answer HELLO (cellboxd's start-up waited on
 * it for good): thawed for the handshake, a few hundred microseconds in
 * which its processes may run, and frozen again. *st says what the
 * sandbox is afterwards. */
static int connect_adopted(const struct cb_tier_ops *t, struct cb_sandbox *h, const char *id,
                           enum cb_sandbox_run_state *st, int *fd, struct cb_error **err)
{
    if (*st != CB_RUN_PAUSED)
        return t->connect(h, fd, err);
    if (t->resume(h, err) < 0)
        return -1;
    *st = CB_RUN_RUNNING;
    int r = t->connect(h, fd, err);
    struct cb_error *perr = NULL;
    if (t->pause(h, &perr) == 0)
        *st = CB_RUN_PAUSED;
    else if (r == 0)
        cb_log_warn(id, "paused before the daemon's start, running now: %s",
                    perr ? perr->message : "?");
    cb_error_free(perr);
    return r;
}

static void recover_one(const struct cb_sb_record *r, void *arg)
{
    struct cb_daemon *d = arg;
    json_error_t jerr;
    json_t *spec = json_loads(r->spec_json ? r->spec_json : "{}", 0, &jerr);
    struct cb_sbx *s = sbx_new(d, json_is_object(spec) ? spec : NULL);
    if (spec && !json_is_object(spec))
        json_decref(spec);
    s->rec = (struct cb_sb_record){
        cb_xstrdup(r->id), cb_xstrdup(r->tenant), r->name ? cb_xstrdup(r->name) : NULL,
        cb_xstrdup(r->state), cb_xstrdup(r->tier), cb_xstrdup(r->template_name),
        r->created_at, r->expires_at, r->idle_timeout, cb_xstrdup(r->on_idle),
        cb_xstrdup(r->spec_json), r->seq,
        r->stop_reason ? cb_xstrdup(r->stop_reason) : NULL};
    s->stored = true;
    registry_add(d, s);
    if (r->seq >= d->next_seq)
        d->next_seq = r->seq + 1;
    const struct cb_tier_ops *t = d->tier;
    struct cb_error *err = NULL;
    if (t->adopt(d->rt, r->id, &s->h, &err) < 0) {
        s->h = NULL;
        if (strcmp(r->state, "stopped") != 0) {
            cb_log_warn(r->id, "cannot adopt: %s", err ? err->message : "?");
            cb_store_event_add(d->store, r->id, "adopt_failed", err ? err->message : NULL, NULL);
            set_state(s, "stopped");
            save_or_log(s);
        }
        cb_error_free(err);
        return;
    }
    enum cb_sandbox_run_state st = t->state(s->h);
    bool alive = st == CB_RUN_RUNNING || st == CB_RUN_PAUSED;
    int fd = -1;
    if (alive && connect_adopted(t, s->h, r->id, &st, &fd, &err) == 0) {
        attach_initc(s, fd);
        set_state(s, st == CB_RUN_PAUSED ? "paused" : "running");
        cb_log_info(r->id, "re-adopted (%s)", s->rec.state);
    } else if (strcmp(r->state, "stopped") != 0) {
        cb_log_warn(r->id, "init is gone; marking stopped (filesystem kept)");
        cb_store_event_add(d->store, r->id, "init_lost", "init not running at daemon start", NULL);
        set_state(s, "stopped");
        free(s->rec.stop_reason);
        s->rec.stop_reason = cb_xstrdup("init exited while the daemon was down");
    }
    cb_error_free(err);
    save_or_log(s);
}

int cb_sbx_recover(struct cb_daemon *d, struct cb_error **err)
{
    d->next_seq = cb_store_sandbox_max_seq(d->store) + 1;
    return cb_store_sandbox_foreach(d->store, recover_one, d, err);
}

/* ---------------------------------------------------------- timers */

static void sweep_done(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    if (err)
        cb_log_warn(s->rec.id, "%s: %s", (const char *)arg, err->message);
    else
        cb_log_info(s->rec.id, "%s", (const char *)arg);
}

void cb_sbx_sweep(struct cb_daemon *d)
{
    double now = cb_wall_time();
    for (struct cb_sbx *s = d->sandboxes, *next; s; s = next) {
        next = s->next;
        if (s->busy || s->queue || s->deleting)
            continue;
        if (s->rec.expires_at > 0 && now >= s->rec.expires_at) {
            cb_sbx_delete(s, sweep_done, "lifetime expired: deleted");
            continue;
        }
        bool running = strcmp(s->rec.state, "running") == 0;
        if (running && s->rec.idle_timeout > 0 && s->attached == 0 &&
            now - s->last_active >= s->rec.idle_timeout) {
            if (strcmp(s->rec.on_idle, "stop") == 0)
                cb_sbx_stop(s, "idle", sweep_done, "idle: stopped");
            else
                cb_sbx_pause(s, sweep_done, "idle: paused");
        }
    }
}

void cb_sbx_detach_all(struct cb_daemon *d)
{
    for (struct cb_sbx *s = d->sandboxes; s; s = s->next) {
        if (s->initc) {
            struct cb_initc *c = s->initc;
            s->initc = NULL;
            cb_initc_close(c);
        }
    }
}
