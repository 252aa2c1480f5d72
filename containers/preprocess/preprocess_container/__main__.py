"""Entry point of the preprocess image: ``docker run IMAGE train|serve``."""

import sys

from serving_common.cli import Container, main

from .handler import PreprocessHandler
from .train import HYPERPARAMETERS, train

CONTAINER = Container("preprocess", PreprocessHandler, train, HYPERPARAMETERS)

if __name__ == "__main__":
    sys.exit(main(CONTAINER))
