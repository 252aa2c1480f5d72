"""The feature transform, one implementation for training and serving.

``FittedFeatures.fit(records, spec)`` fits a scikit-learn ``ColumnTransformer`` (built by
:func:`build_transformer`, or by the user's feature code) on a 2-D object array of the records'
``spec.input_columns``; ``transform_records`` / ``transform_rows`` apply it, through the compiled fast
path (``fast_transform``) when available and through scikit-learn otherwise.

``save`` / ``load`` persist it in a model directory: ``features.json`` (spec, columns, fingerprint, the
sha256 of every other file), ``transformer.joblib`` (the fitted scikit-learn transformer),
``fast_transform.npz`` (the fast path's tables, when it is available) and ``code/features.py`` (the
user's feature code, if any). Loading a model with fast-path tables needs numpy alone: scikit-learn,
scipy and joblib are imported only when the scikit-learn transform is actually needed, which keeps a
serving container's start fast. This module must therefore never import them at module level.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .fast_transform import (
    CompiledTransform,
    FeatureError,
    check_row,
    get_record,
    load_tables,
    save_tables,
    to_category,
    to_number,
)
from .flatten import NESTED_OBJECT
from .spec import FeatureSpec, SpecError
from .user_code import CODE_PATH, FeatureCode, sha256_file
from .validation import RecordChecker, RecordRules, fields_seen

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer

logger = logging.getLogger("preprocess")

__all__ = [
    "FEATURES_FILE",
    "FORMAT_VERSION",
    "MISSING_CATEGORY",
    "TABLES_FILE",
    "TRANSFORMER_FILE",
    "FeatureError",
    "FittedFeatures",
    "build_transformer",
    "fingerprint",
    "records_to_array",
    "rows_to_array",
]

MISSING_CATEGORY = "__missing__"
TRANSFORMER_FILE = "transformer.joblib"
TABLES_FILE = "fast_transform.npz"
FEATURES_FILE = "features.json"
# 2: fitted on a NumPy object array (columns by position), fast-path tables, feature code, file digests.
FORMAT_VERSION = 2
_VERIFY_RECORDS = 256
_VERIFY_SINGLE = 16


def build_transformer(spec: FeatureSpec) -> ColumnTransformer:
    """The (unfitted) ColumnTransformer for ``spec``: numeric imputation (+ scaling), categorical
    imputation + one-hot or ordinal encoding. Output columns: numeric features, then categorical ones.

    It selects columns by position: it is fitted on a 2-D object array of ``spec.input_columns``
    (see :func:`records_to_array`)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    transformers: list[tuple[str, Any, list[int]]] = []
    if spec.numeric:
        if spec.numeric_impute == "constant0":
            imputer = SimpleImputer(strategy="constant", fill_value=0.0, add_indicator=False)
        else:
            imputer = SimpleImputer(strategy=spec.numeric_impute, add_indicator=False)
        steps: list[tuple[str, Any]] = [("impute", imputer)]
        if spec.scale:
            steps.append(("scale", StandardScaler()))
        transformers.append(("numeric", Pipeline(steps), spec.numeric_indices))
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
        transformers.append(("categorical", categorical, spec.categorical_indices))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0, verbose_feature_names_out=False)


# --------------------------------------------------------------------------------------------------
# records / rows -> 2-D object array (the scikit-learn path)


def _array(numeric: list[list[float]], categorical: list[list[str | None]], n: int) -> np.ndarray:
    array = np.empty((n, len(numeric) + len(categorical)), dtype=object)
    for j, values in enumerate(numeric):
        array[:, j] = values  # Python floats, NaN = missing
    for j, values in enumerate(categorical, start=len(numeric)):
        # Missing categories are NaN: SimpleImputer recognises NaN (not None) in object arrays.
        array[:, j] = [math.nan if v is None else v for v in values]
    return array


