"""Serving for the XGBoost image: feature rows in, scores out, through ``inplace_predict`` on numpy."""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import xgboost
from xgboost._data_utils import array_interface
from xgboost.core import _LIB, _check_call, c_bst_ulong

from serving_common import encoders
from serving_common.arrays import plain_csv_matrix, to_matrix
from serving_common.content_types import CSV, JSON, JSONLINES, LIBSVM, NPY, MediaType
from serving_common.errors import BadRequest
from serving_common.handler import Handler, RequestContext
from serving_common.settings import MODEL_SERVER_WORKERS

from . import libsvm
from .forest import FOREST_FILE, Forest, calibrated, compile_forest, evaluator
from .train import META_FILE, load_booster, model_file

log = logging.getLogger("xgboost_container")


class DensePredictor:
    """Dense numpy rows -> scores through the C entry point behind ``Booster.inplace_predict``.

    Why by hand: inplace_predict's Python wrapper costs ~200 µs per call here (it rebuilds its JSON
    config, re-checks types and converts the output every time) — as much as predicting 200 trees for one
    row. This calls the same function with the config built once. It is checked against inplace_predict
    when the model loads, on random rows with missing values; any difference or error turns it off
    (logged) and serving uses inplace_predict.
    """

    CONFIG = json.dumps({"type": 0, "training": False, "iteration_begin": 0, "iteration_end": 0,
                         "missing": float("nan"), "strict_shape": False, "cache_id": 0}).encode()

    def __init__(self, booster: xgboost.Booster) -> None:
        self.booster = booster

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        shape = ctypes.POINTER(c_bst_ulong)()
        dims = c_bst_ulong()
        scores = ctypes.POINTER(ctypes.c_float)()
        _check_call(_LIB.XGBoosterPredictFromDense(
            self.booster.handle, array_interface(rows), self.CONFIG, None, ctypes.byref(shape),
            ctypes.byref(dims), ctypes.byref(scores)))
        out = tuple(int(shape[i]) for i in range(dims.value))
        # The buffer belongs to the booster and is reused by the next call: copy it out.
        return np.ctypeslib.as_array(scores, shape=(int(np.prod(out)),)).copy().reshape(out)

    def verified(self, num_features: int) -> bool:
        rows = np.random.default_rng(0).normal(size=(64, num_features))
        rows[::7, ::3] = np.nan
        try:
            for batch in (rows[:1], rows):
                expected = self.booster.inplace_predict(batch, validate_features=False)
                if not np.array_equal(self(batch), expected, equal_nan=True):
                    log.warning("direct prediction differs from inplace_predict: using inplace_predict")
                    return False
        except Exception as exc:  # an XGBoost whose C API changed: stay correct, just slower
            log.warning("direct prediction unavailable (%s): using inplace_predict", exc)
            return False
        return True


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
        direct = DensePredictor(booster)
        self.predict_large = direct if direct.verified(num_features) else self._inplace
        self.forest = _checked_forest(booster, num_features, saved_forest)
        self.forest_max_rows = self.FOREST_MAX_ROWS if threads >= self.XGBOOST_THREADS_TO_WIN else math.inf

    def predict_dense(self, rows: np.ndarray) -> np.ndarray:
        if self.forest is not None and rows.shape[0] <= self.forest_max_rows:
            return self.forest(rows)
        return self.predict_large(rows)

    def _inplace(self, rows: np.ndarray) -> np.ndarray:
        return self.booster.inplace_predict(rows, validate_features=False)


def _checked_forest(booster: xgboost.Booster, num_features: int, saved: Path | None = None) -> Forest | None:
    """The booster as flat tables if they predict as XGBoost does (on random rows with missing values):
    the tables training saved (``saved``) when they pass, else laid out afresh."""
    try:
        evaluator()
    except OSError as exc:
        log.warning("dense requests use XGBoost's predictor: %s", exc)
        return None
    rows = np.random.default_rng(1).normal(scale=3.0, size=(64, num_features))
    rows[::5, ::2] = np.nan
    rows[3] = np.nan
    forest = None
    if saved is not None and saved.is_file():
        forest, why = _calibrated(lambda: (Forest.load(saved), ""), booster, rows)
        if forest is None:
            log.warning("%s does not match the model (%s): laying the tables out again", saved, why)
    if forest is None:
        forest, why = _calibrated(lambda: compile_forest(booster), booster, rows)
        if forest is None:
            log.info("dense requests use XGBoost's predictor: the model cannot be compiled to tables (%s)", why)
            return None
    log.info("dense requests use the compiled forest (%d trees, %d levels)", forest.leaf.shape[0], forest.depth)
    return forest


def _calibrated(make: Callable[[], tuple[Forest | None, str]], booster: xgboost.Booster,
                rows: np.ndarray) -> tuple[Forest | None, str]:
    try:
        forest, why = make()
        return calibrated(forest, booster, rows) if forest is not None else (None, why)
    except Exception as exc:  # a model layout this XGBoost writes differently: stay correct, just slower
        return None, f"{type(exc).__name__}: {exc}"


def threads_per_worker() -> int:
    """Workers share the CPUs: each gets its share, so they never fight over cores."""
    workers = int(os.environ.get(MODEL_SERVER_WORKERS) or os.cpu_count() or 1)
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
        threads = threads_per_worker()
        booster.set_param({"nthread": threads})
        meta_path = model_dir / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        return Model(booster, booster.num_features(), meta.get("objective"), model_dir / FOREST_FILE, threads)

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
