"""The pipeline front (serving_common.pipeline) against real HTTP stages: small ASGI apps served by uvicorn
on free loopback ports, the front itself served by uvicorn (uvloop + httptools) as in the images."""

from __future__ import annotations

import asyncio
import logging
import os
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import uvicorn

from local_test.docker_run import free_port, wait_ready
from serving_common.pipeline import PipelineApp, PipelineConfig, Stage, gunicorn_options, parse_stages
from serving_common.settings import SettingsError

ROOT = Path(__file__).resolve().parents[3]


class StageApp:
    """A stage that answers ``NAME(body)`` in the request's Accept (else its default type) and records what
    it received. ``bad...`` bodies get a 400 and bodies holding ``crash-NAME`` a 500, as JSON errors."""

    def __init__(self, name: str, default_type: bytes = b"text/csv") -> None:
        self.name = name
        self.default_type = default_type
        self.requests: list[dict[str, Any]] = []
        self.clients: set[tuple[str, int]] = set()
        self.ready = True
        self.delay = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = dict(scope["headers"])
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if path == "/ping":
            await self._answer(send, 200 if self.ready else 503, b"", b"text/plain")
            return
        if path == "/execution-parameters":
            await self._answer(send, 200, orjson.dumps({"MaxPayloadInMB": 7, "stage": self.name}), b"application/json")
            return
        self.clients.add(tuple(scope["client"]))
        self.requests.append({"content_type": headers.get(b"content-type"), "accept": headers.get(b"accept"),
                              "request_id": headers.get(b"x-request-id"),
                              "attributes": headers.get(b"x-amzn-sagemaker-custom-attributes"), "body": body})
        if self.delay:
            await asyncio.sleep(self.delay)
        if body.startswith(b"bad"):
            error = {"error": "BadRequest", "message": f"{self.name}: record 0 is bad"}
            await self._answer(send, 400, orjson.dumps(error), b"application/json")
        elif f"crash-{self.name}".encode() in body:
            await self._answer(send, 500, b'{"error": "ModelError", "message": "boom"}', b"application/json")
        else:
            accept = headers.get(b"accept")
            out_type = accept if accept and accept != b"*/*" else self.default_type
            await self._answer(send, 200, self.name.encode() + b"(" + body + b")", out_type)

    @staticmethod
    async def _answer(send: Callable, status: int, body: bytes, content_type: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class ServerThread:
    """An ASGI app served by uvicorn on a free loopback port, in a thread of this process."""

    def __init__(self, app: Any, port: int | None = None, loop: str = "asyncio", **config: Any) -> None:
        self.port = port or free_port()
        config = {"lifespan": "on", "log_level": "warning", **config}
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, loop=loop,
                                                    http="httptools", **config))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"server on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[..., ServerThread]]:
    servers: list[ServerThread] = []

    def start(app: Any, **kwargs: Any) -> ServerThread:
        server = ServerThread(app, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def stages(serve) -> tuple[StageApp, StageApp, list[Stage]]:
    """Two running stages, A then B: (app A, app B, the Stage list for the front)."""
    first, second = StageApp("A"), StageApp("B", default_type=b"application/jsonlines")
    a, b = serve(first), serve(second)
    return first, second, [Stage(1, "A", "127.0.0.1", a.port), Stage(2, "B", "127.0.0.1", b.port)]


@pytest.fixture
def front(serve) -> Callable[..., str]:
    def start(stage_list: list[Stage], **config: Any) -> str:
        app = PipelineApp(PipelineConfig(stages=tuple(stage_list), **config))
        return serve(app, loop="uvloop").url

    return start


def post(url: str, body: bytes, content_type: str | None = "application/json", accept: str | None = None,
         **headers: str) -> requests.Response:
    all_headers = dict(headers)
    if content_type:
        all_headers["Content-Type"] = content_type
    all_headers["Accept"] = accept  # None: no Accept at all (requests would send */*)
    return requests.post(f"{url}/invocations", data=body, headers=all_headers, timeout=10)


# -- chaining -------------------------------------------------------------------------------------------


def test_chains_the_stages_in_order_with_each_answers_content_type(stages, front):
    first, second, stage_list = stages
    url = front(stage_list)
    response = post(url, b'{"x": 1}', "application/json", accept="text/csv")
    assert response.status_code == 200
    assert response.content == b'B(A({"x": 1}))'
    assert response.headers["Content-Type"] == "text/csv"
    assert "X-Pipeline-Stage" not in response.headers
    assert first.requests[-1]["content_type"] == b"application/json"  # the client's
    assert second.requests[-1]["content_type"] == b"text/csv"  # stage A's answer's
    assert second.requests[-1]["body"] == b'A({"x": 1})'


def test_the_clients_accept_goes_to_the_last_stage_only(stages, front):
    first, second, stage_list = stages
    url = front(stage_list)
    post(url, b"1", accept="application/json")
    assert first.requests[-1]["accept"] is None  # A answers in its default (SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT)
    assert second.requests[-1]["accept"] == b"application/json"


def test_without_accept_the_last_stage_answers_in_its_default(stages, front):
    _, second, stage_list = stages
    response = post(front(stage_list), b"1")
    assert response.headers["Content-Type"] == "application/jsonlines"
    assert second.requests[-1]["accept"] is None


def test_content_type_parameters_pass_unchanged(stages, front):
    first, _, stage_list = stages
    response = post(front(stage_list), b"1,2", "text/csv; charset=latin-1", accept="text/csv; q=0.9")
    assert response.status_code == 200
    assert first.requests[-1]["content_type"] == b"text/csv; charset=latin-1"
    assert response.headers["Content-Type"] == "text/csv; q=0.9"  # what stage B said, verbatim


def test_three_stages(serve, front):
    apps = [StageApp(name) for name in "ABC"]
    stage_list = [Stage(i, app.name, "127.0.0.1", serve(app).port) for i, app in enumerate(apps, start=1)]
    assert post(front(stage_list), b"x").content == b"C(B(A(x)))"


def test_a_single_stage(stages, front):
    _, _, stage_list = stages
    response = post(front(stage_list[:1]), b"x", accept="text/plain")
    assert (response.content, response.headers["Content-Type"]) == (b"A(x)", "text/plain")


def test_request_id_and_custom_attributes_reach_every_stage(stages, front):
    first, second, stage_list = stages
    url = front(stage_list)
    response = post(url, b"1", **{"X-Amzn-RequestId": "req-42", "X-Amzn-SageMaker-Custom-Attributes": "a=b"})
    assert response.headers["X-Request-Id"] == "req-42"
    for app in (first, second):
        assert app.requests[-1]["request_id"] == b"req-42"
        assert app.requests[-1]["attributes"] == b"a=b"
    generated = post(url, b"2").headers["X-Request-Id"]
    assert generated and first.requests[-1]["request_id"] == second.requests[-1]["request_id"] == generated.encode()
    assert post(url, b"3").headers["X-Request-Id"] != generated


def test_large_bodies_and_chunked_requests(stages, front):
    _, _, stage_list = stages
    url = front(stage_list, max_payload_mb=8)
    big = os.urandom(3 * 1024 * 1024)
    assert post(url, big, "application/x-npy").content == b"B(A(" + big + b"))"
    chunked = requests.post(f"{url}/invocations", data=iter([b"ab", b"cd", b"ef"]),
                            headers={"Content-Type": "text/csv"}, timeout=10)
    assert chunked.content == b"B(A(abcdef))"


def test_a_body_over_the_limit_is_413_before_any_stage(stages, front):
    first, _, stage_list = stages
    url = front(stage_list, max_payload_mb=1)
    response = post(url, b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge"
    chunked = requests.post(f"{url}/invocations", data=iter([b"x" * 700_000, b"y" * 700_000]),
                            headers={"Content-Type": "text/csv"}, timeout=10)
    assert chunked.status_code == 413
    assert first.requests == []


def test_concurrent_requests_share_a_small_pool_of_kept_alive_connections(stages, front):
    first, second, stage_list = stages
    first.delay = 0.005
    url = front(stage_list, pool_size=4)
    bodies = [f"r{i}".encode() for i in range(200)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda body: post(url, body).content, bodies))
    assert answers == [b"B(A(" + body + b"))" for body in bodies]
    assert 1 <= len(first.clients) <= 4  # connections: opened once, reused, never more than the pool
    assert 1 <= len(second.clients) <= 4


def test_a_connection_the_stage_closed_while_idle_is_replaced(serve, front):
    first, second = StageApp("A"), StageApp("B")
    a = serve(first, timeout_keep_alive=1)  # the stage drops idle connections after 1 s
    b = serve(second)
    url = front([Stage(1, "A", "127.0.0.1", a.port), Stage(2, "B", "127.0.0.1", b.port)])
    assert post(url, b"1").status_code == 200
    time.sleep(1.5)
    assert post(url, b"2").content == b"B(A(2))"
    assert len(first.clients) == 2


# -- errors ---------------------------------------------------------------------------------------------


def test_an_error_of_the_first_stage_passes_through_unchanged_with_the_stage(stages, front):
    _, second, stage_list = stages
    response = post(front(stage_list), b"bad order")
    assert response.status_code == 400
    assert response.content == b'{"error":"BadRequest","message":"A: record 0 is bad"}'
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Pipeline-Stage"] == "1"
    assert response.headers["X-Pipeline-Container"] == "A"
    assert second.requests == []  # the chain stops at the failing stage


def test_an_error_of_the_last_stage_keeps_its_status(stages, front):
    _, _, stage_list = stages
    response = post(front(stage_list), b"crash-B")
    assert response.status_code == 500
    assert response.json() == {"error": "ModelError", "message": "boom"}
    assert (response.headers["X-Pipeline-Stage"], response.headers["X-Pipeline-Container"]) == ("2", "B")


def test_an_unreachable_stage_is_502_naming_it(stages, front):
    _, _, stage_list = stages
    dead = Stage(2, "B", "127.0.0.1", free_port())  # nothing listens there
    response = post(front([stage_list[0], dead]), b"1")
    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "BadGateway"
    assert "stage 2 (B)" in body["message"] and str(dead.port) in body["message"]
    assert (response.headers["X-Pipeline-Stage"], response.headers["X-Pipeline-Container"]) == ("2", "B")


def test_a_stage_that_dies_mid_answer_is_502(serve, front):
    async def half(scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            await receive()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"100"), (b"content-type", b"text/csv")]})
            await send({"type": "http.response.body", "body": b"only part", "more_body": True})
            raise RuntimeError("the stage dies")  # uvicorn closes the connection

    stage = serve(half, lifespan="off")
    response = post(front([Stage(1, "half", "127.0.0.1", stage.port)]), b"1")
    assert response.status_code == 502
    assert response.headers["X-Pipeline-Container"] == "half"


