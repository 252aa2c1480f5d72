"""``python -m serving_common.fuse PREPROCESS_MODEL MODEL -o fused.tar.gz``: one model that carries its
preprocess stage, served in process by the model's own image (docs/fused.md).

Both models are folders or ``model.tar.gz`` files. The pair is refused (exit status 1, one line saying
why) when the model was trained on other features than the preprocess model produces (schema
fingerprint or row width, checked by ``serving_common.pipeline_check``), when neither could be compared,
when the preprocess model has no compiled fast path (applying it would need scikit-learn, which model
images do not carry) or when the model is fused already. Exit status 2: an input cannot be read.

The archive holds the model's files at its top level and the preprocess model's in ``preprocess/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .fused import PREPROCESS_DIR
from .pipeline_check import FEATURES_FILE, ModelFiles, PipelineMismatchError, check_pair

__all__ = ["FuseError", "fuse", "main"]


class FuseError(ValueError):
    """The two models cannot be fused (the message says why)."""


def _unpacked(path: Path, scratch: Path, name: str) -> Path:
    """``path`` itself when it is a folder, else the archive extracted into ``scratch/name``."""
    if path.is_dir():
        return path
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    target = scratch / name
    with tarfile.open(path) as tar:
        tar.extractall(target, filter="data")  # refuses absolute paths, links out of the folder, devices
    return target


def _check_pair(stage: Path, model: Path, stage_name: str, model_name: str) -> list[str]:
    features_path = stage / FEATURES_FILE
    if not features_path.is_file():
        raise FuseError(f"{stage_name} is not a preprocess model (no {FEATURES_FILE} at its top level)")
    features = json.loads(features_path.read_text(encoding="utf-8"))
    if not features.get("fast_transform"):
        raise FuseError(f"{stage_name} has no compiled fast path (fast_transform.npz: its transform did not "
                        "compile at training), so applying it needs scikit-learn, which model images do not "
                        "carry: deploy the two as a chained pipeline instead")
    if (model / PREPROCESS_DIR).exists():
        raise FuseError(f"{model_name} already carries a preprocess stage ({PREPROCESS_DIR}/)")
    try:
        checked = check_pair(ModelFiles.read(stage, stage_name), ModelFiles.read(model, model_name))
    except PipelineMismatchError as exc:
        raise FuseError(str(exc).replace("pipeline refused", "fuse refused")) from None
    if not checked:
        raise FuseError(f"fuse refused: {model_name} records neither the width nor the features fingerprint it "
                        "was trained on (no num_features / features_fingerprint in a *-meta.json at its top "
                        "level), so it cannot be checked against the preprocess model")
    return checked


def fuse(preprocess: Path, model: Path, output: Path) -> list[str]:
    """Write the fused ``model.tar.gz`` to ``output``; return what was checked. FuseError when refused."""
    preprocess, model, output = Path(preprocess), Path(model), Path(output)
    with tempfile.TemporaryDirectory(prefix="smkit-fuse-") as scratch:
        stage = _unpacked(preprocess, Path(scratch), "preprocess")
        trained = _unpacked(model, Path(scratch), "model")
        checked = _check_pair(stage, trained, f"the preprocess model ({preprocess})", f"the model ({model})")
        output.parent.mkdir(parents=True, exist_ok=True)
        temporary = output.with_name(output.name + ".partial")
        with tarfile.open(temporary, "w:gz") as tar:
            for entry in sorted(trained.iterdir()):
                tar.add(entry, arcname=entry.name)
            tar.add(stage, arcname=PREPROCESS_DIR)
        os.replace(temporary, output)
    return checked


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving_common.fuse",
        description="Combine a fitted preprocess model and the model trained on its output into one "
                    "model.tar.gz that the model's image serves with the transform applied in process.")
    parser.add_argument("preprocess", type=Path, help="the preprocess model: model.tar.gz or folder")
    parser.add_argument("model", type=Path, help="the model trained on its output: model.tar.gz or folder")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the fused model.tar.gz to write")
    args = parser.parse_args(argv)
    try:
        checked = fuse(args.preprocess, args.model, args.output)
    except FuseError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (OSError, tarfile.TarError, ValueError) as exc:
        print(f"cannot read the models: {exc}", file=sys.stderr)
        return 2
    print(f"{args.output}: {', '.join(checked)} match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
