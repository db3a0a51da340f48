/* service.c — /healthz, /v1/info, /metrics, templates list, and the helpers
 * every resource handler shares. */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>

#include "api.h"
#include "pool.h"
#include "runtime.h"
#include "json.h"
#include "metrics.h"

struct cb_sbx *cb_api_sandbox(struct cb_http_req *req)
{
    struct cb_daemon *d = cb_req_daemon(req);
    const char *id = cb_route_param(&req->match, "id");
    struct cb_sbx *s = cb_sbx_find(d, req->tenant, req->is_admin, id);
    /* Another tenant's sandbox answers exactly like a missing one: 404,
     * never 403, so ids cannot be probed across tenants. */
    if (!s) {
        cb_http_respond_error(req, CB_ERR_NOT_FOUND, "no such sandbox");
        return NULL;
    }
    return s;
}

json_t *cb_api_body(struct cb_http_req *req, bool empty_ok)
{
    struct cb_error *err = NULL;
    json_t *v = cb_json_parse_body(req->body, req->body_len, empty_ok, &err);
    if (!v) {
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
    }
    return v;
}

static json_t *usage_json(struct cb_sbx *s)
{
    struct cb_sandbox_stats st = {0};
    const struct cb_tier_ops *t = s->d->tier;
    if (s->h && !s->busy && t->stats(s->h, &st, NULL) < 0)
        memset(&st, 0, sizeof(st));
    return json_pack("{s:f,s:I,s:I,s:I,s:I,s:I,s:i}", "cpu_seconds", (double)st.cpu_ns / 1e9,
                     "memory_bytes", (json_int_t)st.memory_bytes, "memory_peak_bytes",
                     (json_int_t)st.memory_peak_bytes, "disk_bytes",
                     (json_int_t)st.disk_bytes, "net_rx_bytes", (json_int_t)0,
                     "net_tx_bytes", (json_int_t)0, "pids", (int)st.pids);
}

json_t *cb_api_sandbox_json(struct cb_sbx *s, bool with_usage)
{
    /* Optional parts ("?") may be missing from a record written by an older
     * version or by hand: they show as null instead of failing the pack. */
    json_t *spec = s->spec;
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:f,s:f,s:O?,s:O?,s:O?,s:f,s:s?,s:s?,s:s?}",
                          "id", s->rec.id, "state", s->rec.state, "tier", s->rec.tier,
                          "template", s->rec.template_name, "created_at",
                          s->rec.created_at, "idle_timeout", s->rec.idle_timeout,
                          "limits", json_object_get(spec, "limits"), "metadata",
                          json_object_get(spec, "metadata"), "network",
                          json_object_get(spec, "network"), "last_active_at",
                          s->last_active, "on_idle", s->rec.on_idle, "user",
                          json_string_value(json_object_get(spec, "user")), "workdir",
                          json_string_value(json_object_get(spec, "workdir")));
    if (!o)
        abort();
    json_object_set_new(o, "name", s->rec.name ? json_string(s->rec.name) : json_null());
    json_object_set_new(o, "expires_at",
                        s->rec.expires_at > 0 ? json_real(s->rec.expires_at) : json_null());
    if (s->rec.stop_reason && strcmp(s->rec.state, "stopped") == 0)
        json_object_set_new(o, "stop_reason", json_string(s->rec.stop_reason));
    if (with_usage)
        json_object_set_new(o, "usage", usage_json(s));
    return o;
}

void cb_api_unavailable(struct cb_http_req *req)
{
    const char *p = req->match.route->pattern;
    if (strncmp(p, "/v1/sandboxes/{id}", 18) == 0 && !cb_api_sandbox(req))
        return;
    const char *why = "this feature is not available in this version of cellboxd";
    if (strstr(p, "/standby"))
        why = "standby needs the gvisor tier, which is not implemented in this version";
    else if (strstr(p, "/fork"))
        why = "fork is not implemented in this version";
    else if (strstr(p, "snapshots"))
        why = "snapshots are not implemented in this version";
    else if (strstr(p, "/templates"))
        why = "building and importing templates is not implemented in this version";
    cb_http_respond_error(req, CB_ERR_UNAVAILABLE, "%s", why);
}

