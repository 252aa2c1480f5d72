"""The PyTorch image runs a researcher's script (script mode, serving_common.training's runner): the shipped
example MLP from a ``code`` channel on one host, and under torchrun across two hosts on a Docker network
(``sagemaker_torch_distributed_enabled``), reaching a model as good as one host's; a host killed mid-run makes
the job fail on the other, never hang or report success."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from local_test.docker_run import ROOT, OptMl, train, train_cluster

pytestmark = pytest.mark.docker

EXAMPLE = ROOT / "containers" / "pytorch" / "examples" / "mlp" / "train.py"
WIDTH = 6


def _job(root: Path, rows: int = 800, hosts: tuple[str, ...] = ("algo-1",), host: str = "algo-1",
         **hyperparameters: str) -> OptMl:
    job = OptMl(root, {"sagemaker_program": "train.py", "epochs": "8", "learning_rate": "0.05", **hyperparameters},
                {"train": {"ContentType": "text/csv"}, "code": {"ContentType": "application/x-python"}},
                hosts=hosts, current_host=host)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(rows, WIDTH))
    labels = (features[:, 0] - features[:, 1] > 0).astype(int)
    np.savetxt(job.channel_dir("train") / "part-0.csv", np.column_stack([labels, features]), delimiter=",",
               fmt="%.8g")
    shutil.copy(EXAMPLE, job.channel_dir("code") / "train.py")
    return job


def _accuracy(model_dir: Path) -> float:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(500, WIDTH))
    labels = features[:, 0] - features[:, 1] > 0
    with torch.inference_mode():
        scores = torch.jit.load(str(model_dir / "model.pt"))(torch.from_numpy(features.astype(np.float32)))
    return float(((scores.numpy() > 0.5) == labels).mean())


def test_the_example_script_trains_in_script_mode_and_checkpoints(docker, image_of, tmp_path):
    job = _job(tmp_path / "job")
    result = train(docker, image_of("pytorch"), job)
    assert result.exit_code == 0, result.logs
    assert "train.py --epochs 8 --learning_rate 0.05" in result.logs and "epoch 7: train_loss=" in result.logs
    assert json.loads((job.model_dir / "pytorch-meta.json").read_text())["num_features"] == WIDTH
    assert (job.root / "checkpoints" / "mlp-checkpoint.pt").is_file()
    assert _accuracy(job.model_dir) > 0.95


def test_two_hosts_train_with_torchrun_as_well_as_one(docker, image_of, tmp_path):
    hosts = ("algo-1", "algo-2")
    jobs = [_job(tmp_path / host, hosts=hosts, host=host, sagemaker_torch_distributed_enabled="true")
            for host in hosts]
    results = train_cluster(docker, image_of("pytorch"), jobs, timeout=300)
    assert [r.exit_code for r in results] == [0, 0], "\n".join(r.logs for r in results)
    launch = "torchrun --nnodes 2 --nproc_per_node 1 --master_addr algo-1 --master_port 7777 --node_rank 1"
    assert launch in results[1].logs
    single = _job(tmp_path / "single")
    assert train(docker, image_of("pytorch"), single).exit_code == 0
    # Each host trains on half the rows per epoch with averaged gradients: within 3 points of one host.
    assert abs(_accuracy(jobs[0].model_dir) - _accuracy(single.model_dir)) < 0.03
    assert _accuracy(jobs[0].model_dir) > 0.95


def test_a_host_killed_mid_run_fails_the_other(docker, image_of, tmp_path):
    """Killed while joining or training (timing on a loaded machine): either way the other fails within the
    example's 60 s collective timeout, with a failure file and no model."""
    hosts = ("algo-1", "algo-2")
    jobs = [_job(tmp_path / host, rows=20000, hosts=hosts, host=host, epochs="200",
                 sagemaker_torch_distributed_enabled="true") for host in hosts]
    results = train_cluster(docker, image_of("pytorch"), jobs, timeout=300, kill_after={"algo-2": 25})
    leader = results[0]
    assert leader.exit_code != 0, leader.logs
    assert leader.opt_ml.failure, leader.logs
    assert not (jobs[0].model_dir / "model.pt").exists()
