"""Script mode in a real image: ``docker run IMAGE train`` with ``sagemaker_program`` runs the user's script
(never the built-in algorithm in its place), as sagemaker-training would, and a failing script is reported."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path

import pytest

from local_test.docker_run import OptMl, train

pytestmark = pytest.mark.docker

USER_SCRIPT = """
import argparse, json, os, sys
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
parser.add_argument("--learning-rate", type=float)
parser.add_argument("--layers")
parser.add_argument("-k")
args = parser.parse_args()
rows = [line for name in sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"]))
        for line in open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], name)).read().split()]
import helper
json.dump({"args": vars(args), "rows": len(rows), "helper": helper.NAME, "cwd": os.getcwd(),
           "sm": {k: v for k, v in os.environ.items() if k.startswith("SM_")}},
          open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w"))
print("user script done")
"""


def _sourcedir(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _job(tmp_path: Path, files: dict[str, str], program: str = "train.py", **hyperparameters: object) -> OptMl:
    """A job as the SDK sends it: JSON-encoded values, the source archive in S3 and as a 'code' channel."""
    hps = {"sagemaker_program": program, "sagemaker_submit_directory": "s3://bucket/job/source/sourcedir.tar.gz",
           "sagemaker_container_log_level": 20, "epochs": 3, "learning-rate": 0.05, "layers": [64, 32], "k": "v",
           **hyperparameters}
    opt_ml = OptMl(tmp_path / "opt_ml", {key: json.dumps(value) for key, value in hps.items()},
                   {"train": {"ContentType": "text/csv"}, "code": {}})
    (opt_ml.channel_dir("train") / "data.csv").write_text("1,2\n3,4\n5,6\n")
    (opt_ml.channel_dir("code") / "sourcedir.tar.gz").write_bytes(_sourcedir(files))
    return opt_ml


def test_the_xgboost_image_runs_the_users_script_with_sagemakers_environment(docker, image_of, tmp_path):
    result = train(docker, image_of("xgboost"), _job(tmp_path, {"train.py": USER_SCRIPT,
                                                               "helper.py": "NAME = 'helper'\n"}))
    assert result.exit_code == 0, result.logs
    model_dir = result.opt_ml.model_dir
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.json"]  # no xgboost-model: nothing else trained
    seen = json.loads((model_dir / "model.json").read_text())
    assert seen["args"] == {"epochs": 3, "learning_rate": 0.05, "layers": "[64, 32]", "k": "v"}
    assert seen["rows"] == 3 and seen["helper"] == "helper" and seen["cwd"] == "/opt/ml/code"
    sm = seen["sm"]
    assert sm["SM_CHANNEL_TRAIN"] == "/opt/ml/input/data/train" and sm["SM_MODEL_DIR"] == "/opt/ml/model"
    assert sm["SM_HP_LEARNING-RATE"] == "0.05" and sm["SM_HP_LAYERS"] == "[64,32]"
    assert json.loads(sm["SM_CHANNELS"]) == ["code", "train"] and sm["SM_USER_ENTRY_POINT"] == "train.py"
    assert json.loads(sm["SM_TRAINING_ENV"])["hyperparameters"]["epochs"] == 3
    assert "user script done" in result.logs
    assert (result.opt_ml.root / "output" / "success").exists() and result.opt_ml.failure is None


def test_a_failing_script_gives_a_failure_file_with_its_exit_code_and_stderr(docker, image_of, tmp_path):
    script = "import sys\nprint('loading...', file=sys.stderr)\nraise ValueError('column price is missing')\n"
    result = train(docker, image_of("xgboost"), _job(tmp_path, {"train.py": script}))
    assert result.exit_code != 0
    failure = result.opt_ml.failure or ""
    assert failure.startswith("ExecuteUserScriptError:\nExitCode 1\n"), failure
    assert "ValueError: column price is missing" in failure
    assert not any(result.opt_ml.model_dir.iterdir())


def test_a_named_program_that_is_not_there_fails_instead_of_training_xgboost(docker, image_of, tmp_path):
    result = train(docker, image_of("xgboost"), _job(tmp_path, {"other.py": "pass\n"}))
    assert result.exit_code != 0
    assert "'train.py' is not in the code" in (result.opt_ml.failure or "")
    assert not any(result.opt_ml.model_dir.iterdir())


def test_requirements_in_an_image_without_pip_fail_clearly_once(docker, image_of, tmp_path):
    result = train(docker, image_of("xgboost"), _job(tmp_path, {"train.py": USER_SCRIPT,
                                                               "requirements.txt": "pandas==2.2.3\n"}))
    assert result.exit_code != 0
    assert "InstallRequirementsError" in (result.opt_ml.failure or "") and "no pip" in result.opt_ml.failure
    assert not any(result.opt_ml.model_dir.iterdir())


STOPPABLE = """
import os, signal, sys, time
def stop(signum, frame):
    open(os.path.join(os.environ["SM_MODEL_DIR"], "checkpoint"), "w").write("saved")
    print("saved a checkpoint on SIGTERM", file=sys.stderr)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
print("USER-SCRIPT-READY", flush=True)
while True:
    time.sleep(0.1)
"""


def test_sigterm_reaches_the_users_script(docker, image_of, tmp_path):
    opt_ml = _job(tmp_path, {"train.py": STOPPABLE})
    opt_ml.write_config()
    container = docker.containers.run(image_of("xgboost"), ["train"], detach=True,
                                      volumes={str(opt_ml.root): {"bind": "/opt/ml", "mode": "rw"}})
    try:
        deadline = time.monotonic() + 60
        while b"USER-SCRIPT-READY" not in container.logs():
            assert time.monotonic() < deadline, container.logs().decode()
            time.sleep(0.2)
        container.kill(signal="SIGTERM")
        code = container.wait(timeout=30)["StatusCode"]
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert code != 0, logs
    assert (opt_ml.model_dir / "checkpoint").read_text() == "saved"
    failure = opt_ml.failure or ""
    assert "ExitCode 143" in failure and "SIGTERM" in failure and "saved a checkpoint" in failure
