"""``spark-submit spark/submit.py``: the library call with arguments, in its own Spark application."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from local_test.orders import make_orders
from serving_common.features.features import FittedFeatures
from serving_common.features.spec import infer_spec

ROOT = Path(__file__).resolve().parents[2]
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"


def test_spark_submit_apply_with_bad_records_aside(tmp_path):
    orders = make_orders(300, seed=51)
    model = FittedFeatures.fit(orders, infer_spec(orders, label="default", drop=["order_id"]))
    model.save(tmp_path / "model")
    lines = [json.dumps(o) for o in orders]
    lines[10] = lines[10].replace('"hour": ', '"hour": "x", "ignored": ')
    (tmp_path / "orders.jsonl").write_text("\n".join(lines) + "\n")
    command = [str(SPARK_SUBMIT), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
               str(ROOT / "spark" / "submit.py"), "apply", "--model", str(tmp_path / "model"),
               "--input", str(tmp_path / "orders.jsonl"), "--output", str(tmp_path / "out"), "--errors", "aside"]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote 299 rows, 1 bad records" in done.stdout
    table = pq.read_table(tmp_path / "out" / "parquet")
    good = orders[:10] + orders[11:]
    expected = np.column_stack([[o["default"] for o in good], model.transform_records_sklearn(good)])
    assert np.array_equal(np.column_stack([c.to_numpy() for c in table.columns]), expected)
    errors = [json.loads(line) for p in (tmp_path / "out" / "errors").glob("part-*")
              for line in p.read_text().splitlines()]
    assert [e["_error"] for e in errors] == ["field 'hour': 'x' is not a number"]
    # a bad record without --errors aside: exit status 2 and one line naming record and reason
    command[command.index("--output") + 1] = str(tmp_path / "out2")
    failed = subprocess.run(command[:-2], capture_output=True, text=True, env=env, timeout=300)
    assert failed.returncode == 2, failed.stderr[-3000:]
    # spark-submit forwards the Python driver's stderr to its own stdout
    assert "smkit_spark apply: file:" in failed.stdout and "field 'hour': 'x' is not a number" in failed.stdout


def test_fit_grouping_options_read_as_the_image_reads_them():
    from smkit_spark.cli import _frequency, parser

    args = parser().parse_args(["fit", "--input", "x", "--output", "y", "--min-frequency", "20",
                                "--max-categories", "5"])
    assert (_frequency(args.min_frequency), args.max_categories) == (20, 5)
    assert type(_frequency(args.min_frequency)) is int  # a count, not the fraction 20.0
    assert _frequency(0.05) == 0.05 and _frequency(None) is None
