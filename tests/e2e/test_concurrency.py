"""50 clients at once: each creates a sandbox, runs 20 execs and deletes it.

All must succeed, and afterwards nothing may be left behind: daemon fds,
mounts (host side) that name the state dir, cgroup directories under the
sandbox parent in every hierarchy, and uid-range slot files. A warm pool, if
the daemon keeps one, refills to its size, so the comparison waits for the
counts to settle back to where they started. Deleted sandboxes are torn down
in the background after their 204 (test_delete.py), so the comparison also
waits for that.

Cgroups: the sandbox parent is shared by every cellboxd on the host (other
test runs too), so only cgroups named after this daemon's sandboxes and pool
members (its state dir) are counted, and every sandbox the test made must
have none left."""
import concurrent.futures
import glob
import os
import time

CLIENTS = 50
EXECS = 20


def cgroup_names():
    return [e.name for p in glob.glob("/sys/fs/cgroup/*/cellbox") + glob.glob("/sys/fs/cgroup/cellbox")
            for e in os.scandir(p) if e.is_dir()]


def footprint(daemon, ids=()):
    mounts = sum(1 for line in open("/proc/self/mountinfo") if daemon.state_dir in line)
    sandboxes = os.path.join(daemon.state_dir, "sandboxes")
    ours = set(os.listdir(sandboxes) if os.path.isdir(sandboxes) else []) | set(ids)
    cgroups = sum(1 for name in cgroup_names() if name in ours)
    slots_dir = os.path.join(daemon.state_dir, "uidslots")
    # taken slots; a released one's file is kept as .free-<n> (idmap.h)
    slots = sum(1 for n in (os.listdir(slots_dir) if os.path.isdir(slots_dir) else [])
                if n.isdigit())
    images = os.path.join(daemon.state_dir, "images")
    spares = sum(1 for n in (os.listdir(images) if os.path.isdir(images) else [])
                 if n.startswith(".spare-"))
    # Spare sandbox directories (sbdir.h) keep their init.sock bound: the
    # daemon holds each one's listening socket, one fd per such spare.
    listeners = sum(1 for n in (os.listdir(sandboxes) if os.path.isdir(sandboxes) else [])
                    if n.startswith(".spare-dir-")
                    and os.path.exists(os.path.join(sandboxes, n, "init.sock")))
    # Network namespaces the daemon holds (made ahead, or a deleted
    # sandbox's kept for its tenant: netns.h), each with its sysfs mount.
    fd_dir = "/proc/%d/fd" % daemon.pid
    netns = 0
    for n in os.listdir(fd_dir):
        try:
            netns += os.readlink(os.path.join(fd_dir, n)).startswith("net:[")
        except OSError:
            pass
    return {"fds": daemon.fd_count(), "mounts": mounts, "cgroups": cgroups,
            "uid_slots": slots, "idle_loops": idle_loop_devices(), "image_spares": spares,
            "spare_listeners": listeners, "netns": netns}


def fds_settled(base, now):
    """Daemon fds back to the base, give or take the couple the client
    connections leave in flight, one per spare image or spare directory
    listener more than there were (each holds exactly one), and two per
    network namespace kept (the namespace and its sysfs mount)."""
    extra = max(0, now["image_spares"] - base["image_spares"]) + \
        max(0, now["spare_listeners"] - base["spare_listeners"]) + \
        2 * max(0, now["netns"] - base["netns"])
    return now["fds"] <= base["fds"] + 2 + extra


# Disk images kept ready (quota.c): the maker's 2, and deleted sandboxes'
# images recycled, up to IMAGE_SPARES_MAX; each holds one fd (its mount).
IMAGE_SPARES_MAX = 8

# Network namespaces the daemon may hold (netns.c): 4 made ahead, up to 16
# kept for their tenant and 16 waiting for the check; more is a leak (the
# fd allowance above counts them, so it is bounded here).
NETNS_HELD_MAX = 4 + 16 + 16


