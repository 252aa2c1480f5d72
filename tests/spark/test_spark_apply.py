"""Applying a fitted preprocess model on Spark local[2]: the image's transform, its CSV bytes, its record
rules. The model is fitted in-process by the image's own code; scikit-learn's transform is the reference."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from local_test.orders import make_orders, write_jsonl
from serving_common.encoders import encode_csv
from serving_common.features.features import FittedFeatures
from serving_common.features.spec import infer_spec
from serving_common.features.user_code import FeatureCode
from smkit_spark import RecordError, read_model, transform, write_features


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> tuple[FittedFeatures, Path]:
    orders = make_orders(1500, seed=21)
    spec = infer_spec(orders, label="default", drop=["order_id"], min_frequency=20)
    model = FittedFeatures.fit(orders, spec)
    model_dir = tmp_path_factory.mktemp("model")
    model.save(model_dir)
    return model, model_dir


def _orders(n: int, seed: int) -> list[dict]:
    orders = make_orders(n, seed=seed)
    orders[0]["customer"]["country"] = "XX"  # unseen category
    orders[1]["customer"] = {}  # every customer field missing
    orders[2]["amount"] = None
    orders[3]["device"] = "smart-fridge"
    return orders


def _expected(model: FittedFeatures, orders: list[dict]) -> np.ndarray:
    """label + features through scikit-learn (the reference the image's fast path equals)."""
    return np.column_stack([[float(o["default"]) for o in orders], model.transform_records_sklearn(orders)])


def _csv(matrix: np.ndarray) -> bytes:
    """The image's CSV encoding of ``matrix``, every line ending with a line break."""
    return encode_csv(matrix).rstrip(b"\n") + b"\n"


def _text(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.glob("part-*")))


def _parquet(folder: Path) -> np.ndarray:
    table = pq.read_table(folder)
    return np.column_stack([table.column(i).to_numpy() for i in range(table.num_columns)])


def test_jsonl_to_csv_and_parquet_equal_the_image_transform(spark, fitted, tmp_path):
    model, model_dir = fitted
    orders = _orders(1200, seed=5)
    write_jsonl(orders[:700], tmp_path / "orders" / "part-1.jsonl")
    lines = [json.dumps(o) for o in orders[700:]]
    (tmp_path / "orders" / "part-2.jsonl").write_text("\n".join(lines[:10]) + "\n\n  \n" + "\n".join(lines[10:]))
    # Spark packs small files into partitions largest first: part-1 (the larger) comes first, as here
    run = write_features(spark, model_dir, str(tmp_path / "orders"), tmp_path / "out")
    assert run.rows == 1200 and run.failed == 0
    expected = _expected(model, orders)
    # the CSV bytes the image's batch transform writes (SMKIT_OUTPUT_LABEL=true), one line per record
    assert _text(tmp_path / "out" / "csv") == _csv(expected)
    table = pq.read_table(tmp_path / "out" / "parquet")
    assert table.column_names == ["default", *model.output_columns]
    assert np.array_equal(_parquet(tmp_path / "out" / "parquet"), expected)  # bit for bit (float64)


def test_dataframe_and_parquet_input_give_the_same_features(spark, fitted, tmp_path):
    model, model_dir = fitted
    orders = _orders(300, seed=6)
    orders[2]["amount"] = 12  # an int where the others are floats: the schema makes it a double
    write_jsonl(orders, tmp_path / "orders.jsonl")
    frame = spark.read.json(str(tmp_path / "orders.jsonl"))  # structs for the nested objects
    frame.write.parquet(str(tmp_path / "orders.parquet"))
    features = transform(spark, model_dir, frame, csv=False).toPandas().to_numpy()
    assert np.array_equal(features, _expected(model, orders))
    run = write_features(spark, model_dir, str(tmp_path / "orders.parquet"), tmp_path / "out", formats=["parquet"])
    assert run.rows == 300 and not (tmp_path / "out" / "csv").exists()
    assert np.array_equal(_parquet(tmp_path / "out" / "parquet"), _expected(model, orders))


def test_model_tar_gz_and_features_only(spark, fitted, tmp_path):
    model, model_dir = fitted
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in model_dir.iterdir():
            tar.add(path, f"./{path.name}")
    orders = _orders(50, seed=7)
    write_jsonl(orders, tmp_path / "orders.jsonl")
    write_features(spark, archive, str(tmp_path / "orders.jsonl"), tmp_path / "out", label=False, formats=["csv"])
    assert _text(tmp_path / "out" / "csv") == _csv(model.transform_records_sklearn(orders))


