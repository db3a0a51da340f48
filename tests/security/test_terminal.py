"""TIOCSTI injection judged by real terminals' input queues, read on the host.

TIOCSTI pushes bytes into a terminal's input queue: whatever reads that
terminal next (the user's shell) runs them as typed commands. The evidence
is always the bytes waiting in the terminal's input queue, read by the host
test itself: from the slave side of a host pty pair it owns, or from the
sandbox's pty reopened through /proc/<pid>/fd/0 of a process holding it (a
host-side open of the very terminal the probe attacked). What the probe
prints is only kept for the failure message.

  - host terminal: `cellbox exec` runs in a host pty (its controlling tty and
    stdio); the probe inside tries TIOCSTI on fds 0/1/2 and /dev/tty. Control:
    an unconfined host process with that pty as its controlling tty injects
    the marker and the same detector sees it.
  - sandbox terminal (API /ptys): a process in the sandbox's own terminal
    gets EPERM (seccomp), nothing is queued. Control: the same probe in a
    terminal it opens itself inside a sandbox weakened on purpose (cbrun
    --weaken seccomp) queues the marker, and the detector sees it.
"""
import fcntl
import os
import subprocess
import sys
import termios
import time
import tty
import uuid

import pytest

from battery import BUILD, CBRUN, control, judge

sys.path.append(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
from cellboxd import Daemon  # noqa: E402

CLI = os.path.join(BUILD, "cellbox")

# argv: marker [name]. Tries TIOCSTI with every byte of the marker on fds
# 0/1/2 and on /dev/tty; with a name, then becomes a sleeping process called
# <name> that keeps the terminal open so the host can read its queue.
PROBE = r'''
import fcntl, os, sys, termios
marker = sys.argv[1].encode()
res = {}
fds = {"0": 0, "1": 1, "2": 2}
try:
    fds["tty"] = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
except OSError as e:
    res["tty"] = "open errno %d" % e.errno
for name, fd in fds.items():
    try:
        for b in marker:
            fcntl.ioctl(fd, termios.TIOCSTI, bytes([b]))
        res[name] = "injected"
    except OSError as e:
        res[name] = "errno %d" % e.errno
sys.stderr.write("tiocsti probe: %r\n" % res)
sys.stderr.flush()
if len(sys.argv) > 2:
    os.execv("/bin/sleep", [sys.argv[2], "120"])
'''

# Inside a sandbox: open a terminal of its own, make it the controlling tty
# of a new session and run PROBE there (the weakened-sandbox control and its
# standard twin). The parent keeps the master open so the pty stays alive.
OWN_PTY = r'''
import os, sys, time, fcntl, termios
master, slave = os.openpty()
pid = os.fork()
if pid == 0:
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.execv("/usr/bin/python3", ["python3", "-c", sys.argv[1], sys.argv[2], sys.argv[3]])
time.sleep(120)
'''


def legacy_tiocsti():
    try:
        with open("/proc/sys/dev/tty/legacy_tiocsti") as f:
            return f.read().strip() == "1"
    except OSError:
        return True  # kernels before 6.2 always allow it


def read_available(fd):
    """Every byte readable on fd right now, without blocking."""
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    got = b""
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            got += chunk
    except (BlockingIOError, OSError):
        pass
    fcntl.fcntl(fd, fcntl.F_SETFL, fl)
    return got


def drain_terminal(fd):
    """Every byte queued for reading on a terminal (what its shell would read
    next). Raw mode first: in canonical mode a partial line is not readable."""
    tty.setraw(fd, termios.TCSANOW)
    return read_available(fd)


def controlling_tty(fd):
    """preexec_fn: a new session whose controlling terminal is fd."""
    def setup():
        os.setsid()
        fcntl.ioctl(fd, termios.TIOCSCTTY, 1)
    return setup


def marker():
    return "echo PWNED-%s\n" % uuid.uuid4().hex[:10]


# ---- a host terminal: cellbox exec in a host pty ----

@pytest.fixture(scope="module")
def daemon():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.access(CLI, os.X_OK):
        pytest.skip("%s is not built" % CLI)
    d = Daemon(extra_args=["--pool-size", "0"])
    d.start()
    yield d
    d.stop()


def cli_env():
    e = dict(os.environ)
    for k in ("CELLBOX_HOST", "CELLBOX_API_KEY", "CELLBOX_SOCKET"):
        e.pop(k, None)
    e["TERM"] = "xterm"
    return e


def test_tiocsti_into_host_terminal(daemon):
    sid = daemon.create_sandbox()["id"]
    master, slave = os.openpty()
    try:
        mark = marker()
        log = subprocess.run(
            [CLI, "--socket", daemon.socket_path, "exec", sid, "--user", "root", "--",
             "python3", "-c", PROBE, mark],
            stdin=slave, stdout=slave, stderr=slave, env=cli_env(), timeout=120,
            preexec_fn=controlling_tty(slave), close_fds=True)
        queued = drain_terminal(slave)
        screen = read_screen(master)
        assert log.returncode == 0, screen
        assert b"tiocsti probe" in screen, screen  # the probe did run
        assert not judge("tiocsti/host-terminal", mark.encode() in queued), (queued, screen)
        if not legacy_tiocsti():
            pytest.skip("dev.tty.legacy_tiocsti is 0: an unprivileged control cannot inject")
        # Control: an unconfined host process, same controlling terminal.
        subprocess.run([sys.executable, "-c", PROBE, mark], stdin=slave, stdout=slave,
                       stderr=slave, timeout=60, preexec_fn=controlling_tty(slave),
                       close_fds=True)
        assert control("tiocsti/host-terminal", mark.encode() in drain_terminal(slave))
    finally:
        os.close(master)
        os.close(slave)


def read_screen(master):
    """What was shown on the terminal (the master side), without blocking."""
    return read_available(master)


# ---- the sandbox's own terminal ----

def find_process(name, timeout=30):
    """Host pid of the process whose argv[0] is name."""
    want = name.encode() + b"\0"
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % p, "rb") as f:
                    if f.read().startswith(want):
                        return int(p)
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError("no process %s" % name)


