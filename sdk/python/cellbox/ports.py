"""Exposed ports (preview URLs) of a sandbox: ``sb.ports``.

cellboxd reaches a server listening inside the sandbox (also one bound to
127.0.0.1 there) without opening any host port. Unless the port is public,
every request needs its token: header ``X-Cellbox-Token``, or
``?cellbox_token=`` once (the answer sets a cookie). Unexposing revokes it.

Example::

    sb.processes.start("python3 -m http.server 8000")
    port = sb.ports.expose(8000)
    print(port.url, port.token)
    print(port.url_with_token)          # ready for a browser
    sb.ports.unexpose(8000)
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .sandbox import Sandbox


@dataclass
class Port:
    """An exposed port: its preview ``url`` and access ``token`` (``None``
    or empty when ``public``)."""

    port: int
    url: Optional[str] = None
    token: Optional[str] = None
    public: bool = False
    path_url: Optional[str] = None
    """The same server under the API's address:
    ``/v1/sandboxes/{id}/ports/{port}/proxy/`` (relative to the TCP listener)."""
    raw: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> "Port":
        return cls(
            port=int(doc.get("port", 0)),
            url=doc.get("url"),
            token=doc.get("token") or None,
            public=bool(doc.get("public", False)),
            path_url=doc.get("path_url"),
            raw=dict(doc),
        )

    @property
    def url_with_token(self) -> Optional[str]:
        """The URL with ``?cellbox_token=`` appended (the plain URL when the
        port is public): one click in a browser, which then keeps a cookie."""
        if not self.url or self.public or not self.token:
            return self.url
        sep = "&" if "?" in self.url else "?"
        return self.url + sep + "cellbox_token=" + urllib.parse.quote(self.token, safe="")

    @property
    def headers(self) -> Dict[str, str]:
        """Request headers that carry the token (empty for public ports)."""
        return {"X-Cellbox-Token": self.token} if self.token and not self.public else {}


class Ports:
    """The exposed ports of one sandbox: ``sb.ports``."""

    def __init__(self, sandbox: "Sandbox"):
        self._sb = sandbox

    def expose(self, port: int, public: bool = False) -> Port:
        """Expose ``port`` and return its URL and token. Exposing an already
        exposed port returns it (with its settings updated by the server)."""
        p = int(port)
        if not 1 <= p <= 65535:
            raise ValueError("port must be in 1..65535")
        doc = self._sb._client.request_json(
            "POST", self._sb._path("/ports"), json_body={"port": p, "public": bool(public)}
        )
        return Port._from(doc or {"port": p, "public": public})

    def list(self) -> List[Port]:
        """Every exposed port of the sandbox."""
        doc = self._sb._client.request_json("GET", self._sb._path("/ports"))
        items = doc.get("items", []) if isinstance(doc, dict) else doc
        return [Port._from(d) for d in items or []]

    def get(self, port: int) -> Optional[Port]:
        """The exposed port ``port``, or ``None`` when it is not exposed."""
        for p in self.list():
            if p.port == int(port):
                return p
        return None

    def unexpose(self, port: int) -> None:
        """Stop exposing ``port``: its URL stops answering, its token is revoked."""
        self._sb._client.request("DELETE", self._sb._path(f"/ports/{int(port)}"))


__all__ = ["Port", "Ports"]
