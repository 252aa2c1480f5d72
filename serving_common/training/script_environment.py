"""A user script's view of the job: the ``SM_*`` variables and command-line arguments, as sagemaker-training.

Reproduces ``sagemaker_training.environment.Environment`` (its ``to_env_vars``, ``to_cmd_args`` and
``dict(env)``, i.e. ``SM_TRAINING_ENV``) and ``sagemaker_training.mapping`` of sagemaker-training 5.1.4,
quirks included (``current_instance_group`` is read from ``current_group_name``; channels come from
``inputdataconfig.json`` only; ``SM_HP_<NAME>`` keeps hyphens). Written by hand because the package itself
pulls boto3, gevent and paramiko into every image; tests/unit/serving_common/test_script_environment.py
compares the result with the real package for the same /opt/ml inputs.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..settings import TrainingSettings
from .environment import ConfigError, _read_json, resolve_base

log = logging.getLogger("training")

PROGRAM_PARAM = "sagemaker_program"
SUBMIT_DIR_PARAM = "sagemaker_submit_directory"
LOG_LEVEL_PARAM = "sagemaker_container_log_level"
JOB_NAME_PARAM = "sagemaker_job_name"
REGION_PARAM = "sagemaker_region"
#: Reserved keys that are neither user hyperparameters nor "additional framework parameters".
SAGEMAKER_HYPERPARAMETERS = (
    PROGRAM_PARAM, SUBMIT_DIR_PARAM, "sagemaker_enable_cloudwatch_metrics", REGION_PARAM, LOG_LEVEL_PARAM,
    JOB_NAME_PARAM, "default_user_module_name", "_tuning_objective_metric", "sagemaker_s3_output",
)
SAGEMAKER_PREFIX = "sagemaker_"
#: Framework parameters that put the current instance group into ``distribution_instance_groups``.
DISTRIBUTION_FLAGS = (
    "sagemaker_mpi_enabled", "sagemaker_parameter_server_enabled", "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled", "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled", "sagemaker_torch_distributed_enabled",
)
DEFAULT_INSTANCE_GROUP = "homogeneousCluster"
LOG_LEVEL_INFO = 20


def decode_hyperparameters(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Each value JSON-decoded (the SDK JSON-encodes them), the raw value where it is not JSON."""
    decoded = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value)
        except (ValueError, TypeError):
            decoded[key] = value
    return decoded


def _decode(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin1")
    return str(value)


def to_cmd_args(mapping: Mapping[str, Any]) -> list[str]:
    """``--key value`` pairs, keys sorted, ``-k`` for one-letter keys, dicts as ``k=v,k2=v2`` (sorted),
    everything else ``str()`` (lists as Python writes them, booleans ``True``/``False``)."""
    def name(key: Any) -> str:
        text = _decode(key)
        if not text:
            return ""
        return f"--{text}" if len(text) > 1 else f"-{text}"

    def value(item: Any) -> str:
        if hasattr(item, "items"):
            return ",".join(f"{k}={v}" for k, v in sorted(item.items()))
        return _decode(item)

    keys = sorted(mapping)
    return list(itertools.chain.from_iterable((name(key), value(mapping[key])) for key in keys))


def to_env_vars(mapping: Mapping[str, Any]) -> dict[str, str]:
    """``SM_<KEY>`` (upper-cased, nothing else changed); strings as they are, None empty, the rest JSON."""
    def value(item: Any) -> str:
        if isinstance(item, bytes):
            return item.decode("latin1")
        if item is None:
            return ""
        if isinstance(item, str):
            return item
        return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=True)

    return {(f"SM_{str(key).upper()}" if key else ""): value(item) for key, item in mapping.items()}


