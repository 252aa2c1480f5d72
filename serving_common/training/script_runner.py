"""Script mode: ``train`` runs the user's entry point as sagemaker-training does (every image).

When the job names a program (hyperparameter ``sagemaker_program`` or env ``SAGEMAKER_PROGRAM``), the code
is fetched into /opt/ml/code (``user_code``), which becomes the working directory and the head of
``PYTHONPATH``; ``requirements.txt`` is installed; the entry point runs as a child process with the
hyperparameters as arguments and the ``SM_*`` environment (``script_environment``):

- ``*.sh`` (or any other non-Python name): ``/bin/sh -c "./name args"``;
- a code folder with ``setup.py``: ``pip install .``, then ``python -m name``;
- ``*.py``: ``python name args``;
- ``sagemaker_torch_distributed_enabled``: ``torchrun`` with the arguments SageMaker's PyTorch images use.

Differences from sagemaker-training, on purpose: a child killed by signal N reports 128 + N, as a
shell would; SIGTERM/SIGINT are forwarded to the child's process group (SageMaker's StopTrainingJob), and
the failure file then says the job was stopped; several hosts wait at most ``HOST_RESOLUTION_TIMEOUT_S``
for each other's names (sagemaker-training: 15 minutes, also for a single host).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import IO

from ..settings import TrainingSettings
from .environment import resolve_base
from .script_environment import PROGRAM_PARAM, SUBMIT_DIR_PARAM, ScriptEnvironment, decode_hyperparameters
from .user_code import CODE_CHANNEL, UserCodeError, fetch, install_requirements

log = logging.getLogger("training")

TORCH_DISTRIBUTED_PARAM = "sagemaker_torch_distributed_enabled"
PROCESSES_PER_HOST_PARAM = "sagemaker_mpi_num_of_processes_per_host"
MASTER_PORT = "7777"
#: Distribution strategies of SageMaker's own images that need software these images do not carry.
UNSUPPORTED_DISTRIBUTIONS = {
    "sagemaker_mpi_enabled": "mpi",
    "sagemaker_pytorch_ddp_enabled": "pytorchddp (SageMaker's SMDDP library)",
    "sagemaker_distributed_dataparallel_enabled": "smdistributed dataparallel",
    "sagemaker_pytorch_xla_multi_worker_enabled": "pytorchxla",
    "sagemaker_parameter_server_enabled": "parameter_server",
    "sagemaker_multi_worker_mirrored_strategy_enabled": "multi_worker_mirrored_strategy",
}
HOST_RESOLUTION_TIMEOUT_S = 300
STDERR_KEPT_BYTES = 64 * 1024
FAILURE_LIMIT = 1024  # SageMaker shows the first 1024 characters of the failure file
OOM_INFO = "OutOfMemory: Process killed by SIGKILL (signal 9)"


class ScriptError(Exception):
    """The job cannot run the user's script as asked (not the script's own failure)."""


def requested_program(base: Path | None = None, settings: TrainingSettings | None = None) -> str | None:
    """The entry point the job names, or None (then the image trains its built-in algorithm)."""
    settings = TrainingSettings.from_env() if settings is None else settings
    if settings.program:
        return settings.program
    path = resolve_base(base) / "input" / "config" / "hyperparameters.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # the harness reports an unreadable file
    if not isinstance(raw, dict) or PROGRAM_PARAM not in raw:
        return None
    program = decode_hyperparameters({PROGRAM_PARAM: raw[PROGRAM_PARAM]})[PROGRAM_PARAM]
    return str(program) if program not in (None, "") else None


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def is_torch_distributed(env: ScriptEnvironment) -> bool:
    return (_truthy(env.additional_framework_parameters.get(TORCH_DISTRIBUTED_PARAM, False))
            and env.current_instance_group in env.distribution_instance_groups)


def processes_per_host(env: ScriptEnvironment) -> int:
    """GPUs, else 1 (sagemaker-training's default), unless the job sets it."""
    default = env.num_gpus if env.num_gpus > 0 else 1
    return int(env.additional_framework_parameters.get(PROCESSES_PER_HOST_PARAM, default))


# sagemaker-training 5.1.4's rule: a plain relative path inside the code folder, nothing a shell or the
# interpreter could read as an option.
_SAFE_ENTRY_POINT = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._+-]*(/[A-Za-z0-9._+-]+)*$")


