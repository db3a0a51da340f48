/* sandboxes.c — create, list, get, delete, life-cycle actions, PATCH. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "runtime.h"

static bool valid_name(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 63 || strncmp(n, "sb_", 3) == 0 || !isalnum((unsigned char)n[0]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char)n[i]) && n[i] != '-' && n[i] != '_' && n[i] != '.')
            return false;
    return true;
}

/* Limits object from the body with the defaults the API documents. */
static int parse_limits(json_t *body, json_t *base, json_t **out, struct cb_error **err)
{
    double cpu = base ? json_number_value(json_object_get(base, "cpu")) : 1.0;
    double mem = base ? (double)json_integer_value(json_object_get(base, "memory_mb")) : 512;
    double disk = base ? (double)json_integer_value(json_object_get(base, "disk_mb")) : 2048;
    double pids = base ? (double)json_integer_value(json_object_get(base, "pids")) : 512;
    if (cb_json_get_number(body, "cpu", 0.01, 256, &cpu, err) < 0 ||
        cb_json_get_number(body, "memory_mb", 16, 1 << 20, &mem, err) < 0 ||
        cb_json_get_number(body, "disk_mb", 1, 1 << 24, &disk, err) < 0 ||
        cb_json_get_number(body, "pids", 8, 1 << 22, &pids, err) < 0)
        return -1;
    *out = json_pack("{s:f,s:I,s:I,s:I}", "cpu", cpu, "memory_mb", (json_int_t)mem,
                     "disk_mb", (json_int_t)disk, "pids", (json_int_t)pids);
    return 0;
}

static int parse_network(json_t *body, json_t **out, struct cb_error **err)
{
    json_t *n = json_object_get(body, "network");
    bool internet = true;
    if (n && !json_is_null(n)) {
        if (!json_is_object(n))
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'network' must be an object");
        if (cb_json_get_bool(n, "internet", &internet, err) < 0)
            return -1;
        const char *lists[] = {"allow", "deny", "cidr_allow", "cidr_deny", "secrets"};
        for (size_t i = 0; i < CB_ARRAY_SIZE(lists); i++) {
            json_t *l = json_object_get(n, lists[i]);
            if (l && !(json_is_array(l) && json_array_size(l) == 0))
                return cb_error_set(err, 0, CB_ERR_UNAVAILABLE,
                                    "network policies ('%s') are not implemented in this version",
                                    lists[i]);
        }
    }
    *out = json_pack("{s:b}", "internet", internet);
    return 0;
}

struct create_args {
    const char *name, *template_name, *tier, *on_idle, *workdir, *user;
    double timeout, idle_timeout;
    json_t *env, *metadata;
};

static const char *const create_keys[] = {
    "name", "template", "tier", "snapshot", "cpu", "memory_mb", "disk_mb", "pids",
    "timeout", "idle_timeout", "on_idle", "env", "workdir", "user", "metadata", "network",
    NULL};