def count_gpus() -> int:
    """GPUs as sagemaker-training counts them: the ``GPU `` lines of ``nvidia-smi --list-gpus``."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        output = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, check=True,
                                timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in output.split("\n") if line.startswith("GPU "))


@dataclass(frozen=True)
class ScriptEnvironment:
    """What sagemaker-training's ``Environment`` holds for one job (read-only snapshot)."""

    base: Path
    resource_config: dict[str, Any]
    input_data_config: dict[str, Any]
    all_hyperparameters: dict[str, Any]  # decoded, reserved keys included
    user_entry_point: str | None
    num_cpus: int
    num_gpus: int
    settings: TrainingSettings = field(default_factory=TrainingSettings)  # the job's environment variables

    @classmethod
    def load(cls, base: Path | None = None, settings: TrainingSettings | None = None,
             num_gpus: int | None = None) -> ScriptEnvironment:
        settings = TrainingSettings.from_env() if settings is None else settings
        base = resolve_base(base)
        config = base / "input" / "config"
        raw = _read_json(config / "hyperparameters.json", default={})
        if not isinstance(raw, dict):
            raise ConfigError("hyperparameters.json must hold a JSON object")
        resources = _read_json(config / "resourceconfig.json", default={}) or {
            "current_host": "algo-1", "hosts": ["algo-1"]}
        if "hosts" not in resources or "current_host" not in resources:
            raise ConfigError("resourceconfig.json needs 'hosts' and 'current_host'")
        hyperparameters = decode_hyperparameters(raw)
        program = settings.program or hyperparameters.get(PROGRAM_PARAM)
        return cls(
            base=base,
            resource_config=resources,
            input_data_config=_read_json(config / "inputdataconfig.json", default={}),
            all_hyperparameters=hyperparameters,
            user_entry_point=None if program is None else str(program),
            num_cpus=os.cpu_count() or 1,
            num_gpus=count_gpus() if num_gpus is None else num_gpus,
            settings=settings,
        )

    @property
    def framework_module(self) -> str | None:
        return self.settings.training_module

    @property
    def job_name(self) -> str | None:
        return self.settings.job_name

    # -- folders --------------------------------------------------------------------------------------
    @property
    def code_dir(self) -> Path:
        return self.base / "code"

    @property
    def model_dir(self) -> str:
        return str(self.base / "model")

    @property
    def input_dir(self) -> str:
        return str(self.base / "input")

    @property
    def input_config_dir(self) -> str:
        return str(self.base / "input" / "config")

    @property
    def output_dir(self) -> str:
        return str(self.base / "output")

    @property
    def output_data_dir(self) -> str:
        return str(self.base / "output" / "data")

    @property
    def output_intermediate_dir(self) -> str:
        return str(self.base / "output" / "intermediate")

    @property
    def channel_input_dirs(self) -> dict[str, str]:
        return {name: str(self.base / "input" / "data" / name) for name in self.input_data_config}

    # -- hyperparameters ------------------------------------------------------------------------------
    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The user's hyperparameters: neither reserved nor ``sagemaker_``-prefixed."""
        return {k: v for k, v in self.all_hyperparameters.items() if not _is_reserved(k)}

    @property
    def _sagemaker_hyperparameters(self) -> dict[str, Any]:
        return {k: v for k, v in self.all_hyperparameters.items() if _is_reserved(k)}

    @property
    def additional_framework_parameters(self) -> dict[str, Any]:
        return {k: v for k, v in self._sagemaker_hyperparameters.items() if k not in SAGEMAKER_HYPERPARAMETERS}

    @property
    def module_name(self) -> str:
        name = str(self.user_entry_point)
        return name[:-3] if name.endswith(".py") else name

    @property
    def module_dir(self) -> str:
        return str(self._sagemaker_hyperparameters.get(SUBMIT_DIR_PARAM, str(self.code_dir)))

    @property
    def log_level(self) -> Any:
        return self._sagemaker_hyperparameters.get(LOG_LEVEL_PARAM, LOG_LEVEL_INFO)

    # -- hosts ----------------------------------------------------------------------------------------
    @property
    def hosts(self) -> list[str]:
        return list(self.resource_config["hosts"])

    @property
    def current_host(self) -> str:
        return str(self.resource_config["current_host"])

    @property
    def network_interface_name(self) -> str:
        return self.resource_config.get("network_interface_name", "eth0")

    @property
    def current_instance_type(self) -> str:
        return self.resource_config.get("current_instance_type", "local")

    @property
    def current_instance_group(self) -> str:
        # sagemaker-training reads this key (resourceconfig.json names it current_instance_group).
        return self.resource_config.get("current_group_name", DEFAULT_INSTANCE_GROUP)

    @property
    def instance_groups(self) -> list[str]:
        return [group["instance_group_name"] for group in self.resource_config.get("instance_groups", [])]

    @property
    def instance_groups_dict(self) -> dict[str, Any]:
        return {group["instance_group_name"]: group for group in self.resource_config.get("instance_groups", [])}

    @property
    def current_instance_group_hosts(self) -> list[str]:
        for group in self.resource_config.get("instance_groups", []):
            if group["instance_group_name"] == self.current_instance_group:
                return group["hosts"]
        return []

    @property
    def is_hetero(self) -> bool:
        return len(self.instance_groups) > 1

    @property
    def distribution_instance_groups(self) -> list[str]:
        params = self.additional_framework_parameters
        if "sagemaker_distribution_instance_groups" in params:
            return params["sagemaker_distribution_instance_groups"]
        if any(params.get(flag, False) for flag in DISTRIBUTION_FLAGS):
            return [self.resource_config.get("current_group_name", DEFAULT_INSTANCE_GROUP)]
        return []

    @property
    def distribution_hosts(self) -> list[str]:
        groups = self.resource_config.get("instance_groups", [])
        if not groups:
            return self.hosts
        wanted = self.distribution_instance_groups
        return [host for group in groups if group["instance_group_name"] in wanted for host in group["hosts"]]

    @property
    def master_hostname(self) -> str:
        return (self.distribution_hosts or self.hosts)[0]

    @property
    def is_master(self) -> bool:
        return self.current_host == self.master_hostname

    @property
    def topology(self) -> list[Any]:
        return self.resource_config.get("topology", [])

    # -- what the script gets -------------------------------------------------------------------------
    def training_env(self) -> dict[str, Any]:
        """``dict(Environment())``: what ``SM_TRAINING_ENV`` holds."""
        return {
            "additional_framework_parameters": self.additional_framework_parameters,
            "channel_input_dirs": self.channel_input_dirs,
            "current_host": self.current_host,
            "current_instance_group": self.current_instance_group,
            "current_instance_group_hosts": self.current_instance_group_hosts,
            "current_instance_type": self.current_instance_type,
            "distribution_hosts": self.distribution_hosts,
            "distribution_instance_groups": self.distribution_instance_groups,
            "framework_module": self.framework_module,
            "hosts": self.hosts,
            "hyperparameters": self.hyperparameters,
            "input_config_dir": self.input_config_dir,
            "input_data_config": self.input_data_config,
            "input_dir": self.input_dir,
            "instance_groups": self.instance_groups,
            "instance_groups_dict": self.instance_groups_dict,
            "is_hetero": self.is_hetero,
            "is_master": self.is_master,
            "is_modelparallel_enabled": None,  # SM_HP_MP_PARAMETERS (SageMaker's model parallel): never here
            "is_smddpmprun_installed": False,
            "is_smddprun_installed": False,
            "job_name": self.job_name,
            "log_level": self.log_level,
            "master_hostname": self.master_hostname,
            "model_dir": self.model_dir,
            "module_dir": self.module_dir,
            "module_name": self.module_name,
            "network_interface_name": self.network_interface_name,
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "num_neurons": 0,
            "output_data_dir": self.output_data_dir,
            "output_dir": self.output_dir,
            "output_intermediate_dir": self.output_intermediate_dir,
            "resource_config": self.resource_config,
            "topology": self.topology,
            "user_entry_point": self.user_entry_point,
        }

    def cmd_args(self) -> list[str]:
        return to_cmd_args(self.hyperparameters)

    def env_vars(self) -> dict[str, str]:
        """The ``SM_*`` variables of the script's environment."""
        env: dict[str, Any] = {
            "hosts": self.hosts,
            "network_interface_name": self.network_interface_name,
            "hps": self.hyperparameters,
            "user_entry_point": self.user_entry_point,
            "framework_params": self.additional_framework_parameters,
            "resource_config": self.resource_config,
            "input_data_config": self.input_data_config,
            "output_data_dir": self.output_data_dir,
            "channels": sorted(self.channel_input_dirs),
            "current_host": self.current_host,
            "current_instance_type": self.current_instance_type,
            "current_instance_group": self.current_instance_group,
            "current_instance_group_hosts": self.current_instance_group_hosts,
            "instance_groups": self.instance_groups,
            "instance_groups_dict": self.instance_groups_dict,
            "distribution_instance_groups": self.distribution_instance_groups,
            "is_hetero": self.is_hetero,
            "module_name": self.module_name,
            "log_level": self.log_level,
            "framework_module": self.framework_module,
            "input_dir": self.input_dir,
            "input_config_dir": self.input_config_dir,
            "output_dir": self.output_dir,
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "num_neurons": 0,
            "model_dir": self.model_dir,
            "module_dir": self.module_dir,
            "training_env": self.training_env(),
            "user_args": self.cmd_args(),
            "output_intermediate_dir": self.output_intermediate_dir,
        }
        if self.topology:
            env["topology"] = self.topology
        for name, path in self.channel_input_dirs.items():
            env[f"channel_{name}"] = path
        for key, value in self.hyperparameters.items():
            env[f"hp_{key}"] = value
        return to_env_vars(env)

    def process_env_vars(self) -> dict[str, str]:
        """What sagemaker-training also puts in its own environment (which the script inherits)."""
        hps = self._sagemaker_hyperparameters
        return {
            "CURRENT_HOST": self.current_host,
            "SAGEMAKER_JOB_NAME": str(hps.get(JOB_NAME_PARAM, "")),
            "SAGEMAKER_REGION": str(hps.get(REGION_PARAM) or self.settings.region),
        }


def _is_reserved(key: str) -> bool:
    return key in SAGEMAKER_HYPERPARAMETERS or key.startswith(SAGEMAKER_PREFIX)
