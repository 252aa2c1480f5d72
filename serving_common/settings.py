"""Every environment variable an image reads: its name, its default and its parser, in this one module.

Serving (:class:`Settings`, :class:`PipelineConfig`) and training (:class:`TrainingSettings`) both live
here rather than in a second table for training: the two share the parsers and their messages (``_int``,
``_bool``: one wording for a bad value whatever reads it), one module is the whole answer to "what can I
set?" (``docs/contract.md`` lists each name, and a test checks it does), and this module imports nothing
heavier than :mod:`serving_common.uris`, so the training harness pays nothing for it. Nothing else reads
``os.environ`` (a unit test greps for it): code receives the parsed values, and a bad value is one
:class:`SettingsError` naming the variable, at start.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .uris import local_path

# Serving variables, named as SageMaker and its toolkits name them.
BIND_TO_PORT = "SAGEMAKER_BIND_TO_PORT"
SAFE_PORT_RANGE = "SAGEMAKER_SAFE_PORT_RANGE"
MODEL_SERVER_WORKERS = "SAGEMAKER_MODEL_SERVER_WORKERS"
MODEL_SERVER_TIMEOUT = "SAGEMAKER_MODEL_SERVER_TIMEOUT"
DEFAULT_INVOCATIONS_ACCEPT = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
MAX_PAYLOAD_IN_MB = "SAGEMAKER_MAX_PAYLOAD_IN_MB"
PROGRAM = "SAGEMAKER_PROGRAM"
SUBMIT_DIRECTORY = "SAGEMAKER_SUBMIT_DIRECTORY"
BATCH = "SAGEMAKER_BATCH"
BATCH_STRATEGY = "SAGEMAKER_BATCH_STRATEGY"
MAX_CONCURRENT_TRANSFORMS = "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"
MULTI_MODEL = "SAGEMAKER_MULTI_MODEL"
# Ours: where the model lives (tests and local runs point it elsewhere) and the log level.
MODEL_DIR = "SM_MODEL_DIR"
LOG_LEVEL = "SMKIT_LOG_LEVEL"
# The unprivileged account that request-handling workers switch to (created in every image).
WORKER_USER = "SMKIT_WORKER_USER"
# One log line per successful invocation (failed ones are always logged); off saves ~0.1 ms CPU a request.
ACCESS_LOG = "SMKIT_ACCESS_LOG"
# Set by the model server in each worker process (0, 1, ...), read by containers that place models on devices.
WORKER_INDEX = "SMKIT_WORKER_INDEX"
# Small requests to a model that answers fast run on the event loop, not the prediction thread (app.py).
INLINE_PREDICTIONS = "SMKIT_INLINE_PREDICTIONS"
# Multi-model endpoints: memory the loaded models may take, all workers together (MB). Unset: a
# fraction of the container's memory limit (serving_common.multi_model.memory_budget_bytes).
MME_MEMORY_BUDGET_MB = "SMKIT_MME_MEMORY_BUDGET_MB"
# Record checks of models that read named fields (preprocess): override what the model was trained with.
# How many of the model's input fields a record may miss ("auto": all but one) ...
MAX_MISSING_FIELDS = "SMKIT_MAX_MISSING_FIELDS"
# ... and what a field the model does not know gets: a 400, a log line, or nothing.
UNKNOWN_FIELDS = "SMKIT_UNKNOWN_FIELDS"
UNKNOWN_FIELD_POLICIES = ("error", "warn", "ignore")
# Multi-model endpoints: the only folder models are loaded from (SageMaker's /opt/ml/models).
MODELS_ROOT = "SMKIT_MODELS_ROOT"
# Models that read records (preprocess, fused): write the label as the first column (batch transform for
# training data; a fused model, which answers scores, refuses it) ...
OUTPUT_LABEL = "SMKIT_OUTPUT_LABEL"
# ... and what a bad record does to a request of several: "fail" it (a 400 naming the record) or, "line",
# answer an error object on that record's line, keeping output lines aligned with input lines.
RECORD_ERRORS = "SMKIT_RECORD_ERRORS"
RECORD_ERROR_MODES = ("fail", "line")

DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_S = 60
DEFAULT_MAX_PAYLOAD_MB = 6.0
DEFAULT_PROGRAM = "inference.py"


# The serial-pipeline front (serving_common.pipeline).
PIPELINE_STAGES = "SMKIT_PIPELINE_STAGES"
PIPELINE_TIMEOUT = "SMKIT_PIPELINE_TIMEOUT"
PIPELINE_WORKERS = "SMKIT_PIPELINE_WORKERS"
PIPELINE_POOL = "SMKIT_PIPELINE_POOL"

class SettingsError(ValueError):
    """An environment variable holds a value the container cannot use."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be >= {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise SettingsError(f"{name}={value} must be a finite number > 0")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("false", "0", "no"):
        return False
    if raw in ("true", "1", "yes"):
        return True
    raise SettingsError(f"{name}={raw!r} is not a boolean (true/false)")


