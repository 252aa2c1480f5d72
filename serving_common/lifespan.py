"""What every ASGI app of ours does the same way: the lifespan protocol and ids for requests without one."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

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
