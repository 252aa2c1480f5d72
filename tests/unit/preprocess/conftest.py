"""Make ``preprocess_container`` importable (it lives in containers/preprocess, not in a package)."""

import sys
from pathlib import Path

_CONTAINER = Path(__file__).resolve().parents[3] / "containers" / "preprocess"
if str(_CONTAINER) not in sys.path:
    sys.path.insert(0, str(_CONTAINER))