def _port(env: Mapping[str, str]) -> int:
    """``SAGEMAKER_BIND_TO_PORT``: the port this process serves on (the model server's or the pipeline front's)."""
    port = _int(env, BIND_TO_PORT, DEFAULT_PORT, minimum=1)
    if port > 65535:
        raise SettingsError(f"{BIND_TO_PORT}={port} is not a valid port")
    return port


def _port_range(env: Mapping[str, str]) -> tuple[int, int] | None:
    raw = env.get(SAFE_PORT_RANGE, "").strip()
    if not raw:
        return None
    try:
        low, high = (int(part) for part in raw.split("-"))
    except ValueError:
        raise SettingsError(f"{SAFE_PORT_RANGE}={raw!r} is not of the form LOW-HIGH") from None
    if not 0 < low <= high < 65536:
        raise SettingsError(f"{SAFE_PORT_RANGE}={raw!r} is not a valid port range")
    return low, high


def _batch_strategy(env: Mapping[str, str]) -> str | None:
    """``SAGEMAKER_BATCH_STRATEGY`` in AWS's container spelling (``MULTI_RECORD``/``SINGLE_RECORD``), or None
    when unset. The CreateTransformJob API spelling (``MultiRecord``) is accepted too."""
    raw = env.get(BATCH_STRATEGY, "").strip()
    if not raw:
        return None
    strategy = {"MULTIRECORD": "MULTI_RECORD", "SINGLERECORD": "SINGLE_RECORD"}.get(raw.upper().replace("_", ""))
    if strategy is None:
        raise SettingsError(f"{BATCH_STRATEGY}={raw!r} is not MULTI_RECORD or SINGLE_RECORD")
    return strategy


def _record_errors(env: Mapping[str, str]) -> str:
    mode = env.get(RECORD_ERRORS, "").strip().lower() or "fail"
    if mode not in RECORD_ERROR_MODES:
        raise SettingsError(f"{RECORD_ERRORS}={mode!r} is not one of {', '.join(RECORD_ERROR_MODES)}")
    return mode


