"""The one free-port helper and readiness wait (local_test.docker_run) against a real local HTTP server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from local_test.docker_run import ServerExited, free_port, wait_ready


class PingAfter(BaseHTTPRequestHandler):
    """/ping answers 503 ``not loaded`` to the first ``server.not_ready`` requests, then 200."""

    def do_GET(self) -> None:
        self.server.seen += 1
        ready = self.server.seen > self.server.not_ready
        body = b"ok" if ready else b"not loaded"
        self.send_response(200 if ready else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), PingAfter)
    httpd.seen, httpd.not_ready = 0, 3
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_free_port_is_bindable():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_waits_through_not_ready_answers_until_200(server):
    seconds = wait_ready(f"http://127.0.0.1:{server.server_port}/ping", 10, interval=0.01)
    assert server.seen == 4 and seconds >= 0


def test_timeout_says_the_last_answer(server):
    server.not_ready = 10**6
    with pytest.raises(TimeoutError, match=r"no 200 from http://127\.0\.0\.1:\d+/ping within 0 s \(last: 503 not"):
        wait_ready(f"http://127.0.0.1:{server.server_port}/ping", 0.2, interval=0.01)


def test_nothing_listening_is_not_ready_yet_and_an_exit_ends_the_wait():
    calls = []
    with pytest.raises(ServerExited, match="exited before answering 200"):
        wait_ready(f"http://127.0.0.1:{free_port()}/ping", 10, alive=lambda: calls.append(1) and False,
                   interval=0.01, check_every=0.0)
    assert len(calls) == 1
