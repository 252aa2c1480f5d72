"""The lifespan protocol and request ids shared by the model app and the pipeline front."""

from __future__ import annotations

import asyncio
import logging
import os

from serving_common.lifespan import RequestIds, run_lifespan


def _lifespan(startup_error: Exception | None = None) -> tuple[list[str], list[dict]]:
    """Run run_lifespan through startup and shutdown: (calls made, messages sent)."""
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    calls: list[str] = []
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    async def startup() -> None:
        calls.append("startup")
        if startup_error:
            raise startup_error

    async def shutdown() -> None:
        calls.append("shutdown")

    asyncio.run(run_lifespan(receive, send, startup, shutdown, failure="THING FAILED"))
    return calls, sent


def test_startup_then_shutdown_are_answered():
    calls, sent = _lifespan()
    assert calls == ["startup", "shutdown"]
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


def test_a_failed_startup_is_logged_and_reported(caplog):
    with caplog.at_level(logging.ERROR):
        calls, sent = _lifespan(FileNotFoundError("no model here"))
    assert calls == ["startup"]
    assert sent == [{"type": "lifespan.startup.failed", "message": "no model here"}]
    assert "THING FAILED: FileNotFoundError: no model here" in caplog.text


def test_request_ids_carry_the_pid_and_count_up_from_a_restart():
    ids = RequestIds()
    prefix = f"{os.getpid():x}-"
    assert [ids.next() for _ in range(3)] == [prefix + "1", prefix + "2", prefix + "3"]
    ids.restart()
    assert ids.next() == prefix + "1"
