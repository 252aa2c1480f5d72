"""A fitted ColumnTransformer compiled into a DataFrame-free record -> row path.

Why hand-written code here: ``ColumnTransformer.transform`` on a one-row DataFrame costs milliseconds
(pandas indexing, input validation, per-step checks), which dominates a real-time inference request.
The pipelines built by :func:`preprocess_container.features.build_transformer` are simple enough that
their fitted parameters can be applied directly:

- numeric: ``SimpleImputer`` fills NaN with ``statistics_`` (dropping features whose statistic is NaN,
  as scikit-learn does), then ``StandardScaler`` does ``x -= mean_; x /= scale_`` -- the same two float64
  operations in the same order, so results are bit-for-bit those of scikit-learn;
- categorical: ``SimpleImputer`` fills missing values, then a lookup table per feature maps each
  category to the cell it sets. The tables are not re-derived from scikit-learn's private encoder state:
  they are obtained by running the fitted encoder itself once on every known category, on an unknown
  value and on the missing value, so infrequent grouping, ``drop`` and unknown handling are exactly
  scikit-learn's.

Anything else makes :func:`compile_transformer` return None (with a warning) and callers use
scikit-learn. Value interpretation (:func:`to_number`, :func:`to_category`) lives here too, so the
DataFrame path and the fast path read input values identically.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
import warnings
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

if TYPE_CHECKING:
    from .spec import FeatureSpec

logger = logging.getLogger("preprocess")

__all__ = [
    "NESTED_OBJECT",
    "CompiledTransform",
    "FeatureError",
    "check_row",
    "compile_transformer",
    "get_record",
    "to_category",
    "to_number",
]

_NAN = float("nan")
_MAX_PROBES = 256
_TOO_LARGE = "the number is not finite (too large for a float)"


class FeatureError(ValueError):
    """An input value cannot be interpreted as the feature it feeds."""


# --------------------------------------------------------------------------------------------------
# value interpretation, shared by the DataFrame path (features.py) and the fast path


def _fail(unit: str, index: int, field: str, reason: str) -> FeatureError:
    return FeatureError(f"{unit} {index}: field {field!r}: {reason}")


def to_number(value: Any, field: str, index: int, unit: str = "record") -> float:
    """A numeric feature value as float; NaN means missing.

    None, NaN, "" (and blank or "nan" strings) are missing. Numbers, booleans (1/0) and strings holding
    a number (CSV) are read; +/-inf and anything else raise :class:`FeatureError` naming the field and
    the 0-based ``index`` of the record (or row).
    """
    kind = type(value)
    if kind is float:
        if value - value == 0.0:  # finite (inf - inf and nan - nan are nan)
            return value
        if value != value:
            return _NAN
        raise _fail(unit, index, field, f"{value!r} is not finite")
    if kind is str:
        text = value.strip()
        if not text:
            return _NAN
        try:
            number = float(text)
        except ValueError:
            raise _fail(unit, index, field, f"{_short(value)} is not a number") from None
        if number - number == 0.0:
            return number
        if number != number:
            return _NAN
        raise _fail(unit, index, field, f"{_short(value)} is not finite")
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            raise _fail(unit, index, field, _TOO_LARGE) from None
    if value is None:
        return _NAN
    if kind is bool or isinstance(value, np.bool_):
        return 1.0 if value else 0.0
    if isinstance(value, (numbers.Real, Decimal)):
        try:
            number = float(value)
        except OverflowError:
            raise _fail(unit, index, field, _TOO_LARGE) from None
        except ValueError:  # e.g. Decimal("sNaN")
            raise _fail(unit, index, field, f"{value!r} cannot be read as a number") from None
        if math.isfinite(number):
            return number
        if number != number:
            return _NAN
        raise _fail(unit, index, field, f"{value!r} is not finite")
    if isinstance(value, str):  # str subclasses
        return to_number(str(value), field, index, unit)
    raise _fail(unit, index, field, f"expected a number, got {_type_name(value)}")


def to_category(value: Any, field: str, index: int, unit: str = "record") -> str | None:
    """A categorical feature value as str (``1`` and ``"1"`` are one category, booleans are
    "True"/"False"); None, NaN and "" are missing (None). Lists and objects raise :class:`FeatureError`."""
    kind = type(value)
    if kind is str:
        return value or None
    if value is None:
        return None
    if kind is bool or kind is int:
        return str(value)
    if isinstance(value, (float, np.floating)):
        return None if value != value else str(value)
    if isinstance(value, (list, tuple, dict, set, frozenset, Mapping, _NestedObject)):
        raise _fail(unit, index, field, f"expected a single value, got {_type_name(value)}")
    return str(value) or None


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _type_name(value: Any) -> str:
    names = {list: "a list", tuple: "a list", dict: "an object", bytes: "bytes", _NestedObject: "an object"}
    return names.get(type(value), "an object" if isinstance(value, Mapping) else type(value).__name__)


class _NestedObject:
    """Stands, in a flattened record, for an object found at a path (so a feature field holding an
    object is an error rather than silently missing)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<object>"


