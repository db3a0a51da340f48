"""The CLI's live commands against a real cellboxd (issue #5): `cellbox shell`
and `cellbox attach` driven inside a pseudo-terminal (as a person would use
them), `pty ls`/`pty kill`, and `expose`/`ports`/`unexpose`.

Each interactive test opens a pty pair, gives the slave side to the CLI as
its stdin/stdout (stderr goes to a pipe so the CLI's own messages can be
checked apart from the terminal bytes), types into the master side and reads
the screen back from it."""

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
import pytest

from cellboxd import Daemon, browse, fetch, fetch_eventually

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("CB_BUILD") or os.path.join(ROOT, "build")
CLI = os.path.join(BUILD, "cellbox")

pytestmark = pytest.mark.skipif(not os.access(CLI, os.X_OK), reason="build/cellbox is not built")

DETACH = b"\x1d"  # Ctrl-]


def cli_env():
    e = dict(os.environ)
    for k in ("CELLBOX_HOST", "CELLBOX_API_KEY", "CELLBOX_SOCKET"):
        e.pop(k, None)
    e["TERM"] = "xterm"
    return e


def run_cli(daemon, *args, input=b"", timeout=60, extra=()):
    return subprocess.run([CLI, "--socket", daemon.socket_path, *extra, *args], input=input,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(),
                          timeout=timeout)


def set_winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Term:
    """The CLI running on the slave side of a fresh pty of rows x cols."""

    def __init__(self, args, rows=30, cols=100):
        self.master, self.slave = os.openpty()
        set_winsize(self.slave, rows, cols)
        self.saved = termios.tcgetattr(self.slave)
        self.proc = subprocess.Popen([CLI, *args], stdin=self.slave, stdout=self.slave,
                                     stderr=subprocess.PIPE, env=cli_env(), close_fds=True)
        self.screen = b""

    def type(self, data):
        os.write(self.master, data.encode() if isinstance(data, str) else data)

    def expect(self, pattern, timeout=20):
        """Read until the regex (bytes) appears in what was shown; returns the match."""
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.time() + timeout
        while True:
            m = rx.search(self.screen)
            if m:
                return m
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError("no %r on screen: %r" % (rx.pattern, self.screen[-1500:]))
            r, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if r:
                try:
                    self.screen += os.read(self.master, 65536)
                except OSError:  # EIO: the CLI closed the slave side
                    if self.proc.poll() is not None:
                        raise AssertionError("CLI exited %s; screen %r stderr %r" % (
                            self.proc.returncode, self.screen[-1500:], self.proc.stderr.read()))

    def resize(self, rows, cols):
        set_winsize(self.master, rows, cols)
        self.proc.send_signal(signal.SIGWINCH)

    def wait(self, timeout=20):
        rc = self.proc.wait(timeout=timeout)
        self.err = self.proc.stderr.read().decode(errors="replace")
        return rc

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def term_factory():
    terms = []

    def make(*args, **kw):
        t = Term(list(args), **kw)
        terms.append(t)
        return t

    yield make
    for t in terms:
        t.close()


def shell_args(daemon, sid, *extra):
    return ["--socket", daemon.socket_path, "shell", sid, *extra]


# ---- help and errors ---------------------------------------------------------


def test_help_lines():
    for cmd in (["shell"], ["attach"], ["pty", "ls"], ["expose"], ["unexpose"], ["ports"]):
        r = subprocess.run([CLI, *cmd, "--help"], capture_output=True)
        assert r.returncode == 0 and b"usage: cellbox" in r.stdout, cmd
    r = subprocess.run([CLI, "shell", "--help"], capture_output=True)
    assert b"Ctrl-]" in r.stdout and b"cellbox attach" in r.stdout
    r = subprocess.run([CLI, "help"], capture_output=True)
    for name in (b"shell", b"attach", b"pty", b"expose", b"unexpose", b"ports"):
        assert name in r.stdout
    assert subprocess.run([CLI, "shell"], capture_output=True).returncode == 2
    assert subprocess.run([CLI, "expose", "sb_x", "0"], capture_output=True).returncode == 2
    assert subprocess.run([CLI, "pty", "frob", "x"], capture_output=True).returncode == 2


def test_errors_carry_the_api_message(daemon, sandbox):
    r = run_cli(daemon, "shell", "sb_doesnotexist")
    assert r.returncode == 1 and b"cellbox: no such sandbox" in r.stderr, r.stderr
    r = run_cli(daemon, "attach", sandbox["id"], "999999")
    assert r.returncode == 1 and b"no such pty" in r.stderr, r.stderr
    r = run_cli(daemon, "pty", "kill", sandbox["id"], "999999")
    assert r.returncode == 1 and b"no such pty" in r.stderr, r.stderr


