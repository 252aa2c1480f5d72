"""The preprocess image end to end: real `train`, real `serve`, numbers equal to scikit-learn in-process.

Batch transform with labels produces the CSV layout SageMaker's XGBoost trains on (label first, no header).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost

from local_test.docker_run import ROOT, OptMl, ServingContainer, train
from local_test.orders import make_orders, write_jsonl

sys.path.insert(0, str(ROOT / "containers" / "preprocess"))
from serving_common.features.features import FittedFeatures
from serving_common.features.records import flatten


@pytest.fixture(scope="module")
def model_dir(docker, image_of, tmp_path_factory) -> Path:
    opt_ml = OptMl(tmp_path_factory.mktemp("pre"), {"label": "default", "drop": "order_id", "min_frequency": "20"},
                   {"train": {"ContentType": "application/jsonlines"}})
    train_dir = opt_ml.channel_dir("train")
    orders = make_orders(3000, seed=11)
    write_jsonl(orders[:1500], train_dir / "part-0001.jsonl")
    (train_dir / "part-0002.json").write_text(json.dumps(orders[1500:]))  # a JSON array file
    (train_dir / "_SUCCESS").write_text("")
    (train_dir / ".part-0001.jsonl.crc").write_bytes(b"\x00\x01")
    result = train(docker, image_of("preprocess"), opt_ml)
    assert result.exit_code == 0, result.logs
    assert "read 3000 records" in result.logs
    return opt_ml.model_dir


@pytest.fixture(scope="module")
def reference(model_dir) -> FittedFeatures:
    """The same fitted transform, loaded in-process; its transform_*_sklearn methods are the reference."""
    return FittedFeatures.load(model_dir)


def _csv(text: str) -> np.ndarray:
    return np.array([[float(cell) for cell in line.split(",")] for line in text.splitlines()])


def test_served_features_equal_sklearn_bit_for_bit(docker, image_of, model_dir, reference):
    orders = make_orders(300, seed=99)
    orders[0]["customer"]["country"] = "XX"  # unseen category
    orders[1]["customer"] = {}  # every customer field missing
    orders[2]["amount"] = None
    orders[3]["amount"] = 1e300  # extreme but finite after scaling
    orders[4]["device"] = "smart-fridge"
    expected = reference.transform_records_sklearn(orders)
    with ServingContainer(docker, image_of("preprocess"), model_dir) as server:
        server.wait_ready()
        for content_type, body in [
            ("application/json", json.dumps({"instances": orders}).encode()),
            ("application/jsonlines", "\n".join(json.dumps(o) for o in orders).encode() + b"\n\n"),
        ]:
            csv = server.invoke(body, content_type, "text/csv")
            assert csv.status_code == 200, csv.text
            assert np.array_equal(_csv(csv.text), expected)  # CSV numbers round-trip exactly
            npy = server.invoke(body, content_type, "application/x-npy")
            assert np.array_equal(np.load(io.BytesIO(npy.content), allow_pickle=False), expected)
            as_json = server.invoke(body, content_type, "application/json").json()
            assert np.array_equal(np.array(as_json["instances"]), expected)
        # A label in the input is ignored: the columns never shift.
        assert _csv(server.invoke(json.dumps(orders[5]).encode(), "application/json", "text/csv").text).shape == \
            (1, len(reference.output_columns))
        # Uninterpretable values: 400 naming the field and the record.
        bad = server.invoke(json.dumps([orders[0], {**orders[1], "hour": "noon"}]).encode(), "application/json")
        assert bad.status_code == 400
        assert "hour" in bad.json()["message"] and "record 1" in bad.json()["message"]


def test_csv_rows_in_input_column_order(docker, image_of, model_dir, reference):
    orders = make_orders(20, seed=5)
    flat = [flatten(order) for order in orders]
    rows = [["" if row.get(c) is None else str(row[c]) for c in reference.input_columns] for row in flat]
    with ServingContainer(docker, image_of("preprocess"), model_dir) as server:
        server.wait_ready()
        body = "\n".join(",".join(row) for row in rows).encode()
        response = server.invoke(body, "text/csv", "text/csv")
        assert response.status_code == 200, response.text
        assert np.array_equal(_csv(response.text), reference.transform_rows_sklearn(rows))


def test_batch_transform_with_labels_trains_xgboost(docker, image_of, model_dir, reference):
    orders = make_orders(2000, seed=3)
    env = {"SMKIT_OUTPUT_LABEL": "true", "SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100",
           "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}
    with ServingContainer(docker, image_of("preprocess"), model_dir, env=env) as server:
        server.wait_ready()
        body = "\n".join(json.dumps(o) for o in orders).encode()
        response = server.invoke(body, "application/jsonlines")
        assert response.status_code == 200, response.text
        missing_label = server.invoke(json.dumps([{k: v for k, v in orders[0].items() if k != "default"}]).encode(),
                                      "application/json")
        assert missing_label.status_code == 400 and "label" in missing_label.json()["message"]
    table = _csv(response.text)
    assert table.shape == (2000, 1 + len(reference.output_columns))
    assert np.array_equal(table[:, 0], [o["default"] for o in orders])
    assert np.array_equal(table[:, 1:], reference.transform_records_sklearn(orders))
    matrix = xgboost.DMatrix(table[:, 1:], label=table[:, 0])
    booster = xgboost.train({"objective": "binary:logistic", "eval_metric": "auc"}, matrix, num_boost_round=20)
    auc = float(booster.eval(matrix).split(":")[1])
    assert auc > 0.75  # the features carry the label's signal


def test_script_mode_hooks_get_custom_attributes(docker, image_of, model_dir, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for item in model_dir.iterdir():
        (model / item.name).write_bytes(item.read_bytes())
    (model / "code").mkdir()
    (model / "code" / "requirements.txt").write_text("some-package==1.0\n")
    (model / "code" / "inference.py").write_text(
        "import json\n"
        "def output_fn(prediction, accept, context):\n"
        "    body = json.dumps({'rows': len(prediction), 'attributes': context.custom_attributes})\n"
        "    return body, 'application/json'\n")
    with ServingContainer(docker, image_of("preprocess"), model) as server:
        server.wait_ready()
        response = server.invoke(json.dumps(make_orders(3)).encode(), "application/json", "application/json",
                                 headers={"X-Amzn-SageMaker-Custom-Attributes": "market=DE,trace=1"})
        assert response.status_code == 200, response.text
        assert response.json() == {"rows": 3, "attributes": "market=DE,trace=1"}
        assert "requirements.txt is NOT installed" in server.logs()


def test_batch_record_errors_fail_by_default_or_stay_on_their_line(docker, image_of, model_dir, reference):
    orders = make_orders(4, seed=8)
    orders[2]["hour"] = "noon"
    body = "\n".join(json.dumps(o) for o in orders).encode()
    with ServingContainer(docker, image_of("preprocess"), model_dir) as server:
        server.wait_ready()
        failed = server.invoke(body, "application/jsonlines", "text/csv")
        assert failed.status_code == 400 and failed.json()["message"].startswith("record 2: field 'hour'")
    with ServingContainer(docker, image_of("preprocess"), model_dir, env={"SMKIT_RECORD_ERRORS": "line"}) as server:
        server.wait_ready()
        for accept in ("text/csv", "application/jsonlines"):
            response = server.invoke(body, "application/jsonlines", accept)
            assert response.status_code == 200, response.text
            assert response.text.endswith("\n")
            lines = response.text.splitlines()
            assert len(lines) == 4
            assert json.loads(lines[2])["error"].startswith("record 2: field 'hour'")
            good = [0, 1, 3]
            rows = [json.loads(lines[i]) if accept != "text/csv" else [float(x) for x in lines[i].split(",")]
                    for i in good]
            assert np.array_equal(np.array(rows), reference.transform_records_sklearn([orders[i] for i in good]))



def _rows(body: bytes, accept: str) -> list[list[float]]:
    lines = body.decode().split("\n")
    assert lines[-1] == "", "a line-oriented response ends with its newline"
    return [json.loads(line) if accept != "text/csv" else [float(x) for x in line.split(",")] for line in lines[:-1]]


def test_responses_joined_as_batch_transform_joins_them_keep_every_row(docker, image_of, model_dir, reference):
    # AssembleWith=None (the SDK's default) writes the mini-batches' responses one after the other, as they are.
    batches = [make_orders(3, seed=41), make_orders(2, seed=42), make_orders(1, seed=43)]
    expected = reference.transform_records_sklearn([order for batch in batches for order in batch])
    with ServingContainer(docker, image_of("preprocess"), model_dir) as server:
        server.wait_ready()
        for accept in ("text/csv", "application/jsonlines"):
            responses = [server.invoke("\n".join(json.dumps(o) for o in batch).encode(), "application/jsonlines",
                                       accept) for batch in batches]
            assert all(response.status_code == 200 for response in responses)
            rows = _rows(b"".join(response.content for response in responses), accept)
            assert len(rows) == 6 and {len(row) for row in rows} == {len(reference.output_columns)}
            assert np.array_equal(np.array(rows), expected)


def test_records_of_the_wrong_shape_are_400s_naming_record_and_field(docker, image_of, model_dir, reference):
    good = make_orders(1, seed=44)[0]
    with ServingContainer(docker, image_of("preprocess"), model_dir) as server:
        server.wait_ready()
        for body, message in [
            ({}, "record 0: none of the model's input fields is present"),
            ({"foo": 1}, "record 0: none of the model's input fields is present"),
            ([good, {"customer": "abc"}], "record 1: field 'customer': expected an object"),
            ({"instances": [good], "extra": 1}, "but also has 'extra'"),
        ]:
            response = server.invoke(json.dumps(body).encode(), "application/json", "text/csv")
            assert response.status_code == 400, (body, response.text)
            assert message in response.json()["message"]
        # one rule for JSON booleans in every image: true/false are 1/0 in a numeric field
        as_bool = server.invoke(json.dumps({**good, "items": True}).encode(), "application/json", "text/csv")
        as_number = server.invoke(json.dumps({**good, "items": 1}).encode(), "application/json", "text/csv")
        assert as_bool.status_code == 200 and as_bool.content == as_number.content
        # an unknown field is logged by default (the record is scored) ...
        assert server.invoke(json.dumps({**good, "coupon": "X"}).encode(), "application/json",
                             "text/csv").status_code == 200
    with ServingContainer(docker, image_of("preprocess"), model_dir, env={"SMKIT_UNKNOWN_FIELDS": "error"}) as server:
        server.wait_ready()
        # ... and a 400 when the endpoint's environment says so
        response = server.invoke(json.dumps({**good, "coupon": "X"}).encode(), "application/json", "text/csv")
        assert response.status_code == 400
        assert response.json()["message"] == "record 0: field 'coupon' is not a field this model knows " \
                                             "(unknown_fields=error)"

FEATURE_CODE = '''
def extract(record):
    """Derived field: the price per item."""
    order = dict(record)
    amount, items = order.get("amount"), order.get("items")
    order["amount_per_item"] = None if amount is None or not items else amount / items
    return order
'''


def test_feature_code_from_a_code_channel(docker, image_of, tmp_path):
    opt_ml = OptMl(tmp_path / "opt_ml", {"label": "default", "drop": "order_id"},
                   {"train": {"ContentType": "application/jsonlines"}, "code": {}})
    write_jsonl(make_orders(1500, seed=31), opt_ml.channel_dir("train") / "orders.jsonl")
    (opt_ml.channel_dir("code") / "derive.py").write_text(FEATURE_CODE)
    result = train(docker, image_of("preprocess"), opt_ml)
    assert result.exit_code == 0, result.logs
    assert "feature code: derive.py (/opt/ml/input/data/code/derive.py) defines extract" in result.logs
    model_dir = opt_ml.model_dir
    meta = json.loads((model_dir / "features.json").read_text())
    assert meta["code"]["original_name"] == "derive.py" and meta["fast_path"]
    assert (model_dir / "code" / "features.py").read_text() == FEATURE_CODE
    assert "amount_per_item" in meta["output_columns"]

    # In process: the same model through scikit-learn, and the derived feature computed by hand.
    reference = FittedFeatures.load(model_dir)
    orders = make_orders(200, seed=32)
    orders[0]["items"] = 0  # amount_per_item missing: imputed
    orders[1]["amount"] = None
    expected = reference.transform_records_sklearn(orders)
    numeric = reference.transformer.named_transformers_["numeric"]
    k = reference.spec.numeric.index("amount_per_item")
    median, mean, scale = (numeric.named_steps["impute"].statistics_[k], numeric.named_steps["scale"].mean_[k],
                           numeric.named_steps["scale"].scale_[k])
    per_item = [median if not o.get("items") or o.get("amount") is None else o["amount"] / o["items"] for o in orders]
    column = reference.output_columns.index("amount_per_item")
    assert expected[:, column].tolist() == [(value - mean) / scale for value in per_item]

    with ServingContainer(docker, image_of("preprocess"), model_dir) as server:
        server.wait_ready()
        for content_type, body in [
            ("application/json", json.dumps({"instances": orders}).encode()),
            ("application/jsonlines", "\n".join(json.dumps(o) for o in orders).encode()),
        ]:
            csv = server.invoke(body, content_type, "text/csv")
            assert csv.status_code == 200, csv.text
            assert np.array_equal(_csv(csv.text), expected)  # exact: CSV numbers round-trip
        rows = server.invoke(b"1,2,3", "text/csv", "text/csv")
        assert rows.status_code == 400 and "not CSV rows" in rows.json()["message"]
        logs = server.logs()
    assert "fast path from fast_transform.npz" in logs and "code=derive.py" in logs
