#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

/* Prepared statements are kept for the life of the connection: a create or
 * delete then costs SQLite a bind and a step, not a parse and plan of its
 * SQL. Keyed by the address of the SQL text (each call site passes a string
 * literal). A statement already in use (a callback of foreach calling back
 * into the store) is prepared afresh and finalized after. */
#define STMT_CACHE_SIZE 48

struct cached_stmt {
    const char *sql;
    sqlite3_stmt *stmt;
    bool in_use;
};

struct cb_store {
    sqlite3 *db;
    struct cached_stmt cache[STMT_CACHE_SIZE];
};

/* Migration i brings the schema from version i to i + 1. Never edit a step
 * that shipped: add a new one. */
static const char *const migrations[CB_STORE_SCHEMA_VERSION] = {
    /* 0 -> 1: sandboxes and API keys */
    "CREATE TABLE sandboxes ("
    " id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT,"
    " state TEXT NOT NULL, tier TEXT NOT NULL, template TEXT NOT NULL,"
    " created_at REAL NOT NULL, expires_at REAL NOT NULL DEFAULT 0,"
    " idle_timeout REAL NOT NULL DEFAULT 0, on_idle TEXT NOT NULL DEFAULT 'pause',"
    " spec TEXT NOT NULL DEFAULT '{}', seq INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX sandboxes_name ON sandboxes(tenant, name) WHERE name IS NOT NULL;"
    "CREATE TABLE api_keys (id TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
    " hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, created_at REAL NOT NULL);",
    /* 1 -> 2: per-tenant quotas */
    "CREATE TABLE tenants (name TEXT PRIMARY KEY, max_sandboxes INTEGER NOT NULL,"
    " max_memory_mb INTEGER NOT NULL);",
    /* 2 -> 3: why a sandbox stopped, and the event log */
    "ALTER TABLE sandboxes ADD COLUMN stop_reason TEXT;"
    "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, sandbox_id TEXT,"
    " at REAL NOT NULL, kind TEXT NOT NULL, detail TEXT);",
    /* 3 -> 4: exposed ports; they go with their sandbox */
    "CREATE TABLE ports (sandbox_id TEXT NOT NULL REFERENCES sandboxes(id)"
    " ON DELETE CASCADE, port INTEGER NOT NULL, public INTEGER NOT NULL,"
    " token TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (sandbox_id, port));",
};

static int db_error(struct cb_store *st, struct cb_error **err, const char *what)
{
    return cb_error_set(err, 0, CB_ERR_INTERNAL, "state database: %s: %s", what,
                        sqlite3_errmsg(st->db));
}

/* A ready statement for sql; give it back with release(). SQLITE_OK or an
 * SQLite error code (the message is then in sqlite3_errmsg). */
static int prepare(struct cb_store *st, const char *sql, sqlite3_stmt **out)
{
    struct cached_stmt *free_slot = NULL;
    for (size_t i = 0; i < STMT_CACHE_SIZE; i++) {
        struct cached_stmt *c = &st->cache[i];
        if (c->sql == sql && !c->in_use) {
            c->in_use = true;
            *out = c->stmt;
            return SQLITE_OK;
        }
        if (!c->sql && !free_slot)
            free_slot = c;
    }
    bool keep = free_slot != NULL;
    int rc = sqlite3_prepare_v3(st->db, sql, -1, keep ? SQLITE_PREPARE_PERSISTENT : 0, out, NULL);
    if (rc == SQLITE_OK && keep)
        *free_slot = (struct cached_stmt){sql, *out, true};
    return rc;
}

/* Reset a statement from prepare() for its next use (or finalize it when
 * it was not cached). Resetting also ends its read transaction. */
static void release(struct cb_store *st, sqlite3_stmt *s)
{
    for (size_t i = 0; i < STMT_CACHE_SIZE; i++) {
        if (st->cache[i].stmt == s && st->cache[i].in_use) {
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
            st->cache[i].in_use = false;
            return;
        }
    }
    sqlite3_finalize(s);
}

