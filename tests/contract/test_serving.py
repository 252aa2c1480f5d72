"""The serving contract, black-box through `docker run IMAGE serve` and HTTP. Runs for every image."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from local_test.docker_run import ServingContainer

from conftest import PORT, SERVER_ENV


def _rows(response: requests.Response) -> int:
    kind = response.headers["Content-Type"]
    if kind in ("text/csv", "application/jsonlines"):
        return len(response.content.decode().splitlines())
    if kind == "application/x-npy":
        return np.load(io.BytesIO(response.content), allow_pickle=False).shape[0]
    raise AssertionError(kind)


def _assert_error(response: requests.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["message"], body
    for word in words:
        assert word.lower() in body["message"].lower(), body


def test_ping_answers_200_on_the_configured_port(server):
    response = requests.get(f"{server.url}/ping", timeout=2)
    assert response.status_code == 200
    assert f"0.0.0.0:{PORT}" in server.logs() or str(PORT) in server.logs()


def test_every_content_type_and_accept(server, descriptor, model_dir):
    for content_type, body in descriptor.payloads(model_dir).items():
        for accept in descriptor.accepts:
            response = server.invoke(body, content_type, accept)
            assert response.status_code == 200, (content_type, accept, response.text)
            assert response.headers["Content-Type"] == accept  # exactly: no "; charset=" appended
            if accept != "application/json":
                assert _rows(response) == descriptor.records_per_payload


def test_media_type_parameters_are_understood(server, descriptor, model_dir):
    for content_type, body in descriptor.payloads(model_dir).items():
        response = server.invoke(body, f"{content_type}; charset=utf-8", "text/csv; q=0.9")
        assert response.status_code == 200, (content_type, response.text)
        assert response.headers["Content-Type"] == "text/csv"


@pytest.mark.parametrize("accept", [None, "*/*"])
def test_missing_or_wildcard_accept_uses_the_configured_default(server, descriptor, model_dir, accept):
    content_type, body = next(iter(descriptor.payloads(model_dir).items()))
    response = server.invoke(body, content_type, accept)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == SERVER_ENV["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"]


def test_error_table(server, descriptor, model_dir):
    """The input -> status table of the README, identical for every image."""
    content_type, body = next(iter(descriptor.payloads(model_dir).items()))
    _assert_error(server.invoke(body, "application/xml"), 415, "application/xml")
    _assert_error(server.invoke(body, None), 415, "content-type")
    _assert_error(server.invoke(body, content_type, "image/png"), 406, "image/png")
    _assert_error(server.invoke(b"", content_type), 400, "empty")
    _assert_error(server.invoke(*reversed(descriptor.empty_list)), 400)
    _assert_error(server.invoke(b'[{"a": NaN}]', "application/json"), 400, "json")
    _assert_error(server.invoke(b'[[1, Infinity]]', "application/json"), 400, "json")
    _assert_error(server.invoke(*reversed(descriptor.wrong_shape(model_dir))), 400)
    _assert_error(server.invoke(b"\xff\xfe\x00,1", "text/csv"), 400, "utf-8")
    _assert_error(server.invoke(b"1,2", "text/csv; charset=no-such-charset"), 415, "charset")
    _assert_error(server.invoke(b"{", "application/json"), 400, "json")
    _assert_error(requests.get(f"{server.url}/no-such-route", timeout=5), 404)
    _assert_error(requests.get(f"{server.url}/invocations", timeout=5), 405)


def test_payload_limit_is_413(server, descriptor, model_dir):
    limit = int(float(SERVER_ENV["SAGEMAKER_MAX_PAYLOAD_IN_MB"]) * 1024 * 1024)
    content_type, body = descriptor.large_payload(model_dir, limit + 1000)
    assert len(body) > limit
    _assert_error(server.invoke(body, content_type), 413, "limit")
    content_type, body = descriptor.large_payload(model_dir, limit // 2)
    assert server.invoke(body, content_type).status_code == 200


def test_execution_parameters(server):
    response = requests.get(f"{server.url}/execution-parameters", timeout=5)
    assert response.status_code == 200
    # No BatchStrategy unless SAGEMAKER_BATCH_STRATEGY sets one (serving_common/app.py says why).
    assert response.json() == {"MaxConcurrentTransforms": 2, "MaxPayloadInMB": 1}


def test_hundreds_of_parallel_requests_are_all_answered(server, descriptor, model_dir):
    content_type, body = next(iter(descriptor.payloads(model_dir).items()))
    local = threading.local()

    def call(_: int) -> int:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        return session.post(f"{server.url}/invocations", data=body,
                            headers={"Content-Type": content_type}, timeout=30).status_code

    with ThreadPoolExecutor(64) as pool:
        statuses = list(pool.map(call, range(600)))
    assert statuses == [200] * 600


def test_ping_stays_answered_while_every_worker_is_busy(server, descriptor, model_dir):
    content_type, body = descriptor.large_payload(model_dir, 900_000)
    stop = time.monotonic() + 6
    errors: list[str] = []

    def load() -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                response = session.post(f"{server.url}/invocations", data=body,
                                        headers={"Content-Type": content_type}, timeout=60)
                if response.status_code != 200:
                    errors.append(response.text)

    threads = [threading.Thread(target=load) for _ in range(16)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    try:
        pings = []
        while time.monotonic() < stop - 0.5:
            # SageMaker gives a ping about 2 s; a slower answer would take the endpoint out of service.
            pings.append(requests.get(f"{server.url}/ping", timeout=2).status_code)
            time.sleep(0.2)
    finally:
        for thread in threads:
            thread.join()
    assert pings and set(pings) == {200}
    assert not errors


def test_request_workers_run_unprivileged(server):
    processes = server.container.top(ps_args="-eo uid,pid,ppid,args")["Processes"]
    python = [p for p in processes if "python" in p[3]]
    master = [p for p in python if not any(p[2] == other[1] for other in python)]
    workers = [p for p in python if p not in master]
    assert len(master) == 1 and master[0][0] == "0", processes  # PID 1 stays root, as SageMaker expects
    assert len(workers) == int(SERVER_ENV["SAGEMAKER_MODEL_SERVER_WORKERS"]), processes
    assert all(uid != "0" for uid, *_ in workers), processes


def test_logs_carry_request_id_and_latency(server, descriptor, model_dir):
    content_type, body = next(iter(descriptor.payloads(model_dir).items()))
    response = server.invoke(body, content_type, headers={"X-Amzn-RequestId": "contract-req-42"})
    assert response.headers["X-Request-Id"] == "contract-req-42"
    time.sleep(0.2)
    line = next(line for line in server.logs().splitlines() if "contract-req-42" in line)
    assert "status=200" in line and "ms=" in line


def test_sigterm_drains_in_flight_requests_and_exits(docker, image, descriptor, model_dir):
    with ServingContainer(docker, image, model_dir, env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}) as server:
        server.wait_ready()
        content_type, body = descriptor.large_payload(model_dir, 3_000_000)
        results: list[object] = []

        def call() -> None:
            try:
                results.append(server.invoke(body, content_type, timeout=60).status_code)
            except requests.RequestException as exc:
                results.append(exc)

        threads = [threading.Thread(target=call) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)  # the requests are in flight
        started = time.monotonic()
        server.container.kill(signal="SIGTERM")
        exit_code = server.wait_exit(timeout=30)
        elapsed = time.monotonic() - started
        for thread in threads:
            thread.join()
        assert exit_code == 0, server.logs()
        assert elapsed < 25, elapsed  # SageMaker sends SIGKILL 30 s after SIGTERM
        assert results == [200, 200, 200], (results, server.logs())


def test_missing_model_exits_non_zero_with_a_clear_log_line(docker, image, tmp_path):
    empty = tmp_path / "empty-model"
    with ServingContainer(docker, image, empty) as server:
        exit_code = server.wait_exit(timeout=60)
        assert exit_code != 0
        assert "MODEL LOAD FAILED" in server.logs()


def test_multi_model_mode_starts_empty_or_is_refused(docker, image, descriptor):
    """SAGEMAKER_MULTI_MODEL=true: an image that supports it starts with no model and answers /ping;
    one that does not exits with a clear message (instead of serving something else)."""
    labels = docker.images.get(image).labels
    assert (labels.get("com.amazonaws.sagemaker.capabilities.multi-models") == "true") == descriptor.multi_model
    with ServingContainer(docker, image, None, env={"SAGEMAKER_MULTI_MODEL": "true"}) as server:
        if descriptor.multi_model:
            server.wait_ready()
            assert requests.get(f"{server.url}/models", timeout=5).json() == {"models": []}
        else:
            assert server.wait_exit(timeout=60) != 0
            assert "multi-model" in server.logs()
