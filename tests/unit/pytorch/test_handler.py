"""The PyTorch handler: decoders (tensors as AWS's toolkit makes them), width checks, warm-up, encoders,
and model_fn modules prepared once."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from pytorch_container.handler import PyTorchHandler, as_tensor
from pytorch_container.model import ModelLoadError, ServedModel
from serving_common.content_types import parse
from serving_common.errors import BadRequest, ModelError
from serving_common.handler import RequestContext

from .conftest import WIDTH, Affine

CONTEXT = RequestContext("r1", "text/csv", "application/json")


def decode(body: bytes, content_type: str) -> torch.Tensor:
    return PyTorchHandler().decode(body, parse(content_type), CONTEXT)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


ROWS = [[0.1, 2.0, -3.5, 4.0, 1e-3], [1.0, 0.0, 0.0, 0.0, 7.25]]


@pytest.mark.parametrize(("body", "content_type"), [
    ("\n".join(",".join(repr(v) for v in row) for row in ROWS).encode(), "text/csv"),
    (b"0.1, 2.0,-3.5,4.0,0.001\r\n\n1,0,0,0,7.25\n", "text/csv; charset=utf-8"),
    (json.dumps(ROWS).encode(), "application/json"),
    (json.dumps({"instances": ROWS}).encode(), "application/json"),
    ("\n".join(json.dumps(row) for row in ROWS).encode(), "application/jsonlines"),
])
def test_text_input_becomes_a_float32_tensor_as_in_aws_toolkit(body, content_type):
    tensor = decode(body, content_type)
    assert tensor.dtype == torch.float32
    assert torch.equal(tensor, torch.tensor(ROWS, dtype=torch.float32))


def test_a_single_json_row_is_one_row():
    assert decode(json.dumps(ROWS[0]).encode(), "application/json").shape == (1, WIDTH)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32])
def test_npy_input_keeps_its_dtype(dtype):
    array = np.array(ROWS).astype(dtype)
    tensor = decode(npy(array), "application/x-npy")
    assert tensor.dtype == torch.from_numpy(array).dtype
    assert np.array_equal(tensor.numpy(), array)


def test_a_1d_npy_array_is_one_row():
    assert decode(npy(np.array(ROWS[0])), "application/x-npy").shape == (1, WIDTH)


@pytest.mark.parametrize(("body", "content_type", "message"), [
    (b"1,2,,4,5", "text/csv", r"row 0, column 2: missing value"),
    (b"[[1, null, 3, 4, 5]]", "application/json", r"row 0, column 1: missing value"),
    (b"1,2,inf,4,5", "text/csv", "not finite"),
    (b"1,2,abc,4,5", "text/csv", "'abc' is not a number"),
    (b"", "text/csv", "empty"),
    (b'{"rows": [1]}', "application/json", "instances"),
])
def test_bad_text_input_is_a_400(body, content_type, message):
    with pytest.raises(BadRequest, match=message):
        decode(body, content_type)


@pytest.mark.parametrize(("array", "message"), [
    (np.array([[1.0, np.nan]]), "missing value"),
    (np.array([[1.0, np.inf]]), "not finite"),
    (np.array(["a", "b"]), "must be numeric"),
    (np.zeros((2, 2, 2)), "1-D or 2-D"),
])
def test_bad_npy_input_is_a_400(array, message):
    with pytest.raises(BadRequest, match=message):
        decode(npy(array), "application/x-npy")


def test_as_tensor_keeps_an_integer_matrix():
    tensor = as_tensor(np.array([[1, 2]], dtype=np.int64), "application/x-npy")
    assert tensor.dtype == torch.int64


def test_load_warms_up_and_predictions_are_checked_for_width(scripted_dir):
    handler = PyTorchHandler()
    served = handler.load(scripted_dir)
    assert handler.predict(served, torch.ones(2, WIDTH), CONTEXT).tolist() == [11.0, 11.0]
    with pytest.raises(BadRequest, match=f"expected {WIDTH} features per row, received 3"):
        handler.predict(served, torch.ones(2, 3), CONTEXT)


def test_a_model_that_fails_the_warm_up_fails_the_load(scripted_dir):
    (scripted_dir / "pytorch-meta.json").write_text('{"num_features": 3}')  # the model takes 5
    with pytest.raises(RuntimeError):
        PyTorchHandler().load(scripted_dir)


def test_a_model_returning_no_tensor_fails_the_warm_up(tmp_path):
    class Pair(torch.nn.Module):
        def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return rows, rows

    torch.jit.script(Pair()).save(str(tmp_path / "model.pt"))
    (tmp_path / "pytorch-meta.json").write_text('{"num_features": 2}')
    with pytest.raises(ModelLoadError, match="returns tuple, not a tensor: give an output_fn"):
        PyTorchHandler().load(tmp_path)


def test_a_model_fn_module_is_prepared_once_and_cast(tmp_path):
    handler = PyTorchHandler()
    eager = Affine(torch.float64).train()
    first = handler.predict(eager, torch.ones(1, WIDTH), CONTEXT)
    assert not eager.training and first.dtype == torch.float64 and first.tolist() == [11.0]
    adopted = handler.served(eager)
    handler.predict(eager, torch.ones(1, WIDTH), CONTEXT)
    assert handler.served(eager) is adopted  # not prepared again per request
    other = Affine()
    assert handler.served(other) is not adopted and handler.served(other).module is other


def test_a_model_fn_returning_no_module_without_predict_fn_is_a_model_error():
    with pytest.raises(ModelError, match=r"model_fn returned dict: .*torch\.nn\.Module"):
        PyTorchHandler().predict({"weights": 1}, torch.ones(1, WIDTH), CONTEXT)


@pytest.mark.parametrize(("accept", "expected"), [
    ("application/json", b"[11.0,1.5]"),
    ("text/csv", b"11.0\n1.5\n"),  # one line per row, each ended (serving_common.encoders)
    ("application/jsonlines", b"11.0\n1.5\n"),
])
def test_encode_writes_the_output_tensor_as_it_is(accept, expected):
    assert PyTorchHandler().encode(torch.tensor([11.0, 1.5]), accept, CONTEXT) == expected


def test_encode_npy_round_trips_a_2d_output():
    output = torch.tensor([[0.25, 1.0], [3.0, -1.0]])
    body = PyTorchHandler().encode(output, "application/x-npy", CONTEXT)
    assert np.array_equal(np.load(io.BytesIO(body)), output.numpy())


def test_a_non_finite_output_is_a_model_error():
    with pytest.raises(ModelError):
        PyTorchHandler().encode(torch.tensor([float("nan")]), "application/json", CONTEXT)


def test_served_model_is_used_as_is(scripted_dir):
    handler = PyTorchHandler()
    served = ServedModel.prepare(Affine(), torch.device("cpu"), WIDTH)
    assert handler.served(served) is served
