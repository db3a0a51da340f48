"""Request-body fields shared by every call that starts a process in a
sandbox (exec, processes.start, pty.create)."""
from typing import Any, Dict, Mapping, Optional, Sequence


def process_fields(
    argv: Optional[Sequence[str]],
    env: Optional[Mapping[str, str]],
    cwd: Optional[str],
    user: Optional[str],
    bad_argv: str = "argv must be a non-empty list of strings",
) -> Dict[str, Any]:
    """``argv`` (checked: a non-empty list of strings), ``env``, ``cwd`` and
    ``user`` as the API takes them; absent ones are left out."""
    body: Dict[str, Any] = {}
    if argv is not None:
        args = list(argv)
        if not args or not all(isinstance(a, str) for a in args):
            raise ValueError(bad_argv)
        body["argv"] = args
    if env:
        body["env"] = dict(env)
    if cwd is not None:
        body["cwd"] = cwd
    if user is not None:
        body["user"] = user
    return body
