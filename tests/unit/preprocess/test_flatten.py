"""One record flattening: training (records.flatten) and serving (fast_transform.get_record) agree on every
edge case, because both are serving_common.features.flatten."""

from __future__ import annotations

from collections import OrderedDict

import pytest

from serving_common.features.fast_transform import FeatureError, get_record
from serving_common.features.flatten import NESTED_OBJECT, DuplicateField, flatten, has_objects
from serving_common.features.records import RecordError
from serving_common.features.records import flatten as training_flatten


def serving_fields(record):
    """What serving reads: the flat record without the object markers."""
    return {name: value for name, value in get_record(record, 0).items() if value is not NESTED_OBJECT}


EDGE_CASES = [
    ({"a": 1, "b": {"c": 2, "d": {"e": None}}}, {"a": 1, "b.c": 2, "b.d.e": None}),
    ({"tags": ["x", {"y": 1}], "n": None, "ok": True}, {"tags": ["x", {"y": 1}], "n": None, "ok": True}),
    ({"a": {}, "b": 1}, {"b": 1}),                                         # an empty object: no field
    ({"a": {"b": {}}}, {}),
    ({"a.b": 1, "c": {"d": 2}}, {"a.b": 1, "c.d": 2}),                      # dotted names stay as they are
    ({1: "x", "m": OrderedDict(k=2)}, {"1": "x", "m.k": 2}),                # str(key); any Mapping is an object
    ({"": {"a": 1}, "b": {"": 2}}, {".a": 1, "b.": 2}),
]


@pytest.mark.parametrize(("record", "fields"), EDGE_CASES)
def test_training_and_serving_flatten_alike(record, fields):
    assert training_flatten(record) == fields
    if has_objects(record):
        assert serving_fields(record) == fields
    else:
        assert get_record(record, 0) is record  # the common case is not copied


@pytest.mark.parametrize("record", [
    {"a.b": 1, "a": {"b": 2}},
    {"a": {"b": 2}, "a.b": 1},
    {"a.b": {"c": 1}, "a": {"b": {"d": 2}}},                               # the object a.b given twice
    {"a": {"b": {"c": 1}}, "a.b": {"d": 2}},
])
def test_a_name_twice_is_an_error_at_training_and_at_serving(record):
    with pytest.raises(DuplicateField, match="occurs twice"):
        flatten(record)
    with pytest.raises(RecordError, match=r"'a\.b' occurs twice"):
        training_flatten(record)
    with pytest.raises(FeatureError, match=r"record 0: field 'a\.b' occurs twice"):
        get_record(record, 0)


def test_serving_marks_the_path_of_an_object():
    record = {"customer": {"age": 3, "address": {}}, "amount": 1.5}
    assert get_record(record, 0) == {"customer": NESTED_OBJECT, "customer.age": 3, "customer.address": NESTED_OBJECT,
                                     "amount": 1.5}
    assert flatten(record, mark_objects=True) == get_record(record, 0)
    assert flatten(record) == training_flatten(record) == {"customer.age": 3, "amount": 1.5}
