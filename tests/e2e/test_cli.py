"""Tests of the `cellbox` CLI (build/cellbox).

Part 1 drives the CLI against a stub HTTP server on a unix socket to check its
HTTP client (chunked NDJSON streaming, error messages, exit codes, request
shapes). Part 2 drives it against a real cellboxd (started through the e2e
Daemon helper): create/ls/info/exec/run/ps/logs/kill/cp/cat/write/ls-files/
rm/admin keys, --json outputs, error exits."""

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "sdk", "python", "tests"))
sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))

from cellbox_httpstub import StubServer, json_answer  # noqa: E402

BUILD = os.environ.get("CB_BUILD") or os.path.join(ROOT, "build")
CLI = os.path.join(BUILD, "cellbox")

pytestmark = pytest.mark.skipif(not os.access(CLI, os.X_OK), reason="build/cellbox is not built")


def run_cli(sock, *args, input=None, env=None, timeout=60, json_out=False):
    """Run the CLI with --socket and return the CompletedProcess (bytes)."""
    cmd = [CLI, "--socket", sock] + (["--json"] if json_out else []) + list(args)
    e = dict(os.environ)
    e.pop("CELLBOX_HOST", None)
    e.pop("CELLBOX_API_KEY", None)
    e.update(env or {})
    return subprocess.run(
        cmd,
        input=input if input is not None else b"",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=e,
        timeout=timeout,
    )


# ===== Part 1: the HTTP client against a stub server ===========================


def test_help_and_usage_errors():
    r = subprocess.run([CLI, "help"], capture_output=True)
    assert r.returncode == 0 and b"exec" in r.stdout
    for cmd in ("create", "ls", "exec", "run", "cp", "logs", "kill", "admin", "ls-files", "write",
                "update"):
        r = subprocess.run([CLI, cmd, "--help"], capture_output=True)
        assert r.returncode == 0 and b"usage: cellbox" in r.stdout, cmd
    r = subprocess.run([CLI, "frobnicate"], capture_output=True)
    assert r.returncode == 2
    r = subprocess.run([CLI, "info"], capture_output=True)
    assert r.returncode == 2 and b"expected" in r.stderr


def test_unreachable_daemon_exits_1(tmp_path):
    r = run_cli(str(tmp_path / "none.sock"), "ls")
    assert r.returncode == 1 and b"cannot connect" in r.stderr


def test_api_error_message_and_exit_code():
    body = json.dumps({"error": {"code": "not_found", "message": "sandbox sb_x not found"}})
    with StubServer(lambda r: json_answer(404, body)) as srv:
        r = run_cli(srv.socket_path, "info", "sb_x")
    assert r.returncode == 1
    assert r.stderr.decode().strip() == "cellbox: sandbox sb_x not found"


def test_exec_streams_chunked_ndjson_and_propagates_exit_code():
    events = [
        b'{"seq":1,"type":"start","pid":7}\n{"seq":2,"type":"stdout","da',
        b'ta":"out\\n"}\n',
        b'{"seq":3,"type":"stderr","data_b64":"' + base64.b64encode(b"\xffer\n") + b'"}\n',
        b'{"seq":4,"type":"exit","exit_code":42,"signal":null}\n',
    ]

    def respond(rec):
        assert rec.headers["Accept"] == "application/x-ndjson"
        return 200, {"Content-Type": "application/x-ndjson"}, events

    with StubServer(respond) as srv:
        r = run_cli(srv.socket_path, "exec", "--env", "A=1", "--cwd", "/w", "sb_1", "--", "sh", "-c", "x", input=b"in")
        req = srv.requests[0]
    assert r.returncode == 42
    assert r.stdout == b"out\n" and r.stderr == b"\xffer\n"
    assert req.method == "POST" and req.path == "/v1/sandboxes/sb_1/exec"
    body = json.loads(req.body)
    assert body["argv"] == ["sh", "-c", "x"] and body["env"] == {"A": "1"} and body["cwd"] == "/w"
    assert base64.b64decode(body["stdin_b64"]) == b"in"


