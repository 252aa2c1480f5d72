"""``train`` in the PyTorch image without a script: the example MLP (examples/mlp/train.py) on the job's
channels, in-process, with the declared hyperparameters below.

A job that names a script (``sagemaker_program``: script mode, what researchers use) never gets here:
serving_common.training's harness runs the user's script instead (``torchrun`` for torch_distributed).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from serving_common.training.harness import TrainingJob
from serving_common.training.hyperparameters import Hyperparameter

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mlp" / "train.py"

HYPERPARAMETERS = (
    Hyperparameter("epochs", int, 20, "passes over the training data"),
    Hyperparameter("hidden", int, 64, "units of the hidden layer"),
    Hyperparameter("learning_rate", float, 0.01, "Adam's learning rate"),
    Hyperparameter("batch_size", int, 256, "rows per optimisation step"),
    Hyperparameter("seed", int, 0, "random seed (initial weights, batch order)"),
)


def example_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlp_example_train", EXAMPLE)
    assert spec is not None and spec.loader is not None, EXAMPLE
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(job: TrainingJob) -> None:
    argv = ["--model-dir", str(job.model_dir), "--train", str(job.env.channel("train").path)]
    for channel in ("validation", "features"):
        if channel in job.env.channels:
            argv += [f"--{channel}", str(job.env.channels[channel].path)]
    if job.checkpoint_dir.is_dir():
        argv += ["--checkpoint-dir", str(job.checkpoint_dir)]
    for name, value in job.hyperparameters.items():
        argv += [f"--{name}", str(value)]
    example_script().main(argv)
