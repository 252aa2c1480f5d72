"""Compile a fitted ColumnTransformer into the tables of a :class:`~.fast_transform.CompiledTransform`.

This is the only part of the fast path that needs scikit-learn (and scipy): it runs at training time
(and when a model without saved tables is loaded). The tables it derives are saved with the model
(``fast_transform.npz``), so serving rebuilds the fast path with numpy alone.

Supported: the pipelines :func:`serving_common.features.features.build_transformer` makes and close
variants (see ``fast_transform``'s docstring). The ColumnTransformer must select columns by position in
``spec.input_columns`` (it is fitted on a 2-D object array in that order). Anything else makes
:func:`compile_transformer` return None (with a warning) and callers use scikit-learn.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

from .fast_transform import Cell, CompiledTransform, unused_category

if TYPE_CHECKING:
    from .spec import FeatureSpec

logger = logging.getLogger("preprocess")

__all__ = ["compile_transformer"]

_NAN = float("nan")


class _Unsupported(Exception):
    """The fitted transformer uses something the fast path does not implement."""

    def __init__(self, what: str, where: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.where = where


def compile_transformer(ct: Any, spec: FeatureSpec) -> CompiledTransform | None:
    """Compile a fitted ColumnTransformer (as built by ``build_transformer``) for ``spec``.

    Returns None, logging "fast path not available for <X>; using scikit-learn transform", when ``ct``
    uses a transformer or an option the fast path does not implement.
    """
    try:
        return _compile(ct, spec)
    except _Unsupported as exc:
        where = f" ({exc.where})" if exc.where else ""
        logger.warning("fast path not available for %s; using scikit-learn transform%s", exc.what, where)
    except Exception as exc:  # never let an odd transformer break serving: scikit-learn still works
        logger.warning(
            "fast path not available for %s (%s: %s); using scikit-learn transform",
            type(ct).__name__,
            type(exc).__name__,
            exc,
        )
    return None


def _positions(columns: Any, width: int) -> list[int]:
    """The input column positions a ColumnTransformer entry selects (integers or a slice)."""
    if isinstance(columns, slice):
        return list(range(width))[columns]
    if isinstance(columns, np.ndarray) and columns.ndim == 1 and columns.dtype.kind in "iu":
        columns = columns.tolist()
    if isinstance(columns, (list, tuple)) and all(
        isinstance(c, numbers.Integral) and not isinstance(c, (bool, np.bool_)) for c in columns
    ):
        positions = [int(c) + width if c < 0 else int(c) for c in columns]
        if any(not 0 <= p < width for p in positions):
            raise _Unsupported("column positions outside the spec's input columns")
        return positions
    if isinstance(columns, (list, tuple)) and columns and all(isinstance(c, str) for c in columns):
        raise _Unsupported("column selection by name (select columns by position in spec.input_columns)")
    raise _Unsupported(f"column selection by {type(columns).__name__}")


def _compile(ct: Any, spec: FeatureSpec) -> CompiledTransform:
    if type(ct) is not ColumnTransformer:
        raise _Unsupported(type(ct).__name__)
    if not hasattr(ct, "transformers_"):
        raise _Unsupported("an unfitted ColumnTransformer")
    if getattr(ct, "sparse_output_", False):
        raise _Unsupported("ColumnTransformer with sparse output")
    width = len(spec.input_columns)
    if ct.n_features_in_ != width:
        raise _Unsupported(f"a ColumnTransformer fitted on {ct.n_features_in_} columns (the spec has {width})")
    n_out = len(ct.get_feature_names_out(input_features=spec.input_columns))
    n_num = len(spec.numeric)
    numeric_plan: list[tuple[int, int, float, float, float]] = []
    categorical_plan: list[tuple[int, dict[str, Cell], Cell, Cell]] = []
    covered = np.zeros(n_out, dtype=int)

    for name, transformer, columns in ct.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        try:
            positions = _positions(columns, width)
            if not positions:
                continue
            output = ct.output_indices_[name]
            steps = _steps(transformer)
            if all(p < n_num for p in positions):
                plan = _compile_numeric(steps, positions, output.start)
                numeric_plan.extend((positions[i], *rest) for i, *rest in plan)
            elif all(p >= n_num for p in positions):
                plan = _compile_categorical(steps, positions, output.start)
                categorical_plan.extend((positions[i] - n_num, *rest) for i, *rest in plan)
            else:
                raise _Unsupported("a transformer mixing numeric and categorical columns")
            if _planned_width(plan, steps) != output.stop - output.start:
                raise _Unsupported("a transformer with an unexpected output width")
        except _Unsupported as exc:
            exc.where = exc.where or f"transformer {name!r}"
            raise
        covered[output] += 1
    if not (covered == 1).all():
        raise _Unsupported("a ColumnTransformer whose outputs are not covered exactly once")
    return CompiledTransform(spec.numeric, spec.categorical, n_out, numeric_plan, categorical_plan)


def _planned_width(plan: list[tuple], steps: list[Any]) -> int:
    encoder = steps[-1] if steps else None
    if isinstance(encoder, (OneHotEncoder, OrdinalEncoder)):
        return len(encoder.get_feature_names_out())
    return len(plan)


def _steps(transformer: Any) -> list[Any]:
    if isinstance(transformer, str):
        if transformer == "passthrough":
            return []
        raise _Unsupported(repr(transformer))
    if type(transformer) is Pipeline:
        return [step for _, step in transformer.steps if step is not None and step != "passthrough"]
    return [transformer]


def _is_identity(step: Any) -> bool:
    return type(step) is FunctionTransformer and step.func is None and not step.validate


def _check_imputer(imputer: SimpleImputer) -> None:
    if imputer.add_indicator:
        raise _Unsupported("SimpleImputer(add_indicator=True)")
    missing = imputer.missing_values
    if not (isinstance(missing, float) and math.isnan(missing)):
        raise _Unsupported(f"SimpleImputer(missing_values={missing!r})")


def _kept(imputer: SimpleImputer, n: int) -> list[int]:
    """Indices of the features the imputer keeps (scikit-learn drops those whose statistic is NaN)."""
    statistics = imputer.statistics_
    if len(statistics) != n:
        raise _Unsupported("SimpleImputer fitted on another number of features")
    if imputer.keep_empty_features:
        return list(range(n))
    return [i for i, s in enumerate(statistics) if s == s]


def _is_float(value: Any) -> bool:
    return isinstance(value, (float, np.floating)) and not isinstance(value, bool)


def _compile_numeric(
    steps: list[Any], columns: Sequence[int], start: int
) -> list[tuple[int, int, float, float, float]]:
    imputer = scaler = None
    rest = list(steps)
    if rest and type(rest[0]) is SimpleImputer:
        imputer = rest.pop(0)
    if rest and type(rest[0]) is StandardScaler:
        scaler = rest.pop(0)
    if rest and imputer is None and scaler is None and _is_identity(rest[0]):
        rest.pop(0)  # "passthrough" (fitted ColumnTransformers hold it as FunctionTransformer())
    if rest:
        raise _Unsupported(type(rest[0]).__name__, "in a numeric pipeline")
    kept = list(range(len(columns)))
    fills = [_NAN] * len(columns)
    if imputer is not None:
        _check_imputer(imputer)
        # SimpleImputer casts its statistics to the dtype seen in fit: float64 for mean/median, object
        # (the input's dtype) for constant/most_frequent. Numeric inputs are floats either way, and the
        # object path yields the very same float objects (converted to float64 later, exactly).
        fill_dtype = np.dtype(getattr(imputer, "_fill_dtype", imputer.statistics_.dtype))
        if fill_dtype not in (np.float64, np.dtype(object)):
            raise _Unsupported(f"SimpleImputer fitted on {fill_dtype} data")
        kept = _kept(imputer, len(columns))
        statistics = imputer.statistics_
        if not all(_is_float(statistics[i]) for i in kept):
            raise _Unsupported("SimpleImputer with non-float statistics")
        fills = [float(s) if _is_float(s) else _NAN for s in statistics]
    means = [0.0] * len(kept)
    scales = [1.0] * len(kept)
    if scaler is not None:
        if scaler.n_features_in_ != len(kept):
            raise _Unsupported("StandardScaler fitted on another number of features")
        if scaler.with_mean:
            means = [float(m) for m in scaler.mean_]
        if scaler.with_std:
            scales = [float(s) for s in scaler.scale_]
    return [(i, start + k, fills[i], means[k], scales[k]) for k, i in enumerate(kept)]


def _compile_categorical(
    steps: list[Any], columns: Sequence[int], start: int
) -> list[tuple[int, dict[str, Cell], Cell, Cell]]:
    if not steps:
        raise _Unsupported("passthrough of categorical columns")
    imputer = None
    rest = list(steps)
    if type(rest[0]) is SimpleImputer:
        imputer = rest.pop(0)
    if len(rest) != 1 or type(rest[0]) not in (OneHotEncoder, OrdinalEncoder):
        other = rest[1] if len(rest) > 1 else (rest[0] if rest else steps[0])
        raise _Unsupported(type(other).__name__, "in a categorical pipeline")
    encoder = rest[0]
    kept = list(range(len(columns)))
    missing_values: list[Any] = [np.nan] * len(columns)
    if imputer is not None:
        _check_imputer(imputer)
        kept = _kept(imputer, len(columns))
        missing_values = list(imputer.statistics_)
        if not all(isinstance(missing_values[i], str) for i in kept):
            raise _Unsupported("SimpleImputer with non-string categorical fill values")
    if encoder.n_features_in_ != len(kept):
        raise _Unsupported(f"{type(encoder).__name__} fitted on another number of features")
    cells = _probe_encoder(encoder, [missing_values[i] for i in kept], start)
    return [(kept[k], table, missing, unknown) for k, (table, missing, unknown) in enumerate(cells)]


def _probe_encoder(encoder: Any, missing_inputs: list[Any], start: int) -> list[tuple[dict, Cell, Cell]]:
    """Per feature: (category -> cell, cell of the missing value, cell of an unknown category).

    Obtained by running the fitted encoder on every category, an unknown value and the value a
    missing input becomes (the imputer's fill, or NaN without imputer).
    """
    if np.dtype(encoder.dtype) != np.float64:
        raise _Unsupported(f"{type(encoder).__name__}(dtype={encoder.dtype})")
    categories = encoder.categories_
    for cats in categories:
        if not all(type(c) is str for c in cats):
            raise _Unsupported(f"{type(encoder).__name__} with non-string categories")
    if isinstance(encoder, OneHotEncoder):
        if encoder.handle_unknown not in ("ignore", "infrequent_if_exist"):
            raise _Unsupported(f"OneHotEncoder(handle_unknown={encoder.handle_unknown!r})")
        sizes = _onehot_sizes(encoder)
    else:
        if encoder.handle_unknown != "use_encoded_value":
            raise _Unsupported(f"OrdinalEncoder(handle_unknown={encoder.handle_unknown!r})")
        sizes = [1] * len(categories)
    n_rows = max(len(cats) for cats in categories) + 2
    probe = np.empty((n_rows, len(categories)), dtype=object)
    for j, cats in enumerate(categories):
        column = [*cats, unused_category(set(cats)), missing_inputs[j]]
        column += [cats[0]] * (n_rows - len(column))
        probe[:, j] = column
    if isinstance(encoder, OneHotEncoder):
        # Sparse output (same encoding, see OneHotEncoder.transform) keeps memory at O(rows x features)
        # even for high-cardinality features.
        sparse_encoder = copy.copy(encoder)
        sparse_encoder.sparse_output = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            encoded = sparse.coo_array(sparse_encoder.transform(probe))
        if encoded.shape[1] != sum(sizes):
            raise _Unsupported("OneHotEncoder with an unexpected output width")
        bounds = np.cumsum([0, *sizes])
        hot: dict[tuple[int, int], Cell] = {}
        features = np.searchsorted(bounds, encoded.col, side="right") - 1
        for r, c, j, v in zip(
            encoded.row.tolist(), encoded.col.tolist(), features.tolist(), encoded.data.tolist(), strict=True
        ):
            if v == 0.0:
                continue
            if v != 1.0 or (r, j) in hot:
                raise _Unsupported("OneHotEncoder producing a row that is not one-hot")
            hot[(r, j)] = (start + c, 1.0)
        cell = lambda r, j: hot.get((r, j), (-1, 0.0))  # noqa: E731
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dense = np.asarray(encoder.transform(probe), dtype=np.float64)
        if dense.shape[1] != len(categories):
            raise _Unsupported("OrdinalEncoder with an unexpected output width")
        cell = lambda r, j: (start + j, float(dense[r, j]))  # noqa: E731
    result = []
    for j, cats in enumerate(categories):
        n = len(cats)
        table = {category: cell(r, j) for r, category in enumerate(cats)}
        result.append((table, cell(n + 1, j), cell(n, j)))
    return result


def _onehot_sizes(encoder: OneHotEncoder) -> list[int]:
    """Output columns per feature, from public fitted attributes (as ``_compute_n_features_outs``)."""
    try:
        infrequent = encoder.infrequent_categories_
    except AttributeError:  # infrequent grouping not enabled
        infrequent = [None] * len(encoder.categories_)
    drop_idx = encoder.drop_idx_
    sizes = []
    for j, cats in enumerate(encoder.categories_):
        size = len(cats)
        if infrequent[j] is not None:
            size -= len(infrequent[j]) - 1
        if drop_idx is not None and drop_idx[j] is not None:
            size -= 1
        sizes.append(size)
    if sum(sizes) != len(encoder.get_feature_names_out()):
        raise _Unsupported("OneHotEncoder (unexpected output width)")
    return sizes
