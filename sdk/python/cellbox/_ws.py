"""A small WebSocket client (RFC 6455), standard library only.

Used by the SDK for terminals (``sb.pty.attach``). It runs over the same
transport as every other call (cellboxd's unix socket, or TCP with the API
key) because the connection is opened by :class:`cellbox.client.Client`.

What it does: the opening handshake (and the check of
``Sec-WebSocket-Accept``), masked client frames with random keys, large
messages split into fragments, reassembly of fragmented messages from the
server, automatic pong replies to pings, and the close handshake. Incoming
messages are capped (``max_message``) so a misbehaving server cannot make the
client allocate without bound.

Sending is serialised by a lock, so one thread may ``recv`` while another
``send``s (the pong a ``recv`` answers goes through the same lock).
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading
import time
from typing import Mapping, Optional, Tuple

from .errors import ConnectionFailed, CellboxError, error_from_response

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_TOO_BIG = 1009
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006

DEFAULT_MAX_MESSAGE = 16 << 20
# Outgoing messages larger than this go out as several frames.
FRAGMENT_SIZE = 64 << 10
MAX_HEAD = 16 << 10
MAX_ERROR_BODY = 64 << 10


class WebSocketError(CellboxError):
    """The server broke the WebSocket protocol or the connection failed."""

    def __init__(self, message: str):
        super().__init__(message, code="internal")


def _mask(data: bytes, key: bytes) -> bytes:
    """XOR data with the 4-byte key, fast (one big integer operation)."""
    if not data:
        return b""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def _frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """One client frame: always masked (RFC 6455 section 5.3), with a fresh
    random key so page content cannot predict the bytes on the wire."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class WebSocket:
    """One client WebSocket connection over an already connected socket.

    Use :meth:`connect` to open one through a :class:`~cellbox.client.Client`.
    """

    def __init__(self, sock: socket.socket, buffered: bytes = b"",
                 max_message: int = DEFAULT_MAX_MESSAGE):
        self._sock = sock
        self._buf = bytearray(buffered)
        self._max_message = max_message
        self._send_lock = threading.Lock()
        self._frag_opcode: Optional[int] = None
        self._frag = bytearray()
        self.close_code: Optional[int] = None
        """The peer's close status once its close frame arrived (1006 when
        the connection broke without one)."""
        self.close_reason: str = ""
        self._close_sent = False
        self._closed = False

    # -- opening ---------------------------------------------------------

    @classmethod
    def connect(cls, client, path: str, timeout: Optional[float] = 30,
                headers: Optional[Mapping[str, str]] = None,
                max_message: int = DEFAULT_MAX_MESSAGE) -> "WebSocket":
        """Open ``path`` (already percent-encoded) on cellboxd as a WebSocket.

        Raises the API's error (e.g. :class:`~cellbox.NotFound`) when the
        upgrade is refused and :class:`~cellbox.ConnectionFailed` when
        cellboxd cannot be reached."""
        conn = client._new_connection(timeout)
        try:
            conn.connect()
        except OSError as e:
            conn.close()
            raise ConnectionFailed(f"cannot reach cellboxd at {client}: {e}") from e
        sock = conn.sock
        conn.sock = None  # the WebSocket owns the socket now
        try:
            buffered = cls._handshake(sock, client, path, headers, timeout)
        except BaseException:
            sock.close()
            raise
        return cls(sock, buffered, max_message)

    @staticmethod
    def _handshake(sock: socket.socket, client, path: str,
                   headers: Optional[Mapping[str, str]], timeout: Optional[float]) -> bytes:
        key = base64.b64encode(os.urandom(16))
        host = getattr(client, "_netloc", None) if client.host else "localhost"
        hdrs = client._headers(headers)
        hdrs.pop("Accept", None)
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                 "Sec-WebSocket-Key: " + key.decode()]
        lines += [f"{k}: {v}" for k, v in hdrs.items()]
        sock.settimeout(timeout)
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            head, rest = WebSocket._read_head(sock)
        except (OSError, socket.timeout) as e:
            raise ConnectionFailed(f"WebSocket handshake with cellboxd failed: {e}") from e
        status_line, _, header_block = head.partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise WebSocketError("malformed answer to the WebSocket request")
        status = int(parts[1])
        fields = WebSocket._parse_headers(header_block)
        if status != 101:
            raise error_from_response(status, WebSocket._read_body(sock, fields, rest))
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        if fields.get("upgrade", "").lower() != "websocket" or \
                fields.get("sec-websocket-accept") != accept:
            raise WebSocketError("the server's WebSocket handshake answer is invalid")
        return rest

    @staticmethod
    def _read_head(sock: socket.socket) -> Tuple[bytes, bytes]:
        buf = b""
        while b"\r\n\r\n" not in buf:
            if len(buf) > MAX_HEAD:
                raise WebSocketError("WebSocket answer head too large")
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionFailed("connection closed during the WebSocket handshake")
            buf += chunk
        head, rest = buf.split(b"\r\n\r\n", 1)
        return head, rest

    @staticmethod
    def _parse_headers(block: bytes) -> dict:
        out = {}
        for line in block.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if sep:
                out[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        return out

    @staticmethod
    def _read_body(sock: socket.socket, fields: dict, rest: bytes) -> bytes:
        try:
            want = min(int(fields.get("content-length", "0")), MAX_ERROR_BODY)
        except ValueError:
            want = 0
        body = rest[:want]
        try:
            while len(body) < want:
                chunk = sock.recv(want - len(body))
                if not chunk:
                    break
                body += chunk
        except OSError:
            pass
        return body

    # -- sending ---------------------------------------------------------

    def _send_raw(self, data: bytes) -> None:
        with self._send_lock:
            try:
                self._sock.sendall(data)
            except OSError as e:
                self._closed = True
                raise ConnectionFailed(f"WebSocket send failed: {e}") from e

    def send(self, data: bytes, opcode: int = OP_BINARY) -> None:
        """Send one message; more than FRAGMENT_SIZE bytes go out as a
        fragmented message (first frame with the opcode, then continuations)."""
        if self._close_sent or self._closed:
            raise WebSocketError("the WebSocket is closing")
        data = bytes(data)
        if len(data) <= FRAGMENT_SIZE:
            self._send_raw(_frame(opcode, data))
            return
        out = []
        for off in range(0, len(data), FRAGMENT_SIZE):
            chunk = data[off:off + FRAGMENT_SIZE]
            last = off + FRAGMENT_SIZE >= len(data)
            out.append(_frame(opcode if off == 0 else OP_CONTINUATION, chunk, fin=last))
        # One sendall under the lock: a pong cannot land between fragments
        # of ours (control frames may interleave, but we keep it simple).
        self._send_raw(b"".join(out))

    def send_text(self, text: str) -> None:
        """Send a text message."""
        self.send(text.encode("utf-8"), OP_TEXT)

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping (the server's pong is consumed by :meth:`recv`)."""
        self._send_raw(_frame(OP_PING, payload[:125]))

    # -- receiving -------------------------------------------------------

    def _fill(self, deadline: Optional[float]) -> bool:
        """Read more bytes into the buffer. False at timeout; raises on EOF."""
        if deadline is None:
            self._sock.settimeout(None)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._sock.settimeout(left)
        try:
            chunk = self._sock.recv(65536)
        except socket.timeout:
            return False
        except OSError as e:
            self._broken()
            raise ConnectionFailed(f"WebSocket connection broken: {e}") from e
        if not chunk:
            self._broken()
            raise EOFError("connection closed")
        self._buf += chunk
        return True

    def _broken(self) -> None:
        self._closed = True
        if self.close_code is None:
            self.close_code = CLOSE_ABNORMAL

    def _parse_frame(self) -> Optional[Tuple[bool, int, bytes]]:
        """One complete frame from the buffer, or None when more is needed."""
        b = self._buf
        if len(b) < 2:
            return None
        fin, opcode, masked, n, off = b[0] & 0x80, b[0] & 0x0F, b[1] & 0x80, b[1] & 0x7F, 2
        if b[0] & 0x70:
            self._fail(CLOSE_PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
        if n == 126:
            if len(b) < 4:
                return None
            n, off = struct.unpack(">H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, off = struct.unpack(">Q", b[2:10])[0], 10
        if n > self._max_message:
            self._fail(CLOSE_TOO_BIG, "message too big")
        if masked:
            if len(b) < off + 4:
                return None
            key, off = bytes(b[off:off + 4]), off + 4
        if len(b) < off + n:
            return None
        payload = bytes(b[off:off + n])
        del self._buf[:off + n]
        if masked:  # servers must not mask (section 5.1); tolerate, unmask
            payload = _mask(payload, key)
        return bool(fin), opcode, payload

    def _fail(self, code: int, why: str) -> None:
        try:
            self._send_raw(_frame(OP_CLOSE, struct.pack(">H", code)))
        except ConnectionFailed:
            pass
        self._close_sent = True
        self._broken()
        self._sock.close()
        raise WebSocketError("WebSocket protocol error: " + why)

    def _control(self, opcode: int, payload: bytes) -> bool:
        """Handle a control frame; True when it was a close."""
        if opcode == OP_PING:
            if not self._close_sent:
                self._send_raw(_frame(OP_PONG, payload))
            return False
        if opcode == OP_PONG:
            return False
        self.close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else CLOSE_NO_STATUS
        self.close_reason = payload[2:].decode("utf-8", "replace")
        if not self._close_sent:  # echo the close (section 5.5.1)
            try:
                self._send_raw(_frame(OP_CLOSE, payload[:2]))
            except ConnectionFailed:
                pass
            self._close_sent = True
        self._closed = True
        return True

    def _data(self, fin: bool, opcode: int, payload: bytes) -> Optional[Tuple[int, bytes]]:
        """Assemble data frames into messages."""
        if opcode == OP_CONTINUATION:
            if self._frag_opcode is None:
                self._fail(CLOSE_PROTOCOL_ERROR, "continuation without a message")
        else:
            if self._frag_opcode is not None:
                self._fail(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
            self._frag_opcode = opcode
            self._frag = bytearray()
        self._frag += payload
        if len(self._frag) > self._max_message:
            self._fail(CLOSE_TOO_BIG, "message too big")
        if not fin:
            return None
        msg_opcode, data = self._frag_opcode, bytes(self._frag)
        self._frag_opcode, self._frag = None, bytearray()
        return msg_opcode, data

    def recv(self, timeout: Optional[float] = None) -> Optional[Tuple[int, bytes]]:
        """The next data message as ``(opcode, payload)``.

        Returns ``None`` when ``timeout`` seconds passed without a complete
        message (a partial one stays buffered), and ``(OP_CLOSE, b"")`` once
        the server closed (its code in :attr:`close_code`). Pings are
        answered on the way. Raises :class:`ConnectionFailed` when the
        connection breaks."""
        if self._closed:
            return OP_CLOSE, b""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            frame = self._parse_frame()
            if frame is None:
                try:
                    if not self._fill(deadline):
                        return None
                except EOFError:
                    return OP_CLOSE, b""
                continue
            fin, opcode, payload = frame
            if opcode >= 0x8:
                if not fin or len(payload) > 125:
                    self._fail(CLOSE_PROTOCOL_ERROR, "bad control frame")
                if self._control(opcode, payload):
                    self._sock.close()
                    return OP_CLOSE, b""
                continue
            if opcode not in (OP_CONTINUATION, OP_TEXT, OP_BINARY):
                self._fail(CLOSE_PROTOCOL_ERROR, "unknown opcode %d" % opcode)
            msg = self._data(fin, opcode, payload)
            if msg is not None:
                return msg

    # -- closing ---------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the close handshake finished or the connection broke."""
        return self._closed

    def close(self, code: int = CLOSE_NORMAL, reason: str = "", timeout: float = 5) -> None:
        """Close handshake: send close, wait (up to ``timeout``) for the
        server's close, dropping data that still arrives, then close the
        socket. Safe to call more than once."""
        if self._closed:
            self._sock.close()
            return
        if not self._close_sent:
            try:
                self._send_raw(_frame(OP_CLOSE, struct.pack(">H", code) + reason.encode()[:123]))
            except ConnectionFailed:
                pass
            self._close_sent = True
        deadline = time.monotonic() + timeout
        try:
            while not self._closed and time.monotonic() < deadline:
                if self.recv(max(0.0, deadline - time.monotonic())) is None:
                    break
        except (CellboxError, OSError):
            pass
        self._closed = True
        self._sock.close()
