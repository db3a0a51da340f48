"""Write a script through the files API, run it at once: the agent's most
common pair of calls. It must work while other sandboxes are being created
(each creation clones the daemon, and the clone holds a copy of every
descriptor the daemon had open at that instant, the script's writable one
included, until it closes them: exec then failed with ETXTBSY), and a file
really held open for writing must still be refused."""
import threading


def write_script(d, sid, path):
    r = d.request("PUT", "/v1/sandboxes/%s/files?path=%s&mode=0755" % (sid, path),
                  raw=b"#!/bin/sh\necho ran\n")
    assert r.status in (200, 201, 204), r


def test_write_then_exec_during_create_churn(own_daemon):
    d = own_daemon
    sid = d.create_sandbox()["id"]
    stop = threading.Event()
    errors = []

    def churn():
        try:
            while not stop.is_set():
                d.delete_sandbox(d.create_sandbox()["id"])
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=churn) for _ in range(2)]
    for t in threads:
        t.start()
    failed = []
    try:
        for i in range(150):
            path = "/workspace/s%d.sh" % i
            write_script(d, sid, path)
            r = d.request("POST", "/v1/sandboxes/%s/exec" % sid, {"argv": [path]})
            if r.status != 200 or r.json().get("stdout") != "ran\n":
                failed.append((r.status, r.body[:200]))
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert failed == [], "%d of 150 failed, e.g. %s" % (len(failed), failed[:3])


def test_file_held_open_for_writing_is_still_busy(own_daemon):
    d = own_daemon
    sid = d.create_sandbox()["id"]
    write_script(d, sid, "/workspace/busy.sh")
    # a process of the sandbox keeps it open for writing
    r = d.request("POST", "/v1/sandboxes/%s/processes" % sid,
                  {"argv": ["sh", "-c", "exec 3>>/workspace/busy.sh; echo open; sleep 60"]})
    assert r.status in (200, 201), r
    for _ in range(100):
        if "open" in d.exec(sid, cmd="cat /proc/[0-9]*/fdinfo/3 >/dev/null 2>&1 && "
                                    "ls -l /proc/[0-9]*/fd/3 2>/dev/null | grep -q busy.sh "
                                    "&& echo open")["stdout"]:
            break
    r = d.request("POST", "/v1/sandboxes/%s/exec" % sid, {"argv": ["/workspace/busy.sh"]})
    assert r.status == 400 and b"Text file busy" in r.body, (r.status, r.body[:200])
