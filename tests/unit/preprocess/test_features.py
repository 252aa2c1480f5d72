"""The feature transform: building, input arrays, fitting, labels, save/load."""

from __future__ import annotations

import hashlib
import json
import math
import shutil

import numpy as np
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from serving_common.features.features import (
    FEATURES_FILE,
    TABLES_FILE,
    TRANSFORMER_FILE,
    FeatureError,
    FittedFeatures,
    build_transformer,
    records_to_array,
    rows_to_array,
)
from serving_common.features.spec import FeatureSpec

SPEC = FeatureSpec(numeric=["amount", "customer.age"], categorical=["country", "vip"], label="fraud")

RECORDS = [
    {"amount": 10.0, "customer": {"age": 30}, "country": "DE", "vip": True, "fraud": 0},
    {"amount": 20.0, "customer": {"age": None}, "country": "US", "vip": False, "fraud": 1},
    {"amount": None, "customer": {"age": 50}, "country": None, "vip": False, "fraud": 0},
    {"amount": 40.0, "customer": {"age": 20}, "country": "DE", "vip": True, "fraud": 1},
    {"amount": 35.5, "customer.age": 44, "country": 1, "vip": "True", "fraud": 0},
]


@pytest.fixture(scope="module")
def fitted() -> FittedFeatures:
    return FittedFeatures.fit(RECORDS, SPEC)


# -- build_transformer -----------------------------------------------------------------------------


def test_build_transformer_default_pipelines():
    ct = build_transformer(SPEC)
    assert isinstance(ct, ColumnTransformer)
    assert ct.remainder == "drop" and ct.verbose_feature_names_out is False
    (_, num, num_cols), (_, cat, cat_cols) = ct.transformers
    assert (num_cols, cat_cols) == ([0, 1], [2, 3])  # positions in SPEC.input_columns: fitted on arrays
    imputer, scaler = (step for _, step in num.steps)
    assert isinstance(imputer, SimpleImputer) and imputer.strategy == "median" and not imputer.add_indicator
    assert isinstance(scaler, StandardScaler)
    cat_imputer, encoder = (step for _, step in cat.steps)
    assert cat_imputer.strategy == "constant" and cat_imputer.fill_value == "__missing__"
    assert isinstance(encoder, OneHotEncoder)
    assert encoder.handle_unknown == "ignore" and encoder.sparse_output is False and encoder.dtype == np.float64


def test_build_transformer_options():
    spec = FeatureSpec(numeric=["a"], categorical=["b"], numeric_impute="constant0", scale=False, min_frequency=3)
    (_, num, _), (_, cat, _) = build_transformer(spec).transformers
    assert [type(s) for _, s in num.steps] == [SimpleImputer]
    assert num.steps[0][1].strategy == "constant" and num.steps[0][1].fill_value == 0.0
    encoder = cat.steps[1][1]
    assert encoder.handle_unknown == "infrequent_if_exist" and encoder.min_frequency == 3

    spec = FeatureSpec(numeric=[], categorical=["b"], categorical_encoding="ordinal", max_categories=4)
    ct = build_transformer(spec)
    assert len(ct.transformers) == 1
    encoder = ct.transformers[0][1].steps[1][1]
    assert isinstance(encoder, OrdinalEncoder)
    assert (encoder.handle_unknown, encoder.unknown_value, encoder.encoded_missing_value) == (
        "use_encoded_value",
        -1,
        -1,
    )
    assert encoder.max_categories == 4


# -- input arrays ----------------------------------------------------------------------------------


def _column(array, name):
    return array[:, SPEC.input_columns.index(name)].tolist()


def test_records_to_array_types_and_missing_values():
    array = records_to_array(RECORDS, SPEC)
    assert array.dtype == object and array.shape == (5, 4)  # columns: SPEC.input_columns
    amount = _column(array, "amount")
    assert amount[:2] == [10.0, 20.0] and math.isnan(amount[2])
    assert all(type(v) is float for v in amount + _column(array, "customer.age"))  # floats, NaN = missing
    assert _column(array, "customer.age")[-1] == 44.0  # flattened and dotted records both work
    # categories are strings: 1 -> "1", True -> "True"; missing is NaN (what SimpleImputer looks for)
    country = _column(array, "country")
    assert country[:2] == ["DE", "US"] and country[4] == "1"
    assert type(country[2]) is float and math.isnan(country[2])
    assert _column(array, "vip") == ["True", "False", "False", "True", "True"]


