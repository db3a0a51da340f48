"""A tiny HTTP/1.1 server on a unix socket, for testing the SDK's and CLI's
transport layer (keep-alive, retries, chunked streaming, error parsing)
without cellboxd. The behaviour of the API itself is tested against the
real daemon; this only stands in for "a server that answers like this".
"""

from __future__ import annotations

import http.server
import os
import socketserver
import tempfile
import threading
from typing import Callable, List, Optional, Tuple


class Recorded:
    """One request as the server saw it."""

    def __init__(self, method: str, path: str, headers, body: bytes, conn_id: int):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.conn_id = conn_id


# A responder gets the request and returns (status, headers, body) where body
# is bytes or a list of chunks (sent with chunked transfer encoding).
Responder = Callable[[Recorded], Tuple[int, dict, object]]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class StubServer:
    """Serve ``responder`` on a fresh unix socket until ``close()``."""

    def __init__(self, responder: Responder):
        self.responder = responder
        self.requests: List[Recorded] = []
        self._dir = tempfile.TemporaryDirectory()
        self.socket_path = os.path.join(self._dir.name, "stub.sock")
        self._conn_counter = 0
        self.drop_next: int = 0  # close the connection without answering N times
        # Close the connection after each answer without saying so (what a
        # server's idle timeout does to a kept-alive connection).
        self.close_after_answer = False
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                stub._conn_counter += 1
                self.conn_id = stub._conn_counter

            def address_string(self):
                return "unix"

            def log_message(self, *args):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec = Recorded(self.command, self.path, self.headers, body, self.conn_id)
                stub.requests.append(rec)
                if stub.drop_next > 0:
                    stub.drop_next -= 1
                    self.close_connection = True
                    return
                status, headers, payload = stub.responder(rec)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if isinstance(payload, list):
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for chunk in payload:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                if stub.close_after_answer:
                    self.wfile.flush()
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        self._server = _Server(self.socket_path, Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._dir.cleanup()

    def __enter__(self) -> "StubServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def json_answer(status: int, text: str, extra: Optional[dict] = None):
    headers = {"Content-Type": "application/json"}
    headers.update(extra or {})
    return status, headers, text.encode()
