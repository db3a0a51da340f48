"""sb.ports: exposing a server started inside the sandbox (issue #5).

The Port object's helpers are checked without a daemon; the rest runs
against the ports API of a real cellboxd."""

import time

import pytest

import cellbox
from cellbox.ports import Port
from cellboxd import browse, fetch, fetch_eventually


def test_port_helpers():
    p = Port._from({"port": 3000, "url": "http://3000-sb_x.localhost:7070/", "token": "t/k n",
                    "public": False})
    assert p.url_with_token == "http://3000-sb_x.localhost:7070/?cellbox_token=t%2Fk%20n"
    assert p.headers == {"X-Cellbox-Token": "t/k n"}
    q = Port._from({"port": 80, "url": "http://h/p?a=1", "token": "", "public": True})
    assert q.url_with_token == "http://h/p?a=1" and q.headers == {} and q.token is None
    assert Port._from({"port": 1, "url": "http://h/?a=1", "token": "z"}).url_with_token.endswith(
        "?a=1&cellbox_token=z")


def test_expose_rejects_bad_ports(sandbox):
    for bad in (0, 70000, -1):
        with pytest.raises(ValueError):
            sandbox.ports.expose(bad)


def _require_ports(sandbox):
    assert sandbox.ports.list() is not None


def test_expose_list_reach_unexpose(daemon, sandbox):
    _require_ports(sandbox)
    sandbox.processes.start("mkdir -p /tmp/site && echo from-sdk-port > /tmp/site/index.html && "
                            "cd /tmp/site && exec python3 -m http.server 8765 --bind 127.0.0.1")
    port = sandbox.ports.expose(8765)
    assert port.port == 8765 and port.url and port.token and not port.public
    assert [p for p in sandbox.ports.list() if p.port == 8765]
    assert sandbox.ports.get(8765).token == port.token

    status, body = fetch_eventually(daemon, port.url, port.headers)
    assert status == 200 and b"from-sdk-port" in body, (status, body[:300])
    assert fetch(daemon, port.url)[0] in (401, 403)
    status, body = browse(daemon, port.url_with_token)  # the token becomes a cookie
    assert status == 200 and b"from-sdk-port" in body, (status, body[:300])
    assert port.path_url and fetch(daemon, port.path_url, port.headers)[0] == 200

    sandbox.ports.unexpose(8765)
    assert sandbox.ports.get(8765) is None
    assert fetch(daemon, port.url, port.headers)[0] != 200


def test_public_port_needs_no_token(daemon, sandbox):
    _require_ports(sandbox)
    sandbox.processes.start("mkdir -p /tmp/pub && echo public-page > /tmp/pub/index.html && "
                            "cd /tmp/pub && exec python3 -m http.server 8766 --bind 127.0.0.1")
    port = sandbox.ports.expose(8766, public=True)
    assert port.public and port.url_with_token == port.url
    status, body = fetch_eventually(daemon, port.url)
    assert status == 200 and b"public-page" in body
    sandbox.ports.unexpose(8766)
