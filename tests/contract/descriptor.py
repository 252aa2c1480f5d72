"""What the contract suite needs to know about an image: how to train a small model and what it accepts.

Each container folder holds one in its ``contract.py`` (``DESCRIPTOR = ImageDescriptor(...)``); the suite
finds it there (``images.py``) and itself stays unchanged. An image that trains on label-first CSV rows of
numbers and serves such rows (XGBoost, PyTorch, the template's) states only what is its own with
:func:`numeric_rows`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from local_test.docker_run import OptMl

NUMERIC_ACCEPTS = ("text/csv", "application/json", "application/jsonlines", "application/x-npy")


@dataclass(frozen=True)
class ImageDescriptor:
    name: str  # containers/<name>
    hyperparameters: Mapping[str, str]
    write_training_data: Callable[[OptMl], None]  # fills channels and their inputdataconfig entries
    # model_dir -> {content type: a valid body holding exactly ``records_per_payload`` records}
    payloads: Callable[[Path], Mapping[str, bytes]]
    accepts: tuple[str, ...]
    # model_dir -> (content type, a well-formed body the model cannot take: wrong number of features)
    wrong_shape: Callable[[Path], tuple[str, bytes]]
    # (model_dir, approximate size in bytes) -> (content type, a valid body of about that size)
    large_payload: Callable[[Path, int], tuple[str, bytes]]
    records_per_payload: int = 2
    empty_list: tuple[str, bytes] = ("application/json", b"[]")
    multi_model: bool = False

    def __str__(self) -> str:
        return self.name


def numeric_rows(name: str, *, features: int, hyperparameters: Mapping[str, str],
                 label: Callable[[np.ndarray], np.ndarray],
                 channels: Mapping[str, int] = MappingProxyType({"train": 400}),
                 extra_payloads: Mapping[str, Callable[[list[list[float]]], bytes]] = MappingProxyType({}),
                 multi_model: bool = False) -> ImageDescriptor:
    """The descriptor of an image that trains on label-first CSV rows of ``features`` numbers and takes such
    rows as CSV, JSON (``{"instances": rows}``), JSON Lines and NPY.

    ``label``: each row's label from the (rows, features) matrix; ``channels``: rows of random features per
    channel (``text/csv``); ``extra_payloads``: more request types, content type -> body of the rows.
    """

    def write_training_data(opt_ml: OptMl) -> None:
        rng = np.random.default_rng(0)
        for channel, rows in channels.items():
            matrix = rng.normal(size=(rows, features))
            np.savetxt(opt_ml.channel_dir(channel) / "part-0.csv", np.column_stack([label(matrix), matrix]),
                       delimiter=",", fmt="%.8g")
        opt_ml.channels = {channel: {"ContentType": "text/csv"} for channel in channels}

    def payloads(model_dir: Path) -> dict[str, bytes]:
        matrix = np.random.default_rng(1).normal(size=(2, features))
        rows = matrix.tolist()
        npy = io.BytesIO()
        np.save(npy, matrix)
        return {
            "text/csv": "\n".join(",".join(map(repr, row)) for row in rows).encode(),
            "application/json": json.dumps({"instances": rows}).encode(),
            "application/jsonlines": "\n".join(json.dumps(row) for row in rows).encode(),
            "application/x-npy": npy.getvalue(),
            **{content_type: encode(rows) for content_type, encode in extra_payloads.items()},
        }

    def wrong_shape(model_dir: Path) -> tuple[str, bytes]:
        return "text/csv", ",".join(["0.5"] * (features + 3)).encode()

    def large_payload(model_dir: Path, size: int) -> tuple[str, bytes]:
        row = ",".join(["0.123456789"] * features)
        return "text/csv", "\n".join([row] * (size // len(row) + 1)).encode()

    return ImageDescriptor(name=name, hyperparameters=hyperparameters, write_training_data=write_training_data,
                           payloads=payloads, accepts=NUMERIC_ACCEPTS, wrong_shape=wrong_shape,
                           large_payload=large_payload, multi_model=multi_model)
