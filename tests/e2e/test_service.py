"""Service routes, routing errors, input limits and auth — no sandbox needed."""
import json
import os
import socket


def test_healthz(daemon):
    r = daemon.request("GET", "/healthz")
    assert r.status == 200 and r.json() == {"ok": True}


def test_info(daemon):
    info = daemon.request("GET", "/v1/info").json()
    assert info["version"]
    assert set(info["tiers"]) == {"container", "gvisor", "microvm"}
    assert info["tiers"]["gvisor"]["available"] is False and info["tiers"]["gvisor"]["reason"]
    assert "available" in info["disk_quota"]
    assert info["cgroup_version"] in ("v1", "v2")
    assert any(t["name"] == "host" for t in info["templates"])


def test_metrics(daemon):
    daemon.request("GET", "/healthz")
    text = daemon.request("GET", "/metrics").body.decode()
    assert 'cellbox_sandboxes{state="running"}' in text
    assert 'cellbox_http_requests_total{route="/healthz",code="200"}' in text
    assert "cellbox_http_request_duration_seconds_bucket" in text


def test_unknown_route_404_and_method_405(daemon):
    assert daemon.request("GET", "/v1/nothing").status == 404
    r = daemon.request("PUT", "/v1/info")
    assert r.status == 405 and "GET" in r.headers.get("allow", "")


def test_unknown_sandbox_404(daemon):
    for method, path in [("GET", "/v1/sandboxes/sb_0000000000000000"),
                         ("DELETE", "/v1/sandboxes/nope"),
                         ("POST", "/v1/sandboxes/nope/exec"),
                         ("GET", "/v1/sandboxes/nope/files?path=/etc/passwd")]:
        r = daemon.request(method, path, {} if method == "POST" else None)
        assert r.status == 404, (method, path, r)
        assert r.json()["error"]["code"] == "not_found"


def test_bad_json_400(daemon):
    r = daemon.request("POST", "/v1/sandboxes", raw=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status == 400 and r.json()["error"]["code"] == "bad_request"
    r = daemon.request("POST", "/v1/sandboxes", raw=b'{"name":"a","name":"b"}')
    assert r.status == 400  # duplicate keys are refused
    r = daemon.request("POST", "/v1/sandboxes", raw=b"[" * 100 + b"]" * 100)
    assert r.status == 400
    r = daemon.request("POST", "/v1/sandboxes", {"bogus_field": 1})
    assert r.status == 400 and "bogus_field" in r.json()["error"]["message"]


def read_all(s):
    """Everything the daemon sends before it closes (it may come in pieces)."""
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data


def test_oversized_body_413(daemon):
    # Declared too large: refused before the body is read.
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.socket_path)
    s.sendall(b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2 << 20))
    s.settimeout(5)
    data = read_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 413") and b"payload_too_large" in data
    # Chunked, growing past the cap while it arrives.
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.socket_path)
    s.sendall(b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    data = b""
    s.settimeout(5)
    try:
        for _ in range(40):
            s.sendall(chunk)
    except OSError:
        pass
    data = s.recv(4096)
    s.close()
    assert data.startswith(b"HTTP/1.1 413")


def test_large_exec_body_needs_a_known_caller(daemon):
    """Exec bodies may be large (they carry stdin), but only for an
    authenticated caller: an unknown one keeps the small cap."""
    s = socket.create_connection(("127.0.0.1", daemon.port))
    s.sendall(b"POST /v1/sandboxes/x/exec HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: %d\r\n\r\n" % (8 << 20))
    s.settimeout(5)
    data = s.recv(4096)
    s.close()
    assert data.startswith(b"HTTP/1.1 413"), data
    key = daemon.create_key("bigbody")
    s = socket.create_connection(("127.0.0.1", daemon.port))
    s.sendall(b"POST /v1/sandboxes/x/exec HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
              b"Content-Length: %d\r\n\r\n" % (key.encode(), 200 << 20))
    data = s.recv(4096)
    s.close()
    assert data.startswith(b"HTTP/1.1 413"), data  # past the large cap too


def test_oversized_headers_431(daemon):
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.socket_path)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
    data = s.recv(4096)
    s.close()
    assert data.startswith(b"HTTP/1.1 431")


def test_pipelining_and_keepalive(daemon):
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.socket_path)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    buf = b""
    s.settimeout(5)
    while buf.count(b'{"ok":true}') < 3:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    s.close()
    assert buf.count(b"HTTP/1.1 200") == 3


def test_chunked_request_body(daemon):
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.socket_path)
    body = b'{"tier":"gvisor"}'
    s.sendall(b"POST /v1/sandboxes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    s.settimeout(5)
    data = s.recv(4096)
    s.close()
    assert data.startswith(b"HTTP/1.1 503")  # the body was parsed: gvisor is unavailable


def test_other_tiers_503(daemon):
    for tier in ("gvisor", "microvm"):
        r = daemon.request("POST", "/v1/sandboxes", {"tier": tier})
        assert r.status == 503 and r.json()["error"]["code"] == "unavailable"
    assert daemon.request("GET", "/v1/snapshots").status == 503
    assert daemon.request("POST", "/v1/sandboxes", {"on_idle": "standby"}).status == 503


def test_tcp_requires_key(daemon):
    r = daemon.request("GET", "/v1/sandboxes", tcp=True)
    assert r.status == 401
    r = daemon.request("GET", "/v1/sandboxes", tcp=True, headers={"Authorization": "Bearer nope"})
    assert r.status == 401
    assert daemon.request("GET", "/healthz", tcp=True).status == 200


def test_keys_admin(daemon):
    r = daemon.request("POST", "/v1/admin/keys", {"tenant": "alpha"})
    assert r.status == 201
    key = r.json()["key"]
    kid = r.json()["id"]
    assert daemon.request("GET", "/v1/sandboxes", key=key).status == 200
    # a tenant key is not an admin key
    assert daemon.request("GET", "/v1/admin/keys", key=key).status == 401
    listed = daemon.request("GET", "/v1/admin/keys").json()["items"]
    assert any(k["id"] == kid for k in listed)
    assert all("key" not in k for k in listed)  # never shown again
    assert daemon.request("DELETE", "/v1/admin/keys/" + kid).status == 204
    assert daemon.request("GET", "/v1/sandboxes", key=key).status == 401
    assert daemon.request("DELETE", "/v1/admin/keys/" + kid).status == 404
    assert daemon.request("POST", "/v1/admin/keys", {"tenant": "Bad Name"}).status == 400


def test_helper_threads_are_named(daemon):
    """docs/operations.md names the threads an operator sees in top -H."""
    pid = daemon.proc.pid
    names = set()
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                names.add(f.read().strip())
        except OSError:
            pass  # a thread that just ended
    assert {"cb-netns", "cb-sbdirs", "cellboxd"} <= names, names
