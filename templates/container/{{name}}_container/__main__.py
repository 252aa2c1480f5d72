"""Entry point of the {{name}} image: ``docker run IMAGE train|serve``."""

import sys

from serving_common.cli import Container, main

from .handler import ModelHandler
from .train import HYPERPARAMETERS, train

CONTAINER = Container("{{name}}", ModelHandler, train, HYPERPARAMETERS)

if __name__ == "__main__":
    sys.exit(main(CONTAINER))
