"""``train``: read the job's config, validate hyperparameters, run the container's training function.

Any failure writes a short reason to ``/opt/ml/output/failure`` (SageMaker shows it as the job's
FailureReason) and exits non-zero. The model is written to a hidden staging folder and moved into
``/opt/ml/model`` only when training succeeded, so a failed job never leaves a half-written model.

A job that names a program (``sagemaker_program`` / ``SAGEMAKER_PROGRAM``) runs the user's script
instead (``script_runner``), with the ``SM_*`` environment and arguments sagemaker-training gives it, in
every image whose container does not claim the hyperparameter for itself (preprocess: feature code).

Why not sagemaker-training itself: it pulls boto3, paramiko, gevent and friends into every image (far past
the image-size budget); ``script_environment`` reproduces its variables and the suite compares the two.
"""

from __future__ import annotations

import logging
import shutil
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..logs import configure_logging
from ..settings import SettingsError, TrainingSettings
from .environment import TrainingEnvironment, resolve_base
from .hyperparameters import Hyperparameter, parse
from .script_runner import requested_program, run_script
from .stop import STOP, StopRequested

log = logging.getLogger("training")


class TrainingError(Exception):
    """A failure whose message is the whole story for the user (bad data, bad config)."""


@dataclass
class TrainingJob:
    """What a container's training function receives."""

    env: TrainingEnvironment
    hyperparameters: dict[str, Any]
    model_dir: Path  # the staging folder: write the model here
    published: bool = False

    def publish(self) -> None:
        """Move the finished model from staging into /opt/ml/model now (the harness does it after training
        otherwise). Multi-host jobs call it on the leader before their last barrier, so that no host
        exits — which ends a local-mode job — before the model is in place."""
        if not self.published:
            _publish(self.model_dir, self.env.model_dir)
            self.published = True

    @property
    def output_data_dir(self) -> Path:
        return self.env.output_data_dir

    @property
    def checkpoint_dir(self) -> Path:
        return self.env.checkpoint_dir


TrainFn = Callable[[TrainingJob], None]


def failure_reason(exc: BaseException) -> str:
    """What goes into the failure file: the message for expected errors, type and message otherwise."""
    if isinstance(exc, StopRequested):
        return str(exc)
    if isinstance(exc, (TrainingError, ValueError, FileNotFoundError)):
        return f"{type(exc).__name__}: {exc}"
    return f"AlgorithmError: {type(exc).__name__}: {exc}"


def _write_failure(env_base: Path, reason: str) -> None:
    failure = env_base / "output" / "failure"
    try:
        failure.parent.mkdir(parents=True, exist_ok=True)
        failure.write_text(reason[:1024] + "\n")  # SageMaker keeps the first 1024 characters
    except OSError as exc:
        log.error("could not write %s: %s", failure, exc)


def _publish(staging: Path, model_dir: Path) -> None:
    for entry in sorted(staging.iterdir()):
        target = model_dir / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        entry.rename(target)
    staging.rmdir()


def run(train_fn: TrainFn, declared: Sequence[Hyperparameter], base: Path | None = None,
        user_scripts: bool = True) -> int:
    """Run one training job; returns the process exit code (0 success, 1 failure).

    With ``user_scripts`` (the default), a job that names a program runs it (script mode) instead of
    ``train_fn``: never the built-in algorithm in its place."""
    configure_logging()
    base_dir = resolve_base(base)
    try:
        settings = TrainingSettings.from_env()
    except SettingsError as exc:  # a bad variable fails the job like anything else: in the failure file
        reason = failure_reason(exc)
        log.error("TRAINING FAILED: %s", reason)
        _write_failure(base_dir, reason)
        return 1
    if user_scripts and requested_program(base_dir, settings) is not None:
        return run_script(base_dir, settings)
    with STOP.installed():  # SIGTERM stops the job (stop.py); training loops stop at their next round
        return _train(train_fn, declared, base_dir, settings)


def _train(train_fn: TrainFn, declared: Sequence[Hyperparameter], base_dir: Path, settings: TrainingSettings) -> int:
    staging: Path | None = None
    try:
        env = TrainingEnvironment.load(base_dir, settings)
        hyperparameters = parse(declared, env.hyperparameters)
        log.info("hyperparameters: %s", hyperparameters)
        log.info("channels: %s; host %s of %s", {n: str(c.path) for n, c in env.channels.items()},
                 env.current_host, list(env.hosts))
        env.model_dir.mkdir(parents=True, exist_ok=True)
        # One staging folder per host: SDK local mode gives every host the same /opt/ml/model.
        staging = env.model_dir / f".staging-{env.current_host}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        job = TrainingJob(env, hyperparameters, staging)
        train_fn(job)
        job.publish()
        log.info("training finished; model in %s", env.model_dir)
        return 0
    except BaseException as exc:  # every failure (SystemExit, Ctrl-C included) must reach the failure file
        reason = failure_reason(exc)
        log.error("TRAINING FAILED: %s", reason)
        if not isinstance(exc, TrainingError | ValueError | StopRequested):
            traceback.print_exc(file=sys.stdout)
        _write_failure(base_dir, reason)
        if staging is not None:
            # Every host's staging folder: SDK local mode shares /opt/ml/model, and a host that was lost
            # cannot remove its own. The job has failed, so no host will publish from one.
            for folder in staging.parent.glob(".staging-*"):
                shutil.rmtree(folder, ignore_errors=True)
        return 1
