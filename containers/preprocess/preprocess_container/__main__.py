"""Entry point of the preprocess image: ``docker run IMAGE train|serve``."""

import sys

from serving_common.cli import Container, main

from .handler import PreprocessHandler
from .train import HYPERPARAMETERS, train

# sagemaker_program names the feature-code module here (user_code.py), not a script to run in its place.
CONTAINER = Container("preprocess", PreprocessHandler, train, HYPERPARAMETERS, runs_user_scripts=False)

if __name__ == "__main__":
    sys.exit(main(CONTAINER))
