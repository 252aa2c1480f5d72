"""A small HTTP client over http.client (stdlib): one request per connection, as SageMaker's front sends them.

Not urllib: a server may answer 413 and close before reading a large body; http.client lets the kit read
that answer after the upload broke off.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Unreachable(Exception):
    """No HTTP answer: connection refused or reset, or no answer within the timeout."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    def json(self) -> Any:
        return json.loads(self.body)

    def summary(self, limit: int = 160) -> str:
        text = self.body[:limit].decode("utf-8", errors="replace").replace("\n", "\\n")
        more = "…" if len(self.body) > limit else ""
        return f"{self.status} Content-Type={self.content_type!r} body={text!r}{more}"


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: Mapping[str, str] | None = None, timeout: float = 30, host: str = "127.0.0.1") -> Response:
    """One request; raises Unreachable when no HTTP answer comes back."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        try:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders()
            if body:
                connection.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading (e.g. a 413 before the whole body): its answer may be waiting
        try:
            answer = connection.getresponse()
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:  # refused, reset, timed out (socket.timeout is an OSError)
        raise Unreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()


def describe(answer: Response | str) -> str:
    """A response's summary, or the reason there was none (try_request's string)."""
    return answer.summary() if isinstance(answer, Response) else answer


def try_request(port: int, method: str, path: str, **kwargs: Any) -> Response | str:
    """request(), with an unreachable server as a string saying why (for rule details)."""
    try:
        return request(port, method, path, **kwargs)
    except Unreachable as exc:
        return f"no answer ({exc})"
