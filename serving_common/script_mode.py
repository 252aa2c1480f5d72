"""Script mode: a user's ``inference.py`` (model_fn, input_fn, predict_fn, output_fn, transform_fn).

Each hook the module defines replaces the matching step of the container's own handler; the others
stay. A hook whose signature has a ``context`` parameter also receives the ``RequestContext`` (request
id, custom attributes), which SageMaker's own toolkits never pass on.
"""

from __future__ import annotations

import inspect
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .content_types import MediaType
from .handler import Handler, RequestContext
from .importing import NotLoadable, import_file
from .settings import Settings

log = logging.getLogger(__name__)

HOOKS = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")


class ScriptError(RuntimeError):
    """The user script cannot be used (import failed, conflicting hooks)."""


def find_script(settings: Settings, model_dir: Path) -> Path | None:
    """The user script: SAGEMAKER_SUBMIT_DIRECTORY/SAGEMAKER_PROGRAM, else ``<model_dir>/code/<program>``."""
    for directory in (settings.submit_directory, model_dir / "code"):
        if directory is not None and (directory / settings.program).is_file():
            return directory / settings.program
    return None


def import_script(path: Path, module_name: str | None = None) -> ModuleType:
    """Import the user script with its directory on ``sys.path`` (so it can import its siblings).

    ``module_name`` (multi-model endpoints: one script per model) imports it under that unique name
    instead of ``inference`` and then forgets the sibling modules it imported from its folder, so that
    the next model's script imports its own ``helpers.py`` rather than reusing this one's.
    """
    requirements = path.parent / "requirements.txt"
    if requirements.exists():
        log.warning(
            "%s is NOT installed: the container runs offline with a read-only root, so installing at "
            "start-up would fail or slow every start. Put these dependencies in the image instead.",
            requirements)
    sys.path.insert(0, str(path.parent))
    before = set(sys.modules) if module_name else set()
    try:
        module = import_file(path, module_name or path.stem)
    except NotLoadable:
        raise ScriptError(f"cannot import {path}") from None
    except ModuleNotFoundError as exc:
        hint = " (dependencies belong in the image: see requirements.txt note above)" if requirements.exists() else ""
        raise ScriptError(f"importing {path} failed: {exc}{hint}") from exc
    except Exception as exc:
        raise ScriptError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    if hasattr(module, "transform_fn") and any(
            hasattr(module, name) for name in ("input_fn", "predict_fn", "output_fn")):
        raise ScriptError(f"{path} defines transform_fn and input_fn/predict_fn/output_fn: keep one or the other")
    if module_name:
        _forget_siblings(path.parent, before | {module_name})
    return module


def _forget_siblings(folder: Path, keep: set[str]) -> None:
    """Drop from ``sys.modules`` the modules just imported from ``folder`` (the script keeps its references)."""
    prefix = str(folder.resolve()) + "/"
    for name in [name for name in sys.modules if name not in keep]:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if file and str(Path(file).resolve()).startswith(prefix):
            del sys.modules[name]


def release_script(handler: Handler) -> None:
    """Undo ``import_script`` for a handler that is being dropped (multi-model unload)."""
    module = getattr(handler, "module", None)
    if not isinstance(handler, ScriptHandler) or module is None:
        return
    if sys.modules.get(module.__name__) is module:
        del sys.modules[module.__name__]
    folder = str(Path(module.__file__ or "").parent)
    if folder in sys.path:
        sys.path.remove(folder)


def _takes_context(hook: Any) -> bool:
    try:
        return "context" in inspect.signature(hook).parameters
    except (TypeError, ValueError):
        return False


class ScriptHandler(Handler):
    """The container's handler with the user's hooks laid over it."""

    def __init__(self, base: Handler, module: ModuleType) -> None:
        self.base = base
        self.module = module
        self.hooks = {name: getattr(module, name) for name in HOOKS if callable(getattr(module, name, None))}
        self._wants_context = {name: _takes_context(hook) for name, hook in self.hooks.items()}
        self.content_types = None if {"input_fn", "transform_fn"} & self.hooks.keys() else base.content_types
        self.accepts = None if {"output_fn", "transform_fn"} & self.hooks.keys() else base.accepts
        self.default_accept = getattr(module, "DEFAULT_ACCEPT", base.default_accept)
        log.info("script mode: %s defines %s", module.__file__, ", ".join(sorted(self.hooks)) or "no hooks")

    def _call(self, name: str, args: tuple[Any, ...], context: RequestContext) -> Any:
        hook = self.hooks[name]
        return hook(*args, context=context) if self._wants_context[name] else hook(*args)

    def load(self, model_dir: Path) -> Any:
        hook = self.hooks.get("model_fn")
        return hook(str(model_dir)) if hook else self.base.load(model_dir)

    def decode(self, body: bytes, media_type: MediaType, context: RequestContext) -> Any:
        if "transform_fn" in self.hooks:
            return body  # transform_fn gets the raw body
        if "input_fn" in self.hooks:
            return self._call("input_fn", (body, media_type.essence), context)
        return self.base.decode(body, media_type, context)

    def predict(self, model: Any, data: Any, context: RequestContext) -> Any:
        if "transform_fn" in self.hooks:
            return self._call("transform_fn", (model, data, context.content_type, context.accept), context)
        if "predict_fn" in self.hooks:
            return self._call("predict_fn", (data, model), context)
        return self.base.predict(model, data, context)

    def encode(self, prediction: Any, accept: str, context: RequestContext) -> bytes | tuple[bytes, str]:
        if "transform_fn" in self.hooks:
            return prediction  # already the response (body or (body, content_type))
        if "output_fn" in self.hooks:
            return self._call("output_fn", (prediction, accept), context)
        return self.base.encode(prediction, accept, context)


def with_user_script(base: Handler, settings: Settings, model_dir: Path, module_name: str | None = None) -> Handler:
    """``base``, or a ``ScriptHandler`` around it when a user script is present."""
    path = find_script(settings, model_dir)
    return ScriptHandler(base, import_script(path, module_name)) if path else base
