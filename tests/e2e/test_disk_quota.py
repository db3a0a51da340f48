"""Disk limits: a sandbox that fills its disk gets ENOSPC inside; the daemon
and a neighbour are unaffected; usage reports it; destroy leaves no mount
and no loop device.

Judged on the host: mountinfo, loop devices and the state dir, not only what
the sandbox prints. A sandbox's image is mounted in its own mount namespace
only (src/lib/quota.h), so the host's mountinfo must never show it.
"""
import glob
import os
import time

import pytest

from cellboxd import Daemon


@pytest.fixture(scope="module")
def d():
    # No pool: these sandboxes ask for a non-default disk size anyway.
    dm = Daemon(extra_args=["--pool-size", "0"])
    dm.start()
    info = dm.request("GET", "/v1/info").json()
    if not info["disk_quota"]["available"]:
        dm.stop()
        pytest.skip("disk quota unavailable here: %s" % info["disk_quota"].get("reason"))
    yield dm
    dm.stop()


def kind(d):
    """How limits are enforced here: "project" (XFS project quotas on the
    shared volume) or "image" (an ext4 image per sandbox)."""
    return d.request("GET", "/v1/info").json()["disk_quota"]["kind"]


def on_quota_volume(d, sid):
    """The sandbox's upper layer is on the XFS volume mounted with prjquota."""
    volume = os.path.join(d.state_dir, "volume")
    upper = os.path.join(volume, sid, "upper")
    with open("/proc/self/mountinfo") as f:
        line = [l for l in f if l.split()[4] == volume]
    return (bool(line) and " xfs " in line[-1] and "prjquota" in line[-1]
            and os.stat(upper).st_dev == os.stat(volume).st_dev)


def mounts_of(path):
    with open("/proc/self/mountinfo") as f:
        return [l for l in f if path in l]


def loop_backed(path):
    """Loop devices whose backing file is under path."""
    found = []
    for f in glob.glob("/sys/block/loop*/loop/backing_file"):
        try:
            with open(f) as fh:
                if fh.read().startswith(path + "/"):
                    found.append(f)
        except OSError:
            pass
    return found


def wait_loop_released(path, timeout=5.0):
    """The loop device goes when the sandbox's mount namespace dies, a
    moment after its init is killed."""
    deadline = time.time() + timeout
    while loop_backed(path) and time.time() < deadline:
        time.sleep(0.02)
    return loop_backed(path) == []


def wait_gone(path, timeout=10.0):
    """A delete answers once the sandbox's processes are dead; its files
    may be removed in the background just after."""
    deadline = time.time() + timeout
    while os.path.exists(path) and time.time() < deadline:
        time.sleep(0.02)
    return not os.path.exists(path)


def run(d, sid, cmd):
    return d.exec(sid, cmd=cmd, timeout=60)


def test_fill_gives_enospc_inside_only(d):
    a = d.create_sandbox(name="filler", disk_mb=32)
    b = d.create_sandbox(name="neighbour", disk_mb=32)
    adir = os.path.join(d.state_dir, "sandboxes", a["id"])
    if kind(d) == "project":
        assert on_quota_volume(d, a["id"]), "not on the quota volume: limit would not be enforced"
    else:
        assert loop_backed(adir), "no disk of its own: limit would not be enforced"
    # ... and the host's mount table does not grow with each sandbox.
    assert mounts_of(adir) == []
    r = run(d, a["id"], "dd if=/dev/zero of=/workspace/big bs=1M count=64")
    assert r["exit_code"] != 0, r
    assert "No space left on device" in r["stderr"], r
    # Only its own disk is full: the upper layer as the host sees it holds
    # at most the limit.
    r = run(d, a["id"], "stat -c %s /workspace/big")
    written = int(r["stdout"])
    assert 16 << 20 <= written <= 32 << 20, written
    # Also for root (no reserved blocks to fall back on).
    r = d.exec(a["id"], cmd="dd if=/dev/zero of=/root/more bs=64k count=64", user="root")
    assert r["exit_code"] != 0 and "No space" in r["stderr"], r
    # The neighbour and the daemon do not notice.
    r = run(d, b["id"], "dd if=/dev/zero of=/workspace/f bs=1M count=8 && sync && echo ok")
    assert r["exit_code"] == 0 and r["stdout"].strip().endswith("ok"), r
    assert d.request("GET", "/healthz").status == 200
    # Usage reports the filled disk.
    body = d.request("GET", "/v1/sandboxes/" + a["id"]).json()
    if "usage" in body:
        assert body["usage"]["disk_bytes"] >= 16 << 20, body["usage"]
    # Freeing space makes it writable again.
    r = run(d, a["id"], "rm /workspace/big && echo y > /workspace/small && cat /workspace/small")
    assert r["exit_code"] == 0 and r["stdout"].strip() == "y", r
    for sb in (a, b):
        d.delete_sandbox(sb["id"])
    assert mounts_of(adir) == []
    assert wait_gone(adir)
    assert wait_loop_released(adir)


