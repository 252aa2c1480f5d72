"""``PipelineModel(models=[preprocess, pytorch])`` in SDK local mode (``local_test.pipeline.PipelineSession``):
the PyTorch image trained on the preprocess image's labelled batch output, served behind it unchanged.

Served scores are compared with the fitted scikit-learn transform and the saved TorchScript model computed
in-process.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

from local_test.docker_run import ROOT, OptMl, ServingContainer, train
from local_test.orders import make_orders, write_jsonl
from local_test.pipeline import PipelineSession, pack_model

sys.path.insert(0, str(ROOT / "containers" / "preprocess"))
# Imported after local_test.pipeline, which sets the offline environment before the SDK is first loaded.
from sagemaker.model import Model
from sagemaker.pipeline import PipelineModel

from serving_common.features.features import FittedFeatures

pytestmark = pytest.mark.docker

ENDPOINT = "smkit-pytorch-pipeline-it"
JSON, JSONL, CSV = "application/json", "application/jsonlines", "text/csv"


@dataclass
class Trained:
    preprocess_dir: Path
    pytorch_dir: Path
    labelled: np.ndarray  # label-first feature rows, as the preprocess batch transform wrote them


@pytest.fixture(scope="module")
def trained(docker, image_of, tmp_path_factory) -> Trained:
    workdir = tmp_path_factory.mktemp("pytorch-pipeline")
    pre = OptMl(workdir / "pre", {"label": "default", "drop": "order_id"},
                {"train": {"ContentType": "application/jsonlines"}})
    orders = make_orders(1500, seed=21)
    write_jsonl(orders, pre.channel_dir("train") / "orders.jsonl")
    result = train(docker, image_of("preprocess"), pre)
    assert result.exit_code == 0, result.logs
    env = {"SMKIT_OUTPUT_LABEL": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"}
    with ServingContainer(docker, image_of("preprocess"), pre.model_dir, env=env) as batch:
        batch.wait_ready()
        labelled = batch.invoke("\n".join(json.dumps(o) for o in orders).encode(), JSONL, CSV)
        assert labelled.status_code == 200, labelled.text

    job = OptMl(workdir / "torch", {"epochs": "5"},
                {"train": {"ContentType": "text/csv"}, "features": {"ContentType": "application/json"}})
    (job.channel_dir("train") / "features.csv").write_text(labelled.text + "\n")
    (job.channel_dir("features") / "features.json").write_bytes((pre.model_dir / "features.json").read_bytes())
    result = train(docker, image_of("pytorch"), job)
    assert result.exit_code == 0, result.logs
    table = np.array([[float(v) for v in line.split(",")] for line in labelled.text.splitlines()])
    return Trained(pre.model_dir, job.model_dir, table)


@pytest.fixture(scope="module")
def reference(trained):
    """The fitted transform (scikit-learn path) and the TorchScript model, in-process: orders -> scores."""
    features = FittedFeatures.load(trained.preprocess_dir)
    model = torch.jit.load(str(trained.pytorch_dir / "model.pt"))

    def score(orders):
        rows = torch.from_numpy(features.transform_records_sklearn(orders).astype(np.float32))
        with torch.inference_mode():
            return model(rows).numpy()
    return score


@pytest.fixture(scope="module")
def endpoint(docker, image_of, trained, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("pytorch-sdk")
    with PipelineSession(workdir, docker=docker) as session:
        models = [Model(image_uri=image_of(name), sagemaker_session=session,
                        model_data=f"file://{pack_model(model_dir, workdir / 'archives' / f'{name}.tar.gz')}")
                  for name, model_dir in (("preprocess", trained.preprocess_dir), ("pytorch", trained.pytorch_dir))]
        PipelineModel(models=models, sagemaker_session=session).deploy(
            initial_instance_count=1, instance_type="local", endpoint_name=ENDPOINT)
        try:
            yield session.endpoint_url(ENDPOINT)
        finally:
            session.delete_endpoint(ENDPOINT)


def test_the_model_records_the_features_it_was_trained_on(trained):
    meta = json.loads((trained.pytorch_dir / "pytorch-meta.json").read_text())
    fingerprint = json.loads((trained.preprocess_dir / "features.json").read_text())["fingerprint"]
    assert meta["features_fingerprint"] == fingerprint
    assert meta["input_width"] == trained.labelled.shape[1] - 1


def test_json_orders_through_the_pipeline_score_as_the_fitted_transform_and_model(endpoint, reference):
    orders = make_orders(200, seed=99)
    response = requests.post(f"{endpoint}/invocations", data=json.dumps(orders),
                             headers={"Content-Type": JSON, "Accept": CSV}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == CSV
    served = np.array([float(line) for line in response.text.splitlines()])
    np.testing.assert_allclose(served, reference(orders), rtol=1e-5, atol=1e-6)


def test_json_lines_in_json_out_by_default(endpoint, reference):
    """No Accept: the last stage's default, JSON, a plain list as AWS's PyTorch toolkit writes it."""
    orders = make_orders(5, seed=3)
    response = requests.post(f"{endpoint}/invocations", data="\n".join(json.dumps(o) for o in orders),
                             headers={"Content-Type": JSONL}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == JSON
    np.testing.assert_allclose(response.json(), reference(orders), rtol=1e-5, atol=1e-6)


def test_a_bad_order_is_the_first_stages_400(endpoint):
    response = requests.post(f"{endpoint}/invocations", data=json.dumps([{"amount": "lots"}]),
                             headers={"Content-Type": JSON}, timeout=30)
    assert response.status_code == 400, response.text
    assert response.headers["X-Pipeline-Stage"] == "1"