def test_rows_to_array_parses_csv_strings():
    rows = [["12.5", " 7 ", "DE", "True"], ["", "", "", ""], ["1e3", "nan", "東京", "x"]]
    array = rows_to_array(rows, SPEC)
    assert array[0, 0] == 12.5 and array[0, 1] == 7.0
    assert all(math.isnan(v) for v in array[1])
    assert array[2, 0] == 1000.0 and math.isnan(array[2, 1])
    assert array[2, 2] == "東京"


def test_empty_input_gives_an_empty_array():
    array = records_to_array([], SPEC)
    assert array.shape == (0, 4) and array.dtype == object


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"amount": "abc"}, "record 1: field 'amount': 'abc' is not a number"),
        ({"amount": {"a": 1}}, "record 1: field 'amount': expected a number, got an object"),
        ({"amount": {}}, "record 1: field 'amount': expected a number, got an object"),
        ({"country": {"code": "DE"}}, "field 'country': expected a single value, got an object"),
        ({"customer.age": 1, "customer": {"age": 2}}, "record 1: field 'customer.age' occurs twice"),
        ({"amount": [1]}, "record 1: field 'amount': expected a number, got a list"),
        ({"amount": float("inf")}, "record 1: field 'amount': inf is not finite"),
        ({"customer": {"age": float("-inf")}}, "field 'customer.age': -inf is not finite"),
        ({"amount": "Infinity"}, "'Infinity' is not finite"),
        ({"amount": 10**400}, "not finite"),
        ({"country": ["DE"]}, "record 1: field 'country': expected a single value, got a list"),
        ([1, 2], "record 1: expected a JSON object"),
    ],
)
def test_uninterpretable_values_raise_feature_error(record, message):
    records = [{"amount": 1.0}, record]
    with pytest.raises(FeatureError, match=message.replace("(", r"\(").replace("[", r"\[")):
        records_to_array(records, SPEC)
    assert issubclass(FeatureError, ValueError)


def test_nan_number_is_missing_and_booleans_are_numbers():
    array = records_to_array([{"amount": float("nan"), "customer.age": True}], SPEC)
    assert math.isnan(array[0, 0]) and array[0, 1] == 1.0


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([["1", "2", "DE"]], r"row 0: expected 4 values \(amount, customer.age, country, vip\), got 3"),
        ([["1", "2", "DE", "x"], "1,2,DE,x"], "row 1: expected a list of 4 values"),
        ([["1", "x2", "DE", "x"]], "row 0: field 'customer.age': 'x2' is not a number"),
    ],
)
def test_bad_rows_raise_feature_error(rows, message):
    with pytest.raises(FeatureError, match=message):
        rows_to_array(rows, SPEC)


# -- FittedFeatures --------------------------------------------------------------------------------


def test_fit_output_columns_and_shape(fitted):
    assert fitted.output_columns == [
        "amount",
        "customer.age",
        "country_1",
        "country_DE",
        "country_US",
        "country___missing__",
        "vip_False",
        "vip_True",
    ]
    out = fitted.transform_records(RECORDS)
    assert out.shape == (5, 8) and out.dtype == np.float64
    assert np.array_equal(out, fitted.transform_records_sklearn(RECORDS))
    assert fitted.fast_path and fitted.n_features_out == 8
    assert fitted.transform_records([]).shape == (0, 8)
    assert fitted.transform_records_sklearn([]).shape == (0, 8)


def test_scaled_numeric_matches_standard_scaler(fitted):
    out = fitted.transform_records_sklearn(RECORDS)
    amounts = np.array([10.0, 20.0, 27.75, 40.0, 35.5])  # the missing amount takes the median
    expected = (amounts - amounts.mean()) / amounts.std()
    assert np.allclose(out[:, 0], expected)


def test_same_category_whether_number_or_string(fitted):
    as_number = fitted.transform_records([{"country": 1, "vip": True}])
    as_string = fitted.transform_records([{"country": "1", "vip": "True"}])
    as_row = fitted.transform_rows([["", "", "1", "True"]])
    assert np.array_equal(as_number, as_string) and np.array_equal(as_number, as_row)
    assert as_number[0, fitted.output_columns.index("country_1")] == 1.0


