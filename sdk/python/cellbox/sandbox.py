"""Sandboxes, processes and files: the object API of the cellbox SDK.

Example::

    from cellbox import Sandbox

    with Sandbox.create(template="host") as sb:
        r = sb.exec(["python3", "-c", "print(6 * 7)"])
        print(r.exit_code, r.stdout)        # 0 '42\\n'
        sb.files.write("/workspace/a.txt", "hello")
        print(sb.files.read_text("/workspace/a.txt"))
"""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from .client import Client
from ._body import process_fields
from .errors import CellboxError, NotFound
from .ports import Ports
from .pty import Ptys

Command = Union[str, Sequence[str]]
StdinData = Union[str, bytes, None]

# How much longer than a process's own timeout a blocking call waits for the
# server's answer before giving up on the connection.
_TIMEOUT_SLACK = 30.0


def _seg(value: Any) -> str:
    """One path segment, percent-encoded (a name can never address another
    route by containing '/')."""
    return urllib.parse.quote(str(value), safe="")


@dataclass
class ExecResult:
    """The outcome of :meth:`Sandbox.exec`.

    ``stdout``/``stderr`` are text (undecodable bytes replaced); the raw
    bytes are in ``stdout_bytes``/``stderr_bytes``.
    """

    exit_code: Optional[int]
    signal: Optional[Union[int, str]]
    stdout: str
    stderr: str
    duration: Optional[float] = None
    timed_out: bool = False
    truncated: bool = False
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""

    @property
    def ok(self) -> bool:
        """True when the process exited with code 0."""
        return self.exit_code == 0 and not self.signal


@dataclass
class ExecEvent:
    """One event of an output stream.

    ``type`` is ``"stdout"``, ``"stderr"`` or ``"exit"`` (others may be added
    by the server); ``data`` holds the output bytes; for ``exit`` events
    ``exit_code``/``signal`` are set. ``raw`` is the decoded JSON event.
    """

    type: str
    data: bytes = b""
    seq: Optional[int] = None
    exit_code: Optional[int] = None
    signal: Optional[Union[int, str]] = None
    raw: Dict[str, Any] = field(default_factory=dict)


