"""Training: a least-squares linear model (ridge-regularised) on CSV rows, label first, no header.

Beside the model, ``{{name}}-meta.json`` records the row width it was trained on (``num_features``) and, with
a ``features`` channel (the preprocess model's features.json), that model's fingerprint: what lets the model
be deployed behind its preprocess model, chained or fused (``python -m serving_common.fuse``), checked.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from serving_common.training.features_channel import features_fingerprint
from serving_common.training.harness import TrainingError, TrainingJob
from serving_common.training.hyperparameters import Hyperparameter

from .handler import META_FILE, MODEL_FILE

log = logging.getLogger("{{name}}_container")

HYPERPARAMETERS = (
    Hyperparameter("l2", float, 0.0, "ridge penalty on the weights (0: plain least squares)", minimum=0.0),
    Hyperparameter("fit_intercept", bool, True, "learn a bias term"),
)


def read_csv(path: Path) -> np.ndarray:
    rows = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)  # a ValueError names the bad line
    if rows.shape[1] < 2 or not np.isfinite(rows).all():
        raise TrainingError(f"{path.name}: need a label and at least one feature per row, all finite numbers")
    return rows


def fit(features: np.ndarray, labels: np.ndarray, l2: float, fit_intercept: bool) -> tuple[np.ndarray, float]:
    """Weights and bias minimising squared error + l2 * |weights|^2 (the bias is not penalised)."""
    count = features.shape[1]
    design = np.column_stack([features, np.ones(len(features))]) if fit_intercept else features
    penalty = np.sqrt(l2) * np.eye(count, design.shape[1])  # ridge as extra rows: one lstsq solves both
    solution = np.linalg.lstsq(np.vstack([design, penalty]), np.concatenate([labels, np.zeros(count)]), rcond=None)[0]
    return solution[:count], float(solution[count]) if fit_intercept else 0.0


def train(job: TrainingJob) -> None:
    channel = job.env.channels.get("train")
    if channel is None:
        raise TrainingError("no 'train' channel: give the training CSV files as the train channel")
    files = [path for path in channel.files() if not path.name.startswith((".", "_"))]
    if not files:
        raise TrainingError(f"the train channel ({channel.path}) holds no data files")
    rows = np.concatenate([read_csv(path) for path in files])
    weights, bias = fit(rows[:, 1:], rows[:, 0], job.hyperparameters["l2"], job.hyperparameters["fit_intercept"])
    rmse = float(np.sqrt(np.mean((rows[:, 1:] @ weights + bias - rows[:, 0]) ** 2)))
    log.info("train:rmse=%.6g (%d rows, %d features)", rmse, len(rows), len(weights))
    np.savez(job.model_dir / MODEL_FILE, weights=weights, bias=np.float64(bias))
    meta = {"num_features": len(weights), "features_fingerprint": features_fingerprint(job)}
    (job.model_dir / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
