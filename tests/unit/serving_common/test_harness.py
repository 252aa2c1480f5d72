"""The training harness on real /opt/ml-like trees: publishing the model, the failure file, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving_common.training.harness import TrainingError, TrainingJob, failure_reason, run
from serving_common.training.hyperparameters import REQUIRED, Hyperparameter

DECLARED = (Hyperparameter("rounds", int, REQUIRED, "rounds", minimum=1), Hyperparameter("scale", float, 1.0))


def model_files(base: Path) -> list[str]:
    model = base / "model"
    return sorted(str(p.relative_to(model)) for p in model.rglob("*")) if model.exists() else []


def summing_train(job: TrainingJob) -> None:
    """Reads the train channel's CSV, writes a model file and a subfolder, an extra output and a checkpoint."""
    total = sum(float(cell) for path in job.env.channel("train").files()
                for line in path.read_text().splitlines() for cell in line.split(","))
    (job.model_dir / "model.json").write_text(json.dumps({"sum": total * job.hyperparameters["scale"],
                                                          "rounds": job.hyperparameters["rounds"]}))
    (job.model_dir / "code").mkdir()
    (job.model_dir / "code" / "inference.py").write_text("# serving script\n")
    job.output_data_dir.mkdir(parents=True, exist_ok=True)
    (job.output_data_dir / "report.txt").write_text("ok")
    assert job.checkpoint_dir == job.env.base / "checkpoints"


def test_success_publishes_the_model_and_removes_staging(opt_ml):
    base = opt_ml(hyperparameters={"rounds": "3", "scale": '"2"', "sagemaker_region": '"eu-west-1"'},
                  channels={"train": {"a.csv": "1,2\n3,4\n", "b/c.csv": "10"}})
    assert run(summing_train, DECLARED, base=base) == 0
    assert model_files(base) == ["code", "code/inference.py", "model.json"]
    assert json.loads((base / "model" / "model.json").read_text()) == {"sum": 40.0, "rounds": 3}
    assert not (base / "model" / ".staging-algo-1").exists()
    assert not (base / "output" / "failure").exists()
    assert (base / "output" / "data" / "report.txt").read_text() == "ok"


def test_the_staging_folder_is_inside_model_dir_while_training(opt_ml):
    base = opt_ml(hyperparameters={"rounds": "1"})
    seen = {}

    def train(job: TrainingJob) -> None:
        seen["dir"] = job.model_dir
        seen["published_early"] = model_files(base)
        (job.model_dir / "m.bin").write_bytes(b"\x00\x01")

    assert run(train, DECLARED, base=base) == 0
    assert seen["dir"] == base / "model" / ".staging-algo-1"
    assert seen["published_early"] == [".staging-algo-1"]
    assert (base / "model" / "m.bin").read_bytes() == b"\x00\x01"


def test_previous_outputs_are_replaced(opt_ml):
    base = opt_ml(hyperparameters={"rounds": "1"})
    (base / "model" / "code").mkdir(parents=True)
    (base / "model" / "code" / "old.py").write_text("old")
    (base / "model" / "model.json").write_text("old")
    (base / "model" / ".staging-algo-1").mkdir()
    (base / "model" / ".staging-algo-1" / "leftover").write_text("from a crashed run")

    def train(job: TrainingJob) -> None:
        assert list(job.model_dir.iterdir()) == []  # a clean staging folder
        (job.model_dir / "model.json").write_text("new")
        (job.model_dir / "code").mkdir()
        (job.model_dir / "code" / "new.py").write_text("new")

    assert run(train, DECLARED, base=base) == 0
    assert model_files(base) == ["code", "code/new.py", "model.json"]
    assert (base / "model" / "model.json").read_text() == "new"


def test_failure_writes_the_reason_returns_1_and_leaves_no_model(opt_ml, capsys):
    base = opt_ml(hyperparameters={"rounds": "2"}, channels={"train": {"a.csv": "1"}})

    def train(job: TrainingJob) -> None:
        (job.model_dir / "half-written.bin").write_bytes(b"\x00" * 10)
        raise RuntimeError("CUDA out of memory")

    assert run(train, DECLARED, base=base) == 1
    assert (base / "output" / "failure").read_text() == "AlgorithmError: RuntimeError: CUDA out of memory\n"
    assert model_files(base) == []
    assert "Traceback" in capsys.readouterr().out  # unexpected errors keep their traceback in the log


def test_training_error_is_reported_as_is(opt_ml, capsys):
    base = opt_ml(hyperparameters={"rounds": "2"})

    def train(job: TrainingJob) -> None:
        raise TrainingError("the train channel holds no rows")

    assert run(train, DECLARED, base=base) == 1
    assert (base / "output" / "failure").read_text() == "TrainingError: the train channel holds no rows\n"
    output = capsys.readouterr().out
    assert "TRAINING FAILED" in output and "Traceback" not in output


def test_missing_channel_fails_with_its_name(opt_ml):
    base = opt_ml(hyperparameters={"rounds": "2"}, channels={"validation": {"v.csv": "1"}})
    assert run(summing_train, DECLARED, base=base) == 1
    reason = (base / "output" / "failure").read_text()
    assert reason.startswith("ConfigError: ")
    assert "'train' channel" in reason and "validation" in reason


