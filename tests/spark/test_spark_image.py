"""Spark against the real preprocess image: the same orders through the image's batch transform and
through Spark give the same CSV bytes and the same float64 bits; the image serves a model fitted on Spark
unchanged, with features within FEATURE_TOLERANCE of the image's own fit on the same data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from local_test.docker_run import OptMl, ServingContainer, train
from local_test.orders import make_orders, write_jsonl
from serving_common.features.features import FittedFeatures
from smkit_spark import FEATURE_TOLERANCE, fit_model, write_features

pytestmark = pytest.mark.docker

# The image's batch transform of training data (what local_test and the SDK flows set).
BATCH_ENV = {"SMKIT_OUTPUT_LABEL": "true", "SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100",
             "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}


@pytest.fixture(scope="module")
def trained(docker, image_of, tmp_path_factory) -> tuple[Path, Path]:
    """(the image's model folder, its training data: one JSON Lines file)."""
    opt_ml = OptMl(tmp_path_factory.mktemp("spark-pre"), {"label": "default", "drop": "order_id"},
                   {"train": {"ContentType": "application/jsonlines"}})
    data = write_jsonl(make_orders(3000, seed=41), opt_ml.channel_dir("train") / "orders.jsonl")
    result = train(docker, image_of("preprocess"), opt_ml)
    assert result.exit_code == 0, result.logs
    return opt_ml.model_dir, data


def _held_out() -> list[dict]:
    orders = make_orders(1500, seed=42)
    orders[0]["customer"]["country"] = "XX"  # unseen category
    orders[1]["customer"] = {}  # every customer field missing
    orders[2]["amount"] = None
    orders[3]["amount"] = 1e300  # extreme but finite
    orders[4]["amount"] = 7  # an int among floats
    orders[5]["device"] = "smart-fridge"
    return orders


def _batch_transform(docker, image: str, model_dir: Path, body: bytes) -> bytes:
    """The image's batch transform output for one JSON Lines mini-batch: the response, its last line ending
    with a line break as the others (SageMaker's AssembleWith=Line adds one where the response has none)."""
    with ServingContainer(docker, image, model_dir, env=BATCH_ENV) as server:
        server.wait_ready()
        response = server.invoke(body, "application/jsonlines")
        assert response.status_code == 200, response.text
        return response.content if response.content.endswith(b"\n") else response.content + b"\n"


def _csv_float64(data: bytes) -> np.ndarray:
    return np.array([[float(cell) for cell in line.split(",")] for line in data.decode().splitlines()])


def test_spark_writes_the_images_batch_transform_output(spark, docker, image_of, trained, tmp_path):
    model_dir, _ = trained
    orders = _held_out()
    body = "".join(json.dumps(o) + "\n" for o in orders).encode()
    (tmp_path / "orders.jsonl").write_bytes(body)
    image_csv = _batch_transform(docker, image_of("preprocess"), model_dir, body)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "64k")  # several splits of the one file
    try:
        write_features(spark, model_dir, str(tmp_path / "orders.jsonl"), tmp_path / "out")
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    spark_csv = b"".join(p.read_bytes() for p in sorted((tmp_path / "out" / "csv").glob("part-*")))
    assert len(list((tmp_path / "out" / "csv").glob("part-*"))) > 1  # several splits of the file, in order
    assert spark_csv == image_csv  # byte for byte
    table = pq.read_table(tmp_path / "out" / "parquet")
    parquet = np.column_stack([table.column(i).to_numpy() for i in range(table.num_columns)])
    assert parquet.dtype == np.float64
    # bit for bit against the image's CSV parsed as float64 (its numbers round-trip exactly)
    assert np.array_equal(parquet.view(np.uint64), _csv_float64(image_csv).view(np.uint64))


def test_the_image_serves_a_model_fitted_on_spark(spark, docker, image_of, trained, tmp_path):
    image_model, data = trained
    fit_model(spark, str(data), tmp_path / "model", label="default", drop=["order_id"])
    orders = _held_out()
    body = "".join(json.dumps(o) + "\n" for o in orders).encode()
    served = _csv_float64(_batch_transform(docker, image_of("preprocess"), tmp_path / "model", body))
    spark_model = FittedFeatures.load(tmp_path / "model")
    image_fit = FittedFeatures.load(image_model)
    assert spark_model.output_columns == image_fit.output_columns
    labels = [float(o["default"]) for o in orders]
    assert np.array_equal(served, np.column_stack([labels, spark_model.transform_records_sklearn(orders)]))
    np.testing.assert_allclose(served[:, 1:], image_fit.transform_records(orders), rtol=FEATURE_TOLERANCE,
                               atol=FEATURE_TOLERANCE)
