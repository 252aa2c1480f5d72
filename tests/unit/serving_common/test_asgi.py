"""The ASGI pieces shared by the model app and the pipeline front: lifespan, request ids, body reading."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from serving_common.asgi import ClientDisconnected, RequestIds, read_body, run_lifespan
from serving_common.errors import PayloadTooLarge


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


def _read(messages: list[dict], limit: int, content_length: bytes | None = None) -> bytes:
    async def receive() -> dict:
        return {"type": "http.request", **messages.pop(0)}

    return asyncio.run(read_body(receive, limit, content_length))


def test_a_body_in_chunks_is_joined():
    assert _read([{"body": b"ab", "more_body": True}, {"body": b"cd"}], limit=4) == b"abcd"


def test_a_body_over_the_limit_is_refused_by_its_length_or_as_it_arrives():
    with pytest.raises(PayloadTooLarge, match="the body has 5 bytes; the limit is 4"):
        _read([{"body": b"abcde"}], limit=4, content_length=b"5")
    with pytest.raises(PayloadTooLarge, match="exceeds the limit of 4 bytes"):
        _read([{"body": b"abc", "more_body": True}, {"body": b"de"}], limit=4)


def test_a_client_that_leaves_mid_body_is_reported():
    with pytest.raises(ClientDisconnected):
        _read([{"body": b"ab", "more_body": True}, {"type": "http.disconnect"}], limit=10)
