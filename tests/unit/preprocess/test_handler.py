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
from serving_common.settings import Settings, SettingsError

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


def test_the_handler_follows_the_settings_it_is_given_not_the_environment(model_dir, monkeypatch):
    monkeypatch.setenv("SMKIT_OUTPUT_LABEL", "true")  # what the server read is what counts: the settings
    monkeypatch.setenv("SMKIT_RECORD_ERRORS", "line")
    handler = PreprocessHandler()
    handler.settings = Settings()
    assert (handler.output_label, handler.errors_in_line) == (False, False)
    assert len(json.loads(_answer(handler, handler.load(model_dir), JSON))["instances"][0]) == 3  # no label
    labelled = PreprocessHandler()
    labelled.settings = Settings(output_label=True, record_errors="line")
    assert labelled.errors_in_line
    row = json.loads(_answer(labelled, labelled.load(model_dir), JSON))["instances"][0]
    assert len(row) == 4 and row[0] == 1.0


def test_a_bad_value_of_its_variables_is_a_clear_error(model_dir, monkeypatch):
    monkeypatch.setenv("SMKIT_OUTPUT_LABEL", "first")
    with pytest.raises(SettingsError, match="SMKIT_OUTPUT_LABEL='first' is not a boolean"):
        PreprocessHandler().load(model_dir)
    monkeypatch.setenv("SMKIT_OUTPUT_LABEL", "false")
    monkeypatch.setenv("SMKIT_RECORD_ERRORS", "lines")
    with pytest.raises(SettingsError, match="SMKIT_RECORD_ERRORS='lines' is not one of fail, line"):
        PreprocessHandler().load(model_dir)
