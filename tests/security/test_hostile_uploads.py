"""Tar uploads crafted to escape (beyond tests/e2e/test_files_archive.py,
which covers ../ members, absolute paths and symlink-then-file): a hard link
to a host file then data through it, device nodes, a huge sparse file.
Judged on the host (canary content and inode, device nodes in the upper
layer, blocks used); controls: GNU tar run unconfined on the host with the
same archive does escape, and the same checks see it."""
import io
import os
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from battery import api_daemon_fixture, control, judge
from test_escapes import device_nodes

d = api_daemon_fixture()


@pytest.fixture
def canary():
    top = tempfile.mkdtemp(prefix="cb-upcanary-")
    path = os.path.join(top, "canary")
    with open(path, "w") as f:
        f.write("canary")
    yield path
    shutil.rmtree(top, ignore_errors=True)


def upload(d, sid, where, data):
    return d.request("PUT", f"/v1/sandboxes/{sid}/archive?path={where}", raw=data,
                     headers={"Content-Type": "application/x-tar"}, timeout=120)


def hardlink_tar(target):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        ln = tarfile.TarInfo("hl")
        ln.type = tarfile.LNKTYPE
        ln.linkname = target
        tf.addfile(ln)
        data = b"PWNED-HARDLINK"
        f = tarfile.TarInfo("hl")
        f.size = len(data)
        tf.addfile(f, io.BytesIO(data))
    return buf.getvalue()


def device_tar():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind, major, minor in (("mem", tarfile.CHRTYPE, 1, 1),
                                         ("sda", tarfile.BLKTYPE, 8, 0)):
            ti = tarfile.TarInfo(name)
            ti.type, ti.devmajor, ti.devminor, ti.mode = kind, major, minor, 0o666
            tf.addfile(ti)
    return buf.getvalue()


def canary_hit(canary, ino):
    return open(canary).read() != "canary" or os.stat(canary).st_nlink != 1 or \
        os.stat(canary).st_ino != ino


def upper(d, sid):
    """The sandbox's file tree as the host sees it (/proc/<init>/root),
    found by a marker file: the upper layer itself is mounted only inside
    the sandbox's mount namespace, and the API does not tell host pids."""
    import uuid
    mark = ".upper-" + uuid.uuid4().hex
    d.exec(sid, cmd=f": > /workspace/{mark}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        root = f"/proc/{pid}/root"
        try:
            if os.path.exists(os.path.join(root, "workspace", mark)):
                return root
        except OSError:
            continue
    raise AssertionError("no sandbox root with the marker")


def test_hardlink_to_host_file(d, canary, tmp_path):
    sid = d.create_sandbox()["id"]
    ino = os.stat(canary).st_ino
    for target in (canary, "../../../../../../.." + canary, "/etc/hostname"):
        upload(d, sid, "/workspace/hl", hardlink_tar(target))
        assert d.proc.poll() is None
        assert not judge("tar-hardlink", canary_hit(canary, ino))
    d.delete_sandbox(sid)
    # Control: GNU tar unconfined (-P keeps the absolute link name,
    # --overwrite writes into the existing file) escapes.
    arc = tmp_path / "hl.tar"
    arc.write_bytes(hardlink_tar(canary))
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "--overwrite", "-xPf", str(arc), "-C", str(out)], capture_output=True)
    assert control("tar-hardlink", canary_hit(canary, ino))


def test_device_nodes_in_tar(d, tmp_path):
    sid = d.create_sandbox()["id"]
    r = upload(d, sid, "/workspace/dev", device_tar())
    assert r.status < 500, r
    assert not judge("tar-devices", bool(device_nodes(upper(d, sid))))
    d.delete_sandbox(sid)
    arc = tmp_path / "dev.tar"
    arc.write_bytes(device_tar())
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(arc), "-C", str(out)], capture_output=True)
    assert control("tar-devices", bool(device_nodes(str(out))))


def test_huge_sparse_file(d, tmp_path):
    """4 GiB apparent size, a few KiB of data: the upload stays within the
    sandbox's 1 GiB disk limit (refused, or stored sparse) and the daemon
    lives."""
    src = tmp_path / "sparse"
    with open(src, "wb") as f:
        f.truncate(4 << 30)
        f.seek(2 << 30)
        f.write(b"middle")
    arc = tmp_path / "sparse.tar"
    subprocess.run(["tar", "-cSf", str(arc), "-C", str(tmp_path), "sparse"], check=True)
    assert os.path.getsize(arc) < 1 << 20
    sid = d.create_sandbox(disk_mb=1024)["id"]
    r = upload(d, sid, "/workspace/sp", arc.read_bytes())
    assert d.proc.poll() is None
    assert r.status < 500 or r.status == 507, r
    used = 0
    tree = os.path.join(upper(d, sid), "workspace")
    dev = os.lstat(tree).st_dev
    for root, dirs, files in os.walk(tree):
        dirs[:] = [n for n in dirs if os.lstat(os.path.join(root, n)).st_dev == dev]
        for n in files:
            used += os.lstat(os.path.join(root, n)).st_blocks * 512
    assert not judge("tar-sparse", used > (1024 + 64) << 20), used
    assert d.request("GET", "/healthz").status == 200
    d.delete_sandbox(sid)
