"""Multi-model endpoints (``SAGEMAKER_MULTI_MODEL=true``): the management API and one registry for all workers.

Routes, on the serving port beside ``/ping``, ``/invocations`` and ``/execution-parameters``:

- ``POST /models`` ``{"model_name", "url"}``: load; 200 once usable, 400 malformed body, 404 no such url,
  409 name already loaded (or being loaded), 500 the model failed to load (not registered), 507 over the
  memory budget (SageMaker then unloads models itself: nothing is ever evicted here).
- ``GET /models?next_page_token=&max_results=``: ``{"models": [{"modelName", "modelUrl"}], "nextPageToken"}``,
  sorted by name; no ``nextPageToken`` on the last page.
- ``GET /models/{name}``: the model's entry, or 404. ``DELETE /models/{name}``: 200, or 404.
- ``POST /models/{name}/invoke``, and ``POST /invocations`` with ``X-Amzn-SageMaker-Target-Model: name``:
  exactly ``/invocations`` of single-model mode (one ``Service`` per model, script mode per model from
  its own ``code/``); 404 ``Model not found`` when the name is not loaded.

How the workers agree:

- ONE registry per container: a JSON file in a private folder on ``/dev/shm`` (the gunicorn master makes
  it before forking), rewritten by atomic rename under an ``fcntl`` lock. Its mtime is set to a strictly
  increasing stamp on every write, so ``os.stat`` alone (inode, mtime_ns, size) tells a worker whether it
  changed: each request costs one stat, and the file is re-read only after a change.
- The worker that receives ``POST /models`` reserves the name (a *pending* entry: pid and estimate, so a
  concurrent load of the same name is 409 and two concurrent loads cannot overrun the budget together),
  loads the model on its prediction thread (so load errors reach the caller), then commits it.
- Every request checks the registry first: once ``DELETE`` has answered, the model is 404 in every
  worker. A model registered but not yet loaded in this worker is loaded on this worker's prediction
  thread before the prediction; that single thread does every load of the worker, so nothing is loaded
  twice. A small asyncio task (every ``SYNC_INTERVAL_S``) loads new models eagerly and drops unloaded ones,
  so other workers do not pay the load on their first request and free memory soon after an unload.
- A worker started later (gunicorn replaces dead workers) loads every registered model during its
  lifespan start-up, before it accepts connections, telling gunicorn's heartbeat that it is alive.

Memory estimate: every worker holds its own copy of every model, so a model counts ``per_worker x
workers``, where ``per_worker`` is the model folder's size on disk before the load (a first check, so a
model that cannot fit is refused without loading it) and ``max(size on disk, RSS growth of the validating
worker during the load)`` after it (the figure recorded in the registry). A load is refused (507) when the
recorded estimates of the loaded models, plus those of loads in progress, plus this one exceed the budget:
``SMKIT_MME_MEMORY_BUDGET_MB``, by default ``DEFAULT_MEMORY_FRACTION`` of the container's memory limit
(cgroup v2 ``memory.max``, cgroup v1 ``memory.limit_in_bytes``, else the physical memory).
"""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import functools
import gc
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from . import content_types
from .app import InferenceApp, Receive, Scope, Send, _header, _send, build_service
from .asgi import ClientDisconnected, read_body
from .errors import (
    BadRequest,
    Conflict,
    HTTPError,
    InsufficientStorage,
    MethodNotAllowed,
    ModelError,
    NotFound,
    describe,
)
from .handler import Handler
from .invocations import Request, Response, Service, error_response
from .script_mode import release_script
from .settings import MME_MEMORY_BUDGET_MB, Settings
from .uris import local_path

log = logging.getLogger("serving_common.multi_model")
access_log = logging.getLogger("serving_common.access")

MB = 1024 * 1024
#: How often each worker looks for models to load eagerly or to drop (a stat; a read only on change).
SYNC_INTERVAL_S = 0.25
#: Default budget: this fraction of the container's memory limit (the rest: workers, requests, the OS).
DEFAULT_MEMORY_FRACTION = 0.7
DEFAULT_MAX_RESULTS = 100
MAX_MAX_RESULTS = 1000
#: While a new worker loads the registered models at start-up, it tells gunicorn it lives this often.
HEARTBEAT_S = 5.0
REGISTRY_FILE = "registry.json"
LOCK_FILE = "registry.lock"


