"""Sandbox life cycle, exec, processes and files through the real daemon.

Skipped (by the sandbox_works fixture) when the runtime cannot create a
sandbox on this host."""
import base64
import concurrent.futures
import os
import time

import pytest


def sbpath(sb, rest=""):
    return "/v1/sandboxes/%s%s" % (sb["id"], rest)


def test_create_get_list_delete(daemon, sandbox_works):
    sb = daemon.create_sandbox(name="life", metadata={"team": "a"})
    assert sb["id"].startswith("sb_") and len(sb["id"]) == 19
    assert sb["state"] == "running" and sb["name"] == "life"
    got = daemon.request("GET", sbpath(sb)).json()
    assert got["id"] == sb["id"] and "usage" in got
    assert daemon.request("GET", "/v1/sandboxes/life").json()["id"] == sb["id"]
    items = daemon.request("GET", "/v1/sandboxes?metadata.team=a").json()["items"]
    assert [i["id"] for i in items] == [sb["id"]]
    assert daemon.request("GET", "/v1/sandboxes?metadata.team=b").json()["items"] == []
    assert daemon.request("GET", "/v1/sandboxes?state=stopped").json()["items"] == []
    assert daemon.delete_sandbox(sb["id"]).status == 204
    assert daemon.request("GET", sbpath(sb)).status == 404


def test_name_conflict_and_get_or_create(daemon, sandbox_works):
    sb = daemon.create_sandbox(name="dup")
    try:
        r = daemon.request("POST", "/v1/sandboxes", {"name": "dup"})
        assert r.status == 409 and r.json()["error"]["code"] == "conflict"
        r = daemon.request("POST", "/v1/sandboxes?get_or_create=1", {"name": "dup"})
        assert r.status == 200 and r.json()["id"] == sb["id"]
    finally:
        daemon.delete_sandbox(sb["id"])


def test_list_pagination(daemon, sandbox_works):
    ids = [daemon.create_sandbox(metadata={"page": "p"})["id"] for _ in range(3)]
    try:
        seen, cursor = [], ""
        while True:
            r = daemon.request("GET", "/v1/sandboxes?metadata.page=p&limit=2&cursor=" + cursor).json()
            seen += [i["id"] for i in r["items"]]
            if not r["next_cursor"]:
                break
            cursor = r["next_cursor"]
        assert seen == ids
    finally:
        for i in ids:
            daemon.delete_sandbox(i)


def test_exec_buffered(daemon, sandbox):
    r = daemon.exec(sandbox["id"], cmd="echo out; echo err >&2; exit 3")
    assert r["stdout"] == "out\n" and r["stderr"] == "err\n" and r["exit_code"] == 3
    assert r["timed_out"] is False and r["truncated"] is False
    r = daemon.exec(sandbox["id"], argv=["cat"], stdin="hello")
    assert r["stdout"] == "hello"
    r = daemon.exec(sandbox["id"], argv=["cat"], stdin_b64=base64.b64encode(b"\xff\x00").decode())
    assert base64.b64decode(r["stdout_b64"]) == b"\xff\x00"
    r = daemon.exec(sandbox["id"], cmd="id -u; echo $HOME; pwd")
    assert r["stdout"].split() == ["1000", "/home/user", "/workspace"]
    r = daemon.exec(sandbox["id"], cmd="id -u", user="root")
    assert r["stdout"].strip() == "0"
    r = daemon.exec(sandbox["id"], cmd="echo $FOO", env={"FOO": "bar"})
    assert r["stdout"] == "bar\n"


def test_exec_timeout(daemon, sandbox):
    t0 = time.time()
    r = daemon.exec(sandbox["id"], cmd="sleep 30", timeout=0.5)
    assert r["timed_out"] is True and time.time() - t0 < 10


