"""The fitted feature transform as plain tables: a DataFrame-free, scikit-learn-free record -> row path.

Why hand-written code here: ``ColumnTransformer.transform`` on one record costs milliseconds (input
validation, per-step checks), which dominates a real-time inference request, and importing scikit-learn
and scipy costs a container about two seconds at start. The pipelines built by
:func:`serving_common.features.features.build_transformer` are simple enough that their fitted parameters
can be applied directly:

- numeric: ``SimpleImputer`` fills NaN with ``statistics_`` (dropping features whose statistic is NaN,
  as scikit-learn does), then ``StandardScaler`` does ``x -= mean_; x /= scale_`` -- the same two float64
  operations in the same order, so results are bit-for-bit those of scikit-learn;
- categorical: ``SimpleImputer`` fills missing values, then a lookup table per feature maps each
  category to the cell it sets. The tables are not re-derived from scikit-learn's private encoder state:
  they are obtained by running the fitted encoder itself once on every known category, on an unknown
  value and on the missing value, so infrequent grouping, ``drop`` and unknown handling are exactly
  scikit-learn's.

Deriving those tables (``compiler.compile_transformer``) needs scikit-learn and runs at training time;
the tables are then saved with the model (:func:`save_tables`, an ``.npz`` of plain arrays) and serving
rebuilds the transform from them with numpy alone (:func:`load_tables`). This module therefore imports
numpy and nothing heavier. Value interpretation (:func:`to_number`, :func:`to_category`) lives here too,
so the scikit-learn reference path and the fast path read input values identically.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import zipfile
from collections.abc import Mapping, Sequence
from decimal import Decimal
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .flatten import DuplicateField, NestedObject, flatten, has_objects

if TYPE_CHECKING:
    from .spec import FeatureSpec

logger = logging.getLogger("preprocess")

__all__ = [
    "TABLES_FORMAT",
    "Cell",
    "CompiledTransform",
    "FeatureError",
    "check_row",
    "get_record",
    "load_tables",
    "save_tables",
    "to_category",
    "to_number",
    "unused_category",
]

_NAN = float("nan")
_MAX_PROBES = 256
_TOO_LARGE = "the number is not finite (too large for a float)"
TABLES_FORMAT = 1


class FeatureError(ValueError):
    """An input value cannot be interpreted as the feature it feeds."""


# --------------------------------------------------------------------------------------------------
# value interpretation, shared by the scikit-learn path (features.py) and the fast path


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
    if isinstance(value, (list, tuple, dict, set, frozenset, Mapping, NestedObject)):
        raise _fail(unit, index, field, f"expected a single value, got {_type_name(value)}")
    return str(value) or None


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _type_name(value: Any) -> str:
    names = {list: "a list", tuple: "a list", dict: "an object", bytes: "bytes", NestedObject: "an object"}
    return names.get(type(value), "an object" if isinstance(value, Mapping) else type(value).__name__)


def get_record(record: Any, index: int) -> Mapping[str, Any]:
    """``record`` as a flat mapping with dotted field names (:mod:`.flatten`).

    Flattened only when one of its values is an object (the cheap, common case returns ``record``
    itself). The path of an object maps to :data:`NESTED_OBJECT`, which no feature accepts.
    """
    if type(record) is not dict and not isinstance(record, Mapping):
        raise FeatureError(f"record {index}: expected a JSON object, got {_type_name(record)}")
    if has_objects(record):
        try:
            return flatten(record, mark_objects=True)
        except DuplicateField as exc:
            raise FeatureError(f"record {index}: {exc}") from None
    return record


#: Value types numpy reads exactly as to_number does (None: NaN, booleans 1/0, ints rounded alike; an int too
#: large for a float raises OverflowError and an infinite float stays infinite: to_number refuses both).
_PLAIN_NUMBERS = frozenset({float, int, bool, type(None)})


def plain_numbers(rows: Sequence[Sequence[Any]], width: int) -> np.ndarray | None:
    """The first ``width`` values of every row as a float64 array, in one numpy call, when every one is a
    float, int, bool or None that :func:`to_number` reads without error (the array is then exactly its
    values); else None: the rows are read value by value, and the first bad value named."""
    numbers_ = [row[:width] for row in rows]
    if not set(map(type, chain.from_iterable(numbers_))) <= _PLAIN_NUMBERS:
        return None
    try:
        array = np.array(numbers_, dtype=np.float64)
    except OverflowError:
        return None
    if np.isinf(array).any():
        return None
    return array


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
Cell = tuple[int, float]


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
        categorical_plan: Sequence[tuple[int, dict[str, Cell], Cell, Cell]],
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

    def _read_rows(self, rows: Sequence[Any], unit: str = "row") -> tuple[Any, list[list[str | None]]]:
        """Rows in ``input_columns`` order -> numeric values (lists, or an array) and categories. ``unit``
        "record": rows of checked records' input values (``RecordChecker.values``), of the right width."""
        numeric, categorical, columns = self.numeric, self.categorical, self.input_columns
        width, n_num = len(columns), len(numeric)
        if unit == "record" and len(rows) > 1 and n_num:
            plain = plain_numbers(rows, n_num)
            if plain is not None:  # every number readable: only categories can be refused
                cats = []
                for index, row in enumerate(rows):
                    cats.append([value if value.__class__ is str and value  # to_category's common case, inlined
                                 else to_category(value, categorical[i], index, unit)
                                 for i, value in enumerate(row[n_num:])])
                return plain, cats
        nums, cats = [], []
        for index, row in enumerate(rows):
            if unit == "row":
                row = check_row(row, index, width, columns)
            nums.append([to_number(row[i], numeric[i], index, unit) for i in range(n_num)])
            cats.append([to_category(row[n_num + i], name, index, unit) for i, name in enumerate(categorical)])
        return nums, cats

    # -- encoding -----------------------------------------------------------------------------------

    def _encode(self, nums: list[list[float]] | np.ndarray, cats: list[list[str | None]]) -> np.ndarray:
        n = len(cats)
        if n == 1:
            return self._encode_one(nums[0], cats[0])
        out = np.zeros((n, self.n_features_out), dtype=np.float64)
        if n == 0:
            return out
        if len(self._num_src):
            self._encode_numeric(np.asarray(nums, dtype=np.float64).reshape(n, -1), out)
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

    def _encode_numeric(self, numbers: np.ndarray, out: np.ndarray) -> None:
        """Numeric values (n, len(numeric)), NaN for missing -> their output columns of ``out``."""
        x = numbers[:, self._num_src]
        missing = np.isnan(x)
        if missing.any():
            x = np.where(missing, self._num_fill, x)
        # Same operations, same order as StandardScaler.transform: X -= mean_; X /= scale_.
        x -= self._num_mean
        x /= self._num_scale
        out[:, self._num_out] = x

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

    def values(self, values: Sequence[Sequence[Any]]) -> np.ndarray:
        """Transform records given as their input values (``RecordChecker.values``: ``input_columns`` order,
        errors name the record) -> (n, n_features_out) float64."""
        return self._encode(*self._read_rows(values, "record"))

    def columns(self, numbers: np.ndarray, categories: Sequence[tuple[np.ndarray, Sequence[str | None]]]) -> np.ndarray:
        """Transform values given column by column -> (n, n_features_out) float64, equal to :meth:`records`
        on the same values (a columnar reader, e.g. of Arrow data, calls this instead of building records).

        ``numbers``: (n, len(numeric)) float64, values as :func:`to_number` reads them (NaN: missing);
        ``categories``: per categorical field, (codes of the n records, the distinct values the codes
        index, as :func:`to_category` reads them: None for missing).
        """
        n = len(numbers)
        out = np.zeros((n, self.n_features_out), dtype=np.float64)
        if n == 0:
            return out
        if len(self._num_src):
            self._encode_numeric(np.asarray(numbers, dtype=np.float64).reshape(n, -1), out)
        rows = np.arange(n)
        for src, table, missing_cell, unknown_cell in self._categorical_plan:
            codes, values = categories[src]
            cells = [missing_cell if value is None else table.get(value, unknown_cell) for value in values]
            cols = np.array([cell[0] for cell in cells], dtype=np.intp)[codes]
            cell_values = np.array([cell[1] for cell in cells], dtype=np.float64)[codes]
            chosen = cols >= 0
            out[rows[chosen], cols[chosen]] = cell_values[chosen]
        return out

    def probe_records(self) -> list[dict[str, Any]]:
        """Records exercising known categories (up to 256 records), an unknown one, missing values and
        some numbers: a cheap comparison of this path with scikit-learn's on a loaded model."""
        tables = {self.categorical[src]: list(table) for src, table, _, _ in self._categorical_plan}
        unknown = unused_category({key for keys in tables.values() for key in keys})
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


