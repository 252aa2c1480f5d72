"""One JSON error body (errors.error_body) for the model server, its protocol errors and the pipeline front."""

from __future__ import annotations

import asyncio

import orjson

from serving_common.errors import BadRequest, NotFound, error_body
from serving_common.invocations import error_response
from serving_common.pipeline import PipelineApp, PipelineConfig, Stage
from serving_common.protocol import error_head_and_body

NATIVE = "[12:34:56] /src/learner.cc:123: Check failed: bad model\nStack trace:\n  [bt] (0) libxgboost.so"


def test_the_body_is_one_line_without_native_traces():
    body = orjson.loads(error_body("ModelError", NATIVE))
    assert body == {"error": "ModelError", "message": "Check failed: bad model"}


def test_the_model_server_and_its_protocol_errors_answer_the_same_body():
    error = BadRequest(NATIVE)
    assert error_response(error).body == error.body() == error_body("BadRequest", NATIVE)
    assert error_head_and_body(error).endswith(b"\r\n\r\n" + error.body())


def test_the_pipeline_front_answers_the_same_body():
    app = PipelineApp(PipelineConfig(stages=(Stage(1, "a", "127.0.0.1", 9),)))
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def call():
        await app({"type": "http", "path": "/nowhere", "method": "GET", "headers": []}, receive, send)
        await app.shutdown()

    asyncio.run(call())
    assert sent[0]["status"] == 404
    assert sent[1]["body"] == NotFound("no route GET /nowhere").body()
