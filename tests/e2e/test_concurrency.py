"""50 clients at once: each creates a sandbox, runs 20 execs and deletes it.

All must succeed, and afterwards nothing may be left behind: daemon fds,
mounts (host side) that name the state dir, cgroup directories under the
sandbox parent in every hierarchy, and uid-range slot files. A warm pool, if
the daemon keeps one, refills to its size, so the comparison waits for the
counts to settle back to where they started."""
import concurrent.futures
import glob
import os
import time

CLIENTS = 50
EXECS = 20


def footprint(daemon):
    mounts = sum(1 for line in open("/proc/self/mountinfo") if daemon.state_dir in line)
    cgroups = sum(len([e for e in os.scandir(p) if e.is_dir()])
                  for p in glob.glob("/sys/fs/cgroup/*/cellbox"))
    slots_dir = os.path.join(daemon.state_dir, "uidslots")
    slots = len(os.listdir(slots_dir)) if os.path.isdir(slots_dir) else 0
    return {"fds": daemon.fd_count(), "mounts": mounts, "cgroups": cgroups,
            "uid_slots": slots}


def pool_full(daemon, timeout=30):
    """Wait until the warm pool (if any) is back to its size."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pool = daemon.request("GET", "/v1/info").json().get("warm_pool", {})
        if pool.get("ready", 0) >= pool.get("size", 0):
            return
        time.sleep(0.1)


def settled(daemon, base, timeout=30):
    pool_full(daemon, timeout)
    deadline = time.time() + timeout
    while True:
        now = footprint(daemon)
        # fds may differ by the couple the client connections leave in flight.
        if (now["mounts"] == base["mounts"] and now["cgroups"] == base["cgroups"]
                and now["uid_slots"] == base["uid_slots"] and now["fds"] <= base["fds"] + 2):
            return now
        if time.time() > deadline:
            return now
        time.sleep(0.2)


def test_fifty_clients_no_leaks(daemon, sandbox_works):
    pool_full(daemon)
    time.sleep(0.3)
    base = footprint(daemon)

    def client(i):
        sb = daemon.create_sandbox(metadata={"client": str(i)})
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
    after = settled(daemon, base)
    assert after["mounts"] == base["mounts"], (base, after)
    assert after["cgroups"] == base["cgroups"], (base, after)
    assert after["uid_slots"] == base["uid_slots"], (base, after)
    assert after["fds"] <= base["fds"] + 2, (base, after)


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