def unused_category(categories: set[Any]) -> str:
    """A string that is none of ``categories`` (stands for "an unknown category" in probes)."""
    candidate = "\x00unknown-category"
    while candidate in categories:
        candidate += "\x00"
    return candidate



# --------------------------------------------------------------------------------------------------
# tables: the compiled transform as plain arrays (saved with the model, loaded without scikit-learn)

_INT_ARRAYS = ("num_src", "num_out", "cat_src", "cat_missing_col", "cat_unknown_col", "cat_table_offsets",
               "cat_key_offsets", "cat_cols")
_FLOAT_ARRAYS = ("num_fill", "num_mean", "num_scale", "cat_missing_value", "cat_unknown_value", "cat_values")
_SCALARS = ("format", "n_numeric", "n_categorical", "n_features_out")


def _tables(compiled: CompiledTransform) -> dict[str, np.ndarray]:
    """The compiled transform as int64 / float64 / uint8 arrays (float64 keeps every value exactly)."""
    num = compiled._numeric_plan
    cat = compiled._categorical_plan
    keys: list[bytes] = []
    cols: list[int] = []
    values: list[float] = []
    table_offsets = [0]
    for _, table, _, _ in cat:
        for key, (col, value) in table.items():
            # surrogatepass: JSON may carry lone surrogates ("\\ud800"), which are valid Python str
            keys.append(key.encode("utf-8", "surrogatepass"))
            cols.append(col)
            values.append(value)
        table_offsets.append(len(keys))
    ints = lambda items: np.array(items, dtype=np.int64)  # noqa: E731
    floats = lambda items: np.array(items, dtype=np.float64)  # noqa: E731
    return {
        "format": np.array(TABLES_FORMAT, dtype=np.int64),
        "n_numeric": np.array(len(compiled.numeric), dtype=np.int64),
        "n_categorical": np.array(len(compiled.categorical), dtype=np.int64),
        "n_features_out": np.array(compiled.n_features_out, dtype=np.int64),
        "num_src": ints([p[0] for p in num]),
        "num_out": ints([p[1] for p in num]),
        "num_fill": floats([p[2] for p in num]),
        "num_mean": floats([p[3] for p in num]),
        "num_scale": floats([p[4] for p in num]),
        "cat_src": ints([p[0] for p in cat]),
        "cat_missing_col": ints([p[2][0] for p in cat]),
        "cat_missing_value": floats([p[2][1] for p in cat]),
        "cat_unknown_col": ints([p[3][0] for p in cat]),
        "cat_unknown_value": floats([p[3][1] for p in cat]),
        "cat_table_offsets": ints(table_offsets),
        "cat_key_offsets": ints(np.cumsum([0, *map(len, keys)]).tolist()),
        "cat_key_bytes": np.frombuffer(b"".join(keys), dtype=np.uint8).copy(),
        "cat_cols": ints(cols),
        "cat_values": floats(values),
    }


