"""The executors' columnar path against the per-record path (the image's ``PreprocessHandler.predict``), in
process (no Spark): for every batch it either gives the very same float64 bits, or declines (None) and
leaves the batch to the per-record path. A clean batch must take it (else it is no speed-up)."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pyarrow as pa
import pytest

from local_test.orders import make_orders
from serving_common.errors import BadRequest
from serving_common.features.features import FittedFeatures
from serving_common.features.spec import infer_spec
from serving_common.features.validation import RecordRules
from smkit_spark.apply import _decode_lines, _handler, _transform_batch
from smkit_spark.columnar import Columnar

ORDERS = make_orders(1500, seed=31)


def _model(unknown_fields: str = "error", **grouping) -> FittedFeatures:
    spec = infer_spec(ORDERS, label="default", drop=["order_id"], **grouping)
    return FittedFeatures.fit(ORDERS, spec, rules=RecordRules(unknown_fields=unknown_fields))


MODELS = {
    "error": _model("error", min_frequency=30),
    "warn": _model("warn"),
    "ignore": _model("ignore", max_categories=3),
}


def _per_record(model: FittedFeatures, lines: list[str], label: bool = True) -> np.ndarray | None:
    """The per-record path's rows of ``lines``, or None when it refuses a record."""
    records, _, _ = _decode_lines(lines, [None] * len(lines))
    matrix, bad = _transform_batch(_handler(label), model, records)
    return None if bad else matrix


def _columnar(model: FittedFeatures, lines: list[str], label: bool = True) -> np.ndarray | None:
    columnar = Columnar(model, label)
    table = columnar.parse_json(pa.array(lines, pa.string()))
    return None if table is None else columnar.transform(table, from_json=True)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.int64), b.view(np.int64))


def _lines(n: int, seed: int) -> list[str]:
    return [json.dumps(o) for o in make_orders(n, seed=seed)]


@pytest.mark.parametrize("policy", list(MODELS))
@pytest.mark.parametrize("label", [True, False])
def test_clean_batches_take_the_columnar_path_with_the_same_bits(policy, label):
    model = MODELS[policy]
    orders = make_orders(700, seed=32)
    orders[0]["customer"]["country"] = "XX"  # unseen category
    orders[1]["customer"] = {}
    orders[2]["customer"] = None
    orders[3]["amount"] = None
    orders[4]["device"] = ""  # missing, blank
    orders[5]["device"] = "  "  # a category of its own (to_category), missing for the record checks
    orders[6]["amount"] = 12  # an int
    orders[7]["amount"] = 1e300
    lines = [json.dumps(o) for o in orders]
    lines.insert(10, "")
    lines.insert(20, "   \t")
    lines[30] += "\r"  # a CRLF file read with lineSep "\n"
    fast = _columnar(model, lines, label)
    assert fast is not None, "a clean batch declined the columnar path"
    reference = _per_record(model, lines, label)
    assert reference is not None and _same(fast, reference)


NUMBERS = ["0", "-1", "1e5", "1E-7", "123456789012345678", "9007199254740993", "18446744073709551615",
           "1e308", "2.2250738585072014e-308", "4.9e-324", "0.1", "0.30000000000000004", "-123.456e-3"]


def test_number_texts_read_as_orjson_reads_them():
    rng = random.Random(5)
    texts = NUMBERS + [f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 20)}f}" for _ in range(300)]
    texts += [f"{rng.randint(1, 9)}.{rng.getrandbits(60)}e{rng.randint(-300, 300)}" for _ in range(300)]
    texts += [str(rng.getrandbits(bits)) for bits in range(1, 64) for _ in range(3)]
    base = json.loads(_lines(1, 33)[0])
    lines = []
    for text in texts:
        base["amount"] = "@"
        lines.append(json.dumps(base).replace('"@"', text))
    model = MODELS["ignore"]
    reference = _per_record(model, lines)
    fast = _columnar(model, lines)
    if fast is None:  # declined only for integers past 2**53: then each other one must be taken
        exact = [line for line, text in zip(lines, texts, strict=True) if abs(float(text)) < 2.0**53
                 or "e" in text.lower() or "." in text]
        fast, reference = _columnar(model, exact), _per_record(model, exact)
        assert fast is not None
    assert _same(fast, reference)


# (what is changed in a clean batch, why the columnar path must decline or agree)
ODD = [
    ('"amount": "12.5"', "a number as a string: read per record"),
    ('"amount": true', "a boolean in a numeric field"),
    ('"amount": -0', "orjson reads the integer 0, Arrow -0.0"),
    ('"amount": NaN', "orjson refuses NaN"),
    ('"amount": Infinity', "orjson refuses Infinity"),
    ('"amount": 1e400', "not finite"),
    ('"amount": [1]', "a list"),
    ('"amount": {"x": 1}', "an object in a feature field"),
    ('"device": 7', "a number in a categorical field: '7' per record"),
    ('"device": true', "a boolean in a categorical field: 'True' per record"),
    ('"device": 1.50', "a float in a categorical field: '1.5' per record"),
    ('"customer": "abc"', "a value where the model reads an object"),
    ('"customer": [1]', "a list where the model reads an object"),
    ('"customer.age": 3', "a dotted name: flattening makes it customer.age"),
    ('"order_id": 5', "a known field of two kinds across records"),
    ('"new_field": 1', "an unknown field"),
    ('"new_field": null', "an unknown field, null"),
    ('"customer": {"age": 3, "shoe_size": 44}', "an unknown nested field"),
    ('"default": null', "a missing label"),
    ('"default": "1"', "a label as a string"),
    ('"default": -0', "a label -0"),
    ('"amount": 1, "amount": 2', "a duplicate key"),
    ('"": 1', "an empty name"),
]


