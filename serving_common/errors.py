"""HTTP errors: one exception per status, rendered as a JSON body with a message."""

from __future__ import annotations


class HTTPError(Exception):
    """An error the server answers with ``status`` and a JSON body ``{"error", "message"}``."""

    status = 500
    title = "InternalServerError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
