#!/usr/bin/env python3
"""API benchmarks of cellboxd (issue 3): prints figures, writes JSON.

  exec round trip  POST /exec {"argv":["true"]} over one keep-alive unix-socket
                   connection, p50/p99, against os.posix_spawn + waitpid of the
                   same binary on the host in the same run (ratio); the same
                   for build/bench/noop, a program without libc (on virtual
                   machines glibc's start is most of /bin/true's cost:
                   docs/operations.md, "Benchmarks")
  churn            create + exec + delete per second, several clients at once
  daemon memory    VmRSS of cellboxd with 0, 100 and 500 idle sandboxes
  --idle N         N idle sandboxes (10000 is the issue's target): creation rate,
                   /healthz and exec latency with all of them alive, daemon RSS,
                   host memory used, fds

It starts its own cellboxd (tests/e2e/cellboxd.py) with its state on a journaled
ext4 volume of its own (bench/volume.py; --state-on-tmp: under /tmp instead). Usage:
  /usr/bin/python3 bench/bench_api.py [--quick] [--idle N] [--out bench/results/api.json]
"""
import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from cellboxd import BUILD  # noqa: E402
from volume import VolumeDaemon  # noqa: E402


class Conn:
    """A minimal keep-alive HTTP/1.1 client over a unix socket: little enough
    overhead that the figures are the daemon's, not the client's."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(path)
        self.buf = b""

    def request(self, method, target, body=None):
        """body: JSON-encoded, or sent as it is when bytes."""
        raw = isinstance(body, bytes)
        data = body if raw else json.dumps(body).encode() if body is not None else b""
        head = "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % (method, target, len(data))
        if data:
            head += "Content-Type: %s\r\n" % ("application/octet-stream" if raw else
                                               "application/json")
        self.s.sendall(head.encode() + b"\r\n" + data)
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, (json.loads(body) if body else None)

    def _more(self):
        chunk = self.s.recv(65536)
        if not chunk:
            raise ConnectionError("daemon closed the connection")
        self.buf += chunk

    def close(self):
        self.s.close()


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def ms(values):
    return {"p50_ms": round(pct(values, 50) * 1e3, 3), "p99_ms": round(pct(values, 99) * 1e3, 3),
            "mean_ms": round(statistics.mean(values) * 1e3, 3), "n": len(values)}


def spawn_baseline(binary, n):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        pid = os.posix_spawn(binary, [binary], {})
        os.waitpid(pid, 0)
        times.append(time.perf_counter() - t0)
    return times


def exec_round_trips(sock, sbid, n, argv=("true",)):
    c = Conn(sock)
    target = "/v1/sandboxes/%s/exec" % sbid
    for _ in range(20):  # warm up
        c.request("POST", target, {"argv": list(argv)})
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, r = c.request("POST", target, {"argv": list(argv)})
        times.append(time.perf_counter() - t0)
        assert status == 200 and r["exit_code"] == 0, r
    c.close()
    return times


def cpu_seconds(pid):
    """CPU time of a process and its reaped children (user + system): for
    cellboxd that includes mkfs and the inits it started and reaped."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def host_busy_seconds():
    """CPU time every CPU of the host spent busy (user, nice, system, irq,
    softirq; not idle, iowait or steal): the whole cost of a cycle, the
    kernel's deferred work (namespace teardown, RCU, loop and writeback
    workers) and the sandboxes' own processes included."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


def churn(sock, seconds, clients, pid=None):
    stop = time.time() + seconds
    cpu0 = cpu_seconds(pid) if pid else 0
    busy0 = host_busy_seconds()

    def worker(_):
        c = Conn(sock)
        done, lat, steps = 0, [], {"create": [], "exec": [], "delete": []}
        while time.time() < stop:
            t0 = time.perf_counter()
            st, sb = c.request("POST", "/v1/sandboxes", {})
            assert st == 201, sb
            t1 = time.perf_counter()
            st, r = c.request("POST", "/v1/sandboxes/%s/exec" % sb["id"], {"argv": ["true"]})
            assert st == 200 and r["exit_code"] == 0, r
            t2 = time.perf_counter()
            st, _ = c.request("DELETE", "/v1/sandboxes/%s" % sb["id"])
            assert st == 204
            t3 = time.perf_counter()
            lat.append(t3 - t0)
            steps["create"].append(t1 - t0)
            steps["exec"].append(t2 - t1)
            steps["delete"].append(t3 - t2)
            done += 1
        c.close()
        return done, lat, steps

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        results = list(ex.map(worker, range(clients)))
    elapsed = time.time() - t0
    total = sum(r[0] for r in results)
    lat = [x for r in results for x in r[1]]
    # Each step of the cycle on its own: which of create, first exec and
    # delete the time goes to.
    steps = {k: ms([x for r in results for x in r[2][k]]) for k in ("create", "exec", "delete")}
    res = {"clients": clients, "seconds": round(elapsed, 2), "cycles": total,
           "per_second": round(total / elapsed, 1), "cycle_latency": ms(lat),
           "step_latency": steps}
    if pid and total:
        # CPU per cycle is steadier than cycles per second on a shared
        # host: other load slows the rate but barely changes the cost.
        res["daemon_cpu_ms_per_cycle"] = round((cpu_seconds(pid) - cpu0) * 1e3 / total, 2)
    if total:
        # Everything the host spent on it (the client's own share too):
        # steadier across runs than the rate on a shared machine.
        res["host_cpu_ms_per_cycle"] = round((host_busy_seconds() - busy0) * 1e3 / total, 2)
    return res


def memory_cgroups():
    """The memory controller's cgroups, removed ones still held included
    (/proc/cgroups): each keeps shrinker maps sized by the peak count of
    superblocks since boot (docs/operations.md)."""
    for line in open("/proc/cgroups"):
        w = line.split()
        if w and w[0] == "memory":
            return int(w[2])
    return 0


def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def mem_available_kib():
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


PINNED = ("SUnreclaim:", "KernelStack:", "PageTables:", "Percpu:", "AnonPages:")


def pinned_kib():
    """Host memory that cannot be reclaimed (kernel objects other than
    caches, kernel stacks, page tables, per-CPU data, anonymous memory):
    steadier than MemAvailable, which swings with page cache and reclaim."""
    total = 0
    for line in open("/proc/meminfo"):
        if line.startswith(PINNED):
            total += int(line.split()[1])
    return total


def meminfo_split():
    """The pinned parts of /proc/meminfo, each in KiB."""
    out = {}
    for line in open("/proc/meminfo"):
        if line.startswith(PINNED):
            out[line.split(":")[0]] = int(line.split()[1])
    return out


def slab_kib():
    """Every slab cache's size in KiB (objects x object size), {} when
    /proc/slabinfo cannot be read (not root)."""
    out = {}
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                if line.startswith(("slabinfo", "#")):
                    continue
                w = line.split()
                out[w[0]] = int(w[2]) * int(w[3]) / 1024.0
    except OSError:
        pass
    return out


def per_sandbox_split(before, after, n, top=12):
    """KiB per sandbox by meminfo field and by the largest slab caches'
    growth: where an idle sandbox's memory goes."""
    mi = {k: round((after[0][k] - before[0].get(k, 0)) / n, 1) for k in after[0]}
    grew = sorted(((after[1][k] - before[1].get(k, 0), k) for k in after[1]), reverse=True)
    slab = {k: round(d / n, 1) for d, k in grew[:top] if d > 0}
    return {"meminfo_kib": mi, "slab_kib_top": slab}


