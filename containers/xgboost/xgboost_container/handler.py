"""Serving for the XGBoost image: feature rows in, scores out, through ``inplace_predict`` on numpy."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import xgboost

from serving_common import encoders
from serving_common.arrays import plain_csv_matrix, to_matrix
from serving_common.content_types import CSV, JSON, JSONLINES, LIBSVM, NPY, MediaType
from serving_common.errors import BadRequest
from serving_common.handler import Handler, RequestContext

from . import libsvm
from .model_files import load_booster, model_file, read_meta

# The optional fast path (fast/, native/): without the folder dense rows go through inplace_predict.
fast = importlib.import_module(".fast", __package__) if importlib.util.find_spec(".fast", __package__) else None

log = logging.getLogger("xgboost_container")


class Model:
    """A loaded booster and what serving needs to know about it.

    Dense rows go through the booster compiled into flat tables (``forest.py``; measured here on 200
    trees: ~26 µs for one row against XGBoost's ~300, ~0.23 ms for 100 rows against ~0.67, ~3x less per
    thread for 10,000 rows); only a worker with several threads predicts large requests through XGBoost,
    which spreads them over its threads. Both are checked against ``inplace_predict`` at load.
    """

    #: With ``XGBOOST_THREADS_TO_WIN`` threads or more, XGBoost takes requests of more than this many rows.
    FOREST_MAX_ROWS = 1024
    XGBOOST_THREADS_TO_WIN = 4

    def __init__(self, booster: xgboost.Booster, num_features: int, objective: str | None,
                 saved_forest: Path | None = None, threads: int = 1) -> None:
        self.booster = booster
        self.num_features = num_features
        self.objective = objective
        self.predict_large: Callable[[np.ndarray], np.ndarray] = self._inplace
        self.forest: fast.Forest | None = None
        if fast is not None:
            direct = fast.DensePredictor(booster)
            if direct.verified(num_features):
                self.predict_large = direct
            self.forest = fast.checked_forest(booster, num_features, saved_forest)
        self.forest_max_rows = self.FOREST_MAX_ROWS if threads >= self.XGBOOST_THREADS_TO_WIN else math.inf

    def predict_dense(self, rows: np.ndarray) -> np.ndarray:
        if self.forest is not None and rows.shape[0] <= self.forest_max_rows:
            return self.forest(rows)
        return self.predict_large(rows)

    def _inplace(self, rows: np.ndarray) -> np.ndarray:
        return self.booster.inplace_predict(rows, validate_features=False)


def threads_per_worker(workers: int) -> int:
    """Workers share the CPUs: each of ``workers`` gets its share, so they never fight over cores."""
    return max(1, (os.cpu_count() or 1) // workers)


def _libsvm(body: bytes, media: MediaType) -> scipy.sparse.csr_matrix:
    try:
        matrix = libsvm.parse(body.decode(media.text_codec()), labels=False).matrix
    except libsvm.LibsvmError as exc:
        raise BadRequest(f"row {exc.row}: {exc.problem}" if exc.row is not None else exc.problem) from None
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the body is not valid {media.charset}: byte {exc.start} cannot be decoded") from None
    if matrix.shape[0] == 0:
        raise BadRequest("no rows in the request")
    return matrix


class XGBoostHandler(Handler):
    content_types = (CSV, LIBSVM, JSON, JSONLINES, NPY)
    accepts = (CSV, JSON, JSONLINES, NPY)
    default_accept = CSV

    def load(self, model_dir: Path) -> Model:
        path = model_file(model_dir)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {model_dir} does not hold an XGBoost model")
        booster = load_booster(path)
        threads = threads_per_worker(self.settings.workers)
        booster.set_param({"nthread": threads})
        saved_forest = model_dir / fast.FOREST_FILE if fast is not None else None
        return Model(booster, booster.num_features(), read_meta(model_dir).get("objective"), saved_forest, threads)

    def decode(self, body: bytes, media_type: MediaType, context: RequestContext) -> Any:
        if media_type.essence == LIBSVM:
            return _libsvm(body, media_type)
        if media_type.essence == CSV and media_type.text_codec() == "utf-8":
            matrix = plain_csv_matrix(body)
            if matrix is not None:
                return matrix
        return to_matrix(super().decode(body, media_type, context), media_type.essence)

    def predict(self, model: Model, data: Any, context: RequestContext) -> np.ndarray:
        columns = data.shape[1]
        if isinstance(data, scipy.sparse.csr_matrix):
            if columns > model.num_features:
                raise BadRequest(f"feature index {columns - 1} is out of range: the model has "
                                 f"{model.num_features} features")
            data = scipy.sparse.csr_matrix(data, shape=(data.shape[0], model.num_features))
        elif columns != model.num_features:
            raise BadRequest(f"expected {model.num_features} features per row, received {columns}")
        if isinstance(data, np.ndarray):
            scores = model.predict_dense(data)
        else:
            scores = model.booster.inplace_predict(data, validate_features=False)
        encoders.check_finite(scores)
        return scores

    def encode(self, prediction: np.ndarray, accept: str, context: RequestContext) -> bytes:
        # SageMaker XGBoost's JSON shapes: {"predictions": [{"score": s}, ...]}, one {"score": s} per line.
        if accept == JSON:
            return encoders.encode_json({"predictions": [{"score": score} for score in prediction.tolist()]})
        if accept == JSONLINES:
            return encoders.lines(encoders.encode_json({"score": score}) for score in prediction.tolist())
        return encoders.encode(prediction, accept)
