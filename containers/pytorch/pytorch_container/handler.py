"""Serving for the PyTorch image: numeric rows in, the model's output out, as AWS's PyTorch toolkit does.

Request data becomes a tensor as in sagemaker-pytorch-inference's ``default_input_fn``: JSON, JSON Lines
and CSV as float32 (``torch.FloatTensor``), NPY in its own dtype; a user ``predict_fn`` receives exactly
that tensor. The default prediction casts it to the model's dtype and device. Responses hold the output
tensor as it is (JSON: a plain nested list, as the toolkit's ``default_output_fn`` writes; default Accept
``application/json``, as there).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from serving_common import encoders
from serving_common.arrays import plain_csv_matrix, to_matrix
from serving_common.content_types import CSV, JSON, JSONLINES, NPY, MediaType
from serving_common.errors import BadRequest, ModelError
from serving_common.handler import Handler, RequestContext
from serving_common.settings import worker_index

from . import model as torch_model
from .model import ServedModel

log = logging.getLogger("pytorch_container")

#: Warm-up batch sizes: a single record and a small batch, twice each, so that TorchScript's profiling
#: executor has specialised both before the first real request.
WARM_UP_ROWS = (1, 8, 1, 8)


def set_threads(workers: int) -> int:
    """Intra-op threads = CPUs / workers (returned; each predicting thread sets it, ``model.use_threads``);
    one inter-op thread (a request is one forward pass)."""
    threads = torch_model.threads_per_worker(workers)
    torch_model.use_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel work: a second model in this worker
        pass
    return threads


def as_tensor(matrix: np.ndarray, content_type: str) -> torch.Tensor:
    """A checked (rows, features) matrix as the tensor a ``predict_fn`` receives; NaN (missing) is a 400."""
    if np.isnan(matrix).any() if matrix.dtype.kind == "f" else False:
        row, column = np.argwhere(np.isnan(matrix))[0]
        raise BadRequest(f"row {row}, column {column}: missing value; the model takes complete rows of numbers")
    if content_type == NPY:
        return torch.from_numpy(np.ascontiguousarray(matrix))
    return torch.from_numpy(matrix.astype(np.float32))


def to_numpy(prediction: Any) -> Any:
    """A tensor (on any device) as a numpy array; anything else as it is."""
    if isinstance(prediction, torch.Tensor):
        return prediction.detach().cpu().numpy()
    return prediction


class PyTorchHandler(Handler):
    content_types = (JSON, JSONLINES, CSV, NPY)
    accepts = (JSON, JSONLINES, CSV, NPY)
    default_accept = JSON

    def __init__(self) -> None:
        self._adopted: tuple[Any, ServedModel] | None = None  # a model_fn's module, prepared once

    def load(self, model_dir: Path) -> ServedModel:
        threads = set_threads(self.settings.workers)
        index = worker_index()
        served = torch_model.load(model_dir, torch_model.worker_device(index), threads)
        log.info("worker %s: the model runs on %s with %d intra-op threads", "?" if index is None else index,
                 served.device, threads)
        if served.num_features is not None:
            self.warm_up(served)
        return served

    @staticmethod
    def warm_up(served: ServedModel) -> None:
        """Predict a few zero rows before the worker reports ready; a model that fails here fails the load."""
        for rows in WARM_UP_ROWS:
            output = served(torch.zeros(rows, served.num_features))
            if not isinstance(output, torch.Tensor):
                raise torch_model.ModelLoadError(
                    f"the model returns {type(output).__name__}, not a tensor: give an output_fn to encode it")
        log.info("warm-up: %d predictions of %s rows", len(WARM_UP_ROWS), sorted(set(WARM_UP_ROWS)))

    def decode(self, body: bytes, media_type: MediaType, context: RequestContext) -> torch.Tensor:
        matrix = None
        if media_type.essence == CSV and media_type.text_codec() == "utf-8":
            matrix = plain_csv_matrix(body)
        if matrix is None:
            data = super().decode(body, media_type, context)
            if media_type.essence == NPY:
                to_matrix(data, NPY)  # checks: numeric, 1-D or 2-D, not empty, finite
                matrix = data[None, :] if data.ndim == 1 else data
            else:
                matrix = to_matrix(data, media_type.essence)
        return as_tensor(matrix, media_type.essence)

    def from_rows(self, rows: np.ndarray, context: RequestContext) -> torch.Tensor:
        """Feature rows of a fused model's transform, as ``decode`` reads them from CSV (float32)."""
        return as_tensor(rows, CSV)

    def served(self, model: Any) -> ServedModel:
        """The default loader's model, or a ``model_fn``'s module prepared once (eval, device)."""
        if isinstance(model, ServedModel):
            return model
        if self._adopted is None or self._adopted[0] is not model:
            if not isinstance(model, torch.nn.Module):
                raise ModelError(f"model_fn returned {type(model).__name__}: the default prediction needs a "
                                 "torch.nn.Module (or give a predict_fn)")
            threads = torch_model.threads_per_worker(self.settings.workers)
            self._adopted = (model, ServedModel.prepare(model, torch_model.worker_device(worker_index()),
                                                        threads=threads))
        return self._adopted[1]

    def predict(self, model: Any, data: torch.Tensor, context: RequestContext) -> Any:
        served = self.served(model)
        if served.num_features is not None and data.shape[1] != served.num_features:
            raise BadRequest(f"expected {served.num_features} features per row, received {data.shape[1]}")
        return served(data)

    def encode(self, prediction: Any, accept: str, context: RequestContext) -> bytes:
        return encoders.encode(to_numpy(prediction), accept)
