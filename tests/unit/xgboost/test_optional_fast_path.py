"""The fast path (xgboost_container/fast/, native/) is optional: without it the container trains and serves
the same scores through XGBoost alone."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import xgboost

PACKAGE = Path(__file__).resolve().parents[3] / "containers" / "xgboost" / "xgboost_container"

SERVE = """
import sys
import numpy as np
from xgboost_container import handler
assert handler.fast is None, "the fast path is still there"
model = handler.XGBoostHandler().load(__import__("pathlib").Path(sys.argv[1]))
assert model.forest is None and model.predict_large == model._inplace
rows = np.random.default_rng(3).normal(size=(5, 4))
np.save(sys.argv[2], model.predict_dense(rows))
"""


def test_without_the_fast_path_the_handler_serves_through_xgboost(tmp_path):
    copy = tmp_path / "container" / "xgboost_container"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("fast", "libforest.so", "__pycache__"))
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 4))
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 3},
                            xgboost.DMatrix(features, label=features[:, 0] > 0), num_boost_round=5)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    booster.save_model(model_dir / "xgboost-model.ubj")
    out = tmp_path / "scores.npy"
    result = subprocess.run([sys.executable, "-c", SERVE, str(model_dir), str(out)], cwd=copy.parent,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = np.random.default_rng(3).normal(size=(5, 4))
    np.testing.assert_array_equal(np.load(out), booster.inplace_predict(rows))
