"""Service.invoke: the request -> status table, and the JSON error body every failure is answered with."""

from __future__ import annotations

import io
import logging

import numpy as np
import orjson
import pytest

from serving_common.content_types import CSV, JSON
from serving_common.errors import BadRequest
from serving_common.handler import Handler
from serving_common.invocations import Request, Response, Service, error_response


@pytest.fixture
def service(linear_handler, model_dir) -> Service:
    handler = linear_handler()
    return Service(handler, handler.load(model_dir))


def invoke(service: Service, body: bytes, content_type: str | None = "application/json",
           accept: str | None = None, custom_attributes: str | None = None) -> Response:
    return service.invoke(Request(body, content_type, accept, "req-1", custom_attributes))


def assert_error(response: Response, status: int, title: str, *fragments: str) -> dict:
    assert response.status == status
    assert response.content_type == "application/json"
    error = orjson.loads(response.body)
    assert set(error) == {"error", "message"}
    assert error["error"] == title
    for fragment in fragments:
        assert fragment in error["message"]
    return error


def test_json_prediction(service):
    response = invoke(service, b"[[1, 2], [3, 4]]")
    assert (response.status, response.content_type) == (200, JSON)
    assert orjson.loads(response.body) == [5.0, 11.0]


def test_csv_in_csv_out_with_parameters(service):
    response = invoke(service, b"1,2\n3,4\n", "text/csv; charset=utf-8", "text/csv; charset=utf-8")
    assert (response.status, response.content_type, response.body) == (200, CSV, b"5.0\n11.0\n")


def test_jsonlines_and_npy(service):
    response = invoke(service, b"[1, 1]\n\n[0, 1]", "application/x-jsonlines", "application/x-npy")
    assert response.status == 200
    np.testing.assert_array_equal(np.load(io.BytesIO(response.body)), [3.0, 2.0])


def test_npy_request(service):
    buffer = io.BytesIO()
    np.save(buffer, np.array([[2.0, 0.5]]))
    response = invoke(service, buffer.getvalue(), "application/x-npy", "text/csv")
    assert (response.status, response.body) == (200, b"3.0\n")


@pytest.mark.parametrize(("body", "content_type", "accept", "status", "title", "fragment"), [
    (b"", "application/json", None, 400, "BadRequest", "empty"),
    (b"[]", "application/json", None, 400, "BadRequest", "no instances"),
    (b'{"instances": []}', "application/json", None, 400, "BadRequest", "no instances"),
    (b"[[1, NaN]]", "application/json", None, 400, "BadRequest", "invalid JSON"),
    (b"[[1, 2, 3]]", "application/json", None, 400, "BadRequest", "shape (1, 3)"),
    (b"1,2,3", "text/csv", None, 400, "BadRequest", "expected rows of 2 features"),
    (b"1,x", "text/csv", None, 400, "BadRequest", "could not convert"),
    (b"1,2\n\xff\xfe,3", "text/csv", None, 400, "BadRequest", "not valid utf-8"),
    (b'[[1, 2], "caf\xe9"]', "application/json", None, 400, "BadRequest", "UTF-8"),
    (b"[[1, 2]]", "image/png", None, 415, "UnsupportedMediaType", "image/png"),
    (b"[[1, 2]]", None, None, 415, "UnsupportedMediaType", "no Content-Type"),
    (b"[[1, 2]]", "text/csv; charset=bogus-8", None, 415, "UnsupportedMediaType", "bogus-8"),
    (b"[[1, 2]]", "application/json", "text/html", 406, "NotAcceptable", "text/html"),
])
def test_status_table(service, body, content_type, accept, status, title, fragment):
    assert_error(invoke(service, body, content_type, accept), status, title, fragment)


class BuggyHandler(Handler):
    def load(self, model_dir):
        return 0

    def predict(self, model, data, context):
        return len(data) / model  # ZeroDivisionError: a bug in the model code


def test_handler_bug_is_500_with_a_json_body(caplog):
    caplog.set_level(logging.ERROR, logger="serving_common.invocations")
    response = invoke(Service(BuggyHandler(), 0), b"[1]")
    assert_error(response, 500, "ModelError", "ZeroDivisionError", "division by zero")
    assert "req-1" in caplog.text  # logged with the request id and its traceback
    assert "Traceback" in caplog.text


class NonFiniteHandler(Handler):
    def predict(self, model, data, context):
        return np.full(len(data), np.inf)


@pytest.mark.parametrize("accept", ["application/json", "text/csv", "application/jsonlines", "application/x-npy"])
def test_non_finite_model_output_is_500(accept):
    response = invoke(Service(NonFiniteHandler(), None), b"[1, 2]", accept=accept)
    assert_error(response, 500, "ModelError", "not finite")


class TupleHandler(Handler):
    def predict(self, model, data, context):
        return data

    def encode(self, prediction, accept, context):
        return f"{len(prediction)} items as {accept}", "text/plain"


def test_handler_may_return_body_and_content_type():
    response = invoke(Service(TupleHandler(), None), b"[1, 2, 3]", accept="text/csv")
    assert (response.status, response.body, response.content_type) == (200, b"3 items as text/csv", "text/plain")


class StrictDecodeHandler(Handler):
    content_types = (CSV,)

    def decode(self, body, media_type, context):
        return [int(cell) for cell in body.decode().split(",")]  # ValueError for "a"

    def predict(self, model, data, context):
        return data


