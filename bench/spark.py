"""Labelled features of JSON Lines orders, three ways on the same machine, in rows per second per core:

1. **ours on Spark** (``smkit_spark.write_features``, ``local[2]``): the image's fast transform on Arrow
   batches (``mapInArrow``), CSV out;
2. **scikit-learn in a pandas UDF** on the same Spark (``mapInPandas``): what a user would otherwise write:
   each batch's lines parsed with ``json``, flattened with ``pandas.json_normalize``, put through the
   fitted ``ColumnTransformer`` (``transformer.joblib`` of the same model), CSV out;
3. **the preprocess image's batch transform**: ``serve`` with ``SMKIT_OUTPUT_LABEL=true`` (2 workers),
   the orders sent as JSON Lines mini-batches of ``--batch`` records by 2 concurrent clients (SageMaker's
   ``MaxConcurrentTransforms``), Accept text/csv.

The model is trained by the image's own ``train`` on the first 5000 orders. Each Spark run is timed after
one warm-up run of the same job (JVM and Python workers started). Per core = rows/s / 2 (``local[2]``,
2 workers). Prints figures; asserts nothing (the issue's goals are printed beside them).

    .venv/bin/python bench/spark.py [--orders 200000] [--batch 1000] [--partitions 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "spark"), str(ROOT / "containers" / "preprocess")]

from local_test.docker_run import OptMl, ServingContainer, docker_client, ensure_image, train  # noqa: E402
from local_test.orders import make_orders, write_jsonl  # noqa: E402

CORES = 2
BATCH_ENV = {"SMKIT_OUTPUT_LABEL": "true", "SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100",
             "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv", "SAGEMAKER_MODEL_SERVER_WORKERS": str(CORES)}


def _sklearn_udf(model_dir: str, input_columns: list[str], n_numeric: int, label: str):
    """The pandas UDF a user would write around the fitted scikit-learn transformer."""

    def run(frames):
        import joblib
        import numpy as np
        import pandas as pd

        transformer = joblib.load(Path(model_dir) / "transformer.joblib")
        for frame in frames:
            records = [json.loads(line) for line in frame["value"] if line.strip()]
            flat = pd.json_normalize(records)
            table = flat.reindex(columns=input_columns)
            array = table.to_numpy(dtype=object)
            array[:, :n_numeric] = table.iloc[:, :n_numeric].astype(float).to_numpy()
            features = transformer.transform(array)
            labels = flat[label].astype(float).to_numpy()
            yield pd.DataFrame(np.column_stack([labels, features]))

    return run


def _time(label: str, job) -> float:
    job()  # warm-up: the JVM, the Python workers, the model load
    started = time.perf_counter()
    job()
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.2f} s", flush=True)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000, help="records per image request")
    parser.add_argument("--partitions", type=int, default=8, help="input files (Spark partitions)")
    args = parser.parse_args()
    os.environ["PYSPARK_PYTHON"] = sys.executable
    work = Path(tempfile.mkdtemp(prefix="smkit-bench-spark-"))
    try:
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    from pyspark.sql import SparkSession

    from serving_common.features.features import FittedFeatures
    from smkit_spark import write_features

    print(f"making {args.orders} orders and training the preprocess image", flush=True)
    orders = make_orders(args.orders, seed=1)
    client = docker_client()
    image = ensure_image(client, "preprocess")
    opt_ml = OptMl(work / "opt_ml", {"label": "default", "drop": "order_id"},
                   {"train": {"ContentType": "application/jsonlines"}})
    write_jsonl(orders[:5000], opt_ml.channel_dir("train") / "orders.jsonl")
    result = train(client, image, opt_ml)
    if result.exit_code != 0:
        print(result.logs, file=sys.stderr)
        return 1
    model_dir = opt_ml.model_dir
    model = FittedFeatures.load(model_dir)
    data = work / "orders"
    size = -(-len(orders) // args.partitions)
    for part in range(args.partitions):
        write_jsonl(orders[part * size:(part + 1) * size], data / f"part-{part:04d}.jsonl")
    lines = [json.dumps(o) for o in orders]

    spark = (SparkSession.builder.master(f"local[{CORES}]").appName("smkit-bench-spark")
             .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", str(CORES))
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    figures: dict[str, float] = {}
    try:
        print("Spark local[2]", flush=True)
        out = work / "out"
        figures["ours on Spark local[2] (mapInArrow)"] = _time("ours", lambda: write_features(
            spark, model_dir, str(data), out, formats=["csv"], mode="overwrite"))
        text = spark.read.option("lineSep", "\n").text(str(data))
        udf = _sklearn_udf(str(model_dir), model.input_columns, len(model.spec.numeric), model.spec.label)
        schema = ", ".join(f"c{i} double" for i in range(1 + len(model.output_columns)))
        figures["scikit-learn in a pandas UDF, same Spark"] = _time("sklearn UDF", lambda: text.mapInPandas(
            udf, schema).write.mode("overwrite").csv(str(work / "out-sklearn")))
    finally:
        spark.stop()

    print("the preprocess image's batch transform", flush=True)
    bodies = ["\n".join(lines[i:i + args.batch]).encode() for i in range(0, len(lines), args.batch)]
    with ServingContainer(client, image, model_dir, env=BATCH_ENV, host_network=True) as server:
        server.wait_ready()

        def send(body: bytes) -> int:
            response = server.invoke(body, "application/jsonlines", timeout=300)
            if response.status_code != 200:
                raise RuntimeError(response.text)
            return len(response.content)

        def batch_transform() -> None:
            with ThreadPoolExecutor(CORES) as pool:
                list(pool.map(send, bodies))

        figures["preprocess image batch transform (2 workers)"] = _time("image", batch_transform)

    print(f"\n{args.orders} orders, JSON Lines in, label + {len(model.output_columns)} features as CSV out")
    print(f"{'':48} {'s':>7} {'rows/s':>10} {'rows/s/core':>12}")
    for name, seconds in figures.items():
        rate = args.orders / seconds
        print(f"{name:48} {seconds:7.2f} {rate:10,.0f} {rate / CORES:12,.0f}")
    ours, udf_s, image_s = figures.values()
    print(f"\ngoal: ours >= 5x the scikit-learn UDF: {udf_s / ours:.1f}x; "
          f"ours per core >= the image's: {image_s / ours:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