def _log_level(env: Mapping[str, str]) -> str:
    level = (env.get(LOG_LEVEL, "").strip() or "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise SettingsError(f"{LOG_LEVEL}={level!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return level


def record_rule_overrides(env: Mapping[str, str] | None = None) -> dict[str, int | str | None]:
    """The record-check rules the environment sets (``max_missing_fields``: an int, or None for "auto";
    ``unknown_fields``), only those it sets; SettingsError for values that are not valid."""
    env = os.environ if env is None else env
    overrides: dict[str, int | str | None] = {}
    raw = env.get(MAX_MISSING_FIELDS, "").strip().lower()
    if raw == "auto":
        overrides["max_missing_fields"] = None
    elif raw:
        overrides["max_missing_fields"] = _int(env, MAX_MISSING_FIELDS, 0, minimum=0)
    policy = env.get(UNKNOWN_FIELDS, "").strip().lower()
    if policy:
        if policy not in UNKNOWN_FIELD_POLICIES:
            raise SettingsError(f"{UNKNOWN_FIELDS}={policy!r} is not one of {', '.join(UNKNOWN_FIELD_POLICIES)}")
        overrides["unknown_fields"] = policy
    return overrides


def worker_index(env: Mapping[str, str] | None = None) -> int | None:
    """This worker process's ``SMKIT_WORKER_INDEX`` (0, 1, ...), None outside a model server's worker.

    Read when asked, not in :class:`Settings`: the model server sets it in each worker after the settings
    were read (``workers.py``)."""
    env = os.environ if env is None else env
    if not env.get(WORKER_INDEX, "").strip():
        return None
    return _int(env, WORKER_INDEX, 0, minimum=0)


@dataclass(frozen=True)
class Settings:
    """What the serving process reads from its environment, validated once at start."""

    port: int = DEFAULT_PORT
    workers: int = 1
    timeout_s: int = DEFAULT_TIMEOUT_S
    default_accept: str | None = None
    max_payload_mb: float = DEFAULT_MAX_PAYLOAD_MB
    program: str = DEFAULT_PROGRAM
    submit_directory: Path | None = None
    batch: bool = False
    batch_strategy: str | None = None  # None: not set (batch transform's default, MULTI_RECORD, applies)
    max_concurrent_transforms: int | None = None
    multi_model: bool = False
    safe_port_range: tuple[int, int] | None = None
    model_dir: Path = Path("/opt/ml/model")
    models_dir: Path = Path("/opt/ml/models")
    worker_user: str | None = None
    log_level: str = "INFO"
    access_log: bool = False
    # the preprocess image's and a fused model's: SMKIT_OUTPUT_LABEL, SMKIT_RECORD_ERRORS,
    # and the record-check rules SMKIT_MAX_MISSING_FIELDS / SMKIT_UNKNOWN_FIELDS set (``record_rule_overrides``)
    output_label: bool = False
    record_errors: str = "fail"
    record_overrides: Mapping[str, int | str | None] = field(default_factory=dict, hash=False)
    inline_predictions: bool = True
    mme_memory_budget_mb: float | None = None  # None: derived from the memory limit at start

    @property
    def max_payload_bytes(self) -> int:
        return int(self.max_payload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        submit = env.get(SUBMIT_DIRECTORY, "").strip()
        transforms = _int(env, MAX_CONCURRENT_TRANSFORMS, 0, minimum=0)
        port = _port(env)
        return cls(
            port=port,
            workers=_int(env, MODEL_SERVER_WORKERS, os.cpu_count() or 1, minimum=1),
            timeout_s=_int(env, MODEL_SERVER_TIMEOUT, DEFAULT_TIMEOUT_S, minimum=1),
            default_accept=env.get(DEFAULT_INVOCATIONS_ACCEPT, "").strip() or None,
            max_payload_mb=_float(env, MAX_PAYLOAD_IN_MB, DEFAULT_MAX_PAYLOAD_MB),
            program=env.get(PROGRAM, "").strip() or DEFAULT_PROGRAM,
            submit_directory=local_path(submit),
            batch=_bool(env, BATCH),
            batch_strategy=_batch_strategy(env),
            max_concurrent_transforms=transforms or None,
            multi_model=_bool(env, MULTI_MODEL),
            safe_port_range=_port_range(env),
            model_dir=Path(env.get(MODEL_DIR, "").strip() or "/opt/ml/model"),
            models_dir=Path(env.get(MODELS_ROOT, "").strip() or "/opt/ml/models"),
            worker_user=env.get(WORKER_USER, "").strip() or None,
            log_level=_log_level(env),
            access_log=_bool(env, ACCESS_LOG, default=False),
            output_label=_bool(env, OUTPUT_LABEL),
            record_errors=_record_errors(env),
            record_overrides=record_rule_overrides(env),
            inline_predictions=_bool(env, INLINE_PREDICTIONS, default=True),
            mme_memory_budget_mb=_float(env, MME_MEMORY_BUDGET_MB, 0.0) or None,
        )


# -- the serial-pipeline front -------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One container of the pipeline: its 1-based position, a name for messages, where it listens."""

    index: int
    name: str
    host: str
    port: int

    @property
    def label(self) -> str:
        return f"stage {self.index} ({self.name}) at {self.host}:{self.port}"


def parse_stages(text: str) -> tuple[Stage, ...]:
    """``"preprocess=8081,xgboost=10.0.0.2:8082"`` -> stages; a stage without a name is ``stage<N>``."""
    stages = []
    for index, item in enumerate((part.strip() for part in text.split(",") if part.strip()), start=1):
        name, _, address = item.rpartition("=")
        host, _, port_text = address.rpartition(":")
        try:
            port = int(port_text)
        except ValueError:
            raise SettingsError(f"{PIPELINE_STAGES}: {item!r} is not [name=][host:]port") from None
        if not 0 < port < 65536:
            raise SettingsError(f"{PIPELINE_STAGES}: {item!r} has an invalid port")
        stages.append(Stage(index, name.strip() or f"stage{index}", host.strip() or "127.0.0.1", port))
    if not stages:
        raise SettingsError(f"{PIPELINE_STAGES} names no stage (e.g. preprocess=8081,xgboost=8082)")
    return tuple(stages)


@dataclass(frozen=True)
class PipelineConfig:
    """What the pipeline front (serving_common.pipeline) reads from its environment, validated once at start."""

    stages: tuple[Stage, ...]
    port: int = DEFAULT_PORT
    timeout_s: float = DEFAULT_TIMEOUT_S + 5
    max_payload_mb: float = 6.0
    workers: int = 1
    pool_size: int = 16
    log_level: str = "INFO"
    worker_user: str | None = None
    access_log: bool = False

    @property
    def max_payload_bytes(self) -> int:
        return int(self.max_payload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PipelineConfig:
        env = os.environ if env is None else env
        port = _port(env)
        stage_timeout = _int(env, MODEL_SERVER_TIMEOUT, DEFAULT_TIMEOUT_S, minimum=1)
        stages = parse_stages(env.get(PIPELINE_STAGES, ""))
        if any(stage.port == port and stage.host in ("127.0.0.1", "localhost", "0.0.0.0") for stage in stages):
            raise SettingsError(f"{PIPELINE_STAGES}: a stage listens on the front's own port {port}")
        return cls(
            stages=stages,
            port=port,
            timeout_s=_float(env, PIPELINE_TIMEOUT, stage_timeout + 5.0),
            max_payload_mb=_float(env, MAX_PAYLOAD_IN_MB, 6.0),
            workers=_int(env, PIPELINE_WORKERS, 1, minimum=1),
            pool_size=_int(env, PIPELINE_POOL, 16, minimum=1),
            log_level=_log_level(env),
            worker_user=env.get(WORKER_USER, "").strip() or None,
            access_log=_bool(env, ACCESS_LOG, default=False),
        )


# -- training (``train``: serving_common.training and the containers' training code) -------------------

# Where the job's files are (SageMaker's /opt/ml; tests point it elsewhere).
TRAINING_BASE_DIR = "SMKIT_OPT_ML"
# Set by SageMaker (and the SDK's local mode) on a training container; sagemaker-training reads the same.
TRAINING_JOB_NAME = "TRAINING_JOB_NAME"
TRAINING_MODULE = "SAGEMAKER_TRAINING_MODULE"
REGION = "AWS_REGION"
DEFAULT_REGION = "AWS_DEFAULT_REGION"
# Script mode: where the user's requirements.txt is installed from: a folder of wheels (``--no-index
# --find-links``: installs that never touch the network) or a package index (``--index-url``, e.g. a mirror
# inside the VPC).
PIP_WHEELHOUSE = "SMKIT_PIP_WHEELHOUSE"
PIP_INDEX_URL = "SMKIT_PIP_INDEX_URL"
# XGBoost multi-host training: a host that dies without its TCP connections being reset (a killed container,
# a lost instance) would leave the others waiting in a collective operation forever: any operation slower
# than this fails the job instead. Generous by default, as the first operation waits for every host to have
# loaded its data.
COLLECTIVE_TIMEOUT = "SMKIT_COLLECTIVE_TIMEOUT_S"
DEFAULT_COLLECTIVE_TIMEOUT_S = 1800


def training_base_dir(env: Mapping[str, str] | None = None) -> Path:
    """The training job's folder: ``SMKIT_OPT_ML``, else /opt/ml. Apart from :class:`TrainingSettings` and
    never an error, because a failure (a bad value of another variable included) is reported in a file
    under it."""
    env = os.environ if env is None else env
    return Path(env.get(TRAINING_BASE_DIR, "").strip() or "/opt/ml")


def _collective_timeout(env: Mapping[str, str]) -> int:
    raw = env.get(COLLECTIVE_TIMEOUT, "").strip()
    try:
        value = int(raw) if raw else DEFAULT_COLLECTIVE_TIMEOUT_S
    except ValueError:
        raise SettingsError(f"{COLLECTIVE_TIMEOUT}={raw!r} is not a whole number of seconds") from None
    if value < 1:
        raise SettingsError(f"{COLLECTIVE_TIMEOUT} must be at least 1 second")
    return value


@dataclass(frozen=True)
class TrainingSettings:
    """What ``train`` reads from its environment (besides :func:`training_base_dir`), validated once at
    start; a bad value fails the job with the failure file naming it."""

    program: str | None = None  # SAGEMAKER_PROGRAM: the user's entry point (script mode)
    training_module: str | None = None
    job_name: str | None = None
    region: str = ""  # AWS_REGION, else AWS_DEFAULT_REGION
    pip_wheelhouse: str | None = None
    pip_index_url: str | None = None
    collective_timeout_s: int = DEFAULT_COLLECTIVE_TIMEOUT_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TrainingSettings:
        env = os.environ if env is None else env
        return cls(  # the first four verbatim, as sagemaker-training reads them (script_environment.py)
            program=env.get(PROGRAM) or None,
            training_module=env.get(TRAINING_MODULE),
            job_name=env.get(TRAINING_JOB_NAME),
            region=env.get(REGION) or env.get(DEFAULT_REGION) or "",
            pip_wheelhouse=env.get(PIP_WHEELHOUSE, "").strip() or None,
            pip_index_url=env.get(PIP_INDEX_URL, "").strip() or None,
            collective_timeout_s=_collective_timeout(env),
        )