@pytest.mark.parametrize(("hyperparameters", "fragment"), [
    ({"rounds": "0"}, "rounds=0 must be >= 1"),
    ({"rounds": "many"}, "rounds='many' is not a valid int"),
    ({"rounds": "1", "max_depth": "3"}, "unknown hyperparameter 'max_depth'"),
    ({}, "rounds is required"),
])
def test_bad_hyperparameter_fails_before_any_training_work(opt_ml, hyperparameters, fragment):
    base = opt_ml(hyperparameters=hyperparameters, channels={"train": {"a.csv": "1"}})
    calls = []
    assert run(calls.append, DECLARED, base=base) == 1
    assert calls == []
    reason = (base / "output" / "failure").read_text()
    assert reason.startswith("HyperparameterError: ")
    assert fragment in reason
    assert not (base / "model").exists()


def test_unreadable_config_fails_with_a_reason(opt_ml):
    base = opt_ml()
    (base / "input" / "config" / "resourceconfig.json").write_text("{oops")
    assert run(summing_train, DECLARED, base=base) == 1
    assert "resourceconfig.json is not valid JSON" in (base / "output" / "failure").read_text()


def test_failure_reason_is_cut_to_1024_characters(opt_ml):
    base = opt_ml(hyperparameters={"rounds": "1"})

    def train(job: TrainingJob) -> None:
        raise TrainingError("x" * 5000)

    assert run(train, DECLARED, base=base) == 1
    text = (base / "output" / "failure").read_text()
    assert len(text) == 1025 and text.endswith("\n")


def test_base_from_smkit_opt_ml(opt_ml, monkeypatch):
    base = opt_ml(hyperparameters={"rounds": "4"}, channels={"train": {"a.csv": "0.5"}})
    monkeypatch.setenv("SMKIT_OPT_ML", str(base))
    assert run(summing_train, DECLARED) == 0
    assert json.loads((base / "model" / "model.json").read_text()) == {"sum": 0.5, "rounds": 4}


def test_a_bad_variable_fails_the_job_in_the_failure_file_before_training(opt_ml, monkeypatch):
    base = opt_ml(hyperparameters={"rounds": "4"}, channels={"train": {"a.csv": "0.5"}})
    seen = []
    monkeypatch.setenv("SMKIT_COLLECTIVE_TIMEOUT_S", "soon")
    assert run(lambda job: seen.append(job), DECLARED, base=base) == 1
    assert not seen and model_files(base) == []
    assert (base / "output" / "failure").read_text() == (
        "SettingsError: SMKIT_COLLECTIVE_TIMEOUT_S='soon' is not a whole number of seconds\n")


def test_the_job_receives_its_variables_parsed(opt_ml, monkeypatch):
    base = opt_ml(hyperparameters={"rounds": "4"}, channels={"train": {"a.csv": "0.5"}})
    seen = []
    monkeypatch.setenv("SMKIT_COLLECTIVE_TIMEOUT_S", "25")
    assert run(lambda job: seen.append(job.env.settings.collective_timeout_s), DECLARED, base=base) == 0
    assert seen == [25]


def test_failure_reason_texts():
    assert failure_reason(ValueError("bad")) == "ValueError: bad"
    assert failure_reason(FileNotFoundError("no file")) == "FileNotFoundError: no file"
    assert failure_reason(TrainingError("t")) == "TrainingError: t"
    assert failure_reason(KeyError("k")) == "AlgorithmError: KeyError: 'k'"


def test_sys_exit_inside_training_still_writes_the_failure_and_cleans_up(opt_ml):
    base = opt_ml(hyperparameters={"rounds": "2"}, channels={"train": {"a.csv": "1"}})

    def train(job: TrainingJob) -> None:
        (job.model_dir / "half-written.bin").write_bytes(b"\x00")
        raise SystemExit(3)

    assert run(train, DECLARED, base=base) == 1
    assert "SystemExit" in (base / "output" / "failure").read_text()
    assert model_files(base) == []
    assert not (base / "model" / ".staging-algo-1").exists()


def test_publish_inside_training_moves_the_model_before_training_returns(opt_ml):
    base = opt_ml(hyperparameters={"rounds": "2"}, channels={"train": {"a.csv": "1"}})
    seen = {}

    def train(job: TrainingJob) -> None:
        (job.model_dir / "model.bin").write_bytes(b"\x01")
        job.publish()  # what a multi-host leader does before its last barrier
        seen["after_publish"] = sorted(p.name for p in (base / "model").iterdir())

    assert run(train, DECLARED, base=base) == 0
    assert seen["after_publish"] == ["model.bin"]
    assert model_files(base) == ["model.bin"]


def test_sigterm_outside_a_training_loop_stops_the_job_at_once(opt_ml):
    import os
    import signal

    base = opt_ml(hyperparameters={"rounds": "1"})

    def train(job: TrainingJob) -> None:
        (job.model_dir / "partial").write_text("x")
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("not reached: the signal stops the job")

    assert run(train, DECLARED, base=base) == 1
    assert (base / "output" / "failure").read_text().startswith("Stopped: the job received SIGTERM")
    assert model_files(base) == []


def test_sigterm_in_a_deferred_section_waits_for_the_loops_safe_point(opt_ml):
    import os
    import signal

    from serving_common.training.stop import STOP

    base = opt_ml(hyperparameters={"rounds": "1"})
    seen = []

    def train(job: TrainingJob) -> None:
        with STOP.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            seen.append(STOP.received)  # still running: the loop decides when to stop

    assert run(train, DECLARED, base=base) == 1
    assert seen == ["SIGTERM"]
    assert "Stopped" in (base / "output" / "failure").read_text()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the harness put the old handler back
