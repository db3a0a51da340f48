"""Preview URLs (issue #5): the ports API and the reverse proxy into a sandbox.

Servers run inside one sandbox as background processes (python3 from the
host template): `python3 -m http.server` bound to 127.0.0.1 (only reachable
from inside the sandbox's network namespace), a small HTTP/1.1 app that
echoes what it received and hashes request bodies, and a WebSocket echo
server — all standard library. The daemon listens on TCP with the preview
domain `localhost`; tests send the Host header explicitly.
"""
import base64
import hashlib
import http.client
import json
import os
import socket
import struct
import time

import pytest

from cellboxd import Daemon

HTTP_PORT, APP_PORT, WS_PORT, DEAD_PORT = 8000, 8100, 8200, 8999
BIG = 50 * 1024 * 1024
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

APP = r'''
import hashlib, http.server, json, sys

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                n = int(self.rfile.readline().split(b";")[0], 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                yield self.rfile.read(n)
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        while left:
            b = self.rfile.read(min(left, 1 << 20))
            if not b:
                return
            left -= len(b)
            yield b

    def answer(self):
        h, n = hashlib.sha256(), 0
        for b in self.body():
            h.update(b)
            n += len(b)
        out = json.dumps({"method": self.command, "path": self.path, "length": n,
                          "sha256": h.hexdigest(),
                          "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = answer

    def log_message(self, *a):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''

WS_SERVER = r'''
import base64, hashlib, socket, struct, sys, threading

def need(c, buf, n):
    while len(buf) < n:
        x = c.recv(65536)
        if not x:
            raise EOFError
        buf += x
    return buf[:n], buf[n:]

