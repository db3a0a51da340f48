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

