"""Make ``xgboost_container`` importable (it lives in containers/xgboost) and build /opt/ml-like jobs for it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from .jobs import write_files, write_json

_CONTAINER = Path(__file__).resolve().parents[3] / "containers" / "xgboost"
if str(_CONTAINER) not in sys.path:
    sys.path.insert(0, str(_CONTAINER))


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """The harness points the root logger at the (captured) stdout of the test: undo that afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def opt_ml(tmp_path: Path):
    """Builds an /opt/ml-like tree: ``opt_ml(hyperparameters=..., channels={name: {file: text|bytes}}, ...)``.

    Hyperparameter values are written as given (strings, as SageMaker does). ``name`` picks the folder,
    so a test can build several jobs.
    """

    def build(hyperparameters: dict[str, str] | None = None, channels: dict[str, dict[str, str | bytes]] | None = None,
              inputdataconfig: dict[str, Any] | None = None, resourceconfig: dict[str, Any] | None = None,
              name: str = "opt_ml") -> Path:
        base = tmp_path / name
        config = base / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        if hyperparameters is not None:
            write_json(config / "hyperparameters.json", hyperparameters)
        if inputdataconfig is not None:
            write_json(config / "inputdataconfig.json", inputdataconfig)
        if resourceconfig is not None:
            write_json(config / "resourceconfig.json", resourceconfig)
        for channel, files in (channels or {}).items():
            write_files(base / "input" / "data" / channel, files)
        return base

    return build
