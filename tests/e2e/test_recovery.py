"""kill -9 of cellboxd loses nothing that was running."""
import concurrent.futures
import time


def test_kill9_recovery(own_daemon):
    d = own_daemon
    sb = d.create_sandbox(name="survivor")
    sid = sb["id"]
    pids = []
    for i in range(3):
        r = d.request("POST", "/v1/sandboxes/%s/processes" % sid,
                      {"cmd": "i=0; while true; do echo tick%d-$i; i=$((i+1)); sleep 0.2; done" % i})
        pids.append(r.json()["pid"])

    def slow_exec(i):
        try:
            return d.request("POST", "/v1/sandboxes/%s/exec" % sid, {"cmd": "sleep 2; echo %d" % i}).status
        except Exception:
            return None

    with concurrent.futures.ThreadPoolExecutor(24) as ex:
        futs = [ex.submit(slow_exec, i) for i in range(24)]
        time.sleep(0.7)
        d.kill9()
        for f in futs:
            f.result()
    d.start()
    got = d.request("GET", "/v1/sandboxes/" + sid).json()
    assert got["state"] == "running"
    procs = {p["pid"]: p for p in d.request("GET", "/v1/sandboxes/%s/processes" % sid).json()["items"]}
    for pid in pids:
        assert procs[pid]["state"] == "running"
        events = list(d.stream("GET", "/v1/sandboxes/%s/processes/%d/output" % (sid, pid)))
        assert any("tick" in e.get("data", "") for e in events)
    assert d.exec(sid, cmd="echo after")["stdout"] == "after\n"
