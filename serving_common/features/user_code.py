"""Script mode for feature code: a researcher's module, used identically at training and serving time.

The module may define

- ``extract(record: dict) -> dict``: applied to every record (as read or as sent, before flattening)
  at training and at serving; features are read from the record it returns (typically the record with
  derived fields added, e.g. ``{**record, "amount_per_item": record["amount"] / record["items"]}``);
- ``build_transformer(spec) -> ColumnTransformer``: replaces the built-in
  :func:`serving_common.features.features.build_transformer`. The transformer is fitted on a 2-D object
  array whose columns are ``spec.input_columns`` (select them by position, e.g.
  ``spec.column_indices(["amount"])``).

Training finds it in the ``code`` channel or through the SageMaker SDK's script-mode hyperparameters
(``sagemaker_program`` + ``sagemaker_submit_directory``) and copies it to ``<model_dir>/code/features.py``
(a fixed name, so serving finds it; ``features.json`` records the original name and its sha256). It is
always imported under one module name (:data:`MODULE_NAME`), so objects of the module pickled with the
fitted transformer unpickle at serving. Only this one file is saved: the module must be self-contained
(standard library, numpy, scikit-learn).

This module does not import scikit-learn (serving imports it).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from serving_common.importing import NotLoadable, import_file
from serving_common.uris import local_path

from .fast_transform import FeatureError

logger = logging.getLogger("preprocess")

__all__ = [
    "CODE_DIR",
    "CODE_FILE",
    "CODE_PATH",
    "MODULE_NAME",
    "FeatureCode",
    "FeatureCodeError",
    "find_training_code",
]

CODE_DIR = "code"
CODE_FILE = "features.py"
CODE_PATH = f"{CODE_DIR}/{CODE_FILE}"  # relative to the model directory
MODULE_NAME = "smkit_feature_code"
FUNCTIONS = ("extract", "build_transformer")
_SERVING_HOOKS = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")


class FeatureCodeError(ValueError):
    """The feature code cannot be found, imported or used."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _import(path: Path, name: str) -> ModuleType:
    """Import ``path`` as module :data:`MODULE_NAME` (registered in sys.modules, as pickle needs)."""
    try:
        return import_file(path, MODULE_NAME)
    except NotLoadable:
        raise FeatureCodeError(f"cannot import the feature code {name} ({path})") from None
    except Exception as exc:
        hint = ""
        if isinstance(exc, ModuleNotFoundError):
            hint = (" (feature code must be one self-contained module: only it is saved with the model, and "
                    "packages it imports must be in the image)")
        raise FeatureCodeError(f"importing the feature code {name} failed: {type(exc).__name__}: {exc}{hint}") from exc


