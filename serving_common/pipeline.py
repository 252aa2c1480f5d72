"""The front of a serial inference pipeline: one port in front of the containers of one endpoint.

SageMaker runs the containers of a pipeline model side by side in one network namespace, each on its own
``SAGEMAKER_BIND_TO_PORT``, and chains them itself. Where no platform does that (local mode, a plain
``docker run``), this front does it, as SageMaker does:

- ``POST /invocations``: the client's body and ``Content-Type`` go to stage 1; each stage's response body
  and ``Content-Type`` go to the next stage; the client's ``Accept`` is sent to the last stage only
  (earlier stages answer in their ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``, e.g. ``text/csv``). The last
  stage's answer is the pipeline's. A stage that answers with an error ends the chain: its status, body
  and Content-Type reach the client unchanged, with ``X-Pipeline-Stage: <1-based index>`` and
  ``X-Pipeline-Container: <name>`` added (never a 500 of the front's own). A stage that cannot be reached
  or breaks the protocol gives 502, one that does not answer within the timeout 504, both with the JSON
  error body every image uses (``{"error", "message"}``) and the same two headers.
- ``GET /ping``: 200 only when every stage's ``/ping`` answers 200 (asked concurrently), else 503 naming
  the stages that are not ready.
- ``GET /execution-parameters``: the first stage's answer.

The caller's request id (``X-Amzn-RequestId`` / ``X-Request-Id``, or one generated here) and
``X-Amzn-SageMaker-Custom-Attributes`` are sent to every stage, so the stages' log lines of one request
share its id. Bodies are passed on as bytes: nothing is parsed or decoded.

Run it with ``python -m serving_common.pipeline`` (it ships in every image with serving_common), configured
by environment variables:

- ``SMKIT_PIPELINE_STAGES`` (required): the stages in order, ``[name=][host:]port`` comma separated, e.g.
  ``preprocess=8081,xgboost=8082`` (host ``127.0.0.1``);
- ``SAGEMAKER_BIND_TO_PORT`` (``8080``): the front's port;
- ``SMKIT_PIPELINE_TIMEOUT`` (``SAGEMAKER_MODEL_SERVER_TIMEOUT`` + 5 s): seconds one invocation may take
  through all stages (then 504); longer than the stages' own limit, so a stage's timeout answer passes through;
- ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (``6``): request body limit (413 above it);
- ``SMKIT_PIPELINE_WORKERS`` (``1``): worker processes, one event loop each;
- ``SMKIT_PIPELINE_POOL`` (``16``): kept-alive connections per stage per worker (more requests wait for one);
- ``SMKIT_ACCESS_LOG`` (``false``): one line per invocation (failed ones are always logged); the local
  pipeline keeps the stages' own access logs off, so each request is logged once, here.

Cost: the front is uvicorn (uvloop + httptools) on the server side and, on the client side, a pool of
kept-alive HTTP/1.1 connections per stage driven by httptools' response parser on asyncio protocols
(below); no timer per request (deadlines are swept). On the
project's 2-core machine it costs ~180 us of CPU per request against two trivial stages (of which ~95 us
is uvicorn serving the request at all), about a sixth of a preprocess -> xgboost pipeline's CPU under
load; ``bench/pipeline.py`` measures it in place, beside the stages'.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httptools
import orjson

from .asgi import ClientDisconnected, RequestIds, read_body, run_lifespan
from .errors import PayloadTooLarge
from .logs import configure_logging
from .server import ModelServer, account, base_options
from .settings import (
    ACCESS_LOG,
    BIND_TO_PORT,
    DEFAULT_PORT,
    DEFAULT_TIMEOUT_S,
    MAX_PAYLOAD_IN_MB,
    MODEL_SERVER_TIMEOUT,
    WORKER_USER,
    SettingsError,
    _bool,
    _float,
    _int,
    _log_level,
)

log = logging.getLogger("serving_common.pipeline")

STAGES = "SMKIT_PIPELINE_STAGES"
TIMEOUT = "SMKIT_PIPELINE_TIMEOUT"
WORKERS = "SMKIT_PIPELINE_WORKERS"
POOL = "SMKIT_PIPELINE_POOL"

STAGE_HEADER = b"x-pipeline-stage"
CONTAINER_HEADER = b"x-pipeline-container"
#: Longest wait for one stage's /ping (SageMaker allows about 2 s for a ping).
PING_TIMEOUT_S = 2.0
#: Above this size a body is written after the request head instead of being joined to it.
_JOIN_LIMIT = 64 * 1024


# -- configuration ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One container of the pipeline: its 1-based position, a name for messages, where it listens."""

    index: int
    name: str
    host: str
    port: int

    @property
    def label(self) -> str:
        return f"stage {self.index} ({self.name}) at {self.host}:{self.port}"


