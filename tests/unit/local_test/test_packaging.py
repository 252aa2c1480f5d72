"""The SDK helpers install as a package (local_test/pyproject.toml) and import from any folder."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROJECT = ROOT / "local_test"
USER_MODULES = ("sagemaker_local", "pipeline", "sdk_flows", "docker_run")


def _requirement_pins() -> dict[str, str]:
    pins = {}
    for path in (ROOT / "requirements").glob("*.txt"):
        for line in path.read_text().splitlines():
            if match := re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==(\S+)", line.strip()):
                pins[match.group(1).lower()] = match.group(3)
    return pins


def test_the_package_pins_what_the_requirements_pin():
    dependencies = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = _requirement_pins()
    assert dependencies
    for dependency in dependencies:
        name, version = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)$", dependency).groups()
        assert pins.get(name.lower()) == version, f"{dependency} differs from requirements/*.txt"


def test_the_wheel_imports_from_a_folder_outside_the_repository(tmp_path):
    source = tmp_path / "source"  # a copy: the in-tree build's build/ and egg-info stay out of the checkout
    shutil.copytree(PROJECT, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--no-build-isolation", "-w", str(wheels), str(source)], check=True, capture_output=True)
    [wheel] = wheels.glob("smkit_local_mode-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"local_test/{module}.py" for module in USER_MODULES} <= names
    assert not any(name.startswith(("serving_common/", "tests/")) for name in names)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--target", str(site), str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # -I: no user site, no PYTHONPATH, no script folder; the venv's site-packages (the SDK) plus the wheel.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import local_test.pipeline, local_test.sdk_flows, "
            "local_test.sagemaker_local as m; print(m.__file__)")
    result = subprocess.run([sys.executable, "-I", "-c", code, str(site)], cwd=elsewhere, check=True,
                            capture_output=True, text=True)
    assert Path(result.stdout.strip().splitlines()[-1]).is_relative_to(site)


def test_the_package_version_is_the_images_version():
    version = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["version"]
    assert version == (ROOT / "VERSION").read_text().strip()  # docker_run.VERSION falls back to it
