"""Fixtures for the container-tier security tests: a state dir, a cbrun
driver, sandboxes that are always destroyed, and host-side evidence helpers.
Tests judge by what the host sees, never by what the sandbox prints."""
import os
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CB_BUILD", os.path.join(ROOT, "build"))
CBRUN = os.path.join(BUILD, "tools", "cbrun")
INIT = os.path.join(BUILD, "cellbox-init")
UID_BASE = 1 << 30


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

    def cb(self, *args, check=True, timeout=60, input=None):
        cmd = [CBRUN, "--state", self.state, "--init", INIT, *args]
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
        for d in (f"{self.state}/volume/{sid}/upper", f"{self.state}/sandboxes/{sid}/upper"):
            if os.path.isdir(d):
                return d
        raise AssertionError("no upper dir")

    def put(self, sid, host_path, name):
        """Copy a host file to /workspace/<name> inside the sandbox."""
        dst = os.path.join(self.upper(sid), "workspace", name)
        shutil.copy(host_path, dst)
        os.chmod(dst, 0o755)
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


def host_uid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line")
