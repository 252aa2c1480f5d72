"""Predictions -> response bodies: exact CSV numbers, layouts, JSON with numpy, NPY, and non-finite 500s."""

from __future__ import annotations

import io
import math

import numpy as np
import orjson
import pytest

from serving_common import decoders, encoders
from serving_common.content_types import CSV, JSON, JSONLINES, NPY, parse
from serving_common.errors import ModelError, NotAcceptable
from serving_common.handler import Handler
from serving_common.invocations import Request, Service

SPECIAL_DOUBLES = [0.1, 0.2, 1 / 3, 5e-324, -5e-324, 1e308, 1.7976931348623157e308, 2.2250738585072014e-308,
                   1e-7, 123456789.123456789, 2.0**53 + 2, -0.0, 0.0, 1.0, 100.0, 1e16, 1e22, 9007199254740993.0]


def random_doubles(count: int = 4000) -> np.ndarray:
    """Doubles spread over every exponent: random bit patterns, non-finite ones dropped."""
    bits = np.random.default_rng(20240601).integers(0, 2**64, size=count, dtype=np.uint64)
    values = bits.view(np.float64)
    return values[np.isfinite(values)]


def test_csv_numbers_round_trip_exactly():
    values = np.concatenate([random_doubles(), SPECIAL_DOUBLES])
    lines = encoders.encode_csv(values).decode().splitlines()
    assert len(lines) == len(values)
    for text, value in zip(lines, values, strict=True):
        parsed = float(text)
        assert parsed == value, text
        assert math.copysign(1, parsed) == math.copysign(1, value), text


def test_csv_numbers_round_trip_from_python_lists_and_numpy_scalars():
    values = [float(v) for v in random_doubles(500)] + SPECIAL_DOUBLES
    assert [float(t) for t in encoders.encode_csv(values).decode().splitlines()] == values
    numpy_scalars = [np.float64(v) for v in values]
    assert [float(t) for t in encoders.encode_csv(numpy_scalars).decode().splitlines()] == values


def test_csv_float32_cells_parse_back_to_the_same_float32():
    values = np.random.default_rng(1).standard_normal(200).astype(np.float32)
    texts = encoders.encode_csv(list(values)).decode().splitlines()
    assert [np.float32(t) for t in texts] == list(values)


def test_csv_shortest_text():
    assert encoders.encode_csv([0.1, 5e-324, 1e308, 3.0]) == b"0.1\n5e-324\n1e+308\n3.0\n"


def test_csv_round_trips_through_the_csv_decoder():
    matrix = random_doubles(300)[:300 // 3 * 3].reshape(-1, 3)
    rows = decoders.decode(encoders.encode_csv(matrix), parse("text/csv"))
    np.testing.assert_array_equal(np.asarray(rows, dtype=float), matrix)


def test_csv_layout_1d_is_one_value_per_line_2d_one_row_per_line():
    assert encoders.encode_csv(np.array([1.5, 2.0, -3.25])) == b"1.5\n2.0\n-3.25\n"
    assert encoders.encode_csv(np.array([[1, 2, 3], [4, 5, 6]])) == b"1,2,3\n4,5,6\n"
    assert encoders.encode_csv([[1.5, "a"], [2, "b"]]) == b"1.5,a\n2,b\n"
    assert encoders.encode_csv([(1, 2), (3, 4)]) == b"1,2\n3,4\n"
    assert encoders.encode_csv(np.array([[7.0]])) == b"7.0\n"


def test_csv_ends_every_line_with_a_newline_and_has_no_header():
    for body in (encoders.encode_csv(np.arange(4).reshape(2, 2)), encoders.encode_csv(np.arange(4.0).reshape(2, 2)),
                 encoders.encode_csv(np.array([0.5])), encoders.encode_csv([["a", 1]])):
        assert body.endswith(b"\n") and not body.endswith(b"\n\n"), body
    assert encoders.encode_csv(np.arange(4).reshape(2, 2)).split(b"\n")[0] == b"0,1"


@pytest.mark.parametrize("encode, media", [(encoders.encode_csv, "text/csv"),
                                          (encoders.encode_jsonlines, "application/jsonlines")])
@pytest.mark.parametrize("first, second", [(np.array([[0.09000928699970245, 1.0]]), np.array([[0.125, 2.0]])),
                                           (np.arange(6.0).reshape(3, 2), np.arange(4.0).reshape(2, 2) + 0.5)])
def test_responses_concatenated_as_batch_transform_does_keep_their_rows_apart(encode, media, first, second):
    # AssembleWith=None joins the mini-batches' responses as they are: every row must stay a row.
    joined = encode(first) + encode(second)
    rows = decoders.decode(joined, parse(media))
    np.testing.assert_array_equal(np.asarray(rows, dtype=float), np.vstack([first, second]))
    assert joined.count(b"\n") == len(first) + len(second)


def test_csv_quotes_strings_that_need_it():
    body = encoders.encode_csv([["a,b", 'say "hi"', "plain", "two\nlines"]])
    assert body == b'"a,b","say ""hi""",plain,"two\nlines"\n'
    assert decoders.decode(body, parse("text/csv")) == [["a,b", 'say "hi"', "plain", "two\nlines"]]


def test_csv_refuses_more_than_two_dimensions():
    with pytest.raises(ModelError):
        encoders.encode_csv(np.zeros((2, 2, 2)))


def test_json_with_numpy():
    prediction = {"predictions": np.array([[0.1, 0.9], [0.75, 0.25]]), "labels": np.array([1, 0]),
                  "count": np.int64(2), "score": np.float32(0.5)}
    assert orjson.loads(encoders.encode_json(prediction)) == {
        "predictions": [[0.1, 0.9], [0.75, 0.25]], "labels": [1, 0], "count": 2, "score": 0.5}


def test_json_numbers_round_trip_exactly():
    values = np.concatenate([random_doubles(), SPECIAL_DOUBLES])
    assert orjson.loads(encoders.encode_json(values)) == values.tolist()


def test_json_keeps_legitimate_nulls():
    assert encoders.encode_json({"label": None, "scores": [1.0, None]}) == b'{"label":null,"scores":[1.0,null]}'


def test_jsonlines_one_value_per_row_each_line_ended():
    body = encoders.encode_jsonlines(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert body == b"[1.0,2.0]\n[3.0,4.0]\n"
    assert encoders.encode_jsonlines([{"a": 1}, {"a": 2}]) == b'{"a":1}\n{"a":2}\n'


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.array([0.1, 5e-324, 1e308]),
    np.array([[1, 2]], dtype=np.int16),
])
def test_npy_round_trip(array):
    decoded = np.load(io.BytesIO(encoders.encode_npy(array)), allow_pickle=False)
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


