"""Root inside a sandbox owns the template's files (idmapped lower layer).

The `host` template's skeleton belongs to host root. Each sandbox sees it
through a read-only mount idmapped to the sandbox's user namespace, so its
root can edit /etc, make /opt/x and chown what it copied up, while the
default user cannot, the skeleton on the host never changes and another
sandbox still sees the pristine files. Driven through the public API; the
host-side evidence (a hash of the skeleton) is read by the test itself.

Skipped (by the sandbox_works fixture) when the runtime cannot create a
sandbox on this host."""
import os
import time

import pytest

from cellboxd import tree_digest

NEW_USER = "builder:x:1234:1234::/home/builder:/bin/sh"


def skeleton(daemon):
    return os.path.join(daemon.state_dir, "templates", "host", "rootfs")


def sh(daemon, sid, cmd, user=None):
    body = {"cmd": cmd}
    if user:
        body["user"] = user
    return daemon.exec(sid, **body)


@pytest.fixture
def two(daemon, sandbox_works):
    a = daemon.create_sandbox()
    b = daemon.create_sandbox()
    yield a["id"], b["id"]
    daemon.delete_sandbox(a["id"])
    daemon.delete_sandbox(b["id"])


def test_root_edits_etc_and_the_template_stays_pristine(daemon, two):
    a, b = two
    before = tree_digest(skeleton(daemon))
    r = sh(daemon, a, "set -e; echo '%s' >> /etc/passwd; "
                      "echo '10.9.8.7 db.internal' >> /etc/hosts; "
                      "mkdir /opt/x; touch /opt/x/f; chown user:user /opt/x /opt/x/f; "
                      "stat -c '%%u %%g' /etc/passwd /opt/x" % NEW_USER, user="root")
    assert r["exit_code"] == 0, r
    assert r["stdout"].split("\n")[:2] == ["0 0", "1000 1000"], r
    r = sh(daemon, a, "grep -c '^builder:' /etc/passwd; getent hosts db.internal; "
                      "id -u builder; touch /opt/x/by_user && echo USER_OWNS_OPT_X")
    assert r["exit_code"] == 0, r
    out = r["stdout"].split("\n")
    assert out[0] == "1" and "10.9.8.7" in out[1] and out[2] == "1234", r
    assert "USER_OWNS_OPT_X" in r["stdout"]
    # The host's skeleton did not change, and the other sandbox sees it.
    assert tree_digest(skeleton(daemon)) == before
    r = sh(daemon, b, "grep -c '^builder:' /etc/passwd; grep -c db.internal /etc/hosts; "
                      "test -e /opt/x && echo LEAKED; stat -c %u /etc/passwd; true")
    assert r["stdout"].split("\n")[:3] == ["0", "0", "0"], r
    assert "LEAKED" not in r["stdout"]


def test_default_user_cannot_write_etc(daemon, sandbox):
    sid = sandbox["id"]
    r = sh(daemon, sid, "id -u; stat -c %u /etc/passwd /etc; "
                        "echo x >> /etc/passwd && echo WROTE_PASSWD; "
                        "mkdir /etc/u && echo MADE_DIR; mkdir /opt/y && echo MADE_OPT; "
                        "touch /usr/bin/z && echo WROTE_USR; true")
    assert r["stdout"].split("\n")[:3] == ["1000", "0", "0"], r
    for word in ("WROTE_PASSWD", "MADE_DIR", "MADE_OPT", "WROTE_USR"):
        assert word not in r["stdout"], r
    # Root cannot write the read-only host binds either.
    r = sh(daemon, sid, "touch /usr/bin/z && echo WROTE_USR; "
                        "echo x >> /etc/ssl/openssl.cnf && echo WROTE_SSL; true", user="root")
    assert "WROTE" not in r["stdout"], r


def test_root_edits_survive_stop_and_start(daemon, sandbox):
    sid = sandbox["id"]
    r = sh(daemon, sid, "echo '%s' >> /etc/passwd && mkdir -p /opt/keep" % NEW_USER, user="root")
    assert r["exit_code"] == 0, r
    assert daemon.request("POST", "/v1/sandboxes/%s/stop" % sid).status == 200
    assert daemon.request("POST", "/v1/sandboxes/%s/start" % sid).status == 200
    deadline = time.time() + 20
    while daemon.request("GET", "/v1/sandboxes/" + sid).json()["state"] != "running":
        assert time.time() < deadline
        time.sleep(0.1)
    r = sh(daemon, sid, "grep -c '^builder:' /etc/passwd; test -d /opt/keep && echo KEPT; "
                        "stat -c %u /etc/group")
    assert r["stdout"].split("\n")[:3] == ["1", "KEPT", "0"], r


def test_no_tmpfs_and_masks_cost_no_superblock(daemon, sandbox):
    """The mount table inside: /dev and /dev/shm are directories of the
    sandbox's root, and the masked directories are binds (no tmpfs)."""
    r = sh(daemon, sandbox["id"], "cat /proc/self/mountinfo; stat -c %a /dev/shm")
    lines = r["stdout"].strip().split("\n")
    assert lines[-1] == "1777", r
    types = {}
    for line in lines[:-1]:
        f = line.split()
        types.setdefault(f[2], f[f.index("-") + 1])
    assert "tmpfs" not in types.values(), lines
    mountpoints = {line.split()[4]: line.split()[f_idx(line)] for line in lines[:-1]}
    assert "/dev/shm" not in mountpoints and "/dev" not in mountpoints
    for masked in ("/proc/acpi", "/sys/firmware"):
        if masked in mountpoints:
            assert mountpoints[masked] != "tmpfs", lines


def f_idx(line):
    return line.split().index("-") + 1
