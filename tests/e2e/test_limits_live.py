"""Limits changed live with PATCH /v1/sandboxes/{id}: enforced on the host
at once, refused with a clear error when they cannot be, and the record
never shows limits that are not enforced.

Judged on the host: the sandbox's cgroup files, not what the API echoes."""
import glob
import time

import pytest


def sbpath(sb, rest=""):
    return "/v1/sandboxes/%s%s" % (sb["id"], rest)


def cgroup_file(sid, name):
    """The sandbox's cgroup control file `name` (v1: in whichever hierarchy
    has it; v2: the unified one), or None."""
    for d in glob.glob("/sys/fs/cgroup/*/cellbox/" + sid) + glob.glob("/sys/fs/cgroup/cellbox/" + sid):
        try:
            with open("%s/%s" % (d, name)) as f:
                return f.read().strip()
        except OSError:
            continue
    return None


def memory_limit(sid):
    v = cgroup_file(sid, "memory.limit_in_bytes") or cgroup_file(sid, "memory.max")
    return None if v is None else int(v)


def memory_used(sid):
    return int(cgroup_file(sid, "memory.usage_in_bytes") or cgroup_file(sid, "memory.current"))


def v1():
    return bool(glob.glob("/sys/fs/cgroup/memory/cellbox"))


def test_patch_limits_enforced_live(daemon, sandbox_works):
    sb = daemon.create_sandbox(memory_mb=256, pids=128)
    try:
        assert memory_limit(sb["id"]) == 256 << 20
        assert cgroup_file(sb["id"], "pids.max") == "128"
        r = daemon.request("PATCH", sbpath(sb), {"limits": {"memory_mb": 96, "pids": 40}})
        assert r.status == 200, r
        assert r.json()["limits"]["memory_mb"] == 96 and r.json()["limits"]["pids"] == 40
        assert memory_limit(sb["id"]) == 96 << 20
        assert cgroup_file(sb["id"], "pids.max") == "40"
        # The new limit holds: 160 MiB no longer fit, 32 MiB still do.
        hog = "python3 -c 'b = bytearray(%d << 20); print(len(b))'"
        r = daemon.exec(sb["id"], cmd=hog % 160, timeout=60)
        assert r["exit_code"] != 0 or r["signal"], r
        assert daemon.exec(sb["id"], cmd=hog % 32, timeout=60)["stdout"] == str(32 << 20) + "\n"
        # Raised again, live: 160 MiB fit now.
        r = daemon.request("PATCH", sbpath(sb), {"limits": {"memory_mb": 320}})
        assert r.status == 200 and memory_limit(sb["id"]) == 320 << 20
        assert cgroup_file(sb["id"], "pids.max") == "40"  # untouched keys keep their value
        assert daemon.exec(sb["id"], cmd=hog % 160, timeout=60)["stdout"] == str(160 << 20) + "\n"
    finally:
        daemon.delete_sandbox(sb["id"])


