"""The feature spec and its inference from data."""

from __future__ import annotations

import json
import logging

import pytest

from serving_common.features.spec import FeatureSpec, SpecError, infer_spec

JSON_RECORDS = [
    {"order": {"amount": 12.5, "items": 2}, "customer": {"age": 31, "country": "DE"}, "vip": True,
     "tags": ["a"], "note": None, "zip": 10115, "fraud": 0},
    {"order": {"amount": None, "items": 1}, "customer": {"age": None, "country": "US"}, "vip": False,
     "tags": [], "note": None, "zip": "10117", "fraud": 1},
    {"order": {"amount": 3, "items": 5}, "customer": {"country": None}, "vip": False,
     "note": None, "zip": 20095, "fraud": 0, "mixed": 1},
    {"order": {"amount": float("nan"), "items": 1}, "customer": {"age": 50, "country": "FR"}, "vip": True,
     "note": None, "zip": 80331, "fraud": 1, "mixed": "x"},
]  # fmt: skip

CSV_RECORDS = [
    {"amount": "12.5", "age": "31", "country": "DE", "code": "007", "flag": "true", "big": "1e5", "y": "1"},
    {"amount": None, "age": " 40 ", "country": "1", "code": "inf", "flag": "false", "big": "NaN", "y": "0"},
    {"amount": "-3", "age": None, "country": None, "code": "12", "flag": None, "big": "2.5E-3", "y": "1"},
]


def test_infers_numeric_and_categorical_from_json():
    spec = infer_spec(JSON_RECORDS, label="fraud")
    assert spec.numeric == ["customer.age", "order.amount", "order.items", "zip"]
    assert spec.categorical == ["customer.country", "mixed", "vip"]  # booleans are categorical
    assert spec.label == "fraud"
    assert spec.input_columns == spec.numeric + spec.categorical


def test_lists_and_always_null_fields_are_dropped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        spec = infer_spec(JSON_RECORDS)
    assert "tags" not in spec.input_columns and "note" not in spec.input_columns
    assert "'tags': it holds lists" in caplog.text
    assert "'note': it has no non-null value" in caplog.text
    assert "fraud" in spec.numeric  # no label given: just a field


def test_infers_from_csv_strings():
    spec = infer_spec(CSV_RECORDS, label="y")
    # "inf" is not a finite number; "NaN" counts as missing
    assert spec.numeric == ["age", "amount", "big"]
    assert spec.categorical == ["code", "country", "flag"]


def test_drop_excludes_fields_and_unknown_drop_fields_only_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        spec = infer_spec(CSV_RECORDS, label="y", drop=["code", "flag", "nonexistent"])
    assert spec.categorical == ["country"]
    assert "nonexistent" in caplog.text


def test_given_lists_are_authoritative_and_keep_their_order():
    spec = infer_spec(CSV_RECORDS, label="y", numeric=["big", "amount"], categorical=["age", "country"])
    assert spec.numeric == ["big", "amount"]
    assert spec.categorical == ["age", "country"]


def test_only_numeric_given_every_other_field_is_categorical(caplog):
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        spec = infer_spec(CSV_RECORDS, label="y", numeric=["amount"])
    assert spec.numeric == ["amount"]
    assert spec.categorical == ["age", "big", "code", "country", "flag"]
    assert "look numeric" in caplog.text


def test_only_categorical_given_numeric_fields_are_inferred(caplog):
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        spec = infer_spec(CSV_RECORDS, label="y", categorical=["age"])
    assert spec.categorical == ["age"]
    assert spec.numeric == ["amount", "big"]
    assert "leaving out fields ['code', 'country', 'flag']" in caplog.text


