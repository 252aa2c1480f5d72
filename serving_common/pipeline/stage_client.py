"""The front's client side: a pool of kept-alive HTTP/1.1 connections to each stage (httptools on asyncio)."""

from __future__ import annotations

import asyncio
import logging

import httptools

from ..settings import Stage

log = logging.getLogger("serving_common.pipeline")

#: Above this size a body is written after the request head instead of being joined to it.
_JOIN_LIMIT = 64 * 1024


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
