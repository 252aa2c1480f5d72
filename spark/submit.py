"""Entry point for ``spark-submit``: ``spark-submit [--master ...] spark/submit.py apply|fit ...``
(see ``smkit_spark.cli``). It makes this folder importable and ships nothing else: the package sends the
transform's code to the executors itself."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smkit_spark.cli import main

if __name__ == "__main__":
    sys.exit(main())
