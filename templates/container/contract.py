"""What the contract suite (tests/contract) needs to know about the {{name}} image: its ``DESCRIPTOR``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from local_test.docker_run import OptMl

from descriptor import ImageDescriptor

FEATURES = 4


def write_training_data(opt_ml: OptMl) -> None:
    features = np.random.default_rng(0).normal(size=(300, FEATURES))
    labels = features @ np.arange(1.0, FEATURES + 1) + 0.5
    np.savetxt(opt_ml.channel_dir("train") / "train.csv", np.column_stack([labels, features]), delimiter=",")
    opt_ml.channels = {"train": {"ContentType": "text/csv"}}


def payloads(model_dir: Path) -> dict[str, bytes]:
    rows = np.random.default_rng(1).normal(size=(2, FEATURES))
    npy = io.BytesIO()
    np.save(npy, rows)
    return {
        "text/csv": "\n".join(",".join(map(repr, row)) for row in rows.tolist()).encode(),
        "application/json": json.dumps({"instances": rows.tolist()}).encode(),
        "application/jsonlines": "\n".join(json.dumps(row) for row in rows.tolist()).encode(),
        "application/x-npy": npy.getvalue(),
    }


def wrong_shape(model_dir: Path) -> tuple[str, bytes]:
    return "text/csv", ",".join(["0.5"] * (FEATURES + 3)).encode()


def large_payload(model_dir: Path, size: int) -> tuple[str, bytes]:
    row = ",".join(["0.123456789"] * FEATURES)
    return "text/csv", "\n".join([row] * (size // len(row) + 1)).encode()


DESCRIPTOR = ImageDescriptor(
    name="{{name}}",
    hyperparameters={"l2": "0.01"},
    write_training_data=write_training_data,
    payloads=payloads,
    accepts=("text/csv", "application/json", "application/jsonlines", "application/x-npy"),
    wrong_shape=wrong_shape,
    large_payload=large_payload,
)
