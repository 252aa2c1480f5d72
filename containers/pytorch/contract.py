"""What the contract suite (tests/contract) needs to know about the PyTorch image: its ``DESCRIPTOR``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from local_test.docker_run import OptMl

from descriptor import ImageDescriptor


def _pytorch_training_data(opt_ml: OptMl) -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, TORCH_FEATURES))
    labels = (features[:, 0] - features[:, 1] > 0).astype(int)
    np.savetxt(opt_ml.channel_dir("train") / "part-0.csv", np.column_stack([labels, features]),
               delimiter=",", fmt="%.8g")
    opt_ml.channels = {"train": {"ContentType": "text/csv"}}


def _pytorch_payloads(model_dir: Path) -> dict[str, bytes]:
    rows = np.random.default_rng(1).normal(size=(2, TORCH_FEATURES))
    buffer = io.BytesIO()
    np.save(buffer, rows)
    return {
        "text/csv": "\n".join(",".join(repr(v) for v in row) for row in rows.tolist()).encode(),
        "application/json": json.dumps({"instances": rows.tolist()}).encode(),
        "application/jsonlines": "\n".join(json.dumps(row) for row in rows.tolist()).encode(),
        "application/x-npy": buffer.getvalue(),
    }


def _pytorch_wrong_shape(model_dir: Path) -> tuple[str, bytes]:
    return "text/csv", ",".join(["0.5"] * (TORCH_FEATURES + 3)).encode()


def _pytorch_large(model_dir: Path, size: int) -> tuple[str, bytes]:
    row = ",".join(["0.123456789"] * TORCH_FEATURES)
    return "text/csv", "\n".join([row] * (size // len(row) + 1)).encode()


TORCH_FEATURES = 8
DESCRIPTOR = ImageDescriptor(
    name="pytorch",
    hyperparameters={"epochs": "5", "hidden": "16"},
    write_training_data=_pytorch_training_data,
    payloads=_pytorch_payloads,
    accepts=("text/csv", "application/json", "application/jsonlines", "application/x-npy"),
    wrong_shape=_pytorch_wrong_shape,
    large_payload=_pytorch_large,
    multi_model=True,
)