# Idle loop devices the runtime keeps for re-use (quota.c LOOP_RESERVE_DEFAULT):
# removing one takes ~50 ms of RCU waits and the next sandbox needs one again.
LOOP_RESERVE = 16


def idle_loop_devices():
    """Unbound loop devices beyond the host's boot-time ones: the kernel
    makes them on demand and never removes them (~220 KiB each), so the
    runtime removes those its sandboxes used beyond a small reserve."""
    try:
        boot = int(open("/sys/module/loop/parameters/max_loop").read()) or 8
    except (OSError, ValueError):
        boot = 8
    found = 0
    for name in os.listdir("/sys/block"):
        if name.startswith("loop") and name[4:].isdigit() and int(name[4:]) >= boot \
                and not os.path.exists("/sys/block/%s/loop/backing_file" % name):
            found += 1
    return found


def pool_full(daemon, timeout=30):
    """Wait until the warm pool (if any) is back to its size."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pool = daemon.request("GET", "/v1/info").json().get("warm_pool", {})
        if pool.get("ready", 0) >= pool.get("size", 0):
            return
        time.sleep(0.1)


def settled(daemon, base, ids, timeout=30):
    pool_full(daemon, timeout)
    deadline = time.time() + timeout
    while True:
        now = footprint(daemon, ids)
        # fds may differ by the couple the client connections leave in flight.
        if (now["mounts"] == base["mounts"] and now["cgroups"] == base["cgroups"]
                and now["uid_slots"] == base["uid_slots"]
                and fds_settled(base, now)
                and now["idle_loops"] <= base["idle_loops"] + LOOP_RESERVE):
            return now
        if time.time() > deadline:
            return now
        time.sleep(0.2)


def test_fifty_clients_no_leaks(daemon, sandbox_works):
    pool_full(daemon)
    time.sleep(0.3)
    base = footprint(daemon)

    ids = []

    def client(i):
        sb = daemon.create_sandbox(metadata={"client": str(i)})
        ids.append(sb["id"])
        try:
            for j in range(EXECS):
                r = daemon.exec(sb["id"], argv=["echo", "%d-%d" % (i, j)])
                assert r["exit_code"] == 0 and r["stdout"] == "%d-%d\n" % (i, j), r
        finally:
            assert daemon.delete_sandbox(sb["id"]).status == 204
        return i

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as ex:
        done = list(ex.map(client, range(CLIENTS)))
    assert done == list(range(CLIENTS))
    assert daemon.request("GET", "/v1/sandboxes").json()["items"] == []
    after = settled(daemon, base, ids)
    assert [n for n in cgroup_names() if n in ids] == []
    assert after["mounts"] == base["mounts"], (base, after)
    assert after["cgroups"] == base["cgroups"], (base, after)
    assert after["uid_slots"] == base["uid_slots"], (base, after)
    assert after["image_spares"] <= IMAGE_SPARES_MAX, (base, after)
    assert after["netns"] <= NETNS_HELD_MAX, (base, after)
    assert fds_settled(base, after), (base, after)
    assert after["spare_listeners"] <= 64, (base, after)  # CB_SBDIR_SPARES_MAX
    assert after["idle_loops"] <= base["idle_loops"] + LOOP_RESERVE, (base, after)


def test_idle_sandbox_costs_one_daemon_fd(daemon, sandbox_works):
    """The daemon's RLIMIT_NOFILE bounds how many sandboxes a host keeps: an
    idle sandbox holds only its control connection (the init's pidfd is
    opened when needed), so 10,000 fit under a 20,000 limit."""
    pool_full(daemon)
    time.sleep(0.3)
    base = daemon.fd_count()
    ids = [daemon.create_sandbox()["id"] for _ in range(20)]
    try:
        pool_full(daemon)
        time.sleep(0.3)
        per_sandbox = (daemon.fd_count() - base) / len(ids)
        assert per_sandbox <= 1.0, per_sandbox
        assert daemon.exec(ids[7], cmd="echo alive")["stdout"] == "alive\n"
    finally:
        for i in ids:
            daemon.delete_sandbox(i)
