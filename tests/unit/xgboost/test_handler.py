"""Serving in-process on models trained by the container itself: load, decode, predict, encode."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import orjson
import pytest
import scipy.sparse
import xgboost

from serving_common.content_types import CSV, JSON, JSONLINES, LIBSVM, NPY, parse
from serving_common.errors import BadRequest
from serving_common.handler import RequestContext
from serving_common.settings import MODEL_SERVER_WORKERS, Settings
from serving_common.training.harness import run
from xgboost_container.fast.xgboost_c_api import DensePredictor
from xgboost_container.handler import XGBoostHandler, threads_per_worker
from xgboost_container.hyperparameters import HYPERPARAMETERS
from xgboost_container.train import train

from .jobs import csv_text, regression_table, write_json

ROWS = np.array([[0.5, -1.0, 2.0], [-0.3, 0.7, 0.0], [1.5, 1.5, -2.5]])


def _train(folder: Path, hyperparameters: dict[str, str], table: np.ndarray) -> Path:
    """A model trained by the container's own training, in ``folder/model`` (as SageMaker would extract it)."""
    write_json(folder / "input" / "config" / "hyperparameters.json", {**hyperparameters, "nthread": "1"})
    (folder / "input" / "data" / "train").mkdir(parents=True)
    (folder / "input" / "data" / "train" / "a.csv").write_text(csv_text(table))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert run(train, HYPERPARAMETERS, base=folder) == 0, (folder / "output" / "failure").read_text()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return folder / "model"


@pytest.fixture(scope="module")
def regression_model(tmp_path_factory) -> Path:
    return _train(tmp_path_factory.mktemp("regression"), {"num_round": "5", "max_depth": "3"}, regression_table(200))


@pytest.fixture(scope="module")
def softprob_model(tmp_path_factory) -> Path:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 3))
    table = np.column_stack([np.digitize(x[:, 0], [-0.5, 0.5]), x])
    return _train(tmp_path_factory.mktemp("softprob"),
                  {"num_round": "3", "objective": "multi:softprob", "num_class": "3", "max_depth": "2"}, table)


def context(content_type: str = CSV, accept: str = JSON) -> RequestContext:
    return RequestContext("request-1", content_type, accept)


def invoke(handler: XGBoostHandler, model, body: bytes, content_type: str, accept: str) -> bytes:
    """What the app does per request, without the HTTP around it."""
    ctx = context(parse(content_type).essence, accept)
    data = handler.decode(body, parse(content_type), ctx)
    return handler.encode(handler.predict(model, data, ctx), accept, ctx)


def csv_body(rows: np.ndarray) -> bytes:
    return "\n".join(",".join(repr(float(v)) for v in row) for row in rows).encode()


# --- load --------------------------------------------------------------------------------------------


def test_load_reads_the_model_and_its_meta(regression_model):
    model = XGBoostHandler().load(regression_model)
    assert model.num_features == 3
    assert model.objective == "reg:squarederror"
    assert model.booster.num_boosted_rounds() == 5
    nthread = json.loads(model.booster.save_config())["learner"]["generic_param"]["nthread"]
    assert int(nthread) == threads_per_worker(Settings.from_env().workers)


def test_load_without_meta_still_serves(regression_model, tmp_path):
    shutil.copy(regression_model / "xgboost-model.ubj", tmp_path / "xgboost-model.ubj")
    model = XGBoostHandler().load(tmp_path)
    assert model.objective is None and model.num_features == 3


def test_models_saved_under_the_old_name_still_load(regression_model, tmp_path):
    # earlier versions saved SageMaker's name, xgboost-model, without the suffix XGBoost 3 wants
    shutil.copy(regression_model / "xgboost-model.ubj", tmp_path / "xgboost-model")
    shutil.copy(regression_model / "xgboost-meta.json", tmp_path / "xgboost-meta.json")
    model = XGBoostHandler().load(tmp_path)
    assert model.num_features == 3 and model.objective == "reg:squarederror"
    expected = xgboost.Booster(model_file=str(regression_model / "xgboost-model.ubj")).inplace_predict(ROWS)
    np.testing.assert_array_equal(model.booster.inplace_predict(ROWS), expected)


def test_the_model_file_loads_in_xgboost_without_a_format_warning(regression_model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # XGBoost 3 warns "Unknown file format" for a name without .ubj/.json
        booster = xgboost.Booster(model_file=str(regression_model / "xgboost-model.ubj"))
    assert booster.num_boosted_rounds() == 5


def test_load_without_a_model_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not hold an XGBoost model"):
        XGBoostHandler().load(tmp_path)


# --- decode ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "content_type"), [
    (b"1,2,3\n4,5,6\n", "text/csv"),
    (b"1,2,3\r\n4,5,6", "text/csv; charset=utf-8"),
    (b"[[1, 2, 3], [4, 5, 6]]", "application/json"),
    (b'{"instances": [[1, 2, 3], [4, 5, 6]]}', "application/json"),
    (b"[1, 2, 3]\n[4, 5, 6]\n", "application/jsonlines"),
    (b'{"instances": [1, 2, 3]}\n{"instances": [4, 5, 6]}', "application/jsonlines"),
])
def test_decode_dense_types(body, content_type):
    data = XGBoostHandler().decode(body, parse(content_type), context(parse(content_type).essence))
    assert isinstance(data, np.ndarray) and data.dtype == np.float64
    np.testing.assert_array_equal(data, [[1, 2, 3], [4, 5, 6]])


