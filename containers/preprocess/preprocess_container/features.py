"""The feature transform, one implementation for training and serving.

``FittedFeatures.fit(records, spec)`` fits a scikit-learn ``ColumnTransformer`` (built by
:func:`build_transformer`) on records; ``transform_records`` / ``transform_rows`` apply it, through the
compiled fast path (``fast_transform``) when available and through scikit-learn otherwise. ``save`` /
``load`` persist it as ``transformer.joblib`` + ``features.json`` in a model directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from .fast_transform import (
    NESTED_OBJECT,
    CompiledTransform,
    FeatureError,
    check_row,
    compile_transformer,
    get_record,
    to_category,
    to_number,
)
from .spec import FeatureSpec, SpecError

logger = logging.getLogger("preprocess")

__all__ = [
    "FEATURES_FILE",
    "FORMAT_VERSION",
    "MISSING_CATEGORY",
    "TRANSFORMER_FILE",
    "FeatureError",
    "FittedFeatures",
    "build_transformer",
    "fingerprint",
    "records_to_frame",
    "rows_to_frame",
]

MISSING_CATEGORY = "__missing__"
TRANSFORMER_FILE = "transformer.joblib"
FEATURES_FILE = "features.json"
FORMAT_VERSION = 1
_VERIFY_RECORDS = 256
_VERIFY_SINGLE = 16


def build_transformer(spec: FeatureSpec) -> ColumnTransformer:
    """The (unfitted) ColumnTransformer for ``spec``: numeric imputation (+ scaling), categorical
    imputation + one-hot or ordinal encoding. Output columns: numeric features, then categorical ones."""
    transformers: list[tuple[str, Any, list[str]]] = []
    if spec.numeric:
        if spec.numeric_impute == "constant0":
            imputer = SimpleImputer(strategy="constant", fill_value=0.0, add_indicator=False)
        else:
            imputer = SimpleImputer(strategy=spec.numeric_impute, add_indicator=False)
        steps: list[tuple[str, Any]] = [("impute", imputer)]
        if spec.scale:
            steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(steps), list(spec.numeric)))
    if spec.categorical:
        infrequent = {"min_frequency": spec.min_frequency, "max_categories": spec.max_categories}
        if spec.categorical_encoding == "onehot":
            grouped = spec.min_frequency is not None or spec.max_categories is not None
            encoder: Any = OneHotEncoder(
                handle_unknown="infrequent_if_exist" if grouped else "ignore",
                sparse_output=False,
                dtype=np.float64,
                **infrequent,
            )
        else:
            encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=-1,
                encoded_missing_value=-1,
                dtype=np.float64,
                **infrequent,
            )
        categorical = Pipeline(
            [
                ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
                ("encode", encoder),
            ]
        )
        transformers.append(("categorical", categorical, list(spec.categorical)))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=False)


# --------------------------------------------------------------------------------------------------
# records / rows -> DataFrame (the scikit-learn path)


def _frame(numeric: list[list[float]], categorical: list[list[str | None]], spec: FeatureSpec) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for name, values in zip(spec.numeric, numeric, strict=True):
        data[name] = np.array(values, dtype=np.float64)
    for name, values in zip(spec.categorical, categorical, strict=True):
        # Missing categories are NaN: SimpleImputer recognises NaN (not None) in object columns.
        data[name] = pd.Series([np.nan if v is None else v for v in values], dtype=object)
    return pd.DataFrame(data, columns=spec.input_columns)


def records_to_frame(records: Iterable[Mapping[str, Any]], spec: FeatureSpec) -> pd.DataFrame:
    """Records (nested or flattened) -> DataFrame of ``spec.input_columns``.

    Numeric columns are float64 (missing = NaN), categorical columns object dtype holding str or NaN
    (missing). Values that cannot be read raise :class:`FeatureError` naming the field and record.
    """
    if isinstance(records, Mapping):
        raise FeatureError("expected a list of records, got a single object")
    numeric: list[list[float]] = [[] for _ in spec.numeric]
    categorical: list[list[str | None]] = [[] for _ in spec.categorical]
    for index, record in enumerate(records):
        get = get_record(record, index).get
        for name, column in zip(spec.numeric, numeric, strict=True):
            column.append(to_number(get(name), name, index))
        for name, column in zip(spec.categorical, categorical, strict=True):
            column.append(to_category(get(name), name, index))
    return _frame(numeric, categorical, spec)


def rows_to_frame(rows: Iterable[Sequence[Any]], spec: FeatureSpec) -> pd.DataFrame:
    """Rows in ``spec.input_columns`` order (e.g. headerless CSV, all strings; "" = missing) -> DataFrame."""
    if isinstance(rows, (str, bytes, Mapping)):
        raise FeatureError("expected a list of rows")
    columns = spec.input_columns
    n_num = len(spec.numeric)
    numeric: list[list[float]] = [[] for _ in spec.numeric]
    categorical: list[list[str | None]] = [[] for _ in spec.categorical]
    for index, row in enumerate(rows):
        row = check_row(row, index, len(columns), columns)
        for i, (name, column) in enumerate(zip(spec.numeric, numeric, strict=True)):
            column.append(to_number(row[i], name, index, "row"))
        for i, (name, column) in enumerate(zip(spec.categorical, categorical, strict=True)):
            column.append(to_category(row[n_num + i], name, index, "row"))
    return _frame(numeric, categorical, spec)


# --------------------------------------------------------------------------------------------------
# fingerprint


def _jsonable(value: Any) -> Any:
    """A canonical, JSON-ready summary of a (fitted) parameter value."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # repr of floats round-trips exactly
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, slice):
        return [value.start, value.stop, value.step]
    if isinstance(value, BaseEstimator):
        return _estimator_summary(value)
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, np.dtype):
        return str(value)
    return type(value).__name__  # e.g. callables: their repr would hold a memory address