def records_to_array(records: Iterable[Mapping[str, Any]], spec: FeatureSpec) -> np.ndarray:
    """Records (nested or flattened) -> (n, len(spec.input_columns)) object array.

    Columns in ``spec.input_columns`` order: numeric ones hold floats (missing = NaN), categorical ones
    str or NaN (missing). Values that cannot be read raise :class:`FeatureError` naming field and record.
    """
    if isinstance(records, Mapping):
        raise FeatureError("expected a list of records, got a single object")
    numeric: list[list[float]] = [[] for _ in spec.numeric]
    categorical: list[list[str | None]] = [[] for _ in spec.categorical]
    n = 0
    for index, record in enumerate(records):
        get = get_record(record, index).get
        for name, column in zip(spec.numeric, numeric, strict=True):
            column.append(to_number(get(name), name, index))
        for name, column in zip(spec.categorical, categorical, strict=True):
            column.append(to_category(get(name), name, index))
        n += 1
    return _array(numeric, categorical, n)


def rows_to_array(rows: Iterable[Sequence[Any]], spec: FeatureSpec, unit: str = "row") -> np.ndarray:
    """Rows in ``spec.input_columns`` order (e.g. headerless CSV, all strings; "" = missing) -> the
    object array of :func:`records_to_array`. ``unit`` "record": checked records' input values
    (``RecordChecker.values``), errors naming the record."""
    if isinstance(rows, (str, bytes, Mapping)):
        raise FeatureError("expected a list of rows")
    columns = spec.input_columns
    n_num = len(spec.numeric)
    numeric: list[list[float]] = [[] for _ in spec.numeric]
    categorical: list[list[str | None]] = [[] for _ in spec.categorical]
    n = 0
    for index, row in enumerate(rows):
        if unit == "row":
            row = check_row(row, index, len(columns), columns)
        for i, (name, column) in enumerate(zip(spec.numeric, numeric, strict=True)):
            column.append(to_number(row[i], name, index, unit))
        for i, (name, column) in enumerate(zip(spec.categorical, categorical, strict=True)):
            column.append(to_category(row[n_num + i], name, index, unit))
        n += 1
    return _array(numeric, categorical, n)


# --------------------------------------------------------------------------------------------------
# fingerprint


