"""Warm pool: claim, invisibility, refill, replacement, crash + restart.

Evidence is taken on the host (state dir, cgroup tree, uid slot files,
mountinfo, /proc), not from what the daemon says about itself.
"""
import glob
import os
import re
import signal
import time

import pytest

from cellboxd import Daemon, mounts_under_state


MARKER = ".pool-member"  # pool.h CB_POOL_MARKER


def pool_ids(d, running=True):
    """Warm-pool members: sandbox directories carrying the member marker."""
    base = os.path.join(d.state_dir, "sandboxes")
    out = []
    for n in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        if not os.path.exists(os.path.join(base, n, MARKER)):
            continue
        if running:
            try:
                with open(os.path.join(base, n, "runtime.state")) as f:
                    if "\nstate=2\n" not in f.read():
                        continue
            except OSError:
                continue
        out.append(n)
    return out


def wait_pool(d, n, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(pool_ids(d)) >= n:
            # running on disk; give the loop a moment to add it to the pool
            time.sleep(0.3)
            return pool_ids(d)
        time.sleep(0.05)
    raise AssertionError("pool did not fill to %d: %s\n%s" % (n, pool_ids(d, False), d.log()))


def cgroup_dirs(name):
    return glob.glob("/sys/fs/cgroup/*/cellbox/" + name) + glob.glob("/sys/fs/cgroup/cellbox/" + name)


def state_of(d, sid):
    with open(os.path.join(d.state_dir, "sandboxes", sid, "runtime.state")) as f:
        return dict(l.split("=", 1) for l in f.read().splitlines() if "=" in l)


def slot_owners(d):
    base = os.path.join(d.state_dir, "uidslots")
    owners = {}
    for n in os.listdir(base):
        if not n.isdigit():
            continue  # a released slot's file kept for reuse (idmap.h)
        with open(os.path.join(base, n)) as f:
            owners[n] = f.read()
    return owners


def sh(d, sid, cmd, **kw):
    r = d.exec(sid, cmd=cmd, **kw)
    assert r["exit_code"] == 0, r
    return r["stdout"]


@pytest.fixture
def pooled():
    d = Daemon(tcp=True, extra_args=["--pool-size", "2"])
    d.start()
    try:
        wait_pool(d, 2)
        yield d
    finally:
        d.stop()


def test_claim_gives_the_sandbox_its_identity(pooled):
    d = pooled
    before = set(pool_ids(d))
    pids_before = {m: state_of(d, m)["pid"] for m in before}
    sb = d.create_sandbox(name="alpha", memory_mb=300, pids=100)
    sid = sb["id"]
    assert "%s claimed from the warm pool" % sid in d.log() or \
        re.search(r"%s.*claimed from the warm pool" % sid, d.log()), d.log()
    # One pool member became this sandbox: the sandbox has its id (members
    # are made under the id their sandbox gets) and its init, and is no
    # longer marked as a member.
    assert sid in before, (sid, before)
    assert sid not in pool_ids(d, running=False)
    assert state_of(d, sid)["pid"] == pids_before[sid]
    # Its directory, runtime record, cgroups and uid slot carry the id.
    st = state_of(d, sid)
    assert st["id"] == sid and st["hostname"] == "alpha"
    dirs = cgroup_dirs(sid)
    assert dirs, "no cgroup named after the sandbox"
    pid = int(st["pid"])
    with open("/proc/%d/cgroup" % pid) as f:
        assert "/cellbox/" + sid in f.read()
    assert sid in slot_owners(d).values()
    # Limits of the request, applied at claim (evidence: the cgroup files).
    for c in dirs:
        if os.path.exists(c + "/memory.limit_in_bytes"):
            assert int(open(c + "/memory.limit_in_bytes").read()) == 300 << 20
        if os.path.exists(c + "/memory.max"):
            assert int(open(c + "/memory.max").read()) == 300 << 20
        if os.path.exists(c + "/pids.max"):
            assert open(c + "/pids.max").read().strip() == "100"
    # Hostname: the uts namespace and /etc files.
    out = sh(d, sid, "hostname; cat /etc/hostname; grep -c alpha /etc/hosts")
    assert out.split() == ["alpha", "alpha", "1"], out
    # A working sandbox: write files, run processes as user.
    assert sh(d, sid, "echo hi > /workspace/f && cat /workspace/f && id -un").split() == ["hi", "user"]
    assert d.delete_sandbox(sid).status == 204
    # Torn down after the answer, in the background (test_delete.py).
    deadline = time.time() + 20
    while time.time() < deadline and (cgroup_dirs(sid) or sid in slot_owners(d).values() or
                                      os.path.exists(os.path.join(d.state_dir, "sandboxes", sid))):
        time.sleep(0.05)
    assert not cgroup_dirs(sid)
    assert not os.path.exists(os.path.join(d.state_dir, "sandboxes", sid))
    assert sid not in slot_owners(d).values()


def test_unnamed_claim_keeps_everything(pooled):
    """A create without a name takes a member as it is: same directory,
    cgroups, init and hostname (the member's id, which is the sandbox's)."""
    d = pooled
    before = set(pool_ids(d))
    cg_before = {m: sorted(cgroup_dirs(m)) for m in before}
    sb = d.create_sandbox()
    sid = sb["id"]
    assert sid in before and cg_before[sid], (sid, before)
    assert sorted(cgroup_dirs(sid)) == cg_before[sid]
    assert sh(d, sid, "hostname; cat /etc/hostname").split() == [sid, sid]
    assert state_of(d, sid)["hostname"] == sid
    assert not os.path.exists(os.path.join(d.state_dir, "sandboxes", sid, MARKER))
    d.delete_sandbox(sid)


def test_marker_is_a_second_name_not_a_new_file(pooled):
    """The member marker is a hard link to the member's runtime.state (no
    inode of its own on the state file system); a claim removes the name
    and leaves runtime.state with its single link."""
    base = os.path.join(pooled.state_dir, "sandboxes")
    for sid in pool_ids(pooled):
        m = os.stat(os.path.join(base, sid, MARKER))
        st = os.stat(os.path.join(base, sid, "runtime.state"))
        assert (m.st_dev, m.st_ino) == (st.st_dev, st.st_ino)
        assert st.st_nlink == 2
    members = set(pool_ids(pooled))
    sid = pooled.create_sandbox()["id"]
    assert sid in members  # claimed, not made cold
    assert not os.path.exists(os.path.join(base, sid, MARKER))
    assert os.stat(os.path.join(base, sid, "runtime.state")).st_nlink == 1
    assert sh(pooled, sid, "echo ok") == "ok\n"


def test_pool_members_are_invisible(pooled):
    d = pooled
    members = pool_ids(d)
    assert len(members) == 2
    assert d.request("GET", "/v1/sandboxes").json()["items"] == []
    for m in members:
        assert d.request("GET", "/v1/sandboxes/" + m).status == 404
        assert d.request("DELETE", "/v1/sandboxes/" + m).status == 404
    # A tenant allowed one sandbox gets one, although the pool holds two.
    key = d.create_key("pooltenant", max_sandboxes=1)
    sb = d.create_sandbox(key=key)
    r = d.request("POST", "/v1/sandboxes", {}, key=key)
    assert r.status == 429, r
    items = d.request("GET", "/v1/sandboxes", key=key).json()["items"]
    assert [i["id"] for i in items] == [sb["id"]]
    d.delete_sandbox(sb["id"], key=key)


def test_refill_after_claim_and_dead_member_replaced(pooled):
    d = pooled
    sb = d.create_sandbox()
    wait_pool(d, 2)
    victim = pool_ids(d)[0]
    pid = int(state_of(d, victim)["pid"])
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 20
    while time.time() < deadline:
        ids = pool_ids(d, running=False)
        if victim not in ids and len(pool_ids(d)) == 2:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("dead member not replaced: %s\n%s" % (pool_ids(d, False), d.log()))
    assert not cgroup_dirs(victim)
    assert victim not in slot_owners(d).values()
    # The claimed sandbox still works and a new claim works too.
    assert sh(d, sb["id"], "echo ok").strip() == "ok"
    sb2 = d.create_sandbox(name="beta")
    assert sh(d, sb2["id"], "hostname").strip() == "beta"
    d.delete_sandbox(sb["id"])
    d.delete_sandbox(sb2["id"])


def test_pool_disabled_creates_cold():
    with Daemon(extra_args=["--pool-size", "0"]) as d:
        sb = d.create_sandbox(name="cold")
        assert "warm pool" not in d.log()
        assert pool_ids(d, running=False) == []
        assert sh(d, sb["id"], "hostname").strip() == "cold"
        d.delete_sandbox(sb["id"])


def test_kill9_restart_leaks_nothing():
    d = Daemon(extra_args=["--pool-size", "3"])
    d.start()
    try:
        wait_pool(d, 3)
        sb = d.create_sandbox(name="survivor")
        members = wait_pool(d, 3)
        pids = [int(state_of(d, m)["pid"]) for m in members]
        d.kill9()
        # Restart with a smaller pool: one member adopted... the rest destroyed.
        d.extra_args = ["--pool-size", "1"]
        d.start()
        deadline = time.time() + 20
        while time.time() < deadline and len(pool_ids(d, running=False)) != 1:
            time.sleep(0.05)
        kept = pool_ids(d, running=False)
        assert len(kept) == 1 and kept[0] in members, (kept, members, d.log())
        assert "adopted member" in d.log()
        for m, pid in zip(members, pids):
            if m in kept:
                assert os.path.exists("/proc/%d" % pid)
                continue
            assert not cgroup_dirs(m), m
            assert not os.path.exists("/proc/%d" % pid) or \
                open("/proc/%d/stat" % pid).read().split()[2] == "Z"
        # The claimed sandbox survived the crash like any other.
        assert sh(d, sb["id"], "hostname").strip() == "survivor"
        owners = set(slot_owners(d).values())
        assert owners == {sb["id"], kept[0]}, owners
        d.delete_sandbox(sb["id"])
        # Graceful stop destroys the pool: nothing of this daemon remains.
        d.terminate()
        assert pool_ids(d, running=False) == []
        assert [n for n in os.listdir(os.path.join(d.state_dir, "uidslots")) if n.isdigit()] == []
        for m in members + kept + [sb["id"]]:
            assert not cgroup_dirs(m), m
        assert mounts_under_state(d.state_dir) == []
        for pid in pids:
            assert not os.path.exists("/proc/%d" % pid) or \
                open("/proc/%d/stat" % pid).read().split()[2] == "Z"
    finally:
        d.stop()


# The network namespace's cookie: unlike its inode number, never reused by
# the kernel for another namespace.
NETNS_COOKIE = ("python3 -c \"import socket, struct; s = socket.socket(socket.AF_UNIX); "
                "print(struct.unpack('Q', s.getsockopt(socket.SOL_SOCKET, 71, 8))[0])\"")


def churn_cookies(d, key, rounds=40):
    """Network namespace cookies of the sandboxes that key's tenant creates
    and deletes one after the other: until one comes back (the deleted
    ones' teardowns run in the background, so when is a matter of timing),
    at most `rounds` of them."""
    seen = []
    for _ in range(rounds):
        sb = d.create_sandbox(key=key)
        seen.append(int(sh(d, sb["id"], NETNS_COOKIE, key=key)))
        assert d.delete_sandbox(sb["id"], key=key).status == 204
        if len(set(seen)) < len(seen):
            break
        time.sleep(0.05)  # the teardown (and the namespace's check) run after the answer
    return seen


def test_network_namespaces_reused_within_a_tenant_only(pooled):
    """A deleted sandbox's network namespace comes back to its tenant's
    later sandboxes, through the warm pool too (netns.h cb_netns_retire:
    no new namespace made and torn down per sandbox), and never to another
    tenant's: it keeps the earlier sandbox's loopback counters."""
    d = pooled
    a, b = d.create_key("netns-a"), d.create_key("netns-b")
    seen_a = churn_cookies(d, a)
    assert len(set(seen_a)) < len(seen_a), seen_a
    seen_b = churn_cookies(d, b)
    assert not set(seen_b) & set(seen_a), (seen_a, seen_b)
    assert len(set(seen_b)) < len(seen_b), seen_b
    seen_a2 = churn_cookies(d, a)
    assert not set(seen_a2) & set(seen_b), (seen_b, seen_a2)
