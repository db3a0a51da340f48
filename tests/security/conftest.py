"""Fixtures for the container-tier security tests: a state dir, a cbrun
driver, sandboxes that are always destroyed, and host-side evidence helpers.
Tests judge by what the host sees, never by what the sandbox prints."""
import os
import shutil
import subprocess
import tempfile

import pytest

from battery import (CBRUN, ESCAPED, FIGURES, INIT, ROOT, _fuzz_executions,  # noqa: F401
                     _sanitizer_findings, host_uid_of, sandbox_pids)


def _usable():
    if os.geteuid() != 0:
        return "needs root"
    for p in (CBRUN, INIT):
        if not os.access(p, os.X_OK):
            return f"{p} not built"
    return None


class Runtime:
    def __init__(self, state):
        self.state = state
        self.made = []
        self.init = INIT  # a test may point this at a copy it owns

    def cb(self, *args, check=True, timeout=60, input=None):
        cmd = [CBRUN, "--state", self.state, "--init", self.init, *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(args)} -> {r.returncode}: {r.stderr}")
        return r

    def sandbox(self, sid, *limits):
        self.cb("create", sid, *limits)
        self.made.append(sid)
        self.cb("start", sid)
        return sid

    def sh(self, sid, script, uid=0, timeout=60):
        return self.cb("exec", sid, "--uid", str(uid), "--", "/bin/sh", "-c", script,
                       check=False, timeout=timeout)

    def pid(self, sid):
        return int(self.cb("pid", sid).stdout.strip())

    def upper(self, sid):
        """The sandbox's file tree as the host sees it: its root through
        /proc/<init>/root. The upper layer itself is no longer reachable by
        a host path (the disk image is mounted only inside the sandbox's
        mount namespace), and through the root the host still reads what
        the sandbox wrote without trusting anything the sandbox reports."""
        root = f"/proc/{self.pid(sid)}/root"
        if not os.path.isdir(os.path.join(root, "workspace")):
            raise AssertionError(f"sandbox {sid}: no root at {root}")
        return root

    def put(self, sid, host_path, name):
        """Copy a host file to /workspace/<name> inside the sandbox, written
        through the sandbox's root by a host process running as the
        sandbox's `user` (host uid base+1000): overlay refuses files owned
        by ids the sandbox cannot map, such as host root."""
        with open(host_path, "rb") as f:
            data = f.read()
        user = host_uid_of(self.pid(sid))[0] + 1000
        dfd = os.open(f"/proc/{self.pid(sid)}/root/workspace", os.O_PATH | os.O_DIRECTORY)
        try:
            child = os.fork()
            if child == 0:
                try:
                    os.setgroups([])
                    os.setresgid(user, user, user)
                    os.setresuid(user, user, user)
                    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW,
                                 0o755, dir_fd=dfd)
                    os.write(fd, data)
                    os.fchmod(fd, 0o755)
                    os.close(fd)
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            _, status = os.waitpid(child, 0)
            assert os.waitstatus_to_exitcode(status) == 0, f"put {name} into {sid} failed"
        finally:
            os.close(dfd)
        return f"/workspace/{name}"


@pytest.fixture
def rt():
    why = _usable()
    if why:
        pytest.skip(why)
    state = tempfile.mkdtemp(prefix="cb-sec-")
    r = Runtime(state)
    yield r
    for sid in r.made:
        r.cb("destroy", sid, check=False)
    if os.path.ismount(os.path.join(state, "volume")):
        subprocess.run(["umount", "-l", os.path.join(state, "volume")], check=False)
    shutil.rmtree(state, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    if not FIGURES["attempts"] and not FIGURES["controls"]:
        return
    w = terminalreporter.write_line
    w("")
    w("security battery figures:")
    w(f"  escape attempts tried:         {FIGURES['attempts']}")
    w(f"  escapes succeeded:             {FIGURES['escapes']}"
      + (f"  ({', '.join(ESCAPED)})" if ESCAPED else ""))
    w(f"  control runs detecting escape: {FIGURES['controls_detected']}/{FIGURES['controls']}")
    execs, targets = _fuzz_executions()
    w(f"  fuzz executions (last scripts/fuzz.sh run): {execs} over {targets} targets"
      if targets else "  fuzz executions: no scripts/fuzz.sh run in build-fuzz/")
    san = _sanitizer_findings()
    w(f"  sanitizer findings: {san}" if san is not None
      else "  sanitizer findings: not a sanitizer run (scripts/san.sh sets CB_SAN_LOG_DIR)")


@pytest.fixture(scope="session")
def probe():
    """tests/security/probe_escape.c built static (it runs inside sandboxes)."""
    d = tempfile.mkdtemp(prefix="cb-probe-")
    out = os.path.join(d, "probe_escape")
    subprocess.run(["gcc", "-static", "-O1", "-o", out,
                    os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe_escape.c")],
                   check=True, capture_output=True)
    yield out
    shutil.rmtree(d, ignore_errors=True)


