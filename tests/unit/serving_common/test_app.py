"""The ASGI app driven in-process: lifespan start-up/shutdown, routes, payload limits, headers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import textwrap
import threading
import time

import orjson
import pytest

from serving_common import app as app_module
from serving_common.app import InferenceApp, InlinePolicy
from serving_common.handler import Handler
from serving_common.invocations import Request, Response
from serving_common.settings import Settings


@pytest.fixture
def make_app(linear_handler, model_dir):
    def make(**env: str) -> InferenceApp:
        settings = Settings.from_env({"SM_MODEL_DIR": str(model_dir), "SAGEMAKER_MODEL_SERVER_WORKERS": "2", **env})
        return InferenceApp(linear_handler, settings)

    return make


@pytest.fixture
def client(make_app, asgi_client):
    """A started app (lifespan startup complete)."""
    client = asgi_client(make_app())
    assert client.startup() == {"type": "lifespan.startup.complete"}
    yield client
    assert client.shutdown() == {"type": "lifespan.shutdown.complete"}


def post(client, body: bytes = b"[[1, 2]]", **headers: str):
    headers = {"content-type": "application/json", **{k.replace("_", "-"): v for k, v in headers.items()}}
    return client.request("POST", "/invocations", headers, body)


def test_ping_is_503_before_startup_and_200_after(make_app, asgi_client):
    client = asgi_client(make_app())
    before = client.request("GET", "/ping")
    assert before.status == 503
    assert orjson.loads(before.body)["error"] == "ServiceUnavailable"
    assert client.startup() == {"type": "lifespan.startup.complete"}
    after = client.request("GET", "/ping")
    assert (after.status, after.body) == (200, b"")
    assert client.shutdown() == {"type": "lifespan.shutdown.complete"}
    assert client.app.executor._shutdown


def test_model_load_failure_fails_the_startup(tmp_path, linear_handler, asgi_client):
    settings = Settings.from_env({"SM_MODEL_DIR": str(tmp_path / "nothing-here")})
    client = asgi_client(InferenceApp(linear_handler, settings))
    message = client.startup()
    assert message["type"] == "lifespan.startup.failed"
    assert "weights.json" in message["message"]
    assert client._lifespan_task.done()  # the lifespan ends: the server exits instead of serving
    assert client.request("GET", "/ping").status == 503


def test_user_script_import_failure_fails_the_startup(make_app, model_dir, asgi_client):
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text("import smkit_not_a_module\n")
    message = asgi_client(make_app()).startup()
    assert message["type"] == "lifespan.startup.failed"
    assert "inference.py" in message["message"]
    assert "smkit_not_a_module" in message["message"]


def test_invocation(client):
    response = post(client, b"[[1, 2], [3, 4]]", accept="text/csv")
    assert response.status == 200
    assert response.headers["content-type"] == "text/csv"
    assert response.headers["content-length"] == str(len(response.body))
    assert response.body == b"5.0\n11.0\n"


def test_text_response_types_carry_no_charset(client):
    for accept in ("text/csv", "application/json", "application/jsonlines"):
        response = post(client, accept=accept)
        assert response.status == 200
        assert response.headers["content-type"] == accept


def test_errors_are_json(client):
    response = post(client, b"[[1, 2, 3]]")
    assert response.status == 400
    assert response.headers["content-type"] == "application/json"
    assert orjson.loads(response.body)["error"] == "BadRequest"
    assert post(client, b"[[1, 2]]", content_type="image/png").status == 415
    assert post(client, b"[[1, 2]]", accept="image/png").status == 406


def test_execution_parameters(make_app, asgi_client):
    client = asgi_client(make_app(SAGEMAKER_MAX_PAYLOAD_IN_MB="20", SAGEMAKER_MAX_CONCURRENT_TRANSFORMS="3"))
    response = client.request("GET", "/execution-parameters")
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    # No BatchStrategy unless one is set: AWS and SDK local mode then both apply MULTI_RECORD (app.py).
    assert orjson.loads(response.body) == {"MaxConcurrentTransforms": 3, "MaxPayloadInMB": 20}


def test_execution_parameters_defaults_follow_the_settings(make_app, asgi_client):
    client = asgi_client(make_app(SAGEMAKER_BATCH_STRATEGY="SINGLE_RECORD"))
    body = orjson.loads(client.request("GET", "/execution-parameters").body)
    assert set(body) == {"MaxConcurrentTransforms", "BatchStrategy", "MaxPayloadInMB"}
    assert body["MaxConcurrentTransforms"] == 2  # one per worker
    assert body["MaxPayloadInMB"] == 6
    assert body["BatchStrategy"] == "SINGLE_RECORD"


def test_content_length_over_the_limit_is_413_without_reading_the_body(make_app, asgi_client):
    client = asgi_client(make_app(SAGEMAKER_MAX_PAYLOAD_IN_MB="0.001"))  # 1048 bytes
    client.startup()
    response = client.request("POST", "/invocations",
                              {"content-type": "application/json", "content-length": "1049"}, b"x" * 1049)
    assert response.status == 413
    assert orjson.loads(response.body)["error"] == "PayloadTooLarge"
    assert "SAGEMAKER_MAX_PAYLOAD_IN_MB" in orjson.loads(response.body)["message"]
    assert response.messages_read == 0


def test_chunked_body_over_the_limit_is_413(make_app, asgi_client):
    client = asgi_client(make_app(SAGEMAKER_MAX_PAYLOAD_IN_MB="0.001"))
    client.startup()
    response = client.request("POST", "/invocations", {"content-type": "application/json"},
                              chunks=[b"[" + b"1," * 200, b"1," * 200, b"1," * 200, b"1]"])
    assert response.status == 413
    assert response.messages_read == 3  # stops reading at the chunk that crosses the limit


def test_single_message_without_content_length_over_the_limit_is_413(make_app, asgi_client):
    client = asgi_client(make_app(SAGEMAKER_MAX_PAYLOAD_IN_MB="0.001"))
    client.startup()
    response = client.request("POST", "/invocations", {"content-type": "text/csv"}, b"1,2\n" * 300)
    assert response.status == 413


def test_chunked_body_within_the_limit_is_assembled(make_app, asgi_client):
    client = asgi_client(make_app(SAGEMAKER_MAX_PAYLOAD_IN_MB="0.001"))
    client.startup()
    response = client.request("POST", "/invocations", {"content-type": "text/csv", "accept": "text/csv"},
                              chunks=[b"1,", b"", b"2\n3", b",4"])
    assert (response.status, response.body, response.messages_read) == (200, b"5.0\n11.0\n", 4)
    exact = b"[[" + b" " * (1048 - 8) + b"1, 2]]"
    assert len(exact) == client.app.settings.max_payload_bytes == 1048
    assert client.request("POST", "/invocations", {"content-type": "application/json"}, exact).status == 200
    assert client.request("POST", "/invocations", {"content-type": "application/json"}, b" " + exact).status == 413


def test_unknown_route_is_404(client):
    response = client.request("GET", "/predict")
    assert response.status == 404
    assert "/predict" in orjson.loads(response.body)["message"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_invocations_needs_post(client, method):
    response = client.request(method, "/invocations")
    assert response.status == 405
    assert orjson.loads(response.body)["error"] == "MethodNotAllowed"


def test_request_id_is_echoed_from_sagemaker(client):
    response = post(client, x_amzn_requestid="6f1c2b0e-aaaa-bbbb-cccc-1234567890ab")
    assert response.headers["x-request-id"] == "6f1c2b0e-aaaa-bbbb-cccc-1234567890ab"
    assert post(client, x_request_id="from-a-proxy").headers["x-request-id"] == "from-a-proxy"
    assert len(post(client, x_amzn_requestid="r" * 500).headers["x-request-id"]) == 128


def test_request_id_is_generated_when_missing(client):
    first, second = post(client), post(client)
    assert first.headers["x-request-id"] and second.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert post(client, b"", x_amzn_requestid="bad-one").headers["x-request-id"] == "bad-one"


def test_custom_attributes_reach_a_script_hook(make_app, model_dir, asgi_client):
    (model_dir / "code").mkdir()
    (model_dir / "code" / "inference.py").write_text(textwrap.dedent("""
        import json
        def predict_fn(data, model, context):
            return {"attributes": context.custom_attributes, "request_id": context.request_id}
        def output_fn(prediction, accept):
            return json.dumps(prediction), "application/json"
    """))
    client = asgi_client(make_app())
    assert client.startup()["type"] == "lifespan.startup.complete"
    response = post(client, x_amzn_sagemaker_custom_attributes="c000b4f9-df62,trace=1",
                    x_amzn_requestid="req-9")
    assert response.status == 200
    assert orjson.loads(response.body) == {"attributes": "c000b4f9-df62,trace=1", "request_id": "req-9"}
    client.shutdown()


def test_default_accept_from_the_environment(make_app, asgi_client):
    client = asgi_client(make_app(SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="text/csv; charset=utf-8"))
    client.startup()
    response = client.request("POST", "/invocations", {"content-type": "application/json"}, b"[[1, 1]]")
    assert (response.status, response.headers["content-type"], response.body) == (200, "text/csv", b"3.0\n")
    client.shutdown()


class GatedHandler(Handler):
    """predict blocks until the test opens the gate: a prediction that is still running."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def load(self, model_dir):
        return None

    def predict(self, model, data, context):
        self.gate.wait(10)
        return data