def _decode_event(line: bytes) -> Optional[ExecEvent]:
    """Decode one NDJSON (or SSE ``data:``) line; None for noise lines."""
    if line.startswith(b"data:"):
        line = line[5:].strip()
    if not line or line.startswith((b":", b"event:", b"id:")):
        return None
    try:
        ev = json.loads(line.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(ev, dict):
        return None
    if "data_b64" in ev:
        data = base64.b64decode(ev["data_b64"])
    elif isinstance(ev.get("data"), str):
        data = ev["data"].encode("utf-8")
    else:
        data = b""
    return ExecEvent(
        type=str(ev.get("type", "")),
        data=data,
        seq=ev.get("seq"),
        exit_code=ev.get("exit_code"),
        signal=ev.get("signal"),
        raw=ev,
    )


def _output_field(doc: Mapping[str, Any], name: str) -> bytes:
    if isinstance(doc.get(name + "_b64"), str):
        return base64.b64decode(doc[name + "_b64"])
    value = doc.get(name)
    return value.encode("utf-8") if isinstance(value, str) else b""


def _exec_body(
    command: Command,
    env: Optional[Mapping[str, str]],
    cwd: Optional[str],
    user: Optional[str],
    stdin: StdinData,
    timeout: Optional[float],
) -> Dict[str, Any]:
    """The request body shared by exec and processes.start."""
    argv = None if isinstance(command, str) else command
    body = process_fields(argv, env, cwd, user,
                          bad_argv="command must be a string or a non-empty list of strings")
    if isinstance(command, str):
        body["cmd"] = command
    if isinstance(stdin, str):
        body["stdin"] = stdin
    elif isinstance(stdin, (bytes, bytearray)):
        body["stdin_b64"] = base64.b64encode(bytes(stdin)).decode("ascii")
    if timeout is not None:
        body["timeout"] = timeout
    return body


def _call_timeout(client: Client, timeout: Optional[float]) -> Optional[float]:
    """The socket timeout for a call that may block for ``timeout`` seconds."""
    if timeout is None:
        return None if client.timeout is None else max(client.timeout, 3600.0)
    if client.timeout is None:
        return None
    return max(client.timeout, float(timeout) + _TIMEOUT_SLACK)


@dataclass
class Process:
    """A background process of a sandbox (see :class:`Processes`)."""

    pid: Union[int, str]
    state: Optional[str] = None
    argv: Optional[List[str]] = None
    exit_code: Optional[int] = None
    signal: Optional[Union[int, str]] = None
    started_at: Any = None
    raw: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _from(cls, doc: Mapping[str, Any]) -> "Process":
        return cls(
            pid=doc.get("pid"),
            state=doc.get("state"),
            argv=doc.get("argv"),
            exit_code=doc.get("exit_code"),
            signal=doc.get("signal"),
            started_at=doc.get("started_at"),
            raw=dict(doc),
        )


class Processes:
    """Background processes of one sandbox: ``sb.processes``."""

    def __init__(self, sandbox: "Sandbox"):
        self._sb = sandbox

    def _path(self, pid: Union[int, str, None] = None, rest: str = "") -> str:
        base = self._sb._path("/processes")
        return base if pid is None else f"{base}/{_seg(pid)}{rest}"

    def start(
        self,
        command: Command,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        user: Optional[str] = None,
        stdin: StdinData = None,
        timeout: Optional[float] = None,
    ) -> Process:
        """Start a process in the background and return it (with its pid)."""
        body = _exec_body(command, env, cwd, user, stdin, timeout)
        doc = self._sb._client.request_json("POST", self._path(), json_body=body)
        return Process._from(doc)

    def list(self) -> List[Process]:
        """Every process the sandbox knows (running and exited)."""
        doc = self._sb._client.request_json("GET", self._path())
        items = doc.get("items", []) if isinstance(doc, dict) else doc
        return [Process._from(p) for p in items or []]

    def get(self, pid: Union[int, str]) -> Process:
        """One process by pid (raises :class:`NotFound`)."""
        return Process._from(self._sb._client.request_json("GET", self._path(pid)))

    def kill(self, pid: Union[int, str]) -> None:
        """Kill the process and everything it started."""
        self._sb._client.request("DELETE", self._path(pid))

    def signal(self, pid: Union[int, str], signal: str = "TERM") -> None:
        """Send a signal by name (``"TERM"``, ``"INT"``, ``"KILL"``...)."""
        self._sb._client.request("POST", self._path(pid, "/signal"), json_body={"signal": signal})

    def send_stdin(self, pid: Union[int, str], data: Union[str, bytes], eof: bool = False) -> None:
        """Write to the process's stdin; ``eof=True`` closes it afterwards."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self._sb._client.request(
            "POST",
            self._path(pid, "/stdin"),
            query={"eof": 1 if eof else None},
            body=raw,
        )

    def output(
        self, pid: Union[int, str], follow: bool = False, after_seq: Optional[int] = None
    ) -> Iterator[ExecEvent]:
        """The process's output events: the kept output first, then (with
        ``follow``) live output until it exits. Resume a dropped stream with
        ``after_seq`` = the last ``seq`` seen."""
        lines = self._sb._client.stream(
            "GET",
            self._path(pid, "/output"),
            query={"follow": 1 if follow else None, "after_seq": after_seq},
            timeout=None if follow else self._sb._client.timeout,
        )
        for line in lines:
            ev = _decode_event(line)
            if ev is not None:
                yield ev

    def wait(self, pid: Union[int, str], timeout: Optional[float] = None) -> Process:
        """Block until the process exits (or ``timeout`` seconds pass) and
        return its state (``exit_code`` is None if it is still running)."""
        client = self._sb._client
        doc = client.request_json(
            "GET",
            self._path(pid, "/wait"),
            query={"timeout": timeout},
            timeout=_call_timeout(client, timeout),
        )
        doc = dict(doc or {})
        doc.setdefault("pid", pid)
        return Process._from(doc)


class Files:
    """The sandbox's filesystem: ``sb.files``. Every path is inside the
    sandbox; symlinks never lead out of it."""

    def __init__(self, sandbox: "Sandbox"):
        self._sb = sandbox

    def _req(self, method: str, route: str, **kw: Any):
        return self._sb._client.request(method, self._sb._path(route), **kw)

    def read(self, path: str) -> bytes:
        """The whole file as bytes."""
        return self._req("GET", "/files", query={"path": path}, headers={"Accept": "*/*"}).body

    def read_text(self, path: str, encoding: str = "utf-8") -> str:
        """The whole file decoded as text."""
        return self.read(path).decode(encoding)

    def write(
        self,
        path: str,
        data: Union[str, bytes],
        mode: Optional[Union[int, str]] = None,
        mkdirs: bool = True,
    ) -> None:
        """Create or replace a file. ``mode`` is an int (``0o755``) or an
        octal string; ``mkdirs`` creates missing parent directories."""
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if isinstance(mode, int):
            mode = format(mode, "04o")
        self._req("PUT", "/files", query={"path": path, "mode": mode, "mkdirs": mkdirs}, body=raw)

    def stat(self, path: str) -> Dict[str, Any]:
        """``{path, type, size, mode, mtime, uid, gid, link_target?}``."""
        return self._req("GET", "/files/stat", query={"path": path}).json()

    def exists(self, path: str) -> bool:
        """True when ``path`` exists in the sandbox."""
        try:
            self.stat(path)
            return True
        except NotFound:
            return False

    def list(self, path: str = "/", depth: int = 1) -> List[Dict[str, Any]]:
        """Entries of a directory (``depth`` levels deep), as stat dicts."""
        doc = self._req("GET", "/files/list", query={"path": path, "depth": depth}).json()
        return list(doc.get("items", [])) if isinstance(doc, dict) else list(doc or [])

    def mkdir(self, path: str, parents: bool = True) -> None:
        """Create a directory (and its parents)."""
        self._req("POST", "/files/mkdir", json_body={"path": path, "parents": parents})

    def move(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst``."""
        self._req("POST", "/files/move", json_body={"from": src, "to": dst})

    def remove(self, path: str, recursive: bool = False) -> None:
        """Delete a file, or a directory tree with ``recursive``."""
        self._req("DELETE", "/files", query={"path": path, "recursive": 1 if recursive else None})

    def upload_dir(self, local_dir: str, remote_dir: str) -> None:
        """Copy a host directory's contents into ``remote_dir`` (a tar
        through ``PUT /archive``)."""
        if not os.path.isdir(local_dir):
            raise ValueError(f"{local_dir} is not a directory")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(os.listdir(local_dir)):
                tar.add(os.path.join(local_dir, name), arcname=name)
        try:
            self.mkdir(remote_dir, parents=True)
        except CellboxError as e:
            if e.code != "conflict":
                raise
        self._req(
            "PUT",
            "/archive",
            query={"path": remote_dir},
            body=buf.getvalue(),
            headers={"Content-Type": "application/x-tar"},
        )

    def download_dir(self, remote_dir: str, local_dir: str) -> None:
        """Copy ``remote_dir``'s contents into the host directory
        ``local_dir`` (created if missing).

        The archive comes from the sandbox and is untrusted: only regular
        files, directories and symlinks that stay inside ``local_dir`` are
        extracted; absolute names, ``..``, devices and hard links are refused
        (a hostile tar must not write outside the destination)."""
        os.makedirs(local_dir, exist_ok=True)
        resp = self._sb._client.stream_raw("GET", self._sb._path("/archive"), query={"path": remote_dir})
        try:
            data = resp.read()
        finally:
            resp.close()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            _safe_extract(tar, local_dir)

    def watch(self, path: str, recursive: bool = False) -> Iterator[Dict[str, Any]]:
        """Filesystem events under ``path`` as they happen:
        ``{"type": "create"|"modify"|"delete"|"move", "path": ...}``.
        The iterator runs until closed (``it.close()`` or leaving a ``for``)."""
        lines = self._sb._client.stream(
            "GET",
            self._sb._path("/files/watch"),
            query={"path": path, "recursive": 1 if recursive else None},
            timeout=None,
        )
        for line in lines:
            ev = _decode_event(line)
            if ev is not None and ev.raw.get("type") not in (None, "ready", "ping"):
                yield ev.raw