def settled_pinned_kib():
    """pinned_kib once it stops moving (three readings 0.5 s apart within
    256 KiB, at most ~15 s): the kernel frees what earlier work left
    (network namespaces, cgroups, RCU callbacks) in batches."""
    prev, still = pinned_kib(), 0
    for _ in range(30):
        if still >= 2:
            break
        time.sleep(0.5)
        now = pinned_kib()
        still = still + 1 if abs(now - prev) < 256 else 0
        prev = now
    return prev


def create_idle(sock, n, clients=4, progress_every=0):
    """n sandboxes by `clients` threads; every progress_every creates (0:
    never) a line with the count and the rate of the last stretch, which
    shows how creation slows as sandboxes accumulate."""
    lock = threading.Lock()
    made = [0, time.time()]

    def worker(k):
        c = Conn(sock)
        ids = []
        for _ in range(k):
            st, sb = c.request("POST", "/v1/sandboxes", {"metadata": {"bench": "idle"}})
            if st != 201:
                raise RuntimeError("create failed after %d: %r" % (len(ids), sb))
            ids.append(sb["id"])
            with lock:
                made[0] += 1
                if progress_every and made[0] % progress_every == 0:
                    now = time.time()
                    print("  %d created (%.1f/s over the last %d)"
                          % (made[0], progress_every / max(now - made[1], 1e-9), progress_every))
                    made[1] = now
        c.close()
        return ids

    share = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        ids = [i for part in ex.map(worker, share) for i in part]
    return ids, time.time() - t0


def delete_all(sock, ids, clients=4):
    def worker(part):
        c = Conn(sock)
        for i in part:
            c.request("DELETE", "/v1/sandboxes/%s" % i)
        c.close()
    parts = [ids[i::clients] for i in range(clients)]
    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        list(ex.map(worker, parts))


def latency_probe(sock, sbid, n=50):
    c = Conn(sock)
    health = []
    for _ in range(n):
        t0 = time.perf_counter()
        assert c.request("GET", "/healthz")[0] == 200
        health.append(time.perf_counter() - t0)
    c.close()
    return {"healthz": ms(health), "exec": ms(exec_round_trips(sock, sbid, n))}


