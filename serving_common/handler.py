"""The interface each container implements with its framework code alone: load, decode, predict, encode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import decoders, encoders
from .content_types import CSV, JSON, JSONLINES, NPY, MediaType
from .settings import Settings


@dataclass(frozen=True)
class RequestContext:
    """What a handler may want to know about the request beyond its body."""

    request_id: str
    content_type: str  # essence, e.g. "text/csv" (parameters parsed off)
    accept: str  # the negotiated response type
    custom_attributes: str | None = None  # X-Amzn-SageMaker-Custom-Attributes, verbatim


class Handler:
    """Framework code of one container (MLServer-style: a tiny load/predict surface).

    ``load`` runs once per worker before it serves; the other methods run per request. Raise the
    exceptions of ``serving_common.errors`` for request problems (e.g. ``BadRequest``); a ``ValueError``
    from ``decode`` is a 400 too; anything else is answered 500.
    """

    #: request types this handler decodes; ``None`` means any (a user ``input_fn`` decides).
    content_types: tuple[str, ...] | None = (JSON, JSONLINES, CSV, NPY)
    #: response types this handler encodes; ``None`` means any (a user ``output_fn`` decides).
    accepts: tuple[str, ...] | None = (JSON, JSONLINES, CSV, NPY)
    #: response type for a missing or ``*/*`` Accept, unless SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT says.
    default_accept: str = JSON
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The server's settings, given before ``load``: read configuration here, never ``os.environ``. A
        handler used on its own (a test, a notebook) reads them from the environment."""
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        self._settings = settings

    def load(self, model_dir: Path) -> Any:
        """Load and return the model found in ``model_dir`` (raise with a clear message if unusable)."""
        raise NotImplementedError

    def decode(self, body: bytes, media_type: MediaType, context: RequestContext) -> Any:
        return decoders.decode(body, media_type)

    def from_rows(self, rows: np.ndarray, context: RequestContext) -> Any:
        """What ``decode`` makes of a CSV body of these float64 feature rows (a preprocess stage's answer).
        A fused model (``serving_common.fused``) hands its in-process transform's rows to ``predict``
        through here instead of a CSV round trip; override when ``decode`` gives ``predict`` another type."""
        return rows

    def predict(self, model: Any, data: Any, context: RequestContext) -> Any:
        raise NotImplementedError

    def encode(self, prediction: Any, accept: str, context: RequestContext) -> bytes | tuple[bytes, str]:
        """Response body, or ``(body, content_type)`` to name another type than ``accept``."""
        return encoders.encode(prediction, accept)