NESTED_OBJECT = _NestedObject()


# Value types that are certainly not mappings: skips the (slow) abstract Mapping isinstance check.
_PLAIN = frozenset({str, int, float, bool, type(None), list})


def _is_mapping(value: Any) -> bool:
    kind = type(value)
    return kind is dict or (kind not in _PLAIN and isinstance(value, Mapping))


def _flatten_into(out: dict[str, Any], mapping: Mapping, prefix: str, index: int) -> None:
    for key, value in mapping.items():
        name = prefix + (key if type(key) is str else str(key))
        if name in out:
            raise FeatureError(f"record {index}: field {name!r} occurs twice (as a dotted name and nested)")
        if _is_mapping(value):
            out[name] = NESTED_OBJECT
            _flatten_into(out, value, name + ".", index)
        else:
            out[name] = value


def get_record(record: Any, index: int) -> Mapping[str, Any]:
    """``record`` as a flat mapping with dotted field names.

    Flattened only when one of its values is an object (the cheap, common case returns ``record``
    itself). The path of an object maps to :data:`NESTED_OBJECT`, which no feature accepts.
    """
    if type(record) is not dict and not isinstance(record, Mapping):
        raise FeatureError(f"record {index}: expected a JSON object, got {_type_name(record)}")
    for value in record.values():
        if _is_mapping(value):
            out: dict[str, Any] = {}
            _flatten_into(out, record, "", index)
            return out
    return record


def check_row(row: Any, index: int, width: int, columns: Sequence[str]) -> Sequence[Any]:
    """``row`` when it is a sequence of ``width`` values (spec.input_columns order), else FeatureError."""
    if isinstance(row, (str, bytes, Mapping)) or not hasattr(row, "__len__"):
        raise FeatureError(f"row {index}: expected a list of {width} values, got {_type_name(row)}")
    if len(row) != width:
        raise FeatureError(f"row {index}: expected {width} values ({', '.join(columns)}), got {len(row)}")
    return row


# --------------------------------------------------------------------------------------------------
# the compiled transform

# A categorical outcome: (output column, value) to set, or column -1 for "set nothing" (all zeros).
_Cell = tuple[int, float]


