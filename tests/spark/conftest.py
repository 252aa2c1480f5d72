"""One SparkSession (local[2]) for every Spark test, and the orders they share.

Spark needs Java 17 (setup.sh installs it) and runs the executors' Python with this interpreter.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
for folder in (ROOT / "spark", ROOT / "containers" / "preprocess"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the executors' Python: this venv
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("smkit-spark-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.memory", "1g")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "500")  # several batches per file
               .config("spark.local.dir", str(tmp_path_factory.mktemp("spark-local")))
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
