"""The PyTorch image end to end: training and serving the very scores of the saved TorchScript model in every
content type; an eager model through model_fn; an eager model without one never turns healthy; multi-model
endpoints of several torch models. (Behind the preprocess stage: test_pytorch_pipeline.py.)"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

from local_test.docker_run import OptMl, ServingContainer, train

pytestmark = pytest.mark.docker

WIDTH = 7
CSV, JSON, NPY = "text/csv", "application/json", "application/x-npy"


def _labelled_csv(folder: Path, rows: int, seed: int, column: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, WIDTH))
    labels = (features[:, column] - features[:, -1] > 0).astype(int)
    table = np.column_stack([labels, features])
    folder.mkdir(parents=True, exist_ok=True)
    np.savetxt(folder / "part-0.csv", table, delimiter=",", fmt="%.10g")
    return table


def _reference(model_dir: Path, rows: np.ndarray) -> np.ndarray:
    model = torch.jit.load(str(model_dir / "model.pt"))
    with torch.inference_mode():
        return model(torch.from_numpy(rows.astype(np.float32))).numpy()


def _csv(rows: np.ndarray) -> bytes:
    return "\n".join(",".join(repr(v) for v in row) for row in rows.tolist()).encode()


def _npy(rows: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, rows)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def trained(docker, image_of, tmp_path_factory) -> OptMl:
    job = OptMl(tmp_path_factory.mktemp("pytorch-job"), {"epochs": "10", "learning_rate": "0.05", "hidden": "16"},
                {"train": {"ContentType": "text/csv"}})
    _labelled_csv(job.channel_dir("train"), 600, seed=1)
    result = train(docker, image_of("pytorch"), job)
    assert result.exit_code == 0, result.logs
    assert "epoch 9: train_loss=" in result.logs
    return job


def test_serves_every_content_type_and_checks_the_width(docker, image_of, trained):
    rows = np.random.default_rng(3).normal(size=(5, WIDTH))
    expected = _reference(trained.model_dir, rows)
    with ServingContainer(docker, image_of("pytorch"), trained.model_dir,
                          env={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}) as server:
        server.wait_ready()
        bodies = {CSV: _csv(rows), JSON: json.dumps({"instances": rows.tolist()}).encode(),
                  "application/jsonlines": "\n".join(json.dumps(r) for r in rows.tolist()).encode(),
                  NPY: _npy(rows.astype(np.float64))}
        for content_type, body in bodies.items():
            response = server.invoke(body, content_type, NPY)
            assert response.status_code == 200, (content_type, response.text)
            np.testing.assert_allclose(np.load(io.BytesIO(response.content)), expected, rtol=1e-6, atol=1e-7)
        narrow = server.invoke(b"1,2,3", CSV)
        assert narrow.status_code == 400
        assert f"expected {WIDTH} features per row, received 3" in narrow.json()["message"]
        missing = server.invoke(b"1,2,,4,5,6,7", CSV)
        assert missing.status_code == 400 and "missing value" in missing.json()["message"]
        logs = server.logs()
        assert "warm-up: 4 predictions" in logs and "loaded TorchScript model.pt on cpu" in logs
        threads = max(1, (os.cpu_count() or 1) // 2)  # the container sees the host's CPUs: 2 workers share them
        lines = [f"worker {worker}: the model runs on cpu with {threads} intra-op threads" for worker in (0, 1)]
        deadline = time.monotonic() + 60  # /ping is 200 once one worker is ready: the other may still load
        while not all(line in logs for line in lines) and time.monotonic() < deadline:
            time.sleep(0.2)
            logs = server.logs()
        for line in lines:  # the server numbers its workers; device and threads are chosen per worker
            assert line in logs, logs


def test_an_eager_model_is_served_through_model_fn(docker, image_of, trained, tmp_path):
    """The example's MLP class saved as a state_dict, loaded by the user's model_fn (no TorchScript)."""
    model_dir = tmp_path / "eager"
    (model_dir / "code").mkdir(parents=True)
    scripted = torch.jit.load(str(trained.model_dir / "model.pt"))
    state = {name.removeprefix("mlp."): value for name, value in scripted.state_dict().items()}
    torch.save(state, model_dir / "weights.pth")
    (model_dir / "code" / "inference.py").write_text('''
import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(7, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.train()  # the image must put it in eval mode

    def forward(self, rows):
        return torch.sigmoid(self.net(rows).squeeze(-1))


def model_fn(model_dir):
    state = torch.load(f"{model_dir}/weights.pth")
    model = MLP(state["net.0.weight"].shape[0])
    model.load_state_dict(state)
    return model
''')
    rows = np.random.default_rng(4).normal(size=(3, WIDTH))
    expected = _reference(trained.model_dir, rows)
    with ServingContainer(docker, image_of("pytorch"), model_dir) as server:
        server.wait_ready()
        response = server.invoke(_csv(rows), CSV, JSON)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json(), expected, rtol=1e-6, atol=1e-7)


def test_an_eager_model_without_model_fn_never_turns_healthy(docker, image_of, tmp_path):
    model_dir = tmp_path / "eager"
    model_dir.mkdir()
    torch.save(torch.nn.Linear(WIDTH, 1).state_dict(), model_dir / "model.pth")
    server = ServingContainer(docker, image_of("pytorch"), model_dir)
    try:
        assert server.wait_exit(timeout=60) != 0
        logs = server.logs()
        assert "MODEL LOAD FAILED" in logs and "model_fn in code/inference.py" in logs, logs
    finally:
        server.remove()


def test_multi_model_endpoint_holds_several_torch_models(docker, image_of, trained, tmp_path):
    models = tmp_path / "models"
    for index in range(2):
        job = OptMl(tmp_path / f"job-{index}", {"epochs": "3", "seed": str(index)},
                    {"train": {"ContentType": "text/csv"}})
        _labelled_csv(job.channel_dir("train"), 300, seed=10 + index, column=index)
        result = train(docker, image_of("pytorch"), job)
        assert result.exit_code == 0, result.logs
        shutil.copytree(job.model_dir, models / f"market-{index}")
    rows = np.random.default_rng(9).normal(size=(4, WIDTH))
    env = {"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    volumes = {str(models): {"bind": "/opt/ml/models", "mode": "ro"}}
    with ServingContainer(docker, image_of("pytorch"), None, env=env, volumes=volumes) as server:
        server.wait_ready()
        url = server.url
        for index in range(2):
            response = requests.post(f"{url}/models", json={"model_name": f"market-{index}",
                                                            "url": f"/opt/ml/models/market-{index}"}, timeout=60)
            assert response.status_code == 200, response.text
        for index in range(2):
            expected = _reference(models / f"market-{index}", rows)
            for _ in range(4):  # fresh connections: both workers answer, both must hold the model
                response = requests.post(f"{url}/invocations", data=_csv(rows), timeout=30, headers={
                    "Content-Type": CSV, "Accept": CSV, "Connection": "close",
                    "X-Amzn-SageMaker-Target-Model": f"market-{index}"})
                assert response.status_code == 200, response.text
                np.testing.assert_allclose([float(v) for v in response.text.splitlines()], expected,
                                           rtol=1e-6, atol=1e-7)
        assert not np.allclose(_reference(models / "market-0", rows), _reference(models / "market-1", rows))
    full = {"SAGEMAKER_MULTI_MODEL": "true", "SMKIT_MME_MEMORY_BUDGET_MB": "0.01"}
    with ServingContainer(docker, image_of("pytorch"), None, env=full, volumes=volumes) as server:
        server.wait_ready()
        response = requests.post(f"{server.url}/models", json={"model_name": "m", "url": "/opt/ml/models/market-0"},
                                 timeout=60)
        assert response.status_code == 507, response.text
        assert requests.get(f"{server.url}/models", timeout=5).json() == {"models": []}


def test_a_job_naming_a_script_it_lacks_fails_rather_than_training_the_example(docker, image_of, tmp_path):
    """Never train something else silently: the job names a script it does not ship, so it fails naming it."""
    job = OptMl(tmp_path / "job", {"sagemaker_program": "train.py"}, {"train": {"ContentType": "text/csv"}})
    _labelled_csv(job.channel_dir("train"), 50, seed=2)
    result = train(docker, image_of("pytorch"), job)
    assert result.exit_code != 0
    assert "no training code" in (job.failure or "") and not (job.model_dir / "model.pt").exists()