def test_decode_npy():
    buffer = io.BytesIO()
    np.save(buffer, np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32))
    data = XGBoostHandler().decode(buffer.getvalue(), parse(NPY), context(NPY))
    np.testing.assert_array_equal(data, [[1, 2, 3], [4, 5, 6]])


def test_decode_csv_missing_cell_is_nan():
    data = XGBoostHandler().decode(b"1,,3\n", parse(CSV), context(CSV))
    np.testing.assert_array_equal(data, [[1, np.nan, 3]])


def test_decode_libsvm_with_and_without_a_label():
    data = XGBoostHandler().decode(b"0:1.5 2:3\n\n1 1:-2\n", parse(LIBSVM), context(LIBSVM))
    assert scipy.sparse.issparse(data) and data.shape == (2, 3)
    np.testing.assert_array_equal(data.toarray(), [[1.5, 0, 3], [0, -2, 0]])


@pytest.mark.parametrize(("body", "message"), [
    (b"0:1 x:2\n", "row 0: not LIBSVM"),
    (b"\n  \n", "no rows in the request"),
    (b"-1:2\n", "negative feature index"),
    (b"0:inf\n", "LIBSVM values must be finite"),
])
def test_decode_bad_libsvm(body, message):
    with pytest.raises(BadRequest, match=message):
        XGBoostHandler().decode(body, parse(LIBSVM), context(LIBSVM))


@pytest.mark.parametrize(("body", "content_type", "message"), [
    (b"1,abc,3", CSV, "row 0, column 1: 'abc' is not a number"),
    (b"1,2\n1,2,3", CSV, "row 1 has 3 values; row 0 has 2"),
    (b"1,inf,3", CSV, "row 0, column 1: 'inf' is not finite"),
    (b'{"rows": [[1, 2, 3]]}', JSON, "expected a list of rows"),
])
def test_decode_bad_dense(body, content_type, message):
    with pytest.raises(BadRequest, match=message):
        XGBoostHandler().decode(body, parse(content_type), context(content_type))


# --- predict -----------------------------------------------------------------------------------------


def test_scores_are_the_boosters(regression_model):
    handler = XGBoostHandler()
    model = handler.load(regression_model)
    for content_type, body in ((CSV, csv_body(ROWS)), (JSON, json.dumps(ROWS.tolist()).encode()),
                               (JSONLINES, b"\n".join(json.dumps(r).encode() for r in ROWS.tolist()))):
        scores = handler.predict(model, handler.decode(body, parse(content_type), context(content_type)), context())
        np.testing.assert_allclose(scores, model.booster.inplace_predict(ROWS), rtol=1e-6)


def test_feature_count_mismatch_is_a_bad_request(regression_model):
    handler = XGBoostHandler()
    model = handler.load(regression_model)
    with pytest.raises(BadRequest, match="expected 3 features per row, received 2"):
        handler.predict(model, handler.decode(b"1,2\n", parse(CSV), context()), context())
    with pytest.raises(BadRequest, match="expected 3 features per row, received 4"):
        handler.predict(model, handler.decode(b"[[1, 2, 3, 4]]", parse(JSON), context(JSON)), context())


def test_libsvm_absent_entries_are_missing_values(regression_model):
    handler = XGBoostHandler()
    model = handler.load(regression_model)
    sparse = handler.decode(b"0:0.5 2:2\n1:0.7\n", parse(LIBSVM), context(LIBSVM))  # narrower than the model too
    scores = handler.predict(model, sparse, context(LIBSVM))
    expected = model.booster.inplace_predict(np.array([[0.5, np.nan, 2.0], [np.nan, 0.7, np.nan]]))
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)


def test_libsvm_index_past_the_model_is_a_bad_request(regression_model):
    handler = XGBoostHandler()
    model = handler.load(regression_model)
    with pytest.raises(BadRequest, match="feature index 3 is out of range: the model has 3 features"):
        handler.predict(model, handler.decode(b"3:1\n", parse(LIBSVM), context(LIBSVM)), context(LIBSVM))


def test_missing_values_are_served(regression_model):
    handler = XGBoostHandler()
    model = handler.load(regression_model)
    scores = handler.predict(model, handler.decode(b"1,,3\n", parse(CSV), context()), context())
    assert np.isfinite(scores).all() and scores.shape == (1,)


# --- encode ------------------------------------------------------------------------------------------


