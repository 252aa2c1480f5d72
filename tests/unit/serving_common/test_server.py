"""gunicorn configuration built from Settings: bind, workers, timeouts, worker class, user switch."""

from __future__ import annotations

import logging
import os
import pwd
import shutil
from pathlib import Path

import pytest

from serving_common import server
from serving_common.app import InferenceApp
from serving_common.handler import Handler
from serving_common.multi_model import MultiModelApp
from serving_common.protocol import BoundedHttpToolsProtocol
from serving_common.server import ModelServer, Worker, gunicorn_options, serve, worker_identity
from serving_common.settings import Settings


def test_options_follow_the_settings():
    settings = Settings.from_env({"SAGEMAKER_BIND_TO_PORT": "9090", "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
                                  "SAGEMAKER_MODEL_SERVER_TIMEOUT": "45", "SMKIT_LOG_LEVEL": "warning"})
    options = gunicorn_options(settings)
    assert options["bind"] == ["0.0.0.0:9090"]
    assert options["workers"] == 3
    assert options["timeout"] > 45  # the heartbeat must outlive the per-request limit the app enforces
    assert options["graceful_timeout"] < 30  # SageMaker sends SIGKILL 30 s after SIGTERM
    assert options["worker_class"] == "serving_common.workers.Worker"
    assert options["loglevel"] == "warning"
    assert options["logconfig_dict"]["root"]["level"] == "WARNING"
    assert options["accesslog"] is None


def test_default_port_is_8080():
    assert gunicorn_options(Settings.from_env({}))["bind"] == ["0.0.0.0:8080"]


def test_gunicorn_accepts_the_options():
    settings = Settings(port=8123, workers=4, timeout_s=10)
    app = InferenceApp(Handler, settings)
    config = ModelServer(app, gunicorn_options(settings)).cfg
    assert config.bind == ["0.0.0.0:8123"]
    assert config.workers == 4
    assert config.timeout == 40
    assert config.graceful_timeout == server.GRACEFUL_TIMEOUT_S
    assert config.worker_class is Worker
    assert config.proc_name == "model-server"
    assert ModelServer(app, {}).load() is app


def test_worker_runs_uvicorn_with_lifespan_on():
    assert Worker.CONFIG_KWARGS["lifespan"] == "on"  # a failed model load must fail the worker's boot
    assert Worker.CONFIG_KWARGS["loop"] == "uvloop"
    assert Worker.CONFIG_KWARGS["http"] is BoundedHttpToolsProtocol  # httptools, with bounded heads


def test_no_user_switch_when_not_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # cannot stop being root for real inside one process
    settings = Settings(worker_user="nobody")
    assert worker_identity(settings) is None
    options = gunicorn_options(settings)
    assert "user" not in options and "group" not in options


def test_no_user_switch_without_a_worker_user():
    options = gunicorn_options(Settings(worker_user=None))
    assert "user" not in options and "group" not in options


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_root_switches_workers_to_the_worker_user():
    nobody = pwd.getpwnam("nobody")
    options = gunicorn_options(Settings(worker_user="nobody"))
    assert (options["user"], options["group"]) == (nobody.pw_uid, nobody.pw_gid)
    assert worker_identity(Settings(worker_user="nobody")) == (nobody.pw_uid, nobody.pw_gid)


@pytest.mark.skipif(os.geteuid() != 0, reason="the user lookup only happens as root")
def test_missing_worker_user_keeps_root_and_warns(caplog):
    caplog.set_level(logging.WARNING, logger="serving_common")
    assert worker_identity(Settings(worker_user="smkit-no-such-user")) is None
    assert "smkit-no-such-user" in caplog.text


def test_serve_refuses_multi_model():
    with pytest.raises(SystemExit) as caught:
        serve(Handler, Settings(multi_model=True))
    assert caught.value.code == 2


def test_serve_multi_model_when_the_container_opted_in(monkeypatch):
    ran = []

    def run(self):
        ran.append((self.application, self.application.registry.directory))
        assert self.application.registry.directory.is_dir()

    monkeypatch.setattr(ModelServer, "run", run)
    serve(Handler, Settings(multi_model=True, workers=3, mme_memory_budget_mb=64), multi_model=True)
    [(app, directory)] = ran
    assert isinstance(app, MultiModelApp)
    assert app.budget_bytes == 64 * 1024 * 1024
    if os.access("/dev/shm", os.W_OK):
        assert directory.parent == Path("/dev/shm")  # shared by the workers, writable on a read-only root
    assert not directory.exists()  # the master removes the registry when the server stops


def test_serve_single_model_in_a_container_that_could_serve_many(monkeypatch):
    ran = []
    monkeypatch.setattr(ModelServer, "run", lambda self: ran.append(self.application))
    serve(Handler, Settings(multi_model=False), multi_model=True)
    assert type(ran[0]) is InferenceApp


def test_worker_process_leaving_serve_keeps_the_registry(monkeypatch):
    directories = []

    def run(self):  # a forked worker leaves gunicorn's run() with SystemExit in another process
        directories.append(self.application.registry.directory)
        monkeypatch.setattr(os, "getpid", lambda: -1)
        raise SystemExit(0)

    monkeypatch.setattr(ModelServer, "run", run)
    with pytest.raises(SystemExit):
        serve(Handler, Settings(multi_model=True), multi_model=True)
    monkeypatch.undo()
    assert directories[0].is_dir()
    shutil.rmtree(directories[0])
