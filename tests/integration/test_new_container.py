"""new-container.sh, as a researcher uses it: in a copy of this checkout, a container made from the template
touches nothing outside its folder; lint, build.sh, pytest and the contract suite find it; it is lint-clean,
passes its unit tests, and its image builds, trains, serves and passes the contract checks, and serves a fused
model (a preprocess stage inside its model) as the chained pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_test.docker_run import PREFIX, ROOT, OptMl, ServingContainer, train
from local_test.orders import make_orders
from local_test.pipeline import labelled_features

NAME = "zz_linear"  # sorts after serving_common: new-container.sh must fix the import order itself
IMAGE_PREFIX = f"{PREFIX}new-container-"
JSON, JSONL, CSV = "application/json", "application/jsonlines", "text/csv"


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


@pytest.mark.docker
def test_its_image_serves_a_fused_model_as_the_chained_pipeline(image, docker, image_of, tmp_path):
    """Whatever the template makes serves a fused model: the preprocess image's labelled rows train the new
    image (with the features channel), ``python -m serving_common.fuse`` joins the two, and the new image
    alone answers JSON orders byte for byte as the chained preprocess -> new image pipeline, bad orders with
    the same 400."""
    preprocess, labelled = labelled_features(docker, tmp_path, make_orders(400, seed=31), image_of("preprocess"))
    job = OptMl(tmp_path / NAME, {"l2": "0.01"},
                {"train": {"ContentType": "text/csv"}, "features": {"ContentType": "application/json"}})
    (job.channel_dir("train") / "features.csv").write_text(labelled + "\n")
    (job.channel_dir("features") / "features.json").write_bytes((preprocess / "features.json").read_bytes())
    image = f"{image}:{(ROOT / 'VERSION').read_text().strip()}"  # as build.sh tags it
    trained = train(docker, image, job)
    assert trained.exit_code == 0, trained.logs
    fused = _run([sys.executable, "-m", "serving_common.fuse", str(preprocess), str(job.model_dir), "-o",
                  str(tmp_path / "fused.tar.gz")], ROOT)
    assert fused.returncode == 0 and "fingerprint" in fused.stdout and "width" in fused.stdout, fused.stderr
    folder = tmp_path / "fused"
    folder.mkdir()  # mounted as /opt/ml/model: 0755, the serving account enters it
    with tarfile.open(tmp_path / "fused.tar.gz") as tar:
        tar.extractall(folder, filter="data")
    orders = [{k: v for k, v in order.items() if k != "default"} for order in make_orders(30, seed=5)]
    with ServingContainer(docker, image_of("preprocess"), preprocess) as front, \
            ServingContainer(docker, image, job.model_dir) as back, ServingContainer(docker, image, folder) as alone:
        for server in (front, back, alone):
            server.wait_ready()
        for body, content_type in ((json.dumps(orders).encode(), JSON), (json.dumps(orders[0]).encode(), JSON),
                                   (b"".join(json.dumps(o).encode() + b"\n" for o in orders), JSONL)):
            features = front.invoke(body, content_type, CSV)
            assert features.status_code == 200, features.text
            for accept in (CSV, JSON, JSONL):
                chained, answer = back.invoke(features.content, CSV, accept), alone.invoke(body, content_type, accept)
                assert chained.status_code == 200, chained.text
                assert (answer.status_code, answer.headers["Content-Type"], answer.content) == (
                    200, chained.headers["Content-Type"], chained.content)
        for bad in (b'{"amount": "lots"}', b"[]", b'[{"amount": 1.0}, 5]'):
            chained, answer = front.invoke(bad, JSON, CSV), alone.invoke(bad, JSON, CSV)
            assert chained.status_code == answer.status_code == 400 and answer.json() == chained.json()