def test_json_output(regression_model):
    handler = XGBoostHandler()
    model = handler.load(regression_model)
    expected = model.predict_dense(ROWS).tolist()
    body = invoke(handler, model, csv_body(ROWS), CSV, JSON)
    assert orjson.loads(body) == {"predictions": [{"score": score} for score in expected]}
    np.testing.assert_allclose(expected, model.booster.inplace_predict(ROWS), rtol=1e-6)


def test_json_lines_output(regression_model):
    handler = XGBoostHandler()
    model = handler.load(regression_model)
    expected = model.predict_dense(ROWS).tolist()
    lines = invoke(handler, model, csv_body(ROWS), CSV, JSONLINES).splitlines()
    assert [orjson.loads(line) for line in lines] == [{"score": score} for score in expected]


def test_csv_output_one_score_per_line(regression_model):
    handler = XGBoostHandler()
    model = handler.load(regression_model)
    expected = model.predict_dense(ROWS)
    text = invoke(handler, model, json.dumps({"instances": ROWS.tolist()}).encode(), JSON, CSV).decode()
    assert [float(line) for line in text.splitlines()] == expected.tolist()  # exact round trip


def test_npy_output(regression_model):
    handler = XGBoostHandler()
    model = handler.load(regression_model)
    body = invoke(handler, model, csv_body(ROWS), CSV, NPY)
    scores = np.load(io.BytesIO(body))
    np.testing.assert_array_equal(scores, model.predict_dense(ROWS))
    assert scores.dtype == np.float32 and scores.shape == (3,)  # XGBoost's own type (docs/formats.md)


def test_softprob_rows(softprob_model):
    handler = XGBoostHandler()
    model = handler.load(softprob_model)
    assert model.objective == "multi:softprob"
    expected = model.booster.inplace_predict(ROWS)
    assert expected.shape == (3, 3)
    np.testing.assert_allclose(expected.sum(axis=1), 1, rtol=1e-6)

    body = orjson.loads(invoke(handler, model, csv_body(ROWS), CSV, JSON))
    assert body == {"predictions": [{"score": row} for row in expected.tolist()]}
    lines = invoke(handler, model, csv_body(ROWS), CSV, JSONLINES).splitlines()
    assert [orjson.loads(line) for line in lines] == [{"score": row} for row in expected.tolist()]
    text = invoke(handler, model, csv_body(ROWS), CSV, CSV).decode()
    assert [[float(v) for v in line.split(",")] for line in text.splitlines()] == expected.tolist()


# --- threads -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", ["1", "2", "3", "1000"])
def test_threads_per_worker_share_the_cpus(monkeypatch, workers):
    monkeypatch.setenv(MODEL_SERVER_WORKERS, workers)
    cpus = os.cpu_count() or 1
    assert threads_per_worker(Settings.from_env().workers) == max(1, cpus // int(workers))


def test_threads_per_worker_default_is_one_worker_per_cpu(monkeypatch):
    monkeypatch.delenv(MODEL_SERVER_WORKERS, raising=False)
    assert threads_per_worker(Settings.from_env().workers) == 1


@pytest.mark.parametrize("model_fixture", ["regression_model", "softprob_model"])
def test_direct_prediction_is_inplace_predict_exactly(request, model_fixture):
    model = XGBoostHandler().load(request.getfixturevalue(model_fixture))
    assert isinstance(model.predict_large, DensePredictor)  # verified at load, so in use
    rows = np.random.default_rng(3).normal(size=(50, model.num_features))
    rows[::4, 0] = np.nan
    for batch in (rows[:1], rows):
        expected = model.booster.inplace_predict(batch, validate_features=False)
        got = model.predict_large(batch)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        assert np.array_equal(got, expected, equal_nan=True)


def test_direct_prediction_that_differs_is_turned_off(regression_model, caplog):
    class FirstTreeOnly(DensePredictor):  # a deliberately wrong configuration: must fail verification
        CONFIG = json.dumps({"type": 0, "training": False, "iteration_begin": 0, "iteration_end": 1,
                             "missing": float("nan"), "strict_shape": False, "cache_id": 0}).encode()

    model = XGBoostHandler().load(regression_model)
    with caplog.at_level(logging.WARNING):
        assert not FirstTreeOnly(model.booster).verified(model.num_features)
    assert "using inplace_predict" in caplog.text


def test_an_empty_model_file_is_a_named_error_not_an_abort(tmp_path):
    # XGBoost aborts the process on 0 bytes (``terminate called without an active exception``): run the
    # load in a child so that a regression shows as a failed test, not a crashed test run.
    import subprocess
    import sys

    (tmp_path / "xgboost-model").write_bytes(b"")
    code = ("import sys; from pathlib import Path; from xgboost_container.handler import XGBoostHandler\n"
            "try:\n    XGBoostHandler().load(Path(sys.argv[1]))\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"XGBoostError {tmp_path / 'xgboost-model'} is empty (0 bytes): not an XGBoost model"
