"""What ordinary programs expect of a Linux machine, inside a sandbox of
the `host` template: the /etc files libc's lookups and install scripts read,
and process ages that make sense (PID 1 did not start before the sandbox).

Judged by the programs' own answers, each compared with the host's where
the host has the file."""
import os

import pytest


def sh(daemon, sid, cmd):
    r = daemon.exec(sid, cmd=cmd)
    assert r["exit_code"] == 0, r
    return r["stdout"]


@pytest.mark.skipif(not os.path.exists("/etc/protocols"), reason="host has no /etc/protocols")
def test_protocol_and_service_lookups(daemon, sandbox):
    out = sh(daemon, sandbox["id"],
             "python3 -c 'import socket; print(socket.getprotobyname(\"tcp\"), "
             "socket.getprotobyname(\"udp\"))'")
    assert out.split() == ["6", "17"]
    if os.path.exists("/etc/services"):
        out = sh(daemon, sandbox["id"],
                 "python3 -c 'import socket; print(socket.getservbyname(\"http\", \"tcp\"))'")
        assert out.strip() == "80"


@pytest.mark.skipif(not os.path.exists("/etc/os-release"), reason="host has no /etc/os-release")
def test_os_release_can_be_sourced(daemon, sandbox):
    host = {}
    with open("/etc/os-release") as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            if k:
                host[k] = v.strip('"')
    out = sh(daemon, sandbox["id"], '. /etc/os-release && echo "$ID $VERSION_ID"')
    assert out.strip() == "%s %s" % (host.get("ID", ""), host.get("VERSION_ID", "")), out


@pytest.mark.skipif(not os.path.exists("/etc/shells"), reason="host has no /etc/shells")
def test_shells_lists_sh(daemon, sandbox):
    assert "/bin/sh" in sh(daemon, sandbox["id"], "cat /etc/shells").split()


def test_init_is_not_older_than_the_sandbox(daemon, sandbox):
    # ps's elapsed time of PID 1 and of the shell itself, and the uptime:
    # PID 1 started with the sandbox's clock (about 0), never before it.
    out = sh(daemon, sandbox["id"], "ps -o etimes= -p 1; cut -d' ' -f1 /proc/uptime; "
                                    "cut -d' ' -f22 /proc/1/stat")
    etimes, uptime, start_ticks = out.split()
    assert 0 <= int(etimes) <= float(uptime) + 1, out
    assert int(start_ticks) < 100 * (float(uptime) + 1), out
