"""Start a real cellboxd for the SDK tests through the project's e2e helper
(tests/e2e/cellboxd.py, class Daemon), or skip when it is not built."""

from __future__ import annotations

import os

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BUILD = os.environ.get("CB_BUILD") or os.path.join(ROOT, "build")


def tcp_url(daemon) -> str | None:
    """http://127.0.0.1:PORT of the daemon's TCP listener, if it has one."""
    return "http://127.0.0.1:%d" % daemon.port if getattr(daemon, "port", None) else None


def start_daemon(tcp: bool = False):
    """A started Daemon (unix socket, plus TCP when asked). Skips when
    build/cellboxd or the helper is missing, or when not root."""
    if not os.access(os.path.join(BUILD, "cellboxd"), os.X_OK):
        pytest.skip("build/cellboxd is not built")
    if os.geteuid() != 0:
        pytest.skip("cellboxd e2e tests need root")
    try:
        from cellboxd import Daemon  # tests/e2e/cellboxd.py
    except ImportError as e:
        pytest.skip(f"tests/e2e/cellboxd.py (Daemon helper) not available: {e}")
    d = Daemon(tcp=tcp)
    d.start()
    d.tcp_url = tcp_url(d)
    return d


def require_sandboxes(daemon) -> None:
    """Skip when the runtime cannot create a sandbox on this host (the
    reason is the daemon's answer)."""
    r = daemon.request("POST", "/v1/sandboxes", {})
    if r.status != 201:
        pytest.skip("runtime cannot create sandboxes on this host: %r" % r.body[:300])
    daemon.delete_sandbox(r.json()["id"])