# ---- shell in a terminal --------------------------------------------------------


def test_shell_echo_size_resize_exit_status(daemon, sandbox, term_factory):
    t = term_factory(*shell_args(daemon, sandbox["id"]), rows=30, cols=100)
    t.type("echo hi-$((40+2))\r")
    t.expect(rb"hi-42")
    t.type("stty size\r")
    t.expect(rb"30 100")
    # The local tty is in raw mode while attached: no local echo, no ICANON.
    attrs = termios.tcgetattr(t.slave)
    assert not attrs[3] & termios.ICANON and not attrs[3] & termios.ECHO
    t.resize(40, 120)
    time.sleep(0.3)
    t.type("stty size\r")
    t.expect(rb"40 120")
    t.type("exit 3\r")
    assert t.wait() == 3, t.err
    # The local terminal is exactly as it was before the CLI started.
    assert termios.tcgetattr(t.slave) == t.saved


def test_shell_fixed_size_and_argv(daemon, sandbox, term_factory):
    t = term_factory(*shell_args(daemon, sandbox["id"], "--cols", "77", "--rows", "11",
                                 "--env", "GREETING=hello-env", "--", "/bin/sh"),
                     rows=30, cols=100)
    t.type("echo $GREETING; stty size\r")
    t.expect(rb"hello-env")
    t.expect(rb"11 77")
    t.type("exit 0\r")
    assert t.wait() == 0, t.err


def test_shell_restores_tty_on_sigterm(daemon, sandbox, term_factory):
    t = term_factory(*shell_args(daemon, sandbox["id"]))
    t.type("echo ready-$((1+1))\r")
    t.expect(rb"ready-2")
    t.proc.send_signal(signal.SIGTERM)
    assert t.wait() == 128 + signal.SIGTERM
    assert termios.tcgetattr(t.slave) == t.saved
    assert "cellbox attach" in t.err


def test_detach_then_attach_replays_scrollback(daemon, sandbox, term_factory):
    sid = sandbox["id"]
    t = term_factory(*shell_args(daemon, sid))
    t.type("echo before-$((6*7))\r")
    t.expect(rb"before-42")
    t.type(DETACH)
    assert t.wait() == 0, t.err
    assert termios.tcgetattr(t.slave) == t.saved
    m = re.search(r"cellbox attach (\S+) (\S+)", t.err)
    assert m and m.group(1) == sid, t.err
    pty_id = m.group(2)

    # The terminal lives on: listed as running.
    r = run_cli(daemon, "pty", "ls", sid, extra=("--json",))
    assert r.returncode == 0, r.stderr
    items = {p["pty_id"]: p for p in json.loads(r.stdout)["items"]}
    assert items[pty_id]["state"] == "running"
    r = run_cli(daemon, "pty", "ls", sid)
    assert r.returncode == 0 and re.search(rb"(?m)^%s\s+running" % pty_id.encode(), r.stdout)

    # Reattach: the earlier output is replayed, then it is live again.
    a = term_factory("--socket", daemon.socket_path, "attach", sid, pty_id, rows=25, cols=90)
    a.expect(rb"before-42")
    a.type("stty size; echo again-$((2+3))\r")
    a.expect(rb"25 90")
    a.expect(rb"again-5")
    a.type("exit 5\r")
    assert a.wait() == 5, a.err
    assert termios.tcgetattr(a.slave) == a.saved


def test_shell_without_a_tty(daemon, sandbox):
    """stdin not a terminal: 80x24, input piped, EOF ends the shell."""
    r = run_cli(daemon, "shell", sandbox["id"], "--", "/bin/sh",
                input=b"stty size\necho piped-$((3*3))\nexit 4\n")
    assert r.returncode == 4, r.stderr
    assert b"24 80" in r.stdout and b"piped-9" in r.stdout
    r = run_cli(daemon, "shell", sandbox["id"], "--", "/bin/sh", input=b"echo eof-ok\n")
    assert r.returncode == 0 and b"eof-ok" in r.stdout, r.stderr