def validate_entry_point(name: str) -> str:
    """The entry point unchanged, or ScriptError naming why it cannot be used."""
    if not name:
        raise ScriptError("the training entry point name is empty (set sagemaker_program)")
    if not _SAFE_ENTRY_POINT.match(name) or any(part in (".", "..") for part in name.split("/")):
        raise ScriptError(f"the training entry point {name!r} is not a plain relative path inside the source "
                          "folder (letters, digits, '.', '_', '+', '-', '/'; no leading '-' or '/', no '..')")
    return name


def entry_point_type(code_dir: Path, name: str) -> str:
    """``command`` (``*.sh``), ``package`` (a folder with setup.py), ``program`` (``*.py``), else ``command``."""
    if name.endswith(".sh"):
        return "command"
    if (code_dir / "setup.py").exists():
        return "package"
    return "program" if name.endswith(".py") else "command"


def build_command(env: ScriptEnvironment, code_dir: Path) -> list[str]:
    """The child's argv, as sagemaker-training's runners build it for this entry point."""
    name = validate_entry_point(str(env.user_entry_point or ""))
    args = env.cmd_args()
    for flag, strategy in UNSUPPORTED_DISTRIBUTIONS.items():
        if _truthy(env.additional_framework_parameters.get(flag, False)):
            raise ScriptError(f"distribution {strategy!r} ({flag}) is not supported by this image; use "
                              "torch_distributed (torchrun) or one process per host")
    kind = entry_point_type(code_dir, name)
    if is_torch_distributed(env):
        if kind != "program":
            raise ScriptError("torch_distributed needs a Python script (*.py) as the entry point, "
                              f"not {name!r}")
        command = ["torchrun", "--nnodes", str(len(env.distribution_hosts)),
                   "--nproc_per_node", str(processes_per_host(env))]
        if len(env.distribution_hosts) > 1:
            command += ["--master_addr", env.master_hostname, "--master_port", MASTER_PORT,
                        "--node_rank", str(env.distribution_hosts.index(env.current_host))]
        return [*command, name, *args]
    if kind == "package":
        return [sys.executable, "-m", re.sub(r"\.py$", "", name), *args]
    if kind == "program":
        return [sys.executable, "--", name, *args]
    return ["/bin/sh", "-c", f"./{shlex.quote(name)} {' '.join(shlex.quote(arg) for arg in args)}"]


