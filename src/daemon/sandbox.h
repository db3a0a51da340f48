/* sandbox.h — the daemon's registry of sandboxes and their life cycle.
 *
 * A struct cb_sbx is the daemon's view of one sandbox: its persisted record
 * (store.h), its tier handle, and its control connection to init (initc.h).
 * Tier operations that block (create, start, stop, pause, resume, destroy)
 * run on the libuv worker pool, one at a time per sandbox: they are queued
 * on the sandbox and run in order; a sandbox is never operated on by two
 * threads at once (tier.h's rule).
 *
 * Reference counting: the registry holds one reference; asynchronous work
 * that keeps a pointer takes one with cb_sbx_ref() and drops it with
 * cb_sbx_unref(). A deleted sandbox stays valid (with deleted = true) until
 * its last reference goes. */
#ifndef CB_DAEMON_SANDBOX_H
#define CB_DAEMON_SANDBOX_H

#include <jansson.h>
#include <stdbool.h>

#include "daemon.h"
#include "initc.h"

struct cb_exit_info {
    uint32_t pid;
    uint64_t proc_id;
    int32_t exit_code;
    uint32_t signo;
    bool timed_out;
    uint64_t started_at_ms, ended_at_ms;
    bool lost; /* the control connection ended before the process did */
};

struct cb_exit_listener {
    uint32_t pid;
    uint64_t proc_id; /* 0 = any */
    void (*fn)(struct cb_exit_listener *l, const struct cb_exit_info *info);
    struct cb_exit_listener *next;
};

struct cb_sbx_work; /* one queued tier operation */

struct cb_sbx {
    int refs;
    struct cb_daemon *d;
    struct cb_sb_record rec;
    json_t *spec;        /* parsed rec.spec_json */
    struct cb_sandbox *h; /* tier handle, NULL when none */
    struct cb_sandbox *reserved; /* warm-pool member taken for this new
                                    sandbox (its id is the member's) until
                                    its start claims it */
    struct cb_initc *initc;
    bool busy, deleted, deleting;
    bool stored;         /* has a store record (inserted once its create succeeded) */
    struct cb_sbx_work *queue;
    double last_active;
    int attached;        /* open streams: hold off idle action */
    int exec_lingering;  /* answered execs whose pipes a background process
                            still holds, drained until EOF (api/exec.c) */
    struct cb_exit_listener *exit_listeners;
    struct cb_sbx *next, *prev;
};

typedef void (*cb_sbx_cb)(struct cb_sbx *s, struct cb_error *err, void *arg);

void cb_sbx_ref(struct cb_sbx *s);
void cb_sbx_unref(struct cb_sbx *s);

/* Find by id or name among the sandboxes tenant may see (admin sees all).
 * Returns a borrowed pointer or NULL. */
struct cb_sbx *cb_sbx_find(struct cb_daemon *d, const char *tenant, bool is_admin,
                           const char *id_or_name);
const char *cb_sbx_state(const struct cb_sbx *s);
/* Persist s->rec (spec re-serialised) in one transaction: an update, or
 * the insert of the record of a sandbox whose create just succeeded. */
int cb_sbx_save(struct cb_sbx *s, struct cb_error **err);
void cb_sbx_touch(struct cb_sbx *s); /* API activity: postpones idle action */

/* Register a new sandbox from a complete record (state "creating") in the
 * daemon's registry: from now on its id and name are taken and it counts in
 * quotas. Its store record is inserted only when cb_sbx_start() succeeded,
 * so a create costs one transaction; a daemon that dies before that leaves
 * a sandbox directory without a record, which the next start tears down
 * (pool.h) — the client never got its 201. Never NULL today; err is for
 * callers that check. */
struct cb_sbx *cb_sbx_register(struct cb_daemon *d, struct cb_sb_record *rec,
                               json_t *spec, struct cb_error **err);

/* Life cycle; cb runs on the loop when done (err NULL on success; cb owns
 * nothing: err is freed after cb returns). */
void cb_sbx_start(struct cb_sbx *s, cb_sbx_cb cb, void *arg);   /* create+start or restart */
void cb_sbx_stop(struct cb_sbx *s, const char *reason, cb_sbx_cb cb, void *arg);
void cb_sbx_pause(struct cb_sbx *s, cb_sbx_cb cb, void *arg);
void cb_sbx_resume(struct cb_sbx *s, cb_sbx_cb cb, void *arg);
/* Delete: cb runs (err NULL) once every process of the sandbox is dead and
 * reaped, its record removed and its id and name free; s is then marked
 * deleted and out of the registry, and operations still queued on it fail
 * with NOT_FOUND. With a warm pool (always, in cellboxd) the rest of the
 * teardown runs after cb, in the background (cb_pool_reap); without one it
 * runs before cb. */
void cb_sbx_delete(struct cb_sbx *s, cb_sbx_cb cb, void *arg);
void cb_sbx_set_limits(struct cb_sbx *s, cb_sbx_cb cb, void *arg);
/* Run cb once the sandbox can take process/file work: waits for queued
 * operations, resumes a paused sandbox (wake on request), fails with
 * CONFLICT when it is stopped. */
void cb_sbx_ready(struct cb_sbx *s, cb_sbx_cb cb, void *arg);

/* Limits from the spec. */
void cb_sbx_limits(const struct cb_sbx *s, struct cb_limits *out);
/* The same from a spec not yet registered. */
void cb_limits_from_spec(const json_t *spec, struct cb_limits *out);

void cb_sbx_add_exit_listener(struct cb_sbx *s, struct cb_exit_listener *l);
void cb_sbx_remove_exit_listener(struct cb_sbx *s, struct cb_exit_listener *l);
int cb_exit_info_parse(const uint8_t *payload, size_t len, struct cb_exit_info *out);

/* Startup: load records, adopt live sandboxes, reconnect. */
int cb_sbx_recover(struct cb_daemon *d, struct cb_error **err);
/* Periodic: lifetimes and idle actions. */
void cb_sbx_sweep(struct cb_daemon *d);
/* Shutdown: close control connections (sandboxes keep running). */
void cb_sbx_detach_all(struct cb_daemon *d);

#endif
