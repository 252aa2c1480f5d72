"""The HTTP layer of a real server (gunicorn + our uvicorn workers, on loopback): bounded request heads,
protocol errors in our JSON format, and a SIGTERM that answers every request that has arrived."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving_common.protocol import MAX_HEAD_BYTES, MAX_HEADERS, MAX_URL_BYTES

SERVER = Path(__file__).with_name("slow_server.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(tmp_path: Path, workers: int = 1, delay_s: float = 0.0) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), "SLOW_SERVER_DELAY_S": str(delay_s),
           "SMKIT_INLINE_PREDICTIONS": "false"}
    process = subprocess.Popen([sys.executable, str(SERVER), str(port), str(tmp_path)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                if sock.recv(100).startswith(b"HTTP/1.1 200"):
                    return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the server did not start: {process.communicate()[0].decode()[-2000:]}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[int]:
    process, port = start(tmp_path)
    yield port
    process.terminate()
    process.wait(timeout=30)


def exchange(port: int, data: bytes, read_timeout_s: float = 10.0) -> tuple[int, dict[str, str], dict]:
    """Send raw bytes; return the status, headers and JSON body of the answer (the server then closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout_s) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking all of it: read the answer
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def test_a_header_without_an_end_is_431_json_and_closed(server):
    # 1 MiB of one header line that never ends: refused once the head passes its limit, not buffered.
    status, headers, body = exchange(server, b"GET /ping HTTP/1.1\r\nX-Big: " + b"a" * (1024 * 1024))
    assert status == 431
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert body["error"] == "RequestHeaderFieldsTooLarge" and str(MAX_HEAD_BYTES) in body["message"]


def test_too_many_headers_is_431(server):
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
    status, _, body = exchange(server, b"GET /ping HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    assert status == 431 and str(MAX_HEADERS) in body["message"]


def test_a_long_url_is_414(server):
    status, _, body = exchange(server, b"GET /" + b"a" * (MAX_URL_BYTES + 1) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 414 and body["error"] == "URITooLong"


def test_a_malformed_request_is_400_json(server):
    status, headers, body = exchange(server, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400 and headers["content-type"] == "application/json"
    assert body["error"] == "BadRequest" and body["message"].startswith("invalid HTTP request")


def test_heads_within_the_limits_are_served(server):
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    fields = {f"X-{i}": "v" * 100 for i in range(MAX_HEADERS - 5)}
    connection.request("POST", "/invocations?" + "q" * (MAX_URL_BYTES - 100), body=b"1,2\n",
                       headers={"Content-Type": "text/csv", **fields})
    answer = connection.getresponse()
    assert answer.status == 200 and answer.read() == b"4"


def test_sigterm_answers_every_request_that_has_arrived(tmp_path):
    """Large requests queue behind slow predictions that hold the GIL; SIGTERM while their bodies arrive:
    every one gets its answer (uvicorn alone resets those it has not read or accepted yet), then exit 0."""
    process, port = start(tmp_path, workers=2, delay_s=0.05)
    body = b"1," * (512 * 1024)  # 1 MiB
    count = 48
    sent = concurrent.futures.ThreadPoolExecutor(count)

    def post() -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv"})
        answer = connection.getresponse()
        return answer.status, answer.read()

    futures = [sent.submit(post) for _ in range(count)]
    time.sleep(0.3)  # bodies on their way; the last ones wait behind ~48 x 50+ ms of predictions
    process.send_signal(signal.SIGTERM)
    answers = [future.result(timeout=40) for future in futures]
    assert answers == [(200, str(len(body)).encode())] * count
    assert process.wait(timeout=30) == 0
    with pytest.raises(OSError):  # and the port is closed afterwards
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_the_pipeline_front_has_the_same_bounds_and_drains_on_sigterm(tmp_path):
    """``python -m serving_common.pipeline`` in front of a slow stage: the same 431 / JSON 400, and a SIGTERM
    to the front with large requests in flight answers every one of them."""
    stage, stage_port = start(tmp_path, workers=2, delay_s=0.05)
    port = free_port()
    env = {**os.environ, "SAGEMAKER_BIND_TO_PORT": str(port), "SMKIT_PIPELINE_STAGES": f"slow={stage_port}",
           "SMKIT_WORKER_USER": ""}
    front = subprocess.Popen([sys.executable, "-m", "serving_common.pipeline"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                    if sock.recv(100).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline and front.poll() is None, "the front did not start"
            time.sleep(0.05)
        status, _, body = exchange(port, b"GET /ping HTTP/1.1\r\nX-Big: " + b"a" * (1024 * 1024))
        assert (status, body["error"]) == (431, "RequestHeaderFieldsTooLarge")
        status, headers, body = exchange(port, b"NOT HTTP\r\n\r\n")
        assert (status, headers["content-type"], body["error"]) == (400, "application/json", "BadRequest")

        body = b"1," * (512 * 1024)
        count = 16

        def post() -> tuple[int, bytes]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv"})
            answer = connection.getresponse()
            return answer.status, answer.read()

        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            futures = [pool.submit(post) for _ in range(count)]
            time.sleep(0.3)
            front.send_signal(signal.SIGTERM)
            answers = [future.result(timeout=40) for future in futures]
        assert answers == [(200, str(len(body)).encode())] * count
        assert front.wait(timeout=30) == 0
    finally:
        for process in (front, stage):
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=30)
