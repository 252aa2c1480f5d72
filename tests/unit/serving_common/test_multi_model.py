"""Multi-model endpoints in-process: every /models route and status, paging, the memory budget, the target-model
header, script mode per model, and several apps sharing one registry as gunicorn's workers do."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from serving_common import multi_model
from serving_common.multi_model import (
    MultiModelApp,
    Pending,
    Registry,
    State,
    directory_bytes,
    memory_budget_bytes,
    memory_limit_bytes,
    rss_bytes,
)
from serving_common.settings import Settings, SettingsError

BASE_ENV = {"SAGEMAKER_MULTI_MODEL": "true", "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
            "SMKIT_MME_MEMORY_BUDGET_MB": "1024"}


@pytest.fixture
def make_model(tmp_path):
    """``make_model("a", [1, 2])`` -> a model folder as SageMaker extracts it under /opt/ml/models."""

    def make(name: str, weights: list[float], padding_bytes: int = 0) -> Path:
        directory = tmp_path / "models" / name / "model"
        directory.mkdir(parents=True)
        (directory / "weights.json").write_text(orjson.dumps(weights).decode())
        if padding_bytes:
            (directory / "padding.bin").write_bytes(b"\0" * padding_bytes)
        return directory

    return make


@pytest.fixture
def state_dir(tmp_path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir()
    return directory


@pytest.fixture
def make_app(linear_handler, state_dir, tmp_path):
    def make(handler=linear_handler, **env: str) -> MultiModelApp:
        settings = Settings.from_env({**BASE_ENV, "SMKIT_MODELS_ROOT": str(tmp_path / "models"), **env})
        return MultiModelApp(handler, settings, state_dir)

    return make


@pytest.fixture
def start(make_app, asgi_client):
    """``start(**env)`` -> a started app's client (one "worker"); several share one registry."""

    def make(handler=None, **env: str):
        client = asgi_client(make_app(handler, **env) if handler else make_app(**env))
        assert client.startup() == {"type": "lifespan.startup.complete"}
        return client

    return make


@pytest.fixture
def mme(start):
    return start()


def load(client, name: str, url, **headers: str):
    body = url if isinstance(url, bytes) else orjson.dumps({"model_name": name, "url": str(url)})
    return client.request("POST", "/models", {"content-type": "application/json", **headers}, body)


def invoke(client, name: str, body: bytes = b"[[1, 1]]", **headers: str):
    headers = {"content-type": "application/json", **{k.replace("_", "-"): v for k, v in headers.items()}}
    return client.request("POST", f"/models/{name}/invoke", headers, body)


def error(response) -> tuple[int, str, str]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message"}
    return response.status, body["error"], body["message"]


# -- start-up --------------------------------------------------------------------------------------------------

def test_starts_with_no_model_and_pings(make_app, asgi_client):
    client = asgi_client(make_app())
    assert client.request("GET", "/ping").status == 503
    assert client.startup() == {"type": "lifespan.startup.complete"}
    assert (client.request("GET", "/ping").status, client.request("GET", "/ping").body) == (200, b"")
    assert client.request("GET", "/models").json() == {"models": []}
    assert client.request("GET", "/execution-parameters").status == 200
    assert client.shutdown() == {"type": "lifespan.shutdown.complete"}
    assert client.app._watcher.done() and client.app.executor._shutdown


# -- load, list, describe, invoke, unload ----------------------------------------------------------------------

def test_load_then_invoke_each_model(mme, make_model):
    response = load(mme, "a", make_model("a", [1, 2]))
    assert response.status == 200
    assert response.json()["modelName"] == "a"
    assert load(mme, "b", make_model("b", [10, 20])).status == 200
    assert invoke(mme, "a", b"[[1, 1], [2, 0]]").json() == [3.0, 2.0]
    assert invoke(mme, "b", b"[[1, 1]]", accept="text/csv").body == b"30.0\n"


