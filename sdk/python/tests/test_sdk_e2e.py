"""End-to-end tests of the Python SDK against a real cellboxd (see
conftest.py): every SDK call, error mapping, context-manager deletion,
streaming, and TCP with an API key."""

import os
import threading
import time
import uuid

import pytest

import cellbox
from cellbox import Client, Sandbox


def unique(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---- sandboxes -------------------------------------------------------------


def test_create_get_list_refresh(client):
    name = unique("sdk")
    with Sandbox.create(name=name, metadata={"suite": "sdk", "who": name}, env={"GREETING": "hi"}, client=client) as sb:
        assert sb.id.startswith("sb_")
        assert sb.name == name
        assert sb.state == "running"
        assert Sandbox.get(sb.id, client=client).id == sb.id
        assert Sandbox.get(name, client=client).id == sb.id
        ids = [s.id for s in Sandbox.list(metadata={"who": name}, client=client)]
        assert ids == [sb.id]
        assert sb.id in [s.id for s in Sandbox.list(state="running", client=client)]
        info = sb.refresh()
        assert info["id"] == sb.id and "usage" in info
        assert sb.exec("echo $GREETING").stdout == "hi\n"


def test_context_manager_deletes(client):
    with Sandbox.create(client=client) as sb:
        sid = sb.id
    with pytest.raises(cellbox.NotFound):
        Sandbox.get(sid, client=client)


def test_context_manager_deletes_on_exception(client):
    with pytest.raises(RuntimeError):
        with Sandbox.create(client=client) as sb:
            sid = sb.id
            raise RuntimeError("boom")
    with pytest.raises(cellbox.NotFound):
        Sandbox.get(sid, client=client)


def test_duplicate_name_is_conflict(client):
    name = unique("dup")
    with Sandbox.create(name=name, client=client):
        with pytest.raises(cellbox.Conflict) as ei:
            Sandbox.create(name=name, client=client)
        assert ei.value.status == 409 and ei.value.code == "conflict"


def test_missing_sandbox_is_not_found(client):
    with pytest.raises(cellbox.NotFound) as ei:
        Sandbox.get("sb_doesnotexist", client=client)
    assert ei.value.status == 404 and ei.value.message


def test_bad_request(client):
    with pytest.raises(cellbox.BadRequest):
        Sandbox.create(tier="no-such-tier", client=client)


def test_lifecycle(sandbox):
    sandbox.pause()
    assert sandbox.state == "paused"
    sandbox.resume()
    assert sandbox.state == "running"
    sandbox.files.write("/workspace/keep.txt", "kept")
    sandbox.stop()
    assert sandbox.state == "stopped"
    sandbox.start()
    assert sandbox.state == "running"
    assert sandbox.files.read_text("/workspace/keep.txt") == "kept"
    sandbox.keepalive(600)
    assert sandbox.refresh()["expires_at"]


def test_update(client):
    with Sandbox.create(memory_mb=256, pids=100, metadata={"suite": "sdk"}, client=client) as sb:
        assert sb.info["limits"]["pids"] == 100
        sb.update(memory_mb=128, pids=64, idle_timeout=120, metadata={"suite": "sdk", "step": "2"})
        assert sb.info["limits"]["memory_mb"] == 128 and sb.info["limits"]["pids"] == 64
        assert sb.info["idle_timeout"] == 120 and sb.info["metadata"]["step"] == "2"
        assert sb.refresh()["limits"]["memory_mb"] == 128
        # 128 MiB is enforced: 200 MiB do not fit, 64 do.
        hog = "python3 -c 'b = bytearray(%d << 20); print(len(b))'"
        assert not sb.exec(hog % 200, timeout=60).ok
        assert sb.exec(hog % 64, timeout=60).stdout == str(64 << 20) + "\n"
        with pytest.raises(cellbox.BadRequest):
            sb.update(memory_mb=4)
        with pytest.raises(ValueError):
            sb.update()
        assert sb.refresh()["limits"]["memory_mb"] == 128


# ---- exec ----------------------------------------------------------------------


def test_exec_argv_and_cmd(sandbox):
    r = sandbox.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert not r.ok and not r.timed_out and not r.truncated
    assert r.duration is not None
    r = sandbox.exec("echo $((6*7))")
    assert r.ok and r.stdout == "42\n"


def test_exec_stdin_env_cwd(sandbox):
    assert sandbox.exec(["cat"], stdin="from stdin").stdout == "from stdin"
    assert sandbox.exec(["od", "-An", "-tx1"], stdin=b"\x00\xff").stdout.split() == ["00", "ff"]
    assert sandbox.exec("echo $FOO", env={"FOO": "bar"}).stdout == "bar\n"
    assert sandbox.exec(["pwd"], cwd="/tmp").stdout == "/tmp\n"


def test_exec_timeout(sandbox):
    r = sandbox.exec(["sleep", "30"], timeout=1)
    assert r.timed_out
    assert r.exit_code != 0 or r.signal


def test_exec_stream_is_live(sandbox):
    started = time.monotonic()
    first_at = None
    events = []
    for ev in sandbox.exec_stream(["sh", "-c", "echo one; sleep 1.5; echo two >&2; exit 4"]):
        if first_at is None and ev.type == "stdout":
            first_at = time.monotonic() - started
        events.append(ev)
    out = b"".join(e.data for e in events if e.type == "stdout")
    err = b"".join(e.data for e in events if e.type == "stderr")
    assert out == b"one\n" and err == b"two\n"
    assert events[-1].type == "exit" and events[-1].exit_code == 4
    assert first_at is not None and first_at < 1.4, "first output arrived only at the end"
    seqs = [e.seq for e in events if e.seq is not None]
    assert seqs == sorted(seqs)


def test_exec_stream_binary_output(sandbox):
    events = list(sandbox.exec_stream(["printf", "\\377\\000x"]))
    assert b"".join(e.data for e in events if e.type == "stdout") == b"\xff\x00x"


# ---- processes ---------------------------------------------------------------


def test_process_start_wait_output(sandbox):
    p = sandbox.processes.start(["sh", "-c", "echo a; echo b >&2; exit 5"])
    assert p.pid is not None
    done = sandbox.processes.wait(p.pid, timeout=30)
    assert done.exit_code == 5
    evs = list(sandbox.processes.output(p.pid))
    assert b"".join(e.data for e in evs if e.type == "stdout") == b"a\n"
    assert b"".join(e.data for e in evs if e.type == "stderr") == b"b\n"
    assert p.pid in [q.pid for q in sandbox.processes.list()]
    assert sandbox.processes.get(p.pid).exit_code == 5


def test_process_output_after_seq(sandbox):
    p = sandbox.processes.start("for i in 1 2 3; do echo $i; done")
    sandbox.processes.wait(p.pid, timeout=30)
    evs = [e for e in sandbox.processes.output(p.pid) if e.type == "stdout"]
    assert evs and evs[0].seq is not None
    rest = [e for e in sandbox.processes.output(p.pid, after_seq=evs[0].seq) if e.type == "stdout"]
    assert b"".join(e.data for e in evs).startswith(evs[0].data)
    assert b"".join(e.data for e in rest) == b"".join(e.data for e in evs[1:])


def test_process_follow_stdin_and_signal(sandbox):
    p = sandbox.processes.start(["cat"])
    sandbox.processes.send_stdin(p.pid, "line1\n")
    sandbox.processes.send_stdin(p.pid, b"line2\n", eof=True)
    assert sandbox.processes.wait(p.pid, timeout=30).exit_code == 0
    out = b"".join(e.data for e in sandbox.processes.output(p.pid, follow=True) if e.type == "stdout")
    assert out == b"line1\nline2\n"

    p = sandbox.processes.start(["sleep", "300"])
    sandbox.processes.signal(p.pid, "TERM")
    st = sandbox.processes.wait(p.pid, timeout=30)
    assert st.signal in (15, "TERM", "SIGTERM")


def test_process_follow_streams_live(sandbox):
    p = sandbox.processes.start(["sh", "-c", "echo start; sleep 1; echo end"])
    got = []
    for ev in sandbox.processes.output(p.pid, follow=True):
        if ev.type == "stdout":
            got.append(ev.data)
    assert b"".join(got) == b"start\nend\n"


def test_process_kill(sandbox):
    p = sandbox.processes.start(["sh", "-c", "sleep 300 & sleep 300"])
    sandbox.processes.kill(p.pid)
    st = sandbox.processes.wait(p.pid, timeout=30)
    assert st.state != "running"
    assert sandbox.exec("pgrep -x sleep || true").stdout == ""


def test_process_not_found(sandbox):
    with pytest.raises(cellbox.NotFound):
        sandbox.processes.get(999999)


# ---- files -------------------------------------------------------------------


def test_files_roundtrip(sandbox):
    f = sandbox.files
    f.write("/workspace/d/e/hello.txt", "hello")
    assert f.read("/workspace/d/e/hello.txt") == b"hello"
    assert f.read_text("/workspace/d/e/hello.txt") == "hello"
    f.write("/workspace/run.sh", b"#!/bin/sh\necho ran\n", mode=0o755)
    st = f.stat("/workspace/run.sh")
    assert st["type"] in ("file", "regular") and st["size"] == len(b"#!/bin/sh\necho ran\n")
    assert sandbox.exec(["/workspace/run.sh"]).stdout == "ran\n"
    f.mkdir("/workspace/x/y")
    assert f.stat("/workspace/x/y")["type"] in ("dir", "directory")
    names = sorted(os.path.basename(e["path"].rstrip("/")) for e in f.list("/workspace"))
    assert {"d", "run.sh", "x"} <= set(names)
    f.move("/workspace/run.sh", "/workspace/x/moved.sh")
    assert not f.exists("/workspace/run.sh") and f.exists("/workspace/x/moved.sh")
    f.remove("/workspace/x/moved.sh")
    assert not f.exists("/workspace/x/moved.sh")
    f.remove("/workspace/x", recursive=True)
    assert not f.exists("/workspace/x")
    with pytest.raises(cellbox.NotFound):
        f.read("/workspace/none")


def test_files_binary(sandbox):
    data = bytes(range(256)) * 1000
    sandbox.files.write("/tmp/bin", data)
    assert sandbox.files.read("/tmp/bin") == data


def test_upload_and_download_dir(sandbox, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.bin").write_bytes(b"\x00B")
    (src / ".hidden").write_text("h")
    sandbox.files.upload_dir(str(src), "/workspace/up")
    assert sandbox.files.read_text("/workspace/up/a.txt") == "A"
    assert sandbox.files.read("/workspace/up/sub/b.bin") == b"\x00B"
    assert sandbox.files.read_text("/workspace/up/.hidden") == "h"
    dst = tmp_path / "dst"
    sandbox.files.download_dir("/workspace/up", str(dst))
    assert (dst / "a.txt").read_text() == "A"
    assert (dst / "sub" / "b.bin").read_bytes() == b"\x00B"
    assert (dst / ".hidden").read_text() == "h"


def test_watch(sandbox):
    sandbox.files.mkdir("/workspace/w")
    seen = []
    it = sandbox.files.watch("/workspace/w", recursive=True)

    def writer():
        time.sleep(0.5)
        c = Client(socket=sandbox.client.socket_path, host=sandbox.client.host, api_key=sandbox.client.api_key)
        Sandbox(c, sandbox.info).files.write("/workspace/w/new.txt", "x")

    t = threading.Thread(target=writer)
    t.start()
    for ev in it:
        seen.append(ev)
        if ev.get("path", "").endswith("new.txt"):
            break
    it.close()
    t.join()
    assert any(e["type"] in ("create", "modify") and e["path"].endswith("new.txt") for e in seen)


# ---- TCP with an API key ---------------------------------------------------------


def test_tcp_with_api_key(daemon, client):
    if not daemon.tcp_url:
        pytest.skip("the Daemon helper exposes no TCP listener")
    key = client.request_json("POST", "/v1/admin/keys", json_body={"tenant": unique("tenant")})
    assert key["key"] and key["id"]
    tcp = Client(host=daemon.tcp_url, api_key=key["key"])
    with Sandbox.create(client=tcp) as sb:
        assert sb.exec(["echo", "tcp"]).stdout == "tcp\n"
        # Another tenant's sandbox answers 404, never 403.
        other = client.request_json("POST", "/v1/admin/keys", json_body={"tenant": unique("tenant")})
        with pytest.raises(cellbox.NotFound):
            Sandbox.get(sb.id, client=Client(host=daemon.tcp_url, api_key=other["key"]))
    with pytest.raises(cellbox.Unauthorized):
        Sandbox.list(client=Client(host=daemon.tcp_url, api_key="wrong"))
    with pytest.raises(cellbox.Unauthorized):
        Sandbox.list(client=Client(host=daemon.tcp_url, api_key=""))
    client.request("DELETE", "/v1/admin/keys/" + key["id"])
    with pytest.raises(cellbox.Unauthorized):
        Sandbox.list(client=tcp)


def test_connection_kwargs(daemon, sandboxes_work):
    with Sandbox.create(socket=daemon.socket_path) as sb:
        assert Sandbox.get(sb.id, socket=daemon.socket_path).id == sb.id


# ---- the example -------------------------------------------------------------


def test_agent_loop_example(daemon, sandboxes_work):
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    example = os.path.join(here, "..", "examples", "agent_loop.py")
    env = dict(os.environ, PYTHONPATH=os.path.join(here, ".."))
    r = subprocess.run([sys.executable, example, "--socket", daemon.socket_path],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "turn 3: passed" in r.stdout and "NameError" in r.stdout