def test_exec_streamed(daemon, sandbox):
    events = list(daemon.stream("POST", sbpath(sandbox, "/exec"),
                                {"cmd": "echo a; echo b >&2; echo c"}))
    assert events[-1]["type"] == "exit" and events[-1]["exit_code"] == 0
    # The first event names the process, so a client can signal it early.
    assert events[0]["type"] == "start" and events[0]["pid"] == events[-1]["pid"] > 0
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    out = "".join(e.get("data", "") for e in events if e["type"] == "stdout")
    assert out == "a\nc\n"
    sse = list(daemon.stream("POST", sbpath(sandbox, "/exec"), {"cmd": "echo x"},
                             accept="text/event-stream"))
    assert sse[-1]["type"] == "exit"


def test_exec_large_stdin(daemon, sandbox):
    """Exec bodies may carry far more stdin than other JSON bodies (1 MiB)."""
    import hashlib
    data = os.urandom(8 << 20)
    r = daemon.exec(sandbox["id"], argv=["sha256sum"],
                    stdin_b64=base64.b64encode(data).decode(), timeout=60)
    assert r["exit_code"] == 0
    assert r["stdout"].split()[0] == hashlib.sha256(data).hexdigest()


def test_exec_stream_client_gone_hangs_up(daemon, sandbox):
    """A streamed exec whose client disconnects gets SIGHUP (then SIGKILL
    after the grace time), like a process whose terminal closed."""
    cmd = ("trap 'echo hup > /tmp/hup; exit 1' HUP; echo ready; "
           "while :; do sleep 0.1; done")
    conn = daemon.connection()
    conn.request("POST", sbpath(sandbox, "/exec"), body=json_body({"cmd": cmd}),
                 headers={"Content-Type": "application/json",
                          "Accept": "application/x-ndjson"})
    resp = conn.getresponse()
    first = resp.readline()
    assert b'"start"' in first
    while b"ready" not in resp.readline():
        pass
    conn.sock.shutdown(2)
    conn.close()
    deadline = time.time() + 20
    while time.time() < deadline:
        r = daemon.request("GET", sbpath(sandbox, "/files?path=/tmp/hup"))
        if r.status == 200 and r.body:  # the redirection creates it empty first
            break
        time.sleep(0.1)
    assert r.status == 200 and r.body == b"hup\n"
    # Nothing of it keeps running.
    ps = daemon.exec(sandbox["id"], cmd="ps -eo args 2>/dev/null || ls /proc")
    assert "trap" not in ps["stdout"]


def json_body(obj):
    import json
    return json.dumps(obj).encode()


def test_stop_start_pause_resume(daemon, sandbox):
    daemon.request("PUT", sbpath(sandbox, "/files?path=/workspace/keep.txt"), raw=b"kept")
    r = daemon.request("POST", sbpath(sandbox, "/stop"))
    assert r.status == 200 and r.json()["state"] == "stopped"
    r = daemon.request("POST", sbpath(sandbox, "/exec"), {"cmd": "true"})
    assert r.status == 409
    r = daemon.request("POST", sbpath(sandbox, "/start"))
    assert r.json()["state"] == "running"
    assert daemon.exec(sandbox["id"], cmd="cat /workspace/keep.txt")["stdout"] == "kept"
    assert daemon.request("POST", sbpath(sandbox, "/pause")).json()["state"] == "paused"
    # wake on request
    assert daemon.exec(sandbox["id"], cmd="echo awake")["stdout"] == "awake\n"
    assert daemon.request("GET", sbpath(sandbox)).json()["state"] == "running"


def test_keepalive_patch_and_lifetime(daemon, sandbox_works):
    sb = daemon.create_sandbox(timeout=60)
    r = daemon.request("POST", sbpath(sb, "/keepalive"), {"timeout": 1})
    assert r.status == 200 and r.json()["expires_at"] <= time.time() + 2
    r = daemon.request("PATCH", sbpath(sb), {"metadata": {"x": "y"}, "idle_timeout": 5})
    assert r.status == 200 and r.json()["metadata"] == {"x": "y"} and r.json()["idle_timeout"] == 5
    assert daemon.request("PATCH", sbpath(sb), {"network": {"internet": False}}).status == 503
    deadline = time.time() + 10
    while time.time() < deadline and daemon.request("GET", sbpath(sb)).status == 200:
        time.sleep(0.2)
    assert daemon.request("GET", sbpath(sb)).status == 404