def test_unknown_category_is_all_zeros_and_missing_is_its_own_category(fitted):
    out = fitted.transform_records([{"country": "ZZ"}, {"amount": 5}])
    country = [i for i, c in enumerate(fitted.output_columns) if c.startswith("country_")]
    assert out[0, country].sum() == 0.0
    assert out[1, fitted.output_columns.index("country___missing__")] == 1.0


def test_transform_rows_equals_transform_records(fitted):
    rows = [["10", "30", "DE", "True"], ["", "", "", "False"], ["1e308", "-5e-324", "US", "False"]]
    records = [
        {"amount": 10, "customer": {"age": 30}, "country": "DE", "vip": True},
        {"vip": False},
        {"amount": 1e308, "customer.age": -5e-324, "country": "US", "vip": False},
    ]
    with np.errstate(over="ignore"):
        expected = fitted.transform_rows_sklearn(rows)
    assert np.array_equal(fitted.transform_rows(rows), expected)
    assert np.array_equal(fitted.transform_records(records), expected)


def test_all_missing_numeric_field_is_left_out(caplog):
    records = [{"a": None, "b": 1.0, "c": "x"}, {"b": 2.0, "c": "y"}]
    spec = FeatureSpec(numeric=["a", "b"], categorical=["c"])
    fitted = FittedFeatures.fit(records, spec)
    assert fitted.output_columns == ["b", "c_x", "c_y"]
    assert "without any value in the training data" in caplog.text
    probe = [{"a": 5.0, "b": 3.0, "c": "y"}]
    with pytest.warns(UserWarning, match="Skipping features"):
        expected = fitted.transform_records_sklearn(probe)
    assert np.array_equal(fitted.transform_records(probe), expected)


def test_fit_needs_records():
    with pytest.raises(FeatureError, match="no records"):
        FittedFeatures.fit([], SPEC)


def test_fit_reports_bad_training_values():
    with pytest.raises(FeatureError, match="record 1: field 'amount': 'n/a' is not a number"):
        FittedFeatures.fit([{"amount": 1}, {"amount": "n/a"}], SPEC)


def test_fast_false_uses_sklearn():
    fitted = FittedFeatures.fit(RECORDS, SPEC, fast=False)
    assert not fitted.fast_path
    assert np.array_equal(fitted.transform_records(RECORDS), fitted.transform_records_sklearn(RECORDS))


# -- labels ----------------------------------------------------------------------------------------


def test_label_values(fitted):
    assert fitted.label_values(RECORDS) == [0, 1, 0, 1, 0]
    assert fitted.label_values([{"fraud": "yes"}, {"x": {"y": 1}, "fraud": False}]) == ["yes", False]


@pytest.mark.parametrize("missing", [{}, {"fraud": None}, {"fraud": float("nan")}, {"fraud": ""}])
def test_missing_label_names_the_record(fitted, missing):
    with pytest.raises(FeatureError, match="record 1: the label 'fraud' is missing"):
        fitted.label_values([{"fraud": 1}, missing])
    with pytest.raises(FeatureError, match="record 0: the label 'fraud' is an object"):
        fitted.label_values([{"fraud": {"a": 1}}])


def test_label_values_without_label():
    fitted = FittedFeatures.fit(RECORDS, FeatureSpec(numeric=["amount"], categorical=[]))
    with pytest.raises(FeatureError, match="no label"):
        fitted.label_values(RECORDS)


# -- save / load -----------------------------------------------------------------------------------


