"""Resource limits: fork bombs and memory hogs stay inside their sandbox."""
import json
import os
import time

import pytest


def test_fork_bomb_stops_at_pids_limit(rt):
    bomb = rt.sandbox("sb_bomb", "--pids", "64")
    neighbour = rt.sandbox("sb_neigh")
    # host evidence: the sandbox's pids cgroup, v1's pids hierarchy or v2's tree
    found = [p for p in (f"/sys/fs/cgroup/pids/cellbox/{bomb}", f"/sys/fs/cgroup/cellbox/{bomb}")
             if os.path.exists(f"{p}/pids.events")]
    if not found:
        pytest.skip("no pids cgroup of the sandbox on the host (cgroup v1 or v2)")
    cg = found[0]
    rt.sh(bomb, "setsid sh -c 'b() { b | b & }; b' </dev/null >/dev/null 2>&1 &", timeout=30)
    time.sleep(1.5)
    with open(f"{cg}/pids.events") as f:
        hits = int(f.read().split()[1])
    assert hits > 0  # forks were refused at the limit
    if os.path.exists(f"{cg}/pids.peak"):
        with open(f"{cg}/pids.peak") as f:
            assert int(f.read()) <= 64
    assert rt.sh(neighbour, "echo ok").stdout.strip() == "ok"
    # init survived it (judged on the host: starting a process inside may
    # still fail while the bomb holds every pid of the sandbox)
    with open("/proc/%d/stat" % rt.pid(bomb)) as f:
        assert f.read().rsplit(")", 1)[1].split()[0] in ("R", "S", "D")
    assert os.system("true") == 0  # the host still forks
    rt.cb("stop", bomb)  # killing init takes whatever is left of the bomb down
    for _ in range(40):  # init's zombie counts until its new parent reaps it
        if json.loads(rt.cb("stats", bomb).stdout)["pids"] == 0:
            break
        time.sleep(0.05)
    assert json.loads(rt.cb("stats", bomb).stdout)["pids"] == 0


def test_memory_hog_oom_killed_inside_only(rt):
    hog = rt.sandbox("sb_hog", "--memory", "64")
    neighbour = rt.sandbox("sb_nb2")
    init = rt.pid(hog)
    r = rt.sh(hog, "python3 -c 'x = bytearray(256 << 20); print(len(x))'", timeout=60)
    assert r.returncode != 0 and "268435456" not in r.stdout
    assert os.path.exists(f"/proc/{init}")  # init survived
    stats = json.loads(rt.cb("stats", hog).stdout)
    assert stats["oom_kills"] >= 1
    assert rt.sh(hog, "echo alive").stdout.strip() == "alive"
    assert rt.sh(neighbour, "echo ok").stdout.strip() == "ok"


def test_disk_quota_edquot(rt):
    info = json.loads(rt.cb("info", "-").stdout)
    if not info["disk_quota"]:
        pytest.skip(f"disk quota unavailable: {info['reason']}")
    sid = rt.sandbox("sb_disk", "--disk", "20")
    r = rt.sh(sid, "dd if=/dev/zero of=/workspace/big bs=1M count=64 2>&1; true", uid=1000)
    # XFS reports an exceeded project quota as ENOSPC ("No space left") or EDQUOT
    assert "Disk quota exceeded" in r.stdout or "No space left" in r.stdout
    used = os.path.getsize(os.path.join(rt.upper(sid), "workspace", "big"))
    assert used <= 21 << 20
