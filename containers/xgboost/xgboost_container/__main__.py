"""Entry point of the XGBoost image: ``docker run IMAGE train|serve``."""

import logging
import os
import sys

from serving_common.cli import Container, main

from .handler import XGBoostHandler
from .hyperparameters import HYPERPARAMETERS
from .train import train

CONTAINER = Container("xgboost", XGBoostHandler, train, HYPERPARAMETERS, multi_model=True)

if __name__ == "__main__":
    code = main(CONTAINER)
    # Everything is written (model or failure file): leave now. After a failed multi-host job, XGBoost's
    # native tracker and communicator would otherwise wait at interpreter teardown for hosts that are gone.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
