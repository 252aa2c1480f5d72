"""new-container.sh, as a researcher uses it: in a copy of this checkout, a container made from the template
touches nothing outside its folder; lint, build.sh, pytest and the contract suite find it; it is lint-clean,
passes its unit tests, and its image builds, trains, serves and passes the contract checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_test.docker_run import PREFIX, ROOT

NAME = "zz_linear"  # sorts after serving_common: new-container.sh must fix the import order itself
IMAGE_PREFIX = f"{PREFIX}new-container-"


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=1800)


def check_image(root: Path, name: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Does the image of ``root``'s container ``name`` (built with ``env``'s IMAGE_PREFIX) honour the contract?
    Today: that checkout's contract suite narrowed to the image (its descriptor: containers/<name>/contract.py)."""
    return _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/contract"], root,
                **env, SMKIT_CONTRACT_IMAGES=name, CI="true")


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """This working tree's files (tracked and untracked, not ignored) as a fresh git repository of one commit,
    with containers/NAME made in it by new-container.sh."""
    copy = tmp_path_factory.mktemp("checkout")
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
    assert listed.returncode == 0, listed.stderr
    for relative in filter(None, listed.stdout.split("\0")):
        source = ROOT / relative
        if source.is_file():  # a file deleted in the working tree is listed but absent
            (copy / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / relative)
    for command in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"]):
        assert _run(command, copy).returncode == 0
    made = _run(["./new-container.sh", NAME], copy)
    assert made.returncode == 0, made.stdout + made.stderr
    return copy


def test_only_the_new_folder_appears(checkout):
    status = _run(["git", "status", "--porcelain", "--untracked-files=all"], checkout).stdout.splitlines()
    assert status and all(line.startswith(f"?? containers/{NAME}/") for line in status), status
    assert f"containers/{NAME}/{NAME}_container/handler.py" in "\n".join(status)


def test_lint_build_and_the_test_suite_find_it_and_its_unit_tests_pass(checkout):
    lint = _run([sys.executable, "-m", "ruff", "check", "."], checkout)
    assert lint.returncode == 0, lint.stdout
    assert NAME in _run(["./build.sh", "--list"], checkout).stdout.split()
    collected = _run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"], checkout,
                     CI="true")
    assert f"containers/{NAME}/tests/test_{NAME}_model.py::" in collected.stdout, collected.stdout[-3000:]
    assert f"[{NAME}]" in collected.stdout  # the contract suite found containers/NAME/contract.py
    tests = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"containers/{NAME}"], checkout)
    assert tests.returncode == 0 and " passed" in tests.stdout, tests.stdout[-3000:]


@pytest.fixture(scope="module")
def image(checkout, docker) -> Iterator[str]:
    built = _run(["./build.sh", NAME], checkout, IMAGE_PREFIX=IMAGE_PREFIX)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    try:
        yield f"{IMAGE_PREFIX}{NAME}"
    finally:
        for tagged in docker.images.list(name=f"{IMAGE_PREFIX}{NAME}"):
            docker.images.remove(tagged.id, force=True)


@pytest.mark.docker
def test_its_image_builds_trains_serves_and_passes_the_contract(checkout, image):
    result = check_image(checkout, NAME, {"IMAGE_PREFIX": IMAGE_PREFIX})
    assert result.returncode == 0 and " passed" in result.stdout, result.stdout[-6000:] + result.stderr[-2000:]
