/* test_store.c — the SQLite store: migrations, records, keys, tenants. */
#include <sqlite3.h>

#include "runner.h"
#include "store.h"

/* Remove the database, its WAL files and its directory. */
static void rm_db(char *path)
{
    char *wal = cb_xasprintf("%s-wal", path), *shm = cb_xasprintf("%s-shm", path);
    unlink(path);
    unlink(wal);
    unlink(shm);
    *strrchr(path, '/') = 0;
    rmdir(path);
    free(wal);
    free(shm);
    free(path);
}

static char *tmp_db(void)
{
    char dir[] = "/tmp/cb-store-XXXXXX";
    if (!mkdtemp(dir))
        FAIL("mkdtemp");
    return cb_xasprintf("%s/state.db", dir);
}

TEST(store_fresh_is_latest)
{
    struct cb_store *st = NULL;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_store_open(":memory:", &st, &err), 0);
    ASSERT_EQ(cb_store_schema_version(st), CB_STORE_SCHEMA_VERSION);
    cb_store_close(st);
}

TEST(store_migrates_v1)
{
    char *path = tmp_db();
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    /* A version-1 database as the first release wrote it, with a row. */
    const char *v1 =
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        "INSERT INTO schema_version VALUES (1);"
        "CREATE TABLE sandboxes (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT,"
        " state TEXT NOT NULL, tier TEXT NOT NULL, template TEXT NOT NULL,"
        " created_at REAL NOT NULL, expires_at REAL NOT NULL DEFAULT 0,"
        " idle_timeout REAL NOT NULL DEFAULT 0, on_idle TEXT NOT NULL DEFAULT 'pause',"
        " spec TEXT NOT NULL DEFAULT '{}', seq INTEGER NOT NULL);"
        "CREATE UNIQUE INDEX sandboxes_name ON sandboxes(tenant, name) WHERE name IS NOT NULL;"
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, tenant TEXT NOT NULL,"
        " hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, created_at REAL NOT NULL);"
        "INSERT INTO sandboxes (id, tenant, name, state, tier, template, created_at, seq)"
        " VALUES ('sb_old', 'admin', 'old', 'running', 'container', 'host', 1, 7);";
    ASSERT_EQ(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    struct cb_store *st = NULL;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_store_open(path, &st, &err), 0);
    ASSERT_EQ(cb_store_schema_version(st), CB_STORE_SCHEMA_VERSION);
    ASSERT_EQ(cb_store_sandbox_max_seq(st), 7);
    /* columns added by later steps work on the old row */
    ASSERT_EQ(cb_store_event_add(st, "sb_old", "init_lost", NULL, &err), 0);
    ASSERT_EQ(cb_store_event_count(st, "sb_old", "init_lost"), 1);
    struct cb_tenant_quota q = {3, 1024};
    ASSERT_EQ(cb_store_tenant_set(st, "t", &q, &err), 0);
    cb_store_close(st);
    rm_db(path);
}

TEST(store_refuses_newer_schema)
{
    char *path = tmp_db();
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE schema_version (version INTEGER);"
                               "INSERT INTO schema_version VALUES (999);",
                           NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    struct cb_store *st = NULL;
    struct cb_error *err = NULL;
    ASSERT(cb_store_open(path, &st, &err) < 0);
    ASSERT(strstr(err->message, "newer") != NULL);
    cb_error_free(err);
    rm_db(path);
}

static void count_cb(const struct cb_sb_record *r, void *arg)
{
    int *n = arg;
    (*n)++;
    if (strcmp(r->id, "sb_a") == 0 && strcmp(r->state, "paused") != 0)
        FAIL("state not updated: %s", r->state);
}

TEST(store_sandbox_records)
{
    struct cb_store *st = NULL;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_store_open(":memory:", &st, &err), 0);
    struct cb_sb_record r = {.id = "sb_a", .tenant = "t1", .name = "n", .state = "running",
                             .tier = "container", .template_name = "host", .created_at = 1,
                             .seq = 1, .spec_json = "{}"};
    ASSERT_EQ(cb_store_sandbox_insert(st, &r, &err), 0);
    /* same name in the same tenant: conflict; in another tenant: fine */
    struct cb_sb_record r2 = r;
    r2.id = "sb_b";
    r2.seq = 2;
    ASSERT(cb_store_sandbox_insert(st, &r2, &err) < 0);
    ASSERT_EQ(err->kind, CB_ERR_CONFLICT);
    cb_error_free(err);
    err = NULL;
    r2.tenant = "t2";
    ASSERT_EQ(cb_store_sandbox_insert(st, &r2, &err), 0);
    r.state = "paused";
    ASSERT_EQ(cb_store_sandbox_update(st, &r, &err), 0);
    int n = 0;
    ASSERT_EQ(cb_store_sandbox_foreach(st, count_cb, &n, &err), 0);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(cb_store_sandbox_delete(st, "sb_a", &err), 0);
    n = 0;
    cb_store_sandbox_foreach(st, count_cb, &n, &err);
    ASSERT_EQ(n, 1);
    cb_store_close(st);
}

TEST(store_keys)
{
    struct cb_store *st = NULL;
    struct cb_error *err = NULL;
    ASSERT_EQ(cb_store_open(":memory:", &st, &err), 0);
    ASSERT_EQ(cb_store_key_insert(st, "key_1", "alpha", "abc", "cbk_1", &err), 0);
    char *tenant = NULL;
    ASSERT_EQ(cb_store_key_lookup(st, "abc", &tenant), 1);
    ASSERT_STREQ(tenant, "alpha");
    free(tenant);
    ASSERT_EQ(cb_store_key_lookup(st, "nope", &tenant), 0);
    struct cb_key_record *items;
    size_t count;
    ASSERT_EQ(cb_store_key_list(st, &items, &count, &err), 0);
    ASSERT_EQ(count, 1);
    cb_key_record_clear(&items[0]);
    free(items);
    ASSERT_EQ(cb_store_key_delete(st, "key_1", &err), 1);
    ASSERT_EQ(cb_store_key_delete(st, "key_1", &err), 0);
    cb_store_close(st);
}
