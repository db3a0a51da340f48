"""Fixtures for the SDK tests.

The SDK's end-to-end tests run against a real cellboxd started by the
project's e2e helper (tests/e2e/cellboxd.py, class Daemon). When the daemon
binary or the helper is missing, those tests are skipped with the reason;
the transport tests (test_sdk_transport.py) need no daemon.
"""

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.abspath(os.path.join(HERE, "..")))  # the cellbox package
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))  # the Daemon helper
sys.path.insert(0, HERE)

from cellbox_daemon import require_sandboxes, start_daemon  # noqa: E402


@pytest.fixture(scope="session")
def daemon():
    """One cellboxd (unix socket + TCP listener) for the whole session."""
    d = start_daemon(tcp=True)
    yield d
    d.stop()


@pytest.fixture(scope="session")
def sandboxes_work(daemon):
    require_sandboxes(daemon)
    return True


@pytest.fixture
def client(daemon, sandboxes_work):
    import cellbox

    c = cellbox.Client(socket=daemon.socket_path)
    yield c
    c.close()


@pytest.fixture
def sandbox(client):
    import cellbox

    sb = cellbox.Sandbox.create(client=client)
    yield sb
    try:
        sb.delete()
    except cellbox.NotFound:
        pass
