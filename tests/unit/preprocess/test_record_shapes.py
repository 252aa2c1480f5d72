"""The record checks' verdicts remembered per record shape (``RecordChecker.values``) and the numbers read in
one numpy call (``fast_transform.plain_numbers``) never let a bad record through and never change an answer:
every batch gets what the record-by-record path (``RecordChecker.records`` + ``CompiledTransform.records``)
gives it, the same matrix bit for bit or the same error, naming the same record and field."""

from __future__ import annotations

import json
import logging
import math
import random

import numpy as np
import pytest

from preprocess_container.handler import PreprocessHandler
from serving_common.content_types import CSV, JSON, parse
from serving_common.errors import BadRequest
from serving_common.features import validation
from serving_common.features.fast_transform import FeatureError, plain_numbers, to_number
from serving_common.features.features import FittedFeatures
from serving_common.features.flatten import NESTED_OBJECT, Layout, flatten, shape
from serving_common.features.spec import FeatureSpec
from serving_common.features.validation import RecordRules
from serving_common.handler import RequestContext

SPEC = FeatureSpec(numeric=["amount", "customer.age"], categorical=["country", "customer.segment"], label="fraud")
TRAINING = [
    {"order_id": "a", "amount": 10.0, "customer": {"age": 30, "segment": "new"}, "country": "DE", "fraud": 0},
    {"order_id": "b", "amount": 20.0, "customer": {"age": None, "segment": "old"}, "country": "US", "fraud": 1},
    {"order_id": "c", "amount": None, "customer": {"age": 50, "segment": None}, "country": None, "fraud": 0},
    {"order_id": "d", "amount": 40.0, "customer": {"age": 20, "segment": "new"}, "country": "DE", "fraud": 1},
]
GOOD = {"order_id": "x", "amount": 12.5, "customer": {"age": 41, "segment": "old"}, "country": "US"}
RULES = [RecordRules(), RecordRules(max_missing_fields=0), RecordRules(max_missing_fields=1),
         RecordRules(unknown_fields="error"), RecordRules(max_missing_fields=2, unknown_fields="ignore")]


@pytest.fixture(scope="module")
def fitted() -> FittedFeatures:
    fitted = FittedFeatures.fit(TRAINING, SPEC)
    assert fitted.fast_path
    return fitted


def with_rules(fitted: FittedFeatures, rules: RecordRules) -> FittedFeatures:
    fitted.set_record_checks(rules, fitted.known_fields)  # a new checker: nothing remembered
    return fitted


def record_by_record(fitted: FittedFeatures, records: list) -> np.ndarray | str:
    """The reference: every record flattened and checked on its own, then read from its flattened fields."""
    try:
        return fitted._compiled.records(fitted._checker.records(records))
    except FeatureError as exc:
        return str(exc)


def answer(transform, records: list) -> np.ndarray | str:
    try:
        return transform(records)
    except FeatureError as exc:
        return str(exc)