def test_disk_survives_stop_start(d):
    sb = d.create_sandbox(disk_mb=16)
    run(d, sb["id"], "echo kept > /workspace/k")
    assert d.request("POST", "/v1/sandboxes/%s/stop" % sb["id"]).status == 200
    assert d.request("POST", "/v1/sandboxes/%s/start" % sb["id"]).status == 200
    r = run(d, sb["id"], "cat /workspace/k; dd if=/dev/zero of=/workspace/z bs=1M count=32")
    assert r["stdout"].startswith("kept") and "No space left" in r["stderr"], r
    d.delete_sandbox(sb["id"])
    sdir = os.path.join(d.state_dir, "sandboxes", sb["id"])
    assert mounts_of(sdir) == []
    assert wait_loop_released(sdir)


def test_images_are_sparse_copies_of_one_golden_image(d):
    if kind(d) != "image":
        pytest.skip("disk limits here are XFS project quotas, not images")
    a = d.create_sandbox(disk_mb=48)
    b = d.create_sandbox(disk_mb=48)
    golden = os.path.join(d.state_dir, "images", "golden-48.img")
    assert os.path.isfile(golden)
    for sb in (a, b):
        img = os.path.join(d.state_dir, "sandboxes", sb["id"], "disk.img")
        st = os.stat(img)
        assert st.st_size == 48 << 20
        assert st.st_blocks * 512 < 8 << 20, st.st_blocks  # sparse
    # Each is its own file system: writing in one leaves the other alone.
    run(d, a["id"], "echo only-a > /workspace/f")
    r = run(d, b["id"], "cat /workspace/f")
    assert r["exit_code"] != 0, r
    for sb in (a, b):
        d.delete_sandbox(sb["id"])


def test_disk_limit_raised_live_with_project_quotas(d):
    if kind(d) != "project":
        pytest.skip("disk limits here are images: their size is fixed at create")
    sb = d.create_sandbox(disk_mb=16)
    rr = run(d, sb["id"], "dd if=/dev/zero of=/workspace/z bs=1M count=24")
    assert "No space left" in rr["stderr"], rr
    r = d.request("PATCH", "/v1/sandboxes/" + sb["id"], {"limits": {"disk_mb": 64}})
    assert r.status == 200, r
    assert d.request("GET", "/v1/sandboxes/" + sb["id"]).json()["limits"]["disk_mb"] == 64
    rr = run(d, sb["id"], "rm -f /workspace/z; dd if=/dev/zero of=/workspace/z bs=1M count=40 "
                          "&& echo ok")
    assert rr["exit_code"] == 0 and rr["stdout"].strip().endswith("ok"), rr
    d.delete_sandbox(sb["id"])


def test_disk_limit_fixed_after_create(d):
    if kind(d) != "image":
        pytest.skip("disk limits here are XFS project quotas: disk_mb changes live")
    sb = d.create_sandbox(disk_mb=16)
    r = d.request("PATCH", "/v1/sandboxes/" + sb["id"], {"limits": {"disk_mb": 64}})
    # An image's size is fixed: refused, and the old limit still holds.
    assert r.status == 409, r
    # ... and the record still shows the size that is enforced.
    assert d.request("GET", "/v1/sandboxes/" + sb["id"]).json()["limits"]["disk_mb"] == 16
    rr = run(d, sb["id"], "dd if=/dev/zero of=/workspace/z bs=1M count=40")
    assert "No space left" in rr["stderr"], rr
    d.delete_sandbox(sb["id"])


def test_durable_disks_option():
    """Sandbox disks skip syncs and cache flushes by default (info says
    durable: false; operations.md); --durable-disks (or durable_disks in
    the config file) keeps them: the image's ext4 is then mounted with
    barriers, and the sandbox's overlay is not volatile."""
    dm = Daemon(extra_args=["--pool-size", "0", "--durable-disks"])
    dm.start()
    try:
        info = dm.request("GET", "/v1/info").json()
        if not info["disk_quota"]["available"]:
            pytest.skip("disk quota unavailable here: %s" % info["disk_quota"].get("reason"))
        assert info["disk_quota"]["durable"] is True
        sid = dm.create_sandbox()["id"]
        r = dm.exec(sid, cmd="grep -c volatile /proc/self/mountinfo; echo kept > /workspace/f && "
                             "sync /workspace/f && cat /workspace/f")
        assert r["stdout"] == "0\nkept\n", r
        dm.delete_sandbox(sid)
    finally:
        dm.stop()


def test_disks_are_not_durable_by_default(d):
    assert d.request("GET", "/v1/info").json()["disk_quota"]["durable"] is False
    sid = d.create_sandbox()["id"]
    r = run(d, sid, "grep -Ec ' / / .*(fsync=)?volatile' /proc/self/mountinfo")
    assert r["stdout"] == "1\n", r
    d.delete_sandbox(sid)
