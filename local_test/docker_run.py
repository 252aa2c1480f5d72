"""Run the project's images as SageMaker does: `train` against an /opt/ml tree, `serve` on a port (docker SDK)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker as docker_sdk
import requests

ROOT = Path(__file__).resolve().parent.parent  # the checkout (tests, build.sh); not there for a wheel install
PREFIX = os.environ.get("IMAGE_PREFIX", "smkit-")


def _version() -> str:
    """The images' version: the checkout's VERSION file, else the installed package's (same number)."""
    try:
        return (ROOT / "VERSION").read_text().strip()
    except OSError:
        from importlib.metadata import version
        return version("smkit-local-mode")


VERSION = _version()


class DockerUnavailable(RuntimeError):
    pass


def docker_client() -> docker_sdk.DockerClient:
    try:
        client = docker_sdk.from_env(timeout=300)
        client.ping()
    except Exception as exc:
        raise DockerUnavailable(str(exc)) from exc
    return client


def ensure_image(client: docker_sdk.DockerClient, name: str) -> str:
    """The image's tag; built with ./build.sh if it is not there (CI builds all images up front)."""
    tag = f"{PREFIX}{name}:{VERSION}"
    try:
        client.images.get(tag)
    except docker_sdk.errors.ImageNotFound:
        subprocess.run([str(ROOT / "build.sh"), name], check=True)
    return tag


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS found free just now (for a server started right after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerExited(RuntimeError):
    """The server stopped before it answered 200."""


def wait_ready(url: str, timeout: float = 60.0, *, alive: Callable[[], bool] | None = None,
               interval: float = 0.05, check_every: float = 0.5, request_timeout: float = 1.0) -> float:
    """Seconds until ``GET url`` answers 200, polled every ``interval`` s: the one readiness wait of the
    tests, the local runs and the benchmarks.

    Not listening yet, a reset (a docker-proxy accepts, then resets), no answer within ``request_timeout``
    (the port is bound but no worker accepts yet) or another status all mean "not yet". ``alive()``, asked at
    most every ``check_every`` s, turning false raises ServerExited; no 200 within ``timeout`` s raises
    TimeoutError with the last answer. (http.client, not requests: no pool, no retries, nothing to configure.)
    """
    parts = urlsplit(url)
    started = time.monotonic()
    checked = started
    last = "no answer"
    while True:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=request_timeout)
        try:
            connection.request("GET", parts.path or "/")
            response = connection.getresponse()
            if response.status == 200:
                return time.monotonic() - started
            last = f"{response.status} {response.read(300).decode(errors='replace')}"
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()
        now = time.monotonic()
        if alive is not None and now - checked >= check_every:
            checked = now
            if not alive():
                raise ServerExited(f"the server behind {url} exited before answering 200")
        if now - started > timeout:
            raise TimeoutError(f"no 200 from {url} within {timeout:.0f} s (last: {last})")
        time.sleep(interval)


def _open_dirs(path: Path) -> None:
    # Request workers run as an unprivileged user: model folders must be readable by others.
    path.mkdir(parents=True, exist_ok=True)
    for parent in [path, *path.parents]:
        if parent == Path("/") or parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o755)


