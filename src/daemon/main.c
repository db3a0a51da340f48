/* cellboxd — the cellbox daemon.
 *
 *   cellboxd [--state-dir DIR] [--socket PATH] [--listen HOST:PORT]
 *            [--preview-domain D] [--log-format json|text] [--config FILE]
 *            [--init PATH] [--uid-base N] [--max-sandboxes N] [--max-memory-mb N]
 *            [--no-disk-quota] [--durable-disks] [--pool-size N]
 *   cellboxd --print-routes
 *   cellboxd key create --tenant NAME [--state-dir DIR]
 *
 * SIGTERM/SIGINT stop the daemon gracefully; sandboxes keep running under
 * their own init and are re-adopted at the next start. */
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>
#include <sys/stat.h>

#include "api/api.h"
#include "daemon.h"
#include "runtime.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "sandbox.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: cellboxd [--state-dir DIR] [--socket PATH] [--listen HOST:PORT]\n"
               "                [--preview-domain D] [--log-format json|text] [--config FILE]\n"
               "                [--init PATH] [--uid-base N] [--max-sandboxes N]\n"
               "                [--max-memory-mb N] [--no-disk-quota] [--durable-disks]\n"
               "                [--pool-size N]\n"
               "       cellboxd --print-routes\n"
               "       cellboxd key create --tenant NAME [--state-dir DIR]\n");
}

static int print_routes(void)
{
    for (size_t i = 0; i < cb_nroutes; i++)
        printf("%s %s\n", cb_routes[i].method, cb_routes[i].pattern);
    return 0;
}

static int parse_args(int argc, char **argv, struct cb_config *cfg)
{
    static const struct option opts[] = {
        {"state-dir", 1, 0, 0}, {"socket", 1, 0, 0}, {"listen", 1, 0, 0},
        {"preview-domain", 1, 0, 0}, {"log-format", 1, 0, 0}, {"config", 1, 0, 'c'},
        {"init", 1, 0, 0}, {"uid-base", 1, 0, 0}, {"max-sandboxes", 1, 0, 0},
        {"max-memory-mb", 1, 0, 0}, {"max-body", 1, 0, 0}, {"max-upload", 1, 0, 0},
        {"exec-output-cap", 1, 0, 0}, {"pool-size", 1, 0, 0}, {"no-disk-quota", 0, 0, 'q'}, {"tenant", 1, 0, 0},
        {"durable-disks", 0, 0, 'D'},
        {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    /* The config file first, so command-line options override it. */
    for (int i = 1; i < argc - 1; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            struct cb_error *err = NULL;
            if (cb_config_load_file(cfg, argv[i + 1], &err) < 0) {
                fprintf(stderr, "cellboxd: %s\n", err->message);
                cb_error_free(err);
                return -1;
            }
        }
    }
    int c, idx;
    while ((c = getopt_long(argc, argv, "h", opts, &idx)) != -1) {
        if (c == 'h') {
            usage(stdout);
            exit(0);
        }
        if (c == 'c' || (c == 0 && strcmp(opts[idx].name, "tenant") == 0))
            continue;
        if (c == 'q') {
            cfg->no_disk_quota = true;
            continue;
        }
        if (c == 'D') {
            cfg->durable_disks = true;
            continue;
        }
        if (c != 0) {
            usage(stderr);
            return -1;
        }
        struct cb_error *err = NULL;
        if (cb_config_set(cfg, opts[idx].name, optarg, &err) < 0) {
            fprintf(stderr, "cellboxd: %s\n", err->message);
            cb_error_free(err);
            return -1;
        }
    }
    return 0;
}

static char *default_init_path(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return cb_xstrdup("/usr/lib/cellbox/cellbox-init");
    exe[n] = 0;
    return cb_xasprintf("%s/cellbox-init", dirname(exe));
}

static int mkdir_p(const char *path, mode_t mode)
{
    char *p = cb_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        mkdir(p, 0755);
        *s = '/';
    }
    int r = mkdir(p, mode) < 0 && errno != EEXIST ? -errno : 0;
    free(p);
    return r;
}

