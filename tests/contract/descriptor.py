"""What the contract suite needs to know about an image: how to train a small model and what it accepts.

Each container folder holds one in its ``contract.py`` (``DESCRIPTOR = ImageDescriptor(...)``); the suite
finds it there (``images.py``) and itself stays unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from local_test.docker_run import OptMl


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