class FeatureCode:
    """A feature-code module: its file, its original name and (imported on first use) its functions."""

    def __init__(self, path: Path, original_name: str | None = None, *, functions: Sequence[str] | None = None,
                 sha256: str | None = None) -> None:
        """``functions``: the functions the module is known to define (from ``features.json``); None
        imports the module now to find out (training)."""
        self.path = Path(path)
        self.original_name = original_name or self.path.name
        self.sha256 = sha256 or sha256_file(self.path)
        self._module: ModuleType | None = None
        if functions is None:
            module = self.module
            functions = [name for name in FUNCTIONS if callable(getattr(module, name, None))]
            hooks = [name for name in _SERVING_HOOKS if hasattr(module, name)]
            if hooks:
                logger.warning("feature code %s defines %s: serving hooks belong in code/inference.py and are "
                               "not used from feature code", self.original_name, ", ".join(hooks))
        unknown = sorted(set(functions) - set(FUNCTIONS))
        if unknown:
            raise FeatureCodeError(f"unknown feature code functions {unknown}")
        self.functions = tuple(name for name in FUNCTIONS if name in functions)
        if not self.functions:
            raise FeatureCodeError(f"the feature code {self.original_name} defines neither extract(record) nor "
                                   "build_transformer(spec)")

    def __repr__(self) -> str:
        return f"FeatureCode({self.original_name!r}, functions={list(self.functions)})"

    @property
    def module(self) -> ModuleType:
        """The imported module (imported on first access)."""
        if self._module is None:
            self._module = _import(self.path, self.original_name)
            logger.info("feature code: %s (%s) defines %s", self.original_name, self.path,
                        ", ".join(name for name in FUNCTIONS if callable(getattr(self._module, name, None)))
                        or "nothing usable")
        return self._module

    @property
    def has_extract(self) -> bool:
        return "extract" in self.functions

    @property
    def has_build_transformer(self) -> bool:
        return "build_transformer" in self.functions

    def _function(self, name: str) -> Callable[..., Any]:
        function = getattr(self.module, name, None)
        if not callable(function):
            raise FeatureCodeError(f"the feature code {self.original_name} does not define {name}()")
        return function

    def build_transformer(self, spec: Any) -> Any:
        """The user's (unfitted) transformer for ``spec``."""
        try:
            transformer = self._function("build_transformer")(spec)
        except FeatureCodeError:
            raise
        except Exception as exc:
            raise FeatureCodeError(f"build_transformer(spec) in {self.original_name} failed: "
                                   f"{type(exc).__name__}: {exc}") from exc
        if not (hasattr(transformer, "fit") and hasattr(transformer, "transform")):
            raise FeatureCodeError(f"build_transformer(spec) in {self.original_name} returned "
                                   f"{type(transformer).__name__}, not a scikit-learn transformer")
        return transformer

    def extract_records(self, records: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
        """``records`` through ``extract`` (``records`` itself without one).

        An exception in ``extract`` or a result that is not an object is a :class:`FeatureError` naming
        the record (a 400 at serving, as any other uninterpretable record).
        """
        if not self.has_extract:
            return records
        if isinstance(records, Mapping):
            raise FeatureError("expected a list of records, got a single object")
        extract = self._function("extract")
        out = []
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise FeatureError(f"record {index}: expected a JSON object, got {type(record).__name__}")
            try:
                result = extract(record)
            except Exception as exc:
                raise FeatureError(f"record {index}: extract() in {self.original_name} failed: "
                                   f"{type(exc).__name__}: {exc}") from exc
            if not isinstance(result, Mapping):
                raise FeatureError(f"record {index}: extract() in {self.original_name} returned "
                                   f"{type(result).__name__}, expected a dict")
            out.append(result)
        return out

    # -- persistence --------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The ``code`` entry of ``features.json``."""
        return {"file": CODE_PATH, "original_name": self.original_name, "functions": list(self.functions),
                "sha256": self.sha256}

    def save(self, model_dir: Path) -> None:
        """Copy the module to ``model_dir/code/features.py``."""
        target = Path(model_dir) / CODE_PATH
        target.parent.mkdir(parents=True, exist_ok=True)
        data = self.path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise FeatureCodeError(f"the feature code {self.path} changed during training")
        target.write_bytes(data)

    @classmethod
    def from_model(cls, model_dir: Path, entry: Any, where: Path) -> FeatureCode:
        """The feature code of a model directory, described by ``entry`` (``features.json``'s ``code``).

        ValueError when the entry is malformed, the file is missing or its sha256 differs from the one
        recorded at training (the code must be the code the transform was fitted with).
        """
        if not isinstance(entry, Mapping) or entry.get("file") != CODE_PATH or not isinstance(
                entry.get("functions"), list) or not isinstance(entry.get("sha256"), str):
            raise ValueError(f"{where}: invalid 'code' entry {entry!r}")
        path = Path(model_dir) / CODE_PATH
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: the model was trained with feature code "
                                    f"{entry.get('original_name')!r} (expected in {CODE_PATH})")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise ValueError(f"{path} differs from the feature code the model was trained with (sha256 "
                             f"{actual[:12]}... instead of {entry['sha256'][:12]}...)")
        try:
            return cls(path, str(entry.get("original_name") or CODE_FILE), functions=entry["functions"],
                       sha256=actual)
        except FeatureCodeError as exc:
            raise ValueError(f"{where}: {exc}") from None


