/* pool.c — the warm pool (see pool.h). */
#include "pool.h"

#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "runtime.h"
#include "sandbox.h"

#define RETRY_MS 2000 /* after a failed refill: do not spin on a broken host */
/* After a claim, wait this long before building the replacement: the
 * client's first exec follows the create at once, and a refill running
 * beside it (cgroup, mount and RCU work on a 2-core host) doubled both. */
#define REFILL_DELAY_MS 20
/* Members built at the same time. One kept the pool from keeping up with a
 * steady stream of creates (each build is mostly waiting on the kernel:
 * mount, cgroup, clone), two let it on this 2-core host; more only adds
 * contention on the same kernel locks. */
#define REFILL_MAX_INFLIGHT 2
/* Teardowns of deleted sandboxes running at the same time; the rest wait
 * in order. Enough to keep up with creates, few enough that a burst of
 * deletes leaves worker threads and cores to tenants' work. 4, not 2:
 * a teardown now also unmounts the dead sandbox's file systems (the tier's
 * kill leaves that to destroy), work that used to run in the exiting init,
 * unbounded; with 2 the backlog grew under 4 creating clients. */
#define REAP_MAX_INFLIGHT 4

struct member {
    struct cb_pool *pool;
    struct cb_sandbox *h;
    char *net_group; /* its network namespace was this group's before (cb_netns_retire):
                        only a sandbox of this group may claim it; NULL: a new one */
    unsigned passed; /* takes by other groups that passed it by (cb_pool_take) */
    uv_poll_t death; /* readable when init exits */
    struct member *next;
};

struct job {
    uv_work_t w;
    struct cb_pool *pool;
    struct cb_sandbox *h; /* refill: the new member; destroy: the dead one */
    struct cb_error *err;
    char id[32];
    char *net_group; /* refill: the group it is made for (cb_pool's last_group) */
};

/* A teardown that could not finish (its processes were still exiting
 * after the tier's wait) is tried again after 1, 2, 4 .. 30 s, for about
 * a quarter of an hour; then it is left for the next daemon start (its
 * directory stays, so that start finds it). */
#define REAP_RETRY_FIRST_MS 1000
#define REAP_RETRY_MAX_MS 30000
#define REAP_RETRIES 36

/* One deleted sandbox's remains to tear down (cb_pool_reap). */
struct reap {
    uv_work_t w;
    struct cb_pool *pool;
    struct cb_sandbox *h; /* NULL: adopt <id> on the worker, or reclaim it */
    char id[72];
    struct reap *next;
    bool again;        /* the worker left it unfinished: retry */
    unsigned tries;
    bool timer_ready;  /* timer initialized (then freed through uv_close) */
    uv_timer_t timer;  /* the wait before a retry */
    struct reap *next_waiting;
};

struct cb_pool {
    struct cb_daemon *d;
    unsigned size, ready;
    int inflight;      /* jobs on the worker pool (refills, destroys, reaps) */
    unsigned refilling; /* refills in flight, <= REFILL_MAX_INFLIGHT */
    unsigned refilling_open; /* of them, made in a new network namespace (net_group NULL) */
    bool closing;
    struct reap *reap_queue, **reap_tail; /* waiting teardowns, FIFO */
    struct reap *reap_waiting;           /* unfinished ones, before their retry */
    unsigned reaps_running, reaps_pending; /* pending counts running ones too */
    struct member *members;
    uv_timer_t retry;  /* delayed refill: after a failure or a claim */
    char *last_group;  /* the group (tenant) of the last take: refills are made for it */
};

static void refill(struct cb_pool *p);

unsigned cb_pool_ready(const struct cb_pool *p) { return p ? p->ready : 0; }
unsigned cb_pool_size(const struct cb_pool *p) { return p ? p->size : 0; }

/* The default shape's limits (the API's defaults); a claim applies the
 * request's own limits. */
static const struct cb_limits pool_limits = {
    .cpu = 1.0, .memory_bytes = 512ull << 20, .disk_bytes = 2048ull << 20, .pids = 512};

/* ---- destroying members ---- */

static void destroy_now(const struct cb_tier_ops *t, struct cb_sandbox *h, const char *why)
{
    struct cb_error *err = NULL;
    if (t->destroy(h, &err) < 0) {
        cb_log_warn(cb_container_id(h), "pool member (%s): destroy failed: %s", why,
                    err ? err->message : "?");
        cb_error_free(err);
    }
    t->release(h);
}

static void destroy_work_cb(uv_work_t *req)
{
    struct job *j = req->data;
    destroy_now(j->pool->d->tier, j->h, "died");
}

