"""Repository-wide pytest hooks (tests/e2e, tests/security, sdk/python/tests
run in one session in CI)."""
import glob
import os


# ---- empty sandbox cgroups left behind (a leak seen about once per CI run,
# never pinned down). Reported, not failed: the summary names the first test
# after which each one was seen, whichever suite it belongs to.

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
