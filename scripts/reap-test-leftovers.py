#!/usr/bin/env python3
"""Clean up after interrupted test runs: for every /tmp/cbd-e2e-* state dir
whose daemon is gone, kill its sandboxes' inits, remove their cgroups and
mounts, and delete the directory. Live daemons' dirs are left alone."""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e"))
from cellboxd import (drop_named_cgroup_hierarchy, named_cgroup_hierarchies,  # noqa: E402
                      reap_leftovers, remove_tree)


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


def dead_spare_cgroups():
    """Parked memory cgroups (<hierarchy>/cellbox/.spare-<pid>-<n>, kept for
    reuse by a runtime) whose runtime process is gone."""
    found = []
    for hier in ("/sys/fs/cgroup/memory/cellbox", "/sys/fs/cgroup/cellbox"):
        try:
            names = os.listdir(hier)
        except OSError:
            continue
        for n in names:
            m = re.match(r"\.spare-(\d+)-\d+$", n)
            if m and not os.path.exists("/proc/" + m.group(1)):
                found.append(os.path.join(hier, n))
    return found


def main():
    live = live_daemon_dirs()
    dirs = {os.path.join("/tmp", n) for n in os.listdir("/tmp") if n.startswith("cbd-e2e-")}
    for d in sorted((dirs | orphaned_init_dirs()) - live):
        reap_leftovers(os.path.join(d, "state"))
        remove_tree(d)
        print("reaped", d)
    for cg in dead_spare_cgroups():
        try:
            os.rmdir(cg)
            print("removed", cg)
        except OSError as e:
            print("kept", cg, e)
    # Named v1 hierarchies the security battery's control mounts (cbtest*);
    # earlier versions of it left each behind.
    for name in named_cgroup_hierarchies("cbtest"):
        print("dropped" if drop_named_cgroup_hierarchy(name) else "kept", "cgroup hierarchy", name)


if __name__ == "__main__":
    main()
