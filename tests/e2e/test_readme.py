"""The README's tour runs as written, so the README cannot rot.

Every fenced block that follows a `<!-- tour:cli -->` or `<!-- tour:python -->`
marker is extracted and run against a real cellboxd: the shell block with
bash -e (each command must succeed unless the README itself handles the
failure), the Python block with the SDK on PYTHONPATH.
"""
import os
import re
import subprocess

import pytest

from cellboxd import BUILD, Daemon

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
README = os.path.join(ROOT, "README.md")


def tour_block(kind):
    text = open(README, encoding="utf-8").read()
    m = re.search(r"<!-- tour:%s\b[^>]*-->\s*```\w*\n(.*?)```" % kind, text, re.S)
    assert m, "README has no tour:%s block" % kind
    return m.group(1)


@pytest.fixture
def daemon():
    # Like install-and-run.sh: TCP on loopback, so preview URLs work.
    d = Daemon(tcp=True, extra_args=["--preview-domain", "localhost"])
    d.start()
    try:
        yield d
    finally:
        d.stop()


def env_for(d):
    env = dict(os.environ)
    env["CELLBOX_SOCKET"] = d.socket_path
    env["PATH"] = BUILD + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.path.join(ROOT, "sdk", "python")
    return env


def test_readme_starts_with_the_two_commands():
    text = open(README, encoding="utf-8").read()
    first = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    lines = [l.split("#")[0].strip() for l in first.splitlines() if l.strip()]
    assert lines == ["./scripts/install-and-run.sh", "./scripts/install-and-test.sh"]
    for script in lines:
        assert os.access(os.path.join(ROOT, script), os.X_OK), script


def test_readme_cli_tour(daemon):
    script = "set -eo pipefail\n" + tour_block("cli")
    r = subprocess.run(["bash", "-c", script], env=env_for(daemon), cwd=ROOT,
                       capture_output=True, timeout=300)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert "hello from a sandbox" in out
    assert "exit code: 3" in out
    assert "45" in out                       # sum(range(10)) run from the written file
    assert os.path.exists("/tmp/cellbox-tour/sum.py")
    assert out.count("print(sum(range(10)))") >= 3  # cat, http.server, preview URL
    assert "hello from a terminal: 42" in out


def test_readme_python_tour(daemon):
    r = subprocess.run(["/usr/bin/python3", "-c", tour_block("python")],
                       env=env_for(daemon), cwd=ROOT, capture_output=True, timeout=300)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    assert "0 42" in out
    assert "hi from a file" in out
    assert "tick 3" in out
    assert "terminal says 42" in out
    assert re.search(r"http://8000-sb_[0-9a-f]+\.localhost:\d+/", out), out
    # the context manager deleted the sandbox
    assert daemon.request("GET", "/v1/sandboxes").json()["items"] == []
