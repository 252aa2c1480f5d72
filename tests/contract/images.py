"""The images the contract suite checks: one descriptor each."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

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


PREPROCESS = ImageDescriptor(
    name="preprocess",
    hyperparameters={"label": "default", "drop": "order_id"},
    write_training_data=_preprocess_training_data,
    payloads=_preprocess_payloads,
    accepts=("text/csv", "application/json", "application/jsonlines", "application/x-npy"),
    wrong_shape=_preprocess_wrong_shape,
    large_payload=_preprocess_large,
)



def _numeric_training_data(opt_ml: OptMl) -> None:
    rng = np.random.default_rng(0)
    for channel, rows in (("train", 600), ("validation", 200)):
        features = rng.normal(size=(rows, XGB_FEATURES))
        labels = (features[:, 0] + features[:, 1] > 0).astype(int)
        np.savetxt(opt_ml.channel_dir(channel) / "part-0.csv", np.column_stack([labels, features]),
                   delimiter=",", fmt="%.8g")
    opt_ml.channels = {"train": {"ContentType": "text/csv"}, "validation": {"ContentType": "text/csv"}}


def _xgboost_payloads(model_dir: Path) -> dict[str, bytes]:
    rows = np.random.default_rng(1).normal(size=(2, XGB_FEATURES))
    buffer = io.BytesIO()
    np.save(buffer, rows)
    return {
        "text/csv": "\n".join(",".join(repr(v) for v in row) for row in rows.tolist()).encode(),
        "application/json": json.dumps({"instances": rows.tolist()}).encode(),
        "application/jsonlines": "\n".join(json.dumps(row) for row in rows.tolist()).encode(),
        "application/x-npy": buffer.getvalue(),
        "text/libsvm": "\n".join(" ".join(f"{i}:{v!r}" for i, v in enumerate(row)) for row in rows.tolist()).encode(),
    }


def _xgboost_wrong_shape(model_dir: Path) -> tuple[str, bytes]:
    return "text/csv", ",".join(["0.5"] * (XGB_FEATURES + 3)).encode()


def _xgboost_large(model_dir: Path, size: int) -> tuple[str, bytes]:
    row = ",".join(["0.123456789"] * XGB_FEATURES)
    return "text/csv", "\n".join([row] * (size // len(row) + 1)).encode()


XGB_FEATURES = 8
XGBOOST = ImageDescriptor(
    name="xgboost",
    hyperparameters={"num_round": "20", "objective": "binary:logistic", "eval_metric": "auc", "max_depth": "3"},
    write_training_data=_numeric_training_data,
    payloads=_xgboost_payloads,
    accepts=("text/csv", "application/json", "application/jsonlines", "application/x-npy"),
    wrong_shape=_xgboost_wrong_shape,
    large_payload=_xgboost_large,
    multi_model=True,
)


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
PYTORCH = ImageDescriptor(
    name="pytorch",
    hyperparameters={"epochs": "5", "hidden": "16"},
    write_training_data=_pytorch_training_data,
    payloads=_pytorch_payloads,
    accepts=("text/csv", "application/json", "application/jsonlines", "application/x-npy"),
    wrong_shape=_pytorch_wrong_shape,
    large_payload=_pytorch_large,
    multi_model=True,
)

DESCRIPTORS = [PREPROCESS, XGBOOST, PYTORCH]
