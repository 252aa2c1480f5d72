"""Helpers of the XGBoost tests: tables of training data, the failure file, the per-round metric lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def write_files(folder: Path, files: dict[str, str | bytes]) -> None:
    """``{relative name: text or bytes}`` written under ``folder`` (sub-folders created)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, content in files.items():
        target = folder / file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)


def csv_text(table: np.ndarray) -> str:
    """Rows of ``label,feature,...`` (no header), numbers written so that they read back exactly."""
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in table)


def regression_table(rows: int, features: int = 3, seed: int = 0) -> np.ndarray:
    """label = 2*x0 - x1 + noise, then the features: a table a few boosting rounds learn well."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    y = 2 * x[:, 0] - x[:, 1] + rng.normal(scale=0.1, size=rows)
    return np.column_stack([y, x])


def classification_table(rows: int, features: int = 3, seed: int = 0, noise: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    y = (x[:, 0] - x[:, 1] + rng.normal(scale=noise, size=rows) > 0).astype(float)
    return np.column_stack([y, x])


def failure(base: Path) -> str:
    path = base / "output" / "failure"
    return path.read_text() if path.exists() else ""


def metric_lines(stdout: str) -> list[str]:
    """XGBoost's per-round lines (``[3]\\ttrain-rmse:...``) among the job's log lines."""
    return [line for line in stdout.splitlines() if line.startswith("[") and "\t" in line]


def metric_values(stdout: str, name: str) -> dict[int, float]:
    """``{round: value}`` of one metric (e.g. ``validation-rmse``) from the per-round lines."""
    values = {}
    for line in metric_lines(stdout):
        step, *fields = line.split("\t")
        for field in fields:
            key, _, value = field.partition(":")
            if key == name:
                values[int(step.strip("[]"))] = float(value)
    return values