def _safe_extract(tar: tarfile.TarFile, dest: str) -> None:
    root = os.path.realpath(dest)

    def inside(p: str) -> bool:
        return p == root or p.startswith(root + os.sep)

    # Members are checked before extraction; Python >= 3.12 would otherwise
    # warn that no extraction filter was chosen.
    extra: Dict[str, Any] = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
    for m in tar.getmembers():
        name = m.name
        while name.startswith("./"):
            name = name[2:]
        if name in ("", "."):
            continue
        target = os.path.realpath(os.path.join(root, name))
        if os.path.isabs(m.name) or ".." in m.name.split("/") or not inside(target):
            raise CellboxError(f"refusing archive member {m.name!r}", code="bad_request")
        if m.issym():
            link = os.path.realpath(os.path.join(os.path.dirname(target), m.linkname))
            if os.path.isabs(m.linkname) or not inside(link):
                raise CellboxError(f"refusing symlink {m.name!r} -> {m.linkname!r}", code="bad_request")
        elif not (m.isfile() or m.isdir()):
            raise CellboxError(f"refusing special archive member {m.name!r}", code="bad_request")
        m.uid = m.gid = os.getuid()
        m.mode &= 0o777
        tar.extract(m, root, set_attrs=m.isfile(), numeric_owner=True, **extra)


