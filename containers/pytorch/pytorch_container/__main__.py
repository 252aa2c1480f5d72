"""Entry point of the PyTorch image: ``docker run IMAGE train|serve``."""

import sys

from serving_common.cli import Container, main

from .handler import PyTorchHandler
from .train import HYPERPARAMETERS, train

CONTAINER = Container("pytorch", PyTorchHandler, train, HYPERPARAMETERS, multi_model=True)

if __name__ == "__main__":
    sys.exit(main(CONTAINER))
