"""The training checks: ``docker run IMAGE train`` on an /opt/ml tree laid out as SageMaker lays it out.

Four jobs run at once: the given channels and hyperparameters (must succeed and leave a model), bad
hyperparameters, unreadable data and no channels at all (must fail, with a reason in
/opt/ml/output/failure). The channels
are copied into each job's tree, so the image never writes to the caller's folders.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from smkit_contract.docker_cli import run_to_exit
from smkit_contract.rules import Results
from smkit_contract.serving import tail

GARBAGE = b"\x00\xff\xfe\x00 smkit-contract: not data \x00\n{\"unterminated\": \n\x01,\x02,\x03\n"
UNKNOWN_HYPERPARAMETER = "smkit_contract_no_such_hyperparameter"


@dataclass(frozen=True)
class Channel:
    name: str
    path: Path
    content_type: str | None = None


@dataclass
class TrainOptions:
    image: str
    channels: list[Channel]
    hyperparameters: Mapping[str, str]
    bad_hyperparameters: Mapping[str, str] | None = None  # default: the good ones plus an unknown name
    timeout: float = 1800
    smkit: bool = False
    env: Mapping[str, str] = field(default_factory=dict)  # the caller's --env
    log: Callable[[str], None] = lambda message: None


@dataclass
class Job:
    """One training job's /opt/ml tree and outcome."""

    root: Path
    exit_code: int | None = None
    logs: str = ""

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def failure(self) -> str | None:
        path = self.root / "output" / "failure"
        return path.read_text(errors="replace") if path.is_file() else None

    def model_files(self) -> list[str]:
        return sorted(str(p.relative_to(self.model_dir)) for p in self.model_dir.rglob("*") if p.is_file())


def write_tree(root: Path, hyperparameters: Mapping[str, str], channels: list[Channel], garbage: bool = False) -> Job:
    """An /opt/ml tree: the three config files, the channels, empty model and output folders."""
    config = root / "input" / "config"
    config.mkdir(parents=True)
    # SageMaker passes every hyperparameter value as a string.
    (config / "hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hyperparameters.items()}))
    data_config = {}
    for channel in channels:
        entry = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
        if channel.content_type:
            entry["ContentType"] = channel.content_type
        data_config[channel.name] = entry
        target = root / "input" / "data" / channel.name
        if garbage:
            target.mkdir(parents=True)
            (target / "data").write_bytes(GARBAGE)
        else:
            shutil.copytree(channel.path, target)
    (config / "inputdataconfig.json").write_text(json.dumps(data_config))
    (config / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"}))
    for sub in ("model", "output/data", "input/data"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for path in [root, *root.rglob("*")]:  # readable by an image that trains as a non-root user
        path.chmod(0o777 if path.is_dir() else 0o666)
    return Job(root)


class TrainingChecks:
    def __init__(self, options: TrainOptions, results: Results, workspace: Path) -> None:
        self.options = options
        self.results = results
        self.workspace = workspace
        self.good: Job | None = None

    def _run(self, job: Job, role: str) -> Job:
        job.exit_code, job.logs = run_to_exit(self.options.image, ["train"], role,
                                              env={**self.options.env, "TRAINING_JOB_NAME": f"smkit-contract-{role}"},
                                              mounts=[(job.root, "/opt/ml", True)], timeout=self.options.timeout)
        return job

    def run(self) -> Job | None:
        """Runs the three jobs and records the rules; returns the good job (its model serves next) or None."""
        options, results = self.options, self.results
        bad_hyperparameters = options.bad_hyperparameters
        if bad_hyperparameters is None:
            bad_hyperparameters = {**options.hyperparameters, UNKNOWN_HYPERPARAMETER: "1"}
        jobs = {
            "train": write_tree(self.workspace / "train", options.hyperparameters, options.channels),
            "train-bad-hyperparameters": write_tree(self.workspace / "bad-hyperparameters", bad_hyperparameters,
                                                    options.channels),
            "train-bad-data": write_tree(self.workspace / "bad-data", options.hyperparameters, options.channels,
                                         garbage=True),
            "train-no-channels": write_tree(self.workspace / "no-channels", options.hyperparameters, []),
        }
        options.log("train: running the good, bad-hyperparameters, bad-data and no-channels jobs")
        with ThreadPoolExecutor(len(jobs)) as pool:
            done = {role: job for role, job in zip(jobs, pool.map(self._run, jobs.values(), jobs))}
        good = done["train"]
        if good.exit_code is None:
            results.failed("train.succeeds", f"no exit within {options.timeout:.0f} s.\n{tail(good.logs)}")
        else:
            results.check("train.succeeds", good.exit_code == 0,
                          f"exit code {good.exit_code}; failure file: {good.failure!r}\n{tail(good.logs)}")
        if good.exit_code == 0:
            results.check("train.model-written", bool(good.model_files()), "/opt/ml/model is empty after exit 0")
        else:
            results.skipped("train.model-written", "the training job failed")

        failed_jobs = []
        for rule, role, what in (("train.bad-hyperparameters", "train-bad-hyperparameters",
                                  f"hyperparameters {json.dumps(dict(bad_hyperparameters))}"),
                                 ("train.bad-data", "train-bad-data", "every channel holding one file of garbage"),
                                 ("train.missing-channel", "train-no-channels", "no channels")):
            job = done[role]
            if job.exit_code is None:
                results.failed(rule, f"{what}: no exit within {options.timeout:.0f} s")
            elif results.check(rule, job.exit_code != 0, f"{what}: exit code 0, model files {job.model_files()[:5]}"):
                failed_jobs.append((what, job))
        for what, job in failed_jobs:
            failure = (job.failure or "").strip()
            results.check("train.failure-file", bool(failure),
                          f"{what}: exit code {job.exit_code} but no /opt/ml/output/failure (or an empty one).\n"
                          f"{tail(job.logs)}")
            if options.smkit:
                results.check("smkit.train-no-model-on-failure", not job.model_files(),
                              f"{what}: /opt/ml/model holds {job.model_files()[:5]}")
        if not failed_jobs:
            results.skipped("train.failure-file", "no training job failed")
            if options.smkit:
                results.skipped("smkit.train-no-model-on-failure", "no training job failed")
        self.good = good
        return good if good.exit_code == 0 and good.model_files() else None


def make_workspace() -> Path:
    workspace = Path(tempfile.mkdtemp(prefix="smkit-contract-"))
    workspace.chmod(0o755)
    return workspace