def gated_client(asgi_client, model_dir, gate: threading.Event, **env: str):
    settings = Settings.from_env({"SM_MODEL_DIR": str(model_dir), **env})
    client = asgi_client(InferenceApp(lambda: GatedHandler(gate), settings))
    assert client.startup()["type"] == "lifespan.startup.complete"
    return client


def test_ping_answers_while_a_prediction_runs(asgi_client, model_dir):
    gate = threading.Event()
    client = gated_client(asgi_client, model_dir, gate)

    async def scenario():
        invocation = asyncio.ensure_future(
            client.arequest("POST", "/invocations", {"content-type": "application/json"}, b"[1]"))
        await asyncio.sleep(0.05)
        ping = await client.arequest("GET", "/ping")
        still_running = not invocation.done()
        gate.set()
        return ping, still_running, await invocation

    ping, still_running, invocation = client.loop.run_until_complete(asyncio.wait_for(scenario(), 10))
    assert ping.status == 200
    assert still_running
    assert (invocation.status, invocation.body) == (200, b"[1]")


def test_prediction_over_the_timeout_is_500_and_recycles_the_worker(asgi_client, model_dir, monkeypatch):
    signals = []
    # The app stops its own worker with SIGTERM: record the signal instead of ending the test run.
    monkeypatch.setattr(app_module.os, "kill", lambda pid, sig: signals.append((pid, sig)))
    gate = threading.Event()
    client = gated_client(asgi_client, model_dir, gate, SAGEMAKER_MODEL_SERVER_TIMEOUT="1")
    try:
        response = client.request("POST", "/invocations", {"content-type": "application/json"}, b"[1]")
        stuck = client.app.inline_policy.handed_off  # the prediction still holds the thread
    finally:
        gate.set()
    assert response.status == 500 and stuck == 1
    assert "exceeded the 1 s timeout" in orjson.loads(response.body)["message"]
    assert signals == [(os.getpid(), signal.SIGTERM)]