def test_exec_signal_exit_code():
    events = [b'{"seq":1,"type":"exit","exit_code":null,"signal":"KILL"}\n']
    with StubServer(lambda r: (200, {"Content-Type": "application/x-ndjson"}, events)) as srv:
        r = run_cli(srv.socket_path, "exec", "sb_1", "--", "true")
    assert r.returncode == 128 + 9


def test_ls_table_json_and_pagination():
    pages = {
        None: {"items": [{"id": "sb_1", "name": "one", "state": "running", "tier": "container"}], "next_cursor": "c2"},
        "c2": {"items": [{"id": "sb_2", "name": None, "state": "paused", "tier": "container"}], "next_cursor": None},
    }

    def respond(rec):
        from urllib.parse import parse_qs, urlsplit

        q = parse_qs(urlsplit(rec.path).query)
        assert q.get("metadata.team") == ["a b"]
        return json_answer(200, json.dumps(pages[q.get("cursor", [None])[0]]))

    with StubServer(respond) as srv:
        r = run_cli(srv.socket_path, "ls", "--metadata", "team=a b")
        assert r.returncode == 0
        lines = r.stdout.decode().splitlines()
        assert lines[0].split() == ["ID", "NAME", "STATE", "TIER", "TEMPLATE", "CREATED"]
        assert lines[1].split()[:3] == ["sb_1", "one", "running"]
        assert lines[2].split()[:3] == ["sb_2", "-", "paused"]
        assert lines[1].index("running") == lines[0].index("STATE")
        r = run_cli(srv.socket_path, "ls", "--metadata", "team=a b", json_out=True)
        assert [s["id"] for s in json.loads(r.stdout)["items"]] == ["sb_1", "sb_2"]


def test_update_request_shape():
    answer = json.dumps({"id": "sb_x", "state": "running", "limits": {"memory_mb": 256}})
    with StubServer(lambda r: json_answer(200, answer)) as srv:
        r = run_cli(srv.socket_path, "update", "sb_x", "--memory", "256", "--cpu", "0.5",
                    "--pids", "64", "--idle-timeout", "30", "--on-idle", "stop",
                    "--metadata", "a=1", "--metadata", "b=2", json_out=True)
        assert r.returncode == 0, r.stderr
        req = srv.requests[0]
        assert req.method == "PATCH" and req.path == "/v1/sandboxes/sb_x"
        assert json.loads(req.body) == {"limits": {"memory_mb": 256, "cpu": 0.5, "pids": 64},
                                        "idle_timeout": 30, "on_idle": "stop",
                                        "metadata": {"a": "1", "b": "2"}}
        assert json.loads(r.stdout)["limits"]["memory_mb"] == 256
    for bad in ([], ["sb_x"], ["sb_x", "--memory", "lots"], ["sb_x", "--swap", "1"],
                ["sb_x", "sb_y", "--pids", "9"]):
        r = subprocess.run([CLI, "--socket", "/nonexistent", "update"] + bad, capture_output=True)
        assert r.returncode == 2 and r.stderr, bad


# ===== Part 2: against a real cellboxd ====================================


# `daemon` (one cellboxd per module, unix socket + TCP) comes from
# tests/e2e/conftest.py.


@pytest.fixture(scope="module")
def sock(daemon):
    from cellbox_daemon import require_sandboxes, tcp_url

    daemon.tcp_url = tcp_url(daemon)
    require_sandboxes(daemon)
    return daemon.socket_path


@pytest.fixture
def sbid(sock):
    r = run_cli(sock, "create", "--metadata", "suite=cli")
    assert r.returncode == 0, r.stderr
    sid = r.stdout.decode().strip()
    yield sid
    run_cli(sock, "rm", sid)


