"""kill -9 of cellboxd loses nothing that was running."""
import concurrent.futures
import time

import pytest


def test_kill9_recovery(own_daemon):
    d = own_daemon
    sb = d.create_sandbox(name="survivor")
    sid = sb["id"]
    pids = []
    for i in range(3):
        r = d.request("POST", "/v1/sandboxes/%s/processes" % sid,
                      {"cmd": "i=0; while true; do echo tick%d-$i; i=$((i+1)); sleep 0.2; done" % i})
        pids.append(r.json()["pid"])

    def slow_exec(i):
        try:
            return d.request("POST", "/v1/sandboxes/%s/exec" % sid, {"cmd": "sleep 2; echo %d" % i}).status
        except Exception:
            return None

    with concurrent.futures.ThreadPoolExecutor(24) as ex:
        futs = [ex.submit(slow_exec, i) for i in range(24)]
        time.sleep(0.7)
        d.kill9()
        for f in futs:
            f.result()
    d.start()
    got = d.request("GET", "/v1/sandboxes/" + sid).json()
    assert got["state"] == "running", (got, d.log()[-6000:])
    procs = {p["pid"]: p for p in d.request("GET", "/v1/sandboxes/%s/processes" % sid).json()["items"]}
    for pid in pids:
        assert procs[pid]["state"] == "running"
        events = list(d.stream("GET", "/v1/sandboxes/%s/processes/%d/output" % (sid, pid)))
        assert any("tick" in e.get("data", "") for e in events)
    assert d.exec(sid, cmd="echo after")["stdout"] == "after\n"


def test_second_daemon_on_the_same_state_dir_refused(own_daemon):
    """A second cellboxd on a state directory in use exits at once, saying
    who holds it, and touches nothing: the first keeps its socket, its
    sandboxes and their processes (before: the second re-adopted them,
    replaced the socket, and the first was left unreachable)."""
    import os
    import shutil
    import subprocess
    from cellboxd import Daemon
    d = own_daemon
    sb = d.create_sandbox(name="owned")
    r = d.request("POST", "/v1/sandboxes/%s/processes" % sb["id"],
                  {"cmd": "while true; do echo tick; sleep 0.2; done"})
    pid = r.json()["pid"]
    second = Daemon(state_dir=d.state_dir)
    try:
        p = subprocess.run(second.args(), capture_output=True, timeout=60)
        assert p.returncode != 0
        err = (p.stdout + p.stderr).decode()
        assert "another cellboxd (pid %d) is running on state directory" % d.pid in err, err
        assert not os.path.exists(second.socket_path)
    finally:  # not second.stop(): it would reap the first one's sandboxes
        shutil.rmtree(second.tmp, ignore_errors=True)
    assert os.path.exists(d.socket_path)
    assert d.exec(sb["id"], cmd="echo still")["stdout"] == "still\n"
    procs = {p["pid"]: p for p in d.request("GET", "/v1/sandboxes/%s/processes" % sb["id"]).json()["items"]}
    assert procs[pid]["state"] == "running"
    # The lock goes with the process: a restart takes it again.
    d.restart()
    assert d.exec(sb["id"], cmd="echo again")["stdout"] == "again\n"


def test_left_behind_writer_survives_a_daemon_restart(own_daemon):
    """A server an exec left running (`cmd &`) writes to the exec's pipes
    after the answer; init drains them, so a restart of cellboxd (an
    upgrade) does not kill it with SIGPIPE at its next line."""
    d = own_daemon
    sid = d.create_sandbox()["id"]
    r = d.exec(sid, cmd="(while :; do echo tick; echo tock >&2; sleep 0.05; done) & echo started")
    assert "started" in r["stdout"].split(), r

    def ticking():
        out = d.exec(sid, cmd="pgrep -fc '[e]cho tick' || true")["stdout"]
        return int(out.strip() or 0)

    assert ticking() == 1
    d.restart()
    time.sleep(0.5)  # many writes since the old daemon's copies closed
    assert ticking() == 1


def test_exec_in_flight_is_hung_up_when_the_daemon_dies(own_daemon):
    """An exec still running when cellboxd dies (kill -9: no chance to hang
    up its clients' commands, as a clean stop does) lost its client with
    it: init hangs it up (SIGHUP to its tree) when the daemon's connection
    closes, instead of leaving it running unseen; one that ignores the
    hang-up is killed after the grace a live daemon gives it (5 s)."""
    import threading
    d = own_daemon
    sid = d.create_sandbox()["id"]

    def pending_exec(cmd):
        try:
            d.request("POST", "/v1/sandboxes/%s/exec" % sid, {"cmd": cmd})
        except Exception:
            pass  # the daemon went away under it

    def sleeping(seconds):
        out = d.exec(sid, cmd="pgrep -fc '[s]leep %d' || true" % seconds)["stdout"]
        return int(out.strip() or 0)

    threads = [threading.Thread(target=pending_exec, args=(cmd,), daemon=True)
               for cmd in ("sleep 600", "trap '' HUP; sleep 601; true")]
    for t in threads:
        t.start()
    deadline = time.time() + 20
    while sleeping(600) == 0 or sleeping(601) == 0:  # its shell and sleep, or sleep alone
        assert time.time() < deadline, "the execs never started"
        time.sleep(0.1)
    d.kill9()
    d.start()
    deadline = time.time() + 20
    while sleeping(600) != 0:
        assert time.time() < deadline, "the exec outlived its daemon"
        time.sleep(0.1)
    deadline = time.time() + 30
    while sleeping(601) != 0:
        assert time.time() < deadline, "the exec ignoring SIGHUP outlived its daemon"
        time.sleep(0.2)
    for t in threads:
        t.join(5)


@pytest.mark.parametrize("how", ["kill9", "terminate"])
def test_paused_sandbox_survives_a_daemon_restart(own_daemon, how):
    """A paused sandbox's init is frozen and cannot answer the new daemon's
    HELLO: cellboxd's start-up waited on it without end (the socket's
    timeout was lost in a poll). It comes back paused, its processes
    frozen, and resumes with them."""
    d = own_daemon
    sid = d.create_sandbox()["id"]
    pid = d.request("POST", "/v1/sandboxes/%s/processes" % sid,
                    {"cmd": "i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.1; done"}
                    ).json()["pid"]
    time.sleep(0.5)
    assert d.request("POST", "/v1/sandboxes/%s/pause" % sid).status == 200
    getattr(d, how)()
    d.start()
    got = d.request("GET", "/v1/sandboxes/" + sid).json()
    assert got["state"] == "paused", (got, d.log()[-4000:])

    def ticks():
        events = list(d.stream("GET", "/v1/sandboxes/%s/processes/%d/output" % (sid, pid)))
        return sum(e.get("data", "").count("tick") for e in events)

    time.sleep(0.3)
    assert d.request("GET", "/v1/sandboxes/" + sid).json()["state"] == "paused"
    assert d.request("POST", "/v1/sandboxes/%s/resume" % sid).status == 200
    before = ticks()
    procs = {p["pid"]: p for p in d.request("GET", "/v1/sandboxes/%s/processes" % sid).json()["items"]}
    assert procs[pid]["state"] == "running"
    assert d.exec(sid, cmd="echo after")["stdout"] == "after\n"
    deadline = time.time() + 10
    while ticks() <= before:
        assert time.time() < deadline, "the process did not run on after resume"
        time.sleep(0.1)
