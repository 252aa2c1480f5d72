"""The feature transform: building, frames, fitting, labels, save/load."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from preprocess_container.features import (
    FEATURES_FILE,
    TRANSFORMER_FILE,
    FeatureError,
    FittedFeatures,
    build_transformer,
    records_to_frame,
    rows_to_frame,
)
from preprocess_container.spec import FeatureSpec

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
    assert (num_cols, cat_cols) == (["amount", "customer.age"], ["country", "vip"])
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


# -- frames ----------------------------------------------------------------------------------------


def test_records_to_frame_types_and_missing_values():
    frame = records_to_frame(RECORDS, SPEC)
    assert list(frame.columns) == SPEC.input_columns
    assert [str(t) for t in frame.dtypes] == ["float64", "float64", "object", "object"]
    assert frame["amount"].tolist()[:2] == [10.0, 20.0] and math.isnan(frame["amount"][2])
    assert frame["customer.age"].tolist()[-1] == 44.0  # flattened and dotted records both work
    # categories are strings: 1 -> "1", True -> "True"; missing is NaN (what SimpleImputer looks for)
    assert frame["country"].tolist()[:2] == ["DE", "US"] and frame["country"][4] == "1"
    assert pd.isna(frame["country"][2])
    assert frame["vip"].tolist() == ["True", "False", "False", "True", "True"]


def test_rows_to_frame_parses_csv_strings():
    rows = [["12.5", " 7 ", "DE", "True"], ["", "", "", ""], ["1e3", "nan", "東京", "x"]]
    frame = rows_to_frame(rows, SPEC)
    assert frame["amount"].tolist()[0] == 12.5 and frame["customer.age"][0] == 7.0
    assert frame.iloc[1].isna().all()
    assert frame["amount"][2] == 1000.0 and math.isnan(frame["customer.age"][2])
    assert frame["country"][2] == "東京"


def test_empty_input_gives_an_empty_frame():
    frame = records_to_frame([], SPEC)
    assert frame.shape == (0, 4) and list(frame.columns) == SPEC.input_columns


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
        records_to_frame(records, SPEC)
    assert issubclass(FeatureError, ValueError)


def test_nan_number_is_missing_and_booleans_are_numbers():
    frame = records_to_frame([{"amount": float("nan"), "customer.age": True}], SPEC)
    assert math.isnan(frame["amount"][0]) and frame["customer.age"][0] == 1.0


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
        rows_to_frame(rows, SPEC)


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
    out = fitted.transform_records([{"country": "ZZ"}, {}])
    country = [i for i, c in enumerate(fitted.output_columns) if c.startswith("country_")]
    assert out[0, country].sum() == 0.0
    assert out[1, fitted.output_columns.index("country___missing__")] == 1.0


def test_transform_rows_equals_transform_records(fitted):
    rows = [["10", "30", "DE", "True"], ["", "", "", ""], ["1e308", "-5e-324", "US", "False"]]
    records = [
        {"amount": 10, "customer": {"age": 30}, "country": "DE", "vip": True},
        {},
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
    assert meta["format_version"] == 1
    assert meta["spec"] == SPEC.to_dict()
    assert meta["input_columns"] == SPEC.input_columns
    assert meta["output_columns"] == fitted.output_columns
    assert meta["label"] == "fraud"
    assert meta["fingerprint"] == fitted.fingerprint and len(fitted.fingerprint) == 64
    assert meta["fast_path"] is True
    loaded = FittedFeatures.load(tmp_path / "model")
    assert loaded.fingerprint == fitted.fingerprint and loaded.spec == SPEC and loaded.fast_path
    assert np.array_equal(loaded.transform_records(RECORDS), fitted.transform_records(RECORDS))
    assert np.array_equal(loaded.transform_records_sklearn(RECORDS), fitted.transform_records(RECORDS))
    assert not list((tmp_path / "model").glob("*.tmp"))


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
    (tmp_path / TRANSFORMER_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"transformer\.joblib not found"):
        FittedFeatures.load(tmp_path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / FEATURES_FILE).write_text("{not json"), "features.json is not valid JSON"),
        (lambda d: (d / FEATURES_FILE).write_text("[]"), "expected a JSON object"),
        (lambda d: _edit(d, format_version=2), "unsupported format_version 2"),
        (lambda d: _edit(d, spec={"numeric": []}), "invalid spec"),
        (lambda d: _edit(d, fingerprint="0" * 64), "fingerprint differs"),
        (lambda d: _edit(d, output_columns=["x"]), "output columns differ"),
        (lambda d: (d / TRANSFORMER_FILE).write_bytes(b"garbage"), "transformer.joblib cannot be loaded"),
    ],
)
def test_load_corrupt_files(fitted, tmp_path, damage, message):
    fitted.save(tmp_path)
    damage(tmp_path)
    with pytest.raises(ValueError, match=message):
        FittedFeatures.load(tmp_path)


def test_load_detects_files_from_different_fits(fitted, tmp_path):
    fitted.save(tmp_path / "a")
    other = [{**record, "amount": 1.0} for record in RECORDS]  # same columns, other statistics
    FittedFeatures.fit(other, SPEC).save(tmp_path / "b")
    shutil.copy(tmp_path / "b" / TRANSFORMER_FILE, tmp_path / "a" / TRANSFORMER_FILE)
    with pytest.raises(ValueError, match="come from different fits"):
        FittedFeatures.load(tmp_path / "a")


def test_load_refuses_other_objects(fitted, tmp_path):
    import joblib

    fitted.save(tmp_path)
    joblib.dump({"not": "a transformer"}, tmp_path / TRANSFORMER_FILE)
    with pytest.raises(ValueError, match="does not hold a fitted ColumnTransformer"):
        FittedFeatures.load(tmp_path)


def _edit(model_dir, **changes):
    path = model_dir / FEATURES_FILE
    meta = json.loads(path.read_text())
    meta.update(changes)
    path.write_text(json.dumps(meta))


def test_colliding_output_column_names_are_explained():
    records = [{"a_x": 1.0, "a": "x"}, {"a_x": 2.0, "a": "y"}]
    with pytest.raises(FeatureError, match=r"\['a_x'\] are not unique: a field is named like a one-hot column"):
        FittedFeatures.fit(records, FeatureSpec(numeric=["a_x"], categorical=["a"]))