def test_idle_pause(daemon, sandbox_works):
    sb = daemon.create_sandbox(idle_timeout=1, on_idle="pause")
    try:
        deadline = time.time() + 10
        state = None
        while time.time() < deadline:
            state = daemon.request("GET", sbpath(sb)).json()["state"]
            if state == "paused":
                break
            time.sleep(0.3)
        assert state == "paused"
    finally:
        daemon.delete_sandbox(sb["id"])


def test_unavailable_routes_503(daemon, sandbox):
    for method, rest in [("POST", "/fork"), ("POST", "/standby"),
                         ("POST", "/snapshots")]:
        r = daemon.request(method, sbpath(sandbox, rest), {})
        assert r.status == 503 and r.json()["error"]["message"], rest


def test_background_process(daemon, sandbox):
    r = daemon.request("POST", sbpath(sandbox, "/processes"),
                       {"cmd": "for i in 1 2 3; do echo line$i; sleep 0.1; done; read x; echo got$x"})
    assert r.status == 201
    pid = r.json()["pid"]
    procs = daemon.request("GET", sbpath(sandbox, "/processes")).json()["items"]
    assert any(p["pid"] == pid for p in procs)
    assert daemon.request("POST", sbpath(sandbox, "/processes/%d/stdin?eof=1" % pid),
                          raw=b"42\n").status == 200
    w = daemon.request("GET", sbpath(sandbox, "/processes/%d/wait?timeout=10" % pid)).json()
    assert w["state"] == "exited" and w["exit_code"] == 0
    events = list(daemon.stream("GET", sbpath(sandbox, "/processes/%d/output" % pid)))
    out = "".join(e.get("data", "") for e in events if e["type"] == "stdout")
    assert out == "line1\nline2\nline3\ngot42\n"
    after = [e for e in events if e["type"] == "stdout"][1]["seq"]
    events = list(daemon.stream("GET", sbpath(sandbox, "/processes/%d/output?after_seq=%d" % (pid, after))))
    assert all(e["seq"] > after for e in events if e["type"] == "stdout")


def test_process_follow_and_kill(daemon, sandbox):
    pid = daemon.request("POST", sbpath(sandbox, "/processes"),
                         {"cmd": "echo start; sleep 0.5; echo end"}).json()["pid"]
    events = list(daemon.stream("GET", sbpath(sandbox, "/processes/%d/output?follow=1" % pid)))
    out = "".join(e.get("data", "") for e in events if e["type"] == "stdout")
    assert out == "start\nend\n" and events[-1]["type"] == "end"
    pid = daemon.request("POST", sbpath(sandbox, "/processes"), {"cmd": "sleep 100"}).json()["pid"]
    assert daemon.request("POST", sbpath(sandbox, "/processes/%d/signal" % pid),
                          {"signal": "TERM"}).status == 200
    w = daemon.request("GET", sbpath(sandbox, "/processes/%d/wait?timeout=10" % pid)).json()
    assert w["state"] == "exited" and w["signal"] == 15
    pid = daemon.request("POST", sbpath(sandbox, "/processes"), {"cmd": "sleep 100"}).json()["pid"]
    assert daemon.request("DELETE", sbpath(sandbox, "/processes/%d" % pid)).status == 200
    assert daemon.request("GET", sbpath(sandbox, "/processes/999999")).status == 404


