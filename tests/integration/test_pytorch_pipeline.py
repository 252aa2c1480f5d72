"""``PipelineModel(models=[preprocess, pytorch])`` in SDK local mode (``local_test.pipeline.PipelineSession``):
the PyTorch image trained on the preprocess image's labelled batch output, served behind it unchanged; and the
same two models fused (``python -m serving_common.fuse``), a plain ``Model`` of the PyTorch image.

Served scores are compared with the fitted scikit-learn transform and the saved TorchScript model computed
in-process; the fused model's answers with the chained pipeline's, byte for byte.
"""

from __future__ import annotations

import json
import subprocess
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

ENDPOINT, FUSED = "smkit-pytorch-pipeline-it", "smkit-pytorch-fused-it"
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
def archives(trained, tmp_path_factory) -> dict[str, Path]:
    """The two models' archives, and the fused one (world-readable: local mode extracts next to it)."""
    folder = tmp_path_factory.mktemp("archives")
    folder.chmod(0o755)
    found = {name: pack_model(model_dir, folder / f"{name}.tar.gz")
             for name, model_dir in (("preprocess", trained.preprocess_dir), ("pytorch", trained.pytorch_dir))}
    (folder / "fused").mkdir(mode=0o755)
    command = [sys.executable, "-m", "serving_common.fuse", str(found["preprocess"]), str(found["pytorch"]), "-o",
               str(folder / "fused" / "model.tar.gz")]
    fused = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert fused.returncode == 0, fused.stderr
    return {**found, "fused": folder / "fused" / "model.tar.gz"}


@pytest.fixture(scope="module")
def session(docker, tmp_path_factory):
    with PipelineSession(tmp_path_factory.mktemp("pytorch-sdk"), docker=docker) as local:
        yield local


@pytest.fixture(scope="module")
def endpoint(session, image_of, archives):
    models = [Model(image_uri=image_of(name), sagemaker_session=session, model_data=f"file://{archives[name]}")
              for name in ("preprocess", "pytorch")]
    PipelineModel(models=models, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="local", endpoint_name=ENDPOINT)
    try:
        yield session.endpoint_url(ENDPOINT)
    finally:
        session.delete_endpoint(ENDPOINT)


@pytest.fixture(scope="module")
def fused_endpoint(session, image_of, archives):
    """The fused model: a plain ``Model(image_uri=<pytorch image>, model_data=fused)``."""
    Model(image_uri=image_of("pytorch"), model_data=f"file://{archives['fused']}", sagemaker_session=session,
          role="arn:aws:iam::111111111111:role/local").deploy(initial_instance_count=1, instance_type="local",
                                                              endpoint_name=FUSED)
    try:
        yield session.endpoint_url(FUSED)
    finally:
        session.delete_endpoint(FUSED)


def test_the_model_records_the_features_it_was_trained_on(trained):
    meta = json.loads((trained.pytorch_dir / "pytorch-meta.json").read_text())
    fingerprint = json.loads((trained.preprocess_dir / "features.json").read_text())["fingerprint"]
    assert meta["features_fingerprint"] == fingerprint
    assert meta["num_features"] == trained.labelled.shape[1] - 1


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


def _post(url: str, body: bytes, content_type: str, accept: str | None = None) -> requests.Response:
    headers = {"Content-Type": content_type, **({"Accept": accept} if accept else {})}
    return requests.post(f"{url}/invocations", data=body, headers=headers, timeout=30)


def test_the_fused_model_answers_as_the_chained_pipeline(endpoint, fused_endpoint):
    """Same orders, every request and response type: the same status, type and bytes (the PyTorch image
    reads the in-process rows as it reads the preprocess stage's CSV: a float32 tensor)."""
    orders = [{k: v for k, v in order.items() if k != "default"} for order in make_orders(40, seed=8)]
    bodies = [(json.dumps(orders[0]).encode(), JSON), (json.dumps(orders).encode(), JSON),
              (b"".join(json.dumps(o).encode() + b"\n" for o in orders), JSONL)]
    for body, content_type in bodies:
        for accept in (None, CSV, JSON, JSONL):
            chained = _post(endpoint, body, content_type, accept)
            fused = _post(fused_endpoint, body, content_type, accept)
            assert chained.status_code == 200, chained.text
            assert (fused.status_code, fused.headers["Content-Type"], fused.content) == (
                200, chained.headers["Content-Type"], chained.content)
    assert len(_post(fused_endpoint, bodies[1][0], JSON, CSV).text.splitlines()) == len(orders)


@pytest.mark.parametrize("body", [b'{"amount": "lots"}', b'[{"amount": 1.0}, 5]', b"[]", b'{"amount": 1e999}'])
def test_a_bad_order_is_the_same_400_fused_or_chained(endpoint, fused_endpoint, body):
    chained, fused = _post(endpoint, body, JSON, CSV), _post(fused_endpoint, body, JSON, CSV)
    assert chained.status_code == fused.status_code == 400
    assert fused.json() == chained.json()