static int exec_sql(struct cb_store *st, const char *sql, struct cb_error **err)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int r = cb_error_set(err, 0, CB_ERR_INTERNAL, "state database: %s",
                             msg ? msg : "error");
        sqlite3_free(msg);
        return r;
    }
    return 0;
}

int cb_store_schema_version(struct cb_store *st)
{
    sqlite3_stmt *s = NULL;
    int v = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT version FROM schema_version", -1, &s,
                           NULL) != SQLITE_OK)
        return 0; /* no table yet: an empty database */
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

static int migrate(struct cb_store *st, struct cb_error **err)
{
    if (exec_sql(st, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);",
                 err) < 0)
        return -1;
    int v = cb_store_schema_version(st);
    if (v > CB_STORE_SCHEMA_VERSION)
        return cb_error_set(err, 0, CB_ERR_INTERNAL,
                            "state database has schema %d, newer than this cellboxd (%d)",
                            v, CB_STORE_SCHEMA_VERSION);
    for (; v < CB_STORE_SCHEMA_VERSION; v++) {
        /* Each step and its version bump commit together: a crash leaves
         * the database at a known version, never half-way. */
        char bump[128];
        snprintf(bump, sizeof(bump),
                 "DELETE FROM schema_version; INSERT INTO schema_version VALUES (%d);",
                 v + 1);
        if (exec_sql(st, "BEGIN IMMEDIATE;", err) < 0)
            return -1;
        if (exec_sql(st, migrations[v], err) < 0 || exec_sql(st, bump, err) < 0) {
            exec_sql(st, "ROLLBACK;", NULL);
            return cb_error_wrap(err, "migrating to schema %d", v + 1);
        }
        if (exec_sql(st, "COMMIT;", err) < 0)
            return -1;
    }
    return 0;
}

int cb_store_open(const char *path, struct cb_store **out, struct cb_error **err)
{
    struct cb_store *st = cb_xcalloc(1, sizeof(*st));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
        int r = cb_error_set(err, 0, CB_ERR_INTERNAL, "cannot open state database: %s",
                             st->db ? sqlite3_errmsg(st->db) : "out of memory");
        cb_store_close(st);
        return r;
    }
    sqlite3_busy_timeout(st->db, 5000);
    if (exec_sql(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     " PRAGMA foreign_keys=ON;", err) < 0 ||
        migrate(st, err) < 0) {
        cb_store_close(st);
        return -1;
    }
    *out = st;
    return 0;
}

void cb_store_close(struct cb_store *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < STMT_CACHE_SIZE; i++)
        sqlite3_finalize(st->cache[i].stmt);
    sqlite3_close_v2(st->db);
    free(st);
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

static char *column_dup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? cb_xstrdup((const char *)t) : NULL;
}

/* Run a single-statement change as its own transaction (autocommit). */
static int step_done(struct cb_store *st, sqlite3_stmt *s, struct cb_error **err,
                     const char *what)
{
    int rc = sqlite3_step(s);
    int r = 0;
    if (rc == SQLITE_CONSTRAINT)
        r = cb_error_set(err, 0, CB_ERR_CONFLICT, "%s: already exists", what);
    else if (rc != SQLITE_DONE)
        r = db_error(st, err, what);
    release(st, s);
    return r;
}

static void bind_sandbox(sqlite3_stmt *s, const struct cb_sb_record *r)
{
    bind_text(s, 1, r->id);
    bind_text(s, 2, r->tenant);
    bind_text(s, 3, r->name);
    bind_text(s, 4, r->state);
    bind_text(s, 5, r->tier);
    bind_text(s, 6, r->template_name);
    sqlite3_bind_double(s, 7, r->created_at);
    sqlite3_bind_double(s, 8, r->expires_at);
    sqlite3_bind_double(s, 9, r->idle_timeout);
    bind_text(s, 10, r->on_idle ? r->on_idle : "pause");
    bind_text(s, 11, r->spec_json ? r->spec_json : "{}");
    sqlite3_bind_int64(s, 12, r->seq);
    bind_text(s, 13, r->stop_reason);
}

