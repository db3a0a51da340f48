/* store.h — the daemon's SQLite state (the only module that speaks SQL).
 *
 * state.db in WAL mode holds tenants, API keys (SHA-256 hashes only),
 * sandboxes and an event log. Every state change is one transaction of
 * prepared statements. The schema carries a version; cb_store_open()
 * migrates an older database step by step (each step in its own
 * transaction) and refuses a newer one.
 *
 * Ownership: strings in records filled by the store are malloc'd and freed
 * with the matching *_clear() function. */
#ifndef CB_DAEMON_STORE_H
#define CB_DAEMON_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"

#define CB_STORE_SCHEMA_VERSION 4

struct cb_store;

struct cb_sb_record {
    char *id;
    char *tenant;
    char *name;      /* may be NULL */
    char *state;     /* "creating", "running", "paused", "stopped" */
    char *tier;
    char *template_name;
    double created_at;
    double expires_at; /* 0 = none */
    double idle_timeout;
    char *on_idle;   /* "pause", "stop", "standby" */
    char *spec_json; /* limits, env, workdir, user, metadata, network */
    int64_t seq;     /* creation order, for list cursors */
    char *stop_reason;
};
void cb_sb_record_clear(struct cb_sb_record *r);

struct cb_key_record {
    char *id;
    char *tenant;
    char *prefix; /* first characters of the key, to recognise it */
    double created_at;
};
void cb_key_record_clear(struct cb_key_record *r);

struct cb_tenant_quota {
    int64_t max_sandboxes; /* 0 = unlimited */
    int64_t max_memory_mb; /* 0 = unlimited */
};

/* Open (creating when missing) and migrate. path ":memory:" works for tests. */
int cb_store_open(const char *path, struct cb_store **out, struct cb_error **err);
void cb_store_close(struct cb_store *st);
int cb_store_schema_version(struct cb_store *st);

/* Sandboxes. insert fails with CONFLICT when (tenant, name) is taken. */
int cb_store_sandbox_insert(struct cb_store *st, const struct cb_sb_record *r,
                            struct cb_error **err);
int cb_store_sandbox_update(struct cb_store *st, const struct cb_sb_record *r,
                            struct cb_error **err);
int cb_store_sandbox_delete(struct cb_store *st, const char *id,
                            struct cb_error **err);
/* Calls fn for every sandbox in creation order; fn takes ownership of the
 * record's strings only if it clears the record itself — it must not. */
int cb_store_sandbox_foreach(struct cb_store *st,
                             void (*fn)(const struct cb_sb_record *r, void *arg),
                             void *arg, struct cb_error **err);
int64_t cb_store_sandbox_max_seq(struct cb_store *st);

/* Event log (state changes the daemon noticed, e.g. "init died"). */
int cb_store_event_add(struct cb_store *st, const char *sandbox_id,
                       const char *kind, const char *detail, struct cb_error **err);
int cb_store_event_count(struct cb_store *st, const char *sandbox_id,
                         const char *kind);

/* API keys. hash_hex is the SHA-256 of the key in hex. */
int cb_store_key_insert(struct cb_store *st, const char *id, const char *tenant,
                        const char *hash_hex, const char *prefix,
                        struct cb_error **err);
/* 1 found (tenant filled, malloc'd), 0 unknown, <0 error. */
int cb_store_key_lookup(struct cb_store *st, const char *hash_hex, char **tenant);
int cb_store_key_list(struct cb_store *st, struct cb_key_record **items,
                      size_t *count, struct cb_error **err);
/* 1 deleted, 0 unknown. */
int cb_store_key_delete(struct cb_store *st, const char *id, struct cb_error **err);

/* Tenants and quotas: a missing tenant row means the defaults given. */
int cb_store_tenant_set(struct cb_store *st, const char *tenant,
                        const struct cb_tenant_quota *q, struct cb_error **err);
int cb_store_tenant_get(struct cb_store *st, const char *tenant,
                        struct cb_tenant_quota *q); /* 1 found, 0 not */

/* Exposed ports (preview URLs). A port row goes with its sandbox row (ON
 * DELETE CASCADE). token is the per-port access secret, kept in clear
 * because it is shown again on GET (like a share link, not a password). */
struct cb_port_record {
    char *sandbox_id;
    uint16_t port;
    bool is_public;
    char *token;
    double created_at;
};
void cb_port_record_clear(struct cb_port_record *r);
/* Fails with CONFLICT when (sandbox, port) is exposed already. */
int cb_store_port_insert(struct cb_store *st, const struct cb_port_record *r,
                         struct cb_error **err);
int cb_store_port_set_public(struct cb_store *st, const char *sandbox_id, uint16_t port,
                             bool is_public, struct cb_error **err);
/* 1 found (out filled; clear it), 0 not exposed, <0 error. */
int cb_store_port_get(struct cb_store *st, const char *sandbox_id, uint16_t port,
                      struct cb_port_record *out);
/* All ports of a sandbox in port order; free with cb_port_records_free. */
int cb_store_port_list(struct cb_store *st, const char *sandbox_id,
                       struct cb_port_record **items, size_t *count,
                       struct cb_error **err);
void cb_port_records_free(struct cb_port_record *items, size_t count);
/* 1 deleted, 0 was not exposed, <0 error. */
int cb_store_port_delete(struct cb_store *st, const char *sandbox_id, uint16_t port,
                         struct cb_error **err);

#endif