@pytest.mark.skipif(not os.path.exists("/etc/bash.bashrc"), reason="host has no /etc/bash.bashrc")
def test_login_shell_prompt_names_user_and_host(daemon, sandbox_works):
    """The default terminal (bash -l) reads the template's /etc/profile and
    bash.bashrc, as on the host: a user@host:dir prompt, not bash-5.2$."""
    sb = daemon.create_sandbox(name="promptbox")
    try:
        r = run_cli(daemon, "shell", sb["id"], input=b"cd /workspace\nexit\n")
        assert r.returncode == 0, r.stderr
        assert b"user@promptbox:/workspace$" in r.stdout, r.stdout
    finally:
        daemon.delete_sandbox(sb["id"])


def test_pty_ls_and_kill(daemon, sandbox):
    sid = sandbox["id"]
    # Not the default bash: a hang-up that reaches bash while it is still
    # starting (this test kills at once) can be left unhandled until input
    # arrives, and the SIGKILL 3 s later ends it instead (status 137; seen
    # under load). sleep takes SIGHUP's default action whenever it comes.
    r = daemon.request("POST", "/v1/sandboxes/%s/ptys" % sid,
                       {"cols": 81, "rows": 21, "argv": ["sleep", "1000"]})
    assert r.status == 201, r
    pty_id = r.json()["pty_id"]
    r = run_cli(daemon, "pty", "ls", sid)
    assert r.returncode == 0 and b"PTY" in r.stdout
    assert re.search(rb"(?m)^%s\s+running\s+81x21" % pty_id.encode(), r.stdout), r.stdout
    r = run_cli(daemon, "pty", "kill", sid, pty_id)
    assert r.returncode == 0, r.stderr
    deadline = time.time() + 10
    while True:
        r = run_cli(daemon, "pty", "ls", sid, extra=("--json",))
        state = {p["pty_id"]: p["state"] for p in json.loads(r.stdout)["items"]}.get(pty_id)
        if state == "exited" or time.time() > deadline:
            break
        time.sleep(0.2)
    assert state == "exited"
    # Attaching to an ended terminal replays it and exits with its status.
    r = run_cli(daemon, "attach", sid, pty_id)
    assert r.returncode == 128 + signal.SIGHUP, (r.returncode, r.stderr)


def test_shell_over_tcp_with_api_key(daemon, sandbox_works):
    key = daemon.create_key("term-tenant")
    sb = daemon.create_sandbox(key=key)
    try:
        r = subprocess.run([CLI, "--host", "http://127.0.0.1:%d" % daemon.port, "--api-key", key,
                            "shell", sb["id"], "--", "/bin/sh"], input=b"echo tcp-$((5*5))\nexit 6\n",
                           capture_output=True, env=cli_env(), timeout=60)
        assert r.returncode == 6 and b"tcp-25" in r.stdout, r.stderr
        # Without the key the upgrade is refused with the API's message.
        r = subprocess.run([CLI, "--host", "http://127.0.0.1:%d" % daemon.port, "attach", sb["id"], "1"],
                           capture_output=True, env=cli_env(), timeout=60)
        assert r.returncode == 1 and b"cellbox:" in r.stderr
    finally:
        daemon.delete_sandbox(sb["id"], key=key)


# ---- ports ---------------------------------------------------------------------


def ports_available(daemon, sid):
    r = daemon.request("GET", "/v1/sandboxes/%s/ports" % sid)
    assert r.status == 200, r


def test_expose_ports_unexpose(daemon, sandbox):
    sid = sandbox["id"]
    ports_available(daemon, sid)
    daemon.request("POST", "/v1/sandboxes/%s/processes" % sid,
                   {"cmd": "mkdir -p /tmp/www && echo served-by-sandbox > /tmp/www/index.html && "
                           "cd /tmp/www && exec python3 -m http.server 8123 --bind 127.0.0.1"})
    r = run_cli(daemon, "expose", sid, "8123")
    assert r.returncode == 0, r.stderr
    r_expose = r.stdout.decode()
    lines = r_expose.splitlines()
    url = lines[0]
    token = re.search(r"(?m)^token: (\S+)", r.stdout.decode()).group(1)
    opener = re.search(r"(?m)^open:\s+(\S+)", r.stdout.decode()).group(1)
    assert "cellbox_token=" in opener and token in opener

    r = run_cli(daemon, "ports", sid)
    assert r.returncode == 0 and b"8123" in r.stdout
    r = run_cli(daemon, "ports", sid, extra=("--json",))
    doc = json.loads(r.stdout)
    items = doc["items"] if isinstance(doc, dict) else doc
    assert [p for p in items if p["port"] == 8123]

    # The server inside is reached through the printed URL with the token,
    # through the path URL too, and not without the token.
    status, body = fetch_eventually(daemon, url, {"X-Cellbox-Token": token})
    assert status == 200 and b"served-by-sandbox" in body, (status, body[:300])
    status, body = browse(daemon, opener)  # the token becomes a cookie
    assert status == 200 and b"served-by-sandbox" in body, (status, body[:300])
    path = re.search(r"(?m)^path:\s+(\S+)", r_expose)  # only when url is a preview host
    if path:
        status, body = fetch(daemon, path.group(1), {"X-Cellbox-Token": token})
        assert status == 200 and b"served-by-sandbox" in body, (status, body[:300])
    assert fetch(daemon, url)[0] in (401, 403)

    r = run_cli(daemon, "unexpose", sid, "8123")
    assert r.returncode == 0, r.stderr
    r = run_cli(daemon, "ports", sid)
    assert b"8123" not in r.stdout
    assert fetch(daemon, url, {"X-Cellbox-Token": token})[0] != 200