# -- memory ---------------------------------------------------------------------------------------------------

def _read_limit(path: Path) -> int | None:
    try:
        raw = path.read_text().strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None  # cgroup v2 says "max" when unlimited


def memory_limit_bytes(root: Path = Path("/")) -> int:
    """The container's memory limit: the smallest cgroup limit (v2 or v1) that applies, else physical memory."""
    limits: list[int] = []
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if physical > 0:
        limits.append(physical)
    cgroup = root / "sys" / "fs" / "cgroup"
    own = "/"
    with suppress(OSError):
        for line in (root / "proc" / "self" / "cgroup").read_text().splitlines():
            if line.startswith("0::"):
                own = line[3:] or "/"
    parts = PurePosixPath(own).parts[1:]
    # v2: this process's cgroup and its ancestors (inside a container's cgroup namespace: the root itself).
    for depth in range(len(parts), -1, -1):
        limits.append(_read_limit(cgroup.joinpath(*parts[:depth], "memory.max")) or 0)
    limits.append(_read_limit(cgroup / "memory" / "memory.limit_in_bytes") or 0)  # v1 (huge when unlimited)
    return min(limit for limit in limits if limit > 0)


#: What one request in flight may take per worker, in multiples of the largest body accepted: the body,
#: its decoded text, the parsed rows and the answer.
REQUEST_MEMORY_FACTOR = 4


#: Whatever the estimates say, no load may take the container's real memory (every process, models not
#: yet given back included) plus room for the largest requests past this fraction of its limit.
HARD_MEMORY_FRACTION = 0.9


def memory_in_use_bytes(root: Path = Path("/")) -> int | None:
    """Anonymous memory of the container's processes now (cgroup v2 ``anon``, v1 ``total_rss``; page cache
    excluded: the kernel drops it under pressure); None without a cgroup to read."""
    cgroup = root / "sys" / "fs" / "cgroup"
    for path, key in ((cgroup / "memory.stat", "anon"), (cgroup / "memory" / "memory.stat", "total_rss")):
        with suppress(OSError, ValueError):
            for line in path.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value)
    return None


def request_room_bytes(settings: Settings) -> int:
    """Memory every worker may need at once for the largest request it accepts."""
    return settings.workers * REQUEST_MEMORY_FACTOR * settings.max_payload_bytes


def memory_budget_bytes(settings: Settings, root: Path = Path("/")) -> int:
    """What loaded models may take: ``SMKIT_MME_MEMORY_BUDGET_MB``, else ``DEFAULT_MEMORY_FRACTION`` of the
    memory limit less room for every worker to hold the largest request it accepts at once."""
    if settings.mme_memory_budget_mb is not None:
        return int(settings.mme_memory_budget_mb * MB)
    return max(0, int(memory_limit_bytes(root) * DEFAULT_MEMORY_FRACTION) - request_room_bytes(settings))


_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """This process's resident memory now (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def return_memory() -> None:
    """Give the memory of unloaded models back to the system.

    Why: a model's arrays and the parser's buffers are many small and medium allocations; glibc keeps the
    freed ones in its arenas (measured: 30 models of 8.6 MiB loaded and unloaded, no RSS returned), so a
    worker's memory only grew and a later request got it killed. ``malloc_trim`` (glibc, through ctypes:
    no library offers it) releases free arena memory; elsewhere it is skipped.
    """
    gc.collect()
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def directory_bytes(path: Path) -> int:
    """Size on disk of every file under ``path``."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


def _mb(size: int) -> str:
    return f"{size / MB:.1f}"


# -- the registry ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """A loaded model, as every worker sees it."""

    name: str
    url: str
    path: str
    token: str  # unique per load: a name unloaded and loaded again is a new model
    bytes_per_worker: int
    estimate_bytes: int  # bytes_per_worker x workers: what the budget counts

    def describe(self) -> dict[str, str]:
        return {"modelName": self.name, "modelUrl": self.url}


