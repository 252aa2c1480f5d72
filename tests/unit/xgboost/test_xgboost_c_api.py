"""The one adapter for XGBoost's private API is checked against the XGBoost the image pins."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import xgboost

from xgboost_container.fast import xgboost_c_api

ROOT = Path(__file__).resolve().parents[3]


def test_the_adapter_was_checked_against_the_pinned_xgboost():
    pins = (ROOT / "containers" / "xgboost" / "requirements.txt").read_text()
    pinned = re.search(r"^xgboost(?:-cpu)?==(\S+)", pins, re.M).group(1)
    assert xgboost_c_api.CHECKED_XGBOOST == pinned == xgboost.__version__


def test_another_xgboost_release_is_refused_at_start_with_what_to_do():
    code = ("import xgboost; xgboost.__version__ = '9.9.9'\n"
            "from xgboost_container.fast import xgboost_c_api\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=ROOT / "containers" / "xgboost")
    assert result.returncode != 0
    assert "XGBoost 9.9.9 is installed" in result.stderr and "set CHECKED_XGBOOST" in result.stderr


def test_the_private_names_are_only_in_the_adapter():
    package = ROOT / "containers" / "xgboost" / "xgboost_container"
    users = {path.relative_to(package).as_posix() for path in package.rglob("*.py")
             if re.search(r"_data_utils|\b_LIB\b|XGBoosterPredictFromDense", path.read_text())}
    assert users == {"fast/xgboost_c_api.py"}
