"""A booster's trees as numpy tables, evaluated a level at a time: the fast path for small requests.

Why by hand: XGBoost's CPU predictor has a fixed cost of ~300 µs per call (it walks every tree to find
its depth and sets up its blocked layout each time), as much as predicting a few dozen rows; treelite's
GTIL was measured slower still, and a compiled evaluator (tl2cgen, numba) needs a compiler or ~150 MB
of LLVM in the image. Here every tree is padded to a complete binary tree of the forest's depth, so a
node's children are found by arithmetic and one request costs a few numpy operations per level for
all trees and rows at once. ``compile_forest`` returns ``None`` (with the reason) for what this does not
cover, and the caller checks the result against XGBoost before trusting it. Training saves the tables
beside the model (``FOREST_FILE``), so that loading a model, in a multi-model endpoint above all, skips
the ~35 ms of laying them out (most of it XGBoost writing the model as JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import orjson
import xgboost

#: Objectives whose prediction is a function of one summed margin per row.
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    **dict.fromkeys(("binary:logistic", "reg:logistic"), lambda m: 1.0 / (1.0 + np.exp(-m))),
    **dict.fromkeys(("count:poisson", "reg:gamma", "reg:tweedie", "survival:cox"), np.exp),
    **dict.fromkeys(("reg:squarederror", "reg:squaredlogerror", "reg:pseudohubererror", "reg:absoluteerror",
                     "binary:logitraw", "rank:pairwise", "rank:ndcg", "rank:map"), lambda m: m),
}
FOREST_FILE = "xgboost-forest.npz"
#: Padded forests beyond this many nodes (deep trees: 2**depth nodes each) stay with XGBoost.
MAX_PADDED_NODES = 2_000_000


@dataclass(frozen=True)
class Forest:
    """``T`` complete binary trees of ``depth`` levels of splits, stored level by level.

    Node ``p`` (0 ≤ p < 2**l) of tree ``t`` on level ``l`` is entry ``t * 2**l + p`` of that level's
    tables, so its children on the next level are ``2i`` and ``2i + 1`` of the next tables, and after the
    last level ``i`` indexes ``leaf`` directly: no per-tree offsets at all. ``feature`` indexes a row
    widened to ``2F`` columns: the first ``F`` with missing values as -inf, the last ``F`` as +inf, so
    ``x >= threshold`` sends a missing value the tree's default way without a test of its own. A leaf
    above the last level is padded with NaN thresholds (never ``>=``: always left) down to one leaf that
    carries its value.
    """

    num_features: int
    features: tuple[np.ndarray, ...]  # per level: intp [T * 2**level]
    thresholds: tuple[np.ndarray, ...]  # per level: float32 [T * 2**level]
    leaf: np.ndarray  # float64 [T * 2**depth]
    objective: str  # a key of TRANSFORMS
    base_margin: float = 0.0

    def leaf_sums(self, rows: np.ndarray) -> np.ndarray:
        """Sum over trees of each row's leaf value (float64, one per row)."""
        n, width = rows.shape[0], 2 * self.num_features
        x = np.asarray(rows, dtype=np.float32)
        wide = np.empty((n, width), dtype=np.float32)
        wide[:, :self.num_features] = x
        wide[:, self.num_features:] = x
        missing = np.isnan(wide)
        if missing.any():
            missing[:, self.num_features:] = False
            wide[missing] = -np.inf
            np.nan_to_num(wide, copy=False, nan=np.inf)
        wide = wide.ravel()
        trees = len(self.features[0])
        node = np.tile(np.arange(trees, dtype=np.intp), (n, 1))
        row_start = (np.arange(n, dtype=np.intp) * width)[:, None] if n > 1 else None
        for features, thresholds in zip(self.features, self.thresholds, strict=True):
            columns = features.take(node)
            if row_start is not None:
                columns += row_start
            right = wide.take(columns) >= thresholds.take(node)
            node <<= 1
            node += right
        return self.leaf.take(node).sum(axis=1)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return TRANSFORMS[self.objective](self.leaf_sums(rows) + self.base_margin).astype(np.float32)

    def save(self, path: Path) -> None:
        """The tables as an ``.npz`` (no pickle); the base margin is re-measured by ``calibrated`` at load."""
        levels = {f"features{level}": table for level, table in enumerate(self.features)}
        levels |= {f"thresholds{level}": table for level, table in enumerate(self.thresholds)}
        with path.open("wb") as file:
            np.savez(file, num_features=self.num_features, objective=self.objective, leaf=self.leaf, **levels)

    @classmethod
    def load(cls, path: Path) -> Forest:
        with np.load(path, allow_pickle=False) as data:
            depth = sum(name.startswith("features") for name in data.files)
            return cls(int(data["num_features"]), tuple(data[f"features{level}"] for level in range(depth)),
                       tuple(data[f"thresholds{level}"] for level in range(depth)), data["leaf"],
                       str(data["objective"]))


