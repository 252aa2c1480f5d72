"""The front's server side: the ASGI app that chains the stages (/invocations, /ping, /execution-parameters)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ..asgi import ClientDisconnected, RequestIds, read_body, run_lifespan
from ..errors import PayloadTooLarge, error_body
from ..settings import PipelineConfig, Stage
from .stage_client import StageClient, StageFailure

log = logging.getLogger("serving_common.pipeline")

STAGE_HEADER = b"x-pipeline-stage"
CONTAINER_HEADER = b"x-pipeline-container"
#: Longest wait for one stage's /ping (SageMaker allows about 2 s for a ping).
PING_TIMEOUT_S = 2.0


Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
Headers = list[tuple[bytes, bytes]]

_JSON = b"application/json"


class PipelineApp:
    """ASGI application: the pipeline front (see the module's description)."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.clients: list[StageClient] = []
        self.request_ids = RequestIds()

    # -- lifespan
    async def startup(self) -> None:
        self.request_ids.restart()
        sweep_s = max(0.01, min(0.25, self.config.timeout_s / 10))
        self.clients = [StageClient(stage, self.config.pool_size, sweep_s) for stage in self.config.stages]
        log.info("pipeline front: %s", " -> ".join(stage.label for stage in self.config.stages))

    async def shutdown(self) -> None:
        for client in self.clients:
            client.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await run_lifespan(receive, send, self.startup, self.shutdown, failure="PIPELINE FRONT FAILED")

    # -- requests
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if not self.clients:  # run without lifespan (some test servers)
                await self.startup()
            path = scope["path"]
            if path == "/invocations":
                if scope["method"] == "POST":
                    await self._invocations(scope, receive, send)
                else:
                    await _answer(send, 405, error_body("MethodNotAllowed", "use POST /invocations"), _JSON)
            elif path == "/ping":
                await self._ping(send)
            elif path == "/execution-parameters":
                await self._execution_parameters(send)
            else:
                await _answer(send, 404, error_body("NotFound", f"no route {scope['method']} {path}"), _JSON)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        content_type = accept = request_id = attributes = length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"accept":
                accept = value
            elif name == b"content-length":
                length = value
            elif name == b"x-amzn-requestid":
                request_id = value
            elif name == b"x-request-id":
                request_id = request_id or value
            elif name == b"x-amzn-sagemaker-custom-attributes":
                attributes = value
        if request_id is None:
            request_id = self.request_ids.next().encode()
        else:
            request_id = request_id[:128]
        try:
            body = await read_body(receive, self.config.max_payload_bytes, length)
        except ClientDisconnected:
            log.info("invocation id=%s client disconnected before sending its body", request_id.decode("latin-1"))
            return
        except PayloadTooLarge as exc:
            await _answer(send, exc.status, error_body(exc.title, exc.message), _JSON, request_id)
            return
        size_in = len(body)
        shared = b"X-Request-Id: " + request_id + b"\r\n"
        if attributes is not None:
            shared += b"X-Amzn-SageMaker-Custom-Attributes: " + attributes + b"\r\n"
        deadline = asyncio.get_running_loop().time() + self.config.timeout_s
        last = len(self.clients) - 1
        status = 0
        for position, client in enumerate(self.clients):
            head = client.post_prefix
            if content_type is not None:
                head += b"Content-Type: " + content_type + b"\r\n"
            if position == last and accept is not None:
                head += b"Accept: " + accept + b"\r\n"
            head += shared + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
            try:
                status, content_type, body = await client.request(head, body, deadline)
            except StageFailure as exc:
                stage = client.stage
                message = f"{stage.label}: {exc}"
                await _answer(send, exc.status, error_body(exc.title, message), _JSON, request_id, stage)
                log.warning("invocation id=%s status=%d %s ms=%.3f", request_id.decode("latin-1"), exc.status,
                            message, (time.perf_counter() - started) * 1e3)
                return
            if not 200 <= status < 300:
                stage = client.stage
                await _answer(send, status, body, content_type, request_id, stage)
                log.info("invocation id=%s status=%d from stage %d (%s) ms=%.3f in=%d out=%d",
                         request_id.decode("latin-1"), status, stage.index, stage.name,
                         (time.perf_counter() - started) * 1e3, size_in, len(body))
                return
        await _answer(send, status, body, content_type, request_id)
        if self.config.access_log:
            log.info("invocation id=%s status=%d ms=%.3f in=%d out=%d", request_id.decode("latin-1"), status,
                     (time.perf_counter() - started) * 1e3, size_in, len(body))

    async def _ping(self, send: Send) -> None:
        deadline = asyncio.get_running_loop().time() + min(PING_TIMEOUT_S, self.config.timeout_s)
        answers = await asyncio.gather(*(client.get(b"/ping", deadline) for client in self.clients),
                                       return_exceptions=True)
        failing = []
        for client, answer in zip(self.clients, answers, strict=True):
            if isinstance(answer, BaseException):
                failing.append((client.stage, str(answer) if isinstance(answer, StageFailure) else repr(answer)))
            elif answer[0] != 200:
                failing.append((client.stage, f"/ping answered {answer[0]}"))
        if not failing:
            await _answer(send, 200, b"", b"text/plain")
            return
        message = "; ".join(f"{stage.label}: {reason}" for stage, reason in failing)
        await _answer(send, 503, error_body("ServiceUnavailable", f"not every stage is ready: {message}"), _JSON,
                      stage=failing[0][0])

    async def _execution_parameters(self, send: Send) -> None:
        client = self.clients[0]
        deadline = asyncio.get_running_loop().time() + min(PING_TIMEOUT_S, self.config.timeout_s)
        try:
            status, content_type, body = await client.get(b"/execution-parameters", deadline)
        except StageFailure as exc:
            await _answer(send, exc.status, error_body(exc.title, f"{client.stage.label}: {exc}"), _JSON,
                          stage=client.stage)
            return
        await _answer(send, status, body, content_type, stage=None if 200 <= status < 300 else client.stage)


async def _answer(send: Send, status: int, body: bytes, content_type: bytes | None, request_id: bytes | None = None,
                  stage: Stage | None = None) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if request_id is not None:
        headers.append((b"x-request-id", request_id))
    if stage is not None:
        headers.append((STAGE_HEADER, str(stage.index).encode()))
        headers.append((CONTAINER_HEADER, stage.name.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
