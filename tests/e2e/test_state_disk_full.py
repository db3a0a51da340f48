"""The state dir's file system fills up: the API answers with errors (and
a message), the daemon does not crash, state.db stays intact, and once space
returns everything works again. The state dir is a small tmpfs mounted for
this test under a temporary directory and unmounted after."""
import os
import shutil
import sqlite3
import subprocess
import tempfile

import pytest

from cellboxd import Daemon


@pytest.fixture
def small_state():
    top = tempfile.mkdtemp(prefix="cb-full-")
    os.chmod(top, 0o755)
    state = os.path.join(top, "state")
    os.mkdir(state)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", state],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs: " + r.stderr)
    yield state
    vol = os.path.join(state, "volume")
    if os.path.ismount(vol):
        subprocess.run(["umount", "-l", vol], check=False)
    subprocess.run(["umount", "-l", state], check=False)
    shutil.rmtree(top, ignore_errors=True)


def fill(path):
    """Take every free block of path's file system; returns the filler."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
        try:  # the last partial blocks too
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:
            pass
    return filler


def integrity(state):
    con = sqlite3.connect(os.path.join(state, "state.db"))
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def test_state_dir_full(small_state):
    d = Daemon(state_dir=small_state, extra_args=["--no-disk-quota", "--pool-size", "0"])
    d.start()
    try:
        before = d.create_sandbox()
        filler = fill(small_state)
        answers = []
        for _ in range(5):
            r = d.request("POST", "/v1/sandboxes", {}, timeout=30)
            answers.append(r.status)
            if r.status >= 400:
                err = r.json()["error"]
                assert err["message"], r  # an error that says something
        try:  # an upload into the full disk: an error, or the body cut short
            r = d.request("PUT", f"/v1/sandboxes/{before['id']}/files?path=/workspace/x",
                          raw=b"y" * (256 << 10), timeout=30)
            answers.append(r.status)
            assert r.status in (201, 400, 413, 429, 500, 503, 507), r
            assert r.status == 201 or r.json()["error"]["message"], r
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = d.request("POST", f"/v1/sandboxes/{before['id']}/exec",
                      {"cmd": "dd if=/dev/zero of=/workspace/big bs=1M count=8 2>&1; echo done"},
                      timeout=30)
        answers.append(r.status)
        assert d.proc.poll() is None, d.log()  # no crash
        assert d.request("GET", "/healthz").status == 200
        assert any(s >= 500 for s in answers[:5]), answers  # creates refused while full
        assert all(s < 600 for s in answers)
        assert integrity(small_state) == "ok"
        # space returns: everything works again
        os.unlink(filler)
        after = d.create_sandbox()
        assert d.exec(after["id"], cmd="echo back")["stdout"] == "back\n"
        assert d.exec(before["id"], cmd="echo still")["stdout"] == "still\n"
        d.restart()  # and the database reopens cleanly
        ids = {sb["id"] for sb in d.request("GET", "/v1/sandboxes").json()["items"]}
        assert {before["id"], after["id"]} <= ids
        assert integrity(small_state) == "ok"
    finally:
        d.stop()
