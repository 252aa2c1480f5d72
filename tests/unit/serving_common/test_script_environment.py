"""Golden tests: the user script's environment and argv equal sagemaker-training's for the same /opt/ml inputs.

sagemaker-training (pinned in requirements/dev.txt, never in an image) reads its base folder when it is
imported, so it runs in a fresh interpreter per case (``SAGEMAKER_BASE_DIR``) and prints what it computed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from serving_common.settings import TrainingSettings
from serving_common.training.script_environment import ScriptEnvironment, to_cmd_args, to_env_vars
from serving_common.training.script_runner import build_command, child_environment

pytest.importorskip("sagemaker_training", reason="sagemaker-training is in requirements/dev.txt")

REFERENCE = r"""
import json, os, sys
from sagemaker_training import environment, runner
kind = sys.argv[1]
env = environment.Environment()
identifier = runner.TorchDistributedRunnerType if kind == "torch" else runner.ProcessRunnerType
command = runner.get(identifier)._create_command()
print(json.dumps({"env_vars": env.to_env_vars(), "cmd_args": env.to_cmd_args(), "command": command,
                  "process": {k: os.environ.get(k) for k in ("CURRENT_HOST", "SAGEMAKER_JOB_NAME",
                                                             "SAGEMAKER_REGION", "MASTER_ADDR",
                                                             "NCCL_SOCKET_IFNAME", "NCCL_PROTO")}}))
