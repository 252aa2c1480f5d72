"""Do the models of a serial inference pipeline fit together? Checked before any container starts.

A model trained on one preprocess model's output and deployed behind another would score features it
was not trained on, and a width mismatch would only show at the first request. Every model folder says
what it produces or consumes, at its top level:

- a preprocess model's ``features.json``: ``output_columns`` (the width of each row it answers) and its
  schema ``fingerprint``;
- a model container's ``*-meta.json`` (``xgboost-meta.json``): ``num_features`` (the width it was trained
  on, always recorded) and ``features_fingerprint`` (when it was trained with the ``features`` channel).

:func:`check_pipeline` compares each model with the one before it: a different width, or a different
fingerprint where one is recorded, raises :class:`PipelineMismatchError`. ``local_test.pipeline`` runs it
when a ``PipelineModel`` is created locally; for AWS, run it on the archives before
``PipelineModel.deploy``::

    python -m serving_common.pipeline_check preprocess/model.tar.gz xgboost/model.tar.gz

(local ``model.tar.gz`` files or model folders, in pipeline order; exit status 0 when they fit, 1 when
they do not, 2 when an archive cannot be read). It needs the standard library only.
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import json
import os
import sys
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .settings import OUTPUT_LABEL, Settings

__all__ = ["META_PATTERN", "ModelFiles", "PipelineMismatchError", "check_pipeline", "main", "read_json_files"]

FEATURES_FILE = "features.json"
META_PATTERN = "*-meta.json"  # a model's description, e.g. xgboost-meta.json


class PipelineMismatchError(ValueError):
    """Two neighbouring models of a pipeline do not fit together (width or features fingerprint differs)."""


def read_json_files(path: Path, pattern: str) -> dict[str, dict[str, Any]]:
    """{file name: parsed JSON object} of the top-level files of a model folder or ``model.tar.gz`` whose
    name matches ``pattern`` (files that are not JSON objects are skipped)."""
    path = Path(path)
    found: dict[str, dict[str, Any]] = {}

    def keep(name: str, data: bytes) -> None:
        try:
            value = json.loads(data)
        except ValueError:
            return
        if isinstance(value, dict):
            found[name] = value

    if path.is_dir():
        for entry in sorted(path.iterdir()):
            if entry.is_file() and fnmatch.fnmatch(entry.name, pattern):
                keep(entry.name, entry.read_bytes())
        return found
    with tarfile.open(path) as tar:
        for member in tar:
            name = os.path.normpath(member.name)
            if member.isfile() and "/" not in name and fnmatch.fnmatch(name, pattern):
                source = tar.extractfile(member)
                if source is not None:
                    keep(name, source.read())
    return found


@dataclass
class ModelFiles:
    """What the check reads of one model of the pipeline."""

    label: str  # how messages name it, e.g. "container 2 (smkit-xgboost:0.1.0, model file:///m/xgb.tar.gz)"
    features: dict[str, Any] | None = None  # its features.json, when it is a preprocess model
    metas: dict[str, dict[str, Any]] = field(default_factory=dict)  # its *-meta.json files
    environment: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path, label: str | None = None, environment: Mapping[str, str] | None = None) -> ModelFiles:
        features = read_json_files(path, FEATURES_FILE).get(FEATURES_FILE)
        return cls(label or str(path), features, read_json_files(path, META_PATTERN), dict(environment or {}))

    def output_width(self) -> tuple[int, str] | None:
        """(width of the rows it answers, where that comes from), for a preprocess model."""
        columns = (self.features or {}).get("output_columns")
        if not isinstance(columns, list):
            return None
        if Settings.from_env(self.environment).output_label:  # the label first: one column more
            return len(columns) + 1, f"{FEATURES_FILE} output_columns plus the label column ({OUTPUT_LABEL}=true)"
        return len(columns), f"{FEATURES_FILE} output_columns"


def check_pair(producer: ModelFiles, consumer: ModelFiles) -> list[str]:
    """PipelineMismatchError when ``consumer`` cannot read what ``producer`` answers; else what was checked."""
    checked = []
    width = producer.output_width()
    fingerprint = (producer.features or {}).get("fingerprint")
    for meta_name, meta in consumer.metas.items():
        expected = meta.get("features_fingerprint")
        if expected and fingerprint is not None:
            if expected != fingerprint:
                raise PipelineMismatchError(
                    f"pipeline refused: {consumer.label} was trained on features with fingerprint {expected} "
                    f"({meta_name}), but {producer.label} produces features with fingerprint {fingerprint} "
                    f"({FEATURES_FILE}). The model would score features it was not trained on: deploy it behind "
                    "the preprocess model it was trained with, or retrain it on this one's output.")
            checked.append(f"fingerprint {str(expected)[:12]}")
        expected_width = meta.get("num_features")
        if width is not None and isinstance(expected_width, int):
            if expected_width != width[0]:
                raise PipelineMismatchError(
                    f"pipeline refused: {consumer.label} was trained on rows of {expected_width} features "
                    f"({meta_name} num_features), but {producer.label} answers rows of {width[0]} ({width[1]}). "
                    "Every request would fail: deploy the model behind the preprocess model it was trained "
                    "with, or retrain it on this one's output.")
            checked.append(f"width {expected_width}")
    return checked


def check_pipeline(models: Sequence[ModelFiles]) -> list[str]:
    """Check every model against the one before it; one line per pair saying what was compared (or that
    nothing could be). Raises :class:`PipelineMismatchError` for the first pair that does not fit."""
    report = []
    for producer, consumer in itertools.pairwise(models):
        checked = check_pair(producer, consumer)
        pair = f"{producer.label} -> {consumer.label}"
        report.append(f"{pair}: " + (", ".join(checked) + " match" if checked else
                                     "not checked (no features.json before, or no width or fingerprint recorded "
                                     "in the model's *-meta.json)"))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving_common.pipeline_check",
        description="Check that the models of a serial inference pipeline fit together (row width, features "
                    "fingerprint) before deploying it.")
    parser.add_argument("models", nargs="+", type=Path, help="model.tar.gz files or model folders, in pipeline order")
    parser.add_argument("--output-label", action="store_true",
                        help=f"the first model's stage runs with {OUTPUT_LABEL}=true (writes the label first)")
    args = parser.parse_args(argv)
    if len(args.models) < 2:
        parser.error("give at least two models, in pipeline order")
    models = []
    for index, path in enumerate(args.models, start=1):
        environment = {OUTPUT_LABEL: "true"} if args.output_label and index == 1 else {}
        try:
            models.append(ModelFiles.read(path, f"model {index} ({path})", environment))
        except (OSError, tarfile.TarError) as exc:
            print(f"cannot read {path}: {exc}", file=sys.stderr)
            return 2
    try:
        report = check_pipeline(models)
    except PipelineMismatchError as exc:
        print(exc, file=sys.stderr)
        return 1
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