def same(a: np.ndarray | str, b: np.ndarray | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def batch_with(bad: dict, size: int = 100, at: int = 50) -> list[dict]:
    return [dict(GOOD, customer=dict(GOOD["customer"])) for _ in range(size - 1)][:at] + [bad] + [
        dict(GOOD, customer=dict(GOOD["customer"])) for _ in range(size - 1 - at)]


# -- a bad record in the middle of a batch of one shape ----------------------------------------------------

BAD_IN_THE_MIDDLE = [
    # another shape
    (RecordRules(), {}, "record 50: none of the model's input fields is present"),
    (RecordRules(), {"foo": 1}, "record 50: none of the model's input fields is present .*the record has 'foo'"),
    (RecordRules(), {**GOOD, "customer": "abc"}, "record 50: field 'customer': expected an object .*got a string"),
    (RecordRules(), {**GOOD, "customer": [1]}, "record 50: field 'customer': expected an object .*got a list"),
    (RecordRules(), {**GOOD, "amount": {"value": 3}}, "record 50: field 'amount': expected a number, got an object"),
    (RecordRules(), {**GOOD, "amount": "abc"}, "record 50: field 'amount': 'abc' is not a number"),
    (RecordRules(), {**GOOD, "country": ["DE"]}, "record 50: field 'country': expected a single value, got a list"),
    (RecordRules(), {**GOOD, "customer.age": 3}, r"record 50: field 'customer\.age' occurs twice"),
    (RecordRules(unknown_fields="error"), {**GOOD, "amuont": 3},
     "record 50: field 'amuont' is not a field this model knows"),
    (RecordRules(unknown_fields="error"), {**GOOD, "customer": {**GOOD["customer"], "vip": True}},
     r"record 50: field 'customer\.vip' is not a field this model knows"),
    (RecordRules(max_missing_fields=0), {**GOOD, "country": None}, r"record 50: 1 of 4 input fields are missing"),
    # the very same shape (keys and value types) as every other record: only the values are bad
    (RecordRules(), {**GOOD, "amount": math.inf}, "record 50: field 'amount': inf is not finite"),
    (RecordRules(), {**GOOD, "amount": -math.inf}, "record 50: field 'amount': -inf is not finite"),
    (RecordRules(max_missing_fields=0), {**GOOD, "amount": math.nan}, r"record 50: 1 of 4 input fields are missing "
                                                                       r"\('amount'\)"),
    (RecordRules(max_missing_fields=0), {**GOOD, "country": "  "}, r"record 50: 1 of 4 input fields are missing "
                                                                    r"\('country'\)"),
    (RecordRules(max_missing_fields=1), {**GOOD, "country": "", "customer": {"age": 3, "segment": " "}},
     r"record 50: 2 of 4 input fields are missing \('country', 'customer.segment'\); at most 1"),
]


@pytest.mark.parametrize(("rules", "bad", "message"), BAD_IN_THE_MIDDLE,
                         ids=[str(i) for i in range(len(BAD_IN_THE_MIDDLE))])
def test_a_bad_record_amid_records_of_one_shape_is_refused_naming_it(fitted, rules, bad, message):
    fitted = with_rules(fitted, rules)
    good = [dict(GOOD, customer=dict(GOOD["customer"])) for _ in range(100)]
    expected = fitted.transform_records(good)  # the shape of the good records is now remembered
    for transform in (fitted.transform_records, fitted.transform_records_sklearn):
        with pytest.raises(FeatureError, match=message):
            transform(batch_with(bad))
    assert same(record_by_record(fitted, batch_with(bad)), answer(fitted.transform_records, batch_with(bad)))
    # ... and the good records still get their rows
    np.testing.assert_array_equal(fitted.transform_records(good), expected)


def test_a_bad_record_amid_one_shape_is_a_400_naming_it_through_the_handler(fitted, tmp_path, monkeypatch):
    with_rules(fitted, RecordRules()).save(tmp_path)
    monkeypatch.setenv("SMKIT_MAX_MISSING_FIELDS", "0")
    handler = PreprocessHandler()
    model = handler.load(tmp_path)
    context = RequestContext("r", JSON, CSV)

    def serve(records: list) -> bytes:
        data = handler.decode(json.dumps(records).encode(), parse(JSON), context)
        return handler.encode(handler.predict(model, data, context), CSV, context)

    good = serve(batch_with(dict(GOOD, customer=dict(GOOD["customer"]))))
    assert len(good.splitlines()) == 100
    for bad, message in [({**GOOD, "country": " "}, r"record 50: 1 of 4 input fields are missing \('country'\)"),
                         ({**GOOD, "customer": {"age": 1, "segment": None}}, r"record 50: 1 of 4 .*'customer.segment'"),
                         ({**GOOD, "customer": "abc"}, "record 50: field 'customer': expected an object")]:
        with pytest.raises(BadRequest, match=message):
            serve(batch_with(bad))
    assert serve(batch_with(dict(GOOD, customer=dict(GOOD["customer"])))) == good


def test_the_first_error_is_the_record_by_record_one(fitted):
    """A check's refusal (record 7) comes before a value that cannot be read (record 3), as record by record."""
    fitted = with_rules(fitted, RecordRules())
    records = batch_with({}, size=10, at=7)
    records[3] = {**GOOD, "amount": math.inf}
    with pytest.raises(FeatureError, match="record 7: none of the model's input fields"):
        fitted.transform_records(records)
    records[7] = dict(GOOD)
    records[5] = {**GOOD, "country": ["x"]}  # a category that cannot be read after a number that cannot (record 3)
    with pytest.raises(FeatureError, match="record 3: field 'amount': inf is not finite"):
        fitted.transform_records(records)


def test_unknown_fields_are_logged_once_per_name_with_the_record_that_had_them(fitted, caplog):
    fitted = with_rules(fitted, RecordRules(unknown_fields="warn"))
    records = batch_with({**GOOD, "amuont": 1, "customer": {**GOOD["customer"], "vip": True}}, size=6, at=4)
    records.append(records[4])
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        matrix = fitted.transform_records(records)
        fitted.transform_records(records)
    lines = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    assert lines == ["record 4: fields this model does not know (ignored, logged once): 'customer.vip', 'amuont'"]
    np.testing.assert_array_equal(matrix[4], matrix[0])


def test_keys_equal_to_known_ones_but_not_str_are_not_taken_for_them(fitted):
    """A remembered shape is found by its keys' values and types: a str subclass whose str() is another name is
    flattened as flatten() names it, not as the str it equals."""
    class Renamed(str):
        def __str__(self) -> str:
            return "renamed"

    fitted = with_rules(fitted, RecordRules(unknown_fields="error"))
    fitted.transform_records([dict(GOOD)])
    odd = {Renamed("amount") if key == "amount" else key: value for key, value in GOOD.items()}
    with pytest.raises(FeatureError, match="record 0: field 'renamed' is not a field this model knows"):
        fitted.transform_records([odd])


def plans(fitted: FittedFeatures) -> list:
    return [plan for plan in fitted._checker._plans.values() if isinstance(plan, validation._ShapePlan)]


def test_a_shape_met_twice_is_remembered_and_records_of_varying_keys_never_pay_for_it(fitted):
    fitted = with_rules(fitted, RecordRules())
    first = fitted.transform_records([dict(GOOD)])
    assert plans(fitted) == []  # met once: checked record by record
    np.testing.assert_array_equal(fitted.transform_records([dict(GOOD), dict(GOOD)]), np.vstack([first, first]))
    assert len(plans(fitted)) == 1  # the batches of this file go through the remembered verdict
    fitted = with_rules(fitted, RecordRules())
    varying = [{**GOOD, "customer": {**GOOD["customer"], f"tag{i}": 1}} for i in range(50)]
    assert same(answer(fitted.transform_records, varying), record_by_record(fitted, varying))
    assert plans(fitted) == []


def test_more_shapes_than_remembered_still_answer_alike(fitted, monkeypatch):
    monkeypatch.setattr(validation, "MAX_SHAPES", 4)
    fitted = with_rules(fitted, RecordRules())
    records = [{**GOOD, f"extra{i}": i} for i in range(20)] + [{**GOOD, "amount": math.inf}]
    for _ in range(2):
        assert same(answer(fitted.transform_records, records[:20]), record_by_record(fitted, records[:20]))
        assert "record 20: field 'amount': inf is not finite" == answer(fitted.transform_records, records)
    assert len(fitted._checker._plans) <= 4


# -- every batch answered as record by record (random records, remembered shapes across batches) -----------

_VALUES = [None, "", " ", "DE", "12.5", "abc", "nan", 0, 1, -7, 2**53 + 1, 2**63 + 1, 10**400, 3.25, -0.0,
           math.nan, math.inf, True, False, [1], {}, {"x": 1}]


def _random_record(rng: random.Random, odd: float) -> dict:
    """A record like GOOD, each field absent, null or of an odd value or kind with probability about ``odd``."""

    def value(name: str, good: object) -> object:
        return rng.choice(_VALUES) if rng.random() < odd else good

    record: dict = {}
    for name, good in GOOD.items():
        if name == "customer":
            if rng.random() < odd / 2:
                record[name] = rng.choice(_VALUES)
            else:
                inner = {key: value(key, good_inner) for key, good_inner in good.items() if rng.random() > odd / 2}
                if rng.random() < odd / 2:
                    inner[rng.choice(["vip", "deeper"])] = rng.choice([True, {"a": 1}])
                record[name] = inner
        elif rng.random() > odd / 2:
            record[name] = value(name, good)
    for extra in ("amuont", "customer.age", "fraud"):
        if rng.random() < odd / 3:
            record[extra] = rng.choice(_VALUES)
    if rng.random() < 0.2:
        items = list(record.items())
        rng.shuffle(items)
        record = dict(items)
    return record


@pytest.mark.parametrize("rules", RULES, ids=[f"{r.max_missing_fields}-{r.unknown_fields}" for r in RULES])
def test_random_batches_answer_as_record_by_record(fitted, rules):
    fitted = with_rules(fitted, rules)
    rng = random.Random(f"{rules}")
    pool = [_random_record(rng, 0.1) for _ in range(40)]
    refused = accepted = 0
    for _ in range(400):
        odd = rng.choice([0.0, 0.02, 0.1, 0.3])
        records = [json.loads(json.dumps(rng.choice(pool))) if rng.random() < 0.6 else _random_record(rng, odd)
                   for _ in range(rng.choice([1, 2, 5, 30]))]
        expected = record_by_record(fitted, records)
        assert same(answer(fitted.transform_records, records), expected), (records, expected)
        sklearn = answer(fitted.transform_records_sklearn, records)
        assert isinstance(sklearn, str) == isinstance(expected, str)
        if isinstance(expected, str):
            assert sklearn == expected
            refused += 1
        else:
            np.testing.assert_allclose(sklearn, expected, rtol=0, atol=1e-12)
            accepted += 1
    assert refused > 40 and accepted > 40, (refused, accepted)  # both kinds of batches were exercised


# -- the pieces -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("record", [
    {"a": 1, "b": {"c": 2, "d": {"e": None, "f": [1, {"g": 2}]}}, "h": {}},
    {"": {"a": 1}, "b": {"": 2}},
    {"a.b": 1, "c": {"d": 2}},
])
def test_a_layout_places_every_field_where_flatten_does(record):
    layout = Layout.of(record)
    assert layout is not None
    flat = flatten(record, mark_objects=True)
    values = layout.values(record)
    assert set(layout.names) == set(flat)
    assert {name: NESTED_OBJECT if type(value) is dict else value
            for name, value in zip(layout.names, values, strict=True)} == flat


