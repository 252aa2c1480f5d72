"""The docker CLI, through subprocess: the kit's only outside dependency (no docker SDK to install)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

DOCKER = os.environ.get("SMKIT_CONTRACT_DOCKER", "docker")
LABEL = "smkit-contract"  # every container the kit starts carries it (and a name starting with it)


class DockerError(RuntimeError):
    """The docker CLI is missing or a docker command failed for a reason other than the image's behaviour."""


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout,
                              errors="replace")
    except FileNotFoundError as exc:
        raise DockerError(f"the docker CLI ({DOCKER}) is not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise DockerError(f"docker {args[0]} took more than {timeout:.0f} s") from exc
    if check and done.returncode != 0:
        raise DockerError(f"docker {' '.join(args[:2])}: {done.stderr.strip() or done.stdout.strip()}")
    return done


def image_labels(image: str) -> dict[str, str]:
    """The image's labels; DockerError if the image is not there."""
    out = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image).stdout.strip()
    return json.loads(out) or {}


def unique_name(role: str) -> str:
    return f"{LABEL}-{role}-{uuid.uuid4().hex[:8]}"


def _run_args(image: str, command: Sequence[str], name: str, env: Mapping[str, str],
              mounts: Sequence[tuple[Path, str, bool]], ports: Sequence[int], read_only: bool) -> list[str]:
    args = ["--name", name, "--label", LABEL]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    for source, target, writable in mounts:
        args += ["--volume", f"{source}:{target}:{'rw' if writable else 'ro'}"]
    for port in ports:
        args += ["--publish", f"127.0.0.1::{port}"]
    if read_only:
        args += ["--read-only", "--tmpfs", "/tmp"]
    return [*args, image, *command]


class Container:
    """A detached container started by the kit; remove() it when done (the kit always does)."""

    def __init__(self, image: str, command: Sequence[str], role: str, env: Mapping[str, str] | None = None,
                 mounts: Sequence[tuple[Path, str, bool]] = (), ports: Sequence[int] = (),
                 read_only: bool = False) -> None:
        self.name = unique_name(role)
        self.started = time.monotonic()
        try:
            docker("run", "--detach", *_run_args(image, command, self.name, env or {}, mounts, ports, read_only))
        except DockerError:
            self.remove()  # `docker run` may have created it before failing to start it
            raise
        self.host_ports: dict[int, int] = {}
        for port in ports:
            done = docker("port", self.name, f"{port}/tcp", check=False)
            # "127.0.0.1:49153" (a container that already exited has no ports: it is never reachable)
            first = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else ""
            if first:
                self.host_ports[port] = int(first.rsplit(":", 1)[1])

    def state(self) -> tuple[str, int]:
        """(status, exit code): ``running``/``exited``/…; the code is meaningful once exited."""
        out = docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", self.name).stdout.split()
        return out[0], int(out[1])

    def running(self) -> bool:
        return self.state()[0] in ("created", "running", "restarting")

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if it is still running after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            status, code = self.state()
            if status in ("exited", "dead"):
                return code
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def signal(self, name: str) -> None:
        docker("kill", "--signal", name, self.name, check=False)

    def logs(self) -> str:
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def processes(self) -> list[tuple[str, int, int, str]]:
        """(user id, pid, parent pid, command line) of every process in the container (``docker top``)."""
        out = docker("top", self.name, "-eo", "uid,pid,ppid,args").stdout.splitlines()[1:]
        processes = []
        for line in out:
            uid, pid, ppid, *args = line.split(None, 3)
            processes.append((uid, int(pid), int(ppid), args[0] if args else ""))
        return processes

    def remove(self) -> None:
        docker("rm", "--force", "--volumes", self.name, check=False)


def run_to_exit(image: str, command: Sequence[str], role: str, env: Mapping[str, str] | None = None,
                mounts: Sequence[tuple[Path, str, bool]] = (), timeout: float = 1800) -> tuple[int | None, str]:
    """``docker run`` in the foreground: (exit code or None on timeout, logs); the container is removed."""
    name = unique_name(role)
    try:
        done = subprocess.run([DOCKER, "run", *_run_args(image, command, name, env or {}, mounts, (), False)],
                              capture_output=True, text=True, errors="replace", timeout=timeout)
        return done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        logs = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, logs
    except FileNotFoundError as exc:
        raise DockerError(f"the docker CLI ({DOCKER}) is not on PATH") from exc
    finally:
        docker("rm", "--force", "--volumes", name, check=False)
