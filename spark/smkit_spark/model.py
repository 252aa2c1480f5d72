"""A fitted preprocess model (``model.tar.gz`` or its folder) as the driver ships it and executors load it.

The driver reads the model's files into memory (a few hundred KB: features.json, fast_transform.npz,
code/features.py), loads them once to fail early with the image's own error message, and broadcasts
them. Each executor Python process writes them to a private folder once and loads them with the image's
``FittedFeatures.load`` (numpy only: the fast path never imports scikit-learn), cached by fingerprint.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .runtime import FittedFeatures

__all__ = ["ModelFiles", "read_model"]

# Files of a preprocess model directory that serving reads (transformer.joblib only for models without
# a fast path, code/features.py only with feature code).
_MODEL_FILES = ("features.json", "transformer.joblib", "fast_transform.npz", "code/features.py")


@dataclass(frozen=True)
class ModelFiles:
    """A model's files by relative path, and the fingerprint of ``features.json``."""

    files: dict[str, bytes]
    fingerprint: str
    label: str | None
    output_columns: tuple[str, ...]
    fast_path: bool

    def load(self) -> FittedFeatures:
        """The fitted transform (cached per process: an executor loads a model once)."""
        key = hashlib.sha256(b"".join(hashlib.sha256(self.files[name]).digest() for name in sorted(self.files)))
        key_hex = key.hexdigest()
        with _cache_lock:
            model = _cache.get(key_hex)
            if model is None:
                directory = Path(tempfile.mkdtemp(prefix="smkit-spark-model-"))
                for name, data in self.files.items():
                    target = directory / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                model = FittedFeatures.load(directory)
                _cache[key_hex] = model
            return model


_cache: dict[str, FittedFeatures] = {}
_cache_lock = threading.Lock()


def _from_tar(path: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    with tarfile.open(path, "r:*") as archive:
        for member in archive.getmembers():
            name = PurePosixPath(member.name)
            relative = PurePosixPath(*[part for part in name.parts if part not in (".", "")]).as_posix()
            if member.isfile() and relative in _MODEL_FILES:
                handle = archive.extractfile(member)
                assert handle is not None
                files[relative] = handle.read()
    return files


def read_model(path: Path | str) -> ModelFiles:
    """The model at ``path`` (a folder or a ``.tar.gz`` as SageMaker writes it), loaded once here to
    check it (FileNotFoundError / ValueError with the image's message when it is not a usable model)."""
    path = Path(path)
    if path.is_dir():
        files = {name: (path / name).read_bytes() for name in _MODEL_FILES if (path / name).is_file()}
    elif path.is_file():
        try:
            files = _from_tar(path)
        except tarfile.TarError as exc:
            raise ValueError(f"{path} is neither a model folder nor a readable model.tar.gz: {exc}") from None
    else:
        raise FileNotFoundError(f"model {path} does not exist")
    if "features.json" not in files:
        raise FileNotFoundError(f"{path} holds no features.json: not a preprocess model")
    shipped = ModelFiles(files, "", None, (), False)
    model = shipped.load()
    if not model.fast_path:
        # The executors run the compiled tables only: scikit-learn is never imported there.
        raise ValueError(f"{path} has no fast path (fast_transform.npz): its transformer is not one the fast "
                         "path compiles, and Spark applies only the compiled transform")
    return ModelFiles(files, model.fingerprint, model.spec.label, tuple(model.output_columns), model.fast_path)