def test_expose_public(daemon, sandbox):
    sid = sandbox["id"]
    ports_available(daemon, sid)
    r = run_cli(daemon, "expose", sid, "8124", "--public")
    assert r.returncode == 0, r.stderr
    assert b"token:" not in r.stdout and r.stdout.strip()
    r = run_cli(daemon, "unexpose", sid, "8124")
    assert r.returncode == 0, r.stderr


def complete(daemon, line):
    """What the bash completion offers for `line` (ending in the word to complete)."""
    words = line.split(" ")
    script = ('source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _cellbox; printf "%%s\\n" "${COMPREPLY[@]}"'
              % (os.path.join(ROOT, "contrib", "completion", "cellbox.bash"),
                 " ".join("'%s'" % w for w in words), len(words) - 1))
    env = cli_env()
    env["PATH"] = BUILD + ":" + env.get("PATH", "")
    r = subprocess.run(["bash", "-c", script], capture_output=True, env=env, timeout=30)
    return r.stdout.decode().split()


def test_bash_completion(daemon, sandbox):
    sid = sandbox["id"]
    sock = daemon.socket_path
    assert {"shell", "attach", "pty", "expose", "unexpose", "ports"} <= set(complete(daemon, "cellbox "))
    r = daemon.request("POST", "/v1/sandboxes/%s/ptys" % sid, {"argv": ["/bin/sh"]})
    pty_id = r.json()["pty_id"]
    assert sid in complete(daemon, "cellbox --socket %s attach " % sock)
    assert pty_id in complete(daemon, "cellbox --socket %s attach %s " % (sock, sid))
    assert pty_id in complete(daemon, "cellbox --socket %s pty kill %s " % (sock, sid))
    assert "--public" in complete(daemon, "cellbox expose %s --" % sid)
    assert "--cols" in complete(daemon, "cellbox shell --c")
    assert {"--memory", "--pids", "--metadata"} <= set(complete(daemon, "cellbox update %s --" % sid))
    assert sid in complete(daemon, "cellbox --socket %s update " % sock)


def test_expose_with_preview_domain(sandbox_works):
    """With --preview-domain the URL is a preview host; the path URL is printed too."""

    with Daemon(tcp=True, extra_args=["--preview-domain", "localhost"]) as d:
        sid = d.create_sandbox()["id"]
        ports_available(d, sid)
        d.request("POST", "/v1/sandboxes/%s/processes" % sid,
                  {"cmd": "mkdir -p /tmp/w && echo via-host > /tmp/w/index.html && "
                          "cd /tmp/w && exec python3 -m http.server 8125 --bind 127.0.0.1"})
        r = subprocess.run([CLI, "--host", "http://127.0.0.1:%d" % d.port, "--api-key",
                            d.create_key("preview-t"), "expose", sid, "8125"], capture_output=True,
                           env=cli_env(), timeout=60)
        # Another tenant's key must not see the sandbox.
        assert r.returncode == 1 and b"cellbox:" in r.stderr
        r = run_cli(d, "expose", sid, "8125")
        out = r.stdout.decode()
        assert r.returncode == 0, r.stderr
        url = out.splitlines()[0]
        token = re.search(r"(?m)^token: (\S+)", out).group(1)
        assert "8125-" in url and ".localhost" in url, out
        status, body = fetch_eventually(d, url, {"X-Cellbox-Token": token})
        assert status == 200 and b"via-host" in body, (status, body[:300])
        path = re.search(r"(?m)^path:\s+(\S+)", out).group(1)
        status, body = fetch(d, path, {"X-Cellbox-Token": token})
        assert status == 200 and b"via-host" in body, (status, body[:300])
