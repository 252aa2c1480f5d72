"""``Estimator(image_uri=<xgboost image>, entry_point="train.py", source_dir=...)`` in SDK local mode, offline:
the user's script runs (never the built-in algorithm), and its model is what the job returns."""

from __future__ import annotations

import io
import json
import tarfile

import local_test.sagemaker_local  # noqa: F401  (first: the offline environment before the SDK's import)

# isort: split
import pytest
from sagemaker.estimator import Estimator
from sagemaker.local.local_session import file_input

from local_test.sagemaker_local import ROLE, offline_local_mode
from local_test.sdk_flows import file_uri, local_path

pytestmark = pytest.mark.docker

TRAIN = """
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
parser.add_argument("--learning-rate", type=float)
args, _ = parser.parse_known_args()
total = sum(float(cell) for name in os.listdir(os.environ["SM_CHANNEL_TRAIN"])
            for line in open(os.path.join(os.environ["SM_CHANNEL_TRAIN"], name)) for cell in line.split(","))
from util import scale
json.dump({"epochs": args.epochs, "lr": args.learning_rate, "total": scale(total),
           "hosts": json.loads(os.environ["SM_HOSTS"]), "program": os.environ["SM_USER_ENTRY_POINT"]},
          open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w"))
"""


def test_an_estimator_with_an_entry_point_runs_the_script_in_the_xgboost_image(docker, image_of, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(TRAIN)
    (source / "util.py").write_text("def scale(x):\n    return 2 * x\n")
    data = tmp_path / "train"
    data.mkdir()
    (data / "part.csv").write_text("1,2\n3,4\n")
    output = tmp_path / "output"
    output.mkdir()
    with offline_local_mode() as session:
        estimator = Estimator(image_uri=image_of("xgboost"), entry_point="train.py", source_dir=str(source),
                              hyperparameters={"epochs": 3, "learning-rate": 0.05}, role=ROLE, instance_count=1,
                              instance_type="local", output_path=file_uri(output), sagemaker_session=session,
                              disable_profiler=True, debugger_hook_config=False)
        estimator.fit({"train": file_input(file_uri(data), "text/csv")}, wait=True, logs="All")
        model_data = estimator.model_data
    with tarfile.open(local_path(model_data)) as archive:
        names = archive.getnames()
        model = json.load(io.TextIOWrapper(archive.extractfile("model.json")))
    assert names == ["model.json"]  # no xgboost-model: the built-in algorithm did not run
    hosts = model.pop("hosts")
    assert model == {"epochs": 3, "lr": 0.05, "total": 20.0, "program": "train.py"}
    assert len(hosts) == 1 and hosts[0].startswith("algo-1")  # local mode names it algo-1-<suffix>

