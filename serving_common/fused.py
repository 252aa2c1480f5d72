"""Serving a fused model: a model folder that carries its preprocess stage (``python -m serving_common.fuse``).

A fused model folder is the model's own files plus the fitted preprocess model in :data:`PREPROCESS_DIR`.
Any image serves it: :func:`fused_if_needed` wraps the image's handler in :class:`FusedHandler`, which reads the
request exactly as the preprocess image does (``serving_common.features.requests``: same content types,
same records, same 400s), applies the transform's numpy-only fast path in process and hands the feature
rows to the image's ``predict`` / ``encode``, as the chained pipeline's CSV hop would (float64 rows whose
CSV round trip is exact). Folders without :data:`PREPROCESS_DIR` get the image's handler untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .content_types import CSV, JSON, JSONLINES, MediaType
from .handler import Handler, RequestContext
from .settings import Settings

log = logging.getLogger("serving_common")

PREPROCESS_DIR = "preprocess"  # the preprocess stage, inside a fused model folder


class FusedModelError(ValueError):
    """The preprocess stage of a fused model cannot be served in process (a clear message says why)."""


@dataclass
class FusedModel:
    features: Any  # serving_common.features.features.FittedFeatures
    model: Any  # what the image's handler loaded


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

        rows: np.ndarray = transform(model.features, data)
        return self.inner.predict(model.model, rows, context)

    def encode(self, prediction: Any, accept: str, context: RequestContext) -> bytes | tuple[bytes, str]:
        return self.inner.encode(prediction, accept, context)


def fused_if_needed(handler: Handler, model_dir: Path) -> Handler:
    """The image's handler, behind a :class:`FusedHandler` when ``model_dir`` carries a preprocess stage."""
    if not is_fused(model_dir):
        return handler
    fused = FusedHandler(handler)
    fused.settings = handler.settings
    return fused