"""

CHANNELS = {
    "train": {"ContentType": "text/csv", "TrainingInputMode": "File", "S3DistributionType": "ShardedByS3Key",
              "RecordWrapperType": "None"},
    "validation": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"},
    "extra-data": {"TrainingInputMode": "File"},
}
SDK_HYPERPARAMETERS = {  # as the SDK writes them: every value JSON-encoded
    "learning-rate": 0.05, "epochs": 3, "a": 1, "b": "x", "layers": [64, 32], "opts": {"z": 1, "b": "two"},
    "verbose": True, "quiet": False, "name": "two words", "none": None, "ratio": 1e-07,
    "sagemaker_program": "train.py", "sagemaker_submit_directory": "/opt/ml/code",
    "sagemaker_container_log_level": 20, "sagemaker_job_name": "job-1", "sagemaker_region": "eu-west-1",
    "_tuning_objective_metric": "validation:auc", "sagemaker_extra_knob": {"k": [1, 2]},
}


def _write(base: Path, hyperparameters: dict[str, str], resources: dict[str, Any], channels: dict[str, Any],
           code: dict[str, str]) -> None:
    config = base / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (config / "resourceconfig.json").write_text(json.dumps(resources))
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    for sub in ("model", "output/data", "code"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for name, text in code.items():
        (base / "code" / name).write_text(text)


def _reference(base: Path, environ: dict[str, str], kind: str) -> dict[str, Any]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SM_", "SAGEMAKER_", "AWS_", "TRAINING_JOB", "CURRENT_HOST"))}
    env.update({"SAGEMAKER_BASE_DIR": str(base), "AWS_CONFIG_FILE": "/nonexistent",
                "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "PATH": os.environ["PATH"], **environ})
    result = subprocess.run([sys.executable, "-c", REFERENCE, kind], env=env, capture_output=True, text=True,
                            cwd=base, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


CASES = {
    "single-host-sdk-encoded": (
        {k: json.dumps(v) for k, v in SDK_HYPERPARAMETERS.items()},
        {"current_host": "algo-1", "hosts": ["algo-1"], "network_interface_name": "eth0"},
        CHANNELS, {"train.py": "print('hi')\n"}, {}, "process"),
    "raw-strings-and-env-program": (  # CreateTrainingJob without the SDK: plain strings, some not JSON
        {"max_depth": "5", "objective": "binary:logistic", "x": "[1, 2", "sagemaker_program": "ignored.py",
         "flag": "true"},
        {"current_host": "algo-1", "hosts": ["algo-1"]},
        {"train": {"ContentType": "text/csv"}}, {"run.sh": "echo hi\n"},
        {"SAGEMAKER_PROGRAM": "run.sh", "TRAINING_JOB_NAME": "from-env", "SAGEMAKER_TRAINING_MODULE": "pkg:main"},
        "process"),
    "three-hosts-instance-groups-torchrun": (
        {k: json.dumps(v) for k, v in {"epochs": 2, "batch-size": 64, "sagemaker_program": "ddp.py",
                                       "sagemaker_torch_distributed_enabled": True}.items()},
        {"current_host": "algo-2", "hosts": ["algo-1", "algo-2", "algo-3"], "network_interface_name": "ethwe",
         "current_instance_type": "ml.c5.xlarge", "current_group_name": "homogeneousCluster",
         "instance_groups": [{"instance_group_name": "homogeneousCluster", "instance_type": "ml.c5.xlarge",
                              "hosts": ["algo-1", "algo-2", "algo-3"]}]},
        CHANNELS, {"ddp.py": "pass\n"}, {}, "torch"),
    "two-hosts-local-mode-torchrun-worker": (
        {"sagemaker_program": '"ddp.py"', "sagemaker_torch_distributed_enabled": "true", "lr": "0.1"},
        {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]},
        {"training": {}}, {"ddp.py": "pass\n"}, {}, "torch"),
    "eleven-hosts-sdk-local-names-torchrun-last": (  # node_rank = position in resourceconfig, never a sort
        {"sagemaker_program": '"ddp.py"', "sagemaker_torch_distributed_enabled": "true"},
        {"current_host": "algo-11-x7k2p", "hosts": [f"algo-{i}-x7k2p" for i in range(1, 12)]},
        {"train": {}}, {"ddp.py": "pass\n"}, {}, "torch"),
    "package-with-setup-py-and-topology": (
        {"sagemaker_program": '"trainer.py"', "k": '"v"'},
        {"current_host": "algo-1", "hosts": ["algo-1"],
         "topology": [{"hostName": "algo-1", "capacityUnitId": "u1"}]},
        {}, {"trainer.py": "pass\n", "setup.py": "from setuptools import setup\nsetup()\n"}, {}, "process"),
    "hetero-cluster-distribution-groups": (
        {"sagemaker_program": '"t.py"', "sagemaker_distribution_instance_groups": '["gpus"]',
         "sagemaker_torch_distributed_enabled": "true"},
        {"current_host": "algo-3", "hosts": ["algo-1", "algo-2", "algo-3"], "current_group_name": "gpus",
         "current_instance_group": "gpus",
         "instance_groups": [{"instance_group_name": "cpus", "instance_type": "ml.c5.xlarge", "hosts": ["algo-1"]},
                             {"instance_group_name": "gpus", "instance_type": "ml.g5.xlarge",
                              "hosts": ["algo-2", "algo-3"]}]},
        CHANNELS, {"t.py": "pass\n"}, {}, "torch"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_environment_and_argv_equal_sagemaker_trainings(case, tmp_path, monkeypatch):
    hyperparameters, resources, channels, code, environ, kind = CASES[case]
    base = tmp_path / "opt_ml"
    _write(base, hyperparameters, resources, channels, code)
    reference = _reference(base, environ, kind)

    ours = ScriptEnvironment.load(base, TrainingSettings.from_env(environ))  # GPUs counted as sagemaker-training does
    assert ours.env_vars() == reference["env_vars"]
    assert ours.cmd_args() == reference["cmd_args"]
    assert build_command(ours, base / "code") == reference["command"]
    for name in ("SAGEMAKER_PROGRAM", "TRAINING_JOB_NAME", "SAGEMAKER_TRAINING_MODULE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    child = child_environment(ours, base / "code", {})
    for name, value in reference["process"].items():
        if name != "MASTER_ADDR" and value is not None:
            assert child[name] == value, name
    assert child["PYTHONPATH"].split(":")[0] == str(base / "code")
    if kind == "torch":
        assert child["MASTER_ADDR"] == ours.master_hostname and child["MASTER_PORT"] == "7777"


def test_to_cmd_args_writes_every_value_type_as_sagemaker_training():
    from sagemaker_training import mapping

    values = {"lr": 0.1, "a": 1, "b-c": "x y", "d": [1, "two"], "e": {"y": 2, "x": [1]}, "f": True, "g": None,
              "h": b"bytes", "i": 1e20, "j": {"nested": {"k": 1}}}
    assert to_cmd_args(values) == mapping.to_cmd_args(values)
    assert to_env_vars(values) == mapping.to_env_vars(values)
    assert to_cmd_args({"x": True, "long-name": [1, 2]}) == ["--long-name", "[1, 2]", "-x", "True"]


def test_one_torchrun_process_per_gpu_as_sagemaker_training(tmp_path, monkeypatch):
    """A GPU host: both count the ``GPU `` lines of ``nvidia-smi --list-gpus``. This machine has no GPU, so
    the tool is an executable printing the real one's format for four GPUs, the same for both sides."""
    tools = tmp_path / "bin"
    tools.mkdir()
    smi = tools / "nvidia-smi"
    smi.write_text("#!/bin/sh\n" + "".join(f'echo "GPU {i}: NVIDIA H200 (UUID: GPU-{i:08d}-aaaa-bbbb-cccc)"\n'
                                           for i in range(4)))
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    base = tmp_path / "opt_ml"
    _write(base, {"sagemaker_program": '"ddp.py"', "sagemaker_torch_distributed_enabled": "true", "epochs": "1"},
           {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"], "network_interface_name": "eth0"},
           {"training": {}}, {"ddp.py": "pass\n"})
    reference = _reference(base, {}, "torch")
    ours = ScriptEnvironment.load(base, TrainingSettings.from_env({}))
    assert ours.num_gpus == 4
    assert build_command(ours, base / "code") == reference["command"]
    assert reference["command"][:5] == ["torchrun", "--nnodes", "2", "--nproc_per_node", "4"]
    assert ours.env_vars() == reference["env_vars"]
    child = child_environment(ours, base / "code", {})
    assert {k: child[k] for k in ("NCCL_SOCKET_IFNAME", "NCCL_PROTO")} == {
        k: reference["process"][k] for k in ("NCCL_SOCKET_IFNAME", "NCCL_PROTO")} == {
        "NCCL_SOCKET_IFNAME": "eth0", "NCCL_PROTO": "simple"}
