"""Faults and hostile input against the real images (issue 13): every failure prompt, named and bounded.

The HTTP layer's bounds and the SIGTERM drain are also tested on a real server outside Docker
(tests/unit/serving_common/test_protocol.py); here they are shown in the images as shipped.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import requests

from local_test.docker_run import OptMl, ServingContainer, train
from local_test.orders import make_orders, write_jsonl

pytestmark = pytest.mark.docker


def raw_exchange(url: str, data: bytes) -> tuple[int, dict[str, str], dict]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), dict(line.lower().split(": ", 1) for line in lines[1:]), json.loads(body)


def test_an_empty_model_file_stops_the_container_once_with_a_named_error(docker, image_of, tmp_path):
    (tmp_path / "xgboost-model").write_bytes(b"")
    with ServingContainer(docker, image_of("xgboost"), tmp_path, env={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}) as server:
        assert server.wait_exit(timeout=30) != 0  # no crash loop: the container stops
        logs = server.logs()
    assert "MODEL LOAD FAILED: XGBoostError: /opt/ml/model/xgboost-model is empty (0 bytes)" in logs
    assert "terminate called" not in logs
    assert logs.count("Booting worker") <= 2  # each worker boots once, fails, and the server stops


@pytest.fixture(scope="module")
def mme(docker, image_of, tmp_path_factory):
    """An empty multi-model xgboost endpoint; /opt/ml/models holds an empty and a corrupt model."""
    models = tmp_path_factory.mktemp("faults-mme")
    (models / "empty").mkdir()
    (models / "empty" / "xgboost-model").write_bytes(b"")
    (models / "corrupt").mkdir()
    (models / "corrupt" / "xgboost-model").write_bytes(b"not a model")
    for path in (models, *models.rglob("*")):  # the workers run as an unprivileged account
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = {"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    volumes = {str(models): {"bind": "/opt/ml/models", "mode": "ro"}}
    with ServingContainer(docker, image_of("xgboost"), None, env=env, volumes=volumes) as server:
        server.wait_ready()
        yield server


def test_multi_model_bad_model_files_are_500_in_one_line_and_the_worker_lives(mme):
    empty = requests.post(f"{mme.url}/models", json={"model_name": "e", "url": "/opt/ml/models/empty"}, timeout=30)
    assert empty.status_code == 500
    assert "is empty (0 bytes)" in empty.json()["message"]
    corrupt = requests.post(f"{mme.url}/models", json={"model_name": "c", "url": "/opt/ml/models/corrupt"}, timeout=30)
    message = corrupt.json()["message"]
    assert corrupt.status_code == 500 and "XGBoostError: Unknown construct" in message
    assert "\n" not in message and "Stack trace" not in message and "libxgboost" not in message
    assert "/opt/venv" not in message and "c_api.cc" not in message
    assert "Stack trace" in mme.logs()  # the detail is in the log (on one line)
    assert requests.get(f"{mme.url}/ping", timeout=5).status_code == 200


@pytest.mark.parametrize("url", ["/etc", "/proc/self", "/", "/nowhere", "/opt/ml/models/../../etc"])
def test_multi_model_url_outside_the_models_root_is_one_400(mme, url):
    answer = requests.post(f"{mme.url}/models", json={"model_name": "x", "url": url}, timeout=30)
    assert (answer.status_code, answer.json()) == (400, {
        "error": "BadRequest", "message": "url must be a folder under the models root /opt/ml/models"})


def test_multi_model_name_with_surrounding_blanks_is_refused(mme):
    answer = requests.post(f"{mme.url}/models", json={"model_name": " spaced ", "url": "/opt/ml/models/corrupt"},
                           timeout=30)
    assert answer.status_code == 400


def test_a_path_with_a_newline_cannot_forge_a_log_line(mme):
    forged = "2026-01-01 00:00:00,000 ERROR [1] serving_common: FORGED"
    path = f"/models/x%0A{forged.replace(' ', '%20')}/invoke"  # a failed invocation is always logged
    assert requests.post(mme.url + path, data=b"1", headers={"Content-Type": "text/csv"}, timeout=5).status_code == 404
    deadline = time.monotonic() + 10  # the failure is logged after the answer is sent: wait for the line
    lines = mme.logs().splitlines()
    while not any("x\\x0a2026-01-01" in line for line in lines):
        assert time.monotonic() < deadline, "the failed invocation was never logged"
        time.sleep(0.1)
        lines = mme.logs().splitlines()
    assert not any(line.startswith("2026-01-01") for line in lines)


def test_header_bounds_and_protocol_errors_answer_json(mme):
    status, headers, body = raw_exchange(mme.url, b"GET /ping HTTP/1.1\r\nX-Big: " + b"a" * (2 * 1024 * 1024))
    assert (status, headers["content-type"], body["error"]) == (431, "application/json", "RequestHeaderFieldsTooLarge")
    status, headers, body = raw_exchange(mme.url, b"BROKEN\r\n\r\n")
    assert (status, headers["content-type"], body["error"]) == (400, "application/json", "BadRequest")
    assert requests.get(f"{mme.url}/ping", timeout=5).status_code == 200


@pytest.fixture(scope="module")
def preprocess_model(docker, image_of, tmp_path_factory) -> Path:
    opt_ml = OptMl(tmp_path_factory.mktemp("faults-pre"), {"label": "default", "drop": "order_id"},
                   {"train": {"ContentType": "application/jsonlines"}})
    write_jsonl(make_orders(200, seed=3), opt_ml.channel_dir("train") / "orders.jsonl")
    result = train(docker, image_of("preprocess"), opt_ml)
    assert result.exit_code == 0, result.logs
    return opt_ml.model_dir


def test_deep_json_is_400_naming_the_limit(docker, image_of, preprocess_model):
    deep = b'{"a":' * 1000 + b"1" + b"}" * 1000  # parses (orjson allows 1,024 levels); was a 500 RecursionError
    with ServingContainer(docker, image_of("preprocess"), preprocess_model) as server:
        server.wait_ready()
        answer = server.invoke(deep, "application/json")
        lines = server.invoke(b'{"a": 1}\n' + deep, "application/jsonlines")
    message = "JSON nests arrays and objects deeper than 64 levels"
    assert (answer.status_code, answer.json()["message"]) == (400, message)
    assert lines.status_code == 400 and "deeper than 64 levels" in lines.json()["message"]


def test_sigterm_answers_every_large_request_in_flight(docker, image_of, tmp_path):
    """32 requests of ~2 MB CSV in flight, SIGTERM 0.2 s after the last byte was sent: every one is answered
    with its scores and the container exits 0 (before: about a third of the connections were reset)."""
    import http.client
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import xgboost

    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 30))
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 4},
                            xgboost.DMatrix(features, label=features[:, 0] > 0), num_boost_round=50)
    booster.save_model(str(tmp_path / "model.json"))
    (tmp_path / "model.json").rename(tmp_path / "xgboost-model")
    rows = 4500
    body = "\n".join(",".join(f"{v:.12f}" for v in row) for row in rng.normal(size=(rows, 30))).encode()
    assert len(body) > 2 * 1000 * 1000
    count = 32
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"}
    with ServingContainer(docker, image_of("xgboost"), tmp_path, env=env, host_network=True) as server:
        server.wait_ready()
        sent = 0

        def post() -> tuple[int, int]:
            nonlocal sent
            connection = http.client.HTTPConnection("127.0.0.1", server.host_port, timeout=60)
            try:
                connection.request("POST", "/invocations", body=body, headers={"Content-Type": "text/csv"})
                sent += 1
                answer = connection.getresponse()
                return answer.status, len(answer.read().splitlines())
            except OSError as exc:
                sent += 1
                return -1, repr(exc)

        with ThreadPoolExecutor(count) as pool:
            futures = [pool.submit(post) for _ in range(count)]
            deadline = time.monotonic() + 60
            while sent < count and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            server.container.kill(signal="SIGTERM")
            answers = [future.result(timeout=60) for future in futures]
        exit_code = server.wait_exit(timeout=40)
        logs = server.logs()
    assert answers == [(200, rows)] * count, logs[-3000:]
    assert exit_code == 0


def _anon_memory_mb(container) -> float:
    """The container's anonymous memory (no page cache): what unloading models must give back."""
    for path, key in (("/sys/fs/cgroup/memory.stat", "anon"), ("/sys/fs/cgroup/memory/memory.stat", "total_rss")):
        output = container.exec_run(["cat", path]).output.decode()
        for line in output.splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value) / 2**20
    raise AssertionError("no cgroup memory.stat in the container")


