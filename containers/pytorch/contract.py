"""What the contract suite (tests/contract) needs to know about the PyTorch image: its ``DESCRIPTOR``."""

from __future__ import annotations

from descriptor import numeric_rows

DESCRIPTOR = numeric_rows(
    "pytorch",
    features=8,
    hyperparameters={"epochs": "5", "hidden": "16"},
    label=lambda x: (x[:, 0] - x[:, 1] > 0).astype(int),
    multi_model=True,
)