def test_files_roundtrip(daemon, sandbox):
    data = os.urandom(300000)
    r = daemon.request("PUT", sbpath(sandbox, "/files?path=/workspace/d/x.bin&mkdirs=1&mode=0600"), raw=data)
    assert r.status == 201
    r = daemon.request("GET", sbpath(sandbox, "/files?path=/workspace/d/x.bin"))
    assert r.status == 200 and r.body == data
    r = daemon.request("GET", sbpath(sandbox, "/files?path=/workspace/d/x.bin"), headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == data[10:20]
    st = daemon.request("GET", sbpath(sandbox, "/files/stat?path=/workspace/d/x.bin")).json()
    assert st["type"] == "file" and st["size"] == len(data) and st["mode"] == "0600"
    assert st["uid"] == 1000
    assert daemon.exec(sandbox["id"], cmd="wc -c < /workspace/d/x.bin")["stdout"].strip() == str(len(data))
    assert daemon.request("POST", sbpath(sandbox, "/files/mkdir"), {"path": "/workspace/e/f"}).status == 201
    assert daemon.request("POST", sbpath(sandbox, "/files/move"),
                          {"from": "/workspace/d/x.bin", "to": "/workspace/e/y.bin"}).status == 200
    names = [i["path"] for i in daemon.request("GET", sbpath(sandbox, "/files/list?path=/workspace&depth=3")).json()["items"]]
    assert "/workspace/e/y.bin" in names and "/workspace/d/x.bin" not in names
    assert daemon.request("DELETE", sbpath(sandbox, "/files?path=/workspace/e")).status >= 400
    assert daemon.request("DELETE", sbpath(sandbox, "/files?path=/workspace/e&recursive=1")).status == 200
    assert daemon.request("GET", sbpath(sandbox, "/files/stat?path=/workspace/e")).status == 404


def test_files_traversal_stays_inside(daemon, sandbox, tmp_path):
    canary = tmp_path / "canary"
    canary.write_text("host secret")
    before = canary.stat()
    sid = sandbox["id"]
    daemon.exec(sid, cmd="ln -s %s /workspace/evil; ln -s /workspace/loop1 /workspace/loop2;"
                         " ln -s /workspace/loop2 /workspace/loop1" % canary)
    # reading through an absolute symlink resolves inside the sandbox root
    r = daemon.request("GET", sbpath(sandbox, "/files?path=/workspace/evil"))
    assert b"host secret" not in r.body
    r = daemon.request("GET", sbpath(sandbox, "/files?path=/../../../../" + str(canary)))
    assert b"host secret" not in r.body
    # writing through it must not touch the host file
    daemon.request("PUT", sbpath(sandbox, "/files?path=/workspace/evil"), raw=b"pwned")
    daemon.request("PUT", sbpath(sandbox, "/files?path=../../../../%s" % canary), raw=b"pwned")
    daemon.request("DELETE", sbpath(sandbox, "/files?path=/workspace/evil"))
    r = daemon.request("GET", sbpath(sandbox, "/files?path=/workspace/loop1"))
    assert r.status in (400, 404)
    assert canary.read_text() == "host secret"
    assert canary.stat().st_mtime == before.st_mtime


def test_two_tenants_isolated(daemon, sandbox_works):
    ka, kb = daemon.create_key("tenant-a"), daemon.create_key("tenant-b")
    sb = daemon.create_sandbox(key=ka)
    try:
        sid = sb["id"]
        assert daemon.request("GET", "/v1/sandboxes/" + sid, key=ka).status == 200
        assert daemon.request("GET", "/v1/sandboxes/" + sid, key=kb).status == 404
        assert sid not in [i["id"] for i in daemon.request("GET", "/v1/sandboxes", key=kb).json()["items"]]
        assert daemon.request("POST", "/v1/sandboxes/%s/exec" % sid, {"cmd": "true"}, key=kb).status == 404
        assert daemon.request("GET", "/v1/sandboxes/%s/files?path=/etc/hostname" % sid, key=kb).status == 404
        assert daemon.request("DELETE", "/v1/sandboxes/" + sid, key=kb).status == 404
        assert daemon.request("GET", "/v1/sandboxes/" + sid, key=ka).status == 200
    finally:
        daemon.delete_sandbox(sb["id"], key=ka)


def test_tenant_quota(daemon, sandbox_works):
    key = daemon.create_key("quota-t", max_sandboxes=1)
    sb = daemon.create_sandbox(key=key)
    try:
        r = daemon.request("POST", "/v1/sandboxes", {}, key=key)
        assert r.status == 429 and r.json()["error"]["code"] == "limit_exceeded"
    finally:
        daemon.delete_sandbox(sb["id"], key=key)
