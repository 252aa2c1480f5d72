"""The executors' columnar path: a batch of records as Arrow columns -> label + features, with no Python
object per record, or ``None`` -- "take the per-record path for this batch".

Why: per record, the image's batch transform spends its time in Python (flattening each record, reading
each value, checking it). Here the values arrive as Arrow columns -- JSON Lines parsed by Arrow's C++ JSON
reader with a schema derived from the model (numeric input fields ``float64``, categorical ``string``, the
label ``float64``, nested objects as structs), or a DataFrame's / Parquet's own Arrow batch -- and go to the
same compiled tables through :meth:`CompiledTransform.columns`. Categorical values (and the missing-value
rule) are read by the image's own :func:`to_category` and ``is_missing`` on each *distinct* value.

Exactness comes first. This path only accepts a batch when it can prove that the per-record path
(``PreprocessHandler.predict``) would give the very same result; any doubt returns ``None`` and the batch
goes through the per-record path, which then gives the image's result, error messages included:

- Arrow's JSON reader refuses (``ArrowInvalid``): invalid JSON, a line that is not an object, a duplicate
  key, a value of another JSON type than the schema's (a string in a numeric field, a number or a boolean
  in a categorical one, a value where the model reads an object of fields, an object in a feature field),
  or one field of two kinds across records;
- a ``\r`` inside a line (Arrow's reader ends a line there, orjson reads it as one invalid line);
- a field name with a dot or an empty name anywhere (``{"customer.age": 3}``: flattening gives names that
  the struct schema would not see), or a model whose field names cannot form a struct schema;
- a value the JSON texts can give differently to orjson and to Arrow: NaN / Infinity literals (Arrow
  accepts them, orjson refuses them), ``-0`` (orjson: the integer 0, Arrow: -0.0);
- a DataFrame column of a type this path does not read (a string in a numeric field, decimals, dates...);
- a record check that would refuse a record: too many missing input fields, a value where an object is
  expected, a field the model does not know with ``unknown_fields=error`` (a field name in the batch that is
  not known, even if only null). With ``warn`` (the default) the per-record path scores such records and
  logs the names: here too, through the record checker's own log;
- a missing or non-finite label, or a non-finite feature.

Records that are fine but unusual therefore cost per-record speed, never a different result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from .runtime import FittedFeatures, missing_value, to_category

__all__ = ["Columnar"]

_JSON_OPTIONS = pa_json.ReadOptions(use_threads=False, block_size=1 << 30)  # one block: one inferred schema
_EXACT_INT = 2.0**53


def _tree(names: Sequence[str]) -> dict[str, Any] | None:
    """Dotted names -> nested dict of their parts (leaf: the full name); None when a name is both a
    field and an object of fields, or has an empty part."""
    root: dict[str, Any] = {}
    for name in names:
        parts = name.split(".")
        if any(not part for part in parts):
            return None
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                return None
            node = child
        if parts[-1] in node:
            return None
        node[parts[-1]] = name
    return root


def _leaves(array: pa.Array, field: pa.Field, prefix: str, out: dict[str, pa.Array], objects: set[str]) -> bool:
    """Flattened leaf columns of ``array`` (struct children with their parents' nulls applied) into
    ``out``, the paths of its structs into ``objects``; False when a name has a dot, is empty or arises
    twice (flattening would make names the schema cannot see)."""
    name = field.name
    if not name or "." in name:
        return False
    path = prefix + name
    if path in out or path in objects:
        return False
    if pa.types.is_struct(field.type):
        objects.add(path)
        children = array.flatten()  # each child null where the struct is null
        return all(_leaves(child, field.type.field(i), path + ".", out, objects)
                   for i, child in enumerate(children))
    out[path] = array
    return True


def _first_valid(arrays: Sequence[pa.Array]) -> int:
    """The first record holding a value in one of ``arrays`` (0 when all are null: a present null and an
    absent field read alike in Arrow; the index only goes to the log)."""
    firsts = [int(np.argmax(valid)) for array in arrays
              if (valid := array.is_valid().to_numpy(zero_copy_only=False)).any()]
    return min(firsts, default=0)


class Columnar:
    """The columnar path of one model (built once per executor)."""

    def __init__(self, model: FittedFeatures, label: bool) -> None:
        spec = model.spec
        self.model = model
        self.compiled = model.compiled
        self.checker = model.record_checker
        self.label = spec.label if label else None
        self.numeric = list(spec.numeric)
        self.categorical = list(spec.categorical)
        typed = {**dict.fromkeys(self.numeric, pa.float64()), **dict.fromkeys(self.categorical, pa.string())}
        if self.label is not None:
            typed[self.label] = pa.float64()
        tree = _tree(list(typed))
        # Feature code (``extract``) rewrites records arbitrarily: only the per-record path runs it.
        self.usable = self.compiled is not None and not model.extracts and tree is not None
        self.json_schema = pa.schema(self._fields(tree, typed)) if self.usable else None
        self.parents = set(self.checker.objects)
        self.fields = list(typed)

    def _fields(self, tree: dict[str, Any], typed: dict[str, pa.DataType]) -> list[pa.Field]:
        return [pa.field(part, pa.struct(self._fields(node, typed)) if isinstance(node, dict) else typed[node])
                for part, node in tree.items()]

    # -- reading ------------------------------------------------------------------------------------

    def parse_json(self, lines: pa.Array) -> pa.Table | None:
        """JSON Lines (one record each; blank lines skipped) -> a table of their records; None when Arrow
        refuses them."""
        if not self.usable or len(lines) == 0 or lines.null_count:
            return None
        blank = pc.equal(pc.utf8_trim_whitespace(lines), "")
        if pc.any(blank).as_py():
            # Arrow's blank lines must be Python's (what the per-record path skips: ``not line.strip()``);
            # a line blank only to Python is not JSON either, and Arrow refuses it below.
            if any(line.strip() for line in lines.filter(blank).to_pylist()):
                return None
            lines = lines.filter(pc.invert(blank))
            if len(lines) == 0:
                return None
        # Arrow's reader also ends a line at "\r": a "\r" inside a line (not JSON whitespace there, e.g.
        # '{"a": 1}\r{"a": 2}', invalid JSON to orjson) would make two records of one line
        carriage = pc.count_substring(lines, "\r")
        if pc.max(carriage).as_py() and (pc.max(carriage).as_py() > 1 or not pc.all(
                pc.or_(pc.equal(carriage, 0), pc.ends_with(lines, "\r"))).as_py()):
            return None
        # each line and its "\n", one after another: the string array's data buffer is the JSON Lines text
        joined = pc.binary_join_element_wise(lines.cast(pa.large_string()), pa.scalar("\n", pa.large_string()),
                                            pa.scalar("", pa.large_string()))
        _, offsets, values = joined.buffers()
        bounds = np.frombuffer(offsets, dtype=np.int64)[joined.offset:joined.offset + len(joined) + 1]
        data = values.slice(int(bounds[0]), int(bounds[-1] - bounds[0]))
        try:
            table = pa_json.read_json(pa.BufferReader(data), read_options=_JSON_OPTIONS,
                                      parse_options=pa_json.ParseOptions(explicit_schema=self.json_schema,
                                                                         unexpected_field_behavior="infer"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        return table if table.num_rows == len(lines) else None

    def transform(self, table: pa.Table | pa.RecordBatch, from_json: bool) -> np.ndarray | None:
        """Label (when asked) + features of every record of ``table``, as the per-record path gives them;
        None when this batch must take the per-record path (see the module's docstring)."""
        if not self.usable:
            return None
        n = table.num_rows
        columns: dict[str, pa.Array] = {}
        objects: set[str] = set()
        for i, field in enumerate(table.schema):
            array = table.column(i)
            array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
            if not _leaves(array, field, "", columns, objects):
                return None
        if any(parent in columns for parent in self.parents):
            return None  # a value where the model reads an object of fields
        if any(name in objects for name in self.fields):
            return None  # an object where the model reads a value
        policy = self.checker.rules.unknown_fields
        unknown = [] if policy == "ignore" else [name for name in columns if name not in self.checker.known]
        if unknown:
            if policy != "warn":
                return None  # refused: the per-record path names the record
            # warn: the per-record path scores the records and logs the names (the checker's own log)
            self.checker.unknown_fields_found(_first_valid([columns[name] for name in unknown]), unknown)
        missing = np.zeros(n, dtype=np.int64)
        numbers = np.full((n, len(self.numeric)), np.nan)
        for j, name in enumerate(self.numeric):
            values = self._numbers(columns.get(name), n, from_json)
            if values is None:
                return None
            numbers[:, j] = values
            missing += np.isnan(values)
        categories = []
        for name in self.categorical:
            read = self._categories(columns.get(name), n)
            if read is None:
                return None
            codes, values, blank = read
            categories.append((codes, values))
            missing += blank[codes]
        if n and int(missing.max()) > self.checker.tolerated:
            return None  # the per-record path names the record
        matrix = self.compiled.columns(numbers, categories)
        if not np.isfinite(matrix).all():
            return None
        if self.label is None:
            return matrix
        labels = self._numbers(columns.get(self.label), n, from_json)
        if labels is None or not np.isfinite(labels).all():
            return None  # a missing or unreadable label
        return np.column_stack([labels, matrix])

    @staticmethod
    def _numbers(array: pa.Array | None, n: int, from_json: bool) -> np.ndarray | None:
        """A numeric field as :func:`to_number` reads it (NaN: missing), or None."""
        if array is None or pa.types.is_null(array.type):
            return np.full(n, np.nan)
        kind = array.type
        if pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            values = array.cast(pa.float64()).to_numpy(zero_copy_only=False)
        elif pa.types.is_integer(kind):
            values = array.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
            if np.nanmax(np.abs(values), initial=0.0) >= _EXACT_INT:
                return None  # converted twice differently? not worth proving: per record
        else:
            return None
        values = np.array(values, dtype=np.float64)  # nulls are NaN: missing, as None is
        finite = np.isfinite(values)
        if not finite.all():
            if np.isinf(values).any():
                return None  # refused per record ("not finite")
            if from_json and np.isnan(values[array.is_valid().to_numpy(zero_copy_only=False)]).any():
                return None  # a NaN literal: invalid JSON for orjson
        if from_json and np.any((values == 0.0) & np.signbit(values)):
            return None  # -0: orjson reads the integer 0, Arrow -0.0
        return values

    @staticmethod
    def _categories(array: pa.Array | None, n: int) -> tuple[np.ndarray, list[str | None], np.ndarray] | None:
        """A categorical field: (codes, its distinct values as :func:`to_category` reads them, whether each
        distinct value counts as missing), or None."""
        if array is None or pa.types.is_null(array.type):
            return np.zeros(n, dtype=np.intp), [None], np.array([1])
        kind = array.type
        # (floats: not read here -- dictionary encoding may not tell -0.0 from 0.0, to_category does)
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)
                or pa.types.is_boolean(kind)):
            return None
        encoded = pc.dictionary_encode(array, null_encoding="encode")
        distinct = encoded.dictionary.to_pylist()
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
        try:
            values = [to_category(value, "", 0) for value in distinct]
        except ValueError:
            return None
        blank = np.array([missing_value(value) for value in distinct] or [1], dtype=np.int64)
        return codes, values, blank
