"""The preprocess handler's outputs: types and layout as docs/formats.md states them."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from preprocess_container.handler import PreprocessHandler
from serving_common.content_types import JSON, NPY, parse
from serving_common.features.features import FittedFeatures
from serving_common.features.spec import FeatureSpec
from serving_common.handler import RequestContext

RECORDS = [{"a": 1.0, "c": "x", "y": True}, {"a": 2.0, "c": "z", "y": 0}, {"a": 3.0, "c": "x", "y": 1}]


@pytest.fixture
def model_dir(tmp_path):
    FittedFeatures.fit(RECORDS, FeatureSpec(numeric=["a"], categorical=["c"], label="y")).save(tmp_path)
    return tmp_path


def _answer(handler: PreprocessHandler, model, accept: str) -> bytes:
    context = RequestContext("r", JSON, accept)
    data = handler.decode(json.dumps(RECORDS[:2]).encode(), parse(JSON), context)
    return handler.encode(handler.predict(model, data, context), accept, context)


def test_default_accept_is_json_and_npy_is_float64(model_dir):
    handler = PreprocessHandler()
    assert handler.default_accept == JSON
    array = np.load(io.BytesIO(_answer(handler, handler.load(model_dir), NPY)), allow_pickle=False)
    assert array.dtype == np.float64 and array.shape == (2, 3)


def test_output_label_leads_every_output_type_as_a_float(model_dir, monkeypatch):
    monkeypatch.setenv("SMKIT_OUTPUT_LABEL", "true")
    handler = PreprocessHandler()
    model = handler.load(model_dir)
    assert _answer(handler, model, "text/csv").decode().splitlines()[0].split(",")[0] == "1.0"  # true -> 1.0
    assert json.loads(_answer(handler, model, JSON))["instances"][1][0] == 0.0
    assert json.loads(_answer(handler, model, "application/jsonlines").splitlines()[0])[0] == 1.0
    array = np.load(io.BytesIO(_answer(handler, model, NPY)), allow_pickle=False)
    assert array.dtype == np.float64 and array[:, 0].tolist() == [1.0, 0.0] and array.shape == (2, 4)
