"""An exec whose command leaves a process running (`server &`).

The exec answers at its command's exit with what it wrote, not when the
process left behind lets go of the pipes (before: the request, and the
CLI, hung as long as that process ran, beyond the exec's own timeout).
That process keeps running and may keep writing to its inherited
stdout/stderr: init takes the pipes over at the answer and drains them
until EOF (the daemon does until init says it took them, or for good with
an init from before), so it is never killed by SIGPIPE, also not when the
daemon restarts (test_recovery.py); how many init drains is bounded.

Judged by the answers, by which processes are alive in the sandbox, and by
the daemon's descriptor count. Skipped (by the sandbox_works fixture) when
the runtime cannot create a sandbox on this host."""
import time

import pytest


def sbpath(sb, rest=""):
    return "/v1/sandboxes/%s%s" % (sb["id"], rest)


def alive(daemon, sb, pattern):
    # "[s]leep" matches sleep's command line but not this shell's own
    pattern = "[%s]%s" % (pattern[0], pattern[1:])
    r = daemon.exec(sb["id"], cmd="pgrep -fc '%s' || true" % pattern)
    return int(r["stdout"].strip() or 0)


def wait_for(pred, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def test_exec_answers_at_exit_with_output(daemon, sandbox):
    # The left-behind process would hold the pipes for an hour; the request's
    # own client timeout (60 s) fails the test if the exec waits for it.
    r = daemon.exec(sandbox["id"], cmd="echo before; sleep 3600 & echo after; echo err >&2; exit 4")
    assert r["exit_code"] == 4 and r["timed_out"] is False, r
    assert r["stdout"] == "before\nafter\n" and r["stderr"] == "err\n", r
    assert alive(daemon, sandbox, "sleep 3600") == 1
    # Streamed the same way: the exit event ends the stream.
    events = list(daemon.stream("POST", sbpath(sandbox, "/exec"),
                                {"cmd": "echo s; sleep 3601 & echo t"}))
    assert events[-1]["type"] == "exit" and events[-1]["exit_code"] == 0, events
    out = "".join(e.get("data", "") for e in events if e["type"] == "stdout")
    assert out == "s\nt\n"
    daemon.exec(sandbox["id"], cmd="pkill -f 'sleep 360'; true")


def test_left_behind_writer_survives_the_answer(daemon, sandbox):
    # A ticker that writes to the exec's stdout and stderr every 50 ms after
    # the exec answered: with the pipes closed it would die of SIGPIPE.
    cmd = ("(while :; do echo tick; echo tock >&2; sleep 0.05; done) & "
           "echo started")
    r = daemon.exec(sandbox["id"], cmd=cmd)
    assert "started" in r["stdout"].split(), r
    time.sleep(1.0)
    assert alive(daemon, sandbox, "echo tick") >= 1
    # A server started the way agents start one, then used.
    r = daemon.exec(sandbox["id"], cmd="python3 -m http.server 8731 --bind 127.0.0.1 & "
                                       "sleep 0.3; echo up")
    assert r["exit_code"] == 0, r
    fetch = ("python3 -c 'import urllib.request as u,time\n"
             "for i in range(50):\n"
             "  try: print(len(u.urlopen(\"http://127.0.0.1:8731/\").read())); break\n"
             "  except OSError: time.sleep(0.1)'")
    for _ in range(3):  # each request makes the server log to its stderr
        r = daemon.exec(sandbox["id"], cmd=fetch)
        assert r["stdout"].strip().isdigit(), r
    assert alive(daemon, sandbox, "http.server 8731") == 1
    daemon.exec(sandbox["id"], cmd="pkill -f 'echo tick'; pkill -f http.server; true")


def test_left_behind_writers_are_drained_by_init(daemon, sandbox):
    # Past the daemon's own bound (16 per sandbox): init takes each exec's
    # pipes over at the answer (DRAIN), so every writer lives and the
    # daemon holds none of their descriptors.
    base = daemon.fd_count()
    n = 24
    for i in range(n):
        r = daemon.exec(sandbox["id"], cmd="(while :; do echo w%d; sleep 0.2; done) & echo ok" % i)
        assert "ok" in r["stdout"].split(), r
    assert wait_for(lambda: daemon.fd_count() - base <= 4), daemon.fd_count() - base
    time.sleep(0.5)  # each has written again since
    assert alive(daemon, sandbox, "echo w") == n
    daemon.exec(sandbox["id"], cmd="pkill -f 'while :; do echo w'; true")
    assert wait_for(lambda: alive(daemon, sandbox, "echo w") == 0)


def test_fast_writer_left_behind(daemon, sandbox):
    # `yes &` writes without pause: the exec still answers (its output cut
    # at the cap or not), the daemon keeps answering others, and once the
    # writer is gone its pipes are let go.
    base = daemon.fd_count()
    r = daemon.exec(sandbox["id"], cmd="yes & echo started")
    assert r["exit_code"] == 0, {k: v for k, v in r.items() if k != "stdout"}
    assert daemon.request("GET", "/healthz", timeout=10).status == 200
    r2 = daemon.exec(sandbox["id"], cmd="echo still-here")
    assert r2["stdout"] == "still-here\n"
    daemon.exec(sandbox["id"], cmd="pkill -x yes; true")
    assert wait_for(lambda: daemon.fd_count() - base <= 4), daemon.fd_count() - base
