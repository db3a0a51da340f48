"""cellbox — Python SDK for cellboxd, the self-hosted sandbox platform.

Standard library only; Python >= 3.9. Talks to cellboxd over its unix socket
(``CELLBOX_SOCKET``) or over TCP with an API key (``CELLBOX_HOST``,
``CELLBOX_API_KEY``)::

    from cellbox import Sandbox
    with Sandbox.create() as sb:
        print(sb.exec(["echo", "hello"]).stdout)
"""

from .client import Client, Response
from .errors import (
    BadRequest,
    CellboxError,
    Conflict,
    ConnectionFailed,
    InternalError,
    LimitExceeded,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
)
from .ports import Port, Ports
from .pty import Pty, PtySession, Ptys
from .sandbox import ExecEvent, ExecResult, Files, Process, Processes, Sandbox

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Response",
    "Sandbox",
    "ExecResult",
    "ExecEvent",
    "Process",
    "Processes",
    "Files",
    "Pty",
    "Ptys",
    "PtySession",
    "Port",
    "Ports",
    "CellboxError",
    "BadRequest",
    "Unauthorized",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "LimitExceeded",
    "Unavailable",
    "InternalError",
    "ConnectionFailed",
]
