"""``serve``: gunicorn as the process manager, uvicorn (uvloop + httptools) workers running the ASGI app.

Why not flask under gunicorn's sync workers: they parse HTTP in Python and close the connection after every
request: 0.75 ms CPU per request against this stack's 0.28 ms with an empty handler (bench/http_stack.py
measures both side by side), which alone would cap a 2-vCPU instance below the targets. gunicorn still
does what it does well: pre-forking, restarting dead workers, dropping workers to an unprivileged user,
graceful SIGTERM.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import pwd
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from .app import InferenceApp
from .handler import Handler
from .logs import LOG_FORMAT, OneLineFormatter, configure_logging
from .multi_model import MultiModelApp
from .protocol import BoundedHttpToolsProtocol
from .settings import WORKER_INDEX, Settings

log = logging.getLogger("serving_common")

# SageMaker sends SIGKILL 30 s after SIGTERM: drain in-flight requests well before that.
GRACEFUL_TIMEOUT_S = 20


class DrainingServer(Server):
    """uvicorn's server, which on shutdown first accepts the connections waiting in the listening socket's
    backlog, so their requests are answered like those in progress instead of reset when the socket closes
    (uvicorn closes it first). Connections made after that are refused."""

    MAX_DRAINED = 1024

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        factory = functools.partial(self.config.http_protocol_class, config=self.config,
                                    server_state=self.server_state, app_state=self.lifespan.state)
        drained = 0
        for listening in sockets or []:
            with suppress(OSError):
                listening.setblocking(False)
                while drained < self.MAX_DRAINED:
                    try:
                        connection, _ = listening.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    drained += 1
                    await loop.connect_accepted_socket(factory, connection)
        if drained:
            log.info("accepted %d waiting connection(s) before shutting down", drained)
        await super().shutdown(sockets)


class Worker(UvicornWorker):
    """uvicorn worker: uvloop, httptools with bounded heads and JSON protocol errors (``protocol``),
    lifespan required (a failed model load fails the boot), a shutdown that answers what has arrived."""

    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": BoundedHttpToolsProtocol,
        "lifespan": "on",
        "access_log": False,
        "server_header": False,
        "date_header": False,
    }

    async def _serve(self) -> None:  # UvicornWorker._serve, with DrainingServer
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def init_process(self) -> None:
        # Which worker this is, 0 to workers - 1 (a replacement takes the next number): a container may
        # spread its workers over devices with it (PyTorch: worker index modulo GPU count).
        os.environ[WORKER_INDEX] = str(self.age - 1)
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        if hasattr(self.wsgi, "heartbeat"):  # multi-model: a long start-up load must not look like a hang
            self.wsgi.heartbeat = self.notify


def worker_identity(settings: Settings) -> tuple[int, int] | None:
    """(uid, gid) that request workers switch to: only when started as root and the account exists."""
    return account(settings.worker_user)


def account(user: str | None) -> tuple[int, int] | None:
    """(uid, gid) of ``user`` when this process runs as root (so it can switch); else None."""
    if os.geteuid() != 0 or not user:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        log.warning("worker user %r does not exist: workers keep running as root", user)
        return None
    return entry.pw_uid, entry.pw_gid


def base_options(*, port: int, workers: int, worker_class: str, heartbeat_s: int, log_level: str,
                 proc_name: str, identity: tuple[int, int] | None) -> dict[str, Any]:
    """gunicorn settings every server of ours shares (model servers and the pipeline front)."""
    options: dict[str, Any] = {
        "bind": [f"0.0.0.0:{port}"],
        "workers": workers,
        "worker_class": worker_class,
        "timeout": heartbeat_s,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "keepalive": 75,  # longer than the idle timeout of SageMaker's (and most) load balancers
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": log_level.lower(),
        "logconfig_dict": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"line": {"()": OneLineFormatter, "fmt": LOG_FORMAT}},
            "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "line",
                                    "stream": "ext://sys.stdout"}},
            "root": {"handlers": ["stdout"], "level": log_level},
            "loggers": {
                "gunicorn.error": {"handlers": ["stdout"], "level": log_level, "propagate": False},
                "gunicorn.access": {"handlers": ["stdout"], "level": "WARNING", "propagate": False},
            },
        },
        "proc_name": proc_name,
        "control_socket_disable": True,  # it would write a socket file: the root is read-only
    }
    if identity:
        options["user"], options["group"] = identity
    return options


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    # The heartbeat only catches hung workers; the per-request limit is enforced by the app.
    return base_options(port=settings.port, workers=settings.workers, worker_class=f"{__name__}.Worker",
                        heartbeat_s=settings.timeout_s + 30, log_level=settings.log_level,
                        proc_name="model-server", identity=worker_identity(settings))


class ModelServer(BaseApplication):
    """gunicorn serving an ASGI app, configured from code: no config file to find on a read-only root."""

    def __init__(self, app: Callable[..., Any], options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self) -> Callable[..., Any]:
        return self.application


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
