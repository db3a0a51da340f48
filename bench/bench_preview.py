#!/usr/bin/python3
"""Preview proxy throughput and added latency (issue #5).

Starts a real cellboxd (TCP listener, preview domain "localhost"), one
sandbox running a small keep-alive HTTP/1.1 server (Python standard library,
1 KiB answers), and measures with wrk (Debian):

  proxy   wrk on the host → cellboxd (Host-header routing, token header)
          → socket in the sandbox's netns → server
  direct  wrk inside the sandbox's network namespace
          (nsenter --net=/proc/<server pid>/ns/net) → the same server

Prints the figures and writes bench/results/preview.json with requests/s,
latency p50/p99 of both, and the ratios. Needs root. Usage:
  /usr/bin/python3 bench/bench_preview.py [--duration 8] [--connections 16]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from cellboxd import Daemon  # noqa: E402

PORT = 8300
MARKER = "cellbox_bench_preview_server"
SERVER = r'''
import http.server, sys
BODY = b"x" * 1024
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16             # head + body in one write (no Nagle/delayed-ACK stall)
    disable_nagle_algorithm = True
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    request_queue_size = 1024      # the default backlog of 5 drops SYNs under wrk
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def parse_wrk(out):
    res = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct, key in (("50", "latency_p50_ms"), ("99", "latency_p99_ms")):
        res[key] = to_ms(re.search(r"^\s+%s(?:\.000)?%%\s+(\S+)" % pct, out, re.M).group(1))
    errs = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non_2xx"] = int(errs.group(1)) if errs else 0
    return res


def wrk(prefix, url, args, headers=()):
    cmd = list(prefix) + ["wrk", "-t2", "-c%d" % args.connections, "-d%ds" % args.duration,
                          "--latency"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=args.duration + 60)
    if out.returncode != 0:
        raise RuntimeError("wrk failed: %s %s" % (out.stdout, out.stderr))
    return parse_wrk(out.stdout), out.stdout


def server_pid():
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if MARKER.encode() in f.read():
                    return int(pid)
        except OSError:
            pass
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "preview.json"))
    args = ap.parse_args()
    with Daemon(tcp=True, extra_args=["--preview-domain", "localhost"]) as d:
        r = d.request("POST", "/v1/sandboxes", {})
        assert r.status == 201, r
        sid = r.json()["id"]
        path = "/tmp/%s.py" % MARKER
        assert d.request("PUT", "/v1/sandboxes/%s/files?path=%s" % (sid, path),
                         raw=SERVER.encode()).status == 201
        assert d.request("POST", "/v1/sandboxes/%s/processes" % sid,
                         {"argv": ["python3", path, str(PORT)]}).status == 201
        tok = d.request("POST", "/v1/sandboxes/%s/ports" % sid, {"port": PORT}).json()["token"]
        host = "%d-%s.localhost:%d" % (PORT, sid, d.port)
        hdrs = ["Host: " + host, "X-Cellbox-Token: " + tok]
        for _ in range(100):
            c = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}"] +
                               sum((["-H", h] for h in hdrs), []) +
                               ["http://127.0.0.1:%d/" % d.port], capture_output=True, text=True)
            if c.stdout == "200":
                break
            time.sleep(0.1)
        pid = server_pid()
        assert pid, "server process not found"
        netns = ["nsenter", "--net=/proc/%d/ns/net" % pid]
        direct, direct_out = wrk(netns, "http://127.0.0.1:%d/" % PORT, args)
        proxy, proxy_out = wrk((), "http://127.0.0.1:%d/" % d.port, args, hdrs)
    result = {
        "what": "GET 1 KiB from a keep-alive Python HTTP/1.1 server inside a sandbox",
        "tool": "wrk -t2 -c%d -d%ds" % (args.connections, args.duration),
        "host_cpus": os.cpu_count(),
        "proxy": proxy,
        "direct": direct,
        "throughput_ratio_proxy_vs_direct": round(proxy["requests_per_s"] /
                                                  direct["requests_per_s"], 3),
        "p50_added_ms": round(proxy["latency_p50_ms"] - direct["latency_p50_ms"], 3),
        "p99_added_ms": round(proxy["latency_p99_ms"] - direct["latency_p99_ms"], 3),
        "notes": "proxy opens one upstream connection per request (Connection: close to "
                 "the server) from a socket created in the sandbox's network namespace; "
                 "the client side is keep-alive. Shared 2-core build machine: figures are "
                 "indicative.",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print("direct (in the sandbox's netns): %8.0f req/s  p50 %.2f ms  p99 %.2f ms" %
          (direct["requests_per_s"], direct["latency_p50_ms"], direct["latency_p99_ms"]))
    print("through the preview proxy:       %8.0f req/s  p50 %.2f ms  p99 %.2f ms" %
          (proxy["requests_per_s"], proxy["latency_p50_ms"], proxy["latency_p99_ms"]))
    print("ratio proxy/direct: %.3f   added p50 %.2f ms   added p99 %.2f ms" %
          (result["throughput_ratio_proxy_vs_direct"], result["p50_added_ms"],
           result["p99_added_ms"]))
    if proxy["non_2xx"] or direct["non_2xx"]:
        print("WARNING: non-2xx answers: proxy %d direct %d" % (proxy["non_2xx"],
                                                               direct["non_2xx"]))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
