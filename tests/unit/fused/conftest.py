"""Fused models need the containers' code: the preprocess handler (the reference), the XGBoost and PyTorch images'."""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[3]
for _container in ("preprocess", "xgboost", "pytorch"):
    if str(_ROOT / "containers" / _container) not in sys.path:
        sys.path.insert(0, str(_ROOT / "containers" / _container))
