"""serving_common.arrays: decoded request data -> a float matrix, fast path and exact errors."""

from __future__ import annotations

import numpy as np
import pytest

from serving_common import decoders, encoders
from serving_common.arrays import plain_csv_matrix, to_matrix
from serving_common.content_types import CSV, JSON, JSONLINES, NPY, parse
from serving_common.errors import BadRequest


def _slow(body: bytes) -> np.ndarray:
    return to_matrix(decoders.decode(body, parse(CSV)), CSV)


@pytest.mark.parametrize("body", [
    b"1,2,3\n4,5,6", b"0.1, -2e-5 ,nan\r\n\n3,4,5\n", b"5e-324,1e308,-0.0",
    # digits only: read by orjson; then what JSON does not spell, which falls back to float() per cell
    b"1\n2\n3", b"1.5E+3,-0,00\n.5,+1,1.", b"1,2\r\n\r\n3,4\r\n", b"\t7 , 8\t\n9,10",
    b"123456789012345678901234567890,1",
    ",".join(repr(float(v)) for v in np.random.default_rng(0).normal(size=300)).encode(),
])
def test_plain_csv_fast_path_equals_the_full_parser(body):
    fast = plain_csv_matrix(body)
    assert fast is not None
    assert np.array_equal(fast, _slow(body), equal_nan=True)


@pytest.mark.parametrize("body", [b'"1",2', b"1,,3", b"1,abc", b"1,inf", b"1,2\n3", b"", b"\n\n",
                                  b"1e999,1", b"[1],2", b"1,-", b"1,2\n3,4,5", b"1,2,"])
def test_plain_csv_fast_path_declines_what_needs_the_full_parser(body):
    assert plain_csv_matrix(body) is None


@pytest.mark.parametrize(("body", "message"), [
    (b"1,abc", "row 0, column 1: 'abc' is not a number"),
    (b"1,2\n3", "row 1 has 1 values; row 0 has 2"),
    (b"1,-inf", "row 0, column 1: '-inf' is not finite"),
])
def test_the_full_parser_names_row_and_column(body, message):
    with pytest.raises(BadRequest, match=message):
        _slow(body)


def test_empty_csv_cells_are_missing_values():
    assert np.isnan(_slow(b"1,,3")[0, 1])


def test_json_jsonlines_and_npy_shapes():
    assert to_matrix([1, 2], JSON).shape == (1, 2)
    assert to_matrix({"instances": [[1, 2], [3, None]]}, JSON).shape == (2, 2)
    assert to_matrix([[1, 2], {"instances": [3, 4]}], JSONLINES).tolist() == [[1, 2], [3, 4]]
    assert to_matrix(np.arange(3.0), NPY).shape == (1, 3)
    with pytest.raises(BadRequest, match="numeric"):
        to_matrix(np.array(["a"]), NPY)


@pytest.mark.parametrize("prediction", [
    np.array([0.1, 1e-5, -2.0, 5e-324]),
    np.array([[0.1, 0.2], [1e308, -0.0]]),
    np.array([0.1, 0.7], dtype=np.float32),
])
def test_csv_encoding_fast_path_round_trips_exactly(prediction):
    text = encoders.encode_csv(prediction).decode()
    parsed = np.array([[float(v) for v in line.split(",")] for line in text.splitlines()])
    assert np.array_equal(parsed.reshape(prediction.shape), prediction.astype(np.float64))
    generic = encoders.encode_csv(prediction.tolist())  # the per-cell path gives the same bytes
    assert text.encode() == generic


def test_builtin_algorithms_features_rows_are_read():
    # SageMaker's built-in algorithms' JSON request shape, and its JSON Lines form
    expected = [[1.0, 2.0], [3.0, float("nan")]]
    for data, media in (({"instances": [{"features": [1, 2]}, {"features": [3, None]}]}, JSON),
                        ([{"features": [1, 2]}, {"features": [3, None]}], JSONLINES),
                        ({"instances": [[1, 2], [3, None]]}, JSON)):
        assert np.array_equal(to_matrix(data, media), np.array(expected), equal_nan=True)
    assert to_matrix({"features": [1, 2]}, JSON).tolist() == [[1.0, 2.0]]


@pytest.mark.parametrize(("data", "message"), [
    ({"instances": [{"values": [1, 2]}]}, "row 0: expected a list of numbers or {\"features\""),
    ({"instances": [[1, 2]], "extra": 1}, "'extra'"),
    ({"features": [1], "id": 3}, "'features', 'id'"),
])
def test_other_objects_are_400_naming_their_keys(data, message):
    with pytest.raises(BadRequest, match=message.replace("{", r"\{").replace("[", r"\[")):
        to_matrix(data, JSON)


def test_json_booleans_are_one_and_zero():
    # one rule in every image: the preprocess image reads true/false in numeric fields as 1/0 too
    assert to_matrix([[True, False, 2]], JSON).tolist() == [[1.0, 0.0, 2.0]]
    assert to_matrix([[True, None]], JSONLINES).tolist()[0][0] == 1.0
