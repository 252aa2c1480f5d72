"""Shared fixtures: the Docker engine and the project's images.

Docker tests never skip under CI (CI=true): a missing engine there is a failure, not a pass.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from local_test.docker_run import DockerUnavailable, docker_client, ensure_image  # noqa: E402


@pytest.fixture(scope="session")
def docker():
    try:
        return docker_client()
    except DockerUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI needs a Docker engine: {exc}")
        pytest.skip(f"no Docker engine: {exc}")


@pytest.fixture(scope="session")
def image_of(docker):
    """``image_of("preprocess")`` -> the image's tag, built with build.sh when it is missing."""
    return lambda name: ensure_image(docker, name)
