"""sb.pty: terminals through the SDK (issue #5), and the SDK's WebSocket
client (cellbox._ws) checked frame by frame against a scripted server."""

import base64
import hashlib
import os
import signal
import socket
import struct
import threading
import time

import pytest

import cellbox
from cellbox import _ws

# ---- the WebSocket client against a scripted server (no daemon) --------------


class ScriptedServer:
    """A one-connection WebSocket server on a socketpair, run by `script`
    (a function of this object) in a thread."""

    def __init__(self, script):
        self.client_sock, self.sock = socket.socketpair()
        self.sock.settimeout(10)
        self.buf = b""
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(script,), daemon=True)
        self.thread.start()

    def _run(self, script):
        try:
            script(self)
        except Exception as e:  # reported by join()
            self.error = e

    def join(self):
        self.thread.join(10)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error

    def need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def read_frame(self):
        """(fin, opcode, payload, was_masked) of one client frame."""
        self.need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n, off = b1 & 0x7F, 2
        if n == 126:
            self.need(4)
            n, off = struct.unpack(">H", self.buf[2:4])[0], 4
        elif n == 127:
            self.need(10)
            n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            self.need(off + 4)
            key, off = self.buf[off:off + 4], off + 4
        self.need(off + n)
        data, self.buf = self.buf[off:off + n], self.buf[off + n:]
        if masked:
            data = bytes(c ^ key[i % 4] for i, c in enumerate(data))
        return bool(b0 & 0x80), b0 & 0x0F, data, masked

    def send_frame(self, opcode, payload, fin=True):
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([n])
        elif n < 65536:
            head += bytes([126]) + struct.pack(">H", n)
        else:
            head += bytes([127]) + struct.pack(">Q", n)
        self.sock.sendall(head + payload)


def test_ws_masking_fragmentation_ping_and_close():
    def script(srv):
        # Client → server: a big message arrives masked and fragmented.
        parts = []
        while True:
            fin, op, data, masked = srv.read_frame()
            assert masked, "client frames must be masked"
            parts.append((op, data))
            if fin:
                break
        assert parts[0][0] == _ws.OP_BINARY and all(op == 0 for op, _ in parts[1:])
        assert len(parts) > 1 and b"".join(d for _, d in parts) == b"x" * 200000
        # Server → client: a ping between two fragments of a text message.
        srv.send_frame(_ws.OP_TEXT, b"hel", fin=False)
        srv.send_frame(_ws.OP_PING, b"are-you-there")
        srv.send_frame(_ws.OP_CONTINUATION, b"lo")
        fin, op, data, _ = srv.read_frame()
        assert (op, data) == (_ws.OP_PONG, b"are-you-there")
        # The client starts the close handshake; we answer it.
        fin, op, data, _ = srv.read_frame()
        assert op == _ws.OP_CLOSE and struct.unpack(">H", data[:2])[0] == 1000
        srv.send_frame(_ws.OP_CLOSE, struct.pack(">H", 1000))

    srv = ScriptedServer(script)
    ws = _ws.WebSocket(srv.client_sock)
    ws.send(b"x" * 200000)
    assert ws.recv(timeout=10) == (_ws.OP_TEXT, b"hello")
    ws.close()
    assert ws.closed and ws.close_code == 1000
    srv.join()


def test_ws_server_close_is_echoed_and_timeout_keeps_partial_frames():
    def script(srv):
        srv.sock.sendall(b"\x82\x05ab")       # half a binary frame ...
        time.sleep(0.4)
        srv.sock.sendall(b"cde")              # ... and the rest
        srv.send_frame(_ws.OP_CLOSE, struct.pack(">H", 1001) + b"bye")
        fin, op, data, masked = srv.read_frame()
        assert op == _ws.OP_CLOSE and masked and data[:2] == struct.pack(">H", 1001)

    srv = ScriptedServer(script)
    ws = _ws.WebSocket(srv.client_sock)
    assert ws.recv(timeout=0.1) is None       # partial frame stays buffered
    assert ws.recv(timeout=10) == (_ws.OP_BINARY, b"abcde")
    assert ws.recv(timeout=10) == (_ws.OP_CLOSE, b"")
    assert ws.close_code == 1001 and ws.close_reason == "bye"
    srv.join()


def test_ws_rejects_oversized_messages():
    def script(srv):
        srv.sock.sendall(b"\x82\x7f" + struct.pack(">Q", 1 << 40))
        fin, op, data, _ = srv.read_frame()
        assert op == _ws.OP_CLOSE and struct.unpack(">H", data[:2])[0] == 1009

    srv = ScriptedServer(script)
    ws = _ws.WebSocket(srv.client_sock, max_message=1 << 20)
    with pytest.raises(_ws.WebSocketError):
        ws.recv(timeout=10)
    srv.join()