def test_a_stage_slower_than_the_timeout_is_504(stages, front):
    first, _, stage_list = stages
    first.delay = 2.0
    started = time.monotonic()
    response = post(front(stage_list, timeout_s=0.3), b"1")
    assert time.monotonic() - started < 1.5
    assert response.status_code == 504
    assert response.json()["error"] == "GatewayTimeout"
    assert response.headers["X-Pipeline-Stage"] == "1"


def test_other_routes_and_methods(stages, front):
    _, _, stage_list = stages
    url = front(stage_list)
    assert requests.get(f"{url}/invocations", timeout=5).status_code == 405
    missing = requests.get(f"{url}/nope", timeout=5)
    assert missing.status_code == 404 and missing.json()["error"] == "NotFound"


# -- ping and execution parameters ----------------------------------------------------------------------


def test_ping_is_200_only_when_every_stage_is(stages, front):
    _, second, stage_list = stages
    url = front(stage_list)
    assert requests.get(f"{url}/ping", timeout=5).status_code == 200
    second.ready = False
    response = requests.get(f"{url}/ping", timeout=5)
    assert response.status_code == 503
    assert "stage 2 (B)" in response.json()["message"] and "stage 1" not in response.json()["message"]
    assert response.headers["X-Pipeline-Stage"] == "2"
    second.ready = True
    assert requests.get(f"{url}/ping", timeout=5).status_code == 200