/* One daemon per state directory. A second one used to open the store,
 * re-adopt the first one's sandboxes (taking their init connections),
 * replace its socket, and then often fail on the TCP port, leaving the
 * first unreachable. The lock is held for the daemon's life (the fd is
 * never closed; O_CLOEXEC keeps it out of everything we run) and goes with
 * the process however it ends. The file says who holds it. */
static int lock_state_dir(struct cb_daemon *d, struct cb_error **err)
{
    int r = mkdir_p(d->cfg.state_dir, 0711);
    if (r < 0)
        return cb_error_set(err, -r, CB_ERR_INTERNAL, "create state directory %s",
                            d->cfg.state_dir);
    char *path = cb_xasprintf("%s/cellboxd.lock", d->cfg.state_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    int e = errno;
    free(path);
    if (fd < 0)
        return cb_error_set(err, e, CB_ERR_INTERNAL, "lock %s", d->cfg.state_dir);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK && *pid)
            return cb_error_set(err, 0, CB_ERR_CONFLICT,
                                "another cellboxd (pid %s) is running on state directory %s",
                                pid, d->cfg.state_dir);
        if (e == EWOULDBLOCK)
            return cb_error_set(err, 0, CB_ERR_CONFLICT,
                                "another cellboxd is running on state directory %s",
                                d->cfg.state_dir);
        return cb_error_set(err, e, CB_ERR_INTERNAL, "lock %s", d->cfg.state_dir);
    }
    char text[32];
    int len = snprintf(text, sizeof text, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)len, 0) != len)
        cb_log_info(NULL, "cannot write the pid to the state directory's lock file");
    return 0;
}

static int open_store(struct cb_daemon *d, struct cb_error **err)
{
    if (mkdir_p(d->cfg.state_dir, 0711) < 0)
        return cb_error_set(err, errno, CB_ERR_INTERNAL, "create state directory");
    char *db = cb_xasprintf("%s/state.db", d->cfg.state_dir);
    int r = cb_store_open(db, &d->store, err);
    free(db);
    return r;
}

/* Offline key creation: `cellboxd key create --tenant NAME --state-dir DIR`. */
static int key_create(int argc, char **argv, struct cb_daemon *d)
{
    const char *tenant = NULL;
    for (int i = 1; i < argc - 1; i++)
        if (strcmp(argv[i], "--tenant") == 0)
            tenant = argv[i + 1];
    if (!tenant || !*tenant || strlen(tenant) > 63) {
        fprintf(stderr, "cellboxd key create: --tenant NAME is required\n");
        return 2;
    }
    struct cb_error *err = NULL;
    if (open_store(d, &err) < 0) {
        fprintf(stderr, "cellboxd: %s\n", err->message);
        cb_error_free(err);
        return 1;
    }
    char rnd[33], idhex[17], hash[65], prefix[13];
    cb_random_hex(rnd, 16);
    cb_random_hex(idhex, 8);
    char *key = cb_xasprintf("cbk_%s", rnd), *id = cb_xasprintf("key_%s", idhex);
    snprintf(prefix, sizeof(prefix), "%.12s", key);
    cb_api_key_hash(key, hash);
    int rc = 0;
    if (cb_store_key_insert(d->store, id, tenant, hash, prefix, &err) < 0) {
        fprintf(stderr, "cellboxd: %s\n", err->message);
        cb_error_free(err);
        rc = 1;
    } else {
        printf("{\"id\":\"%s\",\"tenant\":\"%s\",\"key\":\"%s\"}\n", id, tenant, key);
    }
    free(key);
    free(id);
    cb_store_close(d->store);
    return rc;
}