def test_npy_from_a_list():
    decoded = np.load(io.BytesIO(encoders.encode_npy([[1.5, 2.5]])), allow_pickle=False)
    np.testing.assert_array_equal(decoded, [[1.5, 2.5]])


NON_FINITE_PREDICTIONS = [
    np.array([1.0, np.nan]),
    np.array([[1.0, 2.0], [np.inf, 0.0]]),
    np.array([-np.inf], dtype=np.float32),
    [1.0, float("nan")],
    [[0.5], [float("inf")]],
    [np.float64("nan")],
]


@pytest.mark.parametrize("accept", [JSON, JSONLINES, CSV, NPY])
@pytest.mark.parametrize("prediction", NON_FINITE_PREDICTIONS, ids=range(len(NON_FINITE_PREDICTIONS)))
def test_non_finite_output_is_a_model_error(accept, prediction):
    with pytest.raises(ModelError) as caught:
        encoders.encode(prediction, accept)
    assert caught.value.status == 500
    assert "finite" in caught.value.message


def test_non_finite_inside_a_json_document_is_a_model_error():
    with pytest.raises(ModelError):
        encoders.encode_json({"predictions": np.array([0.5, np.nan])})
    with pytest.raises(ModelError):
        encoders.encode_json({"scores": [{"score": float("-inf")}]})


def test_check_finite_names_the_index():
    with pytest.raises(ModelError) as caught:
        encoders.check_finite(np.array([[0.0, 1.0], [2.0, np.nan]]))
    assert "(1, 1)" in caught.value.message
    encoders.check_finite(np.array([1, 2, 3]))  # integers are always finite


def test_unknown_accept_is_406():
    with pytest.raises(NotAcceptable) as caught:
        encoders.encode([1], "text/html")
    assert caught.value.status == 406


class _Echo(Handler):
    def load(self, model_dir):
        return None

    def decode(self, body, media_type, context):
        return [[1.0, 2.0], [3.0, 4.0]]

    def predict(self, model, data, context):
        return np.asarray(data)


@pytest.mark.parametrize("accept", [
    "application/json", "application/jsonlines", "text/csv", "application/x-npy",
    "text/csv; charset=utf-8", "application/x-jsonlines", "application/json; charset=utf-8", "*/*", None])
def test_no_charset_parameter_in_any_response_type(accept):
    response = Service(_Echo(), None).invoke(Request(b"x", "application/json", accept, "id"))
    assert response.status == 200
    assert ";" not in response.content_type
    assert "charset" not in response.content_type
    assert response.content_type in (JSON, JSONLINES, CSV, NPY)