def test_save_and_load_round_trip(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / FEATURES_FILE).read_text())
    assert meta["format_version"] == 2
    assert meta["spec"] == SPEC.to_dict()
    assert meta["input_columns"] == SPEC.input_columns
    assert meta["output_columns"] == fitted.output_columns
    assert meta["label"] == "fraud"
    assert meta["fingerprint"] == fitted.fingerprint and len(fitted.fingerprint) == 64
    assert meta["fast_path"] is True and meta["fast_transform"] == {"file": TABLES_FILE}
    assert meta["code"] is None
    assert sorted(meta["files"]) == [TABLES_FILE, TRANSFORMER_FILE]
    assert meta["files"][TABLES_FILE] == hashlib.sha256((tmp_path / "model" / TABLES_FILE).read_bytes()).hexdigest()
    with np.load(tmp_path / "model" / TABLES_FILE, allow_pickle=False) as tables:  # plain arrays, no pickle
        assert str(tables["fingerprint"]) == fitted.fingerprint
    loaded = FittedFeatures.load(tmp_path / "model")
    assert loaded.fingerprint == fitted.fingerprint and loaded.spec == SPEC and loaded.fast_path
    assert loaded.output_columns == fitted.output_columns
    assert loaded._transformer is None  # the fast path came from the tables: scikit-learn not needed
    assert np.array_equal(loaded.transform_records(RECORDS), fitted.transform_records(RECORDS))
    assert np.array_equal(loaded.transform_rows([["1", "", "DE", ""]]), fitted.transform_rows([["1", "", "DE", ""]]))
    assert np.array_equal(loaded.transform_records_sklearn(RECORDS), fitted.transform_records(RECORDS))
    assert loaded._transformer is not None  # loaded on demand, checked against features.json
    assert not list((tmp_path / "model").glob("*.tmp"))


def test_a_model_without_fast_path_loads_the_sklearn_transform(tmp_path, caplog):
    fitted = FittedFeatures.fit(RECORDS, SPEC, fast=False)
    FittedFeatures.fit(RECORDS, SPEC).save(tmp_path)  # an earlier save's tables must not survive
    fitted.save(tmp_path)
    meta = json.loads((tmp_path / FEATURES_FILE).read_text())
    assert meta["fast_path"] is False and meta["fast_transform"] is None and list(meta["files"]) == [TRANSFORMER_FILE]
    assert not (tmp_path / TABLES_FILE).exists()
    loaded = FittedFeatures.load(tmp_path)
    assert not loaded.fast_path and loaded.fingerprint == fitted.fingerprint
    assert "fast path not available for this model" in caplog.text and "using scikit-learn transform" in caplog.text
    assert np.array_equal(loaded.transform_records(RECORDS), fitted.transform_records_sklearn(RECORDS))


def test_load_with_fast_false_uses_sklearn(fitted, tmp_path):
    fitted.save(tmp_path)
    loaded = FittedFeatures.load(tmp_path, fast=False)
    assert not loaded.fast_path and loaded._transformer is not None
    assert np.array_equal(loaded.transform_records(RECORDS), fitted.transform_records(RECORDS))


def test_fingerprint_is_stable_and_tracks_the_fit(fitted):
    fitted.transform_records(RECORDS)
    fitted.transform_records_sklearn(RECORDS)
    assert FittedFeatures(fitted.spec, fitted.transformer).fingerprint == fitted.fingerprint
    other = FittedFeatures.fit(RECORDS[:4], SPEC)
    assert other.fingerprint != fitted.fingerprint


def test_load_missing_files(fitted, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"features\.json not found"):
        FittedFeatures.load(tmp_path)
    fitted.save(tmp_path)
    (tmp_path / TABLES_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"fast_transform\.npz not found"):
        FittedFeatures.load(tmp_path)
    (tmp_path / TRANSFORMER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"transformer\.joblib not found"):
        FittedFeatures.load(tmp_path)


def _edit(model_dir, **changes):
    path = model_dir / FEATURES_FILE
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def _rehash(model_dir):
    """Record the current digests of the files, so that the checks behind the sha256 check are reached."""
    meta = json.loads((model_dir / FEATURES_FILE).read_text())
    digests = {name: hashlib.sha256((model_dir / name).read_bytes()).hexdigest() for name in meta["files"]}
    _edit(model_dir, files=digests)


