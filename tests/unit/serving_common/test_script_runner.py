"""Script mode on real /opt/ml trees and real child processes: code fetch, the script's view, failures, signals."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from serving_common.settings import TrainingSettings
from serving_common.training.harness import run
from serving_common.training.hyperparameters import Hyperparameter
from serving_common.training.script_environment import ScriptEnvironment
from serving_common.training.script_runner import (
    ScriptError,
    build_command,
    failure_message,
    requested_program,
    run_script,
)
from serving_common.training.user_code import UserCodeError, fetch, pip_command

# Writes what it sees (argv, cwd, SM_* variables, sys.path) to the model folder.
ECHO_SCRIPT = """
import json, os, sys
import helper  # next to the script: /opt/ml/code is on sys.path
model_dir = os.environ["SM_MODEL_DIR"]
rows = open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "data.csv")).read().split()
json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "rows": rows, "helper": helper.VALUE,
           "env": {k: v for k, v in os.environ.items() if k.startswith("SM_")}},
          open(os.path.join(model_dir, "seen.json"), "w"))
"""


def _job(opt_ml, code: dict[str, str] | None = None, hyperparameters: dict | None = None,
         submit: str | None = None) -> Path:
    hps = {"sagemaker_program": json.dumps("train.py"), "epochs": "3", "learning-rate": "0.1",
           **(hyperparameters or {})}
    if submit is not None:
        hps["sagemaker_submit_directory"] = json.dumps(submit)
    base = opt_ml(hyperparameters=hps, channels={"train": {"data.csv": "1\n2\n"}},
                  inputdataconfig={"train": {"ContentType": "text/csv"}},
                  resourceconfig={"current_host": "algo-1", "hosts": ["algo-1"]})
    (base / "model").mkdir(exist_ok=True)
    if code is not None:
        (base / "code").mkdir()
        for name, text in code.items():
            (base / "code" / name).write_text(text)
    return base


def _failure(base: Path) -> str:
    return (base / "output" / "failure").read_text()


def test_the_script_sees_sagemaker_trainings_arguments_and_variables(opt_ml):
    base = _job(opt_ml, {"train.py": ECHO_SCRIPT, "helper.py": "VALUE = 7\n"})
    assert run_script(base) == 0
    seen = json.loads((base / "model" / "seen.json").read_text())
    assert seen["argv"] == ["--epochs", "3", "--learning-rate", "0.1"]
    assert seen["cwd"] == str(base / "code") and seen["helper"] == 7 and seen["rows"] == ["1", "2"]
    assert seen["env"]["SM_HP_LEARNING-RATE"] == "0.1" and seen["env"]["SM_HP_EPOCHS"] == "3"
    assert seen["env"]["SM_CHANNELS"] == '["train"]'
    assert json.loads(seen["env"]["SM_TRAINING_ENV"])["hyperparameters"] == {"epochs": 3, "learning-rate": 0.1}
    assert (base / "output" / "success").exists() and not (base / "output" / "failure").exists()


def test_the_harness_runs_the_script_instead_of_the_built_in_training(opt_ml):
    base = _job(opt_ml, {"train.py": ECHO_SCRIPT, "helper.py": "VALUE = 1\n"})
    called = []
    assert run(called.append, (Hyperparameter("epochs", int, 1),), base=base) == 0
    assert called == [] and (base / "model" / "seen.json").exists()


def test_a_container_that_claims_sagemaker_program_keeps_it(opt_ml):
    base = _job(opt_ml, hyperparameters={"learning-rate": "0.1"})
    called = []
    declared = (Hyperparameter("epochs", int, 1), Hyperparameter("learning-rate", float, 1.0))
    assert run(lambda job: called.append(job.hyperparameters), declared, base=base, user_scripts=False) == 0
    assert called == [{"epochs": 3, "learning-rate": 0.1}]


def test_requested_program_reads_the_hyperparameter_or_the_variable(opt_ml):
    assert requested_program(_job(opt_ml), TrainingSettings()) == "train.py"
    plain = opt_ml(hyperparameters={"epochs": "1"}, name="plain")
    assert requested_program(plain, TrainingSettings()) is None
    assert requested_program(plain, TrainingSettings.from_env({"SAGEMAKER_PROGRAM": "x.py"})) == "x.py"


@pytest.mark.parametrize("exit_code", [1, 3])
def test_a_failing_script_gives_its_exit_code_and_stderr_tail(opt_ml, exit_code):
    script = ("import sys\nprint('noise ' * 400, file=sys.stderr)\n"
              f"raise SystemExit('ValueError: the data has no label column ({exit_code})')\n")
    if exit_code != 1:
        script = f"import sys\nprint('noise ' * 400, file=sys.stderr)\nprint('last words', file=sys.stderr)\n" \
                 f"sys.exit({exit_code})\n"
    base = _job(opt_ml, {"train.py": script})
    assert run_script(base) == 1
    failure = _failure(base)
    assert failure.startswith(f"ExecuteUserScriptError:\nExitCode {exit_code}\n")
    assert ("the data has no label column" if exit_code == 1 else "last words") in failure
    assert 'Command "' in failure and "train.py --epochs 3" in failure and len(failure) <= 1024
    assert not (base / "output" / "success").exists()


def test_a_killed_script_is_named_out_of_memory(opt_ml):
    base = _job(opt_ml, {"train.py": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"})
    assert run_script(base) == 1
    assert "ExitCode 137" in _failure(base) and "OutOfMemory" in _failure(base)


def test_a_failure_file_the_script_wrote_is_kept(opt_ml):
    script = "import os\nopen('/'.join([os.environ['SM_OUTPUT_DIR'], 'failure']), 'w').write('mine')\nexit(2)\n"
    base = _job(opt_ml, {"train.py": script})
    (base / "output").mkdir(parents=True, exist_ok=True)
    assert run_script(base) == 1
    assert _failure(base) == "mine"


def test_a_shell_entry_point_gets_quoted_arguments(opt_ml):
    script = 'printf "%s|" "$@" > "$SM_MODEL_DIR/args"\n'
    base = _job(opt_ml, {"run.sh": script}, {"sagemaker_program": '"run.sh"', "name": '"two words"'})
    assert run_script(base) == 0
    assert (base / "model" / "args").read_text() == "--epochs|3|--learning-rate|0.1|--name|two words|"


def test_a_missing_entry_point_fails_clearly(opt_ml):
    base = _job(opt_ml, {"other.py": "pass\n"})
    assert run_script(base) == 1
    assert "'train.py' is not in the code (found: other.py)" in _failure(base)


def test_unsupported_distribution_fails_instead_of_running_one_process(opt_ml):
    base = _job(opt_ml, {"train.py": ECHO_SCRIPT}, {"sagemaker_mpi_enabled": "true"})
    assert run_script(base) == 1
    assert "'mpi'" in _failure(base) and not (base / "model" / "seen.json").exists()


def test_torch_distributed_without_torchrun_fails_clearly(opt_ml, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    base = _job(opt_ml, {"train.py": ECHO_SCRIPT}, {"sagemaker_torch_distributed_enabled": "true"})
    assert run_script(base) == 1
    assert "torchrun" in _failure(base)


def test_torchrun_command_line_on_each_host(opt_ml):
    hosts = ["algo-1", "algo-2", "algo-3"]
    for rank, host in enumerate(hosts):
        base = opt_ml(hyperparameters={"sagemaker_program": '"ddp.py"', "sagemaker_torch_distributed_enabled": "true",
                                       "epochs": "2"},
                      resourceconfig={"current_host": host, "hosts": hosts}, name=host)
        (base / "code").mkdir()
        for gpus, per_host in ((0, "1"), (4, "4")):
            env = ScriptEnvironment.load(base, TrainingSettings(), num_gpus=gpus)
            assert build_command(env, base / "code") == [
                "torchrun", "--nnodes", "3", "--nproc_per_node", per_host, "--master_addr", "algo-1",
                "--master_port", "7777", "--node_rank", str(rank), "ddp.py", "--epochs", "2"]
    single = opt_ml(hyperparameters={"sagemaker_program": '"ddp.py"', "sagemaker_torch_distributed_enabled": "true"},
                    resourceconfig={"current_host": "algo-1", "hosts": ["algo-1"]}, name="single")
    (single / "code").mkdir()
    assert build_command(ScriptEnvironment.load(single, TrainingSettings(), num_gpus=0), single / "code") == [
        "torchrun", "--nnodes", "1", "--nproc_per_node", "1", "ddp.py"]
    with pytest.raises(ScriptError, match="Python script"):
        env = ScriptEnvironment.load(single, TrainingSettings.from_env({"SAGEMAKER_PROGRAM": "run.sh"}), num_gpus=0)
        build_command(env, single / "code")


def test_failure_message_fits_sagemakers_1024_characters():
    message = failure_message(137, "x" * 5000 + "END", ["python", "train.py", "--a", "b c"])
    assert len(message) <= 1024 and message.endswith('Command "python train.py --a \'b c\'"')
    assert "ExitCode 137" in message and "OutOfMemory" in message and 'END"' in message


# -- SIGTERM (StopTrainingJob, spot interruption) -------------------------------------------------------------

STOPPABLE = """
import os, signal, sys, time
def stop(signum, frame):
    open(os.path.join(os.environ["SM_MODEL_DIR"], "checkpoint"), "w").write("saved")
    print("stopping on SIGTERM", file=sys.stderr)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
