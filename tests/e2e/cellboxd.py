"""Start a real cellboxd for tests and talk to it (standard library only).

Other suites (CLI, SDKs, security) import this module:

    from cellboxd import Daemon
    with Daemon(tcp=True) as d:
        status, body = d.request("POST", "/v1/sandboxes", {"name": "x"})
        sb = d.create_sandbox()
        r = d.exec(sb["id"], cmd="echo hi")

A Daemon runs build/cellboxd (or $CB_BUILD/cellboxd) with a temporary
--state-dir and --socket, optionally --listen 127.0.0.1:<free port>, waits
for /healthz, and at stop() deletes every sandbox it can still see, stops the
daemon, lazily unmounts <state>/volume if it is mounted, and removes the
temporary directory.
"""
import http.client
import urllib.parse
import json
import errno
import os
import signal
import socket
import subprocess
import tempfile
import re
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CB_BUILD", os.path.join(ROOT, "build"))


def remove_tree(path):
    """rm -rf that survives trees deeper than Python's recursion limit
    (shutil.rmtree recurses once per level; tests leave 3,000-deep chains
    when the code under test fails to remove them)."""
    subprocess.run(["rm", "-rf", "--one-file-system", path], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def reap_leftovers(state_dir):
    """Remove what a daemon could not: sandboxes (warm-pool members included)
    of a daemon that crashed or was killed and never restarted. Kills every
    cellbox-init whose mounts live under state_dir, removes their cgroups,
    unmounts their disk images and the quota volume. Sandboxes outliving
    their daemon is by design; in tests they are litter."""
    state_dir = os.path.realpath(state_dir)
    pat = re.compile(re.escape(state_dir) + r"/sandboxes/([a-z0-9_]+)/")
    ids = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % p) as f:
                if f.read().strip() != "cellbox-init":
                    continue
            with open("/proc/%s/mountinfo" % p) as f:
                m = pat.search(f.read())
            if m:
                os.kill(int(p), signal.SIGKILL)
                ids.add(m.group(1))
        except OSError:
            continue
    sandboxes = os.path.join(state_dir, "sandboxes")
    if os.path.isdir(sandboxes):
        ids.update(os.listdir(sandboxes))
    if ids:
        time.sleep(0.2)
    for sid in ids:
        for h in os.listdir("/sys/fs/cgroup"):
            d = "/sys/fs/cgroup/%s/cellbox/%s" % (h, sid)
            for root, _, _ in os.walk(d, topdown=False):
                # EBUSY while killed processes are still exiting (a sandbox
                # of hundreds holding many files takes seconds): wait.
                deadline = time.monotonic() + 30
                while True:
                    try:
                        os.rmdir(root)
                    except OSError as e:
                        if e.errno == errno.EBUSY and time.monotonic() < deadline:
                            time.sleep(0.1)
                            continue
                    break
        # Images mounted in the host namespace (the fallback, and older
        # layouts). Those mounted in a sandbox's own namespace need nothing:
        # killing its init ends the mount and frees the loop device.
        disk = os.path.join(sandboxes, sid, "disk")
        if os.path.ismount(disk):
            subprocess.run(["umount", "-l", disk], check=False)
    vol = os.path.join(state_dir, "volume")
    if os.path.ismount(vol):
        subprocess.run(["umount", "-l", vol], check=False)


def named_cgroup_hierarchies(prefix):
    """Names of the named v1 cgroup hierarchies the kernel holds (every
    process lists each in /proc/self/cgroup) that start with prefix."""
    names = []
    with open("/proc/self/cgroup") as f:
        for line in f:
            m = re.match(r"\d+:name=([^:]+):", line)
            if m and m.group(1).startswith(prefix):
                names.append(m.group(1))
    return names