static int parse_create(struct cb_daemon *d, json_t *b, struct create_args *a,
                        struct cb_error **err)
{
    *a = (struct create_args){.template_name = "host", .tier = "container",
                              .on_idle = "pause", .workdir = "/workspace", .user = "user"};
    const char *snap = NULL;
    if (cb_json_check_keys(b, create_keys, err) < 0 ||
        cb_json_get_string(b, "name", 63, &a->name, err) < 0 ||
        cb_json_get_string(b, "template", 64, &a->template_name, err) < 0 ||
        cb_json_get_string(b, "tier", 16, &a->tier, err) < 0 ||
        cb_json_get_string(b, "snapshot", 64, &snap, err) < 0 ||
        cb_json_get_string(b, "on_idle", 16, &a->on_idle, err) < 0 ||
        cb_json_get_string(b, "workdir", 4096, &a->workdir, err) < 0 ||
        cb_json_get_string(b, "user", 16, &a->user, err) < 0 ||
        cb_json_get_number(b, "timeout", 0, 1e9, &a->timeout, err) < 0 ||
        cb_json_get_number(b, "idle_timeout", 0, 1e9, &a->idle_timeout, err) < 0 ||
        cb_json_get_string_map(b, "env", 1024, &a->env, err) < 0 ||
        cb_json_get_string_map(b, "metadata", 64, &a->metadata, err) < 0)
        return -1;
    if (a->name && !valid_name(a->name))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST,
                            "'name' must be 1-63 characters [A-Za-z0-9._-], not starting with sb_");
    if (strcmp(a->tier, "gvisor") == 0 || strcmp(a->tier, "microvm") == 0)
        return cb_error_set(err, 0, CB_ERR_UNAVAILABLE,
                            "%s tier is not implemented in this version", a->tier);
    if (strcmp(a->tier, "container") != 0)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "unknown tier '%.32s'", a->tier);
    if (snap)
        return cb_error_set(err, 0, CB_ERR_UNAVAILABLE,
                            "creating from snapshots is not implemented in this version");
    if (strcmp(a->on_idle, "standby") == 0)
        return cb_error_set(err, 0, CB_ERR_UNAVAILABLE,
                            "standby needs the gvisor tier, which is not implemented in this version");
    if (strcmp(a->on_idle, "pause") != 0 && strcmp(a->on_idle, "stop") != 0)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'on_idle' must be pause, stop or standby");
    if (strcmp(a->user, "user") != 0 && strcmp(a->user, "root") != 0)
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'user' must be \"user\" or \"root\"");
    if (a->workdir[0] != '/')
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'workdir' must be an absolute path");
    if (strchr(a->template_name, '/') || a->template_name[0] == '.' ||
        !cb_template_exists(d->rt, a->template_name))
        return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "unknown template '%.64s'",
                            a->template_name);
    return 0;
}

/* Per-tenant quotas: a tenants row, or the daemon's defaults. A new
 * sandbox of memory_mb, or (self) an existing one's memory raised to
 * memory_mb by a PATCH: then the count is not checked and self's old
 * memory is not summed. */
static int check_quota_of(struct cb_daemon *d, const char *tenant, int64_t memory_mb,
                          const struct cb_sbx *self, struct cb_error **err)
{
    struct cb_tenant_quota q = {0, 0};
    if (cb_store_tenant_get(d->store, tenant, &q) != 1 && strcmp(tenant, "admin") != 0)
        q = (struct cb_tenant_quota){d->cfg.default_max_sandboxes, d->cfg.default_max_memory_mb};
    int64_t count = 0, mem = 0;
    for (struct cb_sbx *s = d->sandboxes; s; s = s->next) {
        if (s->deleted || s == self || strcmp(s->rec.tenant, tenant) != 0)
            continue;
        count++;
        mem += json_integer_value(json_object_get(json_object_get(s->spec, "limits"), "memory_mb"));
    }
    if (!self && q.max_sandboxes > 0 && count + 1 > q.max_sandboxes)
        return cb_error_set(err, 0, CB_ERR_LIMIT, "tenant quota: at most %lld sandboxes",
                            (long long)q.max_sandboxes);
    if (q.max_memory_mb > 0 && mem + memory_mb > q.max_memory_mb)
        return cb_error_set(err, 0, CB_ERR_LIMIT, "tenant quota: at most %lld MiB of memory",
                            (long long)q.max_memory_mb);
    return 0;
}

static int check_quota(struct cb_daemon *d, const char *tenant, int64_t memory_mb,
                       struct cb_error **err)
{
    return check_quota_of(d, tenant, memory_mb, NULL, err);
}

static json_t *build_spec(json_t *body, struct create_args *a, struct cb_error **err)
{
    json_t *limits = NULL, *net = NULL;
    if (parse_limits(body, NULL, &limits, err) < 0)
        return NULL;
    if (parse_network(body, &net, err) < 0) {
        json_decref(limits);
        return NULL;
    }
    /* "o" steals one reference: take one of the borrowed body members, and
     * hand a fresh empty object over as is ("O" on a fresh object would
     * leave it with a reference nobody owns — a leak LeakSanitizer found). */
    return json_pack("{s:o,s:o,s:o,s:s,s:s,s:o}", "limits", limits, "network", net, "env",
                     a->env ? json_incref(a->env) : json_object(), "workdir", a->workdir,
                     "user", a->user, "metadata",
                     a->metadata ? json_incref(a->metadata) : json_object());
}

