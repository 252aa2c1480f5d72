"""``serve``: the model server, a single- or multi-model app in the shared gunicorn + uvicorn process
(``workers``)."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .app import InferenceApp
from .fused import import_runtime
from .handler import Handler
from .logs import configure_logging
from .multi_model import MultiModelApp
from .settings import Settings
from .workers import GRACEFUL_TIMEOUT_S, ModelServer, Worker, account, base_options  # noqa: F401  (re-exported)

log = logging.getLogger("serving_common")

def worker_identity(settings: Settings) -> tuple[int, int] | None:
    """(uid, gid) that request workers switch to: only when started as root and the account exists."""
    return account(settings.worker_user)


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    # The heartbeat only catches hung workers; the per-request limit is enforced by the app.
    return base_options(port=settings.port, workers=settings.workers, worker_class=f"{Worker.__module__}.Worker",
                        heartbeat_s=settings.timeout_s + 30, log_level=settings.log_level,
                        proc_name="model-server", identity=worker_identity(settings))


def registry_dir(identity: tuple[int, int] | None) -> Path:
    """A private folder for the multi-model registry, shared by the workers: on /dev/shm (the root is read-only)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    directory = Path(tempfile.mkdtemp(prefix="smkit-models-", dir=base))
    if identity:
        os.chown(directory, *identity)  # the workers write it once they stopped being root
    return directory


def serve(handler_factory: Callable[[], Handler], settings: Settings | None = None, *,
          multi_model: bool = False) -> None:
    """Run the model server until SIGTERM. Exits non-zero if a worker cannot load the model.

    ``multi_model``: the container supports multi-model endpoints (``cli.Container.multi_model``); only
    then does SAGEMAKER_MULTI_MODEL=true start the server empty, with the ``/models`` management API.
    """
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    if settings.multi_model and not multi_model:
        log.error("SAGEMAKER_MULTI_MODEL=true: this container does not support multi-model endpoints")
        sys.exit(2)
    options = gunicorn_options(settings)
    if not settings.multi_model:
        log.info("serving on port %d with %d workers (model dir %s)", settings.port, settings.workers,
                 settings.model_dir)
        ModelServer(InferenceApp(handler_factory, settings), options).run()
        return
    import_runtime()  # any model may carry a preprocess stage: its code is imported once, shared by the workers
    master = os.getpid()
    state_dir = registry_dir(worker_identity(settings))
    try:
        app = MultiModelApp(handler_factory, settings, state_dir)
        log.info("multi-model endpoint on port %d with %d workers (registry %s)", settings.port,
                 settings.workers, state_dir)
        ModelServer(app, options).run()
    finally:
        if os.getpid() == master:  # workers leave through here too (SystemExit): only the master cleans up
            shutil.rmtree(state_dir, ignore_errors=True)
