"""XGBoost's private C API, used by the fast path and nowhere else: the one adapter for it.

``xgboost._data_utils.array_interface``, ``xgboost.core._LIB`` / ``_check_call`` / ``c_bst_ulong`` and the C
function ``XGBoosterPredictFromDense`` are not XGBoost's public API: any release may change them. So this
module refuses, at import (the server's start), any XGBoost but the one it was checked against, with a message
that says what to do; tests/unit/xgboost/test_xgboost_c_api.py checks that the version here is the one
containers/xgboost/requirements.txt pins, so a pin bump fails the unit tests until this is looked at again.
"""

from __future__ import annotations

import ctypes
import json
import logging

import numpy as np
import xgboost

#: The XGBoost release this adapter was checked against (= containers/xgboost/requirements.txt's pin).
CHECKED_XGBOOST = "3.2.0"

if xgboost.__version__ != CHECKED_XGBOOST:
    raise RuntimeError(
        f"xgboost_container/fast/xgboost_c_api.py uses XGBoost's private C API as of XGBoost {CHECKED_XGBOOST}, "
        f"but XGBoost {xgboost.__version__} is installed: check XGBoosterPredictFromDense, _LIB, _check_call, "
        "c_bst_ulong and _data_utils.array_interface against the new release (tests/unit/xgboost/test_forest.py "
        "compares against inplace_predict), then set CHECKED_XGBOOST; or delete the fast/ folder to serve "
        "through inplace_predict only")

from xgboost._data_utils import array_interface  # noqa: E402
from xgboost.core import _LIB, _check_call, c_bst_ulong  # noqa: E402

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
