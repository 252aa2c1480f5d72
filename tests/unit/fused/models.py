"""Real models for the fused tests: a preprocess model fitted on orders, an XGBoost model trained by the
XGBoost container's own training on that model's output (its features channel recorded)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from local_test.orders import make_orders
from serving_common import encoders
from serving_common.features.features import FittedFeatures
from serving_common.features.spec import infer_spec
from serving_common.features.user_code import FeatureCode
from serving_common.training.harness import run
from xgboost_container.hyperparameters import HYPERPARAMETERS
from xgboost_container.train import train

from ..xgboost.jobs import write_json

LABEL = "default"


def orders(count: int, seed: int) -> list[dict[str, Any]]:
    return make_orders(count, seed=seed)


def fit_preprocess(folder: Path, records: list[dict[str, Any]], code: Path | None = None,
                   drop: tuple[str, ...] = ("order_id",)) -> Path:
    feature_code = FeatureCode(code) if code is not None else None
    seen = feature_code.extract_records(records) if feature_code is not None and feature_code.has_extract else records
    spec = infer_spec(seen, label=LABEL, drop=list(drop))
    FittedFeatures.fit(seen, spec, code=feature_code, extracted=True).save(folder)
    return folder


def train_model(folder: Path, preprocess: Path, records: list[dict[str, Any]], rounds: int = 5) -> Path:
    """The XGBoost container's training on the preprocess model's output, as the chained pipeline's
    training recipe runs it (label first, features channel with the preprocess model's features.json)."""
    features = FittedFeatures.load(preprocess)
    matrix, labels = features.transform_records_with_labels(records)
    table = np.column_stack([np.asarray(labels, dtype=float), matrix])
    write_json(folder / "input" / "config" / "hyperparameters.json",
               {"num_round": str(rounds), "max_depth": "3", "objective": "binary:logistic", "nthread": "1"})
    (folder / "input" / "data" / "train").mkdir(parents=True)
    (folder / "input" / "data" / "train" / "train.csv").write_bytes(encoders.encode(table, "text/csv"))
    (folder / "input" / "data" / "features").mkdir(parents=True)
    shutil.copy(preprocess / "features.json", folder / "input" / "data" / "features" / "features.json")
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert run(train, HYPERPARAMETERS, base=folder) == 0, (folder / "output" / "failure").read_text()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return folder / "model"