def test_create_ls_info_rm(sock):
    name = "cli-" + uuid.uuid4().hex[:8]
    r = run_cli(sock, "create", "--name", name, "--metadata", f"who={name}", "--env", "X=1", json_out=True)
    assert r.returncode == 0, r.stderr
    sb = json.loads(r.stdout)
    assert sb["id"].startswith("sb_") and sb["name"] == name and sb["state"] == "running"
    r = run_cli(sock, "ls", "--metadata", f"who={name}", json_out=True)
    assert [s["id"] for s in json.loads(r.stdout)["items"]] == [sb["id"]]
    r = run_cli(sock, "ls")
    assert r.returncode == 0 and sb["id"] in r.stdout.decode()
    r = run_cli(sock, "info", name, json_out=True)
    assert r.returncode == 0 and json.loads(r.stdout)["id"] == sb["id"]
    r = run_cli(sock, "info", sb["id"])
    assert r.returncode == 0 and f"id: {sb['id']}" in " ".join(r.stdout.decode().split())
    r = run_cli(sock, "create", "--name", name)
    assert r.returncode == 1 and r.stderr.startswith(b"cellbox: ")
    assert run_cli(sock, "rm", sb["id"]).returncode == 0
    r = run_cli(sock, "info", sb["id"])
    assert r.returncode == 1 and r.stderr.startswith(b"cellbox: ") and len(r.stderr) > 10


def test_lifecycle_commands(sock, sbid):
    for cmd, state in (("pause", "paused"), ("resume", "running"), ("stop", "stopped"), ("start", "running")):
        r = run_cli(sock, cmd, sbid)
        assert r.returncode == 0, (cmd, r.stderr)
        assert json.loads(run_cli(sock, "info", sbid, json_out=True).stdout)["state"] == state
    assert run_cli(sock, "keepalive", sbid, "--timeout", "600").returncode == 0


def test_update_limits_live(sock, sbid):
    r = run_cli(sock, "update", sbid, "--memory", "200", "--pids", "77", "--metadata", "suite=cli2",
                json_out=True)
    assert r.returncode == 0, r.stderr
    sb = json.loads(r.stdout)
    assert sb["limits"]["memory_mb"] == 200 and sb["limits"]["pids"] == 77
    assert sb["metadata"] == {"suite": "cli2"}
    # The limit is the cgroup's, not only the record's (evidence on the host).
    files = ([f"/sys/fs/cgroup/pids/cellbox/{sbid}/pids.max", f"/sys/fs/cgroup/cellbox/{sbid}/pids.max"])
    assert [open(f).read().strip() for f in files if os.path.exists(f)] == ["77"]
    r = run_cli(sock, "update", sbid, "--memory", "8")
    assert r.returncode == 1 and b"memory_mb" in r.stderr
    assert json.loads(run_cli(sock, "info", sbid, json_out=True).stdout)["limits"]["memory_mb"] == 200


