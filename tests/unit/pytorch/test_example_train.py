"""The example training script (containers/pytorch/examples/mlp/train.py), run as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[3] / "containers" / "pytorch" / "examples" / "mlp" / "train.py"
WIDTH = 6


def write_labelled_csv(folder: Path, rows: int, seed: int, files: int = 1) -> np.ndarray:
    """Label-first CSV as the preprocess batch transform writes it (split over ``files`` files)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, WIDTH))
    labels = (features[:, 0] - features[:, 1] > 0).astype(int)
    table = np.column_stack([labels, features])
    folder.mkdir(parents=True, exist_ok=True)
    for index, part in enumerate(np.array_split(table, files)):
        np.savetxt(folder / f"part-{index}.csv", part, delimiter=",", fmt="%.10g")
    (folder / "_SUCCESS").write_text("")
    return table


def run_script(*args: str, env: dict[str, str] | None = None, launcher: list[str] | None = None,
               timeout: int = 120) -> subprocess.CompletedProcess:
    command = [*(launcher or [sys.executable]), str(SCRIPT), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def accuracy(model_dir: Path, table: np.ndarray) -> float:
    model = torch.jit.load(str(model_dir / "model.pt"))
    with torch.inference_mode():
        scores = model(torch.from_numpy(table[:, 1:].astype(np.float32))).numpy()
    return float(((scores > 0.5) == table[:, 0]).mean())


def test_trains_on_label_first_csv_and_saves_torchscript_with_its_width(tmp_path):
    write_labelled_csv(tmp_path / "train", 800, seed=1, files=2)
    held_out = write_labelled_csv(tmp_path / "validation", 300, seed=2)
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "features.json").write_text('{"fingerprint": "abc123"}')
    env = {"SM_MODEL_DIR": str(tmp_path / "model"), "SM_CHANNEL_TRAIN": str(tmp_path / "train"),
           "SM_CHANNEL_VALIDATION": str(tmp_path / "validation"), "SM_CHANNEL_FEATURES": str(tmp_path / "features")}
    result = run_script("--epochs", "15", "--learning_rate", "0.05", env=env)
    assert result.returncode == 0, result.stderr
    assert "epoch 14: train_loss=" in result.stdout and "validation_loss=" in result.stdout
    meta = json.loads((tmp_path / "model" / "pytorch-meta.json").read_text())
    assert meta["num_features"] == WIDTH and meta["features_fingerprint"] == "abc123"
    assert accuracy(tmp_path / "model", held_out) > 0.9


def test_resumes_from_the_checkpoint_to_the_same_model(tmp_path):
    write_labelled_csv(tmp_path / "train", 400, seed=3)
    common = ["--train", str(tmp_path / "train"), "--hidden", "8"]
    straight = run_script(*common, "--epochs", "6", "--model-dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    checkpoints = ["--checkpoint-dir", str(tmp_path / "checkpoints")]
    first = run_script(*common, *checkpoints, "--epochs", "3", "--model-dir", str(tmp_path / "first"))
    assert first.returncode == 0, first.stderr
    resumed = run_script(*common, *checkpoints, "--epochs", "6", "--model-dir", str(tmp_path / "resumed"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and "after epoch 2" in resumed.stdout
    assert "epoch 0:" not in resumed.stdout and "epoch 5:" in resumed.stdout
    rows = torch.from_numpy(np.random.default_rng(0).normal(size=(50, WIDTH)).astype(np.float32))
    expected = torch.jit.load(str(tmp_path / "straight" / "model.pt"))(rows)
    # Same seed and per-epoch batch order: stopping and resuming reaches the very same weights.
    assert torch.equal(torch.jit.load(str(tmp_path / "resumed" / "model.pt"))(rows), expected)


def test_refuses_a_checkpoint_of_another_width(tmp_path):
    write_labelled_csv(tmp_path / "train", 100, seed=4)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    torch.save({"epoch": 0, "num_features": WIDTH + 1, "model": {}, "optimizer": {}},
               checkpoints / "mlp-checkpoint.pt")
    result = run_script("--train", str(tmp_path / "train"), "--model-dir", str(tmp_path / "m"),
                        "--checkpoint-dir", str(checkpoints))
    assert result.returncode != 0 and f"is for {WIDTH + 1} features, the data has {WIDTH}" in result.stderr


def test_missing_values_fail_clearly(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "part.csv").write_text("1,0.5,nan\n0,0.1,0.2\n")
    result = run_script("--train", str(tmp_path / "train"), "--model-dir", str(tmp_path / "m"))
    assert result.returncode != 0 and "missing or non-finite values" in result.stderr


def test_ddp_with_two_processes_learns_as_well_as_one(tmp_path):
    """torchrun --nproc-per-node 2 (gloo): each process takes half the rows; rank 0 writes the model."""
    write_labelled_csv(tmp_path / "train", 800, seed=5)
    held_out = write_labelled_csv(tmp_path / "held_out", 300, seed=6)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    args = ["--train", str(tmp_path / "train"), "--epochs", "15", "--learning_rate", "0.05"]
    ddp = run_script(*args, "--model-dir", str(tmp_path / "ddp"), launcher=torchrun)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = run_script(*args, "--model-dir", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr
    assert ddp.stdout.count("epoch 14:") == 1  # only rank 0 reports and saves
    assert accuracy(tmp_path / "ddp", held_out) > 0.9
    assert abs(accuracy(tmp_path / "ddp", held_out) - accuracy(tmp_path / "single", held_out)) < 0.05


@pytest.mark.parametrize("missing", ["--train", "--model-dir"])
def test_needs_the_train_channel_and_model_dir(tmp_path, missing):
    args = {"--train": str(tmp_path), "--model-dir": str(tmp_path / "m")}
    del args[missing]
    result = run_script(*[item for pair in args.items() for item in pair],
                        env={"SM_CHANNEL_TRAIN": "", "SM_MODEL_DIR": ""})
    assert result.returncode == 2 and "required" in result.stderr
