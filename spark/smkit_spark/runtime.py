"""The preprocess image's runtime, as the Spark driver and executors import it: the one place that knows
where the fast transform lives.

The transform is never copied here: the driver imports the preprocess image's own modules, and
:func:`ship_runtime` zips those packages (and this one) once per Spark application and hands the zip to
``SparkContext.addPyFile``, so every executor imports the very same code. When the fast-transform runtime
moves into ``serving_common`` (issue 14), only the imports below and :data:`RUNTIME_PACKAGES` change.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[2]
_PREPROCESS = ROOT / "containers" / "preprocess"
if (_PREPROCESS / "preprocess_container").is_dir() and str(_PREPROCESS) not in sys.path:
    sys.path.insert(0, str(_PREPROCESS))  # a checkout of the repository: the image's source folder

from preprocess_container.handler import PreprocessHandler  # noqa: E402
from serving_common.content_types import CSV  # noqa: E402
from serving_common.errors import BadRequest  # noqa: E402
from serving_common.features.fast_transform import to_category  # noqa: E402
from serving_common.features.features import MISSING_CATEGORY, FittedFeatures, build_transformer, records_to_array  # noqa: E402
from serving_common.features.records import flatten_if_nested  # noqa: E402
from serving_common.features.spec import FeatureSpec, SpecError, infer_spec  # noqa: E402
from serving_common.features.spec import _value_kind as value_kind  # noqa: E402  (how infer_spec reads a value)
from serving_common.features.user_code import FeatureCode  # noqa: E402
from serving_common.features.validation import MAX_KNOWN_FIELDS, RecordRules  # noqa: E402
from serving_common.features.validation import is_missing as missing_value  # noqa: E402  (the record checks' rule)
from serving_common.settings import Settings  # noqa: E402

if TYPE_CHECKING:
    from pyspark import SparkContext

__all__ = [
    "CSV",
    "MAX_KNOWN_FIELDS",
    "MISSING_CATEGORY",
    "RUNTIME_PACKAGES",
    "BadRequest",
    "FeatureCode",
    "FeatureSpec",
    "FittedFeatures",
    "PreprocessHandler",
    "RecordRules",
    "Settings",
    "SpecError",
    "build_transformer",
    "flatten_if_nested",
    "infer_spec",
    "missing_value",
    "records_to_array",
    "ship_runtime",
    "to_category",
    "value_kind",
]

# The packages executors import: the image's transform, the shared core it uses, and this package.
RUNTIME_PACKAGES = ("preprocess_container", "serving_common", "smkit_spark")

_shipped: set[str] = set()
_lock = threading.Lock()


def _package_dir(name: str) -> Path:
    module = importlib.import_module(name)
    return Path(module.__file__).resolve().parent


def runtime_zip(directory: Path) -> Path:
    """A zip of :data:`RUNTIME_PACKAGES` (Python sources only) in ``directory``."""
    path = Path(directory) / "smkit_spark_runtime.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in RUNTIME_PACKAGES:
            package = _package_dir(name)
            for source in sorted(package.rglob("*.py")):
                archive.write(source, Path(name) / source.relative_to(package))
    return path


def ship_runtime(context: SparkContext) -> None:
    """Make the runtime importable on the executors of ``context`` (once per Spark application)."""
    with _lock:
        key = context.applicationId
        if key in _shipped:
            return
        directory = Path(tempfile.mkdtemp(prefix="smkit-spark-"))
        context.addPyFile(str(runtime_zip(directory)))
        _shipped.add(key)
