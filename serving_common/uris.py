"""Where a SageMaker-given location points on this machine (``sagemaker_submit_directory``, model URLs)."""

from __future__ import annotations

from pathlib import Path


def local_path(uri: str) -> Path | None:
    """The local path of a plain path or a ``file://`` URI; None for a remote URI (``s3://...``) and for an
    empty one (``file://`` alone names no place: it must not become the working directory)."""
    path = uri.removeprefix("file://")
    return Path(path) if path and "://" not in path else None
