"""Serving a fused model: a model folder that carries its preprocess stage (``python -m serving_common.fuse``).

A fused model folder is the model's own files plus the fitted preprocess model in :data:`PREPROCESS_DIR`.
Any image serves it: :func:`fused_if_needed` wraps the image's handler in :class:`FusedHandler`, which reads the
request exactly as the preprocess image does (``serving_common.features.requests``: same content types,
same records, same 400s), applies the transform's numpy-only fast path in process and hands the feature
rows to the image's ``predict`` / ``encode``, as the chained pipeline's CSV hop would (float64 rows whose
CSV round trip is exact, given as the image's ``decode`` would give them: ``Handler.from_rows``). Folders
without :data:`PREPROCESS_DIR` get the image's handler untouched.

Batch transform, as the preprocess image's: ``SMKIT_RECORD_ERRORS=line`` answers ``{"error": ...}`` on the
line of each bad record and the scores of the others on theirs (CSV and JSON Lines; other response types
cannot carry them and answer the 400). ``SMKIT_OUTPUT_LABEL=true`` (label-first feature rows, for training
data) is refused at load: a fused model answers scores, and the chained pipeline refuses it too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import encoders
from .content_types import CSV, JSON, JSONLINES, MediaType
from .errors import BadRequest
from .handler import Handler, RequestContext
from .settings import OUTPUT_LABEL, Settings

log = logging.getLogger("serving_common")

PREPROCESS_DIR = "preprocess"  # the preprocess stage, inside a fused model folder


class FusedModelError(ValueError):
    """The preprocess stage of a fused model cannot be served in process (a clear message says why)."""


@dataclass
class FusedModel:
    features: Any  # serving_common.features.features.FittedFeatures
    model: Any  # what the image's handler loaded


@dataclass
class LinePredictions:
    """A request of several records some of which failed (``SMKIT_RECORD_ERRORS=line``): the inner model's
    prediction for the good records, in order, and each bad record's message by its place."""

    count: int
    errors: dict[int, str]
    prediction: Any  # None when every record failed


def import_runtime() -> None:
    """Import what serving a fused model needs (the transform's fast path, the request reader, the pair
    check): a multi-model server does it once, before its workers fork, so that no model's first load
    pays for it (measured: bench/fused.py, load time per model)."""
    from . import pipeline_check  # noqa: F401
    from .features import features, requests  # noqa: F401


def is_fused(model_dir: Path) -> bool:
    return (Path(model_dir) / PREPROCESS_DIR / "features.json").is_file()


def load_stage(stage_dir: Path, settings: Settings) -> Any:
    """The fitted transform of ``stage_dir`` with its record checks (``settings``' overrides applied), refused
    without a compiled fast path: model images carry no scikit-learn."""
    # imported here: an image serving plain models needs none of the feature code
    from .features.features import FittedFeatures

    features = FittedFeatures.load(stage_dir)
    if not features.fast_path:
        raise FusedModelError(f"{stage_dir}: this preprocess model has no compiled fast path (fast_transform.npz), "
                              "so applying it needs scikit-learn, which model images do not carry: serve it as a "
                              "chained pipeline instead")
    rules = features.record_rules.overridden(settings.record_overrides)
    features.set_record_checks(rules, features.known_fields)
    return features


class FusedHandler(Handler):
    """The image's handler behind the preprocess transform: JSON records in, the image's scores out."""

    content_types = (JSON, JSONLINES, CSV)  # what the preprocess image (the chained pipeline's front) reads

    def __init__(self, inner: Handler) -> None:
        self.inner = inner
        self.accepts = inner.accepts
        self.default_accept = inner.default_accept

    def load(self, model_dir: Path) -> FusedModel:
        from .pipeline_check import ModelFiles, PipelineMismatchError, check_pair

        if self.settings.output_label:
            raise FusedModelError(f"{OUTPUT_LABEL}=true asks for label-first feature rows (training data), but a "
                                  "fused model answers scores: make training data with the preprocess model alone")
        stage_dir = Path(model_dir) / PREPROCESS_DIR
        try:  # fuse checked this already; a folder assembled by hand is checked here
            check_pair(ModelFiles.read(stage_dir, f"the preprocess stage ({stage_dir})"),
                       ModelFiles.read(Path(model_dir), f"the model ({model_dir})"))
        except PipelineMismatchError as exc:
            raise FusedModelError(str(exc).replace("pipeline refused", "fused model refused")) from None
        features = load_stage(stage_dir, self.settings)
        model = self.inner.load(Path(model_dir))
        log.info("fused model: %d fields -> %d features, applied in process", len(features.input_columns),
                 features.n_features_out)
        return FusedModel(features, model)

    def decode(self, body: bytes, media_type: MediaType, context: RequestContext) -> Any:
        from .features.requests import decoded_records

        return decoded_records(super().decode(body, media_type, context), media_type)

    def predict(self, model: FusedModel, data: Any, context: RequestContext) -> Any:
        from .features.requests import transform

        try:
            rows: np.ndarray = transform(model.features, data)
        except BadRequest:
            if self.settings.record_errors != "line" or len(data) < 2:
                raise
            return self._per_line(model, data, context)
        return self.inner.predict(model.model, self.inner.from_rows(rows, context), context)

    def _per_line(self, model: FusedModel, data: Any, context: RequestContext) -> LinePredictions:
        """Each record transformed alone (as the preprocess image's line mode), the good ones scored together."""
        from .features.requests import renumber, transform

        rows, errors = [], {}
        for index, item in enumerate(data):
            try:
                rows.append(transform(model.features, type(data)([item]))[0])
            except BadRequest as exc:
                errors[index] = renumber(exc.message, index)
        prediction = (self.inner.predict(model.model, self.inner.from_rows(np.vstack(rows), context), context)
                      if rows else None)
        return LinePredictions(len(data), errors, prediction)

    def encode(self, prediction: Any, accept: str, context: RequestContext) -> bytes | tuple[bytes, str]:
        if not isinstance(prediction, LinePredictions):
            return self.inner.encode(prediction, accept, context)
        if accept not in (CSV, JSONLINES):
            raise BadRequest(f"records failed and {accept} cannot carry error objects on their lines: " +
                             "; ".join(prediction.errors.values()))
        lines, good = [], 0
        for index in range(prediction.count):
            if index in prediction.errors:
                lines.append(encoders.encode_json({"error": prediction.errors[index]}) + b"\n")
                continue
            encoded = self.inner.encode(prediction.prediction[good:good + 1], accept, context)
            body = encoded[0] if isinstance(encoded, tuple) else encoded
            lines.append(body if body.endswith(b"\n") else body + b"\n")
            good += 1
        return b"".join(lines)


def fused_if_needed(handler: Handler, model_dir: Path) -> Handler:
    """The image's handler, behind a :class:`FusedHandler` when ``model_dir`` carries a preprocess stage."""
    if not is_fused(model_dir):
        return handler
    fused = FusedHandler(handler)
    fused.settings = handler.settings
    return fused