def test_multi_model_load_unload_cycles_under_a_memory_limit_return_memory_and_never_oom(docker, image_of, tmp_path):
    """--memory 384m, 2 workers: load copies of a model until 507, unload them all, twice; the memory comes
    back after each unload, and 5 MB requests after the second fill are answered (before: unloading
    returned nothing, the second fill passed the limit and workers were killed for memory). 384m rather than
    256m: at 256m the second fill sometimes had room for one model only (the first load after an unload costs
    about twice the others), so "several models per cycle" depended on chance."""
    import numpy as np
    import xgboost

    rng = np.random.default_rng(0)
    features = rng.normal(size=(3000, 20))
    # deep trees: a few MB per load in each worker, so the budget fills in a few dozen loads of ~0.15 s
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 10, "eta": 0.05, "min_child_weight": 0,
                             "lambda": 0}, xgboost.DMatrix(features, label=features[:, 0] + rng.normal(size=3000) > 0),
                            num_boost_round=30)
    models = tmp_path / "models"
    (models / "m").mkdir(parents=True)
    booster.save_model(str(models / "m" / "xgboost-model.json"))
    (models / "m" / "xgboost-model.json").rename(models / "m" / "xgboost-model")
    for path in (models, *models.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    container = docker.containers.run(
        image_of("xgboost"), ["serve"], detach=True, read_only=True, tmpfs={"/tmp": ""}, mem_limit="384m",
        environment={"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"},
        volumes={str(models): {"bind": "/opt/ml/models", "mode": "ro"}},
        ports={"8080/tcp": ("127.0.0.1", None)})
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/ping", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        # One load and unload first: what the first model costs once per worker (XGBoost's and the forest
        # evaluator's own allocations, thread pools) is never given back by design, so it is part of the baseline.
        assert requests.post(f"{url}/models", json={"model_name": "warm", "url": "/opt/ml/models/m"},
                             timeout=60).status_code == 200
        assert requests.post(f"{url}/invocations", data=b"0" + b",0" * 19, timeout=30, headers={
            "Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": "warm"}).status_code == 200
        assert requests.delete(f"{url}/models/warm", timeout=30).status_code == 200
        time.sleep(1.5)
        baseline = _anon_memory_mb(container)
        figures = []
        started = time.monotonic()
        for _cycle in range(2):
            loaded = []
            for index in range(200):
                answer = requests.post(f"{url}/models", json={"model_name": f"m{index}", "url": "/opt/ml/models/m"},
                                       timeout=60)
                if answer.status_code == 507:
                    break
                assert answer.status_code == 200, answer.text
                loaded.append(f"m{index}")
            else:
                raise AssertionError("200 copies loaded without a 507: the budget does not bind")
            full = _anon_memory_mb(container)
            print(f"{len(loaded)} loaded at {time.monotonic() - started:.1f} s")
            if _cycle == 1:  # the largest requests the endpoint accepts, with the budget full: answered
                body = "\n".join(",".join(f"{v:.15f}" for v in row) for row in rng.normal(size=(15_000, 20)))
                assert 5 * 2**20 < len(body) < 6 * 2**20
                for _ in range(3):
                    answer = requests.post(f"{url}/invocations", data=body.encode(), timeout=120, headers={
                        "Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": loaded[0]})
                    assert answer.status_code == 200, answer.text[:300]
            for name in loaded:
                assert requests.delete(f"{url}/models/{name}", timeout=30).status_code == 200
            time.sleep(1.5)  # every worker drops its copies within its next sync (0.25 s)
            figures.append((len(loaded), round(full), round(_anon_memory_mb(container))))
        logs = container.logs().decode(errors="replace")
        print(f"baseline {baseline:.0f} MB; (models loaded, MB full, MB after unloading) per cycle: {figures}")
        assert "SIGKILL" not in logs and "out of memory" not in logs.lower()
        for count, full, after in figures:
            assert count >= 3
            # most of it came back (measured: ~half of 120 MB at 256m, where the image of main gave none);
            # what did not is counted by the 507 check, which is what kept the requests above alive
            assert after - baseline < (full - baseline) * 0.75, figures
    finally:
        container.remove(force=True)
