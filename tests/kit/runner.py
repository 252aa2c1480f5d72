"""Running the contract kit (as its command line, in a subprocess) and building the minimal test image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MINIMAL_IMAGE_DIR = Path(__file__).resolve().parent / "minimal_image"
PREFIX = os.environ.get("IMAGE_PREFIX", "smkit-")


@dataclass
class KitRun:
    exit_code: int
    output: str  # stdout (the text report) and stderr
    report: dict[str, Any]  # the --report-json document

    def statuses(self, level: str) -> dict[str, str]:
        return {r["id"]: r["status"] for r in self.report["results"] if r["level"] == level}

    def with_status(self, level: str, status: str) -> set[str]:
        return {rule for rule, found in self.statuses(level).items() if found == status}


def run_kit(image: str, *args: str, workdir: Path) -> KitRun:
    """``smkit-contract IMAGE ARGS --report-json ...``; the report is read back."""
    report = workdir / f"kit-report-{uuid.uuid4().hex[:8]}.json"
    done = subprocess.run([sys.executable, "-m", "smkit_contract", image, "--quiet", "--report-json", str(report),
                           *args], capture_output=True, text=True, timeout=1200)
    output = done.stdout + done.stderr
    assert report.exists(), output
    return KitRun(done.returncode, output, json.loads(report.read_text()))


# Variants made by the image's labels rather than by the server's behaviour (MINIMAL_BROKEN).
_LABEL_VARIANTS = {"no-bind-label": "BIND_LABEL=false", "claims-multi-models": "MULTI_MODELS_LABEL=true"}


def build_minimal_image(variant: str = "") -> str:
    """The minimal stdlib image, or one of its deliberately broken variants (see its Dockerfile)."""
    tag = f"{PREFIX}kit-minimal{'-' + variant if variant else ''}:test"
    build_arg = _LABEL_VARIANTS.get(variant, f"BROKEN={variant}")
    subprocess.run(["docker", "build", "--quiet", "--build-arg", build_arg, "--tag", tag, str(MINIMAL_IMAGE_DIR)],
                   check=True, capture_output=True)
    return tag
