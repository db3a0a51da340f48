"""A state.db written by an older cellboxd (schema version 1) is migrated on
start to the newest schema, keeps its rows, and the daemon serves on it."""
import os
import re
import shutil
import sqlite3
import tempfile
import time

import pytest

from cellboxd import ROOT, Daemon

# Schema version 1 exactly as the first cellboxd wrote it (store.c migration
# 0 -> 1; shipped steps are never edited, so this stays the old format).
V1_SQL = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE sandboxes (
 id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT,
 state TEXT NOT NULL, tier TEXT NOT NULL, template TEXT NOT NULL,
 created_at REAL NOT NULL, expires_at REAL NOT NULL DEFAULT 0,
 idle_timeout REAL NOT NULL DEFAULT 0, on_idle TEXT NOT NULL DEFAULT 'pause',
 spec TEXT NOT NULL DEFAULT '{}', seq INTEGER NOT NULL);
CREATE UNIQUE INDEX sandboxes_name ON sandboxes(tenant, name) WHERE name IS NOT NULL;
CREATE TABLE api_keys (id TEXT PRIMARY KEY, tenant TEXT NOT NULL,
 hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL, created_at REAL NOT NULL);
"""


V1_SPEC = ('{"env":{},"limits":{"cpu":1.0,"disk_mb":2048,"memory_mb":512,"pids":512},'
           '"metadata":{},"network":{"internet":true},"user":"user","workdir":"/workspace"}')


def state_dir(tmp_path):
    """A state dir sandboxes can traverse (pytest's tmp_path parents are 0700)."""
    d = tempfile.mkdtemp(prefix="cb-mig-")
    os.chmod(d, 0o755)
    return d


def newest_schema():
    """CB_STORE_SCHEMA_VERSION of the daemon under test (store.h)."""
    with open(os.path.join(ROOT, "src", "daemon", "store.h")) as f:
        m = re.search(r"#define\s+CB_STORE_SCHEMA_VERSION\s+(\d+)", f.read())
    assert m, "store.h has no CB_STORE_SCHEMA_VERSION"
    return int(m.group(1))


def test_v1_database_is_migrated(tmp_path):
    state = state_dir(tmp_path)
    db = os.path.join(state, "state.db")
    con = sqlite3.connect(db)
    con.executescript(V1_SQL)
    con.execute("INSERT INTO sandboxes (id, tenant, name, state, tier, template, created_at,"
                " spec, seq) VALUES ('sb_00000000000000000000000000000001', 'admin', 'old-one',"
                " 'stopped', 'container', 'host', ?, ?, 1)", (time.time() - 3600, V1_SPEC))
    con.execute("INSERT INTO api_keys VALUES ('key1', 'acme', 'h' || hex(randomblob(16)),"
                " 'cbk_old', ?)", (time.time(),))
    con.commit()
    con.close()
    d = Daemon(state_dir=state)
    d.start()
    try:
        assert d.request("GET", "/healthz").status == 200
        con = sqlite3.connect(db)
        try:
            version = con.execute("SELECT version FROM schema_version").fetchone()[0]
            assert version == newest_schema()
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            cols = [r[1] for r in con.execute("PRAGMA table_info(sandboxes)")]
            assert "stop_reason" in cols  # added by a later migration
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            assert {"sandboxes", "api_keys", "tenants", "events"} <= tables
            assert con.execute("SELECT tenant FROM api_keys WHERE id='key1'").fetchone() == ("acme",)
        finally:
            con.close()
        r = d.request("GET", "/v1/sandboxes")
        assert r.status == 200, r
        # the old row is still known (the daemon reconciles it; it has no runtime)
        r = d.request("GET", "/v1/sandboxes/sb_00000000000000000000000000000001")
        assert r.status in (200, 404), r
        assert r.status != 500
        sb = d.create_sandbox()
        assert d.exec(sb["id"], cmd="echo migrated")["stdout"] == "migrated\n"
        d.delete_sandbox(sb["id"])
    finally:
        d.stop()
        vol = os.path.join(state, "volume")
        if os.path.ismount(vol):
            os.system(f"umount -l {vol}")
        shutil.rmtree(state, ignore_errors=True)


def test_newer_database_is_refused(tmp_path):
    """A database from a newer cellboxd must not be touched by this one."""
    state = state_dir(tmp_path)
    db = os.path.join(state, "state.db")
    con = sqlite3.connect(db)
    con.executescript(V1_SQL)
    con.execute("UPDATE schema_version SET version = ?", (newest_schema() + 1,))
    con.commit()
    con.close()
    d = Daemon(state_dir=state)
    try:
        d.start(timeout=5)
        started = True
    except Exception:
        started = False
    finally:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
    assert not started
    con = sqlite3.connect(db)
    assert con.execute("SELECT version FROM schema_version").fetchone()[0] == newest_schema() + 1
    con.close()
    d.stop()
    shutil.rmtree(state, ignore_errors=True)


def test_row_with_default_spec_does_not_crash(tmp_path):
    """The v1 schema lets spec default to '{}': listing such a row must answer
    (with whatever it knows), not bring the daemon down."""
    state = state_dir(tmp_path)
    con = sqlite3.connect(os.path.join(state, "state.db"))
    con.executescript(V1_SQL)
    con.execute("INSERT INTO sandboxes (id, tenant, name, state, tier, template, created_at, seq)"
                " VALUES ('sb_00000000000000000000000000000002', 'admin', 'bare', 'stopped',"
                " 'container', 'host', ?, 1)", (time.time(),))
    con.commit()
    con.close()
    d = Daemon(state_dir=state)
    d.start()
    try:
        try:
            status = d.request("GET", "/v1/sandboxes", timeout=10).status
        except OSError:
            status = None
        assert status == 200
        assert d.proc.poll() is None
    finally:
        d.stop()
        reap_leftovers(state)
        shutil.rmtree(state, ignore_errors=True)


def reap_leftovers(state):
    """A crashed daemon cannot delete its sandboxes (warm pool included):
    kill every init whose overlay lives under state and remove its cgroups."""
    ids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/comm") as f:
                if f.read().strip() != "cellbox-init":
                    continue
            with open(f"/proc/{p}/mountinfo") as f:
                m = re.search(re.escape(state) + r"/sandboxes/([a-z0-9_]+)/upper", f.read())
        except OSError:
            continue
        if m:
            os.kill(int(p), 9)
            ids.append(m.group(1))
    time.sleep(0.3)
    for sid in ids:
        for h in os.listdir("/sys/fs/cgroup"):
            d = f"/sys/fs/cgroup/{h}/cellbox/{sid}"
            for root, dirs, _ in os.walk(d, topdown=False):
                try:
                    os.rmdir(root)
                except OSError:
                    pass
    vol = os.path.join(state, "volume")
    if os.path.ismount(vol):
        os.system(f"umount -l {vol}")