def test_a_bad_record_fails_the_job_naming_record_and_reason(spark, fitted, tmp_path):
    _, model_dir = fitted
    orders = _orders(900, seed=8)
    orders[640]["hour"] = "noon"
    write_jsonl(orders, tmp_path / "orders.jsonl")
    with pytest.raises(RecordError) as failure:
        write_features(spark, model_dir, str(tmp_path / "orders.jsonl"), tmp_path / "out")
    message = str(failure.value)
    assert "orders.jsonl" in message and orders[640]["order_id"] in message
    assert "field 'hour': 'noon' is not a number" in message


@pytest.mark.parametrize("problem", ["label", "json", "array"])
def test_other_bad_records_fail_too(spark, fitted, tmp_path, problem):
    _, model_dir = fitted
    lines = [json.dumps(o) for o in _orders(20, seed=9)]
    if problem == "label":
        lines[4] = json.dumps({k: v for k, v in json.loads(lines[4]).items() if k != "default"})
        reason = "the label 'default' is missing"
    elif problem == "json":
        lines[4] = lines[4][:-3]
        reason = "invalid JSON"
    else:
        lines[4] = "[1, 2]"
        reason = "not a JSON object but list"
    (tmp_path / "orders.jsonl").write_text("\n".join(lines))
    with pytest.raises(RecordError, match=re.escape(reason)):
        write_features(spark, model_dir, str(tmp_path / "orders.jsonl"), tmp_path / "out", formats=["parquet"])


def test_bad_records_aside(spark, fitted, tmp_path):
    model, model_dir = fitted
    orders = _orders(600, seed=10)
    orders[3]["hour"] = "noon"
    orders[550]["customer"]["age"] = [1]
    write_jsonl(orders, tmp_path / "orders.jsonl")
    with open(tmp_path / "orders.jsonl", "a") as f:
        f.write("{broken\n")
    run = write_features(spark, model_dir, str(tmp_path / "orders.jsonl"), tmp_path / "out", errors="aside")
    assert (run.rows, run.failed) == (598, 3)
    good = [o for i, o in enumerate(orders) if i not in (3, 550)]
    assert _text(tmp_path / "out" / "csv") == _csv(_expected(model, good))
    assert np.array_equal(_parquet(tmp_path / "out" / "parquet"), _expected(model, good))
    errors = [json.loads(line) for p in sorted((tmp_path / "out" / "errors").glob("part-*"))
              for line in p.read_text().splitlines()]
    by_record = {e["_record"][:40]: e for e in errors}
    assert len(errors) == 3 and all(e["_source"].endswith("orders.jsonl") for e in errors)
    assert by_record[json.dumps(orders[3])[:40]]["_error"] == "field 'hour': 'noon' is not a number"
    assert "customer.age" in by_record[json.dumps(orders[550])[:40]]["_error"]
    assert by_record["{broken"]["_error"].startswith("invalid JSON")


def test_the_models_feature_code_runs_on_the_executors(spark, tmp_path):
    code_path = tmp_path / "my_features.py"
    code_path.write_text("def extract(record):\n"
                         "    return {**record, 'amount_per_item': record['amount'] / record['items']}\n")
    code = FeatureCode(code_path)
    orders = make_orders(400, seed=12)
    records = code.extract_records(orders)
    spec = infer_spec(records, label="default", drop=["order_id"])
    model = FittedFeatures.fit(records, spec, code=code, extracted=True)
    model.save(tmp_path / "model")
    assert "amount_per_item" in model.output_columns
    write_jsonl(orders, tmp_path / "orders.jsonl")
    write_features(spark, tmp_path / "model", str(tmp_path / "orders.jsonl"), tmp_path / "out", formats=["parquet"])
    assert np.array_equal(_parquet(tmp_path / "out" / "parquet"), _expected(model, orders))


def test_models_without_fast_path_or_files_are_refused(fitted, tmp_path):
    model, _ = fitted
    FittedFeatures(model.spec, model.transformer, fast=False).save(tmp_path / "slow")
    with pytest.raises(ValueError, match="no fast path"):
        read_model(tmp_path / "slow")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"features\.json"):
        read_model(tmp_path / "empty")
