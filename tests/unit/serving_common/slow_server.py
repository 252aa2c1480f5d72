"""A real model server (gunicorn + our uvicorn workers) on loopback for tests of the HTTP layer: its handler
answers the body's length after ``SLOW_SERVER_DELAY_S`` seconds of work that holds the GIL (as parsing a
large CSV does), so requests queue and the event loop is starved as in a real image.

    python -m tests.unit.serving_common.slow_server PORT MODEL_DIR
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from serving_common.app import InferenceApp
from serving_common.content_types import CSV, MediaType
from serving_common.handler import Handler, RequestContext
from serving_common.logs import configure_logging
from serving_common.server import ModelServer, gunicorn_options
from serving_common.settings import Settings

JSON_WORK = b"[" + b"1.5," * 200_000 + b"1]"


class SlowEchoHandler(Handler):
    content_types = (CSV,)
    accepts = (CSV,)
    default_accept = CSV

    def load(self, model_dir: Path) -> float:
        return float(os.environ.get("SLOW_SERVER_DELAY_S", "0"))

    def decode(self, body: bytes, media_type: MediaType, context: RequestContext) -> bytes:
        return body

    def predict(self, model: float, data: bytes, context: RequestContext) -> bytes:
        end = time.perf_counter() + model
        while time.perf_counter() < end:
            orjson.loads(JSON_WORK)  # C code that keeps the GIL for a few milliseconds
        return str(len(data)).encode()

    def encode(self, prediction: Any, accept: str, context: RequestContext) -> bytes:
        return prediction


def main(port: str, model_dir: str) -> None:
    settings = Settings.from_env({**os.environ, "SAGEMAKER_BIND_TO_PORT": port, "SM_MODEL_DIR": model_dir})
    configure_logging(settings.log_level)
    ModelServer(InferenceApp(SlowEchoHandler, settings),
                {**gunicorn_options(settings), "bind": [f"127.0.0.1:{settings.port}"]}).run()


if __name__ == "__main__":
    main(*sys.argv[1:])
