"""Importing a user's Python file (an inference script, feature code): the one importer every container uses."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


class NotLoadable(ImportError):
    """Python has no loader for the file (not a .py file, say)."""


def import_file(path: Path, module_name: str) -> ModuleType:
    """Import the file ``path`` as the module ``module_name``, registered in ``sys.modules`` like any imported
    module (dataclasses, typing and pickle look classes up there).

    What the file raises while it runs propagates, and ``sys.modules`` gets back what it held under
    ``module_name`` before; NotLoadable when Python cannot load the file at all. Callers turn both into their
    own error with their own advice.
    """
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise NotLoadable(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(module_name)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        if previous is None:
            sys.modules.pop(module_name, None)
        else:
            sys.modules[module_name] = previous
        raise
    return module
