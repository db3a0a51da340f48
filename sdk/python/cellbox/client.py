"""HTTP transport to cellboxd: unix socket (default) or TCP with an API key.

Uses only the standard library (``http.client``). One keep-alive connection is
reused for ordinary calls; every streaming call gets a connection of its own,
closed when the stream is exhausted or the iterator is closed. A ``Client`` is
not thread-safe: give each thread its own.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import urllib.parse
from typing import Any, Dict, Iterator, Mapping, Optional, Union

from .errors import CellboxError, ConnectionFailed, error_from_response

DEFAULT_SOCKET = "/run/cellbox/cellbox.sock"

# Idempotent methods may be retried once when the connection breaks: repeating
# them cannot create a second sandbox or run a command twice.
_IDEMPOTENT = frozenset({"GET", "HEAD", "DELETE", "PUT"})

# Errors that mean the connection (not the server's answer) failed.
_CONNECTION_ERRORS = (ConnectionError, http.client.HTTPException, socket.timeout, OSError)

QueryValue = Union[str, int, float, bool, None]


class _UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection whose transport is a unix stream socket."""

    def __init__(self, path: str, timeout: Optional[float]):
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Response:
    """A complete (non-streamed) answer: status, headers and body bytes."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body decoded as JSON (``None`` when empty)."""
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))


