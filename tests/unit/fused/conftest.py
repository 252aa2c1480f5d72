"""Fused models need both containers' code: the preprocess handler (the reference) and the XGBoost image's."""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[3]
for _container in ("preprocess", "xgboost"):
    if str(_ROOT / "containers" / _container) not in sys.path:
        sys.path.insert(0, str(_ROOT / "containers" / _container))