int cb_store_sandbox_insert(struct cb_store *st, const struct cb_sb_record *r,
                            struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st,
                "INSERT INTO sandboxes (id, tenant, name, state, tier, template,"
                " created_at, expires_at, idle_timeout, on_idle, spec, seq,"
                " stop_reason) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)", &s) != SQLITE_OK)
        return db_error(st, err, "insert sandbox");
    bind_sandbox(s, r);
    return step_done(st, s, err, "sandbox name");
}

int cb_store_sandbox_update(struct cb_store *st, const struct cb_sb_record *r,
                            struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st,
                "UPDATE sandboxes SET tenant=?2, name=?3, state=?4, tier=?5,"
                " template=?6, created_at=?7, expires_at=?8, idle_timeout=?9,"
                " on_idle=?10, spec=?11, seq=?12, stop_reason=?13 WHERE id=?1", &s) != SQLITE_OK)
        return db_error(st, err, "update sandbox");
    bind_sandbox(s, r);
    return step_done(st, s, err, "sandbox name");
}

int cb_store_sandbox_delete(struct cb_store *st, const char *id, struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st, "DELETE FROM sandboxes WHERE id=?1", &s) !=
        SQLITE_OK)
        return db_error(st, err, "delete sandbox");
    bind_text(s, 1, id);
    return step_done(st, s, err, "delete sandbox");
}

void cb_sb_record_clear(struct cb_sb_record *r)
{
    free(r->id);
    free(r->tenant);
    free(r->name);
    free(r->state);
    free(r->tier);
    free(r->template_name);
    free(r->on_idle);
    free(r->spec_json);
    free(r->stop_reason);
    memset(r, 0, sizeof(*r));
}

int cb_store_sandbox_foreach(struct cb_store *st,
                             void (*fn)(const struct cb_sb_record *r, void *arg),
                             void *arg, struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st,
                "SELECT id, tenant, name, state, tier, template, created_at,"
                " expires_at, idle_timeout, on_idle, spec, seq, stop_reason"
                " FROM sandboxes ORDER BY seq", &s) != SQLITE_OK)
        return db_error(st, err, "list sandboxes");
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct cb_sb_record r = {
            .id = column_dup(s, 0),
            .tenant = column_dup(s, 1),
            .name = column_dup(s, 2),
            .state = column_dup(s, 3),
            .tier = column_dup(s, 4),
            .template_name = column_dup(s, 5),
            .created_at = sqlite3_column_double(s, 6),
            .expires_at = sqlite3_column_double(s, 7),
            .idle_timeout = sqlite3_column_double(s, 8),
            .on_idle = column_dup(s, 9),
            .spec_json = column_dup(s, 10),
            .seq = sqlite3_column_int64(s, 11),
            .stop_reason = column_dup(s, 12),
        };
        fn(&r, arg);
        cb_sb_record_clear(&r);
    }
    int r = rc == SQLITE_DONE ? 0 : db_error(st, err, "list sandboxes");
    release(st, s);
    return r;
}

int64_t cb_store_sandbox_max_seq(struct cb_store *st)
{
    sqlite3_stmt *s = NULL;
    int64_t v = 0;
    if (prepare(st, "SELECT COALESCE(MAX(seq),0) FROM sandboxes", &s) != SQLITE_OK)
        return 0;
    if (sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    release(st, s);
    return v;
}

int cb_store_event_add(struct cb_store *st, const char *sandbox_id, const char *kind,
                       const char *detail, struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st,
                "INSERT INTO events (sandbox_id, at, kind, detail)"
                " VALUES (?1,?2,?3,?4)", &s) != SQLITE_OK)
        return db_error(st, err, "add event");
    bind_text(s, 1, sandbox_id);
    sqlite3_bind_double(s, 2, cb_wall_time());
    bind_text(s, 3, kind);
    bind_text(s, 4, detail);
    return step_done(st, s, err, "add event");
}

