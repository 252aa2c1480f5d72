"""Records of the wrong shape never get plausible scores: the record checks, on every path."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from preprocess_container.handler import PreprocessHandler
from serving_common.content_types import CSV, JSON, JSONLINES, parse
from serving_common.errors import BadRequest
from serving_common.features.features import FEATURES_FILE, FeatureError, FittedFeatures
from serving_common.features.requests import Rows
from serving_common.features.spec import FeatureSpec
from serving_common.features.validation import RecordRules
from serving_common.handler import RequestContext
from serving_common.settings import SettingsError

SPEC = FeatureSpec(numeric=["amount", "customer.age"], categorical=["country", "customer.segment"], label="fraud")
TRAINING = [
    {"order_id": "a", "amount": 10.0, "customer": {"age": 30, "segment": "new"}, "country": "DE", "fraud": 0},
    {"order_id": "b", "amount": 20.0, "customer": {"age": None, "segment": "old"}, "country": "US", "fraud": 1},
    {"order_id": "c", "amount": None, "customer": {"age": 50, "segment": None}, "country": None, "fraud": 0},
    {"order_id": "d", "amount": 40.0, "customer": {"age": 20, "segment": "new"}, "country": "DE", "fraud": 1},
]
GOOD = {"amount": 12.5, "customer": {"age": 41, "segment": "old"}, "country": "US"}


def _fitted(rules: RecordRules | None = None) -> FittedFeatures:
    return FittedFeatures.fit(TRAINING, SPEC, rules=rules)


@pytest.fixture(scope="module")
def fast() -> FittedFeatures:
    fitted = _fitted()
    assert fitted.fast_path
    return fitted


@pytest.fixture(scope="module")
def sklearn_only() -> FittedFeatures:
    fitted = FittedFeatures.fit(TRAINING, SPEC, fast=False)
    assert not fitted.fast_path
    return fitted


BAD = [
    ({}, "record 1: none of the model's input fields is present"),
    ({"foo": 1}, "record 1: none of the model's input fields is present .*the record has 'foo'"),
    ({"customer": "abc"}, "record 1: field 'customer': expected an object .*customer.age.*got a string"),
    ({"customer": [1, 2], "amount": 3}, "record 1: field 'customer': expected an object .*got a list"),
    ({"amount": {"value": 3}, "country": "DE"}, "record 1: field 'amount': expected a number, got an object"),
    ({"amount": None, "customer": {"age": None}, "country": "", "fraud": 1},
     "record 1: none of the model's input fields is present"),
]


@pytest.mark.parametrize(("bad", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
@pytest.mark.parametrize("path", ["fast", "sklearn_only"])
def test_records_of_the_wrong_shape_are_refused_on_both_paths(bad, message, path, request):
    fitted = request.getfixturevalue(path)
    with pytest.raises(FeatureError, match=message):
        fitted.transform_records([GOOD, bad])
    with pytest.raises(FeatureError, match=message):
        fitted.transform_records_sklearn([GOOD, bad])


def test_missing_values_of_known_fields_are_imputed_by_default(fast, sklearn_only):
    sparse = [{"amount": 3.0}, {"customer": {"segment": "new"}}, {"customer": {"age": None}, "country": "FR"}]
    np.testing.assert_array_equal(fast.transform_records(sparse), sklearn_only.transform_records(sparse))


def test_max_missing_fields_is_a_hyperparameter_stored_in_the_model(tmp_path):
    strict = _fitted(RecordRules(max_missing_fields=1))
    strict.transform_records([{"amount": 1, "customer": {"age": 3, "segment": "x"}}])  # one missing: allowed
    with pytest.raises(FeatureError, match=r"record 0: 2 of 4 input fields are missing \('customer.age', "
                                           r"'customer.segment'\); at most 1 may be"):
        strict.transform_records([{"amount": 1, "country": "DE"}])
    with pytest.raises(FeatureError, match="row 0: 3 of 4 input fields are missing"):
        strict.transform_rows([["1", "", "", ""]])
    strict.save(tmp_path)
    checks = json.loads((tmp_path / FEATURES_FILE).read_text())["record_checks"]
    assert checks["max_missing_fields"] == 1 and checks["unknown_fields"] == "warn"
    assert {"order_id", "fraud", "amount", "customer.age"} <= set(checks["known_fields"])
    loaded = FittedFeatures.load(tmp_path)
    assert loaded.record_rules == RecordRules(max_missing_fields=1)
    with pytest.raises(FeatureError, match="at most 1 may be"):
        loaded.transform_records([{"amount": 1, "country": "DE"}])


def test_an_all_empty_csv_row_is_refused(fast, sklearn_only):
    for fitted in (fast, sklearn_only):
        with pytest.raises(FeatureError, match="row 1: every input field is empty"):
            fitted.transform_rows([["1", "2", "DE", "new"], ["", " ", "", ""]])


def test_unknown_fields_error_warn_ignore(caplog):
    record = {**GOOD, "order_id": "z", "fraud": 1, "amuont": 5, "customer": {**GOOD["customer"], "vip": True}}
    strict = _fitted(RecordRules(unknown_fields="error"))
    with pytest.raises(FeatureError, match=r"record 0: field 'customer.vip' is not a field this model knows"):
        strict.transform_records([record])
    strict.transform_records([{**GOOD, "order_id": "z", "fraud": 0}])  # fields seen in training are known
    warn = _fitted()
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        first = warn.transform_records([record])
        warn.transform_records([record])
    lines = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    assert len(lines) == 1 and "'amuont'" in lines[0] and "'customer.vip'" in lines[0], lines  # once per name
    np.testing.assert_array_equal(first, warn.transform_records([GOOD]))
    caplog.clear()
    ignore = _fitted(RecordRules(unknown_fields="ignore"))
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        ignore.transform_records([record])
    assert "does not know" not in caplog.text


def _context(content_type: str = JSON, accept: str = CSV) -> RequestContext:
    return RequestContext("r", content_type, accept)


@pytest.fixture
def model_dir(tmp_path):
    _fitted().save(tmp_path)
    return tmp_path


def _serve(handler: PreprocessHandler, model, body: bytes, content_type: str = JSON, accept: str = CSV) -> bytes:
    context = _context(content_type, accept)
    data = handler.decode(body, parse(content_type), context)
    return handler.encode(handler.predict(model, data, context), accept, context)


def test_environment_overrides_the_trained_rules(model_dir, monkeypatch):
    monkeypatch.setenv("SMKIT_UNKNOWN_FIELDS", "error")
    monkeypatch.setenv("SMKIT_MAX_MISSING_FIELDS", "0")
    handler = PreprocessHandler()
    model = handler.load(model_dir)
    with pytest.raises(BadRequest, match="record 0: field 'extra' is not a field this model knows"):
        _serve(handler, model, json.dumps({**GOOD, "extra": 1}).encode())
    with pytest.raises(BadRequest, match="record 0: 1 of 4 input fields are missing"):
        _serve(handler, model, json.dumps({**GOOD, "country": None}).encode())
    monkeypatch.setenv("SMKIT_UNKNOWN_FIELDS", "sometimes")
    with pytest.raises(SettingsError, match="SMKIT_UNKNOWN_FIELDS='sometimes' is not one of error, warn, ignore"):
        PreprocessHandler().load(model_dir)


@pytest.mark.parametrize(("body", "message"), [
    (b'{"instances": [{"amount": 1}], "extra": 1}',
     r"wraps its records in \{\"instances\": \[...\]\} but also has 'extra'"),
    (b'{"instances": {"amount": 1}}', '"instances" must be a list of records, got dict'),
    (b"{}", "record 0: none of the model's input fields is present"),
    (b'{"foo": 1}', "record 0: none of the model's input fields is present"),
    (b'{"customer": "abc"}', "record 0: field 'customer': expected an object"),
])
def test_the_issues_requests_are_400s_naming_record_and_field(model_dir, body, message):
    handler = PreprocessHandler()
    model = handler.load(model_dir)
    with pytest.raises(BadRequest, match=message):
        _serve(handler, model, body)


def test_batch_transform_with_record_errors_in_line_follows_the_same_rules(model_dir, monkeypatch):
    monkeypatch.setenv("SMKIT_RECORD_ERRORS", "line")
    handler = PreprocessHandler()
    model = handler.load(model_dir)
    lines = [GOOD, {}, {"customer": "abc"}, GOOD]
    body = b"\n".join(json.dumps(line).encode() for line in lines) + b"\n"
    out = _serve(handler, model, body, JSONLINES, CSV).decode()
    assert out.endswith("\n")
    answers = out.splitlines()
    assert len(answers) == 4
    assert json.loads(answers[1])["error"].startswith("record 1: none of the model's input fields")
    assert json.loads(answers[2])["error"].startswith("record 2: field 'customer': expected an object")
    expected = _serve(handler, model, json.dumps(GOOD).encode()).decode().strip()
    assert answers[0] == answers[3] == expected


def test_json_booleans_are_one_and_zero_in_numeric_fields(fast):
    # the same rule as the xgboost image's JSON input (serving_common.arrays)
    as_bool = fast.transform_records([{**GOOD, "amount": True}, {**GOOD, "amount": False}])
    as_number = fast.transform_records([{**GOOD, "amount": 1}, {**GOOD, "amount": 0}])
    np.testing.assert_array_equal(as_bool, as_number)


def test_csv_rows_go_through_the_handler_with_the_same_rule(model_dir):
    handler = PreprocessHandler()
    model = handler.load(model_dir)
    with pytest.raises(BadRequest, match="row 0: every input field is empty"):
        handler.predict(model, Rows([["", "", "", ""]]), _context(CSV))