struct create_ctx {
    struct cb_http_req *req;
    uint64_t t0;
    /* Stage times (debug log): request parsed and checked (quota
     * included), registered; the start operation (tier work, then the
     * record insert) logs its own. */
    uint64_t t_checked, t_registered;
};

static void create_cleanup_done(struct cb_sbx *s, struct cb_error *err, void *arg) {}

static void create_done(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct create_ctx *cc = arg;
    if (err) {
        cb_log_warn(s->rec.id, "create failed: %s", err->message);
        cb_http_respond_cb_error(cc->req, err);
        cb_sbx_delete(s, create_cleanup_done, NULL);
    } else {
        uint64_t now = cb_now_ns();
        cb_metrics_create(s->d->metrics, (double)(now - cc->t0) / 1e9);
        cb_log_debug(s->rec.id, "create: request and checks %.2f ms, register %.2f ms, "
                     "start and record %.2f ms", (double)(cc->t_checked - cc->t0) / 1e6,
                     (double)(cc->t_registered - cc->t_checked) / 1e6,
                     (double)(now - cc->t_registered) / 1e6);
        cb_log_info(s->rec.id, "created");
        cb_http_respond_json(cc->req, 201, cb_api_sandbox_json(s, false));
    }
    free(cc);
}

void cb_api_sandbox_create(struct cb_http_req *req)
{
    struct cb_daemon *d = cb_req_daemon(req);
    json_t *body = cb_api_body(req, true);
    if (!body)
        return;
    struct cb_error *err = NULL;
    struct create_args a;
    json_t *spec = NULL;
    if (parse_create(d, body, &a, &err) < 0)
        goto fail;
    if (a.name) {
        struct cb_sbx *old = cb_sbx_find(d, req->tenant, false, a.name);
        if (old && cb_http_query_bool(req, "get_or_create")) {
            cb_http_respond_json(req, 200, cb_api_sandbox_json(old, false));
            json_decref(body);
            return;
        }
        if (old) {
            cb_error_set(&err, 0, CB_ERR_CONFLICT, "a sandbox named '%s' exists", a.name);
            goto fail;
        }
    }
    if (!(spec = build_spec(body, &a, &err)))
        goto fail;
    if (check_quota(d, req->tenant,
                    json_integer_value(json_object_get(json_object_get(spec, "limits"), "memory_mb")),
                    &err) < 0)
        goto fail;
    uint64_t t_checked = cb_now_ns();
    /* A warm-pool member of this shape gives the sandbox its id (pool.h):
     * taken now, claimed by the start below. */
    struct cb_limits limits;
    cb_limits_from_spec(spec, &limits);
    struct cb_sandbox *member = cb_pool_take(d->pool, a.template_name, a.tier, &limits,
                                              req->tenant);
    char hex[17];
    cb_random_hex(hex, 8);
    double now = cb_wall_time();
    struct cb_sb_record rec = {
        .id = member ? cb_xstrdup(cb_container_id(member)) : cb_xasprintf("sb_%s", hex),
        .tenant = cb_xstrdup(req->tenant),
        .name = a.name ? cb_xstrdup(a.name) : NULL, .state = cb_xstrdup("creating"),
        .tier = cb_xstrdup(a.tier), .template_name = cb_xstrdup(a.template_name),
        .created_at = now, .expires_at = a.timeout > 0 ? now + a.timeout : 0,
        .idle_timeout = a.idle_timeout, .on_idle = cb_xstrdup(a.on_idle),
        .seq = d->next_seq++};
    struct cb_sbx *s = cb_sbx_register(d, &rec, steal_ptr(spec), &err);
    cb_sb_record_clear(&rec);
    if (!s) {
        if (member)
            cb_pool_give_back(d->pool, member);
        goto fail;
    }
    s->reserved = member;
    struct create_ctx *cc = cb_xcalloc(1, sizeof(*cc));
    cc->req = req;
    cc->t0 = req->started_ns;
    cc->t_checked = t_checked;
    cc->t_registered = cb_now_ns();
    json_decref(body);
    cb_sbx_start(s, create_done, cc);
    return;
fail:
    json_decref(spec);
    json_decref(body);
    cb_http_respond_cb_error(req, err);
    cb_error_free(err);
}

