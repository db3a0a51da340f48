#!/usr/bin/env python3
"""Clean up after interrupted test runs: for every /tmp/cbd-e2e-* state dir
whose daemon is gone, kill its sandboxes' inits, remove their cgroups and
mounts, and delete the directory. Live daemons' dirs are left alone."""
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from cellboxd import reap_leftovers  # noqa: E402


def live_daemon_dirs():
    dirs = set()
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"cellboxd") and b"--state-dir" in argv:
            state = argv[argv.index(b"--state-dir") + 1].decode()
            dirs.add(os.path.dirname(os.path.realpath(state)))
    return dirs


def orphaned_init_dirs():
    """Test dirs named by the overlay of a running init (even once the
    directory itself is gone)."""
    dirs = set()
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and open("/proc/%s/comm" % p).read().strip() == "cellbox-init":
                dirs.update(re.findall(r"upperdir=(/tmp/cbd-e2e-[^/,]+)/", open(
                    "/proc/%s/mountinfo" % p).read()))
        except OSError:
            pass
    return dirs


def main():
    live = live_daemon_dirs()
    dirs = {os.path.join("/tmp", n) for n in os.listdir("/tmp") if n.startswith("cbd-e2e-")}
    for d in sorted((dirs | orphaned_init_dirs()) - live):
        reap_leftovers(os.path.join(d, "state"))
        shutil.rmtree(d, ignore_errors=True)
        print("reaped", d)


if __name__ == "__main__":
    main()