def mounts_under_state(state_dir):
    """The host's mounts that mention state_dir, but for the XFS quota
    volume (state_dir/volume, src/lib/quota.h), which stays mounted by
    design on hosts with project quotas: sandboxes live on it."""
    volume = os.path.join(state_dir, "volume")
    with open("/proc/self/mountinfo") as f:
        return [l for l in f if state_dir in l and l.split()[4] != volume]


def drop_named_cgroup_hierarchy(name, tries=5):
    """Make the kernel destroy the named v1 hierarchy `name` (only ever one
    a test made for itself). Unmounting it destroys it only if it has no
    child cgroup at that moment, and a child just removed still counts
    until the kernel has released it, so an umount right after the rmdir
    leaves the hierarchy behind for good: on every process's
    /proc/<pid>/cgroup and in every css_set the kernel makes after, until
    reboot. Mount it again once the child is gone and unmount it: True once
    it is no longer listed."""
    def gone(wait):
        deadline = time.monotonic() + wait
        while name in named_cgroup_hierarchies(name):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    mnt = tempfile.mkdtemp(prefix="cbcg-")
    try:
        if gone(0):
            return True
        for _ in range(tries):
            r = subprocess.run(["mount", "-t", "cgroup", "-o", "none,name=" + name, "cgroup",
                                mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=10, check=False)
            if r.returncode != 0:
                continue
            try:
                for root, _, _ in os.walk(mnt, topdown=False):
                    if root != mnt:
                        try:
                            os.rmdir(root)
                        except OSError:
                            pass
            finally:
                subprocess.run(["umount", mnt], check=False)
            # The kernel destroys an unmounted hierarchy in its workers, a
            # little after the umount (mounting the name again meanwhile
            # waits for that, then makes a new one).
            if gone(5):
                return True
        return False
    finally:
        os.rmdir(mnt)


def tree_digest(top):
    """Hash of every name, type, owner, mode and file content under top,
    read by the host without following symlinks."""
    import hashlib
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(dirs + files):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(("%s %o %d %d\n" % (os.path.relpath(p, top), st.st_mode,
                                         st.st_uid, st.st_gid)).encode())
            if os.path.islink(p):
                h.update(os.readlink(p).encode())
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket (the admin interface)."""

    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    """status, headers (dict, lower-case names), raw body, and .json()."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


class Daemon:
    def __init__(self, tcp=False, extra_args=(), binary=None, state_dir=None):
        self.binary = binary or os.path.join(BUILD, "cellboxd")
        self.tmp = tempfile.mkdtemp(prefix="cbd-e2e-")
        # mkdtemp makes the directory 0700; the sandboxes' (unprivileged)
        # root must be able to traverse it to reach its overlay layers.
        os.chmod(self.tmp, 0o755)
        self.state_dir = state_dir or os.path.join(self.tmp, "state")
        self.socket_path = os.path.join(self.tmp, "cellbox.sock")
        self.port = free_port() if tcp else None
        self.extra_args = list(extra_args)
        self.proc = None
        self.log_path = os.path.join(self.tmp, "daemon.log")

    # ---- life cycle -------------------------------------------------
    def args(self):
        a = [self.binary, "--state-dir", self.state_dir, "--socket", self.socket_path]
        if self.port:
            a += ["--listen", "127.0.0.1:%d" % self.port]
        return a + self.extra_args

    def start(self, timeout=20):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=log)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("cellboxd exited: %s" % self.log())
            try:
                if self.request("GET", "/healthz").status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("cellboxd did not answer /healthz: %s" % self.log())

    def kill9(self):
        """Crash the daemon (SIGKILL); sandboxes keep running."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self):
        """Graceful stop (SIGTERM); sandboxes keep running. Waits for the
        exit (up to 60 s: under ASan, LeakSanitizer scans the heap at exit)
        so a leak report is written; SIGKILL only past that."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self):
        self.terminate()
        return self.start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                for sb in self.request("GET", "/v1/sandboxes?limit=1000").json()["items"]:
                    self.request("DELETE", "/v1/sandboxes/" + sb["id"])
            except Exception:
                pass
        self.terminate()
        reap_leftovers(self.state_dir)
        remove_tree(self.tmp)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    @property
    def pid(self):
        return self.proc.pid

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    # ---- requests ---------------------------------------------------
    def connection(self, tcp=False, timeout=60):
        if tcp:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        return UnixHTTPConnection(self.socket_path, timeout=timeout)

    def request(self, method, path, body=None, headers=None, key=None, tcp=None,
                raw=None, timeout=60):
        """One request on a fresh connection. body: dict/list → JSON; raw: bytes."""
        use_tcp = bool(key) if tcp is None else tcp
        conn = self.connection(tcp=use_tcp, timeout=timeout)
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if key:
            h["Authorization"] = "Bearer " + key
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            payload = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, payload)
        finally:
            conn.close()

    def stream(self, method, path, body=None, accept="application/x-ndjson", key=None):
        """Yield decoded events of an NDJSON (or SSE) stream."""
        conn = self.connection(tcp=bool(key))
        h = {"Accept": accept}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if key:
            h["Authorization"] = "Bearer " + key
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        if r.status != 200:
            raise AssertionError("stream %s -> %d %r" % (path, r.status, r.read()))
        try:
            for line in r:
                line = line.strip()
                if not line:
                    continue
                if line.startswith(b"data: "):
                    yield json.loads(line[6:])
                elif line.startswith(b"{"):
                    yield json.loads(line)
        finally:
            conn.close()

    # ---- helpers ------------------------------------------------------
    def create_sandbox(self, key=None, **spec):
        r = self.request("POST", "/v1/sandboxes", spec, key=key)
        assert r.status == 201, r
        return r.json()

    def delete_sandbox(self, sid, key=None):
        return self.request("DELETE", "/v1/sandboxes/" + sid, key=key)

    def exec(self, sid, key=None, **body):
        r = self.request("POST", "/v1/sandboxes/%s/exec" % sid, body, key=key)
        assert r.status == 200, r
        return r.json()

    def create_key(self, tenant, **quota):
        body = {"tenant": tenant}
        body.update(quota)
        r = self.request("POST", "/v1/admin/keys", body)
        assert r.status == 201, r
        return r.json()["key"]