def _from_tables(
    arrays: Mapping[str, np.ndarray], numeric: Sequence[str], categorical: Sequence[str]
) -> CompiledTransform:
    """Rebuild a :class:`CompiledTransform`; ValueError (naming what) when the tables are inconsistent."""

    def need(condition: bool, what: str) -> None:
        if not condition:
            raise ValueError(f"inconsistent tables: {what}")

    missing = [k for k in (*_SCALARS, *_INT_ARRAYS, *_FLOAT_ARRAYS, "cat_key_bytes") if k not in arrays]
    need(not missing, f"missing arrays {missing}")
    for key in _SCALARS:
        need(arrays[key].shape == () and arrays[key].dtype == np.int64, f"{key} is not an int64 scalar")
    for key in _INT_ARRAYS:
        need(arrays[key].ndim == 1 and arrays[key].dtype == np.int64, f"{key} is not a 1-D int64 array")
    for key in _FLOAT_ARRAYS:
        need(arrays[key].ndim == 1 and arrays[key].dtype == np.float64, f"{key} is not a 1-D float64 array")
    need(arrays["cat_key_bytes"].ndim == 1 and arrays["cat_key_bytes"].dtype == np.uint8, "cat_key_bytes")
    if int(arrays["format"]) != TABLES_FORMAT:
        raise ValueError(f"tables format {int(arrays['format'])} (this code reads {TABLES_FORMAT})")
    need(int(arrays["n_numeric"]) == len(numeric), "number of numeric fields differs from the spec")
    need(int(arrays["n_categorical"]) == len(categorical), "number of categorical fields differs from the spec")
    width = int(arrays["n_features_out"])
    need(width >= 0, "negative output width")

    def in_range(values: np.ndarray, low: int, high: int) -> bool:
        return bool(values.size == 0 or (values.min() >= low and values.max() < high))

    num_src = arrays["num_src"]
    n_num = len(num_src)
    need(all(len(arrays[k]) == n_num for k in ("num_out", "num_fill", "num_mean", "num_scale")), "numeric sizes")
    need(in_range(num_src, 0, len(numeric)) and in_range(arrays["num_out"], 0, width), "numeric indices")
    cat_src = arrays["cat_src"]
    n_cat = len(cat_src)
    need(all(len(arrays[k]) == n_cat for k in ("cat_missing_col", "cat_missing_value", "cat_unknown_col",
                                               "cat_unknown_value")), "categorical sizes")
    need(in_range(cat_src, 0, len(categorical)), "categorical indices")
    for key in ("cat_missing_col", "cat_unknown_col", "cat_cols"):
        need(in_range(arrays[key], -1, width), f"{key} out of range")
    table_offsets = arrays["cat_table_offsets"]
    key_offsets = arrays["cat_key_offsets"]
    n_keys = len(arrays["cat_cols"])
    need(len(table_offsets) == n_cat + 1 and table_offsets[0] == 0 and table_offsets[-1] == n_keys
         and bool(np.all(np.diff(table_offsets) >= 0)), "cat_table_offsets")
    need(len(arrays["cat_values"]) == n_keys and len(key_offsets) == n_keys + 1 and key_offsets[0] == 0
         and key_offsets[-1] == len(arrays["cat_key_bytes"]) and bool(np.all(np.diff(key_offsets) >= 0)),
         "cat_key_offsets")

    blob = arrays["cat_key_bytes"].tobytes()
    bounds = key_offsets.tolist()
    try:
        keys = [blob[bounds[i] : bounds[i + 1]].decode("utf-8", "surrogatepass") for i in range(n_keys)]
    except UnicodeDecodeError:
        raise ValueError("inconsistent tables: category names are not UTF-8") from None
    cells = list(zip(arrays["cat_cols"].tolist(), arrays["cat_values"].tolist(), strict=True))
    offsets = table_offsets.tolist()
    categorical_plan = []
    for k, (src, missing_col, missing_value, unknown_col, unknown_value) in enumerate(zip(
            cat_src.tolist(), arrays["cat_missing_col"].tolist(), arrays["cat_missing_value"].tolist(),
            arrays["cat_unknown_col"].tolist(), arrays["cat_unknown_value"].tolist(), strict=True)):
        start, stop = offsets[k], offsets[k + 1]
        table = dict(zip(keys[start:stop], cells[start:stop], strict=True))
        need(len(table) == stop - start, "a category appears twice")
        categorical_plan.append((src, table, (missing_col, missing_value), (unknown_col, unknown_value)))
    numeric_plan = list(zip(num_src.tolist(), arrays["num_out"].tolist(), arrays["num_fill"].tolist(),
                            arrays["num_mean"].tolist(), arrays["num_scale"].tolist(), strict=True))
    return CompiledTransform(numeric, categorical, width, numeric_plan, categorical_plan)


