"""Tar upload/download (PUT/GET /archive) and file watching (GET /files/watch)
through the real daemon.

Skipped (by the sandbox_works fixture) when the runtime cannot create a
sandbox on this host."""
import hashlib
import io
import json
import os
import queue
import shutil
import socket
import tarfile
import tempfile
import threading
import time

import pytest


def sbpath(sb, rest=""):
    return "/v1/sandboxes/%s%s" % (sb["id"], rest)


def add_file(tf, name, data, mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    ti.mtime = int(time.time())
    tf.addfile(ti, io.BytesIO(data))


def add_dir(tf, name):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    tf.addfile(ti)


def add_symlink(tf, name, target):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.SYMTYPE
    ti.linkname = target
    tf.addfile(ti)


BIG = os.urandom(5 * 1024 * 1024)
TREE = {
    "top.txt": b"top level\n",
    "a/b/c/deep.txt": b"deep inside\n",
    "a/big.bin": BIG,
    "a/empty": b"",
}


def make_tar(mode="w"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        add_dir(tf, "a")
        add_dir(tf, "a/b")
        add_dir(tf, "a/b/c")
        for name, data in TREE.items():
            add_file(tf, name, data)
        add_symlink(tf, "a/link", "b/c/deep.txt")
    return buf.getvalue()


def put_archive(daemon, sb, path, data, **kw):
    return daemon.request("PUT", sbpath(sb, "/archive?path=" + path), raw=data,
                          headers={"Content-Type": "application/x-tar"}, **kw)


def test_upload_tar_tree(daemon, sandbox):
    r = put_archive(daemon, sandbox, "/workspace/up", make_tar())
    assert r.status == 201, r
    # 3 dirs + 4 files + 1 symlink
    assert r.json()["entries"] == 8
    # Read back through the files API...
    r = daemon.request("GET", sbpath(sandbox, "/files?path=/workspace/up/a/big.bin"))
    assert r.status == 200 and r.body == BIG
    r = daemon.request("GET", sbpath(sandbox, "/files?path=/workspace/up/a/b/c/deep.txt"))
    assert r.body == b"deep inside\n"
    st = daemon.request("GET", sbpath(sandbox, "/files/stat?path=/workspace/up/a/link")).json()
    assert st["type"] == "symlink" and st["link_target"] == "b/c/deep.txt"
    # ...and from inside the sandbox, as its processes see it.
    sid = sandbox["id"]
    out = daemon.exec(sid, cmd="sha256sum /workspace/up/a/big.bin")["stdout"]
    assert out.split()[0] == hashlib.sha256(BIG).hexdigest()
    assert daemon.exec(sid, cmd="cat /workspace/up/a/link")["stdout"] == "deep inside\n"
    assert daemon.exec(sid, cmd="cat /workspace/up/top.txt")["stdout"] == "top level\n"
    owners = daemon.exec(sid, cmd="stat -c %u /workspace/up /workspace/up/a /workspace/up/a/b/c/deep.txt "
                                  "/workspace/up/a/big.bin")["stdout"].split()
    assert owners == ["1000"] * 4
    assert daemon.exec(sid, cmd="stat -c %s /workspace/up/a/empty")["stdout"].strip() == "0"


def test_upload_gzip_and_download(daemon, sandbox):
    r = put_archive(daemon, sandbox, "/workspace/gz", make_tar("w:gz"))
    assert r.status == 201, r
    r = daemon.request("GET", sbpath(sandbox, "/archive?path=/workspace/gz"))
    assert r.status == 200, r
    assert r.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(r.body), mode="r:") as tf:
        members = {m.name.lstrip("./").rstrip("/"): m for m in tf.getmembers()}
        files = {n: tf.extractfile(m).read() for n, m in members.items() if m.isfile()}
    # Names may be relative to the directory or carry its name: accept both.
    prefix = "gz/" if any(n.startswith("gz/") for n in files) else ""
    assert files == {prefix + n: d for n, d in TREE.items()}
    link = members[prefix + "a/link"]
    assert link.issym() and link.linkname == "b/c/deep.txt"
    assert members[prefix + "a/b/c"].isdir()
    # Ids are stored as the sandbox sees them, never host ids.
    assert {m.uid for m in members.values()} == {1000}


def test_download_missing_is_404(daemon, sandbox):
    r = daemon.request("GET", sbpath(sandbox, "/archive?path=/workspace/nope"))
    assert r.status == 404, r
    assert r.json()["error"]["code"] == "not_found"


@pytest.fixture
def canary():
    d = tempfile.mkdtemp(prefix="cb-canary-")
    with open(os.path.join(d, "keep.txt"), "w") as f:
        f.write("canary")
    yield d
    shutil.rmtree(d)


def canary_intact(d):
    return sorted(os.listdir(d)) == ["keep.txt"] and open(os.path.join(d, "keep.txt")).read() == "canary"


def hostile_tars(canary_dir):
    def tar(build):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            build(tf)
        return buf.getvalue()

    yield "dotdot", tar(lambda tf: add_file(tf, "../escape", b"x"))
    yield "deep-dotdot", tar(lambda tf: add_file(tf, "a/../../../../../../../.." + canary_dir + "/dd", b"x"))

    def through_link(target):
        def build(tf):
            add_symlink(tf, "ln", target)
            add_file(tf, "ln/evil", b"pwned")
        return build
    yield "abs-symlink", tar(through_link(canary_dir))
    yield "rel-symlink", tar(through_link("../../../../../../../../.." + canary_dir))


def test_hostile_tars_refused(daemon, sandbox, canary):
    sid = sandbox["id"]
    for name, data in hostile_tars(canary):
        r = put_archive(daemon, sandbox, "/workspace/h/" + name, data)
        assert r.status == 400, (name, r)
        assert r.json()["error"]["code"] == "bad_request", (name, r)
        # What matters: nothing landed on the host.
        assert canary_intact(canary), name
    # Nor next to the target directory inside the sandbox.
    assert daemon.exec(sid, cmd="test -e /workspace/h/escape || test -e /workspace/escape; echo $?")["stdout"] == "1\n"


def test_absolute_member_stays_inside(daemon, sandbox, canary):
    """fsops keeps absolute member names inside the target directory (like
    GNU tar's default of stripping the leading '/'), rather than refusing."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        add_file(tf, canary + "/abs", b"inside")
    r = put_archive(daemon, sandbox, "/workspace/absdir", buf.getvalue())
    assert r.status in (201, 400), r
    assert canary_intact(canary)
    if r.status == 201:
        r = daemon.request("GET", sbpath(sandbox, "/files?path=/workspace/absdir" + canary + "/abs"))
        assert r.status == 200 and r.body == b"inside"


def test_garbage_body_is_400(daemon, sandbox):
    r = put_archive(daemon, sandbox, "/workspace/g", b"this is not a tar file at all" * 100)
    assert r.status == 400, r


def test_upload_limit(tmp_path):
    """A daemon with a small upload cap refuses bigger tars with 413."""
    from cellboxd import Daemon
    with Daemon(extra_args=["--max-upload", str(1024 * 1024)]) as d:
        r = d.request("POST", "/v1/sandboxes", {})
        if r.status != 201:
            pytest.skip("runtime cannot create sandboxes on this host")
        sb = r.json()
        try:
            # Declared body too large: refused up front, before any body is
            # read (so send only the headers and read the answer).
            s = socket.socket(socket.AF_UNIX)
            s.connect(d.socket_path)
            s.sendall(("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                       % (sbpath(sb, "/archive?path=/workspace/big"), 8 << 20)).encode())
            s.settimeout(10)
            head = s.recv(4096)
            s.close()
            assert head.startswith(b"HTTP/1.1 413"), head
            # Compressed body under the cap, expanding beyond it: 413 too.
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tf:
                add_file(tf, "zeros", b"\0" * (4 * 1024 * 1024))
            assert len(buf.getvalue()) < 1024 * 1024
            r = put_archive(d, sb, "/workspace/zeros", buf.getvalue())
            assert r.status == 413, r
            # The daemon still serves the connection pool fine afterwards.
            assert d.request("GET", sbpath(sb)).status == 200
        finally:
            d.delete_sandbox(sb["id"])


class Watch:
    """A watch stream read on a thread; events land in a queue."""

    def __init__(self, daemon, sb, path, recursive=True, accept="application/x-ndjson"):
        self.conn = daemon.connection()
        q = "/files/watch?path=%s%s" % (path, "&recursive=1" if recursive else "")
        self.conn.request("GET", sbpath(sb, q), headers={"Accept": accept})
        self.sock = self.conn.sock
        # Headers arrive once the watch is in place: events from here on count.
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.read()
        self.events = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for line in self.resp:
                line = line.strip()
                if line.startswith(b"data: "):
                    self.events.put(json.loads(line[6:]))
                elif line.startswith(b"{"):
                    self.events.put(json.loads(line))
        except Exception:
            pass
        self.events.put(None)

    def collect(self, until, timeout=10):
        got, deadline = [], time.time() + timeout
        while time.time() < deadline:
            try:
                ev = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if ev is None:
                break
            got.append(ev)
            if until(got):
                break
        return got

    def close(self):
        # Shut the socket down first: the reader thread holds the response's
        # buffer lock while blocked in recv, so a plain close would wait on it.
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(5)
        self.conn.close()


def first(events, type_, path):
    for i, e in enumerate(events):
        if e["type"] == type_ and e["path"] == path:
            return i
    return None


@pytest.mark.parametrize("accept", ["application/x-ndjson", "text/event-stream"])
def test_watch_create_modify_delete(daemon, sandbox, accept):
    sid = sandbox["id"]
    daemon.exec(sid, cmd="mkdir -p /workspace/w")
    w = Watch(daemon, sandbox, "/workspace/w", accept=accept)
    try:
        f = "/workspace/w/f.txt"
        daemon.exec(sid, cmd="echo a > %s; sleep 0.1; echo b >> %s; sleep 0.1; rm %s" % (f, f, f))
        ev = w.collect(lambda got: first(got, "delete", f) is not None)
        c, m, d = first(ev, "create", f), first(ev, "modify", f), first(ev, "delete", f)
        assert None not in (c, m, d), ev
        assert c < m < d, ev
        seqs = [e["seq"] for e in ev]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # Recursive: a new subdirectory is watched as soon as it appears.
        daemon.exec(sid, cmd="mkdir /workspace/w/sub; sleep 0.2; echo x > /workspace/w/sub/g")
        ev = w.collect(lambda got: first(got, "modify", "/workspace/w/sub/g") is not None
                       or first(got, "create", "/workspace/w/sub/g") is not None)
        assert first(ev, "create", "/workspace/w/sub") is not None, ev
        assert any(e["path"] == "/workspace/w/sub/g" for e in ev), ev
    finally:
        w.close()


def test_watch_errors_and_disconnect(daemon, sandbox):
    r = daemon.request("GET", sbpath(sandbox, "/files/watch?path=/workspace/none"))
    assert r.status == 404, r
    # Clients that come and go leave nothing behind in the daemon.
    daemon.exec(sandbox["id"], cmd="mkdir -p /workspace/w2")
    Watch(daemon, sandbox, "/workspace/w2").close()
    time.sleep(0.5)
    before = daemon.fd_count()
    for _ in range(5):
        Watch(daemon, sandbox, "/workspace/w2").close()
    time.sleep(0.5)
    assert daemon.fd_count() <= before + 1
    # And the sandbox still answers.
    assert daemon.exec(sandbox["id"], cmd="echo ok")["stdout"] == "ok\n"


def test_watch_ends_when_sandbox_stops(daemon, sandbox):
    sid = sandbox["id"]
    daemon.exec(sid, cmd="mkdir -p /workspace/w3")
    w = Watch(daemon, sandbox, "/workspace/w3")
    try:
        r = daemon.request("POST", sbpath(sandbox, "/stop"), {})
        assert r.status in (200, 202), r
        ev = w.collect(lambda got: False, timeout=10)
        assert ev and ev[-1]["type"] == "end", ev
    finally:
        w.close()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_aborted_transfers_leave_nothing(daemon, sandbox):
    """Clients that vanish mid-upload or mid-download: the pool jobs end (the
    extractor sees EOF, the archiver EPIPE), fds are released, and the
    daemon keeps serving."""
    sid = sandbox["id"]
    daemon.exec(sid, cmd="mkdir -p /workspace/src && head -c 50000000 /dev/urandom > /workspace/src/r.bin")
    before = daemon.fd_count()
    tar = make_tar()
    for _ in range(3):
        s = socket.socket(socket.AF_UNIX)
        s.connect(daemon.socket_path)
        s.sendall(("PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                   % (sbpath(sandbox, "/archive?path=/workspace/cut"), len(tar))).encode())
        s.sendall(tar[:len(tar) // 2])
        s.close()
        s = socket.socket(socket.AF_UNIX)
        s.connect(daemon.socket_path)
        s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
                   % sbpath(sandbox, "/archive?path=/workspace/src")).encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        s.close()
    deadline = time.time() + 10
    while time.time() < deadline and daemon.fd_count() > before:
        time.sleep(0.1)
    assert daemon.fd_count() <= before
    # More transfers than pool threads still complete: none is stuck.
    for i in range(6):
        assert put_archive(daemon, sandbox, "/workspace/again%d" % i, tar).status == 201


def test_slow_download_is_backpressured(daemon, sandbox):
    """A client that does not read holds the archiver back: the daemon does
    not buffer the archive in memory."""
    sid = sandbox["id"]
    daemon.exec(sid, cmd="mkdir -p /workspace/bigsrc && head -c 200000000 /dev/urandom > /workspace/bigsrc/r.bin")
    base = rss_kib(daemon.pid)
    s = socket.socket(socket.AF_UNIX)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(daemon.socket_path)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
               % sbpath(sandbox, "/archive?path=/workspace/bigsrc")).encode())
    s.recv(1024)
    time.sleep(2)
    grown = rss_kib(daemon.pid) - base
    assert grown < 64 * 1024, "daemon RSS grew by %d KiB with a stalled reader" % grown
    # Now read it all: the stream completes.
    total = 0
    s.settimeout(20)
    while True:
        b = s.recv(1 << 20)
        if not b:
            break
        total += len(b)
        if b.endswith(b"0\r\n\r\n"):
            break
    s.close()
    assert total > 200000000


def test_keepalive_and_chunked_upload(daemon, sandbox):
    """Two uploads on one connection (the tar's trailing padding, which the
    extractor may not read, is consumed), then a chunked upload."""
    conn = daemon.connection()
    try:
        for i in range(2):
            conn.request("PUT", sbpath(sandbox, "/archive?path=/workspace/ka%d" % i), body=make_tar())
            r = conn.getresponse()
            assert r.status == 201, r.read()
            r.read()
        def chunks():
            data = make_tar("w:gz")
            for off in range(0, len(data), 100000):
                yield data[off:off + 100000]
        conn.request("PUT", sbpath(sandbox, "/archive?path=/workspace/chunked"), body=chunks(),
                     encode_chunked=True)
        r = conn.getresponse()
        assert r.status == 201, r.read()
        assert json.loads(r.read())["entries"] == 8
    finally:
        conn.close()
    r = daemon.request("GET", sbpath(sandbox, "/files?path=/workspace/chunked/a/big.bin"))
    assert r.body == BIG


def test_deep_tree_walks_hold_one_fd_per_level():
    """Archive download, recursive listing and recursive delete of a
    200-deep tree hold one daemon descriptor per level, not two (each level
    also had a DIR stream of its own): they succeed with the daemon limited
    to 330 descriptors, ~50 of them its own. Short of descriptors, a walk
    fails with a clear error instead of answering 200 with the subtree it
    could not open left out."""
    import resource
    from cellboxd import Daemon
    d = Daemon(extra_args=["--pool-size", "0"])
    d.start()
    try:
        sid = d.create_sandbox()["id"]
        r = d.exec(sid, cmd="cd /workspace && python3 -c \"import os\n"
                            "for top in 'de':\n"
                            "    os.chdir('/workspace'); os.mkdir(top); os.chdir(top)\n"
                            "    for _ in range(200): os.mkdir('d'); os.chdir('d')\n"
                            "    open('leaf', 'w').write('x')\" && echo made")
        assert r["stdout"] == "made\n", r
        resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (330, 330))
        r = d.request("GET", "/v1/sandboxes/%s/archive?path=/workspace/d" % sid)
        assert r.status == 200, r.body[:300]
        names = tarfile.open(fileobj=io.BytesIO(r.body)).getnames()
        assert any(n.endswith("/leaf") and n.count("/") >= 199 for n in names), names[-1:]
        r = d.request("GET", "/v1/sandboxes/%s/files/list?path=/workspace/d&depth=60" % sid)
        assert r.status == 200, r.body[:300]
        r = d.request("DELETE", "/v1/sandboxes/%s/files?path=/workspace/e&recursive=true" % sid)
        assert r.status in (200, 204), r.body[:300]
        r = d.exec(sid, cmd="test ! -e /workspace/e && echo gone")
        assert r["stdout"] == "gone\n", r
        resource.prlimit(d.pid, resource.RLIMIT_NOFILE, (150, 150))
        # the archive streams: its headers are out before the walk fails,
        # so the failure is a cut connection (no final chunk), never a
        # complete-looking shorter archive
        with pytest.raises(Exception):
            r = d.request("GET", "/v1/sandboxes/%s/archive?path=/workspace/d" % sid)
            tarfile.open(fileobj=io.BytesIO(r.body)).getnames()
        assert "failed mid-body" in d.log()
        assert d.request("GET", "/healthz").status == 200
    finally:
        d.stop()