def _odd_line(change: str) -> str:
    record = json.loads(_lines(1, 34)[0])
    text = json.dumps(record)
    key = change.split(":")[0].strip('"')
    if key in record and change.count(f'"{key}"') == 1:
        record[key] = "@"
        return json.dumps(record).replace('"@"', change.split(":", 1)[1].strip())
    return text[:-1] + ", " + change + "}"


@pytest.mark.parametrize("policy", list(MODELS))
@pytest.mark.parametrize(("change", "why"), ODD, ids=[why for _, why in ODD])
def test_odd_records_decline_or_agree(policy, change, why):
    model = MODELS[policy]
    lines = _lines(50, 35)
    lines[17] = _odd_line(change)
    fast = _columnar(model, lines)
    reference = _per_record(model, lines)
    if fast is not None:
        assert reference is not None and _same(fast, reference), why
    elif reference is None:
        with pytest.raises(BadRequest):  # the per-record path names the record (not this path's business)
            _handler(True).predict(model, _decode_lines([lines[17]], [None])[0], None)


@pytest.mark.parametrize(("change", "policy"), [('"amount": -0', "ignore"), ('"device": 7', "ignore"),
                                                ('"new_field": null', "error"), ('"new_field": 1', "error"),
                                                ('"customer.age": 3', "ignore"), ('"amount": NaN', "ignore")])
def test_what_the_columnar_path_cannot_prove_it_declines(change, policy):
    lines = _lines(20, 36)
    lines[3] = _odd_line(change)
    assert _columnar(MODELS[policy], lines) is None


@pytest.mark.parametrize("line", ["{broken", "[1, 2]", "3", '{"amount": 1} x', "\x1c{}",
                                  '{"amount": 1}\r{"amount": 2}', '{"amount": 1}\r\r'])
def test_lines_that_are_not_records_decline(line):
    lines = _lines(20, 37)
    lines[5] = line
    assert _columnar(MODELS["ignore"], lines) is None


@pytest.mark.parametrize("line", ["\x1c", "\u00a0 ", "\u2028", "\x0b"])
def test_lines_blank_to_python_are_skipped_as_per_record(line):
    lines = _lines(20, 37)
    lines[5] = line
    fast, reference = _columnar(MODELS["ignore"], lines), _per_record(MODELS["ignore"], lines)
    assert reference is not None and len(reference) == 19
    assert fast is None or _same(fast, reference)


def test_too_many_missing_fields_decline():
    lines = _lines(20, 38)
    lines[2] = json.dumps({"order_id": "x", "default": 0})
    assert _columnar(MODELS["ignore"], lines) is None
    assert _per_record(MODELS["ignore"], lines) is None


def _batch(records: list[dict]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(records)


@pytest.mark.parametrize("policy", list(MODELS))
def test_dataframe_batches_give_the_same_bits(policy):
    model = MODELS[policy]
    orders = make_orders(300, seed=39)
    for order in orders:
        order["amount"] = float(order["amount"])
    orders[0]["amount"] = float("nan")  # NaN in a DataFrame: missing, as per record
    orders[1]["customer"] = None
    orders[2]["device"] = None
    orders[3]["amount"] = -0.0
    batch = _batch(orders)
    columnar = Columnar(model, True)
    fast = columnar.transform(batch, from_json=False)
    matrix, bad = _transform_batch(_handler(True), model, batch.to_pylist())
    assert fast is not None and not bad and _same(fast, matrix)


@pytest.mark.parametrize(("field", "column"), [
    ("amount", pa.array(["1.5"] * 3)),  # a string in a numeric field (per record: read as a number)
    ("device", pa.array([1.5, -0.0, 3.0])),  # floats in a categorical field ('1.5', '-0.0' per record)
    ("device", pa.array([{"a": 1}] * 3)),  # an object in a feature field
    ("amount", pa.array([{}] * 3, pa.struct([]))),  # an empty object in a feature field
    ("customer", pa.array(["x"] * 3)),  # a value where the model reads an object
])
def test_dataframe_columns_of_other_types_decline(field, column):
    batch = _batch(make_orders(3, seed=40))
    batch = batch.set_column(batch.schema.get_field_index(field), field, column)
    assert Columnar(MODELS["ignore"], True).transform(batch, from_json=False) is None


def test_models_with_feature_code_never_take_it(tmp_path):
    from serving_common.features.user_code import FeatureCode

    path = tmp_path / "f.py"
    path.write_text("def extract(record):\n    return {**record, 'x2': record['amount'] * 2}\n")
    code = FeatureCode(path)
    records = code.extract_records(ORDERS[:300])
    model = FittedFeatures.fit(records, infer_spec(records, label="default", drop=["order_id"]), code=code,
                               extracted=True)
    assert not Columnar(model, True).usable


@pytest.mark.parametrize(("change", "name"), [('"fresh_field": 1', "fresh_field"),
                                              ('"customer": {"age": 3, "fresh_size": 44}', "customer.fresh_size")])
def test_unknown_fields_with_warn_are_scored_and_logged(change, name, caplog):
    # (names no other test uses: the checker logs each name once per process)
    lines = _lines(20, 41)
    lines[6] = _odd_line(change)
    with caplog.at_level(logging.WARNING, logger="preprocess"):
        fast = _columnar(MODELS["warn"], lines)
    assert fast is not None and _same(fast, _per_record(MODELS["warn"], lines))
    assert any(name in r.getMessage() and "record 6" in r.getMessage() for r in caplog.records)
