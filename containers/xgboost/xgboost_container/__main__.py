"""Entry point of the XGBoost image: ``docker run IMAGE train|serve``."""

import sys

from serving_common.cli import Container, main

from .handler import XGBoostHandler
from .hyperparameters import HYPERPARAMETERS
from .train import train

CONTAINER = Container("xgboost", XGBoostHandler, train, HYPERPARAMETERS, multi_model=True)

if __name__ == "__main__":
    sys.exit(main(CONTAINER))