static void job_done(struct job *j)
{
    j->pool->inflight--;
    cb_error_free(j->err);
    free(j->net_group);
    free(j);
}

static void destroy_after_cb(uv_work_t *req, int status)
{
    struct job *j = req->data;
    struct cb_pool *p = j->pool;
    job_done(j);
    refill(p);
}

static void free_member_cb(uv_handle_t *h)
{
    struct member *m = h->data;
    free(m->net_group);
    free(m);
}

static void unlink_member(struct cb_pool *p, struct member *m)
{
    for (struct member **pp = &p->members; *pp; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            p->ready--;
            break;
        }
    }
    uv_poll_stop(&m->death);
    uv_close((uv_handle_t *)&m->death, free_member_cb);
}

/* Unlink m and destroy it on the worker pool; a refill follows. */
static void destroy_member(struct cb_pool *p, struct member *m)
{
    struct cb_sandbox *sb = m->h;
    unlink_member(p, m);
    struct job *j = cb_xcalloc(1, sizeof(*j));
    j->pool = p;
    j->h = sb;
    j->w.data = j;
    p->inflight++;
    uv_queue_work(p->d->loop, &j->w, destroy_work_cb, destroy_after_cb);
}

static void on_member_death(uv_poll_t *h, int status, int events)
{
    struct member *m = h->data;
    cb_log_warn(cb_container_id(m->h), "pool member's init exited; replacing it");
    destroy_member(m->pool, m);
}

/* ---- adding members ---- */

static void add_member(struct cb_pool *p, struct cb_sandbox *h, const char *net_group)
{
    struct member *m = cb_xcalloc(1, sizeof(*m));
    m->pool = p;
    m->h = h;
    m->net_group = net_group ? cb_xstrdup(net_group) : NULL;
    m->death.data = m;
    int pidfd = p->d->tier->init_pidfd(h);
    if (pidfd < 0 || uv_poll_init(p->d->loop, &m->death, pidfd) < 0) {
        free(m);
        destroy_now(p->d->tier, h, "unwatchable");
        return;
    }
    uv_poll_start(&m->death, UV_READABLE | UV_DISCONNECT, on_member_death);
    m->next = p->members;
    p->members = m;
    p->ready++;
}

static char *marker_path(const char *state_dir, const char *id)
{
    return cb_xasprintf("%s/sandboxes/%s/" CB_POOL_MARKER, state_dir, id);
}

int cb_pool_unmark(const char *state_dir, const char *id)
{
    _cleanup_free_ char *m = marker_path(state_dir, id);
    return unlink(m) < 0 && errno != ENOENT ? -errno : 0;
}

/* The marker is a second name of the member's runtime.state (which every
 * created sandbox directory has), not a file of its own: a new inode on
 * the state file system costs 0.1-0.35 ms on a journal-less ext4 after
 * churn (its allocator skips recently freed inodes one by one), a link
 * only a directory entry. Only its existence means anything. A file of
 * its own where links are refused (a file system without hard links).
 * 0, or -1 with errno. */
