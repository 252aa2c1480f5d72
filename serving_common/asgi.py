"""What every ASGI app of ours (the model app, the pipeline front) does the same way: the lifespan
protocol, ids for requests that bring none, and reading a request body within the payload limit."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import PayloadTooLarge

log = logging.getLogger("serving_common")


async def run_lifespan(receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]],
                       startup: Callable[[], Awaitable[None]], shutdown: Callable[[], Awaitable[None]],
                       failure: str) -> None:
    """Answer ASGI lifespan messages until shutdown. A failed ``startup`` is logged as ``failure: Type: text``
    and reported as ``lifespan.startup.failed``, so the worker never serves (uvicorn then exits)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await startup()
            except Exception as exc:
                log.error("%s: %s: %s", failure, type(exc).__name__, exc)
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


class RequestIds:
    """Ids for requests that bring none: this worker's pid in hex, then a counter (``1f3a-2c``)."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        """Take this process's pid: call in each worker (the app is built before gunicorn forks)."""
        self.prefix = f"{os.getpid():x}-"
        self.count = 0

    def next(self) -> str:
        self.count += 1
        return f"{self.prefix}{self.count:x}"


class ClientDisconnected(Exception):
    """The client went away before its request body arrived: nothing to answer."""


async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int,
                    content_length: str | bytes | None) -> bytes:
    """The whole request body; ``PayloadTooLarge`` past ``limit`` bytes (said by Content-Length or counted
    as it arrives), ``ClientDisconnected`` if the client leaves first."""
    if content_length is not None and content_length.isdigit() and int(content_length) > limit:
        raise PayloadTooLarge(f"the body has {int(content_length)} bytes; the limit is {limit} "
                              f"(SAGEMAKER_MAX_PAYLOAD_IN_MB)")
    chunks = []
    size = 0
    while True:  # a chunked request has no Content-Length: count what arrives, first message included
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes (SAGEMAKER_MAX_PAYLOAD_IN_MB)")
        if not message.get("more_body"):
            return b"".join(chunks) + chunk if chunks else chunk
        chunks.append(chunk)