# --------------------------------------------------------------------------------------------------
# finding the module of a training job


def _hyperparameter(raw: Mapping[str, str], name: str) -> str | None:
    """A script-mode hyperparameter: the SageMaker SDK JSON-encodes values ('"features.py"')."""
    value = raw.get(name)
    if value is None:
        return None
    try:
        decoded = json.loads(value)
    except ValueError:
        decoded = value
    text = decoded.strip() if isinstance(decoded, str) else str(decoded)
    return text or None


def _modules_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix == ".py" and not p.name.startswith("."))


def find_training_code(hyperparameters: Mapping[str, str], channels: Mapping[str, Path],
                       base: Path) -> Path | None:
    """The feature-code module of a training job, or None.

    ``hyperparameters`` are the raw ones (``sagemaker_program`` / ``sagemaker_submit_directory`` are
    reserved and not declared); ``channels`` maps channel names to folders; ``base`` is /opt/ml.

    - ``sagemaker_program`` names the file: looked up in ``sagemaker_submit_directory`` (a local folder
      or file:// URL; local mode with local code mounts it at /opt/ml/code), the ``code`` channel and
      /opt/ml/code. Not found is an error, unless neither a submit directory nor a code channel was
      given (then it is logged and ignored, as the reserved hyperparameter it also is).
    - Otherwise the ``code`` channel's one ``.py`` file (or its ``features.py`` among several).
    """
    program = _hyperparameter(hyperparameters, "sagemaker_program")
    submit = _hyperparameter(hyperparameters, "sagemaker_submit_directory")
    code_channel = channels.get("code")
    if program is not None:
        relative = Path(program)
        if relative.is_absolute() or ".." in relative.parts or relative.suffix != ".py":
            raise FeatureCodeError(f"sagemaker_program={program!r}: expected a .py file name inside the "
                                   "submit directory")
        places: list[Path] = []
        remote = None
        if submit is not None:
            local = local_path(submit)
            if local is None:
                remote = submit
            else:
                places.append(local)
        places += [p for p in (code_channel, base / "code") if p is not None]
        for place in places:
            if (place / relative).is_file():
                return place / relative
        if submit is None and code_channel is None:
            # The SDK sets sagemaker_program on every script-mode job; without a submit directory or a code
            # channel, nothing was meant to be run here (the harness ignores reserved hyperparameters).
            logger.warning("sagemaker_program=%r names no file in %s and no sagemaker_submit_directory or code "
                           "channel was given: training without feature code", program, base / "code")
            return None
        if remote is not None:
            raise FeatureCodeError(
                f"sagemaker_submit_directory={remote!r}: this container does not download code (it has no AWS "
                f"SDK); put {program} in a 'code' channel (an S3 prefix holding the module) instead")
        raise FeatureCodeError(f"sagemaker_program={program!r} not found in {', '.join(str(p) for p in places)}")
    if code_channel is None:
        return None
    if not code_channel.is_dir():
        raise FeatureCodeError(f"the code channel {code_channel} is not a folder")
    modules = _modules_in(code_channel)
    if len(modules) == 1:
        return modules[0]
    if not modules:
        present = ", ".join(p.name for p in sorted(code_channel.iterdir())[:5]) or "nothing"
        raise FeatureCodeError(f"the code channel holds no .py module (found: {present}); archives such as "
                               "sourcedir.tar.gz are not unpacked")
    named = [p for p in modules if p.name == CODE_FILE]
    if named:
        return named[0]
    raise FeatureCodeError(f"the code channel holds several modules ({', '.join(p.name for p in modules)}): "
                           "name one with the sagemaker_program hyperparameter, or call it features.py")
