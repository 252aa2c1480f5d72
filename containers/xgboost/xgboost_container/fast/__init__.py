"""The optional fast path of XGBoost serving: not needed for correct results, only for speed.

- ``forest``: the booster's trees as flat tables walked by ``native/forest_eval.c`` (~20x faster than
  XGBoost's predictor for one row); training saves the tables beside the model.
- ``xgboost_c_api``: XGBoost's private C prediction entry point called with a config built once (large
  dense requests); the one place that touches XGBoost's private API, refused at start for any XGBoost
  release other than the one it was checked against.

Both are checked against ``Booster.inplace_predict`` when a model loads and turned off (logged) when they
differ. Delete this folder (and ``native/``) and the container still trains and serves, through XGBoost alone:
a new framework container copied from this one need not carry it.
"""

from .forest import FOREST_FILE, Forest, checked_forest, compile_forest
from .xgboost_c_api import DensePredictor

__all__ = ["FOREST_FILE", "DensePredictor", "Forest", "checked_forest", "compile_forest"]
