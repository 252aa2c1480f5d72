"""``train`` in the PyTorch image: the example MLP (examples/mlp/train.py) on the job's channels.

INTERIM: the image is meant to run the user's own script (script mode, ``sagemaker_program``) through
serving_common.training's script runner; until that runner lands, ``train`` runs the shipped example
script in-process with the declared hyperparameters below, and refuses a job that names a script of its
own rather than silently training something else.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from serving_common.training.harness import TrainingError, TrainingJob
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
    program = job.env.hyperparameters.get("sagemaker_program")
    if program:
        raise TrainingError(f"sagemaker_program={program}: running your own script needs the script-mode runner, "
                            "which this image does not have yet; it trains only the built-in example MLP")
    argv = ["--model-dir", str(job.model_dir), "--train", str(job.env.channel("train").path)]
    for channel in ("validation", "features"):
        if channel in job.env.channels:
            argv += [f"--{channel}", str(job.env.channels[channel].path)]
    if job.checkpoint_dir.is_dir():
        argv += ["--checkpoint-dir", str(job.checkpoint_dir)]
    for name, value in job.hyperparameters.items():
        argv += [f"--{name}", str(value)]
    example_script().main(argv)