@dataclass
class OptMl:
    """An /opt/ml tree on the host, mounted into a training container."""

    root: Path
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    channels: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> inputdataconfig entry
    hosts: tuple[str, ...] = ("algo-1",)
    current_host: str = "algo-1"

    def write_config(self) -> None:
        config = self.root / "input" / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in self.hyperparameters.items()}))
        (config / "inputdataconfig.json").write_text(json.dumps(self.channels))
        (config / "resourceconfig.json").write_text(json.dumps(
            {"current_host": self.current_host, "hosts": list(self.hosts), "network_interface_name": "eth0"}))
        for sub in ("model", "output", "checkpoints", "input/data"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        _open_dirs(self.root / "model")

    def channel_dir(self, name: str) -> Path:
        path = self.root / "input" / "data" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def failure(self) -> str | None:
        path = self.root / "output" / "failure"
        return path.read_text() if path.exists() else None


@dataclass
class TrainResult:
    exit_code: int
    logs: str
    opt_ml: OptMl


def train(client: docker_sdk.DockerClient, image: str, opt_ml: OptMl, timeout: int = 600) -> TrainResult:
    """``docker run IMAGE train`` with the tree mounted at /opt/ml; waits for the exit."""
    opt_ml.write_config()
    container = client.containers.run(
        image, ["train"], detach=True, volumes={str(opt_ml.root): {"bind": "/opt/ml", "mode": "rw"}})
    try:
        code = container.wait(timeout=timeout)["StatusCode"]
        return TrainResult(code, container.logs().decode(errors="replace"), opt_ml)
    finally:
        container.remove(force=True)


def train_cluster(client: docker_sdk.DockerClient, image: str, jobs: list[OptMl], timeout: int = 600,
                  kill_after: Mapping[str, float] | None = None,
                  environment: Mapping[str, str] | None = None) -> list[TrainResult]:
    """``train`` on several hosts at once, on a private Docker network where each is reachable by its name.

    ``jobs`` hold one /opt/ml tree per host (their ``hosts``/``current_host`` say who is who);
    ``kill_after`` maps a host to seconds after which it is killed (to test a host that dies).
    """
    network = client.networks.create(f"smkit-train-{uuid.uuid4().hex[:8]}", driver="bridge")
    containers = []
    try:
        for job in jobs:
            job.write_config()
            # One interface per host, as on SageMaker: only the job's network, where its name resolves.
            container = client.containers.create(
                image, ["train"], hostname=job.current_host, network=network.name, environment=dict(environment or {}),
                networking_config={network.name: client.api.create_endpoint_config(aliases=[job.current_host])},
                volumes={str(job.root): {"bind": "/opt/ml", "mode": "rw"}})
            containers.append(container)
        started = time.monotonic()
        for container in containers:
            container.start()
        for job, container in zip(jobs, containers, strict=True):
            delay = (kill_after or {}).get(job.current_host)
            if delay is not None:
                time.sleep(max(0.0, delay - (time.monotonic() - started)))
                container.kill()
        results = []
        for job, container in zip(jobs, containers, strict=True):
            code = container.wait(timeout=timeout)["StatusCode"]
            results.append(TrainResult(code, container.logs().decode(errors="replace"), job))
        return results
    finally:
        for container in containers:
            container.remove(force=True)
        network.remove()


class ServingContainer:
    """``docker run IMAGE serve`` as SageMaker runs it, the port published on loopback.

    ``host_network=True`` runs it in the host's network namespace instead, on a free port given as
    SAGEMAKER_BIND_TO_PORT: no docker-proxy in the request path (SageMaker has none), for benchmarks.
    ``host_port`` chooses the port on the host (default: one the OS finds free).
    """

    def __init__(self, client: docker_sdk.DockerClient, image: str, model_dir: Path | None,
                 env: Mapping[str, str] | None = None, read_only: bool = True, port: int = 8080,
                 volumes: Mapping[str, Mapping[str, str]] | None = None, host_network: bool = False,
                 host_port: int | None = None) -> None:
        env = dict(env or {})
        self.host_port = host_port or free_port()
        if host_network:
            port = self.host_port
        if port != 8080:
            env["SAGEMAKER_BIND_TO_PORT"] = str(port)
        mounts = dict(volumes or {})
        if model_dir is not None:
            _open_dirs(model_dir)
            mounts[str(model_dir)] = {"bind": "/opt/ml/model", "mode": "ro"}
        network = {"network_mode": "host"} if host_network else {
            "ports": {f"{port}/tcp": ("127.0.0.1", self.host_port)}}
        self.container = client.containers.run(
            image, ["serve"], detach=True, environment=env, volumes=mounts, read_only=read_only,
            tmpfs={"/tmp": ""} if read_only else None, **network)
        self.url = f"http://127.0.0.1:{self.host_port}"

    def running(self) -> bool:
        self.container.reload()
        return self.container.status not in ("exited", "dead")

    def wait_ready(self, timeout: float = 60, interval: float = 0.05) -> float:
        """Seconds until the first 200 on /ping; raises with the logs if the container died or timed out."""
        try:
            return wait_ready(f"{self.url}/ping", timeout, alive=self.running, interval=interval)
        except ServerExited:
            raise ServerExited(f"container exited:\n{self.logs()}") from None
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}:\n{self.logs()}") from None

    def wait_exit(self, timeout: float = 60) -> int:
        return self.container.wait(timeout=timeout)["StatusCode"]

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")

    def invoke(self, body: bytes, content_type: str | None, accept: str | None = None,
               headers: Mapping[str, str] | None = None, timeout: float = 30) -> requests.Response:
        all_headers = dict(headers or {})
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        if accept is not None:
            all_headers["Accept"] = accept
        return requests.post(f"{self.url}/invocations", data=body, headers=all_headers, timeout=timeout)

    def remove(self) -> None:
        try:
            self.container.remove(force=True)
        except docker_sdk.errors.NotFound:
            pass

    def __enter__(self) -> ServingContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
