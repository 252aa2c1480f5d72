"""A booster's trees as complete binary trees in flat tables, walked by a small compiled evaluator.

Why by hand: XGBoost's CPU predictor costs ~300 µs per call here whatever the row count (it walks every
tree to find its depth and sets up its blocked layout each time) and ~6.5 µs per row of 200 trees after
that; treelite's GTIL was measured slower still, tl2cgen generates and compiles C per model (a compiler
wherever a model is trained) and numba brings ~150 MB of LLVM. Here every tree is padded to a complete
binary tree of the forest's depth and stored in heap order, so a node's children are found by arithmetic,
and ``native/forest_eval.c`` walks them several rows at a time: ~15 µs for one row and ~2 µs a row for
100 rows of 200 depth-6 trees, on one thread. The library is compiled when the image is built (zig's C
compiler from the ziglang wheel, in the build stage only) and by setup.sh for the dev venv.
``compile_forest`` returns ``None`` (with the reason) for what this does not cover, and the caller checks
the result against XGBoost before trusting it; without the library the caller stays with XGBoost.
Training saves the tables beside the model (``FOREST_FILE``), so that loading a model, in a multi-model
endpoint above all, skips the ~35 ms of laying them out (most of it XGBoost writing the model as JSON).
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import orjson
import xgboost

log = logging.getLogger("xgboost_container")

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
#: The compiled evaluator: native/compile.sh writes it into the package folder (the image's Dockerfile,
#: setup.sh for the dev venv).
LIBRARY = Path(__file__).parents[1] / "libforest.so"
#: One split node, as the evaluator's ``node_t``.
NODE = np.dtype([("feature", np.int32), ("threshold", np.float32)])


@functools.cache
def evaluator() -> ctypes._CFuncPtr:
    """The library's ``forest_margins`` (ctypes releases the GIL while it runs); OSError when not built."""
    try:
        library = ctypes.CDLL(str(LIBRARY))
    except OSError as exc:
        raise OSError(f"the forest evaluator is not built ({exc}); "
                      "containers/xgboost/native/compile.sh builds it") from None
    function = library.forest_margins
    pointer, int64 = ctypes.c_void_p, ctypes.c_int64
    function.argtypes = [pointer, int64, int64, pointer, pointer, int64, ctypes.c_int32, ctypes.c_double, pointer]
    function.restype = ctypes.c_int
    return function


@dataclass(frozen=True)
class Forest:
    """``T`` complete binary trees of ``depth`` levels of splits, each in heap order.

    Tree ``t``'s split node ``j`` is ``nodes[t, j]`` (children ``2j + 1`` and ``2j + 2``); below the last
    level, node ``2**depth - 1 + k`` is the leaf ``leaf[t, k]``. ``feature`` indexes a row widened to
    ``2F`` columns: the first ``F`` with missing values as -inf, the last ``F`` as +inf, so ``x >=
    threshold`` sends a missing value the tree's default way without a test of its own. A leaf above the
    last level is padded with NaN thresholds (never ``>=``: always left) down to one leaf that carries its
    value. The tables are checked when built, so the evaluator never reads outside them.
    """

    num_features: int
    nodes: np.ndarray  # NODE [T, 2**depth - 1]
    leaf: np.ndarray  # float64 [T, 2**depth]
    objective: str  # a key of TRANSFORMS
    base_margin: float = 0.0

    def __post_init__(self) -> None:
        nodes, leaf = self.nodes, self.leaf
        if nodes.dtype != NODE or leaf.dtype != np.float64 or nodes.ndim != 2 or leaf.ndim != 2:
            raise ValueError("forest tables of the wrong types")
        if not (nodes.flags.c_contiguous and leaf.flags.c_contiguous):
            raise ValueError("forest tables must be C-contiguous")
        trees, leaves = leaf.shape
        if trees < 1 or leaves < 2 or leaves & (leaves - 1) or nodes.shape != (trees, leaves - 1):
            raise ValueError(f"forest tables of mismatched shapes {nodes.shape} and {leaf.shape}")
        features = nodes["feature"]
        if self.num_features < 1 or features.min() < 0 or features.max() >= 2 * self.num_features:
            raise ValueError(f"a split feature outside the {2 * self.num_features} widened columns")
        if self.objective not in TRANSFORMS:
            raise ValueError(f"objective {self.objective}")

    @property
    def depth(self) -> int:
        return self.leaf.shape[1].bit_length() - 1

    def margins(self, rows: np.ndarray) -> np.ndarray:
        """The base margin plus the sum over trees of each row's leaf value (float64, one per row)."""
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.num_features:
            raise ValueError(f"rows of shape {rows.shape}: the forest has {self.num_features} features")
        out = np.empty(rows.shape[0], dtype=np.float64)
        if evaluator()(rows.ctypes.data, rows.shape[0], self.num_features, self.nodes.ctypes.data,
                        self.leaf.ctypes.data, self.leaf.shape[0], self.depth, self.base_margin,
                        out.ctypes.data):
            raise MemoryError("the forest evaluator could not allocate its row buffer")
        return out

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return TRANSFORMS[self.objective](self.margins(rows)).astype(np.float32)

    def save(self, path: Path) -> None:
        """The tables as an ``.npz`` (no pickle); the base margin is re-measured by ``calibrated`` at load."""
        with path.open("wb") as file:
            np.savez(file, num_features=self.num_features, objective=self.objective, nodes=self.nodes,
                     leaf=self.leaf)

    @classmethod
    def load(cls, path: Path) -> Forest:
        with np.load(path, allow_pickle=False) as data:
            return cls(int(data["num_features"]), data["nodes"], data["leaf"], str(data["objective"]))


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

    nodes = np.zeros((num_trees, (1 << depth) - 1), dtype=NODE)
    nodes["threshold"] = np.nan
    leaf = np.zeros((num_trees, 1 << depth), dtype=np.float64)
    for level, (tree, position, node) in enumerate(levels):
        inner = ~is_leaf[node]
        slot = (tree[inner], (1 << level) - 1 + position[inner])
        nodes["feature"][slot] = feature[node[inner]]
        nodes["threshold"][slot] = condition[node[inner]]
        # a leaf's value goes to the leftmost leaf below its position on the last level
        leaves = ~inner
        leaf[tree[leaves], position[leaves] << (depth - level)] = condition[node[leaves]]
    return Forest(num_features, nodes, leaf, objective), ""


