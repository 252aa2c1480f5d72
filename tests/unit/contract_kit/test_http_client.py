"""The kit's HTTP client against a real local server (stdlib http.server)."""

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from smkit_contract.http_client import Response, Unreachable, request, try_request


class Echo(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer = json.dumps({"headers": {k.lower(): v for k, v in self.headers.items()}, "size": len(body)}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_request_sends_exactly_the_given_headers_and_body(port):
    answer = request(port, "POST", "/invocations", body=b"1,2\n", headers={"Content-Type": "text/csv"})
    assert isinstance(answer, Response) and answer.status == 201
    assert answer.content_type == "application/json; charset=utf-8"
    echoed = answer.json()
    assert echoed["size"] == 4 and echoed["headers"]["content-type"] == "text/csv"
    assert "accept" not in echoed["headers"] and "accept-encoding" not in echoed["headers"]  # "no Accept" means none


def test_an_empty_body_is_sent_with_a_zero_length(port):
    assert request(port, "POST", "/invocations", body=b"").json()["headers"]["content-length"] == "0"


def test_a_closed_port_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    with pytest.raises(Unreachable, match="GET /ping"):
        request(closed, "GET", "/ping", timeout=2)
    assert try_request(closed, "GET", "/ping", timeout=2).startswith("no answer")


def test_summary_shortens_the_body():
    summary = Response(400, {"content-type": "text/plain"}, b"x" * 500).summary(limit=10)
    assert summary == "400 Content-Type='text/plain' body='xxxxxxxxxx'…"
