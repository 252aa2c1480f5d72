"""Fit the preprocess transform on Spark: exact statistics from the whole DataFrame, saved as a model the
preprocess image serves unchanged.

Executors read the records as the image's ``train`` does (JSON Lines parsed with ``json``, the feature
code's ``extract`` applied, values read by the image's ``records_to_array``); Spark SQL aggregates them
exactly; the driver builds the fitted scikit-learn ``ColumnTransformer`` from the aggregates and saves it
with the image's own ``FittedFeatures.save`` (features.json with its fingerprint, transformer.joblib,
fast_transform.npz, code/features.py), so the model folder is the image's in every file.

Statistics and their precision against the image's fit on the same records:

- field kinds (which fields are numeric or categorical): exact (the image's ``infer_spec`` decides);
- category tables: exact (every distinct value, with its count);
- medians: exact (Spark's ``percentile`` sorts every value; the middle pair is averaged as numpy does);
- means (``numeric_impute=mean``) and the scaler's means and variances: Spark sums in another order than
  numpy, so they may differ from the image's in the last bits: relative error below 1e-12 (tested), and
  features within ``FEATURE_TOLERANCE`` of the image's.

- grouping rare categories (``max_categories`` / ``min_frequency``): exact. scikit-learn decides which
  categories are infrequent from each category's count and the number of records (ties broken by its stable
  sort over the sorted categories); the encoder is given the exact counts from Spark and decides itself
  (:func:`_exact_category_counts`), so the grouping is the image's, ties included.

Not supported (ValueError): feature code that defines ``build_transformer``. It returns an arbitrary
scikit-learn transformer (any estimator, any statistics, possibly fitted iteratively); there is no general
way to fit one from aggregates, and fitting it on a sample would silently give another model than the
image's. Such models are fitted by the image (the Spark apply still runs them when they compile to the
fast path).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .apply import read_orders
from .runtime import (
    MAX_KNOWN_FIELDS,
    MISSING_CATEGORY,
    FeatureCode,
    FeatureSpec,
    FittedFeatures,
    RecordRules,
    build_transformer,
    flatten_if_nested,
    infer_spec,
    records_to_array,
    ship_runtime,
    value_kind,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["FEATURE_TOLERANCE", "FitError", "fit_model"]

log = logging.getLogger("smkit_spark")

# Features of a Spark-fitted model and of the image's fit on the same records differ by at most this much,
# absolutely or relatively (numpy.allclose(rtol=atol=FEATURE_TOLERANCE)): the statistics differ by float64
# rounding only.
FEATURE_TOLERANCE = 1e-9
_MARKER = "smkit-spark fit failed: "
# A representative value of each kind infer_spec distinguishes (spec._value_kind's names).
_REPRESENTATIVE = {"null": None, "number": 1.0, "bool": True, "string": "x", "container": []}


class FitError(ValueError):
    """The records cannot be fitted (as the image's ``train`` would fail on them)."""


@dataclass(frozen=True)
class _Code:
    """Feature code as shipped to the executors: its name and bytes."""

    name: str
    data: bytes

    def load(self) -> FeatureCode:
        return _load_code(self.name, self.data)


@functools.lru_cache(maxsize=4)
def _load_code(name: str, data: bytes) -> FeatureCode:
    path = Path(tempfile.mkdtemp(prefix="smkit-spark-code-")) / "features.py"
    path.write_bytes(data)
    return FeatureCode(path, name)


def _records(batch: pa.RecordBatch, text_input: bool, code: _Code | None) -> list[Any]:
    """The batch's records as the image's ``train`` sees them (after ``extract``)."""
    if text_input:
        records = []
        for line, source in zip(batch.column("value").to_pylist(), batch.column("_source").to_pylist(),
                                strict=True):
            if line is None or not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FitError(f"{_MARKER}{source}: invalid JSON: {exc.msg} (column {exc.colno}): "
                               f"{line[:300]}") from None
            if not isinstance(value, dict):
                raise FitError(f"{_MARKER}{source}: expected a JSON object, got {type(value).__name__}: {line[:300]}")
            records.append(value)
    else:
        records = batch.to_pylist()
    if code is not None:
        try:
            records = code.load().extract_records(records)
        except ValueError as exc:
            raise FitError(f"{_MARKER}{exc}") from None
    return records


def _kinds(text_input: bool, code: _Code | None, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """(field, kind, records) rows: the kinds of value each field holds in the batch (infer_spec's input)."""
    for batch in batches:
        records = _records(batch, text_input, code)
        seen: set[tuple[str, str]] = set()
        for record in records:
            try:
                flat = flatten_if_nested(record)
            except ValueError as exc:
                raise FitError(f"{_MARKER}{exc}: {json.dumps(record, default=str)[:300]}") from None
            seen.update((name, value_kind(value)) for name, value in flat.items())
        names = sorted(seen)
        fields = pa.array([n for n, _ in names] + [None], pa.string())
        kinds = pa.array([k for _, k in names] + [None], pa.string())
        counts = pa.array([0] * len(names) + [len(records)], pa.int64())  # the null row counts the records
        yield pa.RecordBatch.from_arrays([fields, kinds, counts], names=["field", "kind", "records"])


def _values(text_input: bool, code: _Code | None, spec: FeatureSpec,
            batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The records' input columns as the image's transform reads them: numeric float64 (null = missing),
    categorical strings (missing = the image's MISSING_CATEGORY, as its imputer fills it)."""
    n_num = len(spec.numeric)
    for batch in batches:
        records = _records(batch, text_input, code)
        try:
            array = records_to_array(records, spec)
        except ValueError as exc:
            raise FitError(f"{_MARKER}{exc}") from None
        columns = []
        for j in range(n_num):
            values = array[:, j].astype(np.float64)
            columns.append(pa.array(values, pa.float64(), mask=np.isnan(values)))
        for j in range(n_num, array.shape[1]):
            columns.append(pa.array([MISSING_CATEGORY if v is np.nan or v != v else v for v in array[:, j]],
                                    pa.string()))
        yield pa.RecordBatch.from_arrays(columns, names=[f"c{j}" for j in range(array.shape[1])])


def _spec_from_kinds(kinds: dict[str, set[str]], label: str | None, drop: Sequence[str],
                     numeric: Sequence[str] | None, categorical: Sequence[str] | None, options: dict) -> FeatureSpec:
    """The image's ``infer_spec`` on one representative record per (field, kind): the same decisions as on
    the whole data, since it only looks at the kinds of value each field holds."""
    representatives = [{name: _REPRESENTATIVE[kind]} for name in sorted(kinds) for kind in sorted(kinds[name])]
    return infer_spec(representatives, label=label, drop=list(drop), numeric=numeric, categorical=categorical,
                      **options)


def _scale(mean: np.ndarray, var: np.ndarray, n: int) -> np.ndarray:
    """``StandardScaler``'s scale_ from mean_/var_: sqrt(var), 1.0 for constant features (scikit-learn's
    own rule, imported from where StandardScaler.partial_fit uses it)."""
    from sklearn.preprocessing._data import _handle_zeros_in_scale, _is_constant_feature

    constant = _is_constant_feature(var, mean, n)
    return _handle_zeros_in_scale(np.sqrt(var), copy=False, constant_mask=constant)


_encoder_lock = threading.Lock()


@contextlib.contextmanager
def _exact_category_counts(categories: list[dict[str, int]], n: int) -> Iterator[None]:
    """While fitting on the skeleton, the categorical encoder decides which categories are infrequent from
    the whole data's counts (``categories``: per field, category -> records) and ``n`` records, not from the
    skeleton's.

    Why patched: scikit-learn's encoders take no counts or sample weights, only rows; their own decision
    (``_BaseEncoder._fit_infrequent_category_mapping``: min_frequency, max_categories, ties) is called with
    the exact counts instead of being re-implemented here. The categories are imputed before the encoder
    (MISSING_CATEGORY is a category like any other), so there are no missing indices. Class-level for the
    duration of one fit on the driver (the ColumnTransformer fits clones of its encoder), under a lock.
    """
    from sklearn.preprocessing._encoders import _BaseEncoder

    original = _BaseEncoder._fit_infrequent_category_mapping

    def decide(self: Any, n_samples: int, category_counts: list[np.ndarray], missing_indices: dict) -> None:
        if missing_indices or len(self.categories_) != len(categories):
            raise RuntimeError("unexpected encoder input while fitting on Spark aggregates")  # a bug
        counts = [np.array([categories[k][value] for value in self.categories_[k]], dtype=np.int64)
                  for k in range(len(categories))]
        original(self, n, counts, missing_indices)

    with _encoder_lock:
        _BaseEncoder._fit_infrequent_category_mapping = decide
        try:
            yield
        finally:
            _BaseEncoder._fit_infrequent_category_mapping = original


def _transformer(spec: FeatureSpec, fills: list[float], scaler_stats: list[tuple[float, float]] | None,
                 categories: list[dict[str, int]], n: int) -> Any:
    """A fitted ColumnTransformer equal to the image's fit on data with these statistics.

    It is fitted by scikit-learn itself on a small skeleton array (each column: its fill value, or every
    category seen), so every structural attribute is scikit-learn's; the statistics that depend on all
    the data (imputation values, the scaler's means and variances) are then set from the aggregates.
    """
    rows = max([1, *(len(c) for c in categories)])
    skeleton = np.empty((rows, len(spec.input_columns)), dtype=object)
    for j, fill in enumerate(fills):
        skeleton[:, j] = fill
    for k, counts in enumerate(categories):
        names = sorted(counts)
        skeleton[:, len(fills) + k] = [names[i] if i < len(names) else names[0] for i in range(rows)]
    transformer = build_transformer(spec)
    with _exact_category_counts(categories, n):
        transformer.fit(skeleton)
    if spec.numeric:
        pipeline = transformer.named_transformers_["numeric"]
        imputer = pipeline.named_steps["impute"]
        if spec.numeric_impute != "constant0":
            imputer.statistics_ = np.array(fills, dtype=np.float64)
        if spec.scale:
            assert scaler_stats is not None
            kept = [stats for stats, fill in zip(scaler_stats, fills, strict=True)
                    if spec.numeric_impute == "constant0" or fill == fill]
            scaler = pipeline.named_steps["scale"]
            mean = np.array([m for m, _ in kept], dtype=np.float64)
            var = np.array([v for _, v in kept], dtype=np.float64)
            scaler.mean_, scaler.var_ = mean, var
            scaler.n_samples_seen_ = np.int64(n)
            scaler.scale_ = _scale(mean, var, n)
    return transformer


def _fail_cleanly(exc: Exception) -> FitError | None:
    import re

    match = re.search(re.escape(_MARKER) + r"(.*)", str(exc))
    return FitError(match.group(1).strip()) if match else None


def fit_model(spark: SparkSession, data: DataFrame | str | Path, output: str | Path, *, label: str | None = None,
              numeric: Sequence[str] | None = None, categorical: Sequence[str] | None = None,
              drop: Sequence[str] = (), code: str | Path | None = None, input_format: str | None = None,
              max_missing_fields: int | None = None, unknown_fields: str = "warn", **options: Any) -> FittedFeatures:
    """Fit the preprocess transform on ``data`` (a DataFrame or a path of JSON Lines / Parquet records) and
    save the model to ``output`` (a folder, or a ``.tar.gz`` as SageMaker packs models). Arguments are the
    image's hyperparameters (``numeric_impute``, ``scale``, ``categorical_encoding`` in ``options``;
    ``max_missing_fields`` / ``unknown_fields``: the record checks serving applies, stored with the fields
    seen in the data as the image's ``train`` stores them); ``code``: a feature-code module defining
    ``extract`` (as the image's ``code`` channel)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    rules = RecordRules(max_missing_fields, unknown_fields)  # checked before any Spark job
    feature_code = None
    shipped_code = None
    if code is not None:
        feature_code = FeatureCode(Path(code))
        if feature_code.has_build_transformer:
            raise ValueError(f"{feature_code.original_name} defines build_transformer: an arbitrary scikit-learn "
                             "transformer cannot be fitted from aggregates on Spark; fit this model with the image")
        shipped_code = _Code(feature_code.original_name, Path(code).read_bytes())
    frame, text_input = read_orders(spark, data, input_format)
    ship_runtime(spark.sparkContext)
    try:
        kind_schema = StructType([StructField("field", StringType()), StructField("kind", StringType()),
                                  StructField("records", LongType())])
        kind_rows = frame.mapInArrow(functools.partial(_kinds, text_input, shipped_code), kind_schema).groupBy(
            "field", "kind").agg(F.sum("records").alias("records")).collect()
        kinds: dict[str, set[str]] = {}
        n = 0
        for row in kind_rows:
            if row["field"] is None:
                n = int(row["records"])
            else:
                kinds.setdefault(row["field"], set()).add(row["kind"])
        if n == 0:
            raise FitError("the data holds no records")
        spec = _spec_from_kinds(kinds, label, drop, numeric, categorical, options)
        n_num = len(spec.numeric)
        value_schema = StructType([StructField(f"c{j}", DoubleType() if j < n_num else StringType())
                                   for j in range(len(spec.input_columns))])
        values = frame.mapInArrow(functools.partial(_values, text_input, shipped_code, spec), value_schema)
        values = values.persist()
        try:
            fills, scaler_stats = _numeric_statistics(values, spec, n)
            categories = _category_counts(values, spec)
        finally:
            values.unpersist()
    except Exception as exc:
        cause = _fail_cleanly(exc)
        if cause is not None:
            raise cause from None
        raise
    transformer = _transformer(spec, fills, scaler_stats, categories, n)
    fitted = FittedFeatures(spec, transformer, fast=True, code=feature_code)
    # the image's fields_seen: every (flattened) field name of the records, or None past MAX_KNOWN_FIELDS
    fitted.set_record_checks(rules, sorted(kinds) if len(kinds) <= MAX_KNOWN_FIELDS else None)
    if not fitted.fast_path:
        raise RuntimeError("the Spark-fitted transformer did not compile to the fast path (a bug)")
    _save(fitted, Path(output))
    log.info("fitted %d records on Spark: %d input fields, %d features (fingerprint %s)", n,
             len(spec.input_columns), len(fitted.output_columns), fitted.fingerprint[:12])
    return fitted


def _numeric_statistics(values: DataFrame, spec: FeatureSpec, n: int) -> tuple[list[float], list | None]:
    """(fill value per numeric field, [(mean, population variance)] of each filled field or None)."""
    from pyspark.sql import functions as F

    if not spec.numeric:
        return [], None
    columns = [f"c{j}" for j in range(len(spec.numeric))]
    aggregates = []
    for c in columns:
        aggregates.append(F.count(c))
        if spec.numeric_impute == "median":
            aggregates.append(F.percentile(c, F.lit(0.5)))  # exact: Spark sorts every value
        else:
            aggregates.append(F.avg(c))
    first = values.agg(*aggregates).collect()[0]
    fills = []
    for j in range(len(columns)):
        count, statistic = first[2 * j], first[2 * j + 1]
        if spec.numeric_impute == "constant0":
            fills.append(0.0)
        else:
            fills.append(float(statistic) if count else float("nan"))
    if not spec.scale:
        return fills, None
    filled = [F.coalesce(F.col(c), F.lit(fill)) for c, fill in zip(columns, fills, strict=True)]
    second = values.agg(*[agg for x in filled for agg in (F.avg(x), F.var_pop(x))]).collect()[0]
    stats = [(float(second[2 * j]), float(second[2 * j + 1])) for j in range(len(columns))]
    return fills, stats


def _category_counts(values: DataFrame, spec: FeatureSpec) -> list[dict[str, int]]:
    """Every category of each categorical field, with its count (one Spark job for all fields)."""
    from pyspark.sql import functions as F

    if not spec.categorical:
        return []
    n_num = len(spec.numeric)
    pairs = F.explode(F.array(*[F.struct(F.lit(k).alias("k"), F.col(f"c{n_num + k}").alias("v"))
                                for k in range(len(spec.categorical))]))
    rows = values.select(pairs.alias("p")).groupBy("p.k", "p.v").count().collect()
    counts: list[dict[str, int]] = [{} for _ in spec.categorical]
    for row in rows:
        counts[row["k"]][row["v"]] = int(row["count"])
    return counts


def _save(fitted: FittedFeatures, output: Path) -> None:
    """The model folder, or a ``model.tar.gz`` of it (files at the archive's root, as SageMaker packs)."""
    if output.name.endswith(".tar.gz"):
        directory = Path(tempfile.mkdtemp(prefix="smkit-spark-fit-"))
        try:
            fitted.save(directory)
            output.parent.mkdir(parents=True, exist_ok=True)
            with tarfile.open(output, "w:gz") as archive:
                for path in sorted(directory.rglob("*")):
                    if path.is_file():
                        archive.add(path, path.relative_to(directory).as_posix())
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    else:
        fitted.save(output)