class Client:
    """Connection settings and transport for talking to cellboxd.

    Args:
        socket: path of cellboxd's unix socket (``CELLBOX_SOCKET``, default
            ``/run/cellbox/cellbox.sock``). Used unless ``host`` is set.
        host: ``http://HOST:PORT`` of a TCP listener (``CELLBOX_HOST``).
        api_key: bearer key for the TCP listener (``CELLBOX_API_KEY``).
        timeout: socket timeout in seconds for ordinary calls.
    """

    def __init__(
        self,
        socket: Optional[str] = None,
        host: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: Optional[float] = 60,
    ):
        env_host = os.environ.get("CELLBOX_HOST") or None
        self.host = host if host is not None else (None if socket else env_host)
        self.socket_path = socket or os.environ.get("CELLBOX_SOCKET") or DEFAULT_SOCKET
        self.api_key = api_key if api_key is not None else os.environ.get("CELLBOX_API_KEY")
        self.timeout = timeout
        self._conn: Optional[http.client.HTTPConnection] = None
        if self.host:
            parsed = urllib.parse.urlsplit(self.host if "//" in self.host else "http://" + self.host)
            if parsed.scheme not in ("http", "https"):
                raise ValueError(f"unsupported scheme in host {self.host!r}")
            self._scheme = parsed.scheme
            self._netloc = parsed.netloc

    def __repr__(self) -> str:
        where = self.host or self.socket_path
        return f"Client({where!r})"

    # -- connections -------------------------------------------------------

    def _new_connection(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if not self.host:
            return _UnixHTTPConnection(self.socket_path, timeout)
        if self._scheme == "https":
            return http.client.HTTPSConnection(self._netloc, timeout=timeout)
        return http.client.HTTPConnection(self._netloc, timeout=timeout)

    def close(self) -> None:
        """Close the kept-alive connection (a new one opens on demand)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, extra: Optional[Mapping[str, str]]) -> Dict[str, str]:
        headers = {"User-Agent": "cellbox-python", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if extra:
            headers.update(extra)
        return headers

    @staticmethod
    def build_target(path: str, query: Optional[Mapping[str, QueryValue]] = None) -> str:
        """Path plus an encoded query string (``None`` values are left out;
        booleans become ``1``/``0``)."""
        if not query:
            return path
        items = []
        for k, v in query.items():
            if v is None:
                continue
            if isinstance(v, bool):
                v = "1" if v else "0"
            items.append((k, str(v)))
        return path + ("?" + urllib.parse.urlencode(items) if items else "")

    @staticmethod
    def _encode_body(json_body: Any, body: Optional[bytes], headers: Dict[str, str]) -> Optional[bytes]:
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            return json.dumps(json_body).encode("utf-8")
        if body is not None:
            headers.setdefault("Content-Type", "application/octet-stream")
            return body
        return None

    # -- requests ----------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        query: Optional[Mapping[str, QueryValue]] = None,
        json_body: Any = None,
        body: Optional[bytes] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> Response:
        """Send one request on the kept-alive connection and return the answer.

        Raises the matching :class:`CellboxError` subclass for error answers
        and :class:`ConnectionFailed` when cellboxd cannot be reached.
        """
        hdrs = self._headers(headers)
        payload = self._encode_body(json_body, body, hdrs)
        target = self.build_target(path, query)
        attempts = 2 if method.upper() in _IDEMPOTENT else 1
        last: Optional[BaseException] = None
        for _ in range(attempts):
            try:
                resp = self._send(method, target, payload, hdrs, timeout)
            except _CONNECTION_ERRORS as e:
                self.close()
                last = e
                continue
            if resp.status >= 400:
                raise error_from_response(resp.status, resp.body)
            return resp
        raise ConnectionFailed(f"{method} {path}: cannot reach cellboxd at {self}: {last}")

    def _drop_if_stale(self) -> None:
        """Close the kept-alive connection if the server already closed it.

        A POST is never retried, so it must not be sent on a connection the
        server has dropped while idle: a closed socket polls readable and
        peeks as EOF, and nothing has been sent yet, so reconnecting is safe."""
        conn = self._conn
        if conn is None or conn.sock is None:
            return
        try:
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if readable and not conn.sock.recv(1, socket.MSG_PEEK):
                self.close()
        except (OSError, ValueError):
            self.close()

    def _send(self, method, target, payload, headers, timeout) -> Response:
        self._drop_if_stale()
        if self._conn is None:
            self._conn = self._new_connection(self.timeout)
        conn = self._conn
        conn.timeout = timeout if timeout is not None else self.timeout
        if conn.sock is not None:
            conn.sock.settimeout(conn.timeout)
        conn.request(method, target, body=payload, headers=headers)
        r = conn.getresponse()
        data = r.read()
        if r.will_close:
            self.close()
        return Response(r.status, dict(r.getheaders()), data)

    def request_json(self, method: str, path: str, **kw: Any) -> Any:
        """:meth:`request` and decode the JSON answer."""
        return self.request(method, path, **kw).json()

    def stream(
        self,
        method: str,
        path: str,
        query: Optional[Mapping[str, QueryValue]] = None,
        json_body: Any = None,
        accept: str = "application/x-ndjson",
        timeout: Optional[float] = None,
    ) -> Iterator[bytes]:
        """Send a request on a fresh connection and yield the body line by
        line (without the newline) as it arrives. The connection is closed
        when the iterator ends or is closed. ``timeout`` bounds each read
        (``None``: wait forever, for follow streams)."""
        hdrs = self._headers({"Accept": accept})
        payload = self._encode_body(json_body, None, hdrs)
        target = self.build_target(path, query)
        conn = self._new_connection(timeout)
        try:
            conn.request(method, target, body=payload, headers=hdrs)
            r = conn.getresponse()
        except _CONNECTION_ERRORS as e:
            conn.close()
            raise ConnectionFailed(f"{method} {path}: cannot reach cellboxd at {self}: {e}") from e
        if r.status >= 400:
            data = r.read()
            conn.close()
            raise error_from_response(r.status, data)
        return self._lines(conn, r)

    @staticmethod
    def _lines(conn: http.client.HTTPConnection, r: http.client.HTTPResponse) -> Iterator[bytes]:
        try:
            while True:
                try:
                    line = r.readline()
                except _CONNECTION_ERRORS as e:
                    raise ConnectionFailed(f"stream broken: {e}") from e
                if not line:
                    return
                yield line.rstrip(b"\r\n")
        finally:
            conn.close()

    def stream_raw(
        self,
        method: str,
        path: str,
        query: Optional[Mapping[str, QueryValue]] = None,
        timeout: Optional[float] = None,
    ) -> http.client.HTTPResponse:
        """A raw streaming body (tar downloads). The caller must ``close()``
        the returned response, which closes its connection."""
        hdrs = self._headers({"Accept": "*/*"})
        conn = self._new_connection(timeout if timeout is not None else self.timeout)
        try:
            conn.request(method, self.build_target(path, query), headers=hdrs)
            r = conn.getresponse()
        except _CONNECTION_ERRORS as e:
            conn.close()
            raise ConnectionFailed(f"{method} {path}: cannot reach cellboxd at {self}: {e}") from e
        if r.status >= 400:
            data = r.read()
            conn.close()
            raise error_from_response(r.status, data)
        return r

    def health(self) -> bool:
        """``True`` when ``GET /healthz`` answers ok."""
        doc = self.request_json("GET", "/healthz")
        return bool(isinstance(doc, dict) and doc.get("ok"))

    def server_info(self) -> Dict[str, Any]:
        """``GET /v1/info``: version, tiers, templates, limits."""
        return self.request_json("GET", "/v1/info")


__all__ = ["Client", "Response", "CellboxError", "DEFAULT_SOCKET"]
