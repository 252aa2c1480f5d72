"""The container entry point: serve | train | hyperparameters, and the usage error."""

from __future__ import annotations

import json
import sys

import pytest

from serving_common.cli import Container, main
from serving_common.handler import Handler
from serving_common.training.harness import TrainingJob
from serving_common.training.hyperparameters import Hyperparameter


def train(job: TrainingJob) -> None:
    (job.model_dir / "model.json").write_text(json.dumps(job.hyperparameters))


CONTAINER = Container(
    name="demo", handler_factory=Handler, train_fn=train,
    hyperparameters=(Hyperparameter("depth", int, 3, "tree depth"), Hyperparameter("eta", float, 0.3, "step")),
)


@pytest.mark.parametrize("argv", [[], ["bogus"], ["--help"]])
def test_usage_error_exits_2(capsys, argv):
    assert main(CONTAINER, argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == "usage: demo serve | train | hyperparameters"
    assert captured.out == ""


def test_argv_defaults_to_sys_argv(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["demo", "hyperparameters"])
    assert main(CONTAINER) == 0
    assert "`depth`" in capsys.readouterr().out


def test_hyperparameters_prints_the_table(capsys):
    assert main(CONTAINER, ["hyperparameters"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "| name | type | default | help |",
        "|---|---|---|---|",
        "| `depth` | int | 3 | tree depth |",
        "| `eta` | float | 0.3 | step |",
    ]


def test_train_runs_the_harness(opt_ml, monkeypatch):
    base = opt_ml(hyperparameters={"depth": '"6"'})
    monkeypatch.setenv("SMKIT_OPT_ML", str(base))
    assert main(CONTAINER, ["train"]) == 0
    assert json.loads((base / "model" / "model.json").read_text()) == {"depth": 6, "eta": 0.3}


def test_train_failure_exits_1_with_a_failure_file(opt_ml, monkeypatch):
    base = opt_ml(hyperparameters={"depth": "deep"})
    monkeypatch.setenv("SMKIT_OPT_ML", str(base))
    assert main(CONTAINER, ["train"]) == 1
    assert "depth='deep' is not a valid int" in (base / "output" / "failure").read_text()


def test_train_without_training_exits_2(capsys):
    serving_only = Container(name="serve-only", handler_factory=Handler)
    assert main(serving_only, ["train"]) == 2
    assert "serve-only has no training" in capsys.readouterr().err


def test_serve_reads_the_environment(monkeypatch):
    monkeypatch.setenv("SAGEMAKER_MULTI_MODEL", "true")  # refused before any server starts
    with pytest.raises(SystemExit) as caught:
        main(CONTAINER, ["serve"])
    assert caught.value.code == 2


def test_serve_passes_the_multi_model_opt_in(monkeypatch):
    from serving_common import server

    calls = []
    monkeypatch.setattr(server, "serve", lambda factory, **options: calls.append((factory, options)))
    assert main(CONTAINER, ["serve"]) == 0
    assert main(Container(name="many", handler_factory=Handler, multi_model=True), ["serve"]) == 0
    assert calls == [(Handler, {"multi_model": False}), (Handler, {"multi_model": True})]