def memory_steps(d, steps):
    out, ids = [], []
    for target in steps:
        more, _ = create_idle(d.socket_path, target - len(ids))
        ids += more
        time.sleep(1.0)
        out.append({"idle_sandboxes": target, "daemon_rss_kib": rss_kib(d.proc.pid),
                    "daemon_fds": d.fd_count()})
        print("  %5d idle sandboxes: daemon RSS %6d KiB, %d fds"
              % (target, out[-1]["daemon_rss_kib"], out[-1]["daemon_fds"]))
    delete_all(d.socket_path, ids)
    return out


def idle_target(d, n, on_measured=None):
    """n idle sandboxes: what they cost, measured before they are deleted;
    on_measured(res) is called with the figures before the deletes (a run
    cut short there still has them)."""
    avail0 = mem_available_kib()
    pinned0 = settled_pinned_kib()
    split0 = (meminfo_split(), slab_kib())
    ids, secs = create_idle(d.socket_path, n, clients=8, progress_every=1000 if n >= 2000 else 0)
    time.sleep(2.0)
    pinned1 = settled_pinned_kib()
    split = per_sandbox_split(split0, (meminfo_split(), slab_kib()), max(1, len(ids)))
    probe = latency_probe(d.socket_path, ids[len(ids) // 2])
    res = {"idle_sandboxes": len(ids), "create_seconds": round(secs, 1),
           "creates_per_second": round(len(ids) / secs, 1),
           "daemon_rss_kib": rss_kib(d.proc.pid), "daemon_fds": d.fd_count(),
           "host_memory_used_mib": round((avail0 - mem_available_kib()) / 1024.0, 1),
           "host_pinned_kib_per_sandbox": round((pinned1 - pinned0) / max(1, len(ids)), 1),
           "per_sandbox": split, "with_all_alive": probe}
    print("  %d idle sandboxes in %.1f s (%.0f/s); daemon RSS %d KiB, %d fds; host memory "
          "used %.0f MiB (%.0f KiB pinned per sandbox: no caches); healthz p50 %.3f ms, "
          "exec p50 %.3f ms"
          % (len(ids), secs, res["creates_per_second"], res["daemon_rss_kib"], res["daemon_fds"],
             res["host_memory_used_mib"], res["host_pinned_kib_per_sandbox"],
             probe["healthz"]["p50_ms"], probe["exec"]["p50_ms"]))
    print("  per sandbox, KiB: %s" % ", ".join("%s %.0f" % kv for kv in split["meminfo_kib"].items()))
    print("  largest slab caches' growth per sandbox, KiB: %s"
          % ", ".join("%s %.0f" % kv for kv in split["slab_kib_top"].items()))
    if on_measured:
        on_measured(res)
    t0 = time.time()
    delete_all(d.socket_path, ids, clients=8)
    res["delete_seconds"] = round(time.time() - t0, 1)
    return res


def exec_phase(d, n, results):
    """exec round trip over the API against posix_spawn on the host."""
    st, sb = Conn(d.socket_path).request("POST", "/v1/sandboxes", {})
    assert st == 201, sb
    true_bin = "/usr/bin/true"
    spawn = spawn_baseline(true_bin, n)
    api = exec_round_trips(d.socket_path, sb["id"], n)
    spawn2 = spawn_baseline(true_bin, n)  # again: the machine is noisy
    spawn_all = spawn + spawn2
    ratio = pct(api, 50) / pct(spawn_all, 50)
    results["exec_round_trip"] = {"api": ms(api), "posix_spawn": ms(spawn_all),
                                  "p50_ratio_api_vs_spawn": round(ratio, 2),
                                  "target_ratio": 1.5}
    print("exec round trip over the unix socket: p50 %.3f ms p99 %.3f ms"
          % (pct(api, 50) * 1e3, pct(api, 99) * 1e3))
    print("posix_spawn+wait of %s on the host: p50 %.3f ms p99 %.3f ms"
          % (true_bin, pct(spawn_all, 50) * 1e3, pct(spawn_all, 99) * 1e3))
    print("  ratio (p50) %.2fx (target <= 1.5x)" % ratio)
    # The floor without libc's start: build/bench/noop, put in the sandbox
    # through the files API.
    noop = os.path.join(BUILD, "bench", "noop")
    with open(noop, "rb") as f:
        st, r = Conn(d.socket_path).request(
            "PUT", "/v1/sandboxes/%s/files?path=/tmp/cb-noop&mode=0755" % sb["id"], f.read())
    assert st == 201, r
    spawn_noop = spawn_baseline(noop, n)
    api_noop = exec_round_trips(d.socket_path, sb["id"], n, ("/tmp/cb-noop",))
    spawn_noop += spawn_baseline(noop, n)
    ratio_noop = pct(api_noop, 50) / pct(spawn_noop, 50)
    results["exec_round_trip_noop"] = {"api": ms(api_noop), "posix_spawn": ms(spawn_noop),
                                       "p50_ratio_api_vs_spawn": round(ratio_noop, 2)}
    print("the same with a program without libc: over the API p50 %.3f ms, posix_spawn+wait "
          "p50 %.3f ms (%.2fx; the API's own share %.3f ms)"
          % (pct(api_noop, 50) * 1e3, pct(spawn_noop, 50) * 1e3, ratio_noop,
             (pct(api_noop, 50) - pct(spawn_noop, 50)) * 1e3))
    Conn(d.socket_path).request("DELETE", "/v1/sandboxes/%s" % sb["id"])


def state_fs(path, pid):
    """File system type and mount options of path (the longest mount point
    above it) as process pid sees it: creation costs differ widely between
    them (ext4 without a journal is slow under churn: docs/operations.md)."""
    best = ("", "?", "")
    with open("/proc/%d/mounts" % pid) as f:
        for line in f:
            dev, mnt, fstype, opts = line.split()[:4]
            mnt = mnt.replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                best = (mnt, fstype, opts)
    fstype, opts = best[1], best[2]
    if fstype == "ext4":
        # journal_task names the jbd2 thread's pid, or "<none>" without one
        dev = os.stat("/proc/%d/root%s" % (pid, path)).st_dev  # in pid's mount namespace
        try:
            with open("/sys/dev/block/%d:%d/uevent" % (os.major(dev), os.minor(dev))) as f:
                name = [l.split("=", 1)[1].strip() for l in f if l.startswith("DEVNAME=")][0]
            with open("/sys/fs/ext4/%s/journal_task" % name) as f:
                fstype = "ext4 (%s)" % ("no journal" if "none" in f.read() else "journal")
        except (OSError, IndexError):
            pass
    return {"type": fstype, "options": opts}


def write_results(path, results):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print("wrote", path)


def main():
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up while a long run goes on
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    ap.add_argument("--idle", type=int, default=0, help="also hold N idle sandboxes")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "api.json"))
    ap.add_argument("--daemon-args", default="", help="extra cellboxd arguments")
    ap.add_argument("--state-on-tmp", action="store_true",
                    help="the daemon's state under /tmp, not on a journaled volume of its own")
    ap.add_argument("--churn-only", action="store_true",
                    help="only the create+exec+delete phase (for before/after comparisons)")
    ap.add_argument("--churn-seconds", type=float, default=0,
                    help="length of each churn run (default 3 with --quick, else 10)")
    args = ap.parse_args()
    n = 100 if args.quick else 1000
    results = {"host": {"cpus": os.cpu_count(), "kernel": os.uname().release,
                        "uptime_seconds": round(float(open("/proc/uptime").read().split()[0])),
                        "memory_cgroups": memory_cgroups()}}
    with VolumeDaemon(extra_args=args.daemon_args.split(), state_on_tmp=args.state_on_tmp) as d:
        results["host"]["state_fs"] = state_fs(d.state_dir, d.pid)
        print("state dir %s on %s" % (d.state_dir, results["host"]["state_fs"]["type"]))
        if not args.churn_only:
            exec_phase(d, n, results)
        seconds = args.churn_seconds or (3 if args.quick else 10)
        for clients in (1, 4):
            c = churn(d.socket_path, seconds, clients, d.pid)
            results.setdefault("create_exec_delete", []).append(c)
            st = c["step_latency"]
            print("create+exec+delete, %d client(s): %.1f/s (cycle p50 %.2f ms, p99 %.2f ms; "
                  "target > 300/s)" % (clients, c["per_second"], c["cycle_latency"]["p50_ms"],
                                       c["cycle_latency"]["p99_ms"]))
            print("  p50 create %.2f ms, exec %.2f ms, delete %.2f ms; CPU per cycle: daemon "
                  "%.2f ms, whole host %.2f ms"
                  % (st["create"]["p50_ms"], st["exec"]["p50_ms"], st["delete"]["p50_ms"],
                     c.get("daemon_cpu_ms_per_cycle", 0), c.get("host_cpu_ms_per_cycle", 0)))
        if not args.churn_only:
            print("daemon memory:")
            steps = [0, 20] if args.quick else [0, 100, 500]
            results["daemon_memory"] = memory_steps(d, steps)
            if args.idle:
                print("idle target:")
                def measured(res):
                    results["idle_target"] = res
                    write_results(args.out, results)
                results["idle_target"] = idle_target(d, args.idle, measured)
    write_results(args.out, results)


if __name__ == "__main__":
    main()