def child_environment(env: ScriptEnvironment, code_dir: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The process environment of the user's script: ours, the ``SM_*`` variables, PYTHONPATH, and the
    torchrun variables of SageMaker's PyTorch images when torch_distributed is on."""
    child = dict(base)
    child.update(env.process_env_vars())
    child.update(env.env_vars())
    path = [str(code_dir), *(p for p in sys.path if p and p != str(code_dir))]
    child["PYTHONPATH"] = ":".join(path)
    if is_torch_distributed(env):
        child.update({"MASTER_ADDR": env.master_hostname, "MASTER_PORT": MASTER_PORT,
                      "NCCL_SOCKET_IFNAME": env.network_interface_name, "NCCL_IB_DISABLE": "1",
                      "NCCL_DEBUG": "WARN", "NCCL_PROTO": "simple"})
    return child


def _wait_for_hosts(hosts: list[str], timeout_s: float = HOST_RESOLUTION_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    for host in hosts:
        while True:
            try:
                socket.gethostbyname(host)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ScriptError(f"host {host} did not resolve within {timeout_s:.0f} s") from None
                time.sleep(0.5)


def _install_package(code_dir: Path) -> None:
    """A code folder with ``setup.py``: ``pip install .`` (with its requirements.txt), as sagemaker-training."""
    command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "."]
    if (code_dir / "requirements.txt").exists():
        command += ["-r", "requirements.txt"]
    result = subprocess.run(command, cwd=code_dir, capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.returncode != 0:
        tail = (result.stderr.strip() or result.stdout.strip())[-600:]
        raise UserCodeError(f"InstallModuleError: pip install . exited with {result.returncode}: {tail}")


class _StderrTail:
    """Copies the child's stderr to ours as it comes and keeps its last bytes for the failure file."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.kept = collections.deque(maxlen=STDERR_KEPT_BYTES)
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        out = sys.stderr.buffer
        for chunk in iter(lambda: stream.read1(8192), b""):
            out.write(chunk)
            out.flush()
            self.kept.extend(chunk)
        stream.close()

    def text(self) -> str:
        self.thread.join(timeout=5)
        return bytes(self.kept).decode("utf-8", "replace").strip()


def failure_message(exit_code: int, stderr: str, command: list[str], stopped_by: str | None = None) -> str:
    """sagemaker-training's ExecuteUserScriptError text, the stderr tail cut to fit SageMaker's 1024 chars."""
    extra = []
    if stopped_by:
        extra.append(f"Stopped: the job received {stopped_by} (StopTrainingJob or a spot interruption) and "
                     "passed it to the script")
    elif exit_code == 137:
        extra.append(OOM_INFO)
    head = f"ExecuteUserScriptError:\nExitCode {exit_code}\n"
    tail = "".join(f'\nExtraInfo "{info}"' for info in extra) + f'\nCommand "{shlex.join(command)}"'
    room = max(FAILURE_LIMIT - len(head) - len(tail) - len('ErrorMessage ""'), 0)
    message = stderr[-room:] if room else ""
    if len(stderr) > room and room > 3:
        message = "..." + stderr[-(room - 3):]
    return (head + f'ErrorMessage "{message}"' + tail)[:FAILURE_LIMIT]


class _Forwarder:
    """Passes SIGTERM/SIGINT to the child's process group while it runs; remembers the first one."""

    def __init__(self) -> None:
        self.child: subprocess.Popen | None = None
        self.received: str | None = None
        self.previous = {}

    def __enter__(self) -> _Forwarder:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received = self.received or name
        log.warning("received %s: passing it to the user's script", name)
        if self.child is not None and self.child.poll() is None:
            try:
                os.killpg(self.child.pid, signum)
            except ProcessLookupError:
                pass

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _write_once(path: Path, text: str) -> None:
    """sagemaker-training never overwrites a failure file the script wrote itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        log.info("%s exists (written by the script): kept", path)
        return
    path.write_text(text)


def run_script(base: Path | None = None, settings: TrainingSettings | None = None) -> int:
    """Run the job's user script; returns the process exit code (0 success, 1 failure)."""
    base_dir = resolve_base(base)
    output = base_dir / "output"
    failure = output / "failure"
    with _Forwarder() as forwarder:
        try:
            env = ScriptEnvironment.load(base_dir, settings)
            code_dir = env.code_dir
            channel = base_dir / "input" / "data" / CODE_CHANNEL
            origin = fetch(code_dir, env.all_hyperparameters.get(SUBMIT_DIR_PARAM),
                           channel if channel.is_dir() else None)
            log.info("user code from %s in %s; entry point %s", origin, code_dir, env.user_entry_point)
            entry = code_dir / validate_entry_point(str(env.user_entry_point or ""))
            if not entry.is_file() and not (code_dir / "setup.py").exists():
                present = ", ".join(sorted(p.name for p in code_dir.iterdir())[:10]) or "nothing"
                raise ScriptError(f"the entry point {env.user_entry_point!r} is not in the code "
                                  f"(found: {present})")
            kind = entry_point_type(code_dir, str(env.user_entry_point))
            if kind == "command":
                entry.chmod(0o777)  # sagemaker-training makes it executable
            elif kind == "package":
                _install_package(code_dir)
            else:
                install_requirements(code_dir, env.settings)
            command = build_command(env, code_dir)
            if command[0] == "torchrun" and shutil.which("torchrun") is None:
                raise ScriptError("torch_distributed needs torchrun (PyTorch) in the image; this one has none")
            if len(env.hosts) > 1:
                _wait_for_hosts(env.hosts)
            child_env = child_environment(env, code_dir, os.environ)
            log.info("invoking the user script: %s", shlex.join(command))
            if forwarder.received:
                raise ScriptError(f"stopped by {forwarder.received} before the script started")
            process = subprocess.Popen(command, cwd=code_dir, env=child_env, stderr=subprocess.PIPE,
                                       start_new_session=True)
            forwarder.child = process
            tail = _StderrTail(process.stderr)
            code = process.wait()
            stderr = tail.text()
        except Exception as exc:  # every failure before the script ran must reach the failure file
            reason = str(exc) if isinstance(exc, UserCodeError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, (ScriptError, UserCodeError, ValueError)):
                log.exception("unexpected error while preparing the user script")
            log.error("TRAINING FAILED: %s", reason)
            _write_once(failure, reason[:FAILURE_LIMIT])
            return 1
    exit_code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell reports it
    if exit_code == 0 and forwarder.received is None:
        log.info("the user script finished; reporting success")
        output.mkdir(parents=True, exist_ok=True)
        (output / "success").write_text("")
        return 0
    message = failure_message(exit_code, stderr, command, forwarder.received)
    log.error("TRAINING FAILED: %s", message)
    _write_once(failure, message)
    return 1