def test_access_log_line(make_app, asgi_client, caplog):
    client = asgi_client(make_app(SMKIT_ACCESS_LOG="true"))
    client.startup()
    caplog.set_level(logging.INFO, logger="serving_common.access")
    post(client, b"[[1, 2]]", x_amzn_requestid="log-me", accept="text/csv")
    client.shutdown()
    line = next(r.getMessage() for r in caplog.records if r.name == "serving_common.access")
    assert "id=log-me status=200" in line
    assert "in=8 out=4" in line


def test_default_accept_the_container_cannot_produce_fails_the_startup(make_app, asgi_client):
    message = asgi_client(make_app(SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="image/png")).startup()
    assert message["type"] == "lifespan.startup.failed"
    assert "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT" in message["message"] and "image/png" in message["message"]


def test_fractional_payload_limit_is_reported_rounded_up(make_app, asgi_client):
    client = asgi_client(make_app(SAGEMAKER_MAX_PAYLOAD_IN_MB="0.5"))
    response = client.request("GET", "/execution-parameters")
    assert orjson.loads(response.body)["MaxPayloadInMB"] == 1


def test_client_that_disconnects_mid_body_gets_no_prediction(client):
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/invocations",
             "headers": [(b"content-type", b"application/json")]}
    client.loop.run_until_complete(client.app(scope, receive, send))
    assert sent == []


@pytest.mark.parametrize("env", [{}, {"SMKIT_ACCESS_LOG": "false"}])
def test_access_log_is_off_by_default_but_failures_are_always_logged(make_app, asgi_client, caplog, env):
    client = asgi_client(make_app(**env))
    client.startup()
    with caplog.at_level(logging.INFO, logger="serving_common.access"):
        assert post(client, b"[[1, 2]]", x_request_id="quiet-ok").status == 200
        assert post(client, b"[[1]]", x_request_id="loud-bad").status == 400
    messages = [record.getMessage() for record in caplog.records if record.name == "serving_common.access"]
    assert not any("quiet-ok" in m for m in messages)
    assert any("loud-bad" in m and "status=400" in m for m in messages)
    client.shutdown()