open(os.path.join(os.environ["SM_MODEL_DIR"], "started"), "w").write("")
while True:
    time.sleep(0.1)
"""


def test_sigterm_is_passed_to_the_script_and_named_in_the_failure_file(opt_ml):
    base = _job(opt_ml, {"train.py": STOPPABLE})
    runner = subprocess.Popen([sys.executable, "-c", "import sys\nfrom serving_common.training.script_runner "
                               "import run_script\nsys.exit(run_script())"],
                              env={**os.environ, "SMKIT_OPT_ML": str(base)})
    try:
        deadline = time.monotonic() + 30
        while not (base / "model" / "started").exists():
            assert time.monotonic() < deadline and runner.poll() is None, "the script never started"
            time.sleep(0.05)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=30) == 1
    finally:
        runner.kill()
    assert (base / "model" / "checkpoint").read_text() == "saved"
    failure = _failure(base)
    assert "ExitCode 143" in failure and "SIGTERM" in failure and "stopping on SIGTERM" in failure


# -- where the code comes from ----------------------------------------------------------------------------------

def _tarball(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("form", ["folder", "file-url-folder", "tarball", "file-url-tarball"])
def test_submit_directory_forms(tmp_path, form):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("x = 1\n")
    (source / "pkg").mkdir()
    (source / "pkg" / "m.py").write_text("y = 2\n")
    if "tarball" in form:
        uri = str(_tarball(tmp_path / "sourcedir.tar.gz", {"train.py": "x = 1\n", "pkg/m.py": "y = 2\n"}))
    else:
        uri = str(source)
    if form.startswith("file-url"):
        uri = "file://" + uri
    code = tmp_path / "opt_ml" / "code"
    fetch(code, uri, None)
    assert (code / "train.py").read_text() == "x = 1\n" and (code / "pkg" / "m.py").read_text() == "y = 2\n"


def test_code_channel_with_the_sdks_archive_or_plain_files(tmp_path):
    channel = tmp_path / "channel"
    channel.mkdir()
    _tarball(channel / "sourcedir.tar.gz", {"train.py": "x = 1\n"})
    fetch(tmp_path / "a", "s3://bucket/job/source/sourcedir.tar.gz", channel)
    assert (tmp_path / "a" / "train.py").exists()
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "train.py").write_text("x = 2\n")
    (plain / "util.py").write_text("")
    fetch(tmp_path / "b", None, plain)
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["train.py", "util.py"]


def test_code_already_in_place_is_used_as_is(tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("mine")
    assert "already there" in fetch(code, "s3://bucket/x.tar.gz", None)
    assert (code / "train.py").read_text() == "mine"


def test_code_that_cannot_be_fetched_fails_clearly(tmp_path):
    with pytest.raises(UserCodeError, match="code' channel"):
        fetch(tmp_path / "a", "s3://bucket/sourcedir.tar.gz", None)
    with pytest.raises(UserCodeError, match="does not exist"):
        fetch(tmp_path / "b", str(tmp_path / "missing"), None)
    with pytest.raises(UserCodeError, match="no training code"):
        fetch(tmp_path / "c", None, None)
    evil = _tarball(tmp_path / "evil.tar.gz", {"../escaped.py": "x"})
    with pytest.raises(UserCodeError, match="outside the code folder"):
        fetch(tmp_path / "d" / "code", str(evil), None)
    assert not (tmp_path / "d" / "escaped.py").exists()
    linked = tmp_path / "linked.tar.gz"
    with tarfile.open(linked, "w:gz") as tar:
        info = tarfile.TarInfo("passwd")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(UserCodeError, match="points outside"):
        fetch(tmp_path / "e" / "code", str(linked), None)


# -- requirements.txt ---------------------------------------------------------------------------------------------

def test_pip_uses_the_wheelhouse_or_index_the_user_names(tmp_path):
    requirements = tmp_path / "requirements.txt"
    wheelhouse = TrainingSettings.from_env({"SMKIT_PIP_WHEELHOUSE": "/wheels"})
    assert pip_command(requirements, wheelhouse)[-3:] == ["--no-index", "--find-links", "/wheels"]
    index = TrainingSettings.from_env({"SMKIT_PIP_INDEX_URL": "http://mirror/simple"})
    assert pip_command(requirements, index)[-2:] == ["--index-url", "http://mirror/simple"]
    assert pip_command(requirements, TrainingSettings())[-2:] == ["-r", str(requirements)]


def test_a_failed_install_fails_the_job_once_and_never_runs_the_script(opt_ml, tmp_path, monkeypatch):
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    monkeypatch.setenv("SMKIT_PIP_WHEELHOUSE", str(wheelhouse))
    base = _job(opt_ml, {"train.py": ECHO_SCRIPT, "requirements.txt": "smkit-no-such-package==1.0\n"})
    started = time.monotonic()
    assert run_script(base) == 1
    assert time.monotonic() - started < 60  # one attempt, no retry loop
    failure = _failure(base)
    assert failure.startswith("InstallRequirementsError: pip install -r requirements.txt exited with 1")
    assert "smkit-no-such-package" in failure
    assert not (base / "model" / "seen.json").exists()
