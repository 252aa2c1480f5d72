"""The multi-model API (the /models routes SageMaker drives on a multi-model endpoint), step by step."""

from __future__ import annotations

import json

from smkit_contract.http_client import Response, describe, try_request

MODEL_NAME = "contract-model"
MODEL_PATH = f"/opt/ml/models/{MODEL_NAME}/model"  # where the kit mounts the model


def _no_models(answer: Response) -> bool:
    try:
        return answer.json().get("models") == []
    except (ValueError, AttributeError):
        return False


def api_problem(port: int, body: bytes, content_type: str) -> str | None:
    """Drives a server started empty with SAGEMAKER_MULTI_MODEL=true; the first step that goes wrong, or None."""
    load = json.dumps({"model_name": MODEL_NAME, "url": MODEL_PATH}).encode()
    json_type = {"Content-Type": "application/json"}
    request_type = {"Content-Type": content_type}
    steps: list[tuple[str, str, str, bytes | None, dict[str, str], int]] = [
        ("list the models of an empty endpoint", "GET", "/models", None, {}, 200),
        ("load a model", "POST", "/models", load, json_type, 200),
        ("describe the loaded model", "GET", f"/models/{MODEL_NAME}", None, {}, 200),
        ("invoke it", "POST", f"/models/{MODEL_NAME}/invoke", body, request_type, 200),
        ("load the same name again", "POST", "/models", load, json_type, 409),
        ("invoke a model that is not loaded", "POST", "/models/smkit-contract-no-such-model/invoke", body,
         request_type, 404),
        ("unload it", "DELETE", f"/models/{MODEL_NAME}", None, {}, 200),
        ("invoke it after unloading", "POST", f"/models/{MODEL_NAME}/invoke", body, request_type, 404),
    ]
    for index, (what, method, path, data, headers, status) in enumerate(steps):
        answer = try_request(port, method, path, body=data, headers=headers, timeout=120)
        if not isinstance(answer, Response) or answer.status != status:
            return f"{what} ({method} {path}): expected {status}, got {describe(answer)}"
        if index == 0 and not _no_models(answer):
            return f"{what}: expected {{\"models\": []}}, got {describe(answer)}"
    return None