class Sandbox:
    """A cellbox sandbox. Create one with :meth:`create`, find one with
    :meth:`get` or :meth:`list`. Used as a context manager, the sandbox is
    deleted when the block ends::

        with Sandbox.create() as sb:
            print(sb.exec("echo hi").stdout)
    """

    def __init__(self, client: Client, info: Mapping[str, Any]):
        self._client = client
        self._info: Dict[str, Any] = dict(info)
        self.processes = Processes(self)
        self.files = Files(self)
        self.pty = Ptys(self)
        """Interactive terminals (:class:`~cellbox.pty.Ptys`)."""
        self.ports = Ports(self)
        """Exposed ports and preview URLs (:class:`~cellbox.ports.Ports`)."""

    # -- construction ------------------------------------------------------

    @staticmethod
    def _client_from(client: Optional[Client], kw: Mapping[str, Any]) -> Client:
        if client is not None:
            if kw:
                raise TypeError("pass either client= or connection arguments, not both")
            return client
        return Client(**kw)

    @classmethod
    def create(
        cls,
        template: str = "host",
        name: Optional[str] = None,
        tier: Optional[str] = None,
        cpu: Optional[float] = None,
        memory_mb: Optional[int] = None,
        disk_mb: Optional[int] = None,
        pids: Optional[int] = None,
        timeout: Optional[float] = None,
        idle_timeout: Optional[float] = None,
        on_idle: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        metadata: Optional[Mapping[str, str]] = None,
        workdir: Optional[str] = None,
        user: Optional[str] = None,
        network: Optional[Mapping[str, Any]] = None,
        client: Optional[Client] = None,
        **connection: Any,
    ) -> "Sandbox":
        """Create a sandbox; returns once it accepts exec.

        Sizes are in MiB, durations in seconds. ``connection`` keyword
        arguments (``socket``, ``host``, ``api_key``, ``timeout`` is the
        sandbox's lifetime here, so use ``client=Client(timeout=...)`` for the
        socket timeout) build a :class:`Client` when none is given.
        """
        c = cls._client_from(client, connection)
        fields = {
            "template": template,
            "name": name,
            "tier": tier,
            "cpu": cpu,
            "memory_mb": memory_mb,
            "disk_mb": disk_mb,
            "pids": pids,
            "timeout": timeout,
            "idle_timeout": idle_timeout,
            "on_idle": on_idle,
            "env": dict(env) if env else None,
            "metadata": dict(metadata) if metadata else None,
            "workdir": workdir,
            "user": user,
            "network": dict(network) if network else None,
        }
        body = {k: v for k, v in fields.items() if v is not None}
        info = c.request_json("POST", "/v1/sandboxes", json_body=body, timeout=_call_timeout(c, 120))
        return cls(c, info)

    @classmethod
    def get(cls, id_or_name: str, client: Optional[Client] = None, **connection: Any) -> "Sandbox":
        """An existing sandbox by id or name (raises :class:`NotFound`)."""
        c = cls._client_from(client, connection)
        return cls(c, c.request_json("GET", "/v1/sandboxes/" + _seg(id_or_name)))

    @classmethod
    def list(
        cls,
        state: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
        client: Optional[Client] = None,
        **connection: Any,
    ) -> List["Sandbox"]:
        """Every sandbox of this tenant, optionally filtered by state and by
        metadata labels (all must match). Follows pagination."""
        c = cls._client_from(client, connection)
        query: Dict[str, Any] = {"state": state}
        for k, v in (metadata or {}).items():
            query["metadata." + k] = v
        out: List[Sandbox] = []
        cursor = None
        seen = set()
        while True:
            doc = c.request_json("GET", "/v1/sandboxes", query={**query, "cursor": cursor})
            out.extend(cls(c, item) for item in doc.get("items", []))
            cursor = doc.get("next_cursor")
            # A repeated cursor would loop forever: stop instead.
            if not cursor or cursor in seen:
                return out
            seen.add(cursor)

    # -- properties --------------------------------------------------------

    @property
    def id(self) -> str:
        """The sandbox id (``sb_...``)."""
        return self._info["id"]

    @property
    def name(self) -> Optional[str]:
        """The sandbox's unique name, if it has one."""
        return self._info.get("name")

    @property
    def state(self) -> Optional[str]:
        """The state as of the last answer from the server (see refresh)."""
        return self._info.get("state")

    @property
    def info(self) -> Dict[str, Any]:
        """The sandbox object as of the last answer from the server."""
        return dict(self._info)

    @property
    def client(self) -> Client:
        """The :class:`Client` this sandbox talks through."""
        return self._client

    def refresh(self) -> Dict[str, Any]:
        """Fetch the sandbox object again (including ``usage``)."""
        self._info = dict(self._client.request_json("GET", self._path()))
        return self.info

    def __repr__(self) -> str:
        return f"Sandbox(id={self._info.get('id')!r}, state={self.state!r})"

    def _path(self, rest: str = "") -> str:
        return "/v1/sandboxes/" + _seg(self.id) + rest

    # -- exec --------------------------------------------------------------

    def exec(
        self,
        command: Command,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        user: Optional[str] = None,
        stdin: StdinData = None,
        timeout: Optional[float] = None,
    ) -> ExecResult:
        """Run a command to completion. A string runs through ``/bin/sh -c``;
        a list is the argv. Returns exit code, output and timing."""
        body = _exec_body(command, env, cwd, user, stdin, timeout)
        doc = self._client.request_json(
            "POST", self._path("/exec"), json_body=body, timeout=_call_timeout(self._client, timeout)
        )
        out, err = _output_field(doc, "stdout"), _output_field(doc, "stderr")
        return ExecResult(
            exit_code=doc.get("exit_code"),
            signal=doc.get("signal"),
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            duration=doc.get("duration"),
            timed_out=bool(doc.get("timed_out")),
            truncated=bool(doc.get("truncated")),
            stdout_bytes=out,
            stderr_bytes=err,
        )

    def exec_stream(
        self,
        command: Command,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[str] = None,
        user: Optional[str] = None,
        stdin: StdinData = None,
        timeout: Optional[float] = None,
    ) -> Iterator[ExecEvent]:
        """Run a command and yield its events as they happen: first
        ``start`` (``raw["pid"]`` names the process, so it can be signalled
        with ``processes.signal``), then ``stdout``/``stderr`` with bytes in
        ``data``, ending with an ``exit`` event carrying ``exit_code`` and
        ``signal``. Leaving the iterator early closes the stream, which hangs
        the process up (SIGHUP, then SIGKILL after a grace time)."""
        body = _exec_body(command, env, cwd, user, stdin, timeout)
        lines = self._client.stream("POST", self._path("/exec"), json_body=body, timeout=None)
        for line in lines:
            ev = _decode_event(line)
            if ev is not None:
                yield ev

    # -- life cycle ----------------------------------------------------------

    def _action(self, action: str, body: Optional[Mapping[str, Any]] = None) -> None:
        self._apply("POST", "/" + action, dict(body or {}))

    def _apply(self, method: str, rest: str, body: Mapping[str, Any]) -> None:
        """A change answered with the sandbox (kept), or else refreshed."""
        doc = self._client.request_json(
            method, self._path(rest), json_body=body, timeout=_call_timeout(self._client, 120)
        )
        if isinstance(doc, dict) and doc.get("id") == self.id:
            self._info = dict(doc)
        else:
            self.refresh()

    def pause(self) -> None:
        """Freeze every process (zero CPU; memory kept)."""
        self._action("pause")

    def resume(self) -> None:
        """Thaw a paused sandbox."""
        self._action("resume")

    def stop(self) -> None:
        """Stop every process; the filesystem is kept for :meth:`start`."""
        self._action("stop")

    def start(self) -> None:
        """Start a stopped sandbox again."""
        self._action("start")

    def keepalive(self, timeout: float) -> None:
        """Let the sandbox live ``timeout`` more seconds from now."""
        self._action("keepalive", {"timeout": timeout})

    def update(
        self,
        cpu: Optional[float] = None,
        memory_mb: Optional[int] = None,
        disk_mb: Optional[int] = None,
        pids: Optional[int] = None,
        timeout: Optional[float] = None,
        idle_timeout: Optional[float] = None,
        on_idle: Optional[str] = None,
        metadata: Optional[Mapping[str, str]] = None,
    ) -> None:
        """Change limits (applied to the running sandbox at once), lifetime
        (``timeout``: expire that many seconds from now, 0 = never) or labels
        (``metadata`` replaces them all). Arguments left as None keep their
        value. A limit the host cannot apply raises (:class:`Conflict`, e.g.
        memory below what the sandbox uses on cgroup v1; :class:`LimitExceeded`
        past the tenant's memory quota) and changes nothing."""
        limits = {k: v for k, v in (("cpu", cpu), ("memory_mb", memory_mb), ("disk_mb", disk_mb),
                                    ("pids", pids)) if v is not None}
        body: Dict[str, Any] = {k: v for k, v in (("timeout", timeout), ("idle_timeout", idle_timeout),
                                                   ("on_idle", on_idle)) if v is not None}
        if limits:
            body["limits"] = limits
        if metadata is not None:
            body["metadata"] = dict(metadata)
        if not body:
            raise ValueError("update: nothing to change")
        self._apply("PATCH", "", body)

    def delete(self) -> None:
        """Delete the sandbox: kill everything, free every resource."""
        self._client.request("DELETE", self._path(), timeout=_call_timeout(self._client, 120))
        self._info["state"] = "deleted"

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.delete()
        except NotFound:
            pass