def _estimator_summary(estimator: BaseEstimator) -> dict[str, Any]:
    fitted = {
        name: _jsonable(value)
        for name, value in sorted(vars(estimator).items())
        if name.endswith("_") and not name.startswith("_")
    }
    try:
        fitted["infrequent_categories_"] = _jsonable(estimator.infrequent_categories_)  # type: ignore[attr-defined]
    except AttributeError:
        pass
    return {
        "class": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        "params": _jsonable(estimator.get_params(deep=False)),
        "fitted": fitted,
    }


def fingerprint(spec: FeatureSpec, transformer: ColumnTransformer, output_columns: Sequence[str]) -> str:
    """sha256 (hex) of the input columns, output columns and fitted parameters, as canonical JSON."""
    document = {
        "input_columns": spec.input_columns,
        "output_columns": list(output_columns),
        "transformer": _estimator_summary(transformer),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# --------------------------------------------------------------------------------------------------
# the fitted transform


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


class FittedFeatures:
    """A fitted feature transform: spec + fitted ColumnTransformer (+ its compiled fast path)."""

    def __init__(self, spec: FeatureSpec, transformer: ColumnTransformer, *, fast: bool = True) -> None:
        """Wrap an already fitted ``transformer``; ``fast=False`` disables the compiled path."""
        self.spec = spec
        self.transformer = transformer
        try:
            self.output_columns: list[str] = [str(c) for c in transformer.get_feature_names_out()]
        except ValueError as exc:
            if "not unique" not in str(exc):
                raise FeatureError(f"the transformer's output column names cannot be computed: {exc}") from None
            detail = str(exc).split(". Please")[0]  # drop sklearn's advice, not actionable here
            raise FeatureError(
                f"{detail}: a field is named like a one-hot column of another (<field>_<category>); "
                "rename or drop one of them"
            ) from None
        except AttributeError as exc:  # a hand-built transformer without get_feature_names_out
            raise FeatureError(f"the transformer's output column names cannot be computed: {exc}") from None
        self.fingerprint = fingerprint(spec, transformer, self.output_columns)
        self._compiled: CompiledTransform | None = None
        if fast:
            self._compiled = compile_transformer(transformer, spec)
            if self._compiled is not None:
                self._verify(self._compiled.probe_records(), "probe records")

    def __repr__(self) -> str:
        return (
            f"FittedFeatures(inputs={len(self.spec.input_columns)}, outputs={len(self.output_columns)}, "
            f"fast_path={self.fast_path}, fingerprint={self.fingerprint[:12]})"
        )

    @property
    def fast_path(self) -> bool:
        """Whether transforms use the compiled fast path."""
        return self._compiled is not None

    @property
    def input_columns(self) -> list[str]:
        return self.spec.input_columns

    @property
    def n_features_out(self) -> int:
        return len(self.output_columns)

    @classmethod
    def fit(cls, records: Iterable[Mapping[str, Any]], spec: FeatureSpec, *, fast: bool = True) -> FittedFeatures:
        """Fit the transform of ``spec`` on ``records`` (nested or flattened)."""
        records = records if isinstance(records, Sequence) else list(records)
        if len(records) == 0:
            raise FeatureError("cannot fit the feature transform on no records")
        frame = records_to_frame(records, spec)
        transformer = build_transformer(spec)
        with warnings.catch_warnings():
            # logged below, in terms of fields
            warnings.filterwarnings("ignore", message="Skipping features without any observed values")
            transformer.fit(frame)
        fitted = cls(spec, transformer, fast=fast)
        outputs = set(fitted.output_columns)
        empty = [name for name in spec.numeric if name not in outputs]
        if empty:
            logger.warning("numeric fields without any value in the training data are left out: %s", empty)
        if fitted._compiled is not None:
            fitted._verify(records[:_VERIFY_RECORDS], "training records")
        return fitted

    def _verify(self, records: Sequence[Mapping[str, Any]], what: str) -> None:
        """Turn the fast path off (with a warning) unless it reproduces scikit-learn on ``records``."""
        compiled = self._compiled
        if compiled is None:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reference = self.transform_records_sklearn(records)
            # the batch path, and the single-record path (separate code) on the first records
            same = _identical(compiled.records(records), reference) and all(
                _identical(compiled.records([record]), reference[i : i + 1])
                for i, record in enumerate(records[:_VERIFY_SINGLE])
            )
        except Exception as exc:  # a check must not break fit/load: scikit-learn stays available
            logger.warning("fast path check on %s failed (%s: %s)", what, type(exc).__name__, exc)
            same = False
        if not same:
            logger.warning("fast path disabled: it differs from scikit-learn on %s; using scikit-learn transform", what)
            self._compiled = None

    # -- transforms ---------------------------------------------------------------------------------

    def _sklearn(self, frame: pd.DataFrame) -> np.ndarray:
        if len(frame) == 0:
            return np.zeros((0, len(self.output_columns)), dtype=np.float64)
        return np.asarray(self.transformer.transform(frame), dtype=np.float64)

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Records (nested or flattened) -> (n, n_features_out) float64."""
        if self._compiled is not None:
            return self._compiled.records(records)
        return self.transform_records_sklearn(records)

    def transform_rows(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """Rows in ``spec.input_columns`` order (e.g. headerless CSV) -> (n, n_features_out) float64."""
        if self._compiled is not None:
            return self._compiled.rows(rows)
        return self.transform_rows_sklearn(rows)

    def transform_records_sklearn(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Like :meth:`transform_records`, always through pandas + scikit-learn (the reference)."""
        return self._sklearn(records_to_frame(records, self.spec))

    def transform_rows_sklearn(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """Like :meth:`transform_rows`, always through pandas + scikit-learn (the reference)."""
        return self._sklearn(rows_to_frame(rows, self.spec))

    def label_values(self, records: Iterable[Mapping[str, Any]]) -> list[Any]:
        """The label of each record, as found (None, NaN or "" is an error naming the record)."""
        label = self.spec.label
        if label is None:
            raise FeatureError("the feature spec has no label")
        values = []
        for index, record in enumerate(records):
            value = get_record(record, index).get(label)
            if value is None or value == "" or (isinstance(value, float) and value != value):
                raise FeatureError(f"record {index}: the label {label!r} is missing")
            if value is NESTED_OBJECT:
                raise FeatureError(f"record {index}: the label {label!r} is an object, not a value")
            values.append(value)
        return values

    # -- persistence --------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The content of ``features.json``."""
        return {
            "format_version": FORMAT_VERSION,
            "spec": self.spec.to_dict(),
            "input_columns": self.spec.input_columns,
            "output_columns": self.output_columns,
            "label": self.spec.label,
            "fingerprint": self.fingerprint,
            "fast_path": self.fast_path,
            "sklearn_version": sklearn.__version__,
        }

    def save(self, model_dir: Path | str) -> None:
        """Write ``model_dir/transformer.joblib`` and ``model_dir/features.json`` (each atomically)."""
        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        transformer_path = model_dir / TRANSFORMER_FILE
        temporary = transformer_path.with_name(transformer_path.name + ".tmp")
        joblib.dump(self.transformer, temporary)
        os.replace(temporary, transformer_path)
        features_path = model_dir / FEATURES_FILE
        temporary = features_path.with_name(features_path.name + ".tmp")
        temporary.write_text(json.dumps(self.metadata(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(temporary, features_path)

    @classmethod
    def load(cls, model_dir: Path | str, *, fast: bool = True) -> FittedFeatures:
        """Load what :meth:`save` wrote; FileNotFoundError / ValueError say what is missing or wrong."""
        model_dir = Path(model_dir)
        features_path = model_dir / FEATURES_FILE
        transformer_path = model_dir / TRANSFORMER_FILE
        for path in (features_path, transformer_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path} not found: {model_dir} is not a preprocess model directory "
                    f"(expected {FEATURES_FILE} and {TRANSFORMER_FILE})"
                )
        try:
            meta = json.loads(features_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{features_path} is not valid JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{features_path}: expected a JSON object")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{features_path}: unsupported format_version {meta.get('format_version')!r} "
                f"(this code reads {FORMAT_VERSION})"
            )
        missing = [key for key in ("spec", "output_columns", "fingerprint") if key not in meta]
        if missing:
            raise ValueError(f"{features_path}: missing keys {missing}")
        try:
            spec = FeatureSpec.from_dict(meta["spec"])
        except (SpecError, TypeError) as exc:
            raise ValueError(f"{features_path}: invalid spec: {exc}") from None
        if meta.get("input_columns", spec.input_columns) != spec.input_columns:
            raise ValueError(f"{features_path}: input_columns do not match the spec")
        try:
            transformer = joblib.load(transformer_path)
        except Exception as exc:  # unpickling raises many types for truncated or foreign files
            raise ValueError(f"{transformer_path} cannot be loaded: {type(exc).__name__}: {exc}") from None
        if not isinstance(transformer, ColumnTransformer) or not hasattr(transformer, "transformers_"):
            raise ValueError(f"{transformer_path} does not hold a fitted ColumnTransformer")
        fitted = cls(spec, transformer, fast=fast)
        if fitted.output_columns != meta["output_columns"]:
            raise ValueError(f"{transformer_path}: output columns differ from {features_path}")
        if fitted.fingerprint != meta["fingerprint"]:
            raise ValueError(
                f"{transformer_path} does not match {features_path} (fingerprint differs): "
                "the two files come from different fits"
            )
        return fitted
