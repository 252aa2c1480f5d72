"""The container's entry point: ``docker run IMAGE train`` or ``docker run IMAGE serve``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .handler import Handler
from .training.harness import TrainFn, run
from .training.hyperparameters import Hyperparameter, describe


@dataclass(frozen=True)
class Container:
    """What a framework container plugs into the shared core: its handler and its training function."""

    name: str
    handler_factory: Callable[[], Handler]
    train_fn: TrainFn | None = None
    hyperparameters: Sequence[Hyperparameter] = ()
    #: serves multi-model endpoints (SAGEMAKER_MULTI_MODEL=true); other containers refuse to start so.
    multi_model: bool = False
    #: ``train`` with ``sagemaker_program`` runs the user's script (script mode). False only for a container
    #: that gives the hyperparameter its own meaning (preprocess: the feature-code module).
    runs_user_scripts: bool = True


USAGE = "usage: {name} serve | train | hyperparameters"


def main(container: Container, argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else ""
    if command == "serve":
        from .server import serve  # imported here: training needs none of the HTTP stack

        serve(container.handler_factory, multi_model=container.multi_model)
        return 0
    if command == "train":
        if container.train_fn is None:
            print(f"{container.name} has no training; it only serves", file=sys.stderr)
            return 2
        return run(container.train_fn, container.hyperparameters, user_scripts=container.runs_user_scripts)
    if command == "hyperparameters":
        print(describe(container.hyperparameters))
        return 0
    print(USAGE.format(name=container.name), file=sys.stderr)
    return 2
