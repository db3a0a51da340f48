"""Interactive terminals of a sandbox: ``sb.pty``.

A terminal (PTY) lives inside the sandbox: its process, its screen history
(scrollback, at least 256 KiB) and its size are kept by the sandbox's init,
so it outlives every client attached to it and a restart of cellboxd. A
client attaches over a WebSocket; any number may attach at once and all of
them see the same bytes.

Example::

    with Sandbox.create() as sb:
        term = sb.pty.create(cols=100, rows=30)
        with sb.pty.attach(term.pty_id) as s:
            s.send("echo hi\\n")
            print(s.read_until(b"hi\\r\\n", timeout=10))
            s.resize(120, 40)
            s.send("exit 3\\n")
            s.wait(timeout=10)
            print(s.exit_code)            # 3
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Union

from ._ws import OP_BINARY, OP_CLOSE, OP_TEXT, WebSocket
from ._body import process_fields
from .errors import CellboxError

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import Sandbox

PtyId = Union[str, int]


def _seg(value: Any) -> str:
    import urllib.parse

    return urllib.parse.quote(str(value), safe="")


@dataclass
class Pty:
    """A terminal of a sandbox, as the server described it.

    ``state`` is ``"running"`` or ``"exited"``; ``exit_code`` is set once it
    exited (128 + signal when a signal ended it)."""

    pty_id: str
    pid: Optional[int] = None
    cols: Optional[int] = None
    rows: Optional[int] = None
    state: Optional[str] = None
    exit_code: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict)
    _ptys: Optional["Ptys"] = field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        """Same as :attr:`pty_id`."""
        return self.pty_id

    @classmethod
    def _from(cls, doc: Mapping[str, Any], ptys: Optional["Ptys"] = None) -> "Pty":
        return cls(
            pty_id=str(doc.get("pty_id")),
            pid=doc.get("pid"),
            cols=doc.get("cols"),
            rows=doc.get("rows"),
            state=doc.get("state"),
            exit_code=doc.get("exit_code"),
            raw=dict(doc),
            _ptys=ptys,
        )

    def attach(self, timeout: Optional[float] = 30) -> "PtySession":
        """Attach to this terminal (see :meth:`Ptys.attach`)."""
        if self._ptys is None:
            raise CellboxError("this Pty is not bound to a sandbox")
        return self._ptys.attach(self.pty_id, timeout=timeout)

    def kill(self) -> None:
        """End this terminal (see :meth:`Ptys.kill`)."""
        if self._ptys is None:
            raise CellboxError("this Pty is not bound to a sandbox")
        self._ptys.kill(self.pty_id)


class PtySession:
    """One attachment to a terminal: a WebSocket viewer.

    The scrollback is replayed first, then output is live. Closing the
    session (:meth:`close`, or leaving a ``with`` block) only detaches; the
    terminal keeps running until its process exits or it is killed.

    Output is returned by :meth:`recv` as it arrives and by
    :meth:`read_until`; both consume it (bytes read past a marker stay for
    the next call). Not thread-safe, except that :meth:`send` and
    :meth:`resize` may be called from another thread than the reader.
    """

    def __init__(self, pty_id: str, ws: WebSocket):
        self.pty_id = pty_id
        self._ws = ws
        self._pending = bytearray()
        self._ended = False
        self.exit_code: Optional[int] = None
        """The terminal process's exit status (128 + signal when killed),
        once the server reported that it ended; ``None`` before."""

    # -- input -------------------------------------------------------------

    def send(self, data: Union[bytes, str]) -> None:
        """Type into the terminal (text is sent as UTF-8). Use ``"\\r"`` or
        ``"\\n"`` for Enter, ``"\\x03"`` for Ctrl-C."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if raw:
            self._ws.send(raw, OP_BINARY)

    def resize(self, cols: int, rows: int) -> None:
        """Change the terminal's size (the program in it gets SIGWINCH)."""
        if not (1 <= int(cols) <= 4096 and 1 <= int(rows) <= 4096):
            raise ValueError("cols and rows must be in 1..4096")
        self._ws.send_text(json.dumps({"type": "resize", "cols": int(cols), "rows": int(rows)}))

    # -- output ------------------------------------------------------------

    def _next(self, timeout: Optional[float]) -> Optional[bytes]:
        """The next output chunk from the socket; None at timeout, b"" at end."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._ended:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            msg = self._ws.recv(left)
            if msg is None:
                return None
            opcode, payload = msg
            if opcode == OP_CLOSE:
                self._ended = True
                break
            if opcode == OP_BINARY:
                if payload:
                    return payload
                continue
            if opcode == OP_TEXT:
                self._control(payload)
        return b""

    def _control(self, payload: bytes) -> None:
        try:
            doc = json.loads(payload.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return
        if isinstance(doc, dict) and doc.get("type") == "exit":
            code = doc.get("exit_code")
            self.exit_code = code if isinstance(code, int) else -1

    def recv(self, timeout: Optional[float] = None) -> Optional[bytes]:
        """The next terminal output as bytes.

        Returns ``None`` when nothing arrived within ``timeout`` seconds
        (``None``: wait as long as it takes), and ``b""`` once the session
        ended (the process exited — see :attr:`exit_code` — or the
        connection was closed)."""
        if self._pending:
            out = bytes(self._pending)
            self._pending.clear()
            return out
        return self._next(timeout)

    def read_until(self, marker: Union[bytes, str], timeout: Optional[float] = 30) -> bytes:
        """Read output up to and including ``marker``; return it. Output
        after the marker stays for the next read.

        Raises :class:`TimeoutError` when ``marker`` did not appear within
        ``timeout`` seconds and :class:`EOFError` when the session ended
        first (in both cases the output read so far stays available to
        :meth:`recv` and is in the exception's message)."""
        m = marker.encode("utf-8") if isinstance(marker, str) else bytes(marker)
        deadline = None if timeout is None else time.monotonic() + timeout
        scanned = 0
        while True:
            at = self._pending.find(m, max(0, scanned - len(m) + 1))
            if at >= 0:
                end = at + len(m)
                out = bytes(self._pending[:end])
                del self._pending[:end]
                return out
            scanned = len(self._pending)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"{m!r} not seen within {timeout}s; output so far: "
                                   f"{bytes(self._pending[-1000:])!r}")
            chunk = self._next(left)
            if chunk == b"":
                raise EOFError(f"terminal ended before {m!r}; output so far: "
                               f"{bytes(self._pending[-1000:])!r}")
            if chunk:
                self._pending += chunk

    def wait(self, timeout: Optional[float] = None) -> Optional[int]:
        """Read (and drop) output until the session ends; return
        :attr:`exit_code`. Raises :class:`TimeoutError` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._pending.clear()
        while not self._ended:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"terminal {self.pty_id} still running after {timeout}s")
            self._next(left)
        return self.exit_code

    @property
    def ended(self) -> bool:
        """True once the server ended the session (process exit or close)."""
        return self._ended

    # -- detach ------------------------------------------------------------

    def close(self) -> None:
        """Detach (the terminal keeps running). Safe to call twice."""
        self._ended = True
        self._ws.close()

    def __enter__(self) -> "PtySession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PtySession(pty_id={self.pty_id!r}, exit_code={self.exit_code!r})"


class Ptys:
    """The terminals of one sandbox: ``sb.pty``."""

    def __init__(self, sandbox: "Sandbox"):
        self._sb = sandbox

    def _path(self, pty_id: Optional[PtyId] = None, rest: str = "") -> str:
        base = self._sb._path("/ptys")
        return base if pty_id is None else f"{base}/{_seg(pty_id)}{rest}"

    def create(
        self,
        cols: int = 80,
        rows: int = 24,
        argv: Optional[Sequence[str]] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        user: Optional[str] = None,
    ) -> Pty:
        """Start a terminal (default program: a login bash, else sh) and
        return it; attach with :meth:`attach`."""
        body: Dict[str, Any] = {"cols": int(cols), "rows": int(rows)}
        body.update(process_fields(argv, env, cwd, user))
        doc = self._sb._client.request_json("POST", self._path(), json_body=body)
        doc = dict(doc or {})
        doc.setdefault("state", "running")
        return Pty._from(doc, self)

    def list(self) -> List[Pty]:
        """Every terminal of the sandbox (running and exited)."""
        doc = self._sb._client.request_json("GET", self._path())
        items = doc.get("items", []) if isinstance(doc, dict) else doc
        return [Pty._from(p, self) for p in items or []]

    def get(self, pty_id: PtyId) -> Pty:
        """One terminal by id (raises :class:`~cellbox.NotFound`)."""
        for p in self.list():
            if p.pty_id == str(pty_id):
                return p
        from .errors import NotFound

        raise NotFound(f"no such pty: {pty_id}", code="not_found", status=404)

    def attach(self, pty_id: PtyId, timeout: Optional[float] = 30) -> PtySession:
        """Attach to a terminal over a WebSocket. ``timeout`` bounds the
        connection and handshake only; reads have their own timeouts."""
        ws = WebSocket.connect(self._sb._client, self._path(pty_id, "/ws"), timeout=timeout)
        return PtySession(str(pty_id), ws)

    def kill(self, pty_id: PtyId) -> Pty:
        """End a terminal: SIGHUP to its process group, SIGKILL a second
        later for anything that ignored it. Returns its final record."""
        doc = self._sb._client.request_json("DELETE", self._path(pty_id))
        return Pty._from(doc or {"pty_id": str(pty_id)}, self)


__all__ = ["Pty", "PtySession", "Ptys"]
