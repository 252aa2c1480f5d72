"""An XGBoost model folder: its file names and loading, shared by training (which writes it) and serving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import xgboost

# XGBoost's binary JSON format, named with the suffix that says so: XGBoost 3 warns "Unknown file format"
# when it loads a file without one (SageMaker's own XGBoost's name, ``xgboost-model``, which models trained
# by earlier versions of this image carry and serving still loads).
MODEL_FILE = "xgboost-model.ubj"
LEGACY_MODEL_FILE = "xgboost-model"
META_FILE = "xgboost-meta.json"


def model_file(model_dir: Path) -> Path:
    """The model file of a model folder: ``MODEL_FILE``, else the name earlier versions saved it under."""
    path = model_dir / MODEL_FILE
    legacy = model_dir / LEGACY_MODEL_FILE
    return legacy if not path.is_file() and legacy.is_file() else path


def load_booster(path: Path) -> xgboost.Booster:
    """Load a model file whatever its name (from bytes: XGBoost detects the format without a suffix).

    An empty file is refused here: XGBoost aborts the whole process on one (``terminate called without
    an active exception``), which no ``except`` can catch and which made a crash loop of serving.
    """
    data = path.read_bytes()
    if not data:
        raise xgboost.core.XGBoostError(f"{path} is empty (0 bytes): not an XGBoost model")
    booster = xgboost.Booster()
    booster.load_model(bytearray(data))
    return booster


def read_meta(model_dir: Path) -> dict[str, Any]:
    """What training recorded beside the model (``META_FILE``: objective, features, rounds); {} without it."""
    path = model_dir / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