def _garbage(model_dir, name, rehash=False):
    (model_dir / name).write_bytes(b"garbage")
    if rehash:
        _rehash(model_dir)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "sklearn"])
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / FEATURES_FILE).write_text("{not json"), "features.json is not valid JSON"),
        (lambda d: (d / FEATURES_FILE).write_text("[]"), "expected a JSON object"),
        (lambda d: _edit(d, format_version=3), "unsupported format_version 3"),
        (lambda d: _edit(d, format_version=1), "unsupported format_version 1 .*train the model again"),
        (lambda d: _edit(d, spec={"numeric": []}), "invalid spec"),
        (lambda d: _edit(d, fingerprint="0" * 64), "come from different fits"),
        (lambda d: _edit(d, output_columns=["x"]), "output (width|columns) differ"),
        (lambda d: _edit(d, files="x"), "invalid 'files' entry"),
        (lambda d: _edit(d, files={TRANSFORMER_FILE: "0" * 64, "../x": "0"}), "invalid 'files' entry '../x'"),
        (lambda d: _garbage(d, TRANSFORMER_FILE), r"transformer\.joblib does not match .*sha256 differs"),
        (lambda d: _garbage(d, TABLES_FILE), r"fast_transform\.npz does not match .*sha256 differs"),
    ],
)
def test_load_corrupt_files(fitted, tmp_path, damage, message, fast):
    fitted.save(tmp_path)
    damage(tmp_path)
    with pytest.raises(ValueError, match=message):
        FittedFeatures.load(tmp_path, fast=fast)


def test_unreadable_files_behind_matching_digests(fitted, tmp_path):
    fitted.save(tmp_path)
    _garbage(tmp_path, TABLES_FILE, rehash=True)
    with pytest.raises(ValueError, match=r"fast_transform\.npz cannot be read"):
        FittedFeatures.load(tmp_path)
    fitted.save(tmp_path)
    _garbage(tmp_path, TRANSFORMER_FILE, rehash=True)
    with pytest.raises(ValueError, match=r"transformer\.joblib cannot be loaded"):
        FittedFeatures.load(tmp_path, fast=False)
    loaded = FittedFeatures.load(tmp_path)  # the fast path does not need it...
    assert np.array_equal(loaded.transform_records(RECORDS), fitted.transform_records(RECORDS))
    with pytest.raises(ValueError, match=r"transformer\.joblib cannot be loaded"):
        loaded.transform_records_sklearn(RECORDS)  # ...the reference path does, and checks it


def test_inconsistent_tables_are_refused(fitted, tmp_path):
    fitted.save(tmp_path)
    with np.load(tmp_path / TABLES_FILE, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    arrays["num_out"] = arrays["num_out"] + 100  # output columns out of range
    with open(tmp_path / TABLES_FILE, "wb") as f:
        np.savez(f, **arrays)
    _rehash(tmp_path)
    with pytest.raises(ValueError, match=r"fast_transform\.npz: inconsistent tables: numeric indices"):
        FittedFeatures.load(tmp_path)


def test_load_detects_files_from_different_fits(fitted, tmp_path):
    fitted.save(tmp_path / "a")
    other = [{**record, "amount": 1.0} for record in RECORDS]  # same columns, other statistics
    FittedFeatures.fit(other, SPEC).save(tmp_path / "b")
    shutil.copy(tmp_path / "b" / TRANSFORMER_FILE, tmp_path / "a" / TRANSFORMER_FILE)
    with pytest.raises(ValueError, match="come from different fits"):
        FittedFeatures.load(tmp_path / "a")
    # Digests updated as well: the fingerprints still tell the fits apart (tables, then transformer).
    shutil.copy(tmp_path / "b" / TABLES_FILE, tmp_path / "a" / TABLES_FILE)
    _rehash(tmp_path / "a")
    with pytest.raises(ValueError, match=r"fast_transform\.npz does not match features\.json \(fingerprint"):
        FittedFeatures.load(tmp_path / "a")
    with pytest.raises(ValueError, match=r"transformer\.joblib does not match .*\(fingerprint differs\)"):
        FittedFeatures.load(tmp_path / "a", fast=False)


def test_load_refuses_other_objects(fitted, tmp_path):
    import joblib

    fitted.save(tmp_path)
    joblib.dump({"not": "a transformer"}, tmp_path / TRANSFORMER_FILE)
    _rehash(tmp_path)
    with pytest.raises(ValueError, match="does not hold a fitted ColumnTransformer"):
        FittedFeatures.load(tmp_path, fast=False)


def test_colliding_output_column_names_are_explained():
    records = [{"a_x": 1.0, "a": "x"}, {"a_x": 2.0, "a": "y"}]
    with pytest.raises(FeatureError, match=r"\['a_x'\] are not unique: a field is named like a one-hot column"):
        FittedFeatures.fit(records, FeatureSpec(numeric=["a_x"], categorical=["a"]))
