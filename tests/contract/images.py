"""The images the contract suite checks: every container folder's ``contract.py`` holds its ``DESCRIPTOR``.

``SMKIT_CONTRACT_IMAGES=name[,name...]`` narrows the suite to the images named.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from descriptor import ImageDescriptor

ROOT = Path(__file__).resolve().parents[2]
ONLY = "SMKIT_CONTRACT_IMAGES"


def load_descriptor(contract: Path) -> ImageDescriptor:
    """The ``DESCRIPTOR`` of ``containers/<name>/contract.py``; its name must be its folder's."""
    name = contract.parent.name
    spec = importlib.util.spec_from_file_location(f"{name}_contract", contract)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    descriptor = getattr(module, "DESCRIPTOR", None)
    if not isinstance(descriptor, ImageDescriptor):
        raise TypeError(f"{contract} defines no DESCRIPTOR = ImageDescriptor(...)")
    if descriptor.name != name:
        raise ValueError(f"{contract}: DESCRIPTOR.name is {descriptor.name!r}, its folder is {name!r}")
    return descriptor


def discover(root: Path = ROOT, only: str | None = None) -> list[ImageDescriptor]:
    """Every container's descriptor, in name order (only those ``only`` names, comma-separated, if given)."""
    wanted = {name.strip() for name in only.split(",") if name.strip()} if only else None
    contracts = sorted((root / "containers").glob("*/contract.py"))
    descriptors = [load_descriptor(c) for c in contracts if wanted is None or c.parent.name in wanted]
    missing = (wanted or set()) - {d.name for d in descriptors}
    if missing:
        raise LookupError(f"no containers/<name>/contract.py for {', '.join(sorted(missing))}")
    return descriptors


DESCRIPTORS = discover(only=os.environ.get(ONLY))