def _same_arrays(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes() for k in a
    )


def save_tables(compiled: CompiledTransform, path: Path | str, fingerprint: str) -> None:
    """Write ``compiled`` to ``path`` (an uncompressed ``.npz`` of plain arrays), tied to ``fingerprint``.

    Written to a temporary file and renamed. The tables are read back and compared bit for bit first,
    so a saved fast path is always exactly the verified one.
    """
    path = Path(path)
    arrays = _tables(compiled)
    if not _same_arrays(_tables(_from_tables(arrays, compiled.numeric, compiled.categorical)), arrays):
        raise RuntimeError("the fast path's tables do not round-trip")  # a bug, never expected
    arrays["fingerprint"] = np.array(fingerprint)  # a fixed-width str array: no pickle needed to read it
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as f:
        np.savez(f, **arrays)
    os.replace(temporary, path)


def load_tables(path: Path | str, spec: FeatureSpec, fingerprint: str) -> CompiledTransform:
    """The fast path saved by :func:`save_tables`, with numpy alone (``allow_pickle=False``).

    ValueError when the file cannot be read, is inconsistent, or was saved for another fingerprint
    than ``fingerprint`` (the model's, from ``features.json``).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{path} cannot be read: {type(exc).__name__}: {exc}") from None
    saved = arrays.pop("fingerprint", None)
    if saved is None or saved.shape != () or saved.dtype.kind != "U":
        raise ValueError(f"{path} has no fingerprint")
    if str(saved) != fingerprint:
        raise ValueError(
            f"{path} does not match features.json (fingerprint {str(saved)[:12]}... instead of "
            f"{fingerprint[:12]}...): the files come from different fits"
        )
    try:
        return _from_tables(arrays, spec.numeric, spec.categorical)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