def calibrated(forest: Forest, booster: xgboost.Booster, rows: np.ndarray) -> tuple[Forest | None, str]:
    """``forest`` with XGBoost's base margin, if it then predicts ``rows`` as XGBoost does; else why not."""
    margins = booster.inplace_predict(rows, predict_type="margin", validate_features=False)
    base = margins - replace(forest, base_margin=0.0).margins(rows)
    if not np.allclose(base, base[0], rtol=0, atol=1e-5):
        return None, "margins differ from XGBoost's"
    forest = replace(forest, base_margin=float(np.median(base)))
    expected = booster.inplace_predict(rows, validate_features=False)
    if not np.allclose(forest(rows), expected, rtol=1e-5, atol=1e-6):
        return None, "predictions differ from XGBoost's"
    return forest, ""


def checked_forest(booster: xgboost.Booster, num_features: int, saved: Path | None = None) -> Forest | None:
    """The booster as flat tables if they predict as XGBoost does (on random rows with missing values):
    the tables training saved (``saved``) when they pass, else laid out afresh."""
    try:
        evaluator()
    except OSError as exc:
        log.warning("dense requests use XGBoost's predictor: %s", exc)
        return None
    rows = np.random.default_rng(1).normal(scale=3.0, size=(64, num_features))
    rows[::5, ::2] = np.nan
    rows[3] = np.nan
    forest = None
    if saved is not None and saved.is_file():
        forest, why = _calibrated(lambda: (Forest.load(saved), ""), booster, rows)
        if forest is None:
            log.warning("%s does not match the model (%s): laying the tables out again", saved, why)
    if forest is None:
        forest, why = _calibrated(lambda: compile_forest(booster), booster, rows)
        if forest is None:
            log.info("dense requests use XGBoost's predictor: the model cannot be compiled to tables (%s)", why)
            return None
    log.info("dense requests use the compiled forest (%d trees, %d levels)", forest.leaf.shape[0], forest.depth)
    return forest


def _calibrated(make: Callable[[], tuple[Forest | None, str]], booster: xgboost.Booster,
                rows: np.ndarray) -> tuple[Forest | None, str]:
    try:
        forest, why = make()
        return calibrated(forest, booster, rows) if forest is not None else (None, why)
    except Exception as exc:  # a model layout this XGBoost writes differently: stay correct, just slower
        return None, f"{type(exc).__name__}: {exc}"