def test_value_error_from_decode_is_400():
    response = invoke(Service(StrictDecodeHandler(), None), b"1,a", "text/csv")
    assert_error(response, 400, "BadRequest", "invalid literal for int()")


def test_unicode_error_from_decode_is_400():
    response = invoke(Service(StrictDecodeHandler(), None), b"1,\xff", "text/csv")
    assert_error(response, 400, "BadRequest", "utf-8")


class ValueErrorInPredict(Handler):
    def predict(self, model, data, context):
        raise ValueError("model bug")


def test_value_error_from_predict_is_500_not_400():
    assert_error(invoke(Service(ValueErrorInPredict(), None), b"[1]"), 500, "ModelError", "ValueError: model bug")


class BadRequestInPredict(Handler):
    def predict(self, model, data, context):
        raise BadRequest(f"feature {data['name']!r} is unknown")


def test_http_error_from_predict_keeps_its_status():
    assert_error(invoke(Service(BadRequestInPredict(), None), b'{"name": "zz"}'), 400, "BadRequest", "'zz'")


class ContextHandler(Handler):
    content_types = (JSON,)
    accepts = (JSON, CSV)

    def predict(self, model, data, context):
        return {"id": context.request_id, "content_type": context.content_type, "accept": context.accept,
                "attributes": context.custom_attributes}


def test_handler_sees_the_request_context():
    response = invoke(Service(ContextHandler(), None), b"{}", "application/json; charset=utf-8", None,
                      "trace=abc,tenant=7")
    assert orjson.loads(response.body) == {"id": "req-1", "content_type": JSON, "accept": JSON,
                                           "attributes": "trace=abc,tenant=7"}


@pytest.mark.parametrize("default", ["text/csv", "text/csv; charset=utf-8", "TEXT/CSV"])
def test_default_accept_override_is_used_for_missing_and_wildcard_accept(service, default):
    service = Service(service.handler, service.model, default)
    for accept in (None, "*/*"):
        response = invoke(service, b"[[1, 1]]", accept=accept)
        assert (response.status, response.content_type, response.body) == (200, CSV, b"3.0\n")


def test_default_accept_alias_is_resolved(service):
    service = Service(service.handler, service.model, "application/x-jsonlines")
    response = invoke(service, b"[[1, 1], [2, 2]]")
    assert (response.status, response.content_type, response.body) == (200, "application/jsonlines", b"3.0\n6.0\n")


class AnyOutputHandler(Handler):
    """Like a script with output_fn: any Accept goes to encode, which answers in it."""

    accepts = None

    def predict(self, model, data, context):
        return data

    def encode(self, prediction, accept, context):
        return orjson.dumps({"accept": accept})


@pytest.mark.parametrize(("accept", "expected"), [
    (None, JSON),
    ("*/*", JSON),
    ("text/plain", "text/plain"),
    ("text/plain; charset=utf-8", "text/plain"),
    ("application/x-jsonlines", "application/jsonlines"),
    ("text/plain;q=0.5, image/png", "image/png"),
    ("image/png, */*;q=0.1", "image/png"),
])
def test_any_accept_handler_gets_one_media_type(accept, expected):
    response = invoke(Service(AnyOutputHandler(), None), b"[1]", accept=accept)
    assert response.status == 200
    assert orjson.loads(response.body) == {"accept": expected}
    assert response.content_type == expected


class WrongBodyType(Handler):
    def predict(self, model, data, context):
        return data

    def encode(self, prediction, accept, context):
        return prediction  # a list, not bytes


def test_non_bytes_body_is_500():
    assert_error(invoke(Service(WrongBodyType(), None), b"[1]"), 500, "ModelError", "bytes or str")


def test_error_response_shape():
    response = error_response(BadRequest('quote " and ünïcode'))
    assert response.status == 400
    assert orjson.loads(response.body) == {"error": "BadRequest", "message": 'quote " and ünïcode'}


XGBOOST_ERROR = ("[13:14:57] /workspace/src/c_api/c_api.cc:1513: Invalid model format. Expecting UBJSON (`ubj`) "
                 "or JSON (`json`), got ``\nStack trace:\n  [bt] (0) /opt/venv/lib/python3.11/site-packages/xgboost/"
                 "lib/libxgboost.so(+0x11031e) [0x7f1e3731031e]\n  [bt] (1) /opt/venv/lib/libxgboost.so(+0x2a)")


class NativeFailureHandler(Handler):
    def load(self, model_dir):
        return None

    def predict(self, model, data, context):
        raise RuntimeError(XGBOOST_ERROR)


def test_error_body_names_the_failure_in_one_line_without_native_trace_or_paths(caplog):
    service = Service(NativeFailureHandler(), None)
    with caplog.at_level(logging.ERROR):
        response = service.invoke(Request(b"[[1]]", JSON, JSON, "r1"))
    body = orjson.loads(response.body)
    assert response.status == 500
    assert body["message"] == ("RuntimeError: Invalid model format. Expecting UBJSON (`ubj`) or JSON (`json`), "
                               "got ``")
    assert "libxgboost.so" in caplog.text  # the whole story is in the log


def test_error_bodies_are_one_line_and_bounded():
    body = orjson.loads(error_response(BadRequest("first line\nsecond line")).body)
    assert body["message"] == "first line"
    long = orjson.loads(error_response(BadRequest("x" * 10_000)).body)["message"]
    assert len(long) == 500 and long.endswith("…")