def queued_on_terminal_of(pid):
    """The input queue of pid's terminal, opened from the host through
    /proc/<pid>/fd/0 (the same terminal the probe attacked)."""
    fd = os.open("/proc/%d/fd/0" % pid, os.O_RDWR | os.O_NOCTTY)
    try:
        assert os.isatty(fd), "fd 0 of %d is not a terminal" % pid
        return drain_terminal(fd)
    finally:
        os.close(fd)


def test_tiocsti_in_sandbox_pty(daemon):
    sid = daemon.create_sandbox()["id"]
    mark, queued = sandbox_pty_injection(daemon, sid)
    assert not judge("tiocsti/sandbox-pty", mark.encode() in queued), queued


def test_tiocsti_in_own_terminal_and_weakened_control(rt):
    """cbrun sandboxes: the standard one is refused (seccomp), the one
    weakened on purpose (no seccomp) injects and the detector sees it."""
    for weaken in (None, "seccomp"):
        sid = rt.sandbox("sb_tiocsti_%s" % (weaken or "std"),
                         *(("--weaken", weaken) if weaken else ()))
        mark, queued = own_pty_injection(rt, sid)
        if weaken:
            assert control("tiocsti/own-terminal", mark.encode() in queued), queued
        else:
            assert not judge("tiocsti/own-terminal", mark.encode() in queued), queued


def sandbox_pty_injection(daemon, sid):
    """Run PROBE as a PTY of the sandbox (API /ptys); returns queued bytes."""
    mark, name = marker(), "tiocsti-" + uuid.uuid4().hex[:8]
    r = daemon.request("POST", "/v1/sandboxes/%s/ptys" % sid,
                       {"argv": ["python3", "-c", PROBE, mark, name], "cols": 80, "rows": 24})
    assert r.status == 201, r
    pid = find_process(name)
    return mark, queued_on_terminal_of(pid)


def own_pty_injection(rt, sid):
    """Run PROBE in a terminal the sandbox opens itself (cbrun exec)."""
    mark, name = marker(), "tiocsti-" + uuid.uuid4().hex[:8]
    p = subprocess.Popen([*rt_cmd(rt), "exec", sid, "--uid", "0", "--", "/usr/bin/python3",
                          "-c", OWN_PTY, PROBE, mark, name],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pid = find_process(name)
        return mark, queued_on_terminal_of(pid)
    finally:
        p.kill()
        p.communicate(timeout=30)


def rt_cmd(rt):
    return [CBRUN, "--state", rt.state, "--init", rt.init]