def test_exec_exit_code_stdin_stderr(sock, sbid):
    r = run_cli(sock, "exec", sbid, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert r.returncode == 7 and r.stdout == b"out\n" and r.stderr == b"err\n"
    r = run_cli(sock, "exec", sbid, "--", "cat", input=b"piped stdin\x00\xff")
    assert r.returncode == 0 and r.stdout == b"piped stdin\x00\xff"
    r = run_cli(sock, "exec", "--env", "V=42", "--cwd", "/tmp", sbid, "--", "sh", "-c", "echo $V; pwd")
    assert r.stdout == b"42\n/tmp\n"
    r = run_cli(sock, "exec", sbid, "--", "sh", "-c", "kill -TERM $$")
    assert r.returncode == 128 + 15


def test_exec_streams_live(sock, sbid):
    p = subprocess.Popen(
        [CLI, "--socket", sock, "exec", sbid, "--", "sh", "-c", "echo first; sleep 2; echo second"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    t0 = time.monotonic()
    assert p.stdout.readline() == b"first\n"
    assert time.monotonic() - t0 < 1.8, "output was not streamed"
    assert p.stdout.read() == b"second\n"
    assert p.wait(timeout=30) == 0


def test_exec_pipes_large_stdin(sock, sbid):
    import hashlib
    data = os.urandom(5 << 20)
    r = run_cli(sock, "exec", sbid, "--", "sha256sum", input=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()


def test_exec_ctrl_c_forwards_sigint(sock, sbid):
    p = subprocess.Popen(
        [CLI, "--socket", sock, "exec", sbid, "--", "sh", "-c", "trap 'echo got-int; exit 9' INT; echo ready; while :; do sleep 0.1; done"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGINT)
    rc = p.wait(timeout=30)
    out = p.stdout.read()
    # The stream's first event names the pid, so the first Ctrl-C reaches the
    # process as SIGINT: it prints and exits with its own code.
    assert (rc, out) == (9, b"got-int\n")


def test_run_deletes_sandbox(sock):
    before = {s["id"] for s in json.loads(run_cli(sock, "ls", json_out=True).stdout)["items"]}
    r = run_cli(sock, "run", "--metadata", "suite=cli-run", "--", "sh", "-c", "cat; exit 3", input=b"via run")
    assert r.returncode == 3 and r.stdout == b"via run"
    after = {s["id"] for s in json.loads(run_cli(sock, "ls", json_out=True).stdout)["items"]}
    assert after <= before


def test_run_deletes_sandbox_on_ctrl_c(sock):
    tag = "ctrlc-" + uuid.uuid4().hex[:6]
    p = subprocess.Popen(
        [CLI, "--socket", sock, "run", "--metadata", f"tag={tag}", "--", "sh", "-c", "echo ready; sleep 300"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    assert p.stdout.readline() == b"ready\n"
    # The first Ctrl-C goes to the process (test_exec_ctrl_c_forwards_sigint
    # checks that); what matters here is that `run` cleans up however the
    # user ends it, so a second Ctrl-C follows if the first did not end it.
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=60)
    assert rc == 130
    r = run_cli(sock, "ls", "--metadata", f"tag={tag}", json_out=True)
    assert json.loads(r.stdout)["items"] == []


def test_ps_logs_kill(sock, sbid):
    r = run_cli(sock, "exec", sbid, "--", "true")
    assert r.returncode == 0
    # Start a background process through the API route the CLI reads back.
    from cellbox import Client

    c = Client(socket=sock)
    proc = c.request_json("POST", f"/v1/sandboxes/{sbid}/processes",
                          json_body={"argv": ["sh", "-c", "echo bg-out; echo bg-err >&2; sleep 300"]})
    pid = str(proc["pid"])
    time.sleep(0.5)
    r = run_cli(sock, "ps", sbid)
    assert r.returncode == 0 and pid in r.stdout.decode() and "PID" in r.stdout.decode()
    r = run_cli(sock, "ps", sbid, json_out=True)
    listed = json.loads(r.stdout)
    items = listed["items"] if isinstance(listed, dict) else listed
    assert pid in [str(p["pid"]) for p in items]
    r = run_cli(sock, "logs", sbid, pid)
    assert r.returncode == 0 and r.stdout == b"bg-out\n" and r.stderr == b"bg-err\n"
    r = run_cli(sock, "kill", sbid, pid, "-s", "TERM")
    assert r.returncode == 0
    st = c.request_json("GET", f"/v1/sandboxes/{sbid}/processes/{pid}/wait", query={"timeout": 20})
    assert st.get("signal") in (15, "TERM", "SIGTERM")
    proc = c.request_json("POST", f"/v1/sandboxes/{sbid}/processes", json_body={"argv": ["sleep", "300"]})
    assert run_cli(sock, "kill", sbid, str(proc["pid"])).returncode == 0
    # logs -f ends when the process has exited.
    r = run_cli(sock, "logs", "-f", sbid, str(proc["pid"]), timeout=30)
    assert r.returncode == 0
    # logs of a process that failed still succeed (the exit code is the
    # process's, not the command's).
    proc = c.request_json("POST", f"/v1/sandboxes/{sbid}/processes", json_body={"cmd": "echo last; exit 3"})
    c.request_json("GET", f"/v1/sandboxes/{sbid}/processes/{proc['pid']}/wait", query={"timeout": 20})
    r = run_cli(sock, "logs", sbid, str(proc["pid"]))
    assert r.returncode == 0 and r.stdout == b"last\n"
    assert run_cli(sock, "kill", sbid, "999999").returncode == 1
    c.close()


def test_cp_cat_write_ls_files(sock, sbid, tmp_path):
    f = tmp_path / "one.txt"
    f.write_bytes(b"file content\n\x00")
    assert run_cli(sock, "cp", str(f), f"{sbid}:/workspace/one.txt").returncode == 0
    r = run_cli(sock, "cat", sbid, "/workspace/one.txt")
    assert r.returncode == 0 and r.stdout == b"file content\n\x00"
    assert run_cli(sock, "write", sbid, "/workspace/new/w.txt", input=b"written").returncode == 0
    assert run_cli(sock, "cat", sbid, "/workspace/new/w.txt").stdout == b"written"
    out = tmp_path / "back.txt"
    assert run_cli(sock, "cp", f"{sbid}:/workspace/new/w.txt", str(out)).returncode == 0
    assert out.read_bytes() == b"written"

    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "a").write_text("A")
    (d / "sub" / "b").write_text("B")
    r = run_cli(sock, "cp", str(d), f"{sbid}:/workspace/tree")
    assert r.returncode == 0, r.stderr
    assert run_cli(sock, "cat", sbid, "/workspace/tree/sub/b").stdout == b"B"
    back = tmp_path / "back"
    r = run_cli(sock, "cp", f"{sbid}:/workspace/tree", str(back))
    assert r.returncode == 0, r.stderr
    assert (back / "a").read_text() == "A" and (back / "sub" / "b").read_text() == "B"

    r = run_cli(sock, "ls-files", sbid, "/workspace")
    assert r.returncode == 0
    text = r.stdout.decode()
    assert "PATH" in text and "one.txt" in text and "tree" in text
    r = run_cli(sock, "ls-files", sbid, "/workspace", json_out=True)
    paths = [e["path"] for e in json.loads(r.stdout)["items"]]
    assert any(p.endswith("one.txt") for p in paths)
    r = run_cli(sock, "cat", sbid, "/workspace/missing")
    assert r.returncode == 1 and r.stderr.startswith(b"cellbox: ")


def test_admin_keys(daemon, sock):
    tenant = "t-" + uuid.uuid4().hex[:6]
    r = run_cli(sock, "admin", "key", "create", "--tenant", tenant, json_out=True)
    assert r.returncode == 0, r.stderr
    key = json.loads(r.stdout)
    assert key["tenant"] == tenant and key["key"] and key["id"]
    r = run_cli(sock, "admin", "key", "ls", json_out=True)
    listed = json.loads(r.stdout)
    items = listed["items"] if isinstance(listed, dict) else listed
    assert key["id"] in [k["id"] for k in items]
    # The secret is shown once, by create; listing must not reveal it.
    assert key["key"] not in r.stdout.decode()
    r = run_cli(sock, "admin", "key", "ls")
    assert r.returncode == 0 and key["id"] in r.stdout.decode()
    if daemon.tcp_url:
        e = dict(os.environ, CELLBOX_HOST=daemon.tcp_url, CELLBOX_API_KEY=key["key"])
        r = subprocess.run([CLI, "ls", "--json"], capture_output=True, env=e, timeout=30)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["items"] == []
        r = subprocess.run([CLI, "--host", daemon.tcp_url, "--api-key", "wrong", "ls"], capture_output=True, timeout=30)
        assert r.returncode == 1 and r.stderr.startswith(b"cellbox: ")
    assert run_cli(sock, "admin", "key", "revoke", key["id"]).returncode == 0
    if daemon.tcp_url:
        r = subprocess.run([CLI, "--host", daemon.tcp_url, "--api-key", key["key"], "ls"], capture_output=True, timeout=30)
        assert r.returncode == 1


def test_version(sock):
    r = run_cli(sock, "version", json_out=True)
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert doc["client"] and doc["server"]
