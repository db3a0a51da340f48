"""Transport tests of the SDK's Client against a stub HTTP server on a unix
socket: connection reuse, retry policy, error mapping from answers, chunked
NDJSON streams. (API behaviour is tested against the real daemon in
test_sdk_e2e.py.)"""

import json
import time

import pytest

import cellbox
from cellbox import Client
from cellbox_httpstub import StubServer, json_answer


def test_keepalive_connection_is_reused():
    with StubServer(lambda r: json_answer(200, '{"ok":true}')) as srv:
        c = Client(socket=srv.socket_path)
        assert c.health()
        assert c.health()
        assert [r.conn_id for r in srv.requests] == [1, 1]
        c.close()


def test_get_is_retried_once_on_a_broken_connection():
    with StubServer(lambda r: json_answer(200, '{"ok":true}')) as srv:
        srv.drop_next = 1
        c = Client(socket=srv.socket_path)
        assert c.health()
        assert len(srv.requests) == 2


def test_post_is_not_retried():
    with StubServer(lambda r: json_answer(201, '{"id":"sb_1"}')) as srv:
        srv.drop_next = 1
        c = Client(socket=srv.socket_path)
        with pytest.raises(cellbox.ConnectionFailed):
            c.request("POST", "/v1/sandboxes", json_body={"template": "host"})
        assert len(srv.requests) == 1


def test_post_after_server_closed_idle_connection_reconnects():
    with StubServer(lambda r: json_answer(201, '{"id":"sb_1"}')) as srv:
        srv.close_after_answer = True
        c = Client(socket=srv.socket_path)
        c.request("GET", "/healthz")
        time.sleep(0.2)  # the server has closed the kept-alive connection
        assert c.request_json("POST", "/v1/sandboxes", json_body={}) == {"id": "sb_1"}
        assert [r.method for r in srv.requests] == ["GET", "POST"]
        assert srv.requests[0].conn_id != srv.requests[1].conn_id


@pytest.mark.parametrize(
    "status,code,cls",
    [
        (400, "bad_request", cellbox.BadRequest),
        (401, "unauthorized", cellbox.Unauthorized),
        (404, "not_found", cellbox.NotFound),
        (409, "conflict", cellbox.Conflict),
        (413, "payload_too_large", cellbox.PayloadTooLarge),
        (429, "limit_exceeded", cellbox.LimitExceeded),
        (503, "unavailable", cellbox.Unavailable),
        (500, "internal", cellbox.InternalError),
    ],
)
def test_error_answers_map_to_exceptions(status, code, cls):
    body = json.dumps({"error": {"code": code, "message": "msg " + code}})
    with StubServer(lambda r: json_answer(status, body)) as srv:
        with pytest.raises(cls) as ei:
            Client(socket=srv.socket_path).request("GET", "/v1/sandboxes/x")
    assert ei.value.code == code
    assert ei.value.status == status
    assert ei.value.message == "msg " + code
    assert isinstance(ei.value, cellbox.CellboxError)


def test_chunked_ndjson_stream_is_decoded_line_by_line():
    events = [
        b'{"seq":1,"type":"stdout","data":"hel',
        b'lo\\n"}\n{"seq":2,"type":"stderr","data_b64":"/w=="}\n',
        b'{"seq":3,"type":"exit","exit_code":3,"signal":null}\n',
    ]

    def respond(rec):
        if rec.path.endswith("/exec"):
            assert rec.headers["Accept"] == "application/x-ndjson"
            return 200, {"Content-Type": "application/x-ndjson"}, events
        return json_answer(200, '{"id":"sb_1","state":"running"}')

    with StubServer(respond) as srv:
        sb = cellbox.Sandbox.get("sb_1", socket=srv.socket_path)
        got = list(sb.exec_stream(["echo", "hello"]))
        assert [e.type for e in got] == ["stdout", "stderr", "exit"]
        assert got[0].data == b"hello\n" and got[0].seq == 1
        assert got[1].data == b"\xff"
        assert got[2].exit_code == 3
        sent = json.loads(srv.requests[-1].body)
        assert sent == {"argv": ["echo", "hello"]}


def test_api_key_is_sent_as_bearer_over_tcp_settings(monkeypatch):
    monkeypatch.delenv("CELLBOX_HOST", raising=False)
    with StubServer(lambda r: json_answer(200, '{"ok":true}')) as srv:
        c = Client(socket=srv.socket_path, api_key="k123")
        c.health()
        assert srv.requests[0].headers["Authorization"] == "Bearer k123"


def test_environment_defaults(monkeypatch):
    monkeypatch.setenv("CELLBOX_SOCKET", "/tmp/x.sock")
    monkeypatch.delenv("CELLBOX_HOST", raising=False)
    monkeypatch.setenv("CELLBOX_API_KEY", "abc")
    c = Client()
    assert c.socket_path == "/tmp/x.sock" and c.host is None and c.api_key == "abc"
    monkeypatch.setenv("CELLBOX_HOST", "http://127.0.0.1:7070")
    assert Client().host == "http://127.0.0.1:7070"


def test_unreachable_socket_raises_connection_failed(tmp_path):
    with pytest.raises(cellbox.ConnectionFailed):
        Client(socket=str(tmp_path / "none.sock")).health()


def test_exec_body_shapes():
    def respond(rec):
        if rec.path.endswith("/exec"):
            return json_answer(200, json.dumps({"exit_code": 0, "signal": None, "stdout": "a", "stderr": "",
                                                "duration": 0.1, "timed_out": False, "truncated": False}))
        return json_answer(200, '{"id":"sb_1","state":"running"}')

    with StubServer(respond) as srv:
        sb = cellbox.Sandbox.get("sb_1", socket=srv.socket_path)
        r = sb.exec("echo a | cat", stdin=b"\x00\x01", env={"A": "1"}, cwd="/tmp", timeout=5)
        assert r.ok and r.stdout == "a"
        body = json.loads(srv.requests[-1].body)
        assert body == {"cmd": "echo a | cat", "stdin_b64": "AAE=", "env": {"A": "1"}, "cwd": "/tmp", "timeout": 5}
        sb.exec(["ls"], stdin="text")
        assert json.loads(srv.requests[-1].body) == {"argv": ["ls"], "stdin": "text"}