static bool metadata_matches(struct cb_sbx *s, const char *query)
{
    json_t *md = json_object_get(s->spec, "metadata");
    for (const char *q = query; q && *q;) {
        const char *end = strchr(q, '&');
        size_t len = end ? (size_t)(end - q) : strlen(q);
        if (len > 9 && strncmp(q, "metadata.", 9) == 0) {
            const char *eq = memchr(q, '=', len);
            char *k = eq ? cb_url_decode(q + 9, (size_t)(eq - q - 9), 1, 256) : NULL;
            char *v = eq ? cb_url_decode(eq + 1, len - (size_t)(eq - q) - 1, 1, 4096) : NULL;
            const char *have = k ? json_string_value(json_object_get(md, k)) : NULL;
            bool ok = have && v && strcmp(have, v) == 0;
            free(k);
            free(v);
            if (!ok)
                return false;
        }
        q = end ? end + 1 : NULL;
    }
    return true;
}

void cb_api_sandbox_list(struct cb_http_req *req)
{
    struct cb_daemon *d = cb_req_daemon(req);
    _cleanup_free_ char *state = cb_http_query(req, "state");
    _cleanup_free_ char *lim = cb_http_query(req, "limit");
    _cleanup_free_ char *cursor = cb_http_query(req, "cursor");
    long limit = lim ? strtol(lim, NULL, 10) : 100;
    if (limit <= 0 || limit > 1000) {
        cb_http_respond_error(req, CB_ERR_BAD_REQUEST, "'limit' must be 1..1000");
        return;
    }
    long long after = cursor && *cursor ? strtoll(cursor, NULL, 10) : 0;
    json_t *items = json_array();
    long long last = 0;
    bool more = false;
    for (struct cb_sbx *s = d->sandboxes; s; s = s->next) {
        if (s->deleted || s->rec.seq <= after ||
            (!req->is_admin && strcmp(s->rec.tenant, req->tenant) != 0) ||
            (state && *state && strcmp(state, s->rec.state) != 0) ||
            !metadata_matches(s, req->query))
            continue;
        if ((long)json_array_size(items) == limit) {
            more = true;
            break;
        }
        json_array_append_new(items, cb_api_sandbox_json(s, false));
        last = s->rec.seq;
    }
    json_t *o = json_pack("{s:o}", "items", items);
    if (more) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%lld", last);
        json_object_set_new(o, "next_cursor", json_string(buf));
    } else {
        json_object_set_new(o, "next_cursor", json_null());
    }
    cb_http_respond_json(req, 200, o);
}

void cb_api_sandbox_get(struct cb_http_req *req)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (s)
        cb_http_respond_json(req, 200, cb_api_sandbox_json(s, true));
}

static void action_done(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct cb_http_req *req = arg;
    if (err)
        cb_http_respond_cb_error(req, err);
    else
        cb_http_respond_json(req, 200, cb_api_sandbox_json(s, false));
}

static void delete_done(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct cb_http_req *req = arg;
    if (err)
        cb_http_respond_cb_error(req, err);
    else
        cb_http_respond(req, 204, NULL, NULL, NULL, 0);
}

void cb_api_sandbox_delete(struct cb_http_req *req)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return;
    if (s->deleting) {
        cb_http_respond_error(req, CB_ERR_CONFLICT, "sandbox is being deleted");
        return;
    }
    cb_sbx_delete(s, delete_done, req);
}

