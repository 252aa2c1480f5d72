"""What the contract suite (tests/contract) needs to know about the preprocess image: its ``DESCRIPTOR``."""

from __future__ import annotations

import json
from pathlib import Path

from local_test.docker_run import OptMl
from local_test.orders import make_orders, write_jsonl

from descriptor import ImageDescriptor


def _preprocess_training_data(opt_ml: OptMl) -> None:
    write_jsonl(make_orders(400, seed=1), opt_ml.channel_dir("train") / "orders.jsonl")
    (opt_ml.channel_dir("train") / "_SUCCESS").write_text("")
    opt_ml.channels = {"train": {"ContentType": "application/jsonlines"}}


def _input_columns(model_dir: Path) -> list[str]:
    return json.loads((model_dir / "features.json").read_text())["input_columns"]


def _csv_row(order: dict, columns: list[str]) -> str:
    flat = {**order, **{f"customer.{k}": v for k, v in order["customer"].items()},
            "payment.method": order["payment"]["method"]}
    return ",".join("" if flat.get(column) is None else str(flat.get(column)) for column in columns)


def _preprocess_payloads(model_dir: Path) -> dict[str, bytes]:
    orders = make_orders(2, seed=7)
    columns = _input_columns(model_dir)
    return {
        "application/json": json.dumps(orders).encode(),
        "application/jsonlines": "\n".join(json.dumps(order) for order in orders).encode(),
        "text/csv": "\n".join(_csv_row(order, columns) for order in orders).encode(),
    }


def _preprocess_wrong_shape(model_dir: Path) -> tuple[str, bytes]:
    columns = _input_columns(model_dir)
    return "text/csv", ",".join(["1"] * (len(columns) + 2)).encode()


def _preprocess_large(model_dir: Path, size: int) -> tuple[str, bytes]:
    order = json.dumps(make_orders(1, seed=3)[0])
    return "application/jsonlines", "\n".join([order] * (size // len(order) + 1)).encode()


DESCRIPTOR = ImageDescriptor(
    name="preprocess",
    hyperparameters={"label": "default", "drop": "order_id"},
    write_training_data=_preprocess_training_data,
    payloads=_preprocess_payloads,
    accepts=("text/csv", "application/json", "application/jsonlines", "application/x-npy"),
    wrong_shape=_preprocess_wrong_shape,
    large_payload=_preprocess_large,
)
