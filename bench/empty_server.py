"""Our HTTP stack with nothing behind it: ``serving_common``'s gunicorn + uvicorn server and a handler
whose ``predict`` returns its input (the body passes through undecoded), bound to loopback.

    python bench/empty_server.py --port 8123 --workers 2 --model-dir DIR
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from serving_common.app import InferenceApp
from serving_common.content_types import CSV, JSON, MediaType
from serving_common.handler import Handler, RequestContext
from serving_common.logs import configure_logging
from serving_common.server import ModelServer, gunicorn_options
from serving_common.settings import Settings

MODEL_FILE = "empty-model.json"


class EmptyHandler(Handler):
    """Loads a one-file model; ``predict`` returns its input: what remains is the HTTP stack's cost."""

    content_types = (CSV, JSON)
    accepts = (CSV, JSON)
    default_accept = CSV

    def load(self, model_dir: Path) -> str:
        return (model_dir / MODEL_FILE).read_text()

    def decode(self, body: bytes, media_type: MediaType, context: RequestContext) -> bytes:
        return body

    def predict(self, model: Any, data: bytes, context: RequestContext) -> bytes:
        return data

    def encode(self, prediction: bytes, accept: str, context: RequestContext) -> bytes:
        return prediction


def write_model(model_dir: Path) -> Path:
    """Create the empty model in ``model_dir`` (what ``EmptyHandler.load`` reads)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / MODEL_FILE).write_text('{"model": "empty"}\n')
    return model_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = Settings.from_env({**os.environ, "SAGEMAKER_BIND_TO_PORT": str(args.port),
                                  "SAGEMAKER_MODEL_SERVER_WORKERS": str(args.workers),
                                  "SM_MODEL_DIR": str(args.model_dir)})
    configure_logging(settings.log_level)
    # serve() binds 0.0.0.0 as a container must; on the host the benchmark stays on loopback.
    options = {**gunicorn_options(settings), "bind": [f"127.0.0.1:{settings.port}"]}
    ModelServer(InferenceApp(EmptyHandler, settings), options).run()


if __name__ == "__main__":
    main()