void cb_api_sandbox_stop(struct cb_http_req *req)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return;
    if (strcmp(s->rec.state, "stopped") == 0) {
        cb_http_respond_json(req, 200, cb_api_sandbox_json(s, false));
        return;
    }
    cb_sbx_stop(s, "stopped by request", action_done, req);
}

void cb_api_sandbox_start(struct cb_http_req *req)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return;
    cb_sbx_touch(s);
    if (strcmp(s->rec.state, "stopped") != 0) {
        /* Already running, or paused: start means "make it run". */
        cb_sbx_ready(s, action_done, req);
        return;
    }
    cb_sbx_start(s, action_done, req);
}

void cb_api_sandbox_pause(struct cb_http_req *req)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return;
    if (strcmp(s->rec.state, "paused") == 0) {
        cb_http_respond_json(req, 200, cb_api_sandbox_json(s, false));
        return;
    }
    if (strcmp(s->rec.state, "running") != 0) {
        cb_http_respond_error(req, CB_ERR_CONFLICT, "sandbox is %s", s->rec.state);
        return;
    }
    cb_sbx_pause(s, action_done, req);
}

void cb_api_sandbox_resume(struct cb_http_req *req)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return;
    if (strcmp(s->rec.state, "stopped") == 0) {
        cb_http_respond_error(req, CB_ERR_CONFLICT, "sandbox is stopped; use start");
        return;
    }
    cb_sbx_ready(s, action_done, req);
}

void cb_api_sandbox_keepalive(struct cb_http_req *req)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return;
    json_t *body = cb_api_body(req, true);
    if (!body)
        return;
    struct cb_error *err = NULL;
    double timeout = -1;
    if (cb_json_get_number(body, "timeout", 0, 1e9, &timeout, &err) < 0) {
        json_decref(body);
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        return;
    }
    json_decref(body);
    cb_sbx_touch(s);
    if (timeout >= 0)
        s->rec.expires_at = timeout > 0 ? cb_wall_time() + timeout : 0;
    if (cb_sbx_save(s, &err) < 0) {
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        return;
    }
    cb_sbx_ready(s, action_done, req);
}

static const char *const patch_keys[] = {"idle_timeout", "on_idle", "metadata", "limits",
                                         "network", "timeout", NULL};

