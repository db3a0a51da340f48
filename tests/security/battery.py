"""Shared helpers of the security battery (imported by name `battery`,
not `conftest`, because tests/e2e has a conftest.py of its own and pytest
may load either under that module name)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("CB_BUILD", os.path.join(ROOT, "build"))
CBRUN = os.path.join(BUILD, "tools", "cbrun")
INIT = os.path.join(BUILD, "cellbox-init")
UID_BASE = 1 << 30


# ---- figures of the battery (printed at the end of the run) ----

FIGURES = {"attempts": 0, "escapes": 0, "controls": 0, "controls_detected": 0}
ESCAPED = []


def judge(name, escaped):
    """Record one escape attempt judged by host evidence; escaped must be False."""
    FIGURES["attempts"] += 1
    if escaped:
        FIGURES["escapes"] += 1
        ESCAPED.append(name)
    return escaped


def control(name, detected):
    """Record one control run (weakened sandbox or unconfined host process):
    the same evidence check must see the escape there."""
    FIGURES["controls"] += 1
    if detected:
        FIGURES["controls_detected"] += 1
    return detected


def _fuzz_executions():
    total, targets = 0, 0
    d = os.path.join(ROOT, "build-fuzz")
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if name.startswith("fuzz_") and name.endswith(".log"):
            with open(os.path.join(d, name), errors="replace") as f:
                for line in f:
                    if "stat::number_of_executed_units:" in line:
                        total += int(line.split(":")[-1])
                        targets += 1
    return total, targets


def _sanitizer_findings():
    d = os.environ.get("CB_SAN_LOG_DIR")
    if not d or not os.path.isdir(d):
        return None
    return sum(1 for n in os.listdir(d) if os.path.getsize(os.path.join(d, n)) > 0)


def sandbox_pids(init):
    """Every host pid in init's pid namespace (init included)."""
    ns = os.readlink(f"/proc/{init}/ns/pid")
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.readlink(f"/proc/{p}/ns/pid") == ns:
                    pids.append(int(p))
            except OSError:
                pass
    return pids


def host_uid_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError("no Uid line")


def api_daemon_fixture():
    """A module-scoped pytest fixture: a real cellboxd (no warm pool, so the
    host evidence only shows what the test made) for suites that attack
    through the public API."""
    import pytest

    Daemon = _e2e_helpers().Daemon

    @pytest.fixture(scope="module")
    def d():
        if os.geteuid() != 0:
            pytest.skip("needs root")
        daemon = Daemon(extra_args=["--pool-size", "0"])
        daemon.start()
        yield daemon
        daemon.stop()

    return d


def _e2e_helpers():
    """tests/e2e/cellboxd.py, where helpers both suites use are defined once
    (appended to sys.path, after this suite's conftest: tests/e2e has a
    conftest.py of its own)."""
    e2e = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e")
    if e2e not in sys.path:
        sys.path.append(e2e)
    import cellboxd
    return cellboxd


def tree_digest(top):
    """Names, types, owners, modes and contents under top, as the host reads
    them."""
    return _e2e_helpers().tree_digest(top)


def mounts_under_state(state_dir):
    """See tests/e2e/cellboxd.py."""
    return _e2e_helpers().mounts_under_state(state_dir)


def drop_named_cgroup_hierarchy(name):
    """See tests/e2e/cellboxd.py: True once the kernel no longer holds the
    named v1 hierarchy."""
    return _e2e_helpers().drop_named_cgroup_hierarchy(name)
