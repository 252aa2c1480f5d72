"""uvicorn's httptools protocol, bounded: request heads have a size limit, every error is our JSON, and a
graceful shutdown answers every request that has started to arrive.

Why a subclass (and what the libraries offer): httptools (llhttp) has no limit on the request line or the
headers, and uvicorn sets none for it (h11 has ``h11_max_incomplete_event_size``, but h11 parses in pure
Python, ~3x the CPU per request). A header line without an end grows the worker's memory without bound.
uvicorn answers a parse error with a plain-text 400 of its own, and on shutdown closes every connection
that has no request in progress, which resets a connection whose request the loop has not read yet.
What is written here is only what neither library does: counting the head's bytes, headers and URL
length around ``feed_data``, the JSON error answer, and a shutdown that first lets pending bytes arrive.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .errors import BadRequest, HTTPError
from .logs import one_line

log = logging.getLogger("serving_common")

#: Request line and headers together (bytes); past this the answer is 431 (the URL alone: 414).
MAX_HEAD_BYTES = 64 * 1024
#: Request target (path and query).
MAX_URL_BYTES = 16 * 1024
MAX_HEADERS = 100
#: On shutdown, an idle connection is kept this long, so that a request already sent but not yet read
#: (in the socket's buffer while the loop was busy) is read and answered instead of reset.
SHUTDOWN_GRACE_S = 0.5


class HeaderFieldsTooLarge(HTTPError):
    status = 431
    title = "RequestHeaderFieldsTooLarge"


class URITooLong(HTTPError):
    status = 414
    title = "URITooLong"


def error_head_and_body(error: HTTPError) -> bytes:
    """A complete ``Connection: close`` response carrying the JSON error body every image answers with."""
    body = error.body()
    reason = {400: b"Bad Request", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}.get(
        error.status, b"Error")
    return b"".join((b"HTTP/1.1 %d " % error.status, reason, b"\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body), body))


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with bounded request heads, JSON protocol errors and a patient shutdown."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading_head = True  # between requests or inside a request's line and headers
        self.head_bytes = 0
        self.header_count = 0
        self.refusal: HTTPError | None = None
        self.draining = False

    # -- bounding the head ------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.refusal is not None:
            return
        if self.reading_head:
            self.head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            if self.refusal is None:
                self.refusal = BadRequest(f"invalid HTTP request: {exc}")
        if self.refusal is None and self.reading_head and self.head_bytes > MAX_HEAD_BYTES:
            self.refusal = HeaderFieldsTooLarge(f"the request line and headers exceed {MAX_HEAD_BYTES} bytes")
        if self.refusal is not None:
            self.refuse(self.refusal)

    def on_message_begin(self) -> None:
        self.header_count = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL_BYTES and self.refusal is None:
            self.refusal = URITooLong(f"the request target exceeds {MAX_URL_BYTES} bytes")
            self.url = b""

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > MAX_HEADERS:
            if self.refusal is None:
                self.refusal = HeaderFieldsTooLarge(f"the request has more than {MAX_HEADERS} header fields")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.reading_head = False
        if self.refusal is not None:
            return  # answered by data_received once the parser returns: the app never sees this request
        super().on_headers_complete()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        self.reading_head = True
        self.head_bytes = 0
        if self.refusal is None:
            super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's own 400 (e.g. a malformed upgrade), in our JSON format."""
        self.refuse(BadRequest(msg))

    def refuse(self, error: HTTPError) -> None:
        """Answer ``error`` (JSON) and close, unless a response already started on this connection."""
        log.warning("%s from %s: %s", error.status, one_line(str(self.client)), error.message)
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(error_head_and_body(error))
        self.transport.close()

    # -- shutdown -----------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Called on SIGTERM: finish what has arrived, then close.

        A request in progress finishes (without keep-alive); so does one whose head is arriving. An idle
        connection is closed after ``SHUTDOWN_GRACE_S`` unless a request starts arriving meanwhile (its
        bytes may be waiting in the socket while the loop was busy): that request is answered too.
        """
        self.draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            return
        if self.head_bytes:
            return  # a head is arriving: on_headers_complete turns keep-alive off
        asyncio.get_running_loop().call_later(SHUTDOWN_GRACE_S, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if self.transport.is_closing():
            return
        if (self.cycle is None or self.cycle.response_complete) and not self.head_bytes:
            self.transport.close()
        elif self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.draining and not self.transport.is_closing() and not self.head_bytes:
            self.transport.close()
