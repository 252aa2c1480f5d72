"""A PyTorch model as served: where it lies in the model directory, which device it runs on, its input.

File layout (what the example training script writes, and what the default loader reads):
``model.pt`` (TorchScript, ``torch.jit.save``; else the single ``*.pt``/``*.pth`` file) and optionally
``pytorch-meta.json``: ``num_features`` (features per row: checked per request, enables the warm-up) and
``features_fingerprint`` (the preprocess model's, checked when a pipeline is assembled).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("pytorch_container")

MODEL_FILE = "model.pt"
META_FILE = "pytorch-meta.json"
MODEL_SUFFIXES = (".pt", ".pth")

EAGER_HINT = ("an eager model (torch.save of a module or state_dict) needs a model_fn in code/inference.py "
              "that builds and returns it; the default loader reads TorchScript only (torch.jit.save)")


class ModelLoadError(ValueError):
    """The model directory holds nothing the default loader can serve; the message says what to do."""


def choose_device(cuda_available: bool, gpu_count: int, worker_index: int) -> str:
    """``cuda:<worker index modulo GPU count>`` when CUDA is usable, else ``cpu``."""
    if cuda_available and gpu_count > 0:
        return f"cuda:{worker_index % gpu_count}"
    return "cpu"


def worker_device(worker_index: int | None) -> torch.device:
    """The device of worker ``worker_index`` (``settings.worker_index()``; None: not a server's worker, as 0)
    on this machine (``choose_device``)."""
    cuda = torch.cuda.is_available()
    return torch.device(choose_device(cuda, torch.cuda.device_count() if cuda else 0, worker_index or 0))


#: The intra-op thread count each thread has set (the setting is per thread: see ``use_threads``).
_thread_settings = threading.local()


def use_threads(threads: int) -> None:
    """``torch.set_num_threads`` for the calling thread, once per thread and count.

    Why per thread: torch's intra-op (OpenMP) thread count is a per-thread setting; a thread that never set
    it gets one thread per CPU. The model server predicts on its own thread, so a count set at load time
    alone left it at every CPU per worker: 2 workers on 2 cores took ~29 ms per 100-row request instead of
    ~0.1 ms (measured in the image, threads fighting over the cores).
    """
    if getattr(_thread_settings, "threads", None) != threads:
        torch.set_num_threads(threads)
        _thread_settings.threads = threads


def threads_per_worker(workers: int, cpus: int | None = None) -> int:
    """Workers share the CPUs: each gets its share of intra-op threads, so they never fight over cores."""
    return max(1, (cpus or os.cpu_count() or 1) // max(1, workers))


def model_file(model_dir: Path) -> Path:
    """``model.pt``, else the one ``*.pt``/``*.pth`` file of ``model_dir``; a clear error otherwise."""
    preferred = model_dir / MODEL_FILE
    if preferred.is_file():
        return preferred
    found = sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelLoadError(f"{model_dir} holds no {MODEL_FILE} (nor any .pt/.pth file); {EAGER_HINT}")
    raise ModelLoadError(f"{model_dir} holds several model files ({', '.join(p.name for p in found)}) and no "
                         f"{MODEL_FILE}: name the one to serve {MODEL_FILE}, or load them in a model_fn")


def read_meta(model_dir: Path) -> dict[str, Any]:
    path = model_dir / META_FILE
    if not path.is_file():
        return {}
    meta = json.loads(path.read_text())
    if "input_width" in meta:  # the name this image's first release wrote: such a model still loads
        meta.setdefault("num_features", meta.pop("input_width"))
    width = meta.get("num_features")
    if width is not None and (type(width) is not int or width < 1):
        raise ModelLoadError(f"{path}: num_features must be a positive integer, not {width!r}")
    return meta


def load_torchscript(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    """``torch.jit.load`` straight onto ``device``; an eager pickle gets an error naming ``model_fn``."""
    try:
        return torch.jit.load(str(path), map_location=device)
    except RuntimeError as exc:
        raise ModelLoadError(f"{path} is not a TorchScript model ({str(exc).splitlines()[0]}): {EAGER_HINT}") from exc


def module_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype inputs are cast to: the module's first floating-point parameter or buffer's (float32 if none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


@dataclass
class ServedModel:
    """A module ready to answer: in eval mode, on its device, with the dtype inputs are cast to and the
    intra-op threads it runs with."""

    module: torch.nn.Module
    device: torch.device
    dtype: torch.dtype
    num_features: int | None = None
    threads: int = 1

    @classmethod
    def prepare(cls, module: torch.nn.Module, device: torch.device, num_features: int | None = None,
                threads: int = 1) -> ServedModel:
        """Once per model: eval mode and device placement (never per request)."""
        module = module.to(device).eval()
        return cls(module, device, module_dtype(module), num_features, threads)

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        use_threads(self.threads)
        with torch.inference_mode():
            return self.module(rows.to(device=self.device, dtype=self.dtype))


def load(model_dir: Path, device: torch.device, threads: int = 1) -> ServedModel:
    """The default loader: the TorchScript model of ``model_dir`` with its meta, prepared on ``device``."""
    path = model_file(model_dir)
    meta = read_meta(model_dir)
    module = load_torchscript(path, device)
    log.info("loaded TorchScript %s on %s", path.name, device)
    return ServedModel.prepare(module, device, meta.get("num_features"), threads)
