"""The HTTP front of every container: a plain ASGI app (no web framework on the hot path).

Routes: ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``. The model is loaded in
each worker at start-up (ASGI lifespan); a load failure fails the worker's boot, which stops the
container with a non-zero exit instead of answering pings. Predictions run on one thread per worker so
that the event loop keeps answering ``/ping`` while every worker is busy, except small requests to a model
that answers fast (``InlinePolicy``). Multi-model endpoints
(``serving_common.multi_model``) extend this app with the ``/models`` routes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson

from .asgi import ClientDisconnected, RequestIds, read_body, run_lifespan
from .errors import HTTPError, MethodNotAllowed, ModelError, NotFound, ServiceUnavailable
from .fused import fused_if_needed
from .handler import Handler
from .invocations import Request, Response, Service, error_response
from .script_mode import with_user_script
from .settings import Settings

log = logging.getLogger("serving_common")
access_log = logging.getLogger("serving_common.access")

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

#: SageMaker's multi-model data plane names the model of an ``/invocations`` request in this header.
TARGET_MODEL = b"x-amzn-sagemaker-target-model"


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def build_service(handler_factory: Callable[[], Handler], settings: Settings, model_dir: Path,
                  module_name: str | None = None) -> Service:
    """A fresh handler (with any user script) and the model it loads from ``model_dir``."""
    base = handler_factory()
    base.settings = settings
    handler = with_user_script(fused_if_needed(base, model_dir), settings, model_dir, module_name)
    service = Service(handler, None, settings.default_accept)
    if handler.accepts is not None and service.default_accept not in handler.accepts:
        raise ValueError(f"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT={settings.default_accept!r} cannot be produced "
                         f"by this container; it answers in: {', '.join(handler.accepts)}")
    service.model = handler.load(model_dir)
    return service


class InlinePolicy:
    """Which requests run on the event loop rather than the prediction thread.

    Why: handing a request to the prediction thread and back (futex wake-ups, GIL hand-offs) costs ~0.2 ms
    of CPU here, as much as a whole fast prediction: measured 0.91 -> 0.70 ms of server CPU per 100-row
    XGBoost request, 0.69 -> 0.50 ms per single row through XGBoost's own predictor. A request of up to
    ``MAX_BYTES`` to a model whose recent predictions averaged under ``MAX_MS`` runs on the loop, which
    then answers ``/ping`` after at most a few such predictions; the per-request timeout, which only the
    thread can enforce, is meant for the slow ones. The first request, and every request while slow ones
    keep the average up, takes the thread; predictions are timed on both paths. Predictions still run one
    at a time, in order: none runs inline while one is queued for or running on the thread, so handlers
    need not be thread-safe.
    """

    MAX_BYTES = 64 * 1024
    MAX_MS = 1.0
    WEIGHT = 0.1  # of the newest prediction in the moving average

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.average_ms: float | None = None
        self.handed_off = 0  # predictions queued for or running on the thread
        self._lock = threading.Lock()  # handed_off changes on the loop and on the thread

    def inline(self, request: Request) -> bool:
        average = self.average_ms
        return (self.enabled and not self.handed_off and average is not None and average < self.MAX_MS
                and len(request.body) <= self.MAX_BYTES)

    def hand_off(self, call: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """``call`` timed, counted in ``handed_off`` until it has run on the thread (a prediction stuck
        past the timeout stays counted: its worker is recycled, and nothing runs inline beside it)."""
        with self._lock:
            self.handed_off += 1

        def run(request: Request) -> Response:
            try:
                return self.timed(call, request)
            finally:
                with self._lock:
                    self.handed_off -= 1
        return run

    def timed(self, call: Callable[[Request], Response], request: Request) -> Response:
        """``call(request)``, adding how long it took to the moving average."""
        started = time.perf_counter()
        try:
            return call(request)
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1e3
            average = self.average_ms
            self.average_ms = elapsed_ms if average is None else average + self.WEIGHT * (elapsed_ms - average)


class InferenceApp:
    """ASGI application serving one model with one handler."""

    def __init__(self, handler_factory: Callable[[], Handler], settings: Settings) -> None:
        self.handler_factory = handler_factory
        self.settings = settings
        self.service: Service | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.request_ids = RequestIds()
        self.inline_policy = InlinePolicy(settings.inline_predictions)

    # -- lifespan ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the model (with any user script): called once per worker before it serves."""
        started = time.perf_counter()
        self.service = build_service(self.handler_factory, self.settings, self.settings.model_dir)
        log.info("model loaded from %s in %.0f ms", self.settings.model_dir, (time.perf_counter() - started) * 1e3)

    @property
    def ready(self) -> bool:
        """Whether ``/ping`` answers 200."""
        return self.service is not None

    async def startup(self) -> None:
        self.load()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="predict")

    async def shutdown(self) -> None:
        if self.executor:
            self.executor.shutdown(wait=True)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        self.request_ids.restart()
        await run_lifespan(receive, send, self.startup, self.shutdown, failure="MODEL LOAD FAILED")

    # -- requests ---------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/invocations":
            if method != "POST":
                await _send(send, error_response(MethodNotAllowed("use POST /invocations")))
                return
            await self._invocations(scope, receive, send, _header(scope["headers"], TARGET_MODEL))
        elif path == "/ping":
            await _send(send, Response(200, b"", "text/plain") if self.ready
                        else error_response(ServiceUnavailable("the model is not loaded")))
        elif path == "/execution-parameters":
            await _send(send, Response(200, self._execution_parameters(), "application/json"))
        elif not await self._route(scope, receive, send):
            await _send(send, error_response(NotFound(f"no route {method} {path}")))

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Routes beyond the single-model ones (multi-model endpoints); False: no such route."""
        return False

    def _execution_parameters(self) -> bytes:
        """Batch transform asks this only for what the job did not set itself.

        ``BatchStrategy`` is left out unless ``SAGEMAKER_BATCH_STRATEGY`` sets one, because the two
        clients disagree on its spelling and leaving it out gives MULTI_RECORD in both:
        - AWS ("Use Your Own Inference Code with Batch Transform", How Containers Serve Requests):
          possible values ``SINGLE_RECORD``, ``MULTI_RECORD``; a container that does not answer gets
          the default ``MULTI_RECORD``. AWS's own containers answer in that spelling
          (sagemaker-xgboost-container ``algorithm_mode/serve.py``: ``"MULTI_RECORD"``;
          sagemaker-sparkml-serving-container ``ServingController``: ``"SINGLE_RECORD"``); none answers
          ``MultiRecord``, the CreateTransformJob API's spelling, so that one is unproven on AWS.
        - SDK 2.x local mode (``sagemaker/local/entities.py`` ``_LocalTransformJob.start`` ->
          ``local/data.py`` ``get_batch_strategy_instance``) accepts only ``MultiRecord``/``SingleRecord``
          and raises ValueError on ``MULTI_RECORD``; without the key it applies ``MultiRecord``.
        A strategy set explicitly (e.g. a model's environment asking for ``SINGLE_RECORD``) is answered
        in AWS's spelling; ``local_test.sagemaker_local`` makes local mode read that spelling too.
        """
        settings = self.settings
        parameters: dict[str, Any] = {"MaxConcurrentTransforms": settings.max_concurrent_transforms or settings.workers}
        if settings.batch_strategy:
            parameters["BatchStrategy"] = settings.batch_strategy
        parameters["MaxPayloadInMB"] = math.ceil(settings.max_payload_mb)  # SageMaker takes whole MB
        return orjson.dumps(parameters)

    def _request_id(self, headers: list[tuple[bytes, bytes]]) -> str:
        given = _header(headers, b"x-amzn-requestid") or _header(headers, b"x-request-id")
        if given:
            return given[:128]
        return self.request_ids.next()

    async def _invocations(self, scope: Scope, receive: Receive, send: Send, model: str | None = None) -> None:
        """Answer an invocation; ``model`` names the model on a multi-model endpoint (ignored otherwise)."""
        started = time.perf_counter()
        headers = scope["headers"]
        request_id = self._request_id(headers)
        try:
            body = await read_body(receive, self.settings.max_payload_bytes, _header(headers, b"content-length"))
        except ClientDisconnected:
            access_log.info("invocation id=%s client disconnected before sending its body", request_id)
            return
        except HTTPError as exc:
            body = b""
            response = error_response(exc)
        else:
            request = Request(
                body=body,
                content_type=_header(headers, b"content-type"),
                accept=_header(headers, b"accept"),
                request_id=request_id,
                custom_attributes=_header(headers, b"x-amzn-sagemaker-custom-attributes"),
            )
            response = await self._invoke(request, model)
        await _send(send, response, request_id)
        if self.settings.access_log or response.status >= 400:
            access_log.info("invocation id=%s%s status=%d ms=%.3f in=%d out=%d", request_id,
                            f" model={model}" if model is not None else "", response.status,
                            (time.perf_counter() - started) * 1e3, len(body), len(response.body))

    async def _invoke(self, request: Request, model: str | None) -> Response:
        assert self.service is not None
        policy = self.inline_policy
        if policy.inline(request):
            return policy.timed(self.service.invoke, request)
        return await self._run(policy.hand_off(self.service.invoke), request)

    async def _run(self, call: Callable[[Request], Response], request: Request) -> Response:
        """``call(request)`` on the prediction thread, within the per-request time limit."""
        assert self.executor is not None
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, call, request)
        try:
            return await asyncio.wait_for(future, self.settings.timeout_s)
        except TimeoutError:
            # The prediction thread cannot be cancelled: answer, then recycle this worker (gunicorn
            # starts a fresh one) so that later requests do not queue behind a stuck prediction.
            log.error("request %s exceeded %d s; restarting this worker", request.request_id,
                      self.settings.timeout_s)
            os.kill(os.getpid(), signal.SIGTERM)
            return error_response(ModelError(f"prediction exceeded the {self.settings.timeout_s} s timeout"))


async def _send(send: Send, response: Response, request_id: str | None = None) -> None:
    headers = [
        (b"content-type", response.content_type.encode()),
        (b"content-length", str(len(response.body)).encode()),
    ]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})
