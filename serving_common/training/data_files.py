"""Which files of a training channel are data: the one selection every container trains on.

Spark, Hadoop and notebooks leave bookkeeping next to the data (``_SUCCESS``, ``_temporary/``, ``.crc``
checksums, ``.ipynb_checkpoints/``); those, and hidden files, are never read as data.
"""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def skip_reason(relative: Path) -> str | None:
    """Why the file at ``relative`` (its path inside the channel) is not data, or None when it is."""
    for part in relative.parts[:-1]:
        if part.startswith((".", "_")):
            return f"inside the hidden or bookkeeping directory {part!r}"
    name = relative.name
    if name.startswith("."):
        return "hidden file"
    if name.startswith("_"):
        return "bookkeeping file (name starts with '_', e.g. _SUCCESS)"
    if name.lower().endswith(".crc"):
        return "checksum file"
    return None


def data_files(path: Path, log: logging.Logger = logger) -> list[Path]:
    """The data files under the folder ``path`` (or ``path`` itself when it is a file), sorted by their
    path inside it (the same order on every host); each file skipped is logged on ``log`` (INFO).

    FileNotFoundError when ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"training data path {path} does not exist")
    if path.is_file():
        candidates = [(path, Path(path.name))]
    else:
        candidates = sorted(((p, p.relative_to(path)) for p in path.rglob("*") if p.is_file()),
                            key=lambda item: item[1])
    selected = []
    for file, relative in candidates:
        reason = skip_reason(relative)
        if reason is None:
            selected.append(file)
        else:
            log.info("skipping %s: %s", file, reason)
    return selected