def test_patch_memory_below_use(daemon, sandbox_works):
    """v1 reclaims and then refuses a limit below what is in use: the PATCH
    fails with a conflict and both the cgroup and the record (also after a
    restart) keep the old limit. v2 reclaims and then OOM-kills inside the
    sandbox (the kernel's semantics there, as Docker's): the new limit
    holds and the record says so."""
    sb = daemon.create_sandbox(memory_mb=256)
    try:
        r = daemon.request("POST", sbpath(sb, "/processes"), {
            "cmd": "python3 -c 'import time; b = bytearray(150 << 20); print(1, flush=True); "
                   "time.sleep(600)'"})
        assert r.status == 201, r
        pid = r.json()["pid"]
        deadline = time.time() + 30
        while memory_used(sb["id"]) < 150 << 20:
            assert time.time() < deadline, "the hog never held 150 MiB"
            time.sleep(0.1)
        init_exempt = daemon.exec(sb["id"], cmd="cat /proc/1/oom_score_adj")["stdout"] == "-1000\n"
        r = daemon.request("PATCH", sbpath(sb), {"limits": {"memory_mb": 64}})
        if v1():
            assert r.status == 409, r
            err = r.json()["error"]
            assert err["code"] == "conflict" and "below what the sandbox uses" in err["message"]
            assert memory_limit(sb["id"]) == 256 << 20
            assert daemon.request("GET", sbpath(sb)).json()["limits"]["memory_mb"] == 256
            daemon.restart()
            assert daemon.request("GET", sbpath(sb)).json()["limits"]["memory_mb"] == 256
            p = daemon.request("GET", sbpath(sb, "/processes/%d" % pid)).json()
            assert p["state"] == "running", p
        else:
            assert r.status == 200, r
            assert memory_limit(sb["id"]) == 64 << 20
            r = daemon.request("GET", sbpath(sb, "/processes/%d/wait?timeout=30" % pid))
            assert r.status == 200, (r, daemon.log()[-3000:])
            w = r.json()
            # The hog (python under the shell) is the OOM killer's victim:
            # the process ended by SIGKILL, or its shell reports that (128+9).
            assert w["state"] == "exited" and (w["signal"] == 9 or w["exit_code"] == 137), w
            assert daemon.request("GET", sbpath(sb)).json()["limits"]["memory_mb"] == 64
            # The kernel's memory.max write may kill more than the hog (it
            # calls the OOM killer again before the hog's memory is freed):
            # init, exempt, survives it, and the sandbox goes on.
            if init_exempt:
                assert daemon.exec(sb["id"], cmd="echo alive")["stdout"] == "alive\n"
                assert daemon.request("GET", sbpath(sb)).json()["state"] == "running"
    finally:
        daemon.delete_sandbox(sb["id"])


def test_patch_memory_counts_against_tenant_quota(daemon, sandbox_works):
    key = daemon.create_key("mem-quota-t", max_memory_mb=600)
    a = daemon.create_sandbox(key=key, memory_mb=256)
    b = daemon.create_sandbox(key=key, memory_mb=256)
    try:
        r = daemon.request("PATCH", sbpath(a), {"limits": {"memory_mb": 512}}, key=key)
        assert r.status == 429 and r.json()["error"]["code"] == "limit_exceeded", r
        assert "600 MiB" in r.json()["error"]["message"]
        assert memory_limit(a["id"]) == 256 << 20
        assert daemon.request("GET", sbpath(a), key=key).json()["limits"]["memory_mb"] == 256
        # Up to the quota exactly, then one more MiB is refused.
        assert daemon.request("PATCH", sbpath(a), {"limits": {"memory_mb": 344}}, key=key).status == 200
        assert memory_limit(a["id"]) == 344 << 20
        r = daemon.request("PATCH", sbpath(b), {"limits": {"memory_mb": 257}}, key=key)
        assert r.status == 429, r
        # Less is always allowed, and other changes in the same body too.
        r = daemon.request("PATCH", sbpath(a), {"limits": {"memory_mb": 128, "pids": 64}}, key=key)
        assert r.status == 200 and memory_limit(a["id"]) == 128 << 20
    finally:
        daemon.delete_sandbox(a["id"], key=key)
        daemon.delete_sandbox(b["id"], key=key)


@pytest.mark.parametrize("limits", [{"memory_mb": 8}, {"memory_mb": "lots"}, {"pids": 1},
                                    {"cpu": -1}, {"swap": 1}])
def test_patch_bad_limits_change_nothing(daemon, sandbox, limits):
    before = memory_limit(sandbox["id"])
    r = daemon.request("PATCH", sbpath(sandbox), {"limits": limits})
    assert r.status == 400 and r.json()["error"]["message"], r
    assert memory_limit(sandbox["id"]) == before
    assert daemon.request("GET", sbpath(sandbox)).json()["limits"]["memory_mb"] == before >> 20
