"""A multi-model endpoint on real gunicorn + uvicorn workers (3 processes, one registry), on the host: no Docker.

Loads two models with one request each, then fires invocations on fresh connections (so that they spread
over the workers) and checks every answer comes from the right model; unloads one and checks that every
worker answers 404 for it from then on; kills a worker and checks that its replacement serves the
registered models; /ping answers 200 all along.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from local_test.docker_run import ServerExited, free_port, wait_ready

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
REQUESTS = 100

# The small real handler of the unit tests (y = X @ w, w from weights.json), served by the shared server.
SERVER = "from unit.serving_common.conftest import LinearHandler\n" \
         "from serving_common.server import serve\n" \
         "serve(LinearHandler, multi_model=True)\n"


class Client:
    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        """One request on a fresh connection (Connection: close): the kernel hands it to any worker."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body, {"Connection": "close", **(headers or {})})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def invoke(self, name: str, rows: str = "[[1, 1], [2, 0]]") -> tuple[int, str, bytes]:
        """(status, pid of the worker that answered, body); the pid is the prefix of the generated request id."""
        status, headers, body = self.request("POST", f"/models/{name}/invoke", rows.encode(),
                                             {"Content-Type": "application/json"})
        return status, headers["x-request-id"].split("-")[0], body


@pytest.fixture
def server(tmp_path):
    port = free_port()
    log_path = tmp_path / "server.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
        "SAGEMAKER_MULTI_MODEL": "true",
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(WORKERS),
        "SMKIT_MME_MEMORY_BUDGET_MB": "512",
        "SMKIT_MODELS_ROOT": str(tmp_path / "opt" / "ml" / "models"),
    }
    env.pop("SMKIT_WORKER_USER", None)
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-c", SERVER], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=tmp_path)
    client = Client(port)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", 60, alive=lambda: process.poll() is None, interval=0.1,
                   request_timeout=2)
    except (TimeoutError, ServerExited):
        process.kill()
        pytest.fail(f"the server did not start:\n{log_path.read_text()}")
    yield client, process, log_path
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    print(log_path.read_text()[-4000:])


def make_model(base: Path, name: str, weights: list[float]) -> Path:
    directory = base / "opt" / "ml" / "models" / name / "model"
    directory.mkdir(parents=True)
    (directory / "weights.json").write_text(json.dumps(weights))
    return directory


def fire(client: Client, name: str, count: int) -> list[tuple[int, str, bytes]]:
    with ThreadPoolExecutor(6) as pool:  # concurrent, so that idle workers take their share
        return list(pool.map(lambda _: client.invoke(name), range(count)))


def test_multi_model_endpoint_on_three_workers(server, tmp_path):
    client, process, log_path = server
    pings: list[int | str] = []
    stop = threading.Event()

    def ping() -> None:
        while not stop.is_set():
            try:
                pings.append(client.request("GET", "/ping", timeout=2)[0])
            except OSError as exc:
                pings.append(repr(exc))
            time.sleep(0.01)

    pinger = threading.Thread(target=ping)
    pinger.start()
    try:
        # Load two models, one request each.
        urls = {"alpha": make_model(tmp_path, "alpha", [1, 2]), "beta": make_model(tmp_path, "beta", [10, -1])}
        expected = {"alpha": [3.0, 2.0], "beta": [9.0, 20.0]}
        for name, url in urls.items():
            started = time.perf_counter()
            load = json.dumps({"model_name": name, "url": str(url)}).encode()
            status, _, body = client.request("POST", "/models", load, {"Content-Type": "application/json"})
            assert status == 200, body
            print(f"POST /models {name}: {(time.perf_counter() - started) * 1e3:.1f} ms")
        status, _, body = client.request("GET", "/models")
        assert (status, json.loads(body)) == (200, {"models": [
            {"modelName": name, "modelUrl": str(url)} for name, url in urls.items()]})

        # ~100 invocations per model on fresh connections: all 200 with that model's numbers.
        pids: set[str] = set()
        for name in urls:
            results = fire(client, name, REQUESTS)
            assert [(status, json.loads(body)) for status, _, body in results] == [(200, expected[name])] * REQUESTS
            pids |= {pid for _, pid, _ in results}
        assert len(pids) >= 2, f"the requests did not spread over the workers: {pids}"
        print(f"workers that answered: {len(pids)} of {WORKERS}")

        # Unload one: from the moment DELETE answered, every worker answers 404 for it.
        status, _, _ = client.request("DELETE", "/models/alpha")
        assert status == 200
        answered: set[str] = set()
        for _ in range(20):
            results = fire(client, "alpha", 30)
            assert {(status, json.loads(body)["message"]) for status, _, body in results} == \
                {(404, "Model not found: alpha")}
            answered |= {pid for _, pid, _ in results}
            if answered >= pids:
                break
        assert answered >= pids, f"workers {pids - answered} never answered after the DELETE"
        results = fire(client, "beta", 30)
        assert {(status, json.loads(body) == expected["beta"]) for status, _, body in results} == {(200, True)}
        assert client.request("GET", "/models/alpha")[0] == 404
        status, _, body = client.request("GET", "/models")
        assert json.loads(body) == {"models": [{"modelName": "beta", "modelUrl": str(urls["beta"])}]}
    finally:
        stop.set()
        pinger.join()
    assert pings and set(pings) == {200}, f"/ping failed: {[p for p in pings if p != 200][:5]}"
    print(f"pings: {len(pings)}, all 200")

    # A worker dies: gunicorn starts another, which loads the registered models before it serves.
    victim = sorted(pids)[0]
    os.kill(int(victim, 16), signal.SIGKILL)
    deadline = time.monotonic() + 30
    fresh: set[str] = set()
    while not fresh and time.monotonic() < deadline:
        results = fire(client, "beta", 30)
        assert {status for status, _, _ in results} == {200}
        fresh = {pid for _, pid, _ in results} - pids
    assert fresh, "no replacement worker answered"
    assert client.invoke("alpha")[0] == 404
    assert client.request("GET", "/ping")[0] == 200

    # SIGTERM stops the server and removes the registry.
    registry = re.search(r"registry (\S+)\)", log_path.read_text())
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert registry and not Path(registry.group(1)).exists()
