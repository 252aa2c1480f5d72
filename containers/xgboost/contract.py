"""What the contract suite (tests/contract) needs to know about the XGBoost image: its ``DESCRIPTOR``."""

from __future__ import annotations

from descriptor import numeric_rows


def _libsvm(rows: list[list[float]]) -> bytes:
    return "\n".join(" ".join(f"{i}:{v!r}" for i, v in enumerate(row)) for row in rows).encode()


DESCRIPTOR = numeric_rows(
    "xgboost",
    features=8,
    hyperparameters={"num_round": "20", "objective": "binary:logistic", "eval_metric": "auc", "max_depth": "3"},
    label=lambda x: (x[:, 0] + x[:, 1] > 0).astype(int),
    channels={"train": 600, "validation": 200},
    extra_payloads={"text/libsvm": _libsvm},
    multi_model=True,
)
