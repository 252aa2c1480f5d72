"""The process every server of ours runs: gunicorn as the process manager, uvicorn (uvloop + httptools)
workers running the ASGI app.

Why not flask under gunicorn's sync workers: they parse HTTP in Python and close the connection after every
request: 0.75 ms CPU per request against this stack's 0.28 ms with an empty handler (bench/http_stack.py
measures both side by side), which alone would cap a 2-vCPU instance below the targets. gunicorn still
does what it does well: pre-forking, restarting dead workers, dropping workers to an unprivileged user,
graceful SIGTERM.

This module is what the model server (``server``) and the pipeline front (``pipeline``) share; it imports
neither the app, multi-model nor script mode, so the front's workers load none of them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import pwd
import socket
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from .logs import LOG_FORMAT, OneLineFormatter
from .protocol import BoundedHttpToolsProtocol
from .settings import WORKER_INDEX

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