@pytest.mark.parametrize("record", [{"a.b": 1, "a": {"b": 2}}, {1: "x"}, {"a": (1, 2)}, {"a": np.float64(1)}])
def test_records_without_a_layout_are_left_to_flatten(record):
    assert Layout.of(record) is None


def test_shapes_differ_with_key_order_value_types_and_nested_keys():
    base = {"a": 1, "b": {"c": "x"}}
    assert shape(base) == shape({"a": 2, "b": {"c": "y"}})
    for other in [{"b": {"c": "x"}, "a": 1}, {"a": 1.0, "b": {"c": "x"}}, {"a": 1, "b": {"d": "x"}},
                  {"a": 1, "b": {"c": None}}, {"a": 1, "b": "x"}]:
        assert shape(base) != shape(other)


@pytest.mark.parametrize("values", [
    [1.5, -0.0, None, True, False, 7],
    [2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**63 + 1, 2**64 + 3, -(2**63) - 5],
    [10**300, -(10**300), math.nan, 5e-324, 1.7976931348623157e308, 0],
])
def test_plain_numbers_are_read_exactly_as_to_number_reads_them(values):
    rows = [(value, "category") for value in values]
    array = plain_numbers(rows, 1)
    expected = np.array([[to_number(value, "x", 0)] for value in values])
    assert array is not None and array.tobytes() == expected.tobytes()


@pytest.mark.parametrize("value", [math.inf, -math.inf, 10**400, "1.5", [1], np.float64(1.0)])
def test_numbers_plain_numpy_would_misread_are_left_to_to_number(value):
    assert plain_numbers([(1.0,), (value,)], 1) is None