def parse_stages(text: str) -> tuple[Stage, ...]:
    """``"preprocess=8081,xgboost=10.0.0.2:8082"`` -> stages; a stage without a name is ``stage<N>``."""
    stages = []
    for index, item in enumerate((part.strip() for part in text.split(",") if part.strip()), start=1):
        name, _, address = item.rpartition("=")
        host, _, port_text = address.rpartition(":")
        try:
            port = int(port_text)
        except ValueError:
            raise SettingsError(f"{STAGES}: {item!r} is not [name=][host:]port") from None
        if not 0 < port < 65536:
            raise SettingsError(f"{STAGES}: {item!r} has an invalid port")
        stages.append(Stage(index, name.strip() or f"stage{index}", host.strip() or "127.0.0.1", port))
    if not stages:
        raise SettingsError(f"{STAGES} names no stage (e.g. preprocess=8081,xgboost=8082)")
    return tuple(stages)


@dataclass(frozen=True)
class PipelineConfig:
    stages: tuple[Stage, ...]
    port: int = DEFAULT_PORT
    timeout_s: float = DEFAULT_TIMEOUT_S + 5
    max_payload_mb: float = 6.0
    workers: int = 1
    pool_size: int = 16
    log_level: str = "INFO"
    worker_user: str | None = None
    access_log: bool = False

    @property
    def max_payload_bytes(self) -> int:
        return int(self.max_payload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PipelineConfig:
        env = os.environ if env is None else env
        port = _int(env, BIND_TO_PORT, DEFAULT_PORT, minimum=1)
        if port > 65535:
            raise SettingsError(f"{BIND_TO_PORT}={port} is not a valid port")
        stage_timeout = _int(env, MODEL_SERVER_TIMEOUT, DEFAULT_TIMEOUT_S, minimum=1)
        stages = parse_stages(env.get(STAGES, ""))
        if any(stage.port == port and stage.host in ("127.0.0.1", "localhost", "0.0.0.0") for stage in stages):
            raise SettingsError(f"{STAGES}: a stage listens on the front's own port {port}")
        return cls(
            stages=stages,
            port=port,
            timeout_s=_float(env, TIMEOUT, stage_timeout + 5.0),
            max_payload_mb=_float(env, MAX_PAYLOAD_IN_MB, 6.0),
            workers=_int(env, WORKERS, 1, minimum=1),
            pool_size=_int(env, POOL, 16, minimum=1),
            log_level=_log_level(env),
            worker_user=env.get(WORKER_USER, "").strip() or None,
            access_log=_bool(env, ACCESS_LOG, default=False),
        )


# -- the client side: kept-alive connections to the stages -------------------------------------------
#
# Why not a client library: the images hold httptools, h11 and uvloop (no aiohttp/httpx, and adding them
# would grow every image for the front alone). h11 parses in pure Python. Measured on this project's 2-core
# machine (client CPU per POST of a 100-byte order and its answer over loopback, uvloop, a raw server):
# h11 over asyncio streams ~260 us; this client ~50 us, of which ~28 us are the socket round trip itself
# (a bare asyncio.Protocol writing and awaiting a reply). The front makes one such exchange per stage per
# request, so with h11 the front would cost ~3x as much. The parsing here is httptools' (llhttp, the
# parser uvicorn uses); what is hand-written is only the request head (a few fixed header lines),
# connection reuse and the deadline.


class StageFailure(Exception):
    """The front got no usable answer from a stage: 502 (unreachable, broken answer) or 504 (too slow)."""

    status = 502
    title = "BadGateway"


class StageTimeout(StageFailure):
    status = 504
    title = "GatewayTimeout"


class _StaleConnection(Exception):
    """A reused connection was closed by the stage before a byte of answer: retry once on a fresh one.

    A server closes a kept-alive connection when it has been idle too long; the close can cross the next
    request on the wire. Retrying a POST is safe here: an answer is a pure function of the request."""


class _Connection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection to a stage; one request at a time."""

    __slots__ = ("body", "closed", "content_type", "deadline", "keep_alive", "parser", "received", "status",
                 "transport", "waiter")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.content_type: bytes | None = None
        self.body: list[bytes] = []
        self.received = False  # any byte of the current answer
        self.keep_alive = True
        self.closed = False
        self.deadline = 0.0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(StageFailure(f"sent a malformed HTTP response ({exc})"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(StageFailure("closed the connection in the middle of its answer") if self.received
                   else _StaleConnection())

    # httptools callbacks (only those needed: each costs a Python call)
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 12 and name.lower() == b"content-type":
            self.content_type = value

    def on_headers_complete(self) -> None:
        # Read here: llhttp clears the connection flags once the message is complete.
        parser = self.parser
        self.status = parser.get_status_code()
        self.keep_alive = parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # use
    def start(self, loop: asyncio.AbstractEventLoop, head: bytes, body: bytes, deadline: float) -> asyncio.Future[None]:
        self.content_type = None
        self.body = []
        self.received = False
        self.deadline = deadline
        self.waiter = waiter = loop.create_future()
        transport = self.transport
        assert transport is not None
        if len(body) <= _JOIN_LIMIT:
            transport.write(head + body)
        else:
            transport.write(head)
            transport.write(body)
        return waiter

    def answer(self) -> tuple[int, bytes | None, bytes]:
        body = self.body
        return self.status, self.content_type, body[0] if len(body) == 1 else b"".join(body)

    def _fail(self, error: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def timed_out(self) -> None:
        self._fail(StageTimeout("did not answer within the pipeline's timeout"))
        self.abort()  # its answer may still come: this connection cannot carry another request

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class StageClient:
    """A bounded pool of kept-alive connections to one stage, for one event loop (one per worker).

    Deadlines are enforced by a sweep of the requests in flight every ``sweep_s`` seconds rather than a
    timer per request: a timer per stage call measured ~10 us of CPU here, a tenth of the front's budget.
    """

    def __init__(self, stage: Stage, pool_size: int, sweep_s: float = 0.25) -> None:
        self.stage = stage
        self.pool_size = pool_size
        self.sweep_s = sweep_s
        self.idle: list[_Connection] = []
        self.active: set[_Connection] = set()
        self.busy = 0
        self.waiting: list[asyncio.Future[None]] = []
        self._sweeper: asyncio.TimerHandle | None = None
        host = f"{stage.host}:{stage.port}".encode()
        self.post_prefix = b"POST /invocations HTTP/1.1\r\nHost: " + host + b"\r\n"
        self.get_suffix = b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"

    async def request(self, head: bytes, body: bytes, deadline: float) -> tuple[int, bytes | None, bytes]:
        """(status, Content-Type, body) of the stage's answer; StageFailure when there is none.

        ``head`` is the request line and headers (``post_prefix`` + header lines + blank line); ``deadline``
        is in the loop's time.
        """
        loop = asyncio.get_running_loop()
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.sweep_s, self._sweep, loop)
        if self.busy >= self.pool_size:
            await self._wait_for_slot(loop, deadline)
        self.busy += 1
        active = self.active
        try:
            conn = self._idle()
            may_retry = conn is not None
            if conn is None:
                conn = await self._connect(loop, deadline)
            while True:
                active.add(conn)
                try:
                    await conn.start(loop, head, body, deadline)
                except _StaleConnection:
                    active.discard(conn)
                    if not may_retry:
                        raise StageFailure("closed the connection without answering") from None
                    may_retry = False  # the stage closed it while it was idle: once more, on a new connection
                    conn = await self._connect(loop, deadline)
                    continue
                except BaseException:
                    active.discard(conn)
                    conn.abort()  # an answer may still come on it (or half of one): never reuse it
                    raise
                active.discard(conn)
                break
            if conn.closed or not conn.keep_alive:
                conn.abort()
            else:
                self.idle.append(conn)
            return conn.answer()
        finally:
            self.busy -= 1
            if self.waiting:
                waiter = self.waiting.pop(0)
                if not waiter.done():
                    waiter.set_result(None)

    def _idle(self) -> _Connection | None:
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for conn in [conn for conn in self.active if conn.deadline <= now]:
            conn.timed_out()
        self._sweeper = loop.call_later(self.sweep_s, self._sweep, loop)

    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        while self.busy >= self.pool_size:
            waiter = loop.create_future()
            self.waiting.append(waiter)
            timer = loop.call_at(deadline, lambda w=waiter: w.done() or w.set_exception(
                StageTimeout("no connection to it became free within the pipeline's timeout")))
            try:
                await waiter
            finally:
                timer.cancel()
                if waiter in self.waiting:
                    self.waiting.remove(waiter)

    async def _connect(self, loop: asyncio.AbstractEventLoop, deadline: float) -> _Connection:
        stage = self.stage
        try:
            async with asyncio.timeout_at(deadline):
                _, conn = await loop.create_connection(_Connection, stage.host, stage.port)
        except TimeoutError:
            raise StageTimeout("did not accept a connection within the pipeline's timeout") from None
        except OSError as exc:
            raise StageFailure(f"cannot be reached: {exc.strerror or exc}") from None
        return conn

    async def get(self, path: bytes, deadline: float) -> tuple[int, bytes | None, bytes]:
        return await self.request(b"GET " + path + self.get_suffix, b"", deadline)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in self.idle:
            conn.abort()
        self.idle.clear()


# -- the server side: the ASGI app --------------------------------------------------------------------

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
Headers = list[tuple[bytes, bytes]]

_JSON = b"application/json"


def _error_body(title: str, message: str) -> bytes:
    return orjson.dumps({"error": title, "message": message})


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
                    await _answer(send, 405, _error_body("MethodNotAllowed", "use POST /invocations"), _JSON)
            elif path == "/ping":
                await self._ping(send)
            elif path == "/execution-parameters":
                await self._execution_parameters(send)
            else:
                await _answer(send, 404, _error_body("NotFound", f"no route {scope['method']} {path}"), _JSON)
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
            await _answer(send, exc.status, _error_body(exc.title, exc.message), _JSON, request_id)
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
                await _answer(send, exc.status, _error_body(exc.title, message), _JSON, request_id, stage)
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
        await _answer(send, 503, _error_body("ServiceUnavailable", f"not every stage is ready: {message}"), _JSON,
                      stage=failing[0][0])

    async def _execution_parameters(self, send: Send) -> None:
        client = self.clients[0]
        deadline = asyncio.get_running_loop().time() + min(PING_TIMEOUT_S, self.config.timeout_s)
        try:
            status, content_type, body = await client.get(b"/execution-parameters", deadline)
        except StageFailure as exc:
            await _answer(send, exc.status, _error_body(exc.title, f"{client.stage.label}: {exc}"), _JSON,
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


# -- the process: gunicorn + uvicorn workers ----------------------------------------------------------


def gunicorn_options(config: PipelineConfig) -> dict[str, Any]:
    # The front reads no model and no file: its workers need no privileges at all.
    return base_options(port=config.port, workers=config.workers, worker_class="serving_common.server.Worker",
                        heartbeat_s=int(config.timeout_s) + 30, log_level=config.log_level,
                        proc_name="pipeline-front", identity=account(config.worker_user))


def main() -> int:
    try:
        config = PipelineConfig.from_env()
    except SettingsError as exc:
        print(f"pipeline front: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    log.info("pipeline front on port %d with %d worker(s): %s", config.port, config.workers,
             " -> ".join(stage.label for stage in config.stages))
    ModelServer(PipelineApp(config), gunicorn_options(config)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
