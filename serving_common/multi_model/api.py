"""The multi-model app: the /models management API and /invocations routed to the target model."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from .. import content_types
from ..app import InferenceApp, Receive, Scope, Send, _header, _send, build_service
from ..asgi import ClientDisconnected, read_body
from ..errors import (
    BadRequest,
    Conflict,
    HTTPError,
    InsufficientStorage,
    MethodNotAllowed,
    ModelError,
    NotFound,
    describe,
)
from ..handler import Handler
from ..invocations import Request, Response, Service, error_response
from ..script_mode import release_script
from ..settings import MME_MEMORY_BUDGET_MB, Settings
from ..uris import local_path
from .memory import (
    HARD_MEMORY_FRACTION,
    directory_bytes,
    mb,
    memory_budget_bytes,
    memory_in_use_bytes,
    memory_limit_bytes,
    request_room_bytes,
    return_memory,
    rss_bytes,
)
from .registry import Entry, Pending, Registry, State

log = logging.getLogger("serving_common.multi_model")
access_log = logging.getLogger("serving_common.access")

#: How often each worker looks for models to load eagerly or to drop (a stat; a read only on change).
SYNC_INTERVAL_S = 0.25
DEFAULT_MAX_RESULTS = 100
MAX_MAX_RESULTS = 1000
#: While a new worker loads the registered models at start-up, it tells gunicorn it lives this often.
HEARTBEAT_S = 5.0


@dataclass
class Loaded:
    token: str
    service: Service


def _segments(scope: Scope) -> list[str]:
    """``/models/a%2Fb/invoke`` -> ``["models", "a/b", "invoke"]`` (names may hold encoded slashes)."""
    raw = scope.get("raw_path") or scope["path"].encode()
    return [unquote(part) for part in raw.split(b"?", 1)[0].decode("latin-1").split("/")[1:]]


def _json(value: Any) -> Response:
    return Response(200, orjson.dumps(value), content_types.JSON)


#: The one rule for model names, checked when a model is loaded: printable, no surrounding blanks (the
#: target-model header would lose them), no control characters, at most ``MAX_NAME_CHARS``.
MAX_NAME_CHARS = 1024


def check_model_name(name: str) -> str:
    """``name`` if it can name a model (in ``POST /models`` and the target-model header alike), else 400."""
    if not name or len(name) > MAX_NAME_CHARS:
        raise BadRequest(f'"model_name" must have 1 to {MAX_NAME_CHARS} characters')
    if name != name.strip() or not name.isprintable():
        raise BadRequest('"model_name" may not start or end with blanks nor hold control characters')
    return name


def confined_path(url: str, root: Path) -> Path:
    """The model folder ``url`` names, resolved (symbolic links followed), if it lies under ``root``.

    Anything else is one 400 that tells nothing about the file system: the path is not looked at before it
    is known to be under the root (``os.path.realpath`` only reads links along it, and raises nothing).
    """
    path = local_path(url)
    real_root = os.path.realpath(root)
    if path is not None and path.is_absolute():
        real = os.path.realpath(path)
        if real != real_root and os.path.commonpath([real, real_root]) == real_root:
            return Path(real)
    raise BadRequest(f"url must be a folder under the models root {root}")


def _parse_load(body: bytes) -> tuple[str, str]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest('the body must be a JSON object {"model_name": ..., "url": ...}')
    name, url = value.get("model_name"), value.get("url")
    if not isinstance(name, str):
        raise BadRequest('"model_name" must be a non-empty string')
    check_model_name(name)
    if not isinstance(url, str) or not url.strip():
        raise BadRequest('"url" must be a non-empty string')
    return name, url


def _query(scope: Scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get(name)
    return values[-1] if values else None


class MultiModelApp(InferenceApp):
    """The single-model app plus the ``/models`` routes; starts with no model."""

    def __init__(self, handler_factory: Callable[[], Handler], settings: Settings, state_dir: Path,
                 budget_bytes: int | None = None) -> None:
        super().__init__(handler_factory, settings)
        self.registry = Registry(state_dir)
        self.budget_bytes = memory_budget_bytes(settings) if budget_bytes is None else budget_bytes
        self.hard_limit_bytes = int(memory_limit_bytes() * HARD_MEMORY_FRACTION)
        self.models: dict[str, Loaded] = {}  # this worker's copies
        self.failed: dict[str, str] = {}  # token -> why a background load failed here (not retried there)
        self.heartbeat: Callable[[], None] | None = None  # set by the gunicorn worker
        self._scheduled: set[str] = set()
        self._applied: State | None = None
        self._started = False
        self._watcher: asyncio.Future | None = None

    # -- lifespan ---------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._started

    async def startup(self) -> None:
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="predict")
        state = self._sync()
        if state.models:  # a worker started after models were loaded: load them all before serving
            started = time.perf_counter()
            future = asyncio.get_running_loop().run_in_executor(
                self.executor, self._load_all, list(state.models.values()))
            while not (await asyncio.wait({future}, timeout=HEARTBEAT_S))[0]:
                if self.heartbeat:
                    self.heartbeat()
            future.result()
            log.info("loaded %d registered models in %.0f ms", len(state.models),
                     (time.perf_counter() - started) * 1e3)
        self._watcher = asyncio.ensure_future(self._watch())
        self._started = True
        log.info("multi-model endpoint ready (memory budget %s MB, %d workers)", mb(self.budget_bytes),
                 self.settings.workers)

    async def shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with suppress(asyncio.CancelledError):
                await self._watcher
        await super().shutdown()

    # -- keeping this worker in step with the registry ---------------------------------------------------------
    def _sync(self) -> State:
        """The current registry (a stat); drops this worker's copies of models no longer registered."""
        state = self.registry.current()
        if state is not self._applied:
            self._applied = state
            released = False
            for name, loaded in list(self.models.items()):
                entry = state.models.get(name)
                if entry is None or entry.token != loaded.token:
                    if self.models.get(name) is loaded:
                        del self.models[name]
                    self._on_prediction_thread(self._release, loaded)
                    released = True
            if released:  # after the releases, on the same thread: by then nothing holds those models
                self._on_prediction_thread(return_memory)
            tokens = {entry.token for entry in state.models.values()}
            self.failed = {token: reason for token, reason in self.failed.items() if token in tokens}
        return state

    def _schedule_loads(self, state: State) -> None:
        for entry in state.models.values():
            loaded = self.models.get(entry.name)
            if (loaded is None or loaded.token != entry.token) and entry.token not in self._scheduled \
                    and entry.token not in self.failed:
                self._scheduled.add(entry.token)
                self._on_prediction_thread(self._load_in_background, entry)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL_S)
            try:
                self._schedule_loads(self._sync())
            except Exception:
                log.exception("multi-model registry sync failed")

    def _on_prediction_thread(self, function: Callable[..., Any], *args: Any) -> None:
        if self.executor is not None:
            self.executor.submit(function, *args)
        else:
            function(*args)

    # -- on the prediction thread (one per worker: loads never overlap) ----------------------------------------
    def _build(self, path: Path, token: str) -> Service:
        return build_service(self.handler_factory, self.settings, path, f"smkit_model_{token}")

    def _ensure(self, entry: Entry) -> Loaded:
        """This worker's copy of ``entry``, loading it first if needed."""
        loaded = self.models.get(entry.name)
        if loaded is not None and loaded.token == entry.token:
            return loaded
        started = time.perf_counter()
        loaded = Loaded(entry.token, self._build(Path(entry.path), entry.token))
        current = self.registry.current().models.get(entry.name)
        if current is not None and current.token == entry.token:
            self.models[entry.name] = loaded
            log.info("model %r loaded in this worker in %.0f ms", entry.name, (time.perf_counter() - started) * 1e3)
        else:  # unloaded meanwhile: answer the request that asked for it, keep nothing
            release_script(loaded.service.handler)
        self.failed.pop(entry.token, None)
        return loaded

    def _load_all(self, entries: list[Entry]) -> None:
        for entry in entries:
            self._load_in_background(entry)

    def _load_in_background(self, entry: Entry) -> None:
        try:
            self._ensure(entry)
        except Exception as exc:
            self.failed[entry.token] = describe(exc)
            log.error("model %r from %s failed to load in this worker: %s", entry.name, entry.url,
                      self.failed[entry.token])
        finally:
            self._scheduled.discard(entry.token)

    def _load_measured(self, path: Path, token: str) -> tuple[Service, int]:
        before = rss_bytes()
        service = self._build(path, token)
        return service, max(0, rss_bytes() - before)

    def _release(self, loaded: Loaded) -> None:
        release_script(loaded.service.handler)

    def _predict(self, entry: Entry, request: Request) -> Response:
        # Checked again here: the request may have waited behind other predictions while the model was
        # unloaded. A DELETE that answered before this prediction started makes it a 404, as anywhere else.
        current = self.registry.current().models.get(entry.name)
        if current is None:
            return error_response(NotFound(f"Model not found: {entry.name}"))
        try:
            loaded = self._ensure(current)
        except Exception as exc:
            log.error("model %r failed to load in this worker: %s: %s", entry.name, type(exc).__name__, exc)
            return error_response(ModelError(f"model {entry.name!r} failed to load in this worker: {describe(exc)}"))
        return loaded.service.invoke(request)

    # -- requests ---------------------------------------------------------------------------------------------
    async def _invoke(self, request: Request, model: str | None) -> Response:
        if model is None:
            return error_response(BadRequest(
                "this is a multi-model endpoint: name the model in the X-Amzn-SageMaker-Target-Model header "
                "or POST /models/{name}/invoke"))
        try:
            entry = self._sync().models.get(model)
        except Exception as exc:  # the registry cannot be read: say so in the usual error body
            log.exception("reading the model registry failed")
            return error_response(HTTPError(f"reading the model registry failed: {describe(exc)}"))
        if entry is None:
            return error_response(NotFound(f"Model not found: {model}"))
        return await self._run(functools.partial(self._predict, entry), request)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> bool:
        segments = _segments(scope)
        if segments[0] != "models":
            return False
        method = scope["method"]
        started = time.perf_counter()
        try:
            if len(segments) == 1:
                if method == "GET":
                    response = self._list(scope)
                elif method == "POST":
                    response = await self._load(scope, receive)
                else:
                    raise MethodNotAllowed("use GET or POST /models")
            elif len(segments) == 2 and segments[1]:
                if method == "GET":
                    response = self._describe(segments[1])
                elif method == "DELETE":
                    response = self._unload(segments[1])
                else:
                    raise MethodNotAllowed("use GET or DELETE /models/{name}")
            elif len(segments) == 3 and segments[1] and segments[2] == "invoke":
                if method != "POST":
                    raise MethodNotAllowed("use POST /models/{name}/invoke")
                await self._invocations(scope, receive, send, segments[1])
                return True
            else:
                raise NotFound(f"no route {method} {scope['path']}")
        except ClientDisconnected:
            return True
        except HTTPError as exc:
            response = error_response(exc)
        except Exception as exc:  # e.g. the registry's folder is full or gone
            log.exception("%s %s failed", method, scope["path"])
            response = error_response(HTTPError(describe(exc)))
        await _send(send, response)
        access_log.info("%s %s status=%d ms=%.3f", method, scope["path"], response.status,
                        (time.perf_counter() - started) * 1e3)
        return True

    def _list(self, scope: Scope) -> Response:
        token, size = _query(scope, "next_page_token"), _query(scope, "max_results")
        try:
            offset = int(token) if token else 0
            limit = int(size) if size else DEFAULT_MAX_RESULTS
        except ValueError:
            raise BadRequest("next_page_token and max_results must be integers") from None
        if offset < 0 or limit < 1:
            raise BadRequest("next_page_token must be >= 0 and max_results >= 1")
        limit = min(limit, MAX_MAX_RESULTS)
        models = self._sync().models
        names = sorted(models)
        page: dict[str, Any] = {"models": [models[name].describe() for name in names[offset:offset + limit]]}
        if offset + limit < len(names):
            page["nextPageToken"] = str(offset + limit)
        return _json(page)

    def _describe(self, name: str) -> Response:
        entry = self._sync().models.get(name)
        if entry is None:
            raise NotFound(f"Model not found: {name}")
        return _json(entry.describe())

    def _unload(self, name: str) -> Response:
        with self.registry.transaction() as state:
            entry = state.models.pop(name, None)
        if entry is None:
            raise NotFound(f"Model not found: {name}")
        self._sync()  # drops this worker's copy; the others drop theirs on their next request or sync
        log.info("model %r unloaded", name)
        return _json({"modelName": name, "modelUrl": entry.url, "status": "unloaded"})

    def _check_budget(self, state: State, name: str, need: int, basis: str, token: str) -> None:
        used = state.used_bytes(except_token=token)
        if used + need > self.budget_bytes:
            raise InsufficientStorage(
                f"loading {name!r} needs about {mb(need)} MB ({basis}, x {self.settings.workers} workers) but "
                f"{mb(max(0, self.budget_bytes - used))} MB of the {mb(self.budget_bytes)} MB budget are "
                f"free ({MME_MEMORY_BUDGET_MB}): unload a model first")
        in_use = memory_in_use_bytes()
        if in_use is not None and in_use + need + request_room_bytes(self.settings) > self.hard_limit_bytes:
            # The estimates are short: memory not given back after unloads, or reused so that a load's
            # growth was measured low. Count what the container really holds.
            raise InsufficientStorage(
                f"loading {name!r} needs about {mb(need)} MB but the container already uses {mb(in_use)} MB "
                f"of its {mb(self.hard_limit_bytes)} MB, with room kept for requests: unload a model first")

    async def _load(self, scope: Scope, receive: Receive) -> Response:
        name, url = _parse_load(await read_body(receive, self.settings.max_payload_bytes,
                                                    _header(scope["headers"], b"content-length")))
        path = confined_path(url, self.settings.models_dir)
        if not path.exists():
            raise NotFound(f"no model at url {url!r}")
        if not path.is_dir():
            raise BadRequest(f"url {url!r} is not a directory")
        started = time.perf_counter()
        workers = self.settings.workers
        on_disk = await asyncio.to_thread(directory_bytes, path)
        token = uuid.uuid4().hex
        with self.registry.transaction() as state:
            if name in state.models or name in state.pending:
                raise Conflict(f"model {name!r} is already loaded" if name in state.models
                               else f"model {name!r} is being loaded")
            self._check_budget(state, name, on_disk * workers, "its size on disk", token)
            state.pending[name] = Pending(token, os.getpid(), on_disk * workers)
        committed = False
        service: Service | None = None
        try:
            try:
                service, growth = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self._load_measured, path, token)
            except Exception as exc:
                log.error("model %r from %s failed to load: %s: %s", name, url, type(exc).__name__, exc)
                raise ModelError(f"loading model {name!r} from {url} failed: {describe(exc)}") from None
            per_worker = max(on_disk, growth)
            entry = Entry(name, url, str(path), token, per_worker, per_worker * workers)
            with self.registry.transaction() as state:
                if state.pending.get(name, Pending("", 0, 0)).token == token:
                    del state.pending[name]
                if name in state.models:
                    raise Conflict(f"model {name!r} is already loaded")
                self._check_budget(state, name, entry.estimate_bytes, "measured while loading", token)
                state.models[name] = entry
            committed = True
            self.models[name] = Loaded(token, service)
        finally:
            if not committed:
                with self.registry.transaction() as state:
                    if state.pending.get(name, Pending("", 0, 0)).token == token:
                        del state.pending[name]
                if service is not None:
                    self._on_prediction_thread(release_script, service.handler)
        log.info("model %r loaded from %s in %.0f ms (estimate %s MB = %s MB x %d workers)", name, url,
                 (time.perf_counter() - started) * 1e3, mb(entry.estimate_bytes), mb(per_worker), workers)
        return _json({"modelName": name, "modelUrl": url, "status": "loaded"})
