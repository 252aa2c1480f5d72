"""Fixtures for the serving_common tests: a small real handler, an in-process ASGI driver, /opt/ml trees."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import orjson
import pytest

from serving_common.errors import BadRequest
from serving_common.handler import Handler, RequestContext


@pytest.fixture(autouse=True)
def _isolate_process_state():
    """Undo what the code under test changes process-wide: root logging, sys.path, imported user scripts."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    path = sys.path[:]
    modules = set(sys.modules)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        module = sys.modules[name]
        if str(getattr(module, "__file__", "") or "").startswith(tempfile.gettempdir()):
            del sys.modules[name]
    sys.modules.pop("inference", None)


class LinearHandler(Handler):
    """y = X @ w with ``w`` read from ``<model_dir>/weights.json``: a real model file, a real shape check."""

    def load(self, model_dir: Path) -> np.ndarray:
        return np.asarray(json.loads((Path(model_dir) / "weights.json").read_text()), dtype=float)

    def decode(self, body: bytes, media_type, context: RequestContext) -> Any:
        data = super().decode(body, media_type, context)
        if isinstance(data, np.ndarray):
            return data
        if isinstance(data, dict):
            data = data.get("instances")
        if isinstance(data, list) and not data:
            raise BadRequest("no instances in the request")
        return np.asarray(data, dtype=float)  # ValueError for non-numbers: a 400 by the Handler contract

    def predict(self, model: np.ndarray, data: np.ndarray, context: RequestContext) -> np.ndarray:
        if data.ndim != 2 or data.shape[1] != model.shape[0]:
            raise BadRequest(f"expected rows of {model.shape[0]} features, got an array of shape {data.shape}")
        return data @ model


@pytest.fixture
def linear_handler() -> type[LinearHandler]:
    return LinearHandler


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model folder as SageMaker extracts it: weights [1, 2] (so y = x0 + 2 * x1)."""
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "weights.json").write_text("[1.0, 2.0]")
    return directory


@dataclass
class HTTPResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    messages_read: int = 0

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class ASGIClient:
    """Drives an ASGI app in-process on one event loop: lifespan messages and HTTP requests."""

    app: Any
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    lifespan_sent: list[dict[str, Any]] = field(default_factory=list)

    def startup(self) -> dict[str, Any]:
        self._lifespan_queue: asyncio.Queue = asyncio.Queue()

        async def send(message: dict[str, Any]) -> None:
            self.lifespan_sent.append(message)

        async def start() -> None:
            self._lifespan_task = asyncio.ensure_future(
                self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, self._lifespan_queue.get, send))
            await self._lifespan_queue.put({"type": "lifespan.startup"})
            while not self.lifespan_sent and not self._lifespan_task.done():
                await asyncio.sleep(0.001)

        self.loop.run_until_complete(asyncio.wait_for(start(), 10))
        return self.lifespan_sent[-1]

    def shutdown(self) -> dict[str, Any]:
        async def stop() -> None:
            await self._lifespan_queue.put({"type": "lifespan.shutdown"})
            await self._lifespan_task

        self.loop.run_until_complete(asyncio.wait_for(stop(), 10))
        return self.lifespan_sent[-1]

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"",
                chunks: list[bytes] | None = None) -> HTTPResponse:
        return self.loop.run_until_complete(asyncio.wait_for(self.arequest(method, path, headers, body, chunks), 10))

    async def arequest(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"",
                       chunks: list[bytes] | None = None) -> HTTPResponse:
        """One HTTP request, as a coroutine on this client's loop (to overlap requests)."""
        parts = [body] if chunks is None else chunks
        messages = [{"type": "http.request", "body": part, "more_body": index < len(parts) - 1}
                    for index, part in enumerate(parts)]
        read = 0
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal read
            if read < len(messages):
                read += 1
                return messages[read - 1]
            await asyncio.sleep(3600)  # a real server only says http.disconnect when the client leaves
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        raw_path, _, query = path.partition("?")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": unquote(raw_path), "raw_path": raw_path.encode(),
            "query_string": query.encode(),
            "headers": [(name.lower().encode("latin-1"), value.encode("latin-1"))
                        for name, value in (headers or {}).items()],
        }
        await self.app(scope, receive, send)
        start, *rest = sent
        assert start["type"] == "http.response.start"
        assert all(message["type"] == "http.response.body" for message in rest)
        return HTTPResponse(
            status=start["status"],
            headers={name.decode("latin-1"): value.decode("latin-1") for name, value in start["headers"]},
            body=b"".join(message.get("body", b"") for message in rest),
            messages_read=read,
        )

    def close(self) -> None:
        task = getattr(self, "_lifespan_task", None)
        if task is not None and not task.done():
            self.shutdown()  # a test that started the app without stopping it: stop its executor too
        self.loop.close()


@pytest.fixture
def asgi_client():
    clients: list[ASGIClient] = []

    def make(app: Any) -> ASGIClient:
        client = ASGIClient(app)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


@pytest.fixture
def opt_ml(tmp_path: Path):
    """Builds an /opt/ml-like tree: ``opt_ml(hyperparameters=..., channels={name: {file: text}}, ...)``."""

    def build(hyperparameters: dict[str, Any] | None = None, channels: dict[str, dict[str, str]] | None = None,
              inputdataconfig: dict[str, Any] | None = None, resourceconfig: dict[str, Any] | None = None,
              name: str = "opt_ml") -> Path:
        base = tmp_path / name
        config = base / "input" / "config"
        config.mkdir(parents=True)
        if hyperparameters is not None:
            _write_json(config / "hyperparameters.json", hyperparameters)
        if inputdataconfig is not None:
            _write_json(config / "inputdataconfig.json", inputdataconfig)
        if resourceconfig is not None:
            _write_json(config / "resourceconfig.json", resourceconfig)
        for channel, files in (channels or {}).items():
            folder = base / "input" / "data" / channel
            folder.mkdir(parents=True)
            for file_name, text in files.items():
                (folder / file_name).parent.mkdir(parents=True, exist_ok=True)
                (folder / file_name).write_text(text)
        return base

    return build