static void signal_cb(uv_signal_t *h, int signum)
{
    struct cb_daemon *d = h->data;
    if (d->stopping)
        return;
    d->stopping = true;
    cb_log_info(NULL, "signal %d: stopping (sandboxes keep running)", signum);
    cb_http_server_close(&d->http);
    cb_sbx_detach_all(d);
    uv_stop(d->loop);
}

static void sweep_cb(uv_timer_t *t) { cb_sbx_sweep(t->data); }

static bool any_sandbox_busy(const struct cb_daemon *d)
{
    for (const struct cb_sbx *s = d->sandboxes; s; s = s->next)
        if (s->busy || s->queue)
            return true;
    return false;
}

/* Graceful end: the sandboxes keep running (a restart re-adopts them), but
 * the daemon's memory of them goes. Operations already on a worker thread
 * hold references of their own: let them finish first (their after-work
 * callbacks run on the loop and drop them; the HTTP connections that asked
 * for them are aborted by then). A worker stuck for more than 10 s keeps
 * its sandbox, which is then only reachable from that worker. */
static void release_sandboxes(struct cb_daemon *d)
{
    uint64_t deadline = cb_now_ns() + 10ull * 1000000000ull;
    while (any_sandbox_busy(d) && cb_now_ns() < deadline)
        uv_run(d->loop, UV_RUN_ONCE);
    struct cb_sbx *s = d->sandboxes;
    d->sandboxes = NULL;
    while (s) {
        struct cb_sbx *next = s->next;
        s->next = NULL;
        cb_sbx_unref(s); /* the registry's reference */
        s = next;
    }
}

static int start_runtime(struct cb_daemon *d, struct cb_error **err)
{
    if (!d->cfg.init_path)
        d->cfg.init_path = default_init_path();
    struct cb_runtime_config rc = {
        .state_dir = d->cfg.state_dir, .init_path = d->cfg.init_path,
        .uid_base = d->cfg.uid_base, .cgroup_parent = "cellbox",
        .no_disk_quota = d->cfg.no_disk_quota, .durable_disks = d->cfg.durable_disks};
    if (cb_runtime_open(&rc, &d->rt, err) < 0)
        return cb_error_wrap(err, "runtime");
    d->tier = cb_tier_lookup("container");
    if (!d->tier)
        return cb_error_set(err, 0, CB_ERR_INTERNAL, "container tier missing from this build");
    if (cb_template_ensure_host(d->rt, err) < 0)
        return cb_error_wrap(err, "host template");
    return 0;
}

static int start_http(struct cb_daemon *d, struct cb_error **err)
{
    cb_http_server_init(&d->http, d->loop, d);
    d->http.limits.max_body = d->cfg.max_body;
    d->http.limits.max_stream_body = d->cfg.max_upload;
    d->http.on_headers = cb_api_on_headers;
    d->http.on_request = cb_api_on_request;
    d->http.on_done = cb_api_on_done;
    char *dir = cb_xstrdup(d->cfg.socket_path);
    mkdir_p(dirname(dir), 0755);
    free(dir);
    /* The unix socket is the admin interface: root only (0660, root group). */
    if (cb_http_listen_unix(&d->http, d->cfg.socket_path, 0660, err) < 0)
        return -1;
    if (d->cfg.listen && cb_http_listen_tcp(&d->http, d->cfg.listen, err) < 0)
        return -1;
    return 0;
}

