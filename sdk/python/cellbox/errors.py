"""Exceptions raised by the cellbox SDK.

Every error answer of cellboxd has the shape
``{"error": {"code": "not_found", "message": "..."}}``; the SDK raises the
exception class matching ``code`` (falling back on the HTTP status), so callers
can write ``except cellbox.NotFound:``.
"""

from __future__ import annotations

import json
from typing import Dict, Optional, Type


class CellboxError(Exception):
    """Base class of every error the SDK raises.

    Attributes:
        code: the API's error code (``"not_found"``, ...) or ``"connection"``
            for transport failures.
        message: the human-readable message from cellboxd.
        status: the HTTP status, or ``None`` when no response was received.
    """

    def __init__(self, message: str, code: str = "internal", status: Optional[int] = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={self.message!r})"


class BadRequest(CellboxError):
    """400: the request was malformed or a field was invalid."""


class Unauthorized(CellboxError):
    """401: missing or wrong API key."""


class NotFound(CellboxError):
    """404: no such sandbox, process, file... (or it belongs to another tenant)."""


class Conflict(CellboxError):
    """409: name taken, or the sandbox is in the wrong state for the call."""


class PayloadTooLarge(CellboxError):
    """413: the request body was over the server's limit."""


class LimitExceeded(CellboxError):
    """429: a quota or rate limit was reached."""


class Unavailable(CellboxError):
    """503: the requested tier or feature is not available on this host."""


class InternalError(CellboxError):
    """500: cellboxd failed."""


class ConnectionFailed(CellboxError):
    """cellboxd could not be reached, or the connection broke mid-request."""

    def __init__(self, message: str):
        super().__init__(message, code="connection", status=None)


_BY_CODE: Dict[str, Type[CellboxError]] = {
    "bad_request": BadRequest,
    "unauthorized": Unauthorized,
    "not_found": NotFound,
    "conflict": Conflict,
    "payload_too_large": PayloadTooLarge,
    "limit_exceeded": LimitExceeded,
    "unavailable": Unavailable,
    "internal": InternalError,
}

_BY_STATUS: Dict[int, Type[CellboxError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: LimitExceeded,
    503: Unavailable,
    500: InternalError,
}


def error_from_response(status: int, body: bytes) -> CellboxError:
    """Build the exception for an HTTP error answer."""
    code = None
    message = None
    try:
        doc = json.loads(body.decode("utf-8")) if body else None
        err = doc.get("error") if isinstance(doc, dict) else None
        if isinstance(err, dict):
            code = err.get("code")
            message = err.get("message")
    except (ValueError, UnicodeDecodeError):
        pass
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status, CellboxError)
    if not code:
        code = next((k for k, v in _BY_CODE.items() if v is cls), "internal")
    if not message:
        message = f"HTTP {status} from cellboxd"
    return cls(message, code=code, status=status)