class CompiledTransform:
    """Records or rows -> 2-D float64 array, equal to the ColumnTransformer's output.

    ``records(records)`` takes mappings (nested or flattened); ``rows(rows)`` takes sequences in
    ``spec.input_columns`` order (e.g. headerless CSV). Calling the object is ``records``.
    """

    def __init__(
        self,
        numeric: Sequence[str],
        categorical: Sequence[str],
        n_features_out: int,
        numeric_plan: Sequence[tuple[int, int, float, float, float]],
        categorical_plan: Sequence[tuple[int, dict[str, _Cell], _Cell, _Cell]],
    ) -> None:
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.input_columns = [*self.numeric, *self.categorical]
        self.n_features_out = n_features_out
        # numeric: (index in numeric values, output column, fill for NaN, mean, scale); mean 0.0 / scale
        # 1.0 stand for "no centering / no scaling" (x - 0.0 and x / 1.0 are exact).
        self._numeric_plan = [tuple(item) for item in numeric_plan]
        # categorical: (index in categorical values, category -> cell, missing cell, unknown cell)
        self._categorical_plan = [tuple(item) for item in categorical_plan]
        plan = self._numeric_plan
        self._num_src = np.array([p[0] for p in plan], dtype=np.intp)
        self._num_out = np.array([p[1] for p in plan], dtype=np.intp)
        self._num_fill = np.array([p[2] for p in plan], dtype=np.float64)
        self._num_mean = np.array([p[3] for p in plan], dtype=np.float64)
        self._num_scale = np.array([p[4] for p in plan], dtype=np.float64)

    def __call__(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.records(records)

    # -- input reading ------------------------------------------------------------------------------

    def _read_records(self, records: Sequence[Any]) -> tuple[list[list[float]], list[list[str | None]]]:
        numeric, categorical = self.numeric, self.categorical
        nums, cats = [], []
        for index, record in enumerate(records):
            get = get_record(record, index).get
            nums.append([to_number(get(name), name, index) for name in numeric])
            cats.append([to_category(get(name), name, index) for name in categorical])
        return nums, cats

    def _read_rows(self, rows: Sequence[Any]) -> tuple[list[list[float]], list[list[str | None]]]:
        numeric, categorical, columns = self.numeric, self.categorical, self.input_columns
        width, n_num = len(columns), len(numeric)
        nums, cats = [], []
        for index, row in enumerate(rows):
            row = check_row(row, index, width, columns)
            nums.append([to_number(row[i], numeric[i], index, "row") for i in range(n_num)])
            cats.append([to_category(row[n_num + i], name, index, "row") for i, name in enumerate(categorical)])
        return nums, cats

    # -- encoding -----------------------------------------------------------------------------------

    def _encode(self, nums: list[list[float]], cats: list[list[str | None]]) -> np.ndarray:
        n = len(nums)
        if n == 1:
            return self._encode_one(nums[0], cats[0])
        out = np.zeros((n, self.n_features_out), dtype=np.float64)
        if n == 0:
            return out
        if len(self._num_src):
            x = np.array(nums, dtype=np.float64).reshape(n, -1)[:, self._num_src]
            missing = np.isnan(x)
            if missing.any():
                x = np.where(missing, self._num_fill, x)
            # Same operations, same order as StandardScaler.transform: X -= mean_; X /= scale_.
            x -= self._num_mean
            x /= self._num_scale
            out[:, self._num_out] = x
        if self._categorical_plan:
            flat, values = [], []
            width = self.n_features_out
            for src, table, missing_cell, unknown_cell in self._categorical_plan:
                base = 0
                for row in cats:
                    value = row[src]
                    cell = missing_cell if value is None else table.get(value, unknown_cell)
                    if cell[0] >= 0:
                        flat.append(base + cell[0])
                        values.append(cell[1])
                    base += width
            if flat:
                out.put(flat, values)
        return out

    def _encode_one(self, nums: list[float], cats: list[str | None]) -> np.ndarray:
        row = [0.0] * self.n_features_out
        for src, col, fill, mean, scale in self._numeric_plan:
            x = nums[src]
            if x != x:
                x = fill
            row[col] = (x - mean) / scale  # float64 ops, identical to numpy's
        for src, table, missing_cell, unknown_cell in self._categorical_plan:
            value = cats[src]
            col, cell_value = missing_cell if value is None else table.get(value, unknown_cell)
            if col >= 0:
                row[col] = cell_value
        return np.array([row], dtype=np.float64)

    # -- public -------------------------------------------------------------------------------------

    def records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Transform records (mappings, nested or flattened) -> (n, n_features_out) float64."""
        if isinstance(records, Mapping):
            raise FeatureError("expected a list of records, got a single object")
        return self._encode(*self._read_records(records))

    def rows(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """Transform rows in ``input_columns`` order -> (n, n_features_out) float64."""
        if isinstance(rows, (str, bytes, Mapping)):
            raise FeatureError("expected a list of rows")
        return self._encode(*self._read_rows(rows))

    def probe_records(self) -> list[dict[str, Any]]:
        """Records exercising known categories (up to 256 records), an unknown one, missing values and
        some numbers: a cheap comparison of this path with scikit-learn's on a loaded model."""
        tables = {self.categorical[src]: list(table) for src, table, _, _ in self._categorical_plan}
        unknown = _unused({key for keys in tables.values() for key in keys})
        numbers_ = [0.0, 1.0, -2.5, 123456.789, 1e-300, None]
        n = min(max([len(numbers_), *(len(keys) + 2 for keys in tables.values())]), _MAX_PROBES - 1)
        probes = []
        for i in range(n):
            record: dict[str, Any] = {name: numbers_[i % len(numbers_)] for name in self.numeric}
            for name in self.categorical:
                keys = [*tables.get(name, []), unknown, None]
                record[name] = keys[i % len(keys)]
            probes.append(record)
        probes.append({})
        return probes


def _unused(categories: set[Any]) -> str:
    candidate = "\x00unknown-category"
    while candidate in categories:
        candidate += "\x00"
    return candidate


# --------------------------------------------------------------------------------------------------
# compilation


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


def _compile(ct: Any, spec: FeatureSpec) -> CompiledTransform:
    if type(ct) is not ColumnTransformer:
        raise _Unsupported(type(ct).__name__)
    if not hasattr(ct, "transformers_"):
        raise _Unsupported("an unfitted ColumnTransformer")
    if getattr(ct, "sparse_output_", False):
        raise _Unsupported("ColumnTransformer with sparse output")
    n_out = len(ct.get_feature_names_out())
    numeric_index = {name: i for i, name in enumerate(spec.numeric)}
    categorical_index = {name: i for i, name in enumerate(spec.categorical)}
    numeric_plan: list[tuple[int, int, float, float, float]] = []
    categorical_plan: list[tuple[int, dict[str, _Cell], _Cell, _Cell]] = []
    covered = np.zeros(n_out, dtype=int)

    for name, transformer, columns in ct.transformers_:
        if isinstance(transformer, str) and transformer == "drop":
            continue
        try:
            if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
                raise _Unsupported(f"column selection by {type(columns).__name__}")
            if not columns:
                continue
            output = ct.output_indices_[name]
            steps = _steps(transformer)
            if all(c in numeric_index for c in columns):
                plan = _compile_numeric(steps, columns, output.start)
                numeric_plan.extend((numeric_index[columns[i]], *rest) for i, *rest in plan)
            elif all(c in categorical_index for c in columns):
                plan = _compile_categorical(steps, columns, output.start)
                categorical_plan.extend((categorical_index[columns[i]], *rest) for i, *rest in plan)
            else:
                raise _Unsupported("a transformer mixing numeric, categorical or unknown columns")
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


def _compile_numeric(
    steps: list[Any], columns: Sequence[str], start: int
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
        # SimpleImputer casts its statistics to the dtype seen in fit (constant fills are objects).
        fill_dtype = np.dtype(getattr(imputer, "_fill_dtype", imputer.statistics_.dtype))
        if fill_dtype != np.float64:
            raise _Unsupported(f"SimpleImputer fitted on {fill_dtype} data")
        kept = _kept(imputer, len(columns))
        try:
            fills = [float(s) for s in imputer.statistics_.astype(np.float64)]
        except (TypeError, ValueError):
            raise _Unsupported("SimpleImputer with non-numeric statistics") from None
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
    steps: list[Any], columns: Sequence[str], start: int
) -> list[tuple[int, dict[str, _Cell], _Cell, _Cell]]:
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


def _probe_encoder(encoder: Any, missing_inputs: list[Any], start: int) -> list[tuple[dict, _Cell, _Cell]]:
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
        column = [*cats, _unused(set(cats)), missing_inputs[j]]
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
        hot: dict[tuple[int, int], _Cell] = {}
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