def test_list_and_describe(mme, make_model):
    url_b, url_a = make_model("b", [1, 1]), make_model("a", [1, 1])
    load(mme, "b", url_b)
    load(mme, "a", url_a)
    assert mme.request("GET", "/models").json() == {"models": [  # sorted by name, no token on the last page
        {"modelName": "a", "modelUrl": str(url_a)}, {"modelName": "b", "modelUrl": str(url_b)}]}
    assert mme.request("GET", "/models/b").json() == {"modelName": "b", "modelUrl": str(url_b)}
    assert error(mme.request("GET", "/models/c"))[:2] == (404, "NotFound")


def test_already_loaded_is_409(mme, make_model):
    url = make_model("a", [1, 1])
    assert load(mme, "a", url).status == 200
    assert error(load(mme, "a", url))[:2] == (409, "Conflict")
    assert error(load(mme, "a", make_model("other", [2, 2])))[0] == 409


def test_missing_url_is_404(mme, tmp_path):
    status, title, message = error(load(mme, "a", tmp_path / "models" / "nowhere"))
    assert (status, title) == (404, "NotFound")
    assert "nowhere" in message


@pytest.mark.parametrize("url", ["/etc", "/proc/self", "/", "/nowhere", "{root}", "{root}/../state", "{root}/a/../..",
                                 "{root}/link-out", "file:///etc", "relative/a"])
def test_url_outside_the_models_root_is_one_400_that_tells_nothing(mme, tmp_path, url):
    root = tmp_path / "models"
    root.mkdir(exist_ok=True)
    (root / "link-out").symlink_to("/etc")
    status, title, message = error(load(mme, "a", url.format(root=root)))
    assert (status, title, message) == (400, "BadRequest", f"url must be a folder under the models root {root}")


@pytest.mark.parametrize("name", [" spaced ", "tab\t", "new\nline", "x" * 1025, "nul\u0000"])
def test_a_name_the_target_header_cannot_carry_is_refused_at_load(mme, make_model, name):
    body = orjson.dumps({"model_name": name, "url": str(make_model("a", [1, 1]))})  # control characters escaped
    assert error(load(mme, "", body))[:2] == (400, "BadRequest")
    assert mme.request("GET", "/models").json() == {"models": []}


@pytest.mark.parametrize("body", [
    b"not json", b"[1]", b'{"url": "/opt/ml/models/x"}', b'{"model_name": "", "url": "/x"}',
    b'{"model_name": "a", "url": 3}', b'{"model_name": "a"}', b'{"model_name": "a", "url": "s3://bucket/key"}',
])
def test_malformed_load_is_400(mme, body):
    assert error(load(mme, "", body))[:2] == (400, "BadRequest")


def test_url_that_is_a_file_is_400(mme, make_model):
    assert error(load(mme, "a", make_model("a", [1, 1]) / "weights.json"))[0] == 400


def test_file_url_is_a_local_directory(mme, make_model):
    assert load(mme, "a", f"file://{make_model('a', [1, 1])}").status == 200


def test_load_failure_is_500_with_the_reason_and_not_registered(mme, make_model):
    bad = make_model("bad", [1, 1])
    (bad / "weights.json").write_text("{broken")
    status, title, message = error(load(mme, "bad", bad))
    assert (status, title) == (500, "ModelError")
    assert "bad" in message and "JSONDecodeError" in message
    assert mme.request("GET", "/models/bad").status == 404
    assert mme.request("GET", "/models").json() == {"models": []}
    assert mme.app.registry.current().pending == {}
    (bad / "weights.json").write_text("[1, 1]")
    assert load(mme, "bad", bad).status == 200  # the name is free again


def test_unload(mme, make_model):
    url = make_model("a", [1, 1])
    load(mme, "a", url)
    response = mme.request("DELETE", "/models/a")
    assert response.status == 200
    assert response.json()["modelName"] == "a"
    status, title, message = error(invoke(mme, "a"))
    assert (status, title) == (404, "NotFound")
    assert message.startswith("Model not found")
    assert error(mme.request("DELETE", "/models/a"))[0] == 404
    assert mme.request("GET", "/models/a").status == 404
    assert "a" not in mme.app.models
    assert load(mme, "a", url).status == 200  # and loadable again


def test_unknown_model_is_404_model_not_found(mme):
    status, title, message = error(invoke(mme, "nope"))
    assert (status, title, message) == (404, "NotFound", "Model not found: nope")