int cb_store_event_count(struct cb_store *st, const char *sandbox_id, const char *kind)
{
    sqlite3_stmt *s = NULL;
    int n = -1;
    if (prepare(st,
                "SELECT COUNT(*) FROM events WHERE sandbox_id=?1 AND kind=?2", &s) != SQLITE_OK)
        return -1;
    bind_text(s, 1, sandbox_id);
    bind_text(s, 2, kind);
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int(s, 0);
    release(st, s);
    return n;
}

int cb_store_key_insert(struct cb_store *st, const char *id, const char *tenant,
                        const char *hash_hex, const char *prefix, struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st,
                "INSERT INTO api_keys (id, tenant, hash, prefix, created_at)"
                " VALUES (?1,?2,?3,?4,?5)", &s) != SQLITE_OK)
        return db_error(st, err, "insert key");
    bind_text(s, 1, id);
    bind_text(s, 2, tenant);
    bind_text(s, 3, hash_hex);
    bind_text(s, 4, prefix);
    sqlite3_bind_double(s, 5, cb_wall_time());
    return step_done(st, s, err, "api key");
}

int cb_store_key_lookup(struct cb_store *st, const char *hash_hex, char **tenant)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st, "SELECT tenant FROM api_keys WHERE hash=?1", &s) != SQLITE_OK)
        return -1;
    bind_text(s, 1, hash_hex);
    int r = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        *tenant = column_dup(s, 0);
        r = 1;
    }
    release(st, s);
    return r;
}

void cb_key_record_clear(struct cb_key_record *r)
{
    free(r->id);
    free(r->tenant);
    free(r->prefix);
    memset(r, 0, sizeof(*r));
}

int cb_store_key_list(struct cb_store *st, struct cb_key_record **items,
                      size_t *count, struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st,
                "SELECT id, tenant, prefix, created_at FROM api_keys"
                " ORDER BY created_at", &s) != SQLITE_OK)
        return db_error(st, err, "list keys");
    struct cb_key_record *v = NULL;
    size_t n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        v = cb_xrealloc(v, (n + 1) * sizeof(*v));
        v[n++] = (struct cb_key_record){column_dup(s, 0), column_dup(s, 1),
                                        column_dup(s, 2), sqlite3_column_double(s, 3)};
    }
    release(st, s);
    *items = v;
    *count = n;
    return 0;
}

int cb_store_key_delete(struct cb_store *st, const char *id, struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st, "DELETE FROM api_keys WHERE id=?1", &s) !=
        SQLITE_OK)
        return db_error(st, err, "delete key");
    bind_text(s, 1, id);
    if (step_done(st, s, err, "delete key") < 0)
        return -1;
    return sqlite3_changes(st->db) > 0;
}

int cb_store_tenant_set(struct cb_store *st, const char *tenant,
                        const struct cb_tenant_quota *q, struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st,
                "INSERT INTO tenants (name, max_sandboxes, max_memory_mb)"
                " VALUES (?1,?2,?3) ON CONFLICT(name) DO UPDATE SET"
                " max_sandboxes=excluded.max_sandboxes,"
                " max_memory_mb=excluded.max_memory_mb", &s) != SQLITE_OK)
        return db_error(st, err, "set tenant");
    bind_text(s, 1, tenant);
    sqlite3_bind_int64(s, 2, q->max_sandboxes);
    sqlite3_bind_int64(s, 3, q->max_memory_mb);
    return step_done(st, s, err, "set tenant");
}

int cb_store_tenant_get(struct cb_store *st, const char *tenant, struct cb_tenant_quota *q)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st,
                "SELECT max_sandboxes, max_memory_mb FROM tenants WHERE name=?1", &s) != SQLITE_OK)
        return -1;
    bind_text(s, 1, tenant);
    int r = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        q->max_sandboxes = sqlite3_column_int64(s, 0);
        q->max_memory_mb = sqlite3_column_int64(s, 1);
        r = 1;
    }
    release(st, s);
    return r;
}