def test_ws_handshake_checks_accept_and_reports_api_errors(tmp_path):
    path = str(tmp_path / "ws.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(4)
    answers = []

    def serve():
        for mode in ("bad-accept", "error", "ok"):
            c, _ = listener.accept()
            head = b""
            while b"\r\n\r\n" not in head:
                head += c.recv(4096)
            answers.append(head)
            key = [l.split(b": ", 1)[1] for l in head.split(b"\r\n")
                   if l.lower().startswith(b"sec-websocket-key")][0]
            accept = base64.b64encode(hashlib.sha1(key + _ws.GUID).digest())
            if mode == "error":
                body = b'{"error":{"code":"not_found","message":"no such pty"}}'
                c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            else:
                c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                          (b"AAAA" if mode == "bad-accept" else accept) + b"\r\n\r\n\x82\x02hi")
            time.sleep(0.2)
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client = cellbox.Client(socket=path)
    with pytest.raises(_ws.WebSocketError):
        _ws.WebSocket.connect(client, "/x/ws")
    with pytest.raises(cellbox.NotFound, match="no such pty"):
        _ws.WebSocket.connect(client, "/x/ws")
    ws = _ws.WebSocket.connect(client, "/x/ws")
    assert ws.recv(timeout=5) == (_ws.OP_BINARY, b"hi")  # bytes sent with the 101
    ws.close(timeout=1)
    t.join(5)
    listener.close()
    assert b"Upgrade: websocket" in answers[0] and b"Sec-WebSocket-Version: 13" in answers[0]


# ---- sb.pty against a real cellboxd --------------------------------------------


def test_create_attach_echo_resize_exit(sandbox):
    term = sandbox.pty.create(cols=90, rows=20)
    assert term.pty_id and term.cols == 90 and term.rows == 20
    with sandbox.pty.attach(term.pty_id) as s:
        s.send("echo sdk-$((20+22))\n")
        s.read_until(b"sdk-42", timeout=20)
        s.send("stty size\n")
        s.read_until(b"20 90", timeout=20)
        s.resize(132, 43)
        time.sleep(0.2)
        s.send("stty size\n")
        s.read_until(b"43 132", timeout=20)
        s.send("exit 7\n")
        assert s.wait(timeout=20) == 7
        assert s.exit_code == 7 and s.ended
        assert s.recv(timeout=1) == b""
    listed = {p.pty_id: p for p in sandbox.pty.list()}
    assert listed[term.pty_id].state == "exited" and listed[term.pty_id].exit_code == 7


def test_two_sessions_see_the_same_bytes_and_replay(sandbox):
    term = sandbox.pty.create(argv=["/bin/sh"])
    a = sandbox.pty.attach(term.pty_id)
    b = term.attach()
    try:
        a.send("echo shared-$((3*5))\n")
        a.read_until(b"shared-15", timeout=20)
        b.read_until(b"shared-15", timeout=20)
        b.send("echo from-b-$((1+1))\n")
        a.read_until(b"from-b-2", timeout=20)
    finally:
        a.close()
        b.close()
    # Detached: the terminal lives on, and a new viewer gets the history.
    assert sandbox.pty.get(term.pty_id).state == "running"
    with sandbox.pty.attach(term.pty_id) as c:
        c.read_until(b"shared-15", timeout=20)
        c.read_until(b"from-b-2", timeout=20)


def test_kill_ends_attached_session_with_hangup_status(sandbox):
    term = sandbox.pty.create(argv=["/bin/sh"])
    with sandbox.pty.attach(term.pty_id) as s:
        s.send("echo alive\n")
        s.read_until(b"alive", timeout=20)
        final = sandbox.pty.kill(term.pty_id)
        assert final.pty_id == term.pty_id
        assert s.wait(timeout=20) == 128 + signal.SIGHUP
    with pytest.raises(cellbox.NotFound):
        sandbox.pty.kill("999999")
    with pytest.raises(cellbox.NotFound):
        sandbox.pty.attach("999999")


def test_large_input_is_fragmented_and_arrives_whole(sandbox):
    term = sandbox.pty.create(argv=["/bin/sh", "-c", "stty raw -echo; head -c 150000 | wc -c"])
    with sandbox.pty.attach(term.pty_id) as s:
        time.sleep(0.3)  # let stty run before the bytes arrive
        s.send(b"y" * 150000)
        out = s.read_until(b"150000", timeout=30)
        assert b"150000" in out
        assert s.wait(timeout=20) == 0


def test_pty_over_tcp_with_api_key(daemon, sandboxes_work):
    key = daemon.create_key("sdk-pty-tenant")
    c = cellbox.Client(host=daemon.tcp_url, api_key=key)
    sb = cellbox.Sandbox.create(client=c)
    try:
        term = sb.pty.create(argv=["/bin/sh"], env={"MARK": "tcp-env"})
        with sb.pty.attach(term.pty_id) as s:
            s.send("echo $MARK\n")
            s.read_until(b"tcp-env", timeout=20)
        other = cellbox.Client(host=daemon.tcp_url, api_key="nope")
        with pytest.raises(cellbox.Unauthorized):
            cellbox.Sandbox(other, {"id": sb.id}).pty.attach(term.pty_id)
    finally:
        sb.delete()
        c.close()
