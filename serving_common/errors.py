"""HTTP errors: one exception per status, rendered as a JSON body with a message."""

from __future__ import annotations

import re

import orjson


class HTTPError(Exception):
    """An error the server answers with ``status`` and a JSON body ``{"error", "message"}``."""

    status = 500
    title = "InternalServerError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> bytes:
        """This error's JSON body (:func:`error_body`)."""
        return error_body(self.title, self.message)


class BadRequest(HTTPError):
    status = 400
    title = "BadRequest"


class NotFound(HTTPError):
    status = 404
    title = "NotFound"


class MethodNotAllowed(HTTPError):
    status = 405
    title = "MethodNotAllowed"


class NotAcceptable(HTTPError):
    status = 406
    title = "NotAcceptable"


class Conflict(HTTPError):
    status = 409
    title = "Conflict"


class PayloadTooLarge(HTTPError):
    status = 413
    title = "PayloadTooLarge"


class UnsupportedMediaType(HTTPError):
    status = 415
    title = "UnsupportedMediaType"


class ModelError(HTTPError):
    """The model itself failed or produced something unusable: a fault of the server's side."""

    status = 500
    title = "ModelError"


class ServiceUnavailable(HTTPError):
    status = 503
    title = "ServiceUnavailable"


class InsufficientStorage(HTTPError):
    status = 507
    title = "InsufficientStorage"


#: Longest message an error body carries; the full text goes to the log.
MAX_MESSAGE_CHARS = 500
# What native libraries put around their one useful line: XGBoost/dmlc's "[12:34:56] /src/file.cc:123: "
# prefix and a "Stack trace:" of frames naming the library's files on this machine.
_NATIVE_LOCATION = re.compile(r"\[\d\d:\d\d:\d\d\] (?:[^\s:]+/)?[^\s/:]+\.(?:cc|cpp|cu|h|hpp|c):\d+: ")
_STACK_TRACE = re.compile(r"\s*Stack trace:.*", re.DOTALL)


def public_message(text: str) -> str:
    """What an error body may say of ``text``: its first line, without native source locations or stack
    traces, at most ``MAX_MESSAGE_CHARS`` characters. The caller logs the full text where it matters."""
    text = _NATIVE_LOCATION.sub("", _STACK_TRACE.sub("", text))
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= MAX_MESSAGE_CHARS else line[:MAX_MESSAGE_CHARS - 1] + "…"


def error_body(title: str, message: str) -> bytes:
    """The JSON error body every image and the pipeline front answer with: ``{"error": title, "message": text}``
    (one line, no native stack trace: :func:`public_message`)."""
    return orjson.dumps({"error": title, "message": public_message(message)})


def describe(exc: BaseException) -> str:
    """``Type: message`` of an exception, fit for an error body (:func:`public_message`)."""
    return public_message(f"{type(exc).__name__}: {exc}")