def test_options_are_passed_to_the_spec():
    spec = infer_spec(CSV_RECORDS, label="y", numeric_impute="mean", scale=False,
                      categorical_encoding="ordinal", max_categories=5, min_frequency=3)  # fmt: skip
    assert (spec.numeric_impute, spec.scale, spec.categorical_encoding) == ("mean", False, "ordinal")
    assert (spec.max_categories, spec.min_frequency) == (5, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"numeric": ["amount", "nope"]}, r"\['nope'\] do not appear in any of the 3 records"),
        ({"categorical": ["nope"]}, "do not appear"),
        ({"numeric": ["amount"], "categorical": ["amount"]}, "both numeric and categorical"),
        ({"label": "target"}, "label 'target' does not appear"),
        ({"label": "y", "numeric": ["y"]}, "cannot also be a feature"),
        ({"numeric": ["amount"], "drop": ["amount"]}, "both dropped and listed"),
        ({"numeric": ["country"]}, r"\['country'\] are listed as numeric but hold values that are not numbers"),
        ({"drop": ["amount", "age", "country", "code", "flag", "big", "y"]}, "no feature fields"),
        ({"bogus": 1}, "unknown spec options"),
        ({"numeric_impute": "mode"}, "numeric_impute must be one of"),
        ({"numeric": "amount"}, "must be a list of field names"),
    ],
)
def test_infer_errors(kwargs, message):
    with pytest.raises(SpecError, match=message):
        infer_spec(CSV_RECORDS, **kwargs)


def test_infer_needs_records():
    with pytest.raises(SpecError, match="no records"):
        infer_spec([])
    with pytest.raises(SpecError, match="record 1 is not a JSON object"):
        infer_spec([{"a": 1}, [1]])


def test_categorical_given_with_lists_is_an_error():
    with pytest.raises(SpecError, match="hold lists or objects"):
        infer_spec(JSON_RECORDS, categorical=["tags"])


# -- FeatureSpec -----------------------------------------------------------------------------------


def test_spec_round_trips_through_json():
    spec = FeatureSpec(numeric=["a", "b.c"], categorical=["d"], label="y", numeric_impute="constant0",
                       scale=False, categorical_encoding="ordinal", max_categories=10, min_frequency=0.05)  # fmt: skip
    again = FeatureSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.input_columns == ["a", "b.c", "d"]
    assert spec.options == {"numeric_impute": "constant0", "scale": False, "categorical_encoding": "ordinal",
                            "max_categories": 10, "min_frequency": 0.05}  # fmt: skip


def test_spec_defaults():
    spec = FeatureSpec(numeric=["a"], categorical=[])
    assert (spec.label, spec.numeric_impute, spec.scale, spec.categorical_encoding) == (None, "median", True, "onehot")
    assert spec.max_categories is None and spec.min_frequency is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"numeric": [], "categorical": []}, "no feature fields"),
        ({"numeric": ["a", "a"]}, r"lists \['a'\] more than once"),
        ({"numeric": ["a"], "categorical": ["a"]}, "both numeric and categorical"),
        ({"numeric": ["a"], "label": "a"}, "cannot also be a feature"),
        ({"numeric": [""]}, "non-empty strings"),
        ({"numeric": ["a"], "categorical_encoding": "hash"}, "categorical_encoding must be one of"),
        ({"numeric": ["a"], "scale": "yes"}, "scale must be true or false"),
        ({"numeric": ["a"], "max_categories": 0}, "max_categories must be an integer >= 1"),
        ({"numeric": ["a"], "max_categories": True}, "max_categories"),
        ({"numeric": ["a"], "min_frequency": 0}, "min_frequency must be"),
        ({"numeric": ["a"], "min_frequency": 1.5}, "min_frequency must be"),
    ],
)
def test_spec_validation(kwargs, message):
    kwargs.setdefault("categorical", [])
    with pytest.raises(SpecError, match=message):
        FeatureSpec(**kwargs)


def test_from_dict_rejects_unknown_keys_and_non_objects():
    with pytest.raises(SpecError, match=r"unknown feature spec keys \['colour'\]"):
        FeatureSpec.from_dict({"numeric": ["a"], "categorical": [], "colour": "red"})
    with pytest.raises(SpecError, match="must be a JSON object"):
        FeatureSpec.from_dict(["a"])
    assert issubclass(SpecError, ValueError)
