/* admin.c — API keys and tenants (admin only). A key is shown once, at
 * creation; the database keeps only its SHA-256, so a leaked state.db does
 * not leak usable keys. */
#include <openssl/evp.h>
#include <string.h>

#include "api.h"
#include "json.h"

void cb_api_key_hash(const char *key, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(key, strlen(key), md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < n && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    out[64] = 0;
}

static bool valid_tenant(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') || t[i] == '-' ||
              t[i] == '_'))
            return false;
    return true;
}

static const char *const key_fields[] = {"tenant", "max_sandboxes", "max_memory_mb", NULL};

void cb_api_keys_create(struct cb_http_req *req)
{
    struct cb_daemon *d = cb_req_daemon(req);
    json_t *body = cb_api_body(req, false);
    if (!body)
        return;
    const char *tenant = NULL;
    double max_sb = -1, max_mem = -1;
    struct cb_error *err = NULL;
    if (cb_json_check_keys(body, key_fields, &err) < 0 ||
        cb_json_get_string(body, "tenant", 63, &tenant, &err) < 0 ||
        cb_json_get_number(body, "max_sandboxes", 0, 1e6, &max_sb, &err) < 0 ||
        cb_json_get_number(body, "max_memory_mb", 0, 1e9, &max_mem, &err) < 0)
        goto fail;
    if (!tenant || !valid_tenant(tenant)) {
        cb_error_set(&err, 0, CB_ERR_BAD_REQUEST, "'tenant' must be 1-63 of [a-z0-9_-]");
        goto fail;
    }
    if (max_sb >= 0 || max_mem >= 0) {
        struct cb_tenant_quota q = {d->cfg.default_max_sandboxes, d->cfg.default_max_memory_mb};
        cb_store_tenant_get(d->store, tenant, &q);
        if (max_sb >= 0)
            q.max_sandboxes = (int64_t)max_sb;
        if (max_mem >= 0)
            q.max_memory_mb = (int64_t)max_mem;
        if (cb_store_tenant_set(d->store, tenant, &q, &err) < 0)
            goto fail;
    }
    char rnd[33], idhex[17], hash[65];
    cb_random_hex(rnd, 16);
    cb_random_hex(idhex, 8);
    char *key = cb_xasprintf("cbk_%s", rnd);
    char *id = cb_xasprintf("key_%s", idhex);
    char prefix[13];
    snprintf(prefix, sizeof(prefix), "%.12s", key);
    cb_api_key_hash(key, hash);
    if (cb_store_key_insert(d->store, id, tenant, hash, prefix, &err) < 0) {
        free(key);
        free(id);
        goto fail;
    }
    cb_http_respond_json(req, 201, json_pack("{s:s,s:s,s:s,s:s}", "id", id, "tenant", tenant,
                                             "key", key, "prefix", prefix));
    free(key);
    free(id);
    json_decref(body);
    return;
fail:
    json_decref(body);
    cb_http_respond_cb_error(req, err);
    cb_error_free(err);
}

void cb_api_keys_list(struct cb_http_req *req)
{
    struct cb_key_record *items = NULL;
    size_t n = 0;
    struct cb_error *err = NULL;
    if (cb_store_key_list(cb_req_daemon(req)->store, &items, &n, &err) < 0) {
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:f}", "id", items[i].id, "tenant",
                                             items[i].tenant, "prefix", items[i].prefix,
                                             "created_at", items[i].created_at));
        cb_key_record_clear(&items[i]);
    }
    free(items);
    cb_http_respond_json(req, 200, json_pack("{s:o}", "items", arr));
}

void cb_api_keys_delete(struct cb_http_req *req)
{
    struct cb_error *err = NULL;
    int r = cb_store_key_delete(cb_req_daemon(req)->store,
                                cb_route_param(&req->match, "key_id"), &err);
    if (r < 0) {
        cb_http_respond_cb_error(req, err);
        cb_error_free(err);
    } else if (r == 0) {
        cb_http_respond_error(req, CB_ERR_NOT_FOUND, "no such key");
    } else {
        cb_http_respond(req, 204, NULL, NULL, NULL, 0);
    }
}
