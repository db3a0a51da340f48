/* daemon.h — the context every part of cellboxd shares (passed explicitly,
 * never a global): configuration, runtime, store, HTTP server, the sandbox
 * registry and metrics. */
#ifndef CB_DAEMON_DAEMON_H
#define CB_DAEMON_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "http.h"
#include "store.h"
#include "tier.h"

#define CB_VERSION "0.1.0"

struct cb_config {
    char *state_dir;
    char *socket_path;
    char *listen;         /* HOST:PORT or NULL */
    char *preview_domain; /* or NULL */
    char *init_path;      /* NULL = cellbox-init next to cellboxd */
    bool log_json;
    uint32_t uid_base;
    uint64_t max_body;        /* JSON and other buffered bodies */
    uint64_t max_upload;      /* streamed file/tar uploads */
    uint64_t exec_output_cap; /* per stream */
    int64_t default_max_sandboxes;
    int64_t default_max_memory_mb;
    bool no_disk_quota;
    bool durable_disks; /* --durable-disks: sandbox disks honour fsync (operations.md) */
    uint32_t pool_size;       /* warm pool members (pool.h); 0 disables */
};
void cb_config_defaults(struct cb_config *c);
/* Apply "key = value" (command-line long names without dashes). */
int cb_config_set(struct cb_config *c, const char *key, const char *value,
                  struct cb_error **err);
int cb_config_load_file(struct cb_config *c, const char *path, struct cb_error **err);
void cb_config_clear(struct cb_config *c);

struct cb_sbx;
struct cb_metrics;
struct cb_pool;

struct cb_daemon {
    uv_loop_t *loop;
    struct cb_config cfg;
    struct cb_runtime *rt;
    const struct cb_tier_ops *tier; /* container */
    struct cb_store *store;
    struct cb_http_server http;
    struct cb_sbx *sandboxes; /* registry, creation order */
    int64_t next_seq;
    uv_timer_t sweep;
    struct cb_metrics *metrics;
    struct cb_pool *pool;     /* warm pool, NULL when off */
    double started_at;
    bool stopping;
    int exec_lingering; /* the sum of every sandbox's exec_lingering */
};

/* Route table (routes.c) and the request entry points the server calls. */
extern const struct cb_route cb_routes[];
extern const size_t cb_nroutes;
enum cb_http_disposition cb_api_on_headers(struct cb_http_req *req);
void cb_api_on_request(struct cb_http_req *req);
void cb_api_on_done(struct cb_http_req *req);

static inline struct cb_daemon *cb_req_daemon(struct cb_http_req *req)
{
    return (struct cb_daemon *)req->ctx;
}

#endif
