"""The front's process: gunicorn + uvicorn workers, configured from the environment.

``python -m serving_common.pipeline`` runs :func:`main`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from ..logs import configure_logging
from ..settings import PipelineConfig, SettingsError
from ..workers import ModelServer, Worker, account, base_options
from .front import PipelineApp

log = logging.getLogger("serving_common.pipeline")

def gunicorn_options(config: PipelineConfig) -> dict[str, Any]:
    # The front reads no model and no file: its workers need no privileges at all.
    return base_options(port=config.port, workers=config.workers, worker_class=f"{Worker.__module__}.Worker",
                        heartbeat_s=int(config.timeout_s) + 30, log_level=config.log_level,
                        proc_name="pipeline-front", identity=account(config.worker_user))


def main() -> int:
    try:
        config = PipelineConfig.from_env()
    except SettingsError as exc:
        print(f"pipeline front: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    log.info("pipeline front on port %d with %d worker(s): %s", config.port, config.workers,
             " -> ".join(stage.label for stage in config.stages))
    ModelServer(PipelineApp(config), gunicorn_options(config)).run()
    return 0
