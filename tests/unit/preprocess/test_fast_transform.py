"""The compiled fast path must give exactly (bit for bit) scikit-learn's numbers, or not be used."""

from __future__ import annotations

import itertools
import logging
import math
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)

from serving_common.features.compiler import compile_transformer
from serving_common.features.fast_transform import (
    CompiledTransform,
    FeatureError,
    get_record,
    load_tables,
    save_tables,
    to_category,
    to_number,
)
from serving_common.features.features import FittedFeatures, build_transformer, records_to_array, rows_to_array
from serving_common.features.records import flatten
from serving_common.features.spec import FeatureSpec, infer_spec
from serving_common.features.validation import RecordRules

# These tests compare the two transforms on every kind of record, empty and all-missing ones included:
# the record checks that refuse such records at serving (test_validation.py) are relaxed here.
ANY_RECORD = RecordRules(max_missing_fields=10**6, unknown_fields="ignore")

COUNTRIES = ["US"] * 30 + ["DE"] * 15 + ["FR"] * 10 + ["JP"] * 6 + ["BR"] * 4 + ["日本", "Ünïcödé", "NZ", "IS", "🙂"]


def _order(rng: random.Random, i: int) -> dict[str, Any]:
    maybe = lambda p, value: None if rng.random() < p else value  # noqa: E731
    record: dict[str, Any] = {
        "order": {
            "amount": maybe(0.08, round(rng.lognormvariate(3.5, 1.2), 2)),
            "items": rng.randint(1, 12),
            "currency": rng.choice(["USD", "EUR", "EUR", "JPY"]),
            "discount": maybe(0.5, rng.choice([0, 5, 10, 0.25])),
        },
        "customer": {
            "age": maybe(0.15, rng.randint(18, 95)),
            "country": maybe(0.05, rng.choice(COUNTRIES)),
            "tenure_days": rng.randint(0, 4000),
        },
        "payment": {"method": rng.choice(["card", "card", "paypal", "wire", "crypto", "gift"])},
        "device": {"os": maybe(0.1, rng.choice(["ios", "android", "windows", "macos", "linux"]))},
        "returning": rng.random() < 0.6,
        "fraud": int(rng.random() < 0.1),
    }
    if i % 7 == 0:
        record["order"]["amount"] = float("nan")  # NaN in training: missing
    return record


_rng = random.Random(20240521)
TRAIN = [_order(_rng, i) for i in range(300)]
BASE_SPEC = infer_spec(TRAIN, label="fraud")


def _adversarial() -> list[dict[str, Any]]:
    nan, tiny = float("nan"), 5e-324
    return [
        {},
        {"order": None, "customer": None},  # objects replaced by nulls: fields missing
        {f: None for f in BASE_SPEC.input_columns},
        {f: nan for f in BASE_SPEC.input_columns},
        {"order": {"amount": 1e308, "items": -1e308, "discount": tiny}, "customer": {"age": -tiny}},
        {"order": {"amount": -1e308, "items": 1e308, "discount": -0.0}, "customer": {"tenure_days": 0.0}},
        {"order.amount": "42", "order.items": " 7 ", "customer.age": "1e3", "customer.tenure_days": "-0"},
        {"order.amount": "nan", "order.items": "", "customer.age": "NaN", "order.discount": "  "},
        {"order": {"amount": True, "items": False}, "returning": "True", "device.os": True},
        {"customer": {"country": "ZZ"}, "payment": {"method": "barter"}, "device": {"os": "plan9"}},
        {"customer": {"country": "日本"}, "order": {"currency": "€"}, "device": {"os": "Ünïcödé"}},
        {"customer": {"country": "🙂"}, "payment.method": " card", "device.os": "IOS"},
        {"customer": {"country": 1}, "order": {"currency": 1.5}, "returning": 0},
        {"customer": {"country": ""}, "payment": {"method": nan}, "returning": None},
        {"order": {"amount": 10**15, "items": 3, "extra": [1, 2]}, "unknown_field": {"x": 1}},
        {"order": {"amount": 123.456, "items": 2}, "customer": {"age": 33, "country": "DE"}, "returning": False},
    ]


ADVERSARIAL = _adversarial()


def _as_csv_value(value: Any, numeric: bool = False) -> str:
    if numeric and isinstance(value, bool):
        return str(int(value))  # a JSON boolean in a numeric field is 1/0; CSV has no booleans
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def _rows(records: list[dict[str, Any]], spec: FeatureSpec) -> list[list[str]]:
    """Headerless CSV rows (all strings) for records, in input column order."""
    out = []
    for record in records:
        flat = flatten(record)
        numeric = set(spec.numeric)
        out.append([_as_csv_value(flat.get(name), name in numeric) for name in spec.input_columns])
    return out