def _jsonable(value: Any, estimator_type: type) -> Any:
    """A canonical, JSON-ready summary of a (fitted) parameter value."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # repr of floats round-trips exactly
    if isinstance(value, np.ndarray):
        return [_jsonable(v, estimator_type) for v in value.tolist()]
    if isinstance(value, np.generic):
        return _jsonable(value.item(), estimator_type)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, estimator_type) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, estimator_type) for k, v in value.items()}
    if isinstance(value, slice):
        return [value.start, value.stop, value.step]
    if isinstance(value, estimator_type):
        return _estimator_summary(value, estimator_type)
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, np.dtype):
        return str(value)
    return type(value).__name__  # e.g. callables: their repr would hold a memory address


def _estimator_summary(estimator: Any, estimator_type: type) -> dict[str, Any]:
    fitted = {
        name: _jsonable(value, estimator_type)
        for name, value in sorted(vars(estimator).items())
        if name.endswith("_") and not name.startswith("_")
    }
    try:
        fitted["infrequent_categories_"] = _jsonable(estimator.infrequent_categories_, estimator_type)
    except AttributeError:
        pass
    return {
        "class": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        "params": _jsonable(estimator.get_params(deep=False), estimator_type),
        "fitted": fitted,
    }


def fingerprint(
    spec: FeatureSpec, transformer: Any, output_columns: Sequence[str], code_sha256: str | None = None
) -> str:
    """sha256 (hex) of the input columns, output columns and fitted parameters (and the feature code's
    sha256, when there is feature code), as canonical JSON."""
    from sklearn.base import BaseEstimator

    document: dict[str, Any] = {
        "input_columns": spec.input_columns,
        "output_columns": list(output_columns),
        "transformer": _estimator_summary(transformer, BaseEstimator),
    }
    if code_sha256 is not None:
        document["feature_code"] = code_sha256
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _output_columns(transformer: Any, spec: FeatureSpec) -> list[str]:
    try:
        names = transformer.get_feature_names_out(input_features=spec.input_columns)
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
    return [str(c) for c in names]


# --------------------------------------------------------------------------------------------------
# the fitted transform


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def _fit_error(exc: ValueError, code: FeatureCode | None) -> FeatureError:
    message = str(exc)
    if code is not None and "only supported for dataframes" in message:
        return FeatureError(
            f"build_transformer in {code.original_name} selects columns by name, but the transformer is fitted "
            "on a 2-D array whose columns are spec.input_columns: select them by position, e.g. "
            f"spec.column_indices([...]) ({message})"
        )
    return FeatureError(f"fitting the feature transform failed: {message}")


class FittedFeatures:
    """A fitted feature transform: spec + fitted ColumnTransformer (+ its compiled fast path, + the
    user's feature code)."""

    def __init__(
        self, spec: FeatureSpec, transformer: Any, *, fast: bool = True, code: FeatureCode | None = None
    ) -> None:
        """Wrap an already fitted ``transformer``; ``fast=False`` disables the compiled path."""
        self.spec = spec
        self.code = code
        self._transformer: Any = transformer
        self._transformer_loader: Callable[[], Any] | None = None
        self.output_columns: list[str] = _output_columns(transformer, spec)
        self.fingerprint = fingerprint(spec, transformer, self.output_columns, code.sha256 if code else None)
        self.set_record_checks(RecordRules())
        self._compiled: CompiledTransform | None = None
        if fast:
            from .compiler import compile_transformer  # scikit-learn: only where a fitted transformer is

            self._compiled = compile_transformer(transformer, spec)
            if self._compiled is not None:
                self._verify(self._compiled.probe_records(), "probe records")

    @classmethod
    def _from_tables(
        cls,
        spec: FeatureSpec,
        compiled: CompiledTransform,
        output_columns: list[str],
        fingerprint_: str,
        code: FeatureCode | None,
        transformer_loader: Callable[[], Any],
    ) -> FittedFeatures:
        """A loaded model whose fast path comes from its saved tables (the transformer loads on demand)."""
        self = cls.__new__(cls)
        self.spec = spec
        self.code = code
        self._transformer = None
        self._transformer_loader = transformer_loader
        self.output_columns = output_columns
        self.fingerprint = fingerprint_
        self._compiled = compiled
        self.set_record_checks(RecordRules())
        return self

    def __repr__(self) -> str:
        code = f", code={self.code.original_name}" if self.code else ""
        return (
            f"FittedFeatures(inputs={len(self.spec.input_columns)}, outputs={len(self.output_columns)}, "
            f"fast_path={self.fast_path}, fingerprint={self.fingerprint[:12]}{code})"
        )

    def set_record_checks(self, rules: RecordRules, known_fields: list[str] | None = None) -> None:
        """The rules requests' records are checked by (``validation``), and the fields the model knows
        (None: only its input fields and label)."""
        self.record_rules = rules
        self.known_fields = known_fields
        self._checker = RecordChecker(self.spec.input_columns, known_fields, rules, self.spec.label)

    @property
    def transformer(self) -> Any:
        """The fitted scikit-learn transformer (a model loaded with its fast path loads it on first use)."""
        if self._transformer is None:
            assert self._transformer_loader is not None
            self._transformer = self._transformer_loader()
        return self._transformer

    @property
    def compiled(self) -> CompiledTransform | None:
        """The compiled fast path (None without one)."""
        return self._compiled

    @property
    def record_checker(self) -> RecordChecker:
        """The model's record checks (what :meth:`checked` applies)."""
        return self._checker

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

    @property
    def extracts(self) -> bool:
        """Whether records go through the feature code's ``extract`` (rows, which carry the input columns
        themselves, cannot)."""
        return self.code is not None and self.code.has_extract

    @classmethod
    def fit(
        cls,
        records: Iterable[Mapping[str, Any]],
        spec: FeatureSpec,
        *,
        fast: bool = True,
        code: FeatureCode | None = None,
        extracted: bool = False,
        rules: RecordRules | None = None,
    ) -> FittedFeatures:
        """Fit the transform of ``spec`` on ``records`` (nested or flattened).

        With feature ``code``, its ``build_transformer`` (if any) builds the transformer and its ``extract``
        (if any) is applied to ``records`` first, unless ``extracted`` says that was done already (the
        spec is inferred from extracted records, so training extracts once for both). ``rules`` (default:
        ``RecordRules()``) and the fields seen in ``records`` decide which records serving accepts.
        """
        records = records if isinstance(records, Sequence) else list(records)
        if len(records) == 0:
            raise FeatureError("cannot fit the feature transform on no records")
        if code is not None and not extracted:
            records = code.extract_records(records)
        array = records_to_array(records, spec)
        if code is not None and code.has_build_transformer:
            transformer = code.build_transformer(spec)
        else:
            transformer = build_transformer(spec)
        with warnings.catch_warnings():
            # logged below, in terms of fields
            warnings.filterwarnings("ignore", message="Skipping features without any observed values")
            try:
                transformer.fit(array)
            except ValueError as exc:
                raise _fit_error(exc, code) from exc
        fitted = cls(spec, transformer, fast=fast, code=code)
        fitted.set_record_checks(rules or RecordRules(), fields_seen(records))
        outputs = set(fitted.output_columns)
        empty = [name for name in spec.numeric if name not in outputs]
        if empty and not (code is not None and code.has_build_transformer):
            logger.warning("numeric fields without any value in the training data are left out: %s", empty)
        if fitted._compiled is not None:
            fitted._verify(records[:_VERIFY_RECORDS], "training records")
        return fitted

    def _verify(self, records: Sequence[Mapping[str, Any]], what: str) -> None:
        """Turn the fast path off (with a warning) unless it reproduces scikit-learn on ``records``
        (as the transform reads them: after ``extract``)."""
        compiled = self._compiled
        if compiled is None:
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reference = self._sklearn(records_to_array(records, self.spec))
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

    def _sklearn(self, array: np.ndarray) -> np.ndarray:
        if len(array) == 0:
            return np.zeros((0, len(self.output_columns)), dtype=np.float64)
        out = self.transformer.transform(array)
        if hasattr(out, "toarray"):  # a user's transformer with sparse output
            out = out.toarray()
        return np.asarray(out, dtype=np.float64)

    def extract(self, records: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
        """``records`` as the transform reads them: through the feature code's ``extract`` if there is one."""
        return self.code.extract_records(records) if self.code is not None else records

    def checked(self, records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """``records`` as the transform reads them (after ``extract``, flattened), each checked by the
        model's record rules (FeatureError names the record and the field)."""
        return self._checker.records(self.extract(records))

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Records (nested or flattened) -> (n, n_features_out) float64."""
        values = self._checker.values(self.extract(records))
        if self._compiled is not None:
            return self._compiled.values(values)
        return self._sklearn(rows_to_array(values, self.spec, "record"))

    def transform_rows(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """Rows in ``spec.input_columns`` order (e.g. headerless CSV) -> (n, n_features_out) float64.

        Rows hold the input columns themselves: the feature code's ``extract`` does not apply to them.
        """
        self._checker.rows(rows)
        if self._compiled is not None:
            return self._compiled.rows(rows)
        return self.transform_rows_sklearn(rows)

    def transform_records_sklearn(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Like :meth:`transform_records`, always through scikit-learn (the reference)."""
        return self._sklearn(rows_to_array(self._checker.values(self.extract(records)), self.spec, "record"))

    def transform_rows_sklearn(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """Like :meth:`transform_rows`, always through scikit-learn (the reference)."""
        self._checker.rows(rows)
        return self._sklearn(rows_to_array(rows, self.spec))

    def transform_records_with_labels(self, records: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, list[Any]]:
        """(:meth:`transform_records`, :meth:`label_values`) of ``records``, extracting them once."""
        records = self.checked(records)
        if self._compiled is not None:
            matrix = self._compiled.records(records)
        else:
            matrix = self._sklearn(records_to_array(records, self.spec))
        return matrix, self._labels(records)

    def label_values(self, records: Iterable[Mapping[str, Any]]) -> list[Any]:
        """The label of each record (after ``extract``), as found (None, NaN or "" is an error naming
        the record)."""
        if self.spec.label is None:
            raise FeatureError("the feature spec has no label")
        records = records if isinstance(records, Sequence) else list(records)
        return self._labels(self.extract(records))

    def _labels(self, records: Iterable[Mapping[str, Any]]) -> list[Any]:
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

    def metadata(self, files: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The content of ``features.json`` (``files``: relative path -> sha256 of the saved files)."""
        import sklearn

        return {
            "format_version": FORMAT_VERSION,
            "spec": self.spec.to_dict(),
            "input_columns": self.spec.input_columns,
            "output_columns": self.output_columns,
            "label": self.spec.label,
            "fingerprint": self.fingerprint,
            "fast_path": self.fast_path,
            "fast_transform": {"file": TABLES_FILE} if self.fast_path else None,
            "code": self.code.metadata() if self.code is not None else None,
            "record_checks": {**self.record_rules.to_dict(), "known_fields": self.known_fields},
            "files": dict(files or {}),
            "sklearn_version": sklearn.__version__,
        }

    def save(self, model_dir: Path | str) -> None:
        """Write the model directory: ``transformer.joblib``, ``fast_transform.npz`` (with the fast path),
        ``code/features.py`` (with feature code), then ``features.json`` (each file atomically)."""
        import joblib

        model_dir = Path(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        transformer_path = model_dir / TRANSFORMER_FILE
        temporary = transformer_path.with_name(transformer_path.name + ".tmp")
        joblib.dump(self.transformer, temporary)
        os.replace(temporary, transformer_path)
        written = [TRANSFORMER_FILE]
        tables_path = model_dir / TABLES_FILE
        if self._compiled is not None:
            save_tables(self._compiled, tables_path, self.fingerprint)
            written.append(TABLES_FILE)
        elif tables_path.exists():
            tables_path.unlink()  # tables of an earlier save would not match
        if self.code is not None:
            self.code.save(model_dir)
            written.append(CODE_PATH)
        files = {name: sha256_file(model_dir / name) for name in written}
        features_path = model_dir / FEATURES_FILE
        temporary = features_path.with_name(features_path.name + ".tmp")
        text = json.dumps(self.metadata(files), indent=2, ensure_ascii=False) + "\n"
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (valid in JSON input) in names: escape them
            data = (json.dumps(self.metadata(files), indent=2, ensure_ascii=True) + "\n").encode("ascii")
        temporary.write_bytes(data)
        os.replace(temporary, features_path)

    @classmethod
    def load(cls, model_dir: Path | str, *, fast: bool = True) -> FittedFeatures:
        """Load what :meth:`save` wrote; FileNotFoundError / ValueError say what is missing or wrong.

        With fast-path tables (and ``fast``), only numpy is needed: the scikit-learn transformer is
        loaded (and checked against ``features.json``) on first use of :attr:`transformer`. Without
        them it is loaded now, and transforms use scikit-learn (logged).
        """
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
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            hint = " (written by an earlier version of this container: train the model again)" if version == 1 else ""
            raise ValueError(
                f"{features_path}: unsupported format_version {version!r} (this code reads {FORMAT_VERSION}){hint}"
            )
        missing = [key for key in ("spec", "output_columns", "fingerprint", "files") if key not in meta]
        if missing:
            raise ValueError(f"{features_path}: missing keys {missing}")
        try:
            spec = FeatureSpec.from_dict(meta["spec"])
        except (SpecError, TypeError) as exc:
            raise ValueError(f"{features_path}: invalid spec: {exc}") from None
        if meta.get("input_columns", spec.input_columns) != spec.input_columns:
            raise ValueError(f"{features_path}: input_columns do not match the spec")
        output_columns = meta["output_columns"]
        if not isinstance(output_columns, list) or not all(isinstance(c, str) for c in output_columns):
            raise ValueError(f"{features_path}: output_columns must be a list of names")
        _check_files(model_dir, meta["files"], features_path)
        code = None
        if meta.get("code") is not None:
            code = FeatureCode.from_model(model_dir, meta["code"], features_path)
            if code.has_extract:
                code.module  # import now: a broken module fails the start, not the first request  # noqa: B018

        def load_transformer() -> Any:
            return _load_sklearn(model_dir, spec, meta, code).transformer

        tables = meta.get("fast_transform")
        if fast and tables is not None:
            if tables != {"file": TABLES_FILE} or TABLES_FILE not in meta["files"]:
                raise ValueError(f"{features_path}: invalid 'fast_transform' entry {tables!r}")
            compiled = load_tables(model_dir / TABLES_FILE, spec, meta["fingerprint"])
            if compiled.n_features_out != len(output_columns):
                raise ValueError(f"{model_dir / TABLES_FILE}: output width differs from {features_path}")
            fitted = cls._from_tables(spec, compiled, output_columns, meta["fingerprint"], code, load_transformer)
            fitted.set_record_checks(*_record_checks(meta, features_path))
            logger.info("loaded %r (fast path from %s)", fitted, TABLES_FILE)
            return fitted
        fitted = _load_sklearn(model_dir, spec, meta, code)
        fitted.set_record_checks(*_record_checks(meta, features_path))
        if fast:
            logger.warning("fast path not available for this model (no %s: the fast path did not apply at training); "
                           "using scikit-learn transform", TABLES_FILE)
        logger.info("loaded %r", fitted)
        return fitted


def _record_checks(meta: Mapping[str, Any], features_path: Path) -> tuple[RecordRules, list[str] | None]:
    """The record rules and known fields ``features.json`` records (models trained before they were
    recorded: the default rules, only input fields known)."""
    checks = meta.get("record_checks") or {}
    known = checks.get("known_fields")
    if known is not None and (not isinstance(known, list) or not all(isinstance(name, str) for name in known)):
        raise ValueError(f"{features_path}: record_checks.known_fields must be a list of names")
    try:
        return RecordRules.from_dict(checks), known
    except ValueError as exc:
        raise ValueError(f"{features_path}: record_checks: {exc}") from None


def _check_files(model_dir: Path, files: Any, features_path: Path) -> None:
    """Every file ``features.json`` lists must exist with the sha256 recorded at training."""
    if not isinstance(files, dict) or TRANSFORMER_FILE not in files:
        raise ValueError(f"{features_path}: invalid 'files' entry")
    for name, digest in files.items():
        if name not in (TRANSFORMER_FILE, TABLES_FILE, CODE_PATH) or not isinstance(digest, str):
            raise ValueError(f"{features_path}: invalid 'files' entry {name!r}")
    for name, digest in files.items():
        path = model_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found (listed in {features_path})")
        if sha256_file(path) != digest:
            raise ValueError(
                f"{path} does not match {features_path} (sha256 differs): the files come from different fits "
                "or were modified"
            )


def _load_sklearn(
    model_dir: Path, spec: FeatureSpec, meta: Mapping[str, Any], code: FeatureCode | None
) -> FittedFeatures:
    """The model of ``model_dir`` from ``transformer.joblib`` (no fast path), checked against ``features.json``."""
    import joblib
    from sklearn.compose import ColumnTransformer

    transformer_path = model_dir / TRANSFORMER_FILE
    if code is not None:
        code.module  # objects of the feature code may be pickled with the transformer  # noqa: B018
    try:
        transformer = joblib.load(transformer_path)
    except Exception as exc:  # unpickling raises many types for truncated or foreign files
        raise ValueError(f"{transformer_path} cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not isinstance(transformer, ColumnTransformer) or not hasattr(transformer, "transformers_"):
        raise ValueError(f"{transformer_path} does not hold a fitted ColumnTransformer")
    fitted = FittedFeatures(spec, transformer, fast=False, code=code)
    if fitted.output_columns != meta["output_columns"]:
        raise ValueError(f"{transformer_path}: output columns differ from {model_dir / FEATURES_FILE}")
    if fitted.fingerprint != meta["fingerprint"]:
        raise ValueError(
            f"{transformer_path} does not match {model_dir / FEATURES_FILE} (fingerprint differs): "
            "the two files come from different fits"
        )
    return fitted
