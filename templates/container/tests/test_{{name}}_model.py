"""Unit tests of the {{name}} container's own code (found by pytest: testpaths include containers/)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from serving_common.cli import main
from serving_common.errors import BadRequest
from {{name}}_container.__main__ import CONTAINER
from {{name}}_container.handler import META_FILE, MODEL_FILE
from {{name}}_container.train import fit

WEIGHTS = np.array([2.0, -1.0, 0.5])


def _job(tmp_path, rows: np.ndarray, **hyperparameters: str):
    config = tmp_path / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    train = tmp_path / "input" / "data" / "train"
    train.mkdir(parents=True)
    np.savetxt(train / "part-0.csv", rows, delimiter=",")
    return tmp_path


@pytest.fixture
def rows() -> np.ndarray:
    features = np.random.default_rng(0).normal(size=(50, 3))
    return np.column_stack([features @ WEIGHTS + 3.0, features])


def test_least_squares_recovers_an_exact_linear_model(rows):
    weights, bias = fit(rows[:, 1:], rows[:, 0], l2=0.0, fit_intercept=True)
    np.testing.assert_allclose(weights, WEIGHTS, atol=1e-9)
    assert bias == pytest.approx(3.0)


def test_the_ridge_penalty_shrinks_the_weights_but_not_the_bias(rows):
    weights, _ = fit(rows[:, 1:], rows[:, 0], l2=1000.0, fit_intercept=True)
    assert np.linalg.norm(weights) < 0.5 * np.linalg.norm(WEIGHTS)
    assert fit(rows[:, 1:], rows[:, 0], l2=0.0, fit_intercept=False)[1] == 0.0


def test_train_then_serve(tmp_path, rows, monkeypatch):
    monkeypatch.setenv("SMKIT_OPT_ML", str(_job(tmp_path, rows, l2="0")))
    assert main(CONTAINER, ["train"]) == 0
    assert (tmp_path / "model" / MODEL_FILE).is_file()
    # what the pipeline check and fuse compare with a preprocess model (no features channel: no fingerprint)
    assert json.loads((tmp_path / "model" / META_FILE).read_text()) == {"num_features": 3, "features_fingerprint": None}
    handler = CONTAINER.handler_factory()
    model = handler.load(tmp_path / "model")
    np.testing.assert_allclose(handler.predict(model, rows[:5, 1:], None), rows[:5, 0], atol=1e-9)
    with pytest.raises(BadRequest, match="expected 3 features"):
        handler.predict(model, rows[:5, 1:3], None)
    with pytest.raises(BadRequest, match="missing value"):
        handler.predict(model, np.array([[1.0, np.nan, 2.0]]), None)


def test_bad_training_data_fails_the_job_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("SMKIT_OPT_ML", str(_job(tmp_path, np.array([[1.0, np.inf]]))))
    assert main(CONTAINER, ["train"]) == 1
    assert "finite" in (tmp_path / "output" / "failure").read_text()
    assert not any((tmp_path / "model").iterdir())