def _sklearn(ct: ColumnTransformer, array) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # overflow for 1e308, skipped empty features, unknown categories
        return np.asarray(ct.transform(array), dtype=np.float64)


def _reloaded(compiled: CompiledTransform, spec: FeatureSpec) -> CompiledTransform:
    """``compiled`` saved as tables (fast_transform.npz) and loaded back, as serving does."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fast_transform.npz"
        save_tables(compiled, path, "f" * 64)
        return load_tables(path, spec, "f" * 64)


def _assert_exact(fast: np.ndarray, reference: np.ndarray) -> None:
    assert fast.dtype == np.float64 and fast.shape == reference.shape
    if not np.array_equal(fast, reference, equal_nan=True):
        rows, cols = np.nonzero(~((fast == reference) | (np.isnan(fast) & np.isnan(reference))))
        pytest.fail(f"fast path differs at {list(zip(rows.tolist(), cols.tolist(), strict=True))[:5]}")
    # also the sign of zeros and NaN payload-free equality: compare the raw bits
    assert np.array_equal(fast.view(np.int64), reference.view(np.int64))


def _by_columns(compiled: CompiledTransform, records: list[dict[str, Any]]) -> np.ndarray:
    """``compiled.columns`` on the values of ``records``, column by column (as a columnar reader gives them:
    the categories as codes into their distinct values)."""
    flat = [get_record(record, i) for i, record in enumerate(records)]
    numbers = np.array([[to_number(r.get(name), name, i) for name in compiled.numeric] for i, r in enumerate(flat)],
                       dtype=np.float64).reshape(len(records), len(compiled.numeric))
    categories = []
    for name in compiled.categorical:
        values = [to_category(r.get(name), name, i) for i, r in enumerate(flat)]
        distinct = list(dict.fromkeys(values))
        codes = np.array([distinct.index(value) for value in values], dtype=np.intp)
        categories.append((codes, distinct))
    return compiled.columns(numbers, categories)


def _check_everything(fitted: FittedFeatures, compiled: CompiledTransform) -> None:
    """Batch (all, 100, 1 records) and records / rows: fast == scikit-learn, bit for bit; the same for
    the fast path rebuilt from its saved tables (what serving uses).

    Smaller batches and single records are compared with rows of one batch transform: scikit-learn's
    transform is row-wise (test_single_record_sklearn_equals_batch_rows checks that too).
    """
    spec, ct = fitted.spec, fitted.transformer
    records = TRAIN + ADVERSARIAL
    rows = _rows(records, spec)
    reference = _sklearn(ct, records_to_array(records, spec))
    row_reference = _sklearn(ct, rows_to_array(rows, spec))
    _assert_exact(fitted.transform_records(records), reference)
    _assert_exact(fitted.transform_rows(rows), row_reference)
    for fast in (compiled, _reloaded(compiled, spec)):
        _assert_exact(fast.records(records), reference)
        _assert_exact(fast.rows(rows), row_reference)
        _assert_exact(_by_columns(fast, records), reference)
        start = len(records) - 100
        _assert_exact(fast.records(records[start:]), reference[start:])
        _assert_exact(fast.rows(rows[start:]), row_reference[start:])
        for i in [*range(len(TRAIN), len(records)), 0, 1, 2]:  # every adversarial record, a few others
            _assert_exact(fast.records([records[i]]), reference[i : i + 1])
            _assert_exact(fast.rows([rows[i]]), row_reference[i : i + 1])
            _assert_exact(_by_columns(fast, [records[i]]), reference[i : i + 1])


# -- the pipelines build_transformer makes, every option combination --------------------------------

GROUPING = [
    {},
    {"min_frequency": 20},
    {"max_categories": 4},
    {"min_frequency": 0.05, "max_categories": 6},
]
COMBINATIONS = list(itertools.product(["onehot", "ordinal"], GROUPING, ["mean", "median", "constant0"], [True, False]))


@pytest.mark.parametrize(
    ("encoding", "grouping", "impute", "scale"),
    COMBINATIONS,
    ids=[f"{e}-{'+'.join(f'{k}={v}' for k, v in g.items()) or 'all'}-{i}-{'scaled' if s else 'raw'}"
         for e, g, i, s in COMBINATIONS],
)  # fmt: skip
def test_fast_path_equals_sklearn(encoding, grouping, impute, scale):
    spec = FeatureSpec(
        numeric=BASE_SPEC.numeric,
        categorical=BASE_SPEC.categorical,
        label="fraud",
        numeric_impute=impute,
        scale=scale,
        categorical_encoding=encoding,
        **grouping,
    )
    fitted = FittedFeatures.fit(TRAIN, spec, rules=ANY_RECORD)
    assert fitted.fast_path
    _check_everything(fitted, fitted._compiled)


def test_realistic_spec_and_infrequent_grouping_are_exercised():
    assert BASE_SPEC.numeric == ["customer.age", "customer.tenure_days", "order.amount", "order.discount",
                                 "order.items"]  # fmt: skip
    assert BASE_SPEC.categorical == ["customer.country", "device.os", "order.currency", "payment.method",
                                     "returning"]  # fmt: skip
    spec = FeatureSpec(numeric=BASE_SPEC.numeric, categorical=BASE_SPEC.categorical, min_frequency=20)
    fitted = FittedFeatures.fit(TRAIN, spec, rules=ANY_RECORD)
    assert "customer.country_infrequent_sklearn" in fitted.output_columns
    unseen = fitted.transform_records([{"customer": {"country": "ZZ"}}])
    assert unseen[0, fitted.output_columns.index("customer.country_infrequent_sklearn")] == 1.0


def test_single_record_sklearn_equals_batch_rows():
    """Justifies comparing single-record fast transforms with rows of one batch sklearn transform."""
    fitted = FittedFeatures.fit(TRAIN, BASE_SPEC, rules=ANY_RECORD)
    batch = _sklearn(fitted.transformer, records_to_array(ADVERSARIAL, BASE_SPEC))
    for i in range(0, len(ADVERSARIAL), 3):
        single = _sklearn(fitted.transformer, records_to_array([ADVERSARIAL[i]], BASE_SPEC))
        _assert_exact(single, batch[i : i + 1])
        _assert_exact(fitted.transform_records([ADVERSARIAL[i]]), single)


def test_integers_as_csv_strings_equal_numbers():
    fitted = FittedFeatures.fit(TRAIN, BASE_SPEC, rules=ANY_RECORD)
    cols = BASE_SPEC.input_columns
    record = {"order.amount": 42, "order.items": 3, "customer.age": 51, "customer.country": "DE", "returning": True}
    row = [_as_csv_value(record.get(c)) for c in cols]
    assert row[cols.index("order.amount")] == "42" and row[cols.index("returning")] == "True"
    _assert_exact(fitted.transform_rows([row]), fitted.transform_records([record]))


# -- uninterpretable values: the same errors on both paths -----------------------------------------

BAD_RECORDS = [
    {"order": {"amount": "abc"}},
    {"order": {"amount": {"a": 1}}},
    {"order": {"items": [1, 2]}},
    {"customer": {"age": float("inf")}},
    {"customer": {"age": float("-inf")}},
    {"customer": {"tenure_days": "-Infinity"}},
    {"order": {"amount": 10**400}},
    {"customer": {"country": ["DE"]}},
    {"device": {"os": {"name": "ios"}}},
    {"customer.age": 1, "customer": {"age": 2}},
    "not a record",
]


@pytest.mark.parametrize("bad", BAD_RECORDS, ids=[str(i) for i in range(len(BAD_RECORDS))])
def test_same_errors_as_records_to_array(bad):
    fitted = FittedFeatures.fit(TRAIN[:50], BASE_SPEC, rules=ANY_RECORD)
    records = [TRAIN[0], TRAIN[1], bad]
    with pytest.raises(FeatureError) as reference:
        records_to_array(records, BASE_SPEC)
    assert str(reference.value).startswith("record 2: ")
    with pytest.raises(FeatureError) as fast_batch:
        fitted.transform_records(records)
    with pytest.raises(FeatureError) as fast_single:
        fitted.transform_records([bad])
    assert str(fast_batch.value) == str(reference.value)
    assert str(fast_single.value) == str(reference.value).replace("record 2: ", "record 0: ")


@pytest.mark.parametrize(
    "row_value", ["abc", "inf", "-inf", "1e999", "1,5"], ids=["text", "inf", "-inf", "overflow", "comma"]
)
def test_same_errors_for_rows(row_value):
    fitted = FittedFeatures.fit(TRAIN[:50], BASE_SPEC, rules=ANY_RECORD)
    good = _rows([TRAIN[0]], BASE_SPEC)[0]
    bad = list(good)
    bad[BASE_SPEC.input_columns.index("order.amount")] = row_value
    with pytest.raises(FeatureError) as reference:
        rows_to_array([good, bad], BASE_SPEC)
    with pytest.raises(FeatureError) as fast:
        fitted.transform_rows([good, bad])
    assert str(fast.value) == str(reference.value)
    assert str(fast.value).startswith("row 1: field 'order.amount': ")
    with pytest.raises(FeatureError, match="row 0: expected 10 values"):
        fitted.transform_rows([good[:-1]])


def test_single_object_instead_of_a_list_is_refused():
    fitted = FittedFeatures.fit(TRAIN[:50], BASE_SPEC, rules=ANY_RECORD)
    with pytest.raises(FeatureError, match="expected a list of records"):
        fitted.transform_records(TRAIN[0])


# -- hand-built transformers: supported variants compile, others fall back --------------------------

NUM, CAT = BASE_SPEC.numeric, BASE_SPEC.categorical
# Training data without missing categories, so an encoder without imputer learns no NaN category.
COMPLETE = [{**flatten(r), **{c: flatten(r).get(c) or "none" for c in CAT}} for r in TRAIN]


NUM_AT, CAT_AT = BASE_SPEC.numeric_indices, BASE_SPEC.categorical_indices  # positions in the input array


def _ct(numeric: Any, categorical: Any, **kwargs: Any) -> ColumnTransformer:
    return ColumnTransformer(
        [("num", numeric, NUM_AT), ("cat", categorical, CAT_AT)],
        verbose_feature_names_out=False,
        sparse_threshold=0.0,
        **kwargs,
    )


def _impute_cat() -> SimpleImputer:
    return SimpleImputer(strategy="constant", fill_value="__missing__")


SUPPORTED = {
    "onehot-drop-first": _ct(
        make_pipeline(SimpleImputer(), StandardScaler()),
        make_pipeline(_impute_cat(), OneHotEncoder(drop="first", sparse_output=False, handle_unknown="ignore")),
    ),
    "onehot-drop-if-binary-infrequent": _ct(
        make_pipeline(SimpleImputer(strategy="mean")),
        make_pipeline(
            _impute_cat(),
            OneHotEncoder(
                drop="if_binary", sparse_output=False, handle_unknown="infrequent_if_exist", max_categories=3
            ),
        ),
    ),
    "scaler-without-mean": _ct(
        make_pipeline(SimpleImputer(), StandardScaler(with_mean=False)),
        make_pipeline(_impute_cat(), OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)),
    ),
    "scaler-without-std-most-frequent": _ct(
        make_pipeline(SimpleImputer(strategy="most_frequent"), StandardScaler(with_std=False)),
        make_pipeline(
            SimpleImputer(strategy="most_frequent"), OneHotEncoder(sparse_output=False, handle_unknown="ignore")
        ),
    ),
    "no-imputers": _ct(
        "passthrough",
        OneHotEncoder(sparse_output=False, handle_unknown="ignore", min_frequency=10),
    ),
    "ordinal-no-imputer-scaler-only": _ct(
        StandardScaler(),
        OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-7, min_frequency=15),
    ),
    "keep-empty-features": _ct(
        SimpleImputer(keep_empty_features=True),
        make_pipeline(_impute_cat(), OneHotEncoder(sparse_output=False, handle_unknown="ignore")),
    ),
}


@pytest.mark.parametrize("name", list(SUPPORTED))
def test_supported_hand_built_transformers_compile_exactly(name):
    ct = SUPPORTED[name]
    training = [dict(r, **{"order.discount": None}) for r in COMPLETE] if name == "keep-empty-features" else COMPLETE
    ct.fit(records_to_array(training, BASE_SPEC))
    fitted = FittedFeatures(BASE_SPEC, ct)
    fitted.set_record_checks(ANY_RECORD)
    assert fitted.fast_path, name
    _check_everything(fitted, compile_transformer(ct, BASE_SPEC))


def test_imputer_dropping_an_all_missing_feature():
    training = [dict(flatten(r), **{"customer.age": None}) for r in TRAIN]
    fitted = FittedFeatures.fit(training, BASE_SPEC, rules=ANY_RECORD)
    assert "customer.age" not in fitted.output_columns and fitted.fast_path
    _check_everything(fitted, fitted._compiled)


def test_all_missing_categorical_field_in_training():
    training = [dict(flatten(r), **{"device.os": None}) for r in TRAIN]
    for encoding in ("onehot", "ordinal"):
        spec = FeatureSpec(numeric=NUM, categorical=CAT, categorical_encoding=encoding)
        fitted = FittedFeatures.fit(training, spec, rules=ANY_RECORD)
        assert fitted.fast_path
        _check_everything(fitted, fitted._compiled)


def test_numeric_only_and_categorical_only_specs():
    for spec in (FeatureSpec(numeric=NUM, categorical=[]), FeatureSpec(numeric=[], categorical=CAT)):
        fitted = FittedFeatures.fit(TRAIN, spec, rules=ANY_RECORD)
        assert fitted.fast_path
        records = ADVERSARIAL + TRAIN[:20]
        _assert_exact(fitted.transform_records(records), fitted.transform_records_sklearn(records))
        _assert_exact(fitted.transform_records(records[:1]), fitted.transform_records_sklearn(records[:1]))


def _onehot() -> Pipeline:
    return make_pipeline(_impute_cat(), OneHotEncoder(sparse_output=False, handle_unknown="ignore"))


# what the warning names -> (transformer, whether it accepts unknown categories)
UNSUPPORTED = {
    "MinMaxScaler": lambda: (_ct(make_pipeline(SimpleImputer(), MinMaxScaler()), _onehot()), True),
    "FunctionTransformer": lambda: (
        _ct(make_pipeline(SimpleImputer(), FunctionTransformer(np.sqrt, feature_names_out="one-to-one")), _onehot()),
        True,
    ),
    "SimpleImputer(add_indicator=True)": lambda: (_ct(SimpleImputer(add_indicator=True), _onehot()), True),
    "OneHotEncoder(handle_unknown='error')": lambda: (
        _ct(SimpleImputer(), make_pipeline(_impute_cat(), OneHotEncoder(sparse_output=False))),
        False,
    ),
    "OrdinalEncoder(handle_unknown='error')": lambda: (
        _ct(SimpleImputer(), make_pipeline(_impute_cat(), OrdinalEncoder())),
        False,
    ),
    "ColumnTransformer with sparse output": lambda: (
        ColumnTransformer(
            [("num", SimpleImputer(), NUM_AT), ("cat", make_pipeline(_impute_cat(), OneHotEncoder()), CAT_AT)],
            sparse_threshold=1.0,
        ),
        True,
    ),
}


@pytest.mark.parametrize("what", list(UNSUPPORTED))
def test_unsupported_transformers_fall_back_to_sklearn(what, caplog):
    ct, accepts_unknown = UNSUPPORTED[what]()
    ct.fit(records_to_array(COMPLETE, BASE_SPEC))
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        assert compile_transformer(ct, BASE_SPEC) is None
    assert f"fast path not available for {what}; using scikit-learn transform" in caplog.text
    if what.endswith("sparse output"):
        return  # FittedFeatures transforms are dense
    fitted = FittedFeatures(BASE_SPEC, ct)
    fitted.set_record_checks(ANY_RECORD)
    assert not fitted.fast_path
    records = COMPLETE[:40] + (ADVERSARIAL if accepts_unknown else [])
    if what == "FunctionTransformer":  # sqrt of negative numbers
        records = [r for r in records if r not in ADVERSARIAL[4:6]]
    expected = _sklearn(ct, records_to_array(records, BASE_SPEC))
    _assert_exact(fitted.transform_records(records), expected)
    _assert_exact(fitted.transform_records(records[:1]), expected[:1])


def test_other_objects_are_not_compiled(caplog):
    pipeline = Pipeline([("scale", StandardScaler())])
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        assert compile_transformer(pipeline, BASE_SPEC) is None
        assert compile_transformer(build_transformer(BASE_SPEC), BASE_SPEC) is None  # unfitted
    assert "fast path not available for Pipeline" in caplog.text
    assert "fast path not available for an unfitted ColumnTransformer" in caplog.text


def test_columns_not_in_the_spec_are_not_compiled(caplog):
    ct = ColumnTransformer([("num", SimpleImputer(), NUM_AT)], verbose_feature_names_out=False)
    ct.fit(records_to_array(TRAIN, BASE_SPEC))
    spec = FeatureSpec(numeric=NUM[:2], categorical=CAT)
    mixed = ColumnTransformer([("both", SimpleImputer(strategy="most_frequent"), [0, len(NUM)])])
    mixed.fit(records_to_array(COMPLETE, BASE_SPEC))
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        assert compile_transformer(ct, spec) is None
        assert compile_transformer(mixed, BASE_SPEC) is None
    assert "a ColumnTransformer fitted on 10 columns (the spec has 7)" in caplog.text
    assert "a transformer mixing numeric and categorical columns" in caplog.text


def test_columns_selected_by_name_are_not_compiled(caplog):
    import pandas as pd  # a development dependency: only a DataFrame lets columns be selected by name

    array = records_to_array(COMPLETE, BASE_SPEC)
    frame = pd.DataFrame({name: array[:, i] for i, name in enumerate(BASE_SPEC.input_columns)})
    ct = ColumnTransformer([("num", SimpleImputer(), NUM)], verbose_feature_names_out=False).fit(frame)
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        assert compile_transformer(ct, BASE_SPEC) is None
    assert "column selection by name (select columns by position in spec.input_columns)" in caplog.text


def test_compiled_object_is_callable_and_reports_its_width():
    fitted = FittedFeatures.fit(TRAIN, BASE_SPEC, rules=ANY_RECORD)
    compiled = compile_transformer(fitted.transformer, BASE_SPEC)
    assert compiled is not None and compiled.n_features_out == len(fitted.output_columns)
    _assert_exact(compiled(TRAIN[:3]), compiled.records(TRAIN[:3]))
    assert compiled.records([]).shape == (0, compiled.n_features_out)
    assert compiled.rows([]).shape == (0, compiled.n_features_out)


def test_a_fast_path_that_disagrees_with_sklearn_is_switched_off(caplog):
    fitted = FittedFeatures.fit(TRAIN, BASE_SPEC, rules=ANY_RECORD)
    fitted._compiled._numeric_plan[0] = (*fitted._compiled._numeric_plan[0][:3], 1e9, 1.0)  # sabotage
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        fitted._verify(TRAIN[:10], "test records")
    assert not fitted.fast_path
    assert "fast path disabled: it differs from scikit-learn on test records" in caplog.text
    _assert_exact(fitted.transform_records(TRAIN[:5]), fitted.transform_records_sklearn(TRAIN[:5]))


def test_high_cardinality_categories():
    rng = random.Random(3)
    training = [{"x": rng.random(), "id": f"user-{rng.randrange(1500)}"} for _ in range(3000)]
    spec = FeatureSpec(numeric=["x"], categorical=["id"])
    fitted = FittedFeatures.fit(training, spec, rules=ANY_RECORD)
    assert fitted.fast_path and len(fitted.output_columns) > 1000
    assert len(fitted._compiled.probe_records()) == 256
    records = [*training[:50], {"x": 0.5, "id": "user-unknown"}, {}]
    _assert_exact(fitted.transform_records(records), fitted.transform_records_sklearn(records))
    spec = FeatureSpec(numeric=["x"], categorical=["id"], max_categories=20, categorical_encoding="ordinal")
    fitted = FittedFeatures.fit(training, spec, rules=ANY_RECORD)
    assert fitted.fast_path
    _assert_exact(fitted.transform_records(records), fitted.transform_records_sklearn(records))


def test_tables_keep_every_category_exactly(tmp_path):
    """Category names survive fast_transform.npz bit for bit: NUL characters (which NumPy's str arrays would
    strip), lone surrogates (valid in JSON), emoji, and names that differ only in Unicode normalisation."""
    odd = ["a\x00", "a", "\x00", "\ud800", "🙂", "e\u0301", "\u00e9", " ", "x" * 5000]
    training = [{"x": float(i), "c": odd[i % len(odd)]} for i in range(60)]
    for encoding in ("onehot", "ordinal"):
        spec = FeatureSpec(numeric=["x"], categorical=["c"], categorical_encoding=encoding)
        fitted = FittedFeatures.fit(training, spec, rules=ANY_RECORD)
        assert fitted.fast_path
        fitted.save(tmp_path / encoding)
        loaded = FittedFeatures.load(tmp_path / encoding)
        assert loaded.fast_path and loaded._transformer is None
        probe = [*training[: len(odd)], {"c": "a\x00\x00"}, {"c": "\ud801"}, {}]
        expected = fitted.transform_records_sklearn(probe)
        _assert_exact(loaded.transform_records(probe), expected)
        assert len({tuple(row) for row in expected[: len(odd)].tolist()}) == len(odd)  # all distinct
