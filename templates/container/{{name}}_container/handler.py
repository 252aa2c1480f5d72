"""Serving: rows of numeric features (CSV, JSON, JSON Lines, NPY) in, one prediction per row out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from serving_common.arrays import to_matrix
from serving_common.content_types import CSV, MediaType
from serving_common.errors import BadRequest
from serving_common.handler import Handler, RequestContext

MODEL_FILE = "model.npz"  # written by train.py
META_FILE = "{{name}}-meta.json"  # written by train.py: the features it was trained on (serving_common.pipeline_check)


class ModelHandler(Handler):
    default_accept = CSV

    def load(self, model_dir: Path) -> dict[str, np.ndarray]:
        path = model_dir / MODEL_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {model_dir} does not hold a {{name}} model")
        with np.load(path) as saved:
            return {"weights": saved["weights"], "bias": saved["bias"]}

    def decode(self, body: bytes, media_type: MediaType, context: RequestContext) -> np.ndarray:
        return to_matrix(super().decode(body, media_type, context), media_type.essence)

    def predict(self, model: dict[str, np.ndarray], data: np.ndarray, context: RequestContext) -> Any:
        features = model["weights"].shape[0]
        if data.shape[1] != features:
            raise BadRequest(f"expected {features} features per row, received {data.shape[1]}")
        if np.isnan(data).any():
            row, column = np.argwhere(np.isnan(data))[0]
            raise BadRequest(f"row {row}, column {column}: a missing value (this model needs every feature)")
        return data @ model["weights"] + model["bias"]
