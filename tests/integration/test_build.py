"""build.sh: tags, labels, sizes, and a real push to a registry (Debian's docker-registry on loopback)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from local_test.docker_run import ROOT, VERSION, free_port


def _build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "build.sh"), *args], cwd=ROOT, capture_output=True, text=True, timeout=1800)


@pytest.fixture()
def registry(tmp_path: Path):
    """A real registry on 127.0.0.1 (the docker engine trusts loopback registries without TLS)."""
    port = free_port()
    config = tmp_path / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "storage:\n  filesystem:\n    rootdirectory: " + str(tmp_path / "storage") + "\n"
        f"http:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if requests.get(f"{url}/v2/", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("docker-registry did not start")
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def test_push_to_a_registry_tags_version_and_git_sha(docker, image_of, registry):
    image_of("preprocess")
    result = _build("--push", "--registry", registry, "preprocess")
    assert result.returncode == 0, result.stdout + result.stderr
    sha = re.search(rf"smkit-preprocess:{re.escape(VERSION)} and smkit-preprocess:(\S+)", result.stdout).group(1)
    tags = requests.get(f"http://{registry}/v2/smkit-preprocess/tags/list", timeout=10).json()["tags"]
    assert sorted(tags) == sorted([VERSION, sha])
    # The pushed image is pullable and is the one built here.
    local = docker.images.get(f"smkit-preprocess:{VERSION}")
    docker.images.remove(f"{registry}/smkit-preprocess:{VERSION}")
    pulled = docker.images.pull(f"{registry}/smkit-preprocess", tag=VERSION)
    assert pulled.id == local.id
    assert re.search(r"smkit-preprocess:\S+\s+\d+ MB", result.stdout)  # build.sh reports every image's size


def test_images_carry_sagemaker_labels_and_start_as_root(docker, image_of):
    for name in ("preprocess",):
        image = docker.images.get(image_of(name))
        labels = image.labels
        assert labels["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
        assert labels["org.opencontainers.image.version"] == VERSION
        assert image.attrs["Config"]["User"] in ("", "root")  # SageMaker runs containers as root
        assert image.attrs["Config"]["Entrypoint"][0].startswith("/opt/venv/bin/")


def test_unknown_command_and_unknown_image_are_refused(docker, image_of):
    container = docker.containers.run(image_of("preprocess"), ["bogus"], detach=True)
    try:
        assert container.wait(timeout=60)["StatusCode"] == 2
        assert "usage" in container.logs().decode()
    finally:
        container.remove(force=True)
    result = _build("no-such-image")
    assert result.returncode == 2 and "no such image" in result.stderr


def test_the_xgboost_image_carries_its_compiled_evaluator_but_no_compiler(docker, image_of):
    script = ("import importlib.util; from xgboost_container.fast import forest; forest.evaluator(); "
              "print(importlib.util.find_spec('ziglang'))")
    output = docker.containers.run(image_of("xgboost"), ["-c", script], entrypoint=["/opt/venv/bin/python"],
                                   remove=True)
    assert output.decode().strip() == "None"  # the evaluator loaded; zig stayed in the build stage
