"""What the image benchmarks (preprocess_image.py, xgboost_image.py) share: their common options, the
docker client, image and work folder they hold, training through the image, the empty-handler ceiling
run, and the cleanup of every container and server they started."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from http_stack import ours_server
from loadgen import BASE_IMAGE, Payload, Result, Server, exit_on_sigterm, image_size_mb, measure, step

# Importable because loadgen (imported above) puts the repository root on sys.path.
from local_test.docker_run import OptMl, ServingContainer, docker_client, ensure_image, train


def parser(description: str) -> argparse.ArgumentParser:
    """The options every image benchmark takes; add its own before ``parse_args``."""
    options = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_argument("--duration", type=int, default=5, help="seconds per measurement (default 5)")
    options.add_argument("--rate", type=float, default=1000, help="fixed rate in req/s (default 1000)")
    options.add_argument("--starts", type=int, default=5, help="container starts to time (default 5)")
    return options


@dataclass
class ImageBench:
    """One benchmark run of the image ``name``: use as a context manager, which removes on exit every
    container in ``containers``, stops every server in ``servers`` and deletes ``work``."""

    name: str
    client: Any = None
    image: str = ""
    work: Path = Path()
    containers: list[ServingContainer] = field(default_factory=list)
    servers: list[Server] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)

    def __enter__(self) -> ImageBench:
        exit_on_sigterm()
        self.client = docker_client()
        self.image = ensure_image(self.client, self.name)
        self.work = Path(tempfile.mkdtemp(prefix=f"bench-{self.name}-"))
        return self

    def __exit__(self, *exc: object) -> None:
        for container in self.containers:
            container.remove()
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def train(self, opt_ml: OptMl) -> bool:
        """``docker run IMAGE train`` on ``opt_ml``; False (with the failure and logs on stderr) if it fails."""
        trained = train(self.client, self.image, opt_ml)
        if trained.exit_code != 0:
            print(f"training failed ({trained.exit_code}): {opt_ml.failure}\n{trained.logs}", file=sys.stderr)
        return trained.exit_code == 0

    def train_on_rows(self, hyperparameters: dict[str, str], features: Any, labels: Any) -> Path | None:
        """Train the image on label-first CSV rows (the layout the preprocess batch transform writes); the model
        folder, or None (with the failure on stderr). Prints the training time."""
        opt_ml = OptMl(self.work / "opt_ml", hyperparameters, {"train": {"ContentType": "text/csv"}})
        np.savetxt(opt_ml.channel_dir("train") / "train.csv", np.column_stack([labels, features]), delimiter=",",
                   fmt="%.6g")
        begin = time.perf_counter()
        if not self.train(opt_ml):
            return None
        print(f"    trained in {time.perf_counter() - begin:.1f} s", end="")
        return opt_ml.model_dir

    def measure_ceiling(self, target: str, single: Payload, batch: Payload, args: argparse.Namespace) -> None:
        """The same HTTP stack with an empty handler on the host, loaded with the same requests."""
        step(f"{target}: the same stack with nothing behind it, same requests")
        self.servers.append(ceiling := ours_server(self.work, name=target))
        with ceiling:
            self.results += measure(target, ceiling.url, single, batch, {"server": ceiling.cpu_seconds}, args)

    def sizes(self) -> tuple[float | None, float | None]:
        """Megabytes of the image and of the base image."""
        return image_size_mb(self.client, self.image), image_size_mb(self.client, BASE_IMAGE)

    def done(self) -> None:
        print(f"\n(done in {time.monotonic() - self.began:.0f} s; measured with the generator on the same cores)")