def test_target_model_header_routes_invocations(mme, make_model):
    load(mme, "a", make_model("a", [1, 2]))
    load(mme, "b", make_model("b", [3, 4]))
    headers = {"content-type": "text/csv", "accept": "text/csv"}
    for name, expected in (("a", b"3.0\n"), ("b", b"7.0\n")):
        response = mme.request("POST", "/invocations", {**headers, "X-Amzn-SageMaker-Target-Model": name}, b"1,1")
        assert (response.status, response.body) == (200, expected)
    missing = mme.request("POST", "/invocations", {**headers, "X-Amzn-SageMaker-Target-Model": "c"}, b"1,1")
    assert error(missing)[:2] == (404, "NotFound")
    no_header = mme.request("POST", "/invocations", headers, b"1,1")
    assert error(no_header)[0] == 400
    assert "X-Amzn-SageMaker-Target-Model" in error(no_header)[2]


def test_invocation_errors_are_those_of_single_model_mode(mme, make_model):
    load(mme, "a", make_model("a", [1, 1]))
    assert error(invoke(mme, "a", b"[[1, 2, 3]]"))[:2] == (400, "BadRequest")
    assert error(invoke(mme, "a", content_type="image/png"))[0] == 415
    assert error(invoke(mme, "a", accept="image/png"))[0] == 406
    csv = invoke(mme, "a", b"[[1, 2]]", accept="text/csv; q=1")
    assert (csv.status, csv.headers["content-type"], csv.body) == (200, "text/csv", b"3.0\n")
    assert invoke(mme, "a", x_amzn_requestid="req-1").headers["x-request-id"] == "req-1"


def test_payload_limit_applies_to_invoke(start, make_model):
    client = start(SAGEMAKER_MAX_PAYLOAD_IN_MB="0.001")
    load(client, "a", make_model("a", [1, 1]))
    assert error(invoke(client, "a", b"[[1, 1]]" + b" " * 2000))[0] == 413


def test_default_accept_applies_per_model(start, make_model):
    client = start(SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="text/csv")
    load(client, "a", make_model("a", [1, 1]))
    response = invoke(client, "a", accept="*/*")
    assert (response.headers["content-type"], response.body) == ("text/csv", b"2.0\n")


def test_model_names_may_hold_encoded_slashes(mme, make_model):
    url = make_model("a", [1, 1])
    assert load(mme, "team/a.tar.gz", url).status == 200
    assert invoke(mme, "team%2Fa.tar.gz").json() == [2.0]
    assert mme.request("GET", "/models/team%2Fa.tar.gz").json()["modelName"] == "team/a.tar.gz"
    assert mme.request("DELETE", "/models/team%2Fa.tar.gz").status == 200


@pytest.mark.parametrize(("method", "path", "status"), [
    ("PUT", "/models", 405), ("DELETE", "/models", 405), ("POST", "/models/a", 405), ("PUT", "/models/a", 405),
    ("GET", "/models/a/invoke", 405), ("GET", "/models/a/other", 404), ("GET", "/models/", 404),
    ("GET", "/models/a/invoke/x", 404), ("GET", "/modelsx", 404),
])
def test_routes_and_methods(mme, method, path, status):
    assert error(mme.request(method, path))[0] == status


# -- paging ----------------------------------------------------------------------------------------------------

def test_paging(mme, make_model):
    urls = {name: make_model(name, [1, 1]) for name in "edcba"}
    for name, url in urls.items():
        load(mme, name, url)
    first = mme.request("GET", "/models?max_results=2").json()
    assert [m["modelName"] for m in first["models"]] == ["a", "b"]
    second = mme.request("GET", f"/models?max_results=2&next_page_token={first['nextPageToken']}").json()
    assert [m["modelName"] for m in second["models"]] == ["c", "d"]
    last = mme.request("GET", f"/models?next_page_token={second['nextPageToken']}&max_results=2").json()
    assert last == {"models": [{"modelName": "e", "modelUrl": str(urls["e"])}]}
    assert mme.request("GET", "/models?max_results=5").json().keys() == {"models"}
    assert mme.request("GET", "/models?next_page_token=9").json() == {"models": []}
    assert len(mme.request("GET", "/models?max_results=100000").json()["models"]) == 5


