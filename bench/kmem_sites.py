#!/usr/bin/env python3
"""Where an idle sandbox's kernel memory goes, by allocation site.

Starts a cellboxd (as bench_api does), creates a few warm-up sandboxes,
then records every slab allocation and free on the host (the kmem
tracepoints, with `perf record -a` in a private mount namespace with its
own tracefs: nothing is mounted on the host) while N more idle sandboxes
are created. Objects allocated in that window and still alive at its end,
grouped by the kernel function that allocated them and divided by N, are
what each sandbox holds; made-ahead spares (network namespaces, cgroups,
directories) are in steady state, so their churn cancels out.

Run it on a quiet host: the tracepoints see every allocation of every
process. Root only. Usage:
  /usr/bin/python3 bench/kmem_sites.py [-n 200] [--daemon-args ...] [--top 40]
      [--out bench/results/kmem-sites.json]
"""
import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_api import create_idle, delete_all, write_results  # noqa: E402
from volume import VolumeDaemon  # noqa: E402

EVENTS = "kmem:kmalloc,kmem:kfree,kmem:kmem_cache_alloc,kmem:kmem_cache_free"
# perf script's rendering of the four events' print formats
ALLOC = re.compile(r"(kmalloc|kmem_cache_alloc):\s+call_site=(\S+)\s+ptr=(0x[0-9a-f]+)"
                   r"(?:\s+name=(\S+))?\s+bytes_req=\d+\s+bytes_alloc=(\d+)")
FREE = re.compile(r"(kfree|kmem_cache_free):\s+call_site=\S+\s+ptr=(0x[0-9a-f]+)")


def site_name(call_site):
    """'func+0x1a/0x80' -> 'func'."""
    return call_site.split("+", 1)[0]


def live_by_site(script_lines):
    """{(site, cache): [objects, bytes]} of allocations without a free."""
    live = {}
    for line in script_lines:
        m = ALLOC.search(line)
        if m:
            cache = m.group(4) or "kmalloc-%s" % m.group(5)
            live[m.group(3)] = (site_name(m.group(2)), cache, int(m.group(5)))
            continue
        m = FREE.search(line)
        if m:
            live.pop(m.group(2), None)
    out = collections.defaultdict(lambda: [0, 0])
    for site, cache, size in live.values():
        out[(site, cache)][0] += 1
        out[(site, cache)][1] += size
    return out


def record(n, d, tmp):
    """perf record over the creation of n sandboxes; the perf.data path."""
    data = os.path.join(tmp, "kmem.data")
    perf = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         "mount -t tracefs none /sys/kernel/tracing && exec perf record -q -a -m 8192 "
         "-e %s -o %s" % (EVENTS, data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(2.0)  # perf is attached once it has opened its buffers
    if perf.poll() is not None:
        raise RuntimeError("perf record failed: %s" % perf.stderr.read().decode()[-500:])
    ids, secs = create_idle(d.socket_path, n, clients=4)
    time.sleep(3.0)  # what the kernel frees late (RCU) is freed inside the window
    perf.send_signal(signal.SIGINT)
    err = perf.communicate(timeout=120)[1].decode()
    if "lost" in err.lower():
        print("perf: " + err.strip())
    return ids, secs, data


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200, help="sandboxes created while recording")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--daemon-args", default="", help="extra cellboxd arguments")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "kmem-sites.json"))
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("perf"):
        sys.exit("kmem_sites: needs root and perf (linux-perf)")
    tmp = tempfile.mkdtemp(prefix="cb-kmem-")
    try:
        with VolumeDaemon(extra_args=args.daemon_args.split()) as d:
            warm, _ = create_idle(d.socket_path, 20)  # spares made, caches grown
            time.sleep(2.0)
            ids, secs, data = record(args.n, d, tmp)
            script = subprocess.Popen(["perf", "script", "-i", data, "-F", "event,trace"],
                                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True)
            sites = live_by_site(script.stdout)
            script.wait()
            delete_all(d.socket_path, ids + warm)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n = len(ids)
    rows = sorted(sites.items(), key=lambda kv: -kv[1][1])
    total = sum(v[1] for v in sites.values()) / 1024.0 / n
    by_cache = collections.defaultdict(int)
    for (site, cache), (objs, size) in sites.items():
        by_cache[cache] += size
    print("%d sandboxes created in %.1f s while recording; slab objects still alive per "
          "sandbox: %.1f KiB" % (n, secs, total))
    print("%8s %7s  %-24s %s" % ("KiB/sbx", "objs", "cache", "allocated by"))
    for (site, cache), (objs, size) in rows[:args.top]:
        print("%8.2f %7.2f  %-24s %s" % (size / 1024.0 / n, objs / float(n), cache, site))
    res = {"sandboxes": n, "kernel": os.uname().release,
           "slab_kib_per_sandbox": round(total, 1),
           "by_cache_kib": {c: round(b / 1024.0 / n, 2)
                            for c, b in sorted(by_cache.items(), key=lambda kv: -kv[1])[:30]},
           "by_site": [{"site": s, "cache": c, "kib": round(b / 1024.0 / n, 2),
                        "objects": round(o / float(n), 2)} for (s, c), (o, b) in rows[:200]]}
    write_results(args.out, res)


if __name__ == "__main__":
    main()
