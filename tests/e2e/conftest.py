import glob
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cellboxd import Daemon  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="cellboxd e2e tests need root")
        for it in items:
            it.add_marker(skip)


@pytest.fixture(scope="module")
def daemon():
    """One daemon per test module (unix socket and TCP)."""
    d = Daemon(tcp=True)
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="module")
def sandbox_works(daemon):
    """Skip tests that need a running sandbox when the runtime cannot make one."""
    r = daemon.request("POST", "/v1/sandboxes", {})
    if r.status != 201:
        pytest.skip("runtime cannot create sandboxes on this host: %s" % r.body[:300])
    daemon.delete_sandbox(r.json()["id"])
    return True


@pytest.fixture
def sandbox(daemon, sandbox_works):
    sb = daemon.create_sandbox()
    yield sb
    daemon.delete_sandbox(sb["id"])


@pytest.fixture
def own_daemon():
    """A daemon of the test's own (to kill, restart or stop), skipped when
    the runtime cannot make sandboxes here; restarted for the final stop if
    the test left it dead."""
    d = Daemon()
    d.start()
    r = d.request("POST", "/v1/sandboxes", {})
    if r.status != 201:
        d.stop()
        pytest.skip("runtime cannot create sandboxes on this host: %s" % r.body[:200])
    d.delete_sandbox(r.json()["id"])
    yield d
    if d.proc.poll() is not None:
        d.start()
    d.stop()


# ---- empty sandbox cgroups left behind (a leak seen about once per CI run,
# never pinned down: docs of session 7). Reported, not failed: the summary
# names the first test after which each one was seen.

def _orphan_cgroups():
    """Ids of empty sandbox cgroups (memory hierarchy on v1, the unified one
    on v2) whose sandbox directory exists under no test daemon's state dir."""
    out = set()
    for p in glob.glob("/sys/fs/cgroup/memory/cellbox/sb_*") + glob.glob("/sys/fs/cgroup/cellbox/sb_*"):
        sid = os.path.basename(p)
        try:
            with open(os.path.join(p, "cgroup.procs")) as f:
                if f.read().strip():
                    continue
        except OSError:
            continue
        if not glob.glob("/tmp/cbd-e2e-*/state/sandboxes/" + sid):
            out.add(sid)
    return out


_cgroups_at_start = set()
_cgroups_first_seen = {}


def pytest_sessionstart(session):
    _cgroups_at_start.update(_orphan_cgroups())


def pytest_runtest_logfinish(nodeid, location):
    for sid in _orphan_cgroups() - _cgroups_at_start:
        _cgroups_first_seen.setdefault(sid, nodeid)


def pytest_terminal_summary(terminalreporter):
    left = _orphan_cgroups()
    leaked = sorted((t, sid) for sid, t in _cgroups_first_seen.items() if sid in left)
    terminalreporter.write_line("empty sandbox cgroups left behind: %d" % len(leaked))
    for test, sid in leaked:
        terminalreporter.write_line("  %s (first seen after %s)" % (sid, test))