static int mark(const char *state_dir, const char *id)
{
    _cleanup_free_ char *m = marker_path(state_dir, id);
    _cleanup_free_ char *state = cb_xasprintf("%s/sandboxes/%s/runtime.state", state_dir, id);
    if (link(state, m) == 0)
        return 0;
    if (errno == EEXIST)
        return -1;
    int fd = open(m, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

static bool is_marked(const char *state_dir, const char *id)
{
    _cleanup_free_ char *m = marker_path(state_dir, id);
    return access(m, F_OK) == 0;
}

static void refill_work_cb(uv_work_t *req)
{
    struct job *j = req->data;
    const struct cb_tier_ops *t = j->pool->d->tier;
    /* Made under the id (and hostname) its sandbox will have: the claim
     * then renames nothing. */
    struct cb_sandbox_spec spec = {.id = j->id, .hostname = j->id,
                                   .template_name = CB_POOL_TEMPLATE, .limits = pool_limits,
                                   .net_group = j->net_group};
    if (t->create(j->pool->d->rt, &spec, &j->h, &j->err) < 0) {
        j->h = NULL;
        return;
    }
    /* Marked before it runs anything: a crash from here on leaves a member
     * the next start adopts or destroys, never a sandbox to reap. (Before
     * the mark, the next start reaps the unrecorded directory: also fine.) */
    if (mark(j->pool->d->cfg.state_dir, j->id) < 0) {
        cb_error_set(&j->err, errno, CB_ERR_INTERNAL, "pool member marker");
        destroy_now(t, j->h, "unmarked");
        j->h = NULL;
        return;
    }
    if (t->start(j->h, &j->err) < 0) {
        destroy_now(t, j->h, "start failed");
        j->h = NULL;
    }
}

static void retry_cb(uv_timer_t *t) { refill(t->data); }

static void refill_after_cb(uv_work_t *req, int status)
{
    struct job *j = req->data;
    struct cb_pool *p = j->pool;
    p->refilling--;
    p->refilling_open -= !j->net_group;
    if (j->h) {
        add_member(p, j->h, cb_container_netns_of(j->h));
    } else {
        cb_log_warn(NULL, "warm pool: cannot make a member: %s",
                    j->err ? j->err->message : "cancelled");
        if (!p->closing)
            uv_timer_start(&p->retry, retry_cb, RETRY_MS, 0);
        job_done(j);
        return;
    }
    job_done(j);
    refill(p);
}

static void refill(struct cb_pool *p)
{
    while (!p->closing && p->refilling < REFILL_MAX_INFLIGHT &&
           p->ready + p->refilling < p->size && !uv_is_active((uv_handle_t *)&p->retry)) {
        struct job *j = cb_xcalloc(1, sizeof(*j));
        char hex[17];
        cb_random_hex(hex, 8);
        snprintf(j->id, sizeof(j->id), "sb_%s", hex);
        /* For the last take's group (its namespaces back), but one member
         * at least stays in a new namespace, for a create of any group. */
        unsigned open = p->refilling_open;
        for (struct member *m = p->members; m; m = m->next)
            open += !m->net_group;
        j->net_group = p->last_group && open > 0 ? cb_xstrdup(p->last_group) : NULL;
        p->refilling_open += !j->net_group;
        j->pool = p;
        j->w.data = j;
        p->refilling++;
        p->inflight++;
        uv_queue_work(p->d->loop, &j->w, refill_work_cb, refill_after_cb);
    }
}

struct cb_sandbox *cb_pool_take(struct cb_pool *p, const char *template_name, const char *tier,
                                const struct cb_limits *limits, const char *net_group)
{
    if (!p || p->closing || strcmp(template_name ? template_name : "host", CB_POOL_TEMPLATE) != 0 ||
        strcmp(tier ? tier : "container", CB_POOL_TIER) != 0)
        return NULL;
    if (cb_runtime_disk_images(p->d->rt) && limits->disk_bytes != pool_limits.disk_bytes)
        return NULL;
    /* Refills are made for whoever creates now (cb_netns_retire). */
    if (net_group && (!p->last_group || strcmp(p->last_group, net_group) != 0)) {
        free(p->last_group);
        p->last_group = cb_xstrdup(net_group);
    }
    const struct cb_tier_ops *t = p->d->tier;
    /* Its own group's members first (they are of no use to others), then
     * one in a new namespace. */
    struct cb_sandbox *got = NULL;
    for (int pass = 0; pass < 2 && !got; pass++) {
        for (struct member *m = p->members, *next; m && !got; m = next) {
            next = m->next;
            bool own = m->net_group && net_group && strcmp(m->net_group, net_group) == 0;
            if (pass == 0 ? !own : m->net_group != NULL)
                continue;
            struct cb_sandbox *h = m->h;
            unlink_member(p, m);
            /* Died but the loop has not seen the pidfd yet: skip it. */
            if (t->state(h) == CB_RUN_RUNNING)
                got = h;
            else
                destroy_now(t, h, "found dead at claim");
        }
    }
    /* Another group's members that creates keep passing by (that group
     * stopped creating) go, their namespaces back to their group, to make
     * room for members of the groups that do; so does the oldest of them
     * when nothing else was left. */
    struct member *oldest = NULL;
    for (struct member *m = p->members, *next; m; m = next) {
        next = m->next;
        if (!m->net_group || (net_group && strcmp(m->net_group, net_group) == 0))
            continue;
        if (++m->passed >= p->size)
            destroy_member(p, m);
        else
            oldest = m;
    }
    if (!got && oldest)
        destroy_member(p, oldest);
    if (got) {
        if (!uv_is_active((uv_handle_t *)&p->retry))
            uv_timer_start(&p->retry, retry_cb, REFILL_DELAY_MS, 0);
        /* The pidfd the pool watched (O_NONBLOCK since uv_poll_init) is
         * closed by the claim (cb_container_claim). */
        return got;
    }
    refill(p);
    return NULL;
}

void cb_pool_give_back(struct cb_pool *p, struct cb_sandbox *h)
{
    if (!p->closing && p->d->tier->state(h) == CB_RUN_RUNNING && p->ready < p->size) {
        add_member(p, h, cb_container_netns_of(h));
        return;
    }
    cb_pool_reap(p, h, NULL); /* torn down on the worker pool, not here on the loop */
}

/* ---- tearing down deleted sandboxes (cb_pool_reap) ---- */

static void reap_work_cb(uv_work_t *req)
{
    struct reap *r = req->data;
    const struct cb_tier_ops *t = r->pool->d->tier;
    struct cb_error *err = NULL;
    if (!r->h && t->adopt(r->pool->d->rt, r->id, &r->h, NULL) < 0)
        r->h = NULL;
    if (r->h) {
        int rc = t->destroy(r->h, &err);
        t->release(r->h);
        r->h = NULL;
        if (rc == 0)
            return;
        cb_log_warn(r->id, "teardown: %s; removing what is left piece by piece",
                    err ? err->message : "destroy failed");
        cb_error_free(err);
    }
    /* No usable handle (killed mid-create, or destroy stopped half-way):
     * remove whatever carries the id — cgroups, directory, uid slot. */
    int rc = cb_container_reclaim(r->pool->d->rt, r->id);
    if (rc == -EBUSY && r->tries < REAP_RETRIES) {
        r->again = true;
        cb_log_warn(r->id, "teardown incomplete: processes still exiting; retried later");
    } else if (rc < 0) {
        cb_log_warn(r->id, "teardown incomplete; the next daemon start retries it");
    }
}

static void free_reap_cb(uv_handle_t *h)
{
    free(h->data);
}

static void free_reap(struct reap *r)
{
    if (r->timer_ready) {
        r->timer.data = r;
        uv_close((uv_handle_t *)&r->timer, free_reap_cb);
    } else {
        free(r);
    }
}

static void unlink_waiting(struct cb_pool *p, struct reap *r)
{
    for (struct reap **pp = &p->reap_waiting; *pp; pp = &(*pp)->next_waiting)
        if (*pp == r) {
            *pp = r->next_waiting;
            break;
        }
}

static void reap_enqueue(struct cb_pool *p, struct reap *r);

static void reap_retry_cb(uv_timer_t *t)
{
    struct reap *r = t->data;
    unlink_waiting(r->pool, r);
    reap_enqueue(r->pool, r);
}

static void reap_next(struct cb_pool *p);

static void reap_after_cb(uv_work_t *req, int status)
{
    struct reap *r = req->data;
    struct cb_pool *p = r->pool;
    p->inflight--;
    p->reaps_running--;
    if (r->again && !p->closing) {
        /* Still counted in reaps_pending: the teardown is not done. */
        r->again = false;
        unsigned ms = REAP_RETRY_FIRST_MS << (r->tries < 5 ? r->tries : 5);
        r->tries++;
        if (!r->timer_ready) {
            uv_timer_init(p->d->loop, &r->timer);
            r->timer_ready = true;
        }
        r->timer.data = r;
        uv_timer_start(&r->timer, reap_retry_cb, ms < REAP_RETRY_MAX_MS ? ms : REAP_RETRY_MAX_MS, 0);
        r->next_waiting = p->reap_waiting;
        p->reap_waiting = r;
    } else {
        p->reaps_pending--;
        free_reap(r);
    }
    reap_next(p);
}

static void reap_next(struct cb_pool *p)
{
    while (p->reap_queue && p->reaps_running < REAP_MAX_INFLIGHT) {
        struct reap *r = p->reap_queue;
        p->reap_queue = r->next;
        if (!p->reap_queue)
            p->reap_tail = &p->reap_queue;
        p->reaps_running++;
        p->inflight++;
        uv_queue_work(p->d->loop, &r->w, reap_work_cb, reap_after_cb);
    }
}

static void reap_enqueue(struct cb_pool *p, struct reap *r)
{
    r->next = NULL;
    r->w.data = r;
    *p->reap_tail = r;
    p->reap_tail = &r->next;
    reap_next(p);
}

void cb_pool_reap(struct cb_pool *p, struct cb_sandbox *h, const char *id)
{
    struct reap *r = cb_xcalloc(1, sizeof(*r));
    r->h = h;
    snprintf(r->id, sizeof(r->id), "%s", h ? cb_container_id(h) : id);
    r->pool = p;
    p->reaps_pending++;
    reap_enqueue(p, r);
}

unsigned cb_pool_reaping(const struct cb_pool *p) { return p ? p->reaps_pending : 0; }

/* ---- start and stop ---- */

/* A previous daemon run left pool members behind (it was killed): keep
 * live ones up to the pool size, destroy the rest. A member whose
 * runtime.state is missing (killed mid-create) is reclaimed piece by piece. */
static void recover_member(struct cb_pool *p, const char *id)
{
    const struct cb_tier_ops *t = p->d->tier;
    struct cb_sandbox *h = NULL;
    struct cb_error *err = NULL;
    if (t->adopt(p->d->rt, id, &h, &err) < 0) {
        cb_error_free(err);
        int r = cb_container_reclaim(p->d->rt, id);
        cb_log_info(id, "warm pool: reclaimed a half-made member%s", r < 0 ? " (incomplete)" : "");
        return;
    }
    int fd = -1;
    if (p->ready < p->size && t->state(h) == CB_RUN_RUNNING && t->connect(h, &fd, NULL) == 0) {
        close(fd);
        add_member(p, h, cb_container_netns_of(h));
        cb_log_info(id, "warm pool: adopted member");
        return;
    }
    destroy_now(t, h, "left over");
    cb_log_info(id, "warm pool: destroyed left-over member");
}

static bool has_record(struct cb_daemon *d, const char *id)
{
    for (struct cb_sbx *s = d->sandboxes; s; s = s->next)
        if (strcmp(s->rec.id, id) == 0)
            return true;
    return false;
}

static void recover(struct cb_pool *p)
{
    _cleanup_free_ char *dir = cb_xasprintf("%s/sandboxes", p->d->cfg.state_dir);
    DIR *dp = opendir(dir);
    if (!dp)
        return;
    char **ids = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        /* A sandbox directory without a store record: the daemon died
         * after answering a DELETE (the record goes first) and before the
         * teardown finished, or while a failed create was cleaned up. No
         * tenant can reach it any more: finish the teardown. Records are
         * loaded (cb_sbx_recover runs first), so this never hits a live
         * sandbox. */
        bool sandbox = strncmp(de->d_name, "sb_", 3) == 0;
        if (sandbox && has_record(p->d, de->d_name)) {
            /* Claimed; a leftover marker would only mislead a later run. */
            cb_pool_unmark(p->d->cfg.state_dir, de->d_name);
            continue;
        }
        if (sandbox && !is_marked(p->d->cfg.state_dir, de->d_name)) {
            cb_log_info(de->d_name, "no record: finishing an interrupted delete");
            cb_pool_reap(p, NULL, de->d_name);
            continue;
        }
        if (!sandbox && strncmp(de->d_name, CB_POOL_PREFIX, strlen(CB_POOL_PREFIX)) != 0)
            continue;
        ids = realloc(ids, (n + 1) * sizeof(*ids));
        if (!ids)
            abort();
        ids[n++] = cb_xstrdup(de->d_name);
    }
    closedir(dp);
    for (size_t i = 0; i < n; i++) {
        recover_member(p, ids[i]);
        free(ids[i]);
    }
    free(ids);
}

struct cb_pool *cb_pool_open(struct cb_daemon *d, unsigned size)
{
    struct cb_pool *p = cb_xcalloc(1, sizeof(*p));
    p->d = d;
    p->size = size;
    p->reap_tail = &p->reap_queue;
    uv_timer_init(d->loop, &p->retry);
    p->retry.data = p;
    recover(p);
    if (size)
        cb_log_info(NULL, "warm pool: %u member(s) of template %s, %u adopted", size,
                    CB_POOL_TEMPLATE, p->ready);
    refill(p);
    return p;
}

static void free_pool_cb(uv_handle_t *h) { free(h->data); }

void cb_pool_close(struct cb_pool *p)
{
    if (!p)
        return;
    p->closing = true;
    uv_timer_stop(&p->retry);
    /* Teardowns waiting for a retry are left to the next start (their
     * directories stay): a stop does not wait minutes for them. */
    while (p->reap_waiting) {
        struct reap *r = p->reap_waiting;
        p->reap_waiting = r->next_waiting;
        uv_timer_stop(&r->timer);
        p->reaps_pending--;
        cb_log_info(r->id, "teardown left for the next start");
        free_reap(r);
    }
    /* Refills, destroys and teardowns in flight finish on worker threads;
     * their after-callbacks run on the loop (and start the teardowns still
     * queued), so run it until they all did. */
    while (p->inflight > 0)
        uv_run(p->d->loop, UV_RUN_ONCE);
    while (p->members) {
        struct member *m = p->members;
        struct cb_sandbox *h = m->h;
        unlink_member(p, m);
        destroy_now(p->d->tier, h, "daemon stopping");
    }
    free(p->last_group);
    p->last_group = NULL;
    uv_close((uv_handle_t *)&p->retry, free_pool_cb);
    uv_run(p->d->loop, UV_RUN_NOWAIT);
}