@pytest.mark.parametrize("query", ["max_results=0", "max_results=x", "next_page_token=-1", "next_page_token=abc"])
def test_bad_paging_is_400(mme, query):
    assert error(mme.request("GET", f"/models?{query}"))[:2] == (400, "BadRequest")


# -- memory budget ---------------------------------------------------------------------------------------------

def test_over_budget_on_disk_is_507_without_loading(start, make_model, linear_handler):
    loads = []

    class Counting(linear_handler):
        def load(self, model_dir):
            loads.append(model_dir)
            return super().load(model_dir)

    client = start(Counting, SMKIT_MME_MEMORY_BUDGET_MB="1")  # 1 MB; the model: 0.6 MB x 2 workers
    status, title, message = error(load(client, "big", make_model("big", [1, 1], padding_bytes=600_000)))
    assert (status, title) == (507, "InsufficientStorage")
    assert "SMKIT_MME_MEMORY_BUDGET_MB" in message and "2 workers" in message
    assert loads == []
    assert client.request("GET", "/models").json() == {"models": []}
    assert client.app.registry.current().pending == {}


def test_over_budget_once_loaded_is_507(start, make_model, linear_handler):
    class Hungry(linear_handler):
        def load(self, model_dir):
            return (super().load(model_dir), np.ones(40 * 1024 * 1024 // 8))  # 40 MB resident

    client = start(Hungry, SMKIT_MME_MEMORY_BUDGET_MB="30", SAGEMAKER_MODEL_SERVER_WORKERS="1")
    status, title, message = error(load(client, "hungry", make_model("hungry", [1, 1])))
    assert (status, title) == (507, "InsufficientStorage")
    assert "measured" in message
    assert client.request("GET", "/models/hungry").status == 404
    assert "hungry" not in client.app.models
    assert client.app.registry.current().pending == {}


def test_budget_counts_every_loaded_model_and_frees_on_unload(start, make_model):
    client = start(SMKIT_MME_MEMORY_BUDGET_MB="3")  # each model: 1 MB on disk x 2 workers = 2 MB
    first, second = make_model("a", [1, 1], 1024 * 1024), make_model("b", [1, 1], 1024 * 1024)
    assert load(client, "a", first).status == 200
    assert error(load(client, "b", second))[0] == 507
    assert invoke(client, "a").status == 200  # nothing was evicted
    assert client.request("DELETE", "/models/a").status == 200
    assert load(client, "b", second).status == 200
    entry = client.app.registry.current().models["b"]
    assert entry.bytes_per_worker >= directory_bytes(second)
    assert entry.estimate_bytes == entry.bytes_per_worker * 2


def test_a_load_in_progress_holds_its_name_and_its_estimate(mme, make_model, state_dir):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with Registry(state_dir).transaction() as state:
            state.pending["a"] = Pending("t", other.pid, 0)
        status, _, message = error(load(mme, "a", make_model("a", [1, 1])))
        assert status == 409 and "being loaded" in message
        with Registry(state_dir).transaction() as state:
            state.pending["a"] = Pending("t", other.pid, 2 * 1024 ** 3)  # more than the whole budget
        assert error(load(mme, "b", make_model("b", [1, 1])))[0] == 507
    finally:
        other.kill()
        other.wait()
    assert load(mme, "a", make_model("a2", [1, 1])).status == 200  # a dead worker's reservation is void
    assert mme.app.registry.current().pending == {}


def test_memory_limit_from_cgroup_v2(tmp_path):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("0::/kubepods/pod1/ctr\n")
    leaf = tmp_path / "sys/fs/cgroup/kubepods/pod1/ctr"
    leaf.mkdir(parents=True)
    (leaf / "memory.max").write_text("max\n")
    (leaf.parent / "memory.max").write_text(f"{512 * 1024 * 1024}\n")  # the pod's limit applies
    assert memory_limit_bytes(tmp_path) == 512 * 1024 * 1024


def test_memory_limit_from_cgroup_v1_or_physical_memory(tmp_path):
    physical = memory_limit_bytes(tmp_path)  # nothing there: the physical memory
    assert physical > 0
    v1 = tmp_path / "sys/fs/cgroup/memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # unlimited
    assert memory_limit_bytes(tmp_path) == physical
    (v1 / "memory.limit_in_bytes").write_text(f"{256 * 1024 * 1024}\n")
    assert memory_limit_bytes(tmp_path) == 256 * 1024 * 1024


def test_default_budget_is_a_fraction_of_the_limit_less_room_for_the_largest_requests(tmp_path):
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/memory.max").write_text(f"{1000 * 1024 * 1024}\n")
    fraction = int(1000 * 1024 * 1024 * multi_model.DEFAULT_MEMORY_FRACTION)
    # 2 workers, each may hold a 6 MB request (body, text, rows, answer: 4x) while the models are loaded
    assert memory_budget_bytes(Settings(workers=2), tmp_path) == fraction - 2 * 4 * 6 * 1024 * 1024
    assert memory_budget_bytes(Settings(workers=1, max_payload_mb=100), tmp_path) == fraction - 400 * 1024 * 1024
    assert memory_budget_bytes(Settings(mme_memory_budget_mb=2.5), tmp_path) == int(2.5 * 1024 * 1024)


def test_budget_setting():
    assert Settings.from_env({}).mme_memory_budget_mb is None
    assert Settings.from_env({"SMKIT_MME_MEMORY_BUDGET_MB": " 2048 "}).mme_memory_budget_mb == 2048
    for bad in ("lots", "0", "-5"):
        with pytest.raises(SettingsError, match="SMKIT_MME_MEMORY_BUDGET_MB"):
            Settings.from_env({"SMKIT_MME_MEMORY_BUDGET_MB": bad})


def test_rss_and_directory_size(make_model):
    assert rss_bytes() > 1024 * 1024
    directory = make_model("a", [1, 1], padding_bytes=5000)
    (directory / "code").mkdir()
    (directory / "code" / "inference.py").write_text("x = 1\n")
    assert directory_bytes(directory) == 5000 + len("[1,1]") + len("x = 1\n")


# -- script mode per model -------------------------------------------------------------------------------------

def with_script(directory: Path, scale: int) -> Path:
    code = directory / "code"
    code.mkdir()
    (code / "helpers.py").write_text(f"SCALE = {scale}\n")
    (code / "inference.py").write_text(textwrap.dedent("""
        import helpers
        def predict_fn(data, model):
            return (data @ model) * helpers.SCALE
    """))
    return directory


def test_script_mode_per_model(mme, make_model):
    load(mme, "plain", make_model("plain", [1, 1]))
    load(mme, "ten", with_script(make_model("ten", [1, 1]), 10))
    load(mme, "hundred", with_script(make_model("hundred", [1, 1]), 100))  # its own helpers.py, not ten's
    assert [invoke(mme, name).json() for name in ("plain", "ten", "hundred")] == [[2.0], [20.0], [200.0]]
    module = mme.app.models["ten"].service.handler.module
    assert sys.modules[module.__name__] is module
    code_dir = str(Path(module.__file__).parent)
    assert code_dir in sys.path
    assert mme.request("DELETE", "/models/ten").status == 200
    mme.app.executor.submit(lambda: None).result()  # the release runs on the prediction thread
    assert module.__name__ not in sys.modules and code_dir not in sys.path
    assert invoke(mme, "hundred").json() == [200.0]


def test_script_import_failure_is_500(mme, make_model):
    directory = make_model("a", [1, 1])
    (directory / "code").mkdir()
    (directory / "code" / "inference.py").write_text("import smkit_not_a_module\n")
    status, _, message = error(load(mme, "a", directory))
    assert status == 500 and "smkit_not_a_module" in message


# -- several workers, one registry -----------------------------------------------------------------------------

def test_a_load_reaches_every_worker_and_an_unload_too(start, make_model):
    first, second = start(), start()
    assert load(first, "a", make_model("a", [1, 2])).status == 200
    assert second.request("GET", "/models/a").status == 200
    assert invoke(second, "a").json() == [3.0]  # loaded there on demand
    assert error(load(second, "a", make_model("again", [1, 1])))[0] == 409
    assert first.request("DELETE", "/models/a").status == 200
    assert error(invoke(second, "a"))[:2] == (404, "NotFound")  # at once: its next request checks the registry
    assert "a" not in second.app.models
    assert load(second, "a", make_model("a3", [5, 5])).status == 200
    assert invoke(first, "a").json() == [10.0]  # the new model, not the old copy


def test_other_workers_load_eagerly_in_the_background(start, make_model, monkeypatch):
    monkeypatch.setattr(multi_model.api, "SYNC_INTERVAL_S", 0.01)
    first, second = start(), start()
    load(first, "a", make_model("a", [1, 1]))

    async def wait_for(condition) -> None:
        deadline = time.monotonic() + 5
        while not condition() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    second.loop.run_until_complete(wait_for(lambda: "a" in second.app.models))
    assert "a" in second.app.models  # without any request to that worker
    first.request("DELETE", "/models/a")
    second.loop.run_until_complete(wait_for(lambda: "a" not in second.app.models))
    assert "a" not in second.app.models  # and dropped again, freeing its memory


def test_a_new_worker_loads_every_registered_model_before_serving(start, make_model):
    first = start()
    load(first, "a", make_model("a", [1, 1]))
    load(first, "b", make_model("b", [2, 2]))
    late = start()
    assert set(late.app.models) == {"a", "b"}
    assert invoke(late, "b").json() == [4.0]


def test_a_model_that_fails_in_a_new_worker_does_not_stop_it(start, make_model):
    first = start()
    gone = make_model("gone", [1, 1])
    load(first, "gone", gone)
    load(first, "ok", make_model("ok", [1, 1]))
    (gone / "weights.json").unlink()
    late = start()  # the worker still starts: failing its boot would stop the whole server
    assert set(late.app.models) == {"ok"}
    status, _, message = error(invoke(late, "gone"))
    assert status == 500 and "failed to load in this worker" in message
    assert invoke(late, "ok").status == 200


def test_a_slow_start_up_load_beats_gunicorns_heartbeat(start, make_model, linear_handler, monkeypatch,
                                                        make_app, asgi_client):
    monkeypatch.setattr(multi_model.api, "HEARTBEAT_S", 0.01)

    class Slow(linear_handler):
        def load(self, model_dir):
            time.sleep(0.2)
            return super().load(model_dir)

    load(start(), "a", make_model("a", [1, 1]))
    beats = []
    app = make_app(Slow)
    app.heartbeat = lambda: beats.append(time.monotonic())
    assert asgi_client(app).startup() == {"type": "lifespan.startup.complete"}
    assert len(beats) >= 3


# -- the registry file -----------------------------------------------------------------------------------------

def test_registry_is_read_only_when_it_changed(state_dir, monkeypatch):
    registry = Registry(state_dir)
    with registry.transaction() as state:
        state.models["a"] = multi_model.Entry("a", "/m/a", "/m/a", "t1", 1, 2)
    reader = Registry(state_dir)
    reads = []
    original = Registry._read
    monkeypatch.setattr(Registry, "_read", lambda self: (self is reader and reads.append(1)) or original(self))
    assert "a" in reader.current().models
    for _ in range(100):
        reader.current()
    assert len(reads) == 1  # a stat per call after the first read
    with registry.transaction() as state:  # same size, same second: still seen as a change
        state.models["a"] = multi_model.Entry("a", "/m/a", "/m/a", "t2", 1, 2)
    assert reader.current().models["a"].token == "t2"
    assert len(reads) == 2


def test_registry_writes_only_on_change_and_stamps_increase(state_dir):
    registry = Registry(state_dir)
    with registry.transaction() as state:
        state.models["a"] = multi_model.Entry("a", "/m/a", "/m/a", "t1", 1, 2)
    stamps = [registry.path.stat().st_mtime_ns]
    for token in ("t2", "t3", "t4"):
        with registry.transaction() as state:
            state.models["a"] = multi_model.Entry("a", "/m/a", "/m/a", token, 1, 2)
        stamps.append(registry.path.stat().st_mtime_ns)
    assert stamps == sorted(set(stamps))
    with registry.transaction():
        pass
    assert registry.path.stat().st_mtime_ns == stamps[-1]
    assert registry.current().generation == 4
    assert State.loads(registry.path.read_bytes()).models["a"].token == "t4"


def test_access_log_names_the_model(start, make_model, caplog):
    mme = start(SMKIT_ACCESS_LOG="true")
    caplog.set_level(logging.INFO, logger="serving_common")
    load(mme, "a", make_model("a", [1, 1]))
    invoke(mme, "a", x_amzn_requestid="rid-5")
    assert any("id=rid-5 model=a status=200" in r.getMessage() for r in caplog.records)
    assert any("model 'a' loaded from" in r.getMessage() for r in caplog.records)


def test_an_unreadable_registry_is_a_json_500(mme, make_model):
    load(mme, "a", make_model("a", [1, 1]))
    mme.app.registry.path.write_bytes(b"{garbage")
    assert error(invoke(mme, "a"))[:2] == (500, "InternalServerError")
    assert error(mme.request("GET", "/models"))[:2] == (500, "InternalServerError")


def test_load_latency_in_process(mme, make_model):
    """The management path adds little to the handler's own load (the XGBoost target is 50 ms in all)."""
    urls = [make_model(f"m{index}", [1, 1]) for index in range(5)]
    timings = []
    for index, url in enumerate(urls):
        started = time.perf_counter()
        assert load(mme, f"m{index}", url).status == 200
        timings.append(time.perf_counter() - started)
    assert sorted(timings)[2] < 0.05, timings


def test_a_request_queued_behind_a_prediction_sees_an_unload(start, make_model, linear_handler):
    gate = threading.Event()

    class Gated(linear_handler):
        def predict(self, model, data, context):
            if model[0] == 7:  # the "slow" model
                gate.wait(10)
            return super().predict(model, data, context)

    first, second = start(Gated), start(Gated)
    load(first, "slow", make_model("slow", [7, 7]))
    load(first, "a", make_model("a", [1, 1]))

    async def scenario():
        slow = asyncio.ensure_future(first.arequest("POST", "/models/slow/invoke",
                                                    {"content-type": "application/json"}, b"[[1, 1]]"))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(first.arequest("POST", "/models/a/invoke",
                                                      {"content-type": "application/json"}, b"[[1, 1]]"))
        await asyncio.sleep(0.05)
        return slow, queued

    slow, queued = first.loop.run_until_complete(scenario())
    assert second.request("DELETE", "/models/a").status == 200  # answered while "a" waits in the first worker
    gate.set()
    first.loop.run_until_complete(asyncio.wait_for(asyncio.gather(slow, queued), 10))
    assert slow.result().status == 200
    assert error(queued.result())[:2] == (404, "NotFound")


def test_unloading_returns_the_memory_of_the_model(mme, make_model, linear_handler):
    """A model of many small allocations (as parsed model files are): unloading it gives the memory back
    to the system (glibc kept it in its arenas before ``return_memory``)."""
    from serving_common.multi_model import rss_bytes

    keepers: list[bytes] = []

    class ManySmallObjects(linear_handler):
        def load(self, model_dir):
            # ~100 MB of 1 KB blocks (glibc's heap, not pymalloc's arenas), then a block that outlives them
            # at the heap's top: the freed blocks below it are only returned by malloc_trim
            model = [bytes(1000) + bytes([i % 256]) for i in range(100_000)]
            keepers.append(bytes(1000) + b"k")
            return super().load(model_dir), model

        def predict(self, model, data, context):
            return super().predict(model[0], data, context)

    app = mme.app
    app.handler_factory = ManySmallObjects
    before = rss_bytes()
    assert load(mme, "big", make_model("big", [1, 1])).status == 200
    loaded = rss_bytes()
    assert loaded - before > 80 * 1024 * 1024
    assert mme.request("DELETE", "/models/big").status == 200
    app.executor.submit(lambda: None).result()  # the release and the trim have run on the prediction thread
    assert rss_bytes() - before < (loaded - before) / 4