def handle(c):
    data = b""
    while b"\r\n\r\n" not in data:
        x = c.recv(4096)
        if not x:
            return
        data += x
    head, buf = data.split(b"\r\n\r\n", 1)
    key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n")
           if l.lower().startswith(b"sec-websocket-key:")][0]
    acc = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
    try:
        while True:
            h, buf = need(c, buf, 2)
            op, ln = h[0] & 15, h[1] & 127
            if ln == 126:
                x, buf = need(c, buf, 2); ln = struct.unpack(">H", x)[0]
            elif ln == 127:
                x, buf = need(c, buf, 8); ln = struct.unpack(">Q", x)[0]
            mask = b"\0\0\0\0"
            if h[1] & 128:
                mask, buf = need(c, buf, 4)
            p, buf = need(c, buf, ln)
            p = bytes(b ^ mask[i % 4] for i, b in enumerate(p))
            if op == 8:
                c.sendall(bytes([0x88, len(p)]) + p)
                return
            if ln < 126:
                hdr = bytes([0x80 | op, ln])
            else:
                hdr = bytes([0x80 | op, 126]) + struct.pack(">H", ln)
            c.sendall(hdr + p)
    except EOFError:
        pass
    finally:
        c.close()

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
'''


# ---- fixtures -----------------------------------------------------------------

@pytest.fixture(scope="module")
def d():
    dm = Daemon(tcp=True, extra_args=["--preview-domain", "localhost"])
    dm.start()
    yield dm
    dm.stop()


def put_file(d, sid, path, data):
    r = d.request("PUT", "/v1/sandboxes/%s/files?path=%s&mkdirs=1" % (sid, path), raw=data)
    assert r.status == 201, r


def start_bg(d, sid, argv):
    r = d.request("POST", "/v1/sandboxes/%s/processes" % sid, {"argv": argv})
    assert r.status == 201, r


def expose(d, sid, port, public=False, key=None):
    r = d.request("POST", "/v1/sandboxes/%s/ports" % sid, {"port": port, "public": public},
                  key=key)
    assert r.status in (200, 201), r
    return r.json()


def host(d, sid, port):
    return "%d-%s.localhost:%d" % (port, sid, d.port)


def get(d, path, headers=None, method="GET", body=None, timeout=60):
    """One request over TCP; headers may carry Host (Host-form routing)."""
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def wait_up(d, sid, port, token):
    deadline = time.time() + 20
    while time.time() < deadline:
        st, _, _ = get(d, "/", {"Host": host(d, sid, port), "X-Cellbox-Token": token})
        if st != 502:
            return
        time.sleep(0.2)
    raise AssertionError("server on port %d never came up" % port)


@pytest.fixture(scope="module")
def sb(d):
    return setup_sandbox(d)


def setup_sandbox(d):
    r = d.request("POST", "/v1/sandboxes", {})
    if r.status != 201:
        pytest.skip("cannot create sandboxes here: %r" % r)
    sid = r.json()["id"]
    d.exec(sid, cmd="mkdir -p /tmp/www && echo hello-preview > /tmp/www/index.txt && "
                    "head -c %d /dev/urandom > /tmp/www/big.bin" % BIG)
    put_file(d, sid, "/tmp/app.py", APP.encode())
    put_file(d, sid, "/tmp/ws.py", WS_SERVER.encode())
    start_bg(d, sid, ["python3", "-m", "http.server", "--bind", "127.0.0.1",
                      "--directory", "/tmp/www", str(HTTP_PORT)])
    start_bg(d, sid, ["python3", "/tmp/app.py", str(APP_PORT)])
    start_bg(d, sid, ["python3", "/tmp/ws.py", str(WS_PORT)])
    tokens = {p: expose(d, sid, p)["token"] for p in (HTTP_PORT, APP_PORT, WS_PORT)}
    for p in (HTTP_PORT, APP_PORT):
        wait_up(d, sid, p, tokens[p])
    big_sha = d.exec(sid, cmd="sha256sum /tmp/www/big.bin")["stdout"].split()[0]
    return {"id": sid, "tokens": tokens, "big_sha": big_sha}


# ---- ports API ----------------------------------------------------------------

def test_ports_api(d, sb):
    sid = sb["id"]
    r = d.request("POST", "/v1/sandboxes/%s/ports" % sid, {"port": 9100})
    assert r.status == 201, r
    p = r.json()
    assert p["port"] == 9100 and p["public"] is False and p["created_at"] > 0
    assert len(p["token"]) == 43 and set(p["token"]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert p["url"] == "http://9100-%s.localhost:%d/" % (sid, d.port)
    # Idempotent: the same token again, 200.
    r2 = d.request("POST", "/v1/sandboxes/%s/ports" % sid, {"port": 9100, "public": True})
    assert r2.status == 200 and r2.json()["token"] == p["token"] and r2.json()["public"]
    items = d.request("GET", "/v1/sandboxes/%s/ports" % sid).json()["items"]
    assert 9100 in [i["port"] for i in items]
    for bad in ({"port": 0}, {"port": 65536}, {"port": "80"}, {"port": 80, "public": 1}, {}):
        assert d.request("POST", "/v1/sandboxes/%s/ports" % sid, bad).status == 400, bad
    assert d.request("DELETE", "/v1/sandboxes/%s/ports/9100" % sid).status == 204
    assert d.request("DELETE", "/v1/sandboxes/%s/ports/9100" % sid).status == 404
    assert d.request("DELETE", "/v1/sandboxes/%s/ports/x" % sid).status == 400


def test_ports_tenant_isolation(d, sb):
    key_a, key_b = d.create_key("tenant-a"), d.create_key("tenant-b")
    r = d.request("POST", "/v1/sandboxes", {}, key=key_a)
    assert r.status == 201, r
    sid = r.json()["id"]
    try:
        tok = expose(d, sid, 9200, key=key_a)["token"]
        assert d.request("GET", "/v1/sandboxes/%s/ports" % sid, key=key_b).status == 404
        assert d.request("POST", "/v1/sandboxes/%s/ports" % sid, {"port": 1},
                         key=key_b).status == 404
        assert d.request("DELETE", "/v1/sandboxes/%s/ports/9200" % sid,
                         key=key_b).status == 404
        # B's key opens nothing on A's port; A's key does (nothing listens: 502).
        st, _, _ = get(d, "/", {"Host": host(d, sid, 9200), "Authorization": "Bearer " + key_b})
        assert st == 401
        st, _, _ = get(d, "/", {"Host": host(d, sid, 9200), "Authorization": "Bearer " + key_a})
        assert st == 502
        st, _, _ = get(d, "/", {"Host": host(d, sid, 9200), "X-Cellbox-Token": tok})
        assert st == 502
    finally:
        d.request("DELETE", "/v1/sandboxes/" + sid)
    # Ports go with their sandbox.
    assert d.request("GET", "/v1/sandboxes/%s/ports" % sid).status == 404


# ---- both URL forms -------------------------------------------------------------

def test_host_form(d, sb):
    st, h, body = get(d, "/index.txt", {"Host": host(d, sb["id"], HTTP_PORT),
                                        "X-Cellbox-Token": sb["tokens"][HTTP_PORT]})
    assert st == 200 and body == b"hello-preview\n", (st, body)


def test_path_form_tcp_and_unix(d, sb):
    path = "/v1/sandboxes/%s/ports/%d/proxy/index.txt" % (sb["id"], HTTP_PORT)
    st, _, body = get(d, path, {"X-Cellbox-Token": sb["tokens"][HTTP_PORT]})
    assert st == 200 and body == b"hello-preview\n"
    r = d.request("GET", path)  # unix socket = admin
    assert r.status == 200 and r.body == b"hello-preview\n"


def test_forwarded_request_is_clean(d, sb):
    """Prefix stripped, cellbox credentials removed, X-Forwarded-* added."""
    key = d.create_key("admin")
    tok = sb["tokens"][APP_PORT]
    path = "/v1/sandboxes/%s/ports/%d/proxy/a/b?x=1" % (sb["id"], APP_PORT)
    st, _, body = get(d, path, {"Authorization": "Bearer " + key,
                                "Cookie": "cellbox_token=%s; app=1" % tok,
                                "X-Cellbox-Token": tok})
    assert st == 200, body
    seen = json.loads(body)
    assert seen["path"] == "/a/b?x=1"
    hd = seen["headers"]
    assert "authorization" not in hd and "x-cellbox-token" not in hd
    assert hd["cookie"] == "app=1"
    assert hd["x-forwarded-for"] == "127.0.0.1" and hd["x-forwarded-proto"] == "http"
    assert tok not in body.decode()


# ---- access ------------------------------------------------------------------------

def test_access_rules(d, sb):
    sid, tok = sb["id"], sb["tokens"][HTTP_PORT]
    hh = host(d, sid, HTTP_PORT)
    st, h, body = get(d, "/index.txt", {"Host": hh})
    assert st == 401 and b"<html" in body.lower()
    assert get(d, "/index.txt", {"Host": hh, "X-Cellbox-Token": "wrong"})[0] == 403
    assert get(d, "/index.txt", {"Host": hh, "Cookie": "cellbox_token=wrong"})[0] == 403
    assert get(d, "/index.txt?cellbox_token=wrong", {"Host": hh})[0] == 403
    # ?cellbox_token= → redirect without it, setting an HttpOnly cookie.
    st, h, _ = get(d, "/index.txt?a=1&cellbox_token=%s" % tok, {"Host": hh})
    assert st == 302 and h["location"] == "/index.txt?a=1", h
    cookie = h["set-cookie"]
    assert "HttpOnly" in cookie and "Domain" not in cookie
    st, _, body = get(d, "/index.txt", {"Host": hh, "Cookie": cookie.split(";")[0]})
    assert st == 200 and body == b"hello-preview\n"
    # Path form: the cookie is limited to that port's proxy path.
    base = "/v1/sandboxes/%s/ports/%d/proxy" % (sid, HTTP_PORT)
    st, h, _ = get(d, base + "/index.txt?cellbox_token=" + tok)
    assert st == 302 and h["location"] == base + "/index.txt"
    assert "Path=%s;" % base in h["set-cookie"]


def test_public_and_unexpose(d, sb):
    sid = sb["id"]
    tok = expose(d, sid, APP_PORT, public=True)["token"]
    try:
        assert get(d, "/", {"Host": host(d, sid, APP_PORT)})[0] == 200
    finally:
        expose(d, sid, APP_PORT, public=False)
    assert get(d, "/", {"Host": host(d, sid, APP_PORT)})[0] == 401
    assert get(d, "/", {"Host": host(d, sid, APP_PORT), "X-Cellbox-Token": tok})[0] == 200
    # Unexpose: the token stops working at once, also on an open connection.
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    c.request("GET", "/", headers={"Host": host(d, sid, APP_PORT), "X-Cellbox-Token": tok})
    assert c.getresponse().read()
    assert d.request("DELETE", "/v1/sandboxes/%s/ports/%d" % (sid, APP_PORT)).status == 204
    c.request("GET", "/", headers={"Host": host(d, sid, APP_PORT), "X-Cellbox-Token": tok})
    r = c.getresponse()
    assert r.status == 404 and b"not exposed" in r.read()
    c.close()
    new_tok = expose(d, sid, APP_PORT)["token"]
    assert new_tok != tok
    assert get(d, "/", {"Host": host(d, sid, APP_PORT), "X-Cellbox-Token": tok})[0] == 403
    sb["tokens"][APP_PORT] = new_tok


# ---- HTTP features -----------------------------------------------------------------

def test_keep_alive_three_requests(d, sb):
    hd = {"Host": host(d, sb["id"], APP_PORT), "X-Cellbox-Token": sb["tokens"][APP_PORT]}
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    c.connect()
    local = c.sock.getsockname()
    for i in range(3):
        c.request("GET", "/n/%d" % i, headers=hd)
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["path"] == "/n/%d" % i
        assert c.sock is not None and c.sock.getsockname() == local  # same connection
    c.close()


def test_chunked_upload(d, sb):
    hd = {"Host": host(d, sb["id"], APP_PORT), "X-Cellbox-Token": sb["tokens"][APP_PORT]}
    parts = [os.urandom(n) for n in (1, 1000, 70000, 5)]
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    c.request("POST", "/up", body=iter(parts), headers=hd, encode_chunked=True)
    r = c.getresponse()
    seen = json.loads(r.read())
    c.close()
    assert r.status == 200
    assert seen["length"] == sum(map(len, parts))
    assert seen["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()


def test_big_download(d, sb):
    hd = {"Host": host(d, sb["id"], HTTP_PORT), "X-Cellbox-Token": sb["tokens"][HTTP_PORT]}
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=120)
    c.request("GET", "/big.bin", headers=hd)
    r = c.getresponse()
    assert r.status == 200
    h, n = hashlib.sha256(), 0
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    c.close()
    assert n == BIG and h.hexdigest() == sb["big_sha"]


def test_big_upload(d, sb):
    hd = {"Host": host(d, sb["id"], APP_PORT), "X-Cellbox-Token": sb["tokens"][APP_PORT],
          "Content-Length": str(BIG)}
    block = os.urandom(1 << 20)
    want = hashlib.sha256(block * 50).hexdigest()
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=120)
    c.request("PUT", "/big", body=iter([block] * 50), headers=hd)
    r = c.getresponse()
    seen = json.loads(r.read())
    c.close()
    assert r.status == 200 and seen["length"] == BIG and seen["sha256"] == want


# ---- WebSocket ---------------------------------------------------------------------

def ws_frame(op, payload):
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x80 | op]) + (bytes([0x80 | n]) if n < 126
                                   else bytes([0x80 | 126]) + struct.pack(">H", n))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_read(s, buf):
    while len(buf) < 2:
        buf += s.recv(65536)
    n = buf[1] & 127
    off = 2
    if n == 126:
        while len(buf) < 4:
            buf += s.recv(65536)
        n, off = struct.unpack(">H", buf[2:4])[0], 4
    while len(buf) < off + n:
        buf += s.recv(65536)
    return buf[0] & 15, buf[off:off + n], buf[off + n:]


def ws_connect(d, sb):
    """Handshake through the proxy (retried while the server starts: 502)."""
    deadline = time.time() + 20
    while True:
        s = socket.create_connection(("127.0.0.1", d.port), timeout=20)
        key = base64.b64encode(os.urandom(16))
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: " + host(d, sb["id"], WS_PORT).encode() +
                  b"\r\nX-Cellbox-Token: " + sb["tokens"][WS_PORT].encode() +
                  b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            x = s.recv(65536)
            assert x, buf
            buf += x
        head, buf = buf.split(b"\r\n\r\n", 1)
        if head.startswith(b"HTTP/1.1 502") and time.time() < deadline:
            s.close()
            time.sleep(0.2)
            continue
        assert head.startswith(b"HTTP/1.1 101"), head
        assert base64.b64encode(hashlib.sha1(key + GUID).digest()) in head
        return s, buf


def test_websocket_echo(d, sb):
    s, buf = ws_connect(d, sb)
    for msg in (b"hi", b"x" * 1000, os.urandom(60000)):
        s.sendall(ws_frame(2, msg))
        op, got, buf = ws_read(s, buf)
        assert op == 2 and got == msg
    s.sendall(ws_frame(8, b"\x03\xe8"))
    op, _, buf = ws_read(s, buf)
    assert op == 8
    s.close()


# ---- errors and life cycle ---------------------------------------------------------

def test_nothing_listening_502(d, sb):
    tok = expose(d, sb["id"], DEAD_PORT)["token"]
    st, h, body = get(d, "/", {"Host": host(d, sb["id"], DEAD_PORT), "X-Cellbox-Token": tok})
    assert st == 502 and b"no server" in body and "text/html" in h["content-type"]


def test_unknown_sandbox_and_port_404(d, sb):
    assert get(d, "/", {"Host": host(d, "sb_nope", 80)})[0] == 404
    assert get(d, "/v1/sandboxes/sb_nope/ports/80/proxy/")[0] == 404
    st, _, body = get(d, "/", {"Host": host(d, sb["id"], 4444)})
    assert st == 404 and b"not exposed" in body
    assert get(d, "/", {"Host": "0-x.localhost"})[0] == 400
    # The API itself is still served on the TCP listener, also with Host
    # equal to the preview domain itself.
    assert get(d, "/healthz")[0] == 200
    assert get(d, "/healthz", {"Host": "localhost:%d" % d.port})[0] == 200


def test_paused_sandbox_wakes(d, sb):
    sid = sb["id"]
    assert d.request("POST", "/v1/sandboxes/%s/pause" % sid).status == 200
    assert d.request("GET", "/v1/sandboxes/" + sid).json()["state"] == "paused"
    st, _, body = get(d, "/index.txt", {"Host": host(d, sid, HTTP_PORT),
                                        "X-Cellbox-Token": sb["tokens"][HTTP_PORT]})
    assert st == 200 and body == b"hello-preview\n"
    assert d.request("GET", "/v1/sandboxes/" + sid).json()["state"] == "running"


def test_slow_client_does_not_block_daemon(d, sb):
    s = socket.create_connection(("127.0.0.1", d.port), timeout=20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: " + host(d, sb["id"], HTTP_PORT).encode() +
              b"\r\nX-Cellbox-Token: " + sb["tokens"][HTTP_PORT].encode() + b"\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 200")
    rss0 = rss(d.pid)
    time.sleep(2)  # the proxy has filled the client's window and stopped reading
    t0 = time.time()
    r = d.request("GET", "/healthz", timeout=5)
    assert r.status == 200 and time.time() - t0 < 2
    # Back-pressure: the daemon did not buffer the 50 MiB body.
    assert rss(d.pid) - rss0 < 24 * 1024 * 1024
    s.close()


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0