# ---- preview URLs: fetch through the daemon's TCP listener ---------------

def fetch(daemon, url, headers=None):
    """GET url through the daemon's TCP listener, keeping the URL's Host
    header (so a preview host like 8123-sb_x.localhost needs no DNS)."""
    u = urllib.parse.urlsplit(url if "://" in url else "http://127.0.0.1:%d%s" % (daemon.port, url))
    conn = http.client.HTTPConnection("127.0.0.1", u.port or daemon.port, timeout=10)
    try:
        h = {"Host": u.netloc}
        h.update(headers or {})
        conn.request("GET", (u.path or "/") + ("?" + u.query if u.query else ""), headers=h)
        r = conn.getresponse()
        body = r.read()
        fetch.last_headers = {k.lower(): v for k, v in r.getheaders()}
        return r.status, body
    finally:
        conn.close()


def browse(daemon, url):
    """GET as a browser would: follow one redirect, sending the cookie it set."""
    status, body = fetch(daemon, url)
    h = fetch.last_headers
    if status in (301, 302, 303, 307) and "location" in h:
        cookie = h.get("set-cookie", "").split(";", 1)[0]
        loc = urllib.parse.urljoin(url if "://" in url else "http://127.0.0.1:%d%s" % (daemon.port, url),
                                   h["location"])
        status, body = fetch(daemon, loc, {"Cookie": cookie} if cookie else None)
    return status, body


def fetch_eventually(daemon, url, headers=None, timeout=15):
    """fetch until 200 (the server inside may still be starting)."""
    deadline = time.time() + timeout
    while True:
        status, body = fetch(daemon, url, headers)
        if status == 200 or time.time() > deadline:
            return status, body
        time.sleep(0.3)