void cb_port_record_clear(struct cb_port_record *r)
{
    free(r->sandbox_id);
    free(r->token);
    memset(r, 0, sizeof(*r));
}

void cb_port_records_free(struct cb_port_record *items, size_t count)
{
    for (size_t i = 0; i < count; i++)
        cb_port_record_clear(&items[i]);
    free(items);
}

int cb_store_port_insert(struct cb_store *st, const struct cb_port_record *r,
                         struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st,
                "INSERT INTO ports (sandbox_id, port, public, token, created_at)"
                " VALUES (?1,?2,?3,?4,?5)", &s) != SQLITE_OK)
        return db_error(st, err, "insert port");
    bind_text(s, 1, r->sandbox_id);
    sqlite3_bind_int(s, 2, r->port);
    sqlite3_bind_int(s, 3, r->is_public);
    bind_text(s, 4, r->token);
    sqlite3_bind_double(s, 5, r->created_at);
    return step_done(st, s, err, "port");
}

int cb_store_port_set_public(struct cb_store *st, const char *sandbox_id, uint16_t port,
                             bool is_public, struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st, "UPDATE ports SET public=?3 WHERE sandbox_id=?1 AND port=?2", &s) != SQLITE_OK)
        return db_error(st, err, "update port");
    bind_text(s, 1, sandbox_id);
    sqlite3_bind_int(s, 2, port);
    sqlite3_bind_int(s, 3, is_public);
    return step_done(st, s, err, "update port");
}

static void port_from_row(sqlite3_stmt *s, struct cb_port_record *out)
{
    *out = (struct cb_port_record){
        .sandbox_id = column_dup(s, 0),
        .port = (uint16_t)sqlite3_column_int(s, 1),
        .is_public = sqlite3_column_int(s, 2) != 0,
        .token = column_dup(s, 3),
        .created_at = sqlite3_column_double(s, 4),
    };
}

int cb_store_port_get(struct cb_store *st, const char *sandbox_id, uint16_t port,
                      struct cb_port_record *out)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st,
                "SELECT sandbox_id, port, public, token, created_at FROM ports"
                " WHERE sandbox_id=?1 AND port=?2", &s) != SQLITE_OK)
        return -1;
    bind_text(s, 1, sandbox_id);
    sqlite3_bind_int(s, 2, port);
    int r = 0;
    if (sqlite3_step(s) == SQLITE_ROW) {
        port_from_row(s, out);
        r = 1;
    }
    release(st, s);
    return r;
}

int cb_store_port_list(struct cb_store *st, const char *sandbox_id,
                       struct cb_port_record **items, size_t *count,
                       struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st,
                "SELECT sandbox_id, port, public, token, created_at FROM ports"
                " WHERE sandbox_id=?1 ORDER BY port", &s) != SQLITE_OK)
        return db_error(st, err, "list ports");
    bind_text(s, 1, sandbox_id);
    struct cb_port_record *v = NULL;
    size_t n = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        v = cb_xrealloc(v, (n + 1) * sizeof(*v));
        port_from_row(s, &v[n++]);
    }
    release(st, s);
    *items = v;
    *count = n;
    return 0;
}

int cb_store_port_delete(struct cb_store *st, const char *sandbox_id, uint16_t port,
                         struct cb_error **err)
{
    sqlite3_stmt *s = NULL;
    if (prepare(st, "DELETE FROM ports WHERE sandbox_id=?1 AND port=?2", &s) != SQLITE_OK)
        return db_error(st, err, "delete port");
    bind_text(s, 1, sandbox_id);
    sqlite3_bind_int(s, 2, port);
    if (step_done(st, s, err, "delete port") < 0)
        return -1;
    return sqlite3_changes(st->db) > 0;
}