static int run(struct cb_daemon *d)
{
    struct cb_error *err = NULL;
    /* The lock first (key create, which only adds a row, takes none). */
    if (lock_state_dir(d, &err) < 0 || open_store(d, &err) < 0 ||
        start_runtime(d, &err) < 0) {
        cb_log_error(NULL, "startup failed: %s", err ? err->message : "?");
        cb_error_free(err);
        return 1;
    }
    /* First, while nothing creates or destroys yet (recovery below queues
     * work): uid slots whose sandbox directory is gone are what a crash
     * between a teardown's last two steps left (runtime.h). */
    int orphans = cb_container_release_orphan_slots(d->rt);
    if (orphans > 0)
        cb_log_info(NULL, "released %d uid slot(s) of sandboxes already removed", orphans);
    if (cb_sbx_recover(d, &err) < 0) {
        cb_log_error(NULL, "startup failed: %s", err ? err->message : "?");
        cb_error_free(err);
        return 1;
    }
    if (start_http(d, &err) < 0) {
        cb_log_error(NULL, "startup failed: %s", err ? err->message : "?");
        cb_error_free(err);
        return 1;
    }
    /* After recovery (a claimed member is a sandbox by then, not a pool
     * member). After start_http too: binding the socket briefly sets a
     * process-wide umask of 0177, which would make a refill thread's layer
     * directories unreadable to the sandbox (overlay then fails EACCES).
     * No request is served before uv_run, so the pool is still ready first. */
    d->pool = cb_pool_open(d, d->cfg.pool_size);
    uv_signal_t sigterm, sigint;
    uv_signal_init(d->loop, &sigterm);
    uv_signal_init(d->loop, &sigint);
    sigterm.data = sigint.data = d;
    uv_signal_start(&sigterm, signal_cb, SIGTERM);
    uv_signal_start(&sigint, signal_cb, SIGINT);
    uv_timer_init(d->loop, &d->sweep);
    d->sweep.data = d;
    uv_timer_start(&d->sweep, sweep_cb, 500, 500);
    cb_log_info(NULL, "cellboxd %s listening on %s%s%s", CB_VERSION, d->cfg.socket_path,
                d->cfg.listen ? " and " : "", d->cfg.listen ? d->cfg.listen : "");
    uv_run(d->loop, UV_RUN_DEFAULT);
    /* Pool members are ours alone (no tenant's state): destroy them rather
     * than leave processes nobody will claim if the daemon stays down. */
    cb_pool_close(d->pool);
    d->pool = NULL;
    /* Graceful end: let close callbacks run, leave sandboxes running. */
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&d->sweep, NULL);
    uv_run(d->loop, UV_RUN_NOWAIT);
    release_sandboxes(d);
    unlink(d->cfg.socket_path);
    cb_log_info(NULL, "stopped");
    return 0;
}

/* Each sandbox costs the daemon a file descriptor (its init's control
 * connection) and each open stream another: the soft limit (often 1024)
 * would cap a host far below what it can hold, so take the hard limit the
 * operator granted. Sandbox processes get their own limit (cb_limits). */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "--print-routes") == 0)
        return print_routes();
    struct cb_daemon d = {0};
    cb_config_defaults(&d.cfg);
    bool key_cmd = argc > 2 && strcmp(argv[1], "key") == 0 && strcmp(argv[2], "create") == 0;
    if (parse_args(key_cmd ? argc - 2 : argc, key_cmd ? argv + 2 : argv, &d.cfg) < 0)
        return 2;
    if (key_cmd)
        return key_create(argc, argv, &d);
    cb_log_setup(d.cfg.log_json, getenv("CELLBOX_DEBUG") ? CB_LOG_DEBUG : CB_LOG_INFO);
    /* Archive transfers and file operations hold a worker thread for their
     * whole duration; libuv's default pool of 4 would let four slow clients
     * stall every tenant's worker-pool work. Must be set before the pool
     * starts; an operator's explicit setting wins. */
    setenv("UV_THREADPOOL_SIZE", "64", 0);
    raise_fd_limit();
    d.loop = uv_default_loop();
    d.metrics = cb_metrics_new();
    d.started_at = cb_wall_time();
    int rc = run(&d);
    cb_store_close(d.store);
    if (d.rt)
        cb_runtime_free(d.rt);
    cb_metrics_free(d.metrics);
    cb_config_clear(&d.cfg);
    return rc;
}