void cb_api_healthz(struct cb_http_req *req)
{
    cb_http_respond_json(req, 200, json_pack("{s:b}", "ok", 1));
}

static json_t *templates_json(struct cb_daemon *d)
{
    json_t *arr = json_array();
    char *dir = cb_xasprintf("%s/templates", d->cfg.state_dir);
    DIR *dh = opendir(dir);
    free(dir);
    if (!dh)
        return arr;
    struct dirent *e;
    while ((e = readdir(dh)))
        if (e->d_name[0] != '.' && cb_template_exists(d->rt, e->d_name))
            json_array_append_new(arr, json_pack("{s:s}", "name", e->d_name));
    closedir(dh);
    return arr;
}

static json_t *tiers_json(struct cb_daemon *d)
{
    json_t *tiers = json_object();
    static const char *const names[] = {"container", "gvisor", "microvm"};
    for (size_t i = 0; i < CB_ARRAY_SIZE(names); i++) {
        const struct cb_tier_ops *t = cb_tier_lookup(names[i]);
        char *reason = NULL;
        bool ok = false;
        if (t && strcmp(names[i], "container") == 0)
            ok = t->probe(d->rt, &reason) == 0;
        else if (!reason)
            reason = cb_xstrdup("not implemented yet");
        json_t *o = json_pack("{s:b}", "available", ok);
        if (!ok)
            json_object_set_new(o, "reason", json_string(reason ? reason : "unavailable"));
        free(reason);
        json_object_set_new(tiers, names[i], o);
    }
    return tiers;
}

void cb_api_info(struct cb_http_req *req)
{
    struct cb_daemon *d = cb_req_daemon(req);
    const char *quota_reason = NULL;
    bool quota = cb_runtime_disk_quota(d->rt, &quota_reason);
    /* durable: sandbox disks honour fsync (--durable-disks; operations.md) */
    json_t *disk = json_pack("{s:b,s:b}", "available", quota, "durable", d->cfg.durable_disks);
    /* which of the two ways (docs/operations.md "Disk quotas") */
    if (quota)
        json_object_set_new(disk, "kind",
                            json_string(cb_runtime_disk_images(d->rt) ? "image" : "project"));
    if (!quota)
        json_object_set_new(disk, "reason", json_string(quota_reason ? quota_reason : "unknown"));
    json_t *o = json_pack(
        "{s:s,s:s,s:o,s:o,s:{s:I,s:I,s:I,s:i,s:i},s:[ssssssss],s:s,s:o,s:f}",
        "version", CB_VERSION, "api", "v1", "tiers", tiers_json(d), "templates",
        templates_json(d), "limits", "max_body_bytes", (json_int_t)d->cfg.max_body,
        "max_upload_bytes", (json_int_t)d->cfg.max_upload, "exec_output_cap_bytes",
        (json_int_t)d->cfg.exec_output_cap, "max_json_depth", CB_JSON_MAX_DEPTH,
        "max_path_bytes", 4096, "features", "exec", "processes", "files", "metrics",
        "tenants", "terminals", "ports", "preview", "cgroup_version", cb_runtime_cgroup_version(d->rt), "disk_quota", disk,
        "uptime_seconds", cb_wall_time() - d->started_at);
    json_object_set_new(o, "warm_pool",
                        json_pack("{s:I,s:I,s:I}", "size",
                                  (json_int_t)(d->pool ? cb_pool_size(d->pool) : 0), "ready",
                                  (json_int_t)(d->pool ? cb_pool_ready(d->pool) : 0),
                                  /* deleted sandboxes whose teardown (disk
                                   * image, cgroups, uid range) is not done */
                                  "teardowns_pending", (json_int_t)cb_pool_reaping(d->pool)));
    cb_http_respond_json(req, 200, o);
}

void cb_api_metrics(struct cb_http_req *req)
{
    char *text = cb_metrics_render(cb_req_daemon(req));
    cb_http_respond(req, 200, "text/plain; version=0.0.4", NULL, text, strlen(text));
    free(text);
}

void cb_api_templates_list(struct cb_http_req *req)
{
    cb_http_respond_json(req, 200,
                         json_pack("{s:o}", "items", templates_json(cb_req_daemon(req))));
}