def compile_forest(booster: xgboost.Booster) -> tuple[Forest | None, str]:
    """The booster as a ``Forest`` without its base margin (see ``calibrated``), or ``None`` and why.

    All trees are laid out at once, a level at a time: a few ms for 200 trees of depth 6, after the
    ~25 ms XGBoost takes to write the model as JSON and orjson to read it.
    """
    model = orjson.loads(booster.save_raw("json"))["learner"]
    booster_kind = model["gradient_booster"]["name"]
    if booster_kind != "gbtree":
        return None, f"booster {booster_kind}"
    params = model["learner_model_param"]
    if int(params.get("num_class", "0")) > 1 or int(params.get("num_target", "1")) > 1:
        return None, "several outputs per row"
    objective = model["objective"]["name"]
    if objective not in TRANSFORMS:
        return None, f"objective {objective}"
    trees = model["gradient_booster"]["model"]["trees"]
    if not trees:
        return None, "no trees"
    if any(any(tree.get("split_type", ())) or int(tree["tree_param"].get("size_leaf_vector", "1")) > 1
           for tree in trees):
        return None, "categorical splits or vector leaves"
    num_trees, num_features = len(trees), int(params["num_feature"])

    # Every tree's nodes in one set of arrays: node k of tree t becomes id roots[t] + k.
    sizes = [len(tree["left_children"]) for tree in trees]
    roots = np.cumsum([0, *sizes[:-1]])
    first = np.repeat(roots, sizes)

    def column(key: str, dtype: type) -> np.ndarray:
        return np.concatenate([np.asarray(tree[key], dtype=dtype) for tree in trees])

    left, right = column("left_children", np.intp), column("right_children", np.intp)
    is_leaf = left == -1
    left, right = left + first, right + first
    feature = column("split_indices", np.intp) + np.where(column("default_left", bool), 0, num_features)
    condition = column("split_conditions", np.float64)  # a leaf's value, for leaves

    levels = []  # per level: the tree, position on the level and id of each node on it
    tree, position, node = np.arange(num_trees), np.zeros(num_trees, dtype=np.intp), roots
    while node.size:
        levels.append((tree, position, node))
        inner = ~is_leaf[node]
        tree, position, node = (np.concatenate((tree[inner], tree[inner])),
                                np.concatenate((2 * position[inner], 2 * position[inner] + 1)),
                                np.concatenate((left[node[inner]], right[node[inner]])))
    depth = max(1, len(levels) - 1)  # levels of splits
    if num_trees << (depth + 1) > MAX_PADDED_NODES:
        return None, f"trees {depth} levels deep"

    features = [np.zeros(num_trees << level, dtype=np.intp) for level in range(depth)]
    thresholds = [np.full(num_trees << level, np.nan, dtype=np.float32) for level in range(depth)]
    leaf = np.zeros(num_trees << depth, dtype=np.float64)
    for level, (tree, position, node) in enumerate(levels):
        inner = ~is_leaf[node]
        if inner.any():
            slot = (tree[inner] << level) + position[inner]
            features[level][slot] = feature[node[inner]]
            thresholds[level][slot] = condition[node[inner]]
        # a leaf's value goes to the leftmost leaf below its position on the last level
        leaves = ~inner
        leaf[(tree[leaves] << depth) + (position[leaves] << (depth - level))] = condition[node[leaves]]
    return Forest(num_features, tuple(features), tuple(thresholds), leaf, objective), ""


def calibrated(forest: Forest, booster: xgboost.Booster, rows: np.ndarray) -> tuple[Forest | None, str]:
    """``forest`` with XGBoost's base margin, if it then predicts ``rows`` as XGBoost does; else why not."""
    margins = booster.inplace_predict(rows, predict_type="margin", validate_features=False)
    base = margins - forest.leaf_sums(rows)
    if not np.allclose(base, base[0], rtol=0, atol=1e-5):
        return None, "margins differ from XGBoost's"
    forest = replace(forest, base_margin=float(np.median(base)))
    expected = booster.inplace_predict(rows, validate_features=False)
    if not np.allclose(forest(rows), expected, rtol=1e-5, atol=1e-6):
        return None, "predictions differ from XGBoost's"
    return forest, ""
