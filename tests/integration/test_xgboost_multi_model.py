"""A multi-model endpoint of the XGBoost image holding several models, through SageMaker's /models API."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
import xgboost

from local_test.docker_run import OptMl, ServingContainer, train

FEATURES = 5


@pytest.fixture(scope="module")
def models(docker, image_of, tmp_path_factory) -> Path:
    """/opt/ml/models with three models trained by the image itself (different depths and data)."""
    root = tmp_path_factory.mktemp("mme")
    models = root / "models"
    for index, depth in enumerate((2, 3, 4)):
        job = OptMl(root / f"job-{index}", {"num_round": "10", "objective": "binary:logistic", "max_depth": str(depth)},
                    {"train": {"ContentType": "text/csv"}})
        rng = np.random.default_rng(index)
        features = rng.normal(size=(400, FEATURES))
        labels = (features[:, index] > 0).astype(int)
        np.savetxt(job.channel_dir("train") / "d.csv", np.column_stack([labels, features]), delimiter=",")
        result = train(docker, image_of("xgboost"), job)
        assert result.exit_code == 0, result.logs
        shutil.copytree(job.model_dir, models / f"market-{index}" / "model")
    return models


def _scores(model_dir: Path, rows: np.ndarray) -> np.ndarray:
    booster = xgboost.Booster()
    booster.load_model(bytearray((model_dir / "xgboost-model.ubj").read_bytes()))
    return booster.inplace_predict(rows)


def _csv(rows: np.ndarray) -> bytes:
    return "\n".join(",".join(repr(v) for v in row) for row in rows.tolist()).encode()


def test_multi_model_endpoint_holds_several_models(docker, image_of, models):
    rows = np.random.default_rng(9).normal(size=(4, FEATURES))
    env = {"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    volumes = {str(models): {"bind": "/opt/ml/models", "mode": "ro"}}
    with ServingContainer(docker, image_of("xgboost"), None, env=env, volumes=volumes) as server:
        server.wait_ready()
        url = server.url
        for index in range(3):
            response = requests.post(f"{url}/models", json={"model_name": f"market-{index}",
                                                            "url": f"/opt/ml/models/market-{index}/model"}, timeout=30)
            assert response.status_code == 200, response.text
        again = requests.post(f"{url}/models", json={"model_name": "market-0", "url": "/opt/ml/models/market-0/model"},
                              timeout=30)
        assert again.status_code == 409
        missing = requests.post(f"{url}/models", json={"model_name": "x", "url": "/opt/ml/models/nope"}, timeout=30)
        assert missing.status_code == 404

        listed = requests.get(f"{url}/models", timeout=5).json()["models"]
        assert sorted(m["modelName"] for m in listed) == ["market-0", "market-1", "market-2"]
        first_page = requests.get(f"{url}/models?max_results=2", timeout=5).json()
        assert len(first_page["models"]) == 2 and first_page["nextPageToken"]

        for index in range(3):
            expected = _scores(models / f"market-{index}" / "model", rows)
            for _ in range(10):  # fresh connections: several workers answer, all must hold the model
                response = requests.post(f"{url}/models/market-{index}/invoke", data=_csv(rows),
                                         headers={"Content-Type": "text/csv", "Connection": "close"}, timeout=30)
                assert response.status_code == 200, response.text
                np.testing.assert_allclose([float(v) for v in response.text.splitlines()], expected, atol=1e-7)
            routed = requests.post(f"{url}/invocations", data=_csv(rows), timeout=30, headers={
                "Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": f"market-{index}"})
            np.testing.assert_allclose([float(v) for v in routed.text.splitlines()], expected, atol=1e-7)

        # Exactly the single-model error codes.
        bad = requests.post(f"{url}/models/market-1/invoke", data=b"1,2", headers={"Content-Type": "text/csv"},
                            timeout=30)
        assert bad.status_code == 400 and "expected 5 features" in bad.json()["message"]
        assert requests.post(f"{url}/models/market-1/invoke", data=b"x", headers={"Content-Type": "image/png"},
                             timeout=30).status_code == 415

        assert requests.delete(f"{url}/models/market-1", timeout=30).status_code == 200
        for _ in range(6):
            gone = requests.post(f"{url}/models/market-1/invoke", data=_csv(rows),
                                 headers={"Content-Type": "text/csv", "Connection": "close"}, timeout=30)
            assert gone.status_code == 404
        assert requests.delete(f"{url}/models/market-1", timeout=30).status_code == 404
        assert requests.get(f"{url}/ping", timeout=2).status_code == 200


def test_memory_budget_is_507_never_a_silent_eviction(docker, image_of, models):
    env = {"SAGEMAKER_MULTI_MODEL": "true", "SMKIT_MME_MEMORY_BUDGET_MB": "0.01"}
    volumes = {str(models): {"bind": "/opt/ml/models", "mode": "ro"}}
    with ServingContainer(docker, image_of("xgboost"), None, env=env, volumes=volumes) as server:
        server.wait_ready()
        load = {"model_name": "m", "url": "/opt/ml/models/market-0/model"}
        response = requests.post(f"{server.url}/models", json=load, timeout=30)
        assert response.status_code == 507, response.text
        assert requests.get(f"{server.url}/models", timeout=5).json() == {"models": []}