def test_ping_with_a_dead_stage_is_503(stages, front):
    _, _, stage_list = stages
    url = front([stage_list[0], Stage(2, "B", "127.0.0.1", free_port())])
    response = requests.get(f"{url}/ping", timeout=5)
    assert response.status_code == 503
    assert "stage 2 (B)" in response.json()["message"]


def test_execution_parameters_come_from_the_first_stage(stages, front):
    _, _, stage_list = stages
    response = requests.get(f"{front(stage_list)}/execution-parameters", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"MaxPayloadInMB": 7, "stage": "A"}


# -- configuration and the process ----------------------------------------------------------------------


def test_stages_are_parsed_in_order():
    assert parse_stages("preprocess=8081, xgboost=10.0.0.2:8082,8083") == (
        Stage(1, "preprocess", "127.0.0.1", 8081), Stage(2, "xgboost", "10.0.0.2", 8082),
        Stage(3, "stage3", "127.0.0.1", 8083))
    for bad in ("", "a=b", "x=70000", "a=1,,b=host:"):
        with pytest.raises(SettingsError):
            parse_stages(bad)


def test_config_from_the_environment():
    config = PipelineConfig.from_env({"SMKIT_PIPELINE_STAGES": "a=8081,b=8082", "SAGEMAKER_BIND_TO_PORT": "9000",
                                      "SAGEMAKER_MODEL_SERVER_TIMEOUT": "10", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100",
                                      "SMKIT_PIPELINE_WORKERS": "2", "SMKIT_PIPELINE_POOL": "4"})
    assert [stage.port for stage in config.stages] == [8081, 8082]
    assert (config.port, config.timeout_s, config.max_payload_mb, config.workers, config.pool_size) == (
        9000, 15.0, 100.0, 2, 4)
    assert PipelineConfig.from_env({"SMKIT_PIPELINE_STAGES": "8081", "SMKIT_PIPELINE_TIMEOUT": "2.5"}).timeout_s == 2.5
    with pytest.raises(SettingsError, match="front's own port"):
        PipelineConfig.from_env({"SMKIT_PIPELINE_STAGES": "8080"})
    options = gunicorn_options(config)
    assert options["bind"] == ["0.0.0.0:9000"] and options["workers"] == 2
    assert options["worker_class"] == "serving_common.workers.Worker"  # the model servers' worker