@dataclass(frozen=True)
class Pending:
    """A load in progress in worker ``pid``: holds its name and its first estimate."""

    token: str
    pid: int
    estimate_bytes: int

    @property
    def alive(self) -> bool:
        if self.pid == os.getpid():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False  # the loading worker died (e.g. killed for memory): the name is free again
        except PermissionError:
            return True
        return True


@dataclass
class State:
    generation: int = 0
    models: dict[str, Entry] = field(default_factory=dict)
    pending: dict[str, Pending] = field(default_factory=dict)

    def used_bytes(self, except_token: str | None = None) -> int:
        return (sum(entry.estimate_bytes for entry in self.models.values())
                + sum(p.estimate_bytes for p in self.pending.values() if p.token != except_token and p.alive))

    def dumps(self) -> bytes:
        return orjson.dumps({"generation": self.generation, "models": self.models, "pending": self.pending})

    @classmethod
    def loads(cls, data: bytes) -> State:
        raw = orjson.loads(data)
        return cls(raw["generation"], {name: Entry(**entry) for name, entry in raw["models"].items()},
                   {name: Pending(**pending) for name, pending in raw["pending"].items()})


StatKey = tuple[int, int, int]


class Registry:
    """The models of the whole container, in one file that every worker reads (``directory`` is shared)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / REGISTRY_FILE
        self._cache: tuple[StatKey | None, State] = (None, State())

    @staticmethod
    def _key(stat: os.stat_result) -> StatKey:
        return stat.st_ino, stat.st_mtime_ns, stat.st_size

    def _read(self) -> tuple[StatKey | None, State]:
        try:
            with open(self.path, "rb") as file:
                key = self._key(os.fstat(file.fileno()))
                return key, State.loads(file.read())
        except FileNotFoundError:
            return None, State()

    def current(self) -> State:
        """The registry as last written: one ``stat`` per call, a read only when the file changed."""
        try:
            key: StatKey | None = self._key(os.stat(self.path))
        except FileNotFoundError:
            key = None
        cached_key, state = self._cache
        if key == cached_key:
            return state
        self._cache = self._read()
        return self._cache[1]

    @contextmanager
    def transaction(self) -> Iterator[State]:
        """Read, let the caller change, write back (only when changed): all under the registry's lock."""
        lock = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            key, state = self._read()
            before = state.dumps()
            state.pending = {name: p for name, p in state.pending.items() if p.alive}
            yield state
            if state.dumps() != before:
                self._write(state, key)
        finally:
            os.close(lock)  # releases the lock

    def _write(self, state: State, old: StatKey | None) -> None:
        state.generation += 1
        data = state.dumps()
        temporary = self.directory / f".{REGISTRY_FILE}.{os.getpid()}"
        with open(temporary, "wb") as file:
            file.write(data)
        # A strictly increasing mtime: a stat tells every reader that the file changed, whatever the
        # file system's clock granularity and even if the rename reuses an inode number.
        stamp = max(time.time_ns(), (old[1] if old else 0) + 1000)
        os.utime(temporary, ns=(stamp, stamp))
        os.replace(temporary, self.path)
        self._cache = (self._key(os.stat(self.path)), state)


# -- the app --------------------------------------------------------------------------------------------------

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
        log.info("multi-model endpoint ready (memory budget %s MB, %d workers)", _mb(self.budget_bytes),
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
                f"loading {name!r} needs about {_mb(need)} MB ({basis}, x {self.settings.workers} workers) but "
                f"{_mb(max(0, self.budget_bytes - used))} MB of the {_mb(self.budget_bytes)} MB budget are "
                f"free ({MME_MEMORY_BUDGET_MB}): unload a model first")
        in_use = memory_in_use_bytes()
        if in_use is not None and in_use + need + request_room_bytes(self.settings) > self.hard_limit_bytes:
            # The estimates are short: memory not given back after unloads, or reused so that a load's
            # growth was measured low. Count what the container really holds.
            raise InsufficientStorage(
                f"loading {name!r} needs about {_mb(need)} MB but the container already uses {_mb(in_use)} MB "
                f"of its {_mb(self.hard_limit_bytes)} MB, with room kept for requests: unload a model first")

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
                 (time.perf_counter() - started) * 1e3, _mb(entry.estimate_bytes), _mb(per_worker), workers)
        return _json({"modelName": name, "modelUrl": url, "status": "loaded"})
