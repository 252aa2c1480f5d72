"""What SageMaker gives a training job under /opt/ml: config files, channels and output folders."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving_common.settings import TrainingSettings, training_base_dir
from serving_common.training.data_files import data_files


class ConfigError(ValueError):
    """A config file SageMaker writes is missing or unreadable."""


def _read_json(path: Path, default: Any = None) -> Any:
    if not path.exists():
        if default is not None:
            return default
        raise ConfigError(f"{path} is missing")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None


def resolve_base(base: Path | None = None) -> Path:
    """``base``, else the /opt/ml folder (or the one SMKIT_OPT_ML names, for tests)."""
    return Path(base) if base else training_base_dir()


@dataclass(frozen=True)
class Channel:
    name: str
    path: Path
    content_type: str | None = None
    distribution: str = "FullyReplicated"  # or ShardedByS3Key
    input_mode: str = "File"

    def files(self) -> list[Path]:
        """Every regular file under the channel, sorted (deterministic order on every host)."""
        return sorted(p for p in self.path.rglob("*") if p.is_file())

    def data_files(self) -> list[Path]:
        """The channel's data files, sorted; bookkeeping (_SUCCESS, .crc, hidden files) skipped; none when
        its folder is missing."""
        return data_files(self.path) if self.path.exists() else []


@dataclass(frozen=True)
class TrainingEnvironment:
    base: Path
    hyperparameters: dict[str, str]
    channels: dict[str, Channel]
    current_host: str = "algo-1"
    hosts: tuple[str, ...] = ("algo-1",)
    network_interface: str = "eth0"
    num_cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    settings: TrainingSettings = field(default_factory=TrainingSettings)  # the job's environment variables

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_data_dir(self) -> Path:
        return self.base / "output" / "data"

    @property
    def failure_file(self) -> Path:
        return self.base / "output" / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.base / "checkpoints"

    @property
    def is_leader(self) -> bool:
        return self.current_host == self.hosts[0]

    @property
    def host_rank(self) -> int:
        return self.hosts.index(self.current_host)

    def channel(self, name: str) -> Channel:
        try:
            return self.channels[name]
        except KeyError:
            given = ", ".join(sorted(self.channels)) or "none"
            raise ConfigError(f"the training job needs a '{name}' channel (channels given: {given})") from None

    @classmethod
    def load(cls, base: Path | None = None, settings: TrainingSettings | None = None) -> TrainingEnvironment:
        base = resolve_base(base)
        config = base / "input" / "config"
        raw = _read_json(config / "hyperparameters.json", default={})
        if not isinstance(raw, dict):
            raise ConfigError("hyperparameters.json must hold a JSON object")
        data_config = _read_json(config / "inputdataconfig.json", default={})
        resources = _read_json(config / "resourceconfig.json", default={})
        data_dir = base / "input" / "data"
        channels = {}
        names = set(data_config) | ({p.name for p in data_dir.iterdir() if p.is_dir()} if data_dir.is_dir() else set())
        for name in sorted(names):
            spec = data_config.get(name, {})
            channels[name] = Channel(
                name=name,
                path=data_dir / name,
                content_type=spec.get("ContentType"),
                distribution=spec.get("S3DistributionType", "FullyReplicated"),
                input_mode=spec.get("TrainingInputMode", "File"),
            )
        hosts = tuple(sorted(resources.get("hosts") or ["algo-1"]))
        current = resources.get("current_host") or hosts[0]
        if current not in hosts:
            raise ConfigError(f"resourceconfig.json: current_host {current!r} is not among hosts {list(hosts)}")
        return cls(
            base=base,
            hyperparameters={str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()},
            channels=channels,
            current_host=current,
            hosts=hosts,
            network_interface=resources.get("network_interface_name", "eth0"),
            settings=TrainingSettings.from_env() if settings is None else settings,
        )