def _module_env(**env: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "SMKIT_WORKER_USER": "", **env}


def test_the_module_refuses_a_bad_configuration():
    result = subprocess.run([sys.executable, "-m", "serving_common.pipeline"], env=_module_env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "SMKIT_PIPELINE_STAGES" in result.stderr


def test_python_dash_m_runs_the_front_under_gunicorn(stages):
    _, _, stage_list = stages
    port = free_port()
    env = _module_env(SAGEMAKER_BIND_TO_PORT=str(port),
                      SMKIT_PIPELINE_STAGES=",".join(f"{s.name}={s.port}" for s in stage_list), SMKIT_LOG_LEVEL="DEBUG",
                      SMKIT_ACCESS_LOG="true")
    process = subprocess.Popen([sys.executable, "-m", "serving_common.pipeline"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/ping", 20, alive=lambda: process.poll() is None, check_every=0.0)  # else: did not start
        assert post(url, b"x", accept="text/csv").content == b"B(A(x))"
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "stage 1 (A)" in output and "status=200" in output  # DEBUG: one line per invocation


def test_a_stage_answering_connection_close_gets_a_new_connection_each_time(serve, front):
    clients: set[tuple[str, int]] = set()

    async def closing(scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] == "http":
            clients.add(tuple(scope["client"]))
            await receive()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/csv"), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": b"ok"})

    stage = serve(closing, lifespan="off")
    url = front([Stage(1, "closing", "127.0.0.1", stage.port)])
    assert [post(url, b"1").content for _ in range(3)] == [b"ok"] * 3
    assert len(clients) == 3


class OneShotStage(socketserver.ThreadingTCPServer):
    """A raw HTTP stage that answers ``answers`` requests per connection, then closes the connection when the
    next request arrives, without a byte of answer (a keep-alive connection dropped just as it is reused)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, answers: int) -> None:
        self.answers = answers
        self.connections = 0
        super().__init__(("127.0.0.1", 0), self.Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            server: OneShotStage = self.server  # type: ignore[assignment]
            server.connections += 1
            for served in range(server.answers + 1):
                lines = []
                while (line := self.rfile.readline()) not in (b"\r\n", b""):
                    lines.append(line)
                if not lines:
                    return
                length = next((int(line.split(b":")[1]) for line in lines
                               if line.lower().startswith(b"content-length")), 0)
                self.rfile.read(length)
                if served == server.answers:
                    return  # closes without answering
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 2\r\n\r\nok")


@pytest.fixture
def one_shot() -> Iterator[Callable[[int], OneShotStage]]:
    servers: list[OneShotStage] = []

    def make(answers: int) -> OneShotStage:
        servers.append(OneShotStage(answers))
        return servers[-1]

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_kept_alive_connection_dropped_as_it_is_reused_is_retried_once_on_a_new_one(one_shot, front):
    stage = one_shot(1)
    url = front([Stage(1, "raw", "127.0.0.1", stage.server_address[1])])
    assert post(url, b"1").content == b"ok"
    assert post(url, b"2").content == b"ok"  # the reused connection is dropped: retried on a fresh one
    assert stage.connections == 2


def test_a_stage_that_closes_fresh_connections_without_answering_is_502(one_shot, front):
    stage = one_shot(0)
    response = post(front([Stage(1, "raw", "127.0.0.1", stage.server_address[1])]), b"1")
    assert response.status_code == 502
    assert "without answering" in response.json()["message"]


@pytest.mark.parametrize("access_log", [True, False])
def test_each_invocation_is_logged_once_at_the_front_unless_turned_off(stages, front, caplog, access_log):
    _, _, stage_list = stages
    url = front(stage_list, access_log=access_log)
    with caplog.at_level(logging.INFO, logger="serving_common.pipeline"):
        assert post(url, b"[1]", **{"X-Amzn-RequestId": "front-log-1"}).status_code == 200
        time.sleep(0.1)
    logged = [r.getMessage() for r in caplog.records if "front-log-1" in r.getMessage()]
    assert (len(logged) == 1 and "status=200" in logged[0]) if access_log else not logged
    assert PipelineConfig.from_env({"SMKIT_PIPELINE_STAGES": "8081", "SMKIT_ACCESS_LOG": "false"}).access_log is False
