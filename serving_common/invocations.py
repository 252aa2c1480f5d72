"""The request flow of ``POST /invocations`` in one place: negotiate, decode, predict, encode."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from . import content_types
from .errors import BadRequest, HTTPError, ModelError, describe
from .handler import Handler, RequestContext

log = logging.getLogger(__name__)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str


@dataclass
class Request:
    body: bytes
    content_type: str | None
    accept: str | None
    request_id: str
    custom_attributes: str | None = None


class Service:
    """A loaded model and the handler that serves it (one per worker; one per model in multi-model mode)."""

    def __init__(self, handler: Handler, model: Any, default_accept: str | None = None) -> None:
        self.handler = handler
        self.model = model
        # SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT may carry parameters or an alias: keep the essence only.
        self.default_accept = content_types.parse(default_accept).essence if default_accept else handler.default_accept

    def _negotiate(self, request: Request) -> tuple[content_types.MediaType, str]:
        handler = self.handler
        if handler.content_types is None:
            media = content_types.parse(request.content_type or "application/octet-stream")
        else:
            media = content_types.content_type(request.content_type, handler.content_types)
        if handler.accepts is None:
            # The user's output_fn decides: hand it the most preferred range, or the default for */*.
            candidates = content_types.accept_ranges(request.accept) if request.accept else ()
            accept = candidates[0] if candidates and "*" not in candidates[0] else self.default_accept
        else:
            accept = content_types.negotiate(request.accept, handler.accepts, self.default_accept)
        return media, accept

    def invoke(self, request: Request) -> Response:
        """Answer one request; every failure becomes an error response, never an exception."""
        try:
            media, accept = self._negotiate(request)
            context = RequestContext(request.request_id, media.essence, accept, request.custom_attributes)
            handler = self.handler
            try:
                data = handler.decode(request.body, media, context)
            except HTTPError:
                raise
            except (ValueError, UnicodeError) as exc:
                raise BadRequest(str(exc)) from None
            prediction = handler.predict(self.model, data, context)
            encoded = handler.encode(prediction, accept, context)
            if isinstance(encoded, tuple):
                body, accept = encoded
            else:
                body = encoded
            if isinstance(body, str):
                body = body.encode()
            elif isinstance(body, bytearray | memoryview):
                body = bytes(body)
            elif not isinstance(body, bytes):
                raise ModelError(f"the response body must be bytes or str, not {type(body).__name__}")
            return Response(200, body, accept)
        except HTTPError as exc:
            if exc.status >= 500:
                log.error("request %s failed: %s", request.request_id, exc.message)
            return error_response(exc)
        except Exception as exc:
            log.exception("request %s failed in the model code", request.request_id)
            return error_response(ModelError(describe(exc)))


def error_response(error: HTTPError) -> Response:
    """``error`` as the response every image answers with (its JSON body: ``errors.error_body``)."""
    return Response(error.status, error.body(), content_types.JSON)