static int apply_patch(struct cb_sbx *s, json_t *b, bool *limits_changed,
                       struct cb_error **err)
{
    double idle = -1, timeout = -1;
    const char *on_idle = NULL;
    json_t *md = NULL, *lim = json_object_get(b, "limits");
    if (cb_json_check_keys(b, patch_keys, err) < 0 ||
        cb_json_get_number(b, "idle_timeout", 0, 1e9, &idle, err) < 0 ||
        cb_json_get_number(b, "timeout", 0, 1e9, &timeout, err) < 0 ||
        cb_json_get_string(b, "on_idle", 16, &on_idle, err) < 0 ||
        cb_json_get_string_map(b, "metadata", 64, &md, err) < 0)
        return -1;
    if (json_object_get(b, "network"))
        return cb_error_set(err, 0, CB_ERR_UNAVAILABLE,
                            "changing network policy is not implemented in this version");
    if (on_idle && strcmp(on_idle, "pause") != 0 && strcmp(on_idle, "stop") != 0)
        return cb_error_set(err, 0, on_idle && strcmp(on_idle, "standby") == 0
                                        ? CB_ERR_UNAVAILABLE : CB_ERR_BAD_REQUEST,
                            "'on_idle' must be pause or stop on this tier");
    json_t *new_limits = NULL;
    if (lim) {
        static const char *const limit_keys[] = {"cpu", "memory_mb", "disk_mb", "pids", NULL};
        if (!json_is_object(lim))
            return cb_error_set(err, 0, CB_ERR_BAD_REQUEST, "'limits' must be an object");
        if (cb_json_check_keys(lim, limit_keys, err) < 0)
            return -1;
        json_t *old_limits = json_object_get(s->spec, "limits");
        if (parse_limits(lim, old_limits, &new_limits, err) < 0)
            return -1;
        /* With per-sandbox images the disk is an image of that size made
         * at create (and without disk quotas no size is enforced at all):
         * refuse here, before anything is saved, so the record never shows
         * a size that is not enforced. XFS project quotas change live. */
        const char *no_quota = NULL;
        bool live = cb_runtime_disk_quota(s->d->rt, &no_quota) && !cb_runtime_disk_images(s->d->rt);
        if (!live && json_integer_value(json_object_get(new_limits, "disk_mb")) !=
                         json_integer_value(json_object_get(old_limits, "disk_mb"))) {
            json_decref(new_limits);
            return cb_error_set(err, 0, CB_ERR_CONFLICT,
                                "'disk_mb' is fixed when the sandbox is created");
        }
        /* More memory counts against the tenant's quota as a create does;
         * less is always allowed (a quota lowered since stays honoured by
         * shrinking). */
        int64_t mem = json_integer_value(json_object_get(new_limits, "memory_mb"));
        if (mem > json_integer_value(json_object_get(old_limits, "memory_mb")) &&
            check_quota_of(s->d, s->rec.tenant, mem, s, err) < 0) {
            json_decref(new_limits);
            return -1;
        }
        json_object_set_new(s->spec, "limits", new_limits);
        *limits_changed = true;
    }
    if (idle >= 0)
        s->rec.idle_timeout = idle;
    if (timeout >= 0)
        s->rec.expires_at = timeout > 0 ? cb_wall_time() + timeout : 0;
    if (on_idle) {
        free(s->rec.on_idle);
        s->rec.on_idle = cb_xstrdup(on_idle);
    }
    if (md)
        json_object_set(s->spec, "metadata", md);
    return cb_sbx_save(s, err);
}

/* A PATCH of limits: the record is saved with the new ones before the
 * worker applies them; if the tier refuses (v1 cannot lower memory below
 * what is in use, a cgroup write fails), the record gets the old ones back
 * so it never shows limits that are not enforced. */
struct limits_patch {
    struct cb_http_req *req;
    json_t *old_limits, *new_limits;
};

static void limits_done(struct cb_sbx *s, struct cb_error *err, void *arg)
{
    struct limits_patch *p = arg;
    json_t *now = json_object_get(s->spec, "limits");
    /* Only while the record still holds this PATCH's limits: a later PATCH
     * queued behind this one owns them otherwise. */
    if (err && p->old_limits && !s->deleted && now && json_equal(now, p->new_limits)) {
        json_object_set(s->spec, "limits", p->old_limits);
        struct cb_error *serr = NULL;
        if (cb_sbx_save(s, &serr) < 0) {
            cb_log_error(s->rec.id, "restoring limits after a refused change: %s",
                         serr->message);
            cb_error_free(serr);
        }
    }
    action_done(s, err, p->req);
    json_decref(p->old_limits);
    json_decref(p->new_limits);
    free(p);
}

void cb_api_sandbox_patch(struct cb_http_req *req)
{
    struct cb_sbx *s = cb_api_sandbox(req);
    if (!s)
        return;
    json_t *body = cb_api_body(req, false);
    if (!body)
        return;
    struct cb_error *err = NULL;
    bool limits_changed = false;
    json_t *old_limits = json_deep_copy(json_object_get(s->spec, "limits"));
    int r = apply_patch(s, body, &limits_changed, &err);
    json_decref(body);
    if (r < 0) {
        json_decref(old_limits);
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        return;
    }
    cb_sbx_touch(s);
    if (limits_changed) {
        struct limits_patch *p = cb_xcalloc(1, sizeof(*p));
        p->req = req;
        p->old_limits = old_limits;
        p->new_limits = json_deep_copy(json_object_get(s->spec, "limits"));
        cb_sbx_set_limits(s, limits_done, p);
        return;
    }
    json_decref(old_limits);
    cb_http_respond_json(req, 200, cb_api_sandbox_json(s, false));
}