#: A request over InlinePolicy.MAX_BYTES: it always takes the prediction thread.
BIG_BODY = b"[" + b",".join([b"[1, 2]"] * 12_000) + b"]"


def _thread_recording_client(linear_handler, model_dir, asgi_client, delays: list[float] | None = None,
                             gate: threading.Event | None = None, **env: str):
    """A started app whose handler records the thread each prediction runs on, sleeps ``delays`` and,
    given a ``gate``, holds every prediction of more than one row until the gate opens."""
    threads: list[str] = []
    delays = list(delays or [])

    class Recording(linear_handler):
        def predict(self, model, data, context):
            threads.append(threading.current_thread().name)
            time.sleep(delays.pop(0) if delays else 0.0)
            if gate is not None and len(data) > 1:
                gate.wait(10)
            return super().predict(model, data, context)

    client = asgi_client(InferenceApp(Recording, Settings.from_env({"SM_MODEL_DIR": str(model_dir), **env})))
    assert client.startup()["type"] == "lifespan.startup.complete"
    return client, threads


def test_small_requests_to_a_fast_model_run_on_the_event_loop_after_a_first_timed_one(
        linear_handler, model_dir, asgi_client):
    client, threads = _thread_recording_client(linear_handler, model_dir, asgi_client)
    for _ in range(3):
        assert post(client, b"[[1, 2]]").body == b"[5.0]"
    loop_thread = threading.current_thread().name  # the test client runs the app's loop on this thread
    assert threads[0].startswith("predict") and threads[1:] == [loop_thread] * 2
    assert len(BIG_BODY) > InlinePolicy.MAX_BYTES
    assert post(client, BIG_BODY).status == 200 and threads[-1].startswith("predict")
    client.shutdown()


def test_a_slow_model_stays_on_the_prediction_thread(linear_handler, model_dir, asgi_client):
    client, threads = _thread_recording_client(linear_handler, model_dir, asgi_client, delays=[0.005] * 4)
    for _ in range(4):
        assert post(client).status == 200
    assert all(name.startswith("predict") for name in threads)
    client.shutdown()


def test_inline_predictions_can_be_turned_off(linear_handler, model_dir, asgi_client):
    client, threads = _thread_recording_client(linear_handler, model_dir, asgi_client,
                                               SMKIT_INLINE_PREDICTIONS="false")
    for _ in range(3):
        assert post(client).status == 200
    assert all(name.startswith("predict") for name in threads)
    client.shutdown()


def test_the_moving_average_sends_requests_back_to_the_thread_after_a_slow_one():
    policy = InlinePolicy()
    request = Request(b"[[1, 2]]", "application/json", None, "id")
    answer = Response(200, b"", "text/csv")
    assert not policy.inline(request)  # nothing timed yet
    policy.timed(lambda _: answer, request)
    assert policy.inline(request)
    policy.timed(lambda _: time.sleep(0.05) or answer, request)  # one 50 ms prediction
    assert not policy.inline(request)
    while not policy.inline(request):  # fast ones, timed on the thread, bring the average back down
        policy.timed(lambda _: answer, request)
    assert policy.average_ms < InlinePolicy.MAX_MS


def test_nothing_runs_inline_beside_a_prediction_on_the_thread(linear_handler, model_dir, asgi_client):
    gate = threading.Event()
    client, threads = _thread_recording_client(linear_handler, model_dir, asgi_client, gate=gate)
    assert post(client).status == 200  # timed on the thread: small requests may now run inline

    async def scenario():
        slow = asyncio.ensure_future(client.arequest("POST", "/invocations", {"content-type": "application/json"},
                                                     BIG_BODY))
        await asyncio.sleep(0.05)
        small = asyncio.ensure_future(client.arequest("POST", "/invocations", {"content-type": "application/json"},
                                                      b"[[1, 2]]"))
        await asyncio.sleep(0.05)
        waited = not small.done()  # queued behind the running prediction, not run beside it
        gate.set()
        return waited, await slow, await small

    waited, slow, small = client.loop.run_until_complete(asyncio.wait_for(scenario(), 10))
    assert waited and (slow.status, small.status, small.body) == (200, 200, b"[5.0]")
    assert all(name.startswith("predict") for name in threads)
    assert client.app.inline_policy.handed_off == 0  # both left the thread's count when they finished
    client.shutdown()
